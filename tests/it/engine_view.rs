//! The engine view (`.lifeos/engine.json`, `tasks/src/docker/view.rs`): image events drop
//! only the saved facts they are about. Watched through a recording proxy in front of the
//! real engine: an inspect the no-op makes is a fact it did not trust.

use crate::support::{docker, DockerFx, EngineProxy};

/// The image inspects among the requests from `from` on.
fn inspects(proxy: &EngineProxy, from: usize) -> Vec<String> {
    proxy.requests()[from..]
        .iter()
        .filter(|l| l.starts_with("GET /images/"))
        .cloned()
        .collect()
}

#[test]
fn only_image_events_about_a_tasks_images_make_a_no_op_inspect_them() {
    let fx = DockerFx::new();
    fx.p.file(
        "app/Dockerfile",
        &format!("FROM {}\nCOPY a.txt /a.txt\n", fx.base()),
    )
    .file("app/a.txt", "a")
    .config(&format!(
        r#"
[tasks.web]
kind = "image"
context = "app"
tag = "{web}"
builder = "classic"
labels = {{ "lifeos.test" = "{id}" }}
"#,
        web = fx.tag("web"),
        id = fx.id,
    ));
    // Every run through one proxy: the view is kept per DOCKER_HOST.
    let proxy = EngineProxy::start();
    let host = proxy.host();
    let noop = || {
        let from = proxy.requests().len();
        let r = fx.p.json_env(&["build", "web"], &[("DOCKER_HOST", &host)]);
        assert_eq!(r.cached(), ["web"], "{}", r.all());
        inspects(&proxy, from)
    };
    let r = fx.p.json_env(&["build", "web"], &[("DOCKER_HOST", &host)]);
    assert_eq!(r.code, 0, "{}", r.all());
    // Another image of this test's own, for events about something else.
    let other = fx.p.p("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(
        other.join("Dockerfile"),
        format!("FROM {}\nLABEL other=1\n", fx.base()),
    )
    .unwrap();
    fx.cli_build(&fx.tag("other"), &other);

    // The first no-op learns what the build changed; then a no-op trusts everything. Other
    // tests' engine activity can push the mark out of the engine's 256-event buffer (then
    // all is inspected again), so each step tries until it gets a quiet moment.
    let quiet = (0..20).any(|_| noop().is_empty());
    assert!(quiet, "a no-op never trusted the saved facts");

    // Events about another image (tagged, untagged): nothing is inspected.
    let mut seen = Vec::new();
    let untouched = (0..10).any(|i| {
        let alias = fx.tag(&format!("alias{i}"));
        docker(&["tag", &fx.tag("other"), &alias]);
        docker(&["rmi", &alias]);
        let got = noop();
        seen.push(got.clone());
        got.is_empty()
    });
    assert!(
        untouched,
        "events about another image made the no-op inspect: {seen:#?}"
    );

    // An event about the base (re-tagged): the base is inspected again, web's image is not.
    let base = fx.base();
    let mut seen = Vec::new();
    let precise = (0..10).any(|_| {
        docker(&["tag", &base, &base]);
        let got = noop();
        seen.push(got.clone());
        !got.is_empty() && got.iter().all(|l| l.contains("-base"))
    });
    assert!(
        precise,
        "an event about the base should re-inspect the base alone: {seen:#?}"
    );
}
