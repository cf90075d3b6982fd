//! The kind seam: dependency results (`${tasks.NAME.FIELD}`), `${git.*}`, and a config load
//! that never needs Docker.

use crate::support::{docker, git, DockerFx, EngineProxy, Project};

/// An image, a service on it, and an exec task and a one-shot container that use their
/// results without listing them in `deps`.
fn results_project(fx: &DockerFx, port: u16) {
    fx.p.file("img/Dockerfile", &format!("FROM {}\nLABEL lifeos.test={}\n", fx.base(), fx.id))
        .config(&format!(
            r#"
[project]
name = "{id}"

[tasks.img]
kind = "image"
context = "img"
tag = "{tag}"
builder = "classic"

[tasks.kv]
kind = "service"
image = "img"
cmd = ["sh", "-c", "trap 'exit 0' TERM; while true; do echo ok | nc -l -p 7000; done"]
ports = ["127.0.0.1:{port}:7000"]
labels = {{ "lifeos.test" = "{id}" }}

[tasks.show]
kind = "exec"
run = "echo id=${{tasks.img.id}} ref=${{tasks.img.reference}} at=${{tasks.kv.host}}:${{tasks.kv.port}} name=$KV literal='$${{tasks.img.id}}' > out.txt"
env = ["KV=${{tasks.kv.container}}"]

[tasks.job]
kind = "container"
image = "img"
cmd = ["sh", "-c", "echo job sees ${{tasks.kv.container}} key ${{tasks.kv.key}}"]
labels = {{ "lifeos.test" = "{id}" }}
"#,
            id = fx.id,
            tag = fx.tag("img"),
        ));
}

#[test]
fn dependency_results_reach_commands_containers_and_env() {
    let fx = DockerFx::new();
    let port = crate::support::free_port();
    results_project(&fx, port);
    let r = fx.p.json(&["run", "show", "job"]);
    assert_eq!(r.code, 0, "{}", r.all());
    // The named tasks became dependencies: they ran first, though no `deps` lists them.
    for t in ["img", "kv", "show", "job"] {
        assert_eq!(r.outcomes()[t], "ran", "{t}: {}", r.all());
    }
    let id = docker(&["image", "inspect", "--format", "{{.Id}}", &fx.tag("img")]);
    let expected = format!(
        "id={id} ref={} at=127.0.0.1:{port} name={}-kv literal=${{tasks.img.id}}",
        fx.tag("img"),
        fx.id
    );
    assert_eq!(fx.p.read("out.txt").trim(), expected);
    let job_log: Vec<String> = r
        .events()
        .iter()
        .filter(|e| e["event"] == "task_log" && e["task"] == "job")
        .map(|e| e["line"].as_str().unwrap_or_default().to_string())
        .collect();
    let kv_key = r.outcome("kv")["key"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(!kv_key.is_empty(), "{}", r.all());
    assert!(
        job_log
            .iter()
            .any(|l| l == &format!("job sees {}-kv key {kv_key}", fx.id)),
        "{job_log:?}"
    );

    // Nothing changed: every task is cached, and cached results still expand.
    std::fs::remove_file(fx.p.p("out.txt")).unwrap();
    let r = fx.p.json(&["run", "show", "--force=show"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(r.outcomes()["img"], "cached", "{}", r.all());
    assert_eq!(r.outcomes()["kv"], "cached", "{}", r.all());
    assert_eq!(fx.p.read("out.txt").trim(), expected);
    let down = fx.p.run(&["down"]);
    assert_eq!(down.code, 0, "{}", down.all());
}

fn config_error(toml: &str, line_col: &str, needles: &[&str]) {
    let p = Project::new();
    p.file("img/Dockerfile", "FROM scratch\n").config(toml);
    let r = p.run(&["plan"]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(
        r.stderr.contains(&format!("lifeos.toml:{line_col}")),
        "expected lifeos.toml:{line_col} in:\n{}",
        r.stderr
    );
    for n in needles {
        assert!(r.stderr.contains(n), "expected `{n}` in:\n{}", r.stderr);
    }
}

const IMG: &str = "[tasks.img]\nkind = \"image\"\ncontext = \"img\"\n";

#[test]
fn task_references_are_checked_when_the_config_loads() {
    config_error(
        &format!("{IMG}\n[tasks.x]\nkind = \"exec\"\nrun = \"echo ${{tasks.imgg.id}}\"\n"),
        "7:13",
        &["unknown task `imgg`", "did you mean `img`?"],
    );
    config_error(
        &format!("{IMG}\n[tasks.x]\nkind = \"exec\"\nrun = \"echo ${{tasks.img.digest}}\"\n"),
        "7:13",
        &[
            "task `img` (kind `image`) has no result field `digest`",
            "key, id, reference",
        ],
    );
    // A field used before any task runs cannot wait for a result.
    config_error(
        &format!("{IMG}\n[tasks.y]\nkind = \"image\"\ncontext = \"img\"\ntag = \"y:${{tasks.img.key}}\"\n"),
        "8:10",
        &["`${tasks.img.key}` cannot be used here"],
    );
    config_error(
        &format!("{IMG}\n[tasks.x]\nkind = \"exec\"\nrun = \"echo ${{tasks.x.key}}\"\n"),
        "5:8",
        &["task `x` names its own result"],
    );
}

#[test]
fn unknown_kinds_and_fields_get_a_did_you_mean() {
    config_error(
        "[tasks.x]\nkind = \"imgae\"\n",
        "2:8",
        &["unknown variant `imgae`", "did you mean `image`?"],
    );
    config_error(
        "[tasks.x]\nkind = \"exec\"\nrun = \"true\"\nretires = 2\n",
        "4:1",
        &["unknown field `retires`", "did you mean `retries`?"],
    );
    // A field of a nested table keeps its own place.
    config_error(
        "[tasks.x]\nkind = \"service\"\nimage = \"busybox:1\"\nhealth = { cmd = \"true\", intervall = \"1s\" }\n",
        "4:26",
        &["unknown field `intervall`"],
    );
}

#[test]
fn git_variables_follow_the_checkout() {
    let p = Project::new();
    p.config(
        "[tasks.stamp]\nkind = \"exec\"\nrun = \"echo ${git.sha} ${git.short_sha} ${git.branch} > stamp.txt\"\ninputs = []\noutputs = [\"stamp.txt\"]\n",
    );
    p.file(".gitignore", ".lifeos/\nstamp.txt\n");
    git(p.path(), &["init", "-q", "-b", "trunk"]);
    git(p.path(), &["add", "-A"]);
    git(p.path(), &["commit", "-q", "-m", "one"]);
    let sha = git(p.path(), &["rev-parse", "HEAD"]);
    let r = p.run(&["run", "stamp"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(
        p.read("stamp.txt").trim(),
        format!("{sha} {} trunk", &sha[..7])
    );

    // A new commit: the compiled config is stale, the key changes, the task reruns.
    p.file("note.txt", "x");
    git(p.path(), &["add", "-A"]);
    git(p.path(), &["commit", "-q", "-m", "two"]);
    let sha2 = git(p.path(), &["rev-parse", "HEAD"]);
    assert_ne!(sha, sha2);
    let r = p.json(&["run", "stamp"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(r.outcomes()["stamp"], "ran", "{}", r.all());
    assert_eq!(
        p.read("stamp.txt").trim(),
        format!("{sha2} {} trunk", &sha2[..7])
    );

    // Detached: no branch, said at the place that asks for it.
    git(p.path(), &["checkout", "-q", &sha]);
    let r = p.run(&["run", "stamp"]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("HEAD is detached"), "{}", r.all());
    assert!(r.stderr.contains("lifeos.toml:3:"), "{}", r.all());
}

#[test]
fn git_variables_outside_a_repository_are_a_config_error() {
    let p = Project::new();
    p.config("[tasks.a]\nkind = \"exec\"\nrun = \"echo ${git.sha}\"\n");
    let r = p.run(&["run"]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("lifeos.toml:3:13"), "{}", r.all());
    assert!(
        r.stderr.contains("not inside a git repository"),
        "{}",
        r.all()
    );
}

#[test]
fn loading_a_config_never_talks_to_docker() {
    let p = Project::new();
    p.file("img/Dockerfile", "FROM scratch\n").config(&format!(
        "{IMG}\n[tasks.db]\nkind = \"service\"\nimage = \"img\"\n\n[tasks.hello]\nkind = \"exec\"\nrun = \"echo hi > hi.txt\"\n"
    ));
    let proxy = EngineProxy::start();
    let r = p.run_env(&["graph"], &[("DOCKER_HOST", &proxy.host())]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(
        proxy.requests(),
        Vec::<String>::new(),
        "graph needs no engine"
    );
    for args in [&["plan", "hello"][..], &["run", "hello"]] {
        let r = p.run_env(args, &[("DOCKER_HOST", &proxy.host())]);
        assert_eq!(r.code, 0, "{args:?}: {}", r.all());
    }
    assert_eq!(p.read("hi.txt").trim(), "hi");
    // An exec-only selection asks the engine about no image or container.
    let requests = proxy.requests();
    assert!(
        requests
            .iter()
            .all(|r| !r.contains("/images/") && !r.contains("/containers/")),
        "{requests:?}"
    );
    let r = p.run_env(
        &["graph"],
        &[("DOCKER_HOST", "unix:///nonexistent/docker.sock")],
    );
    assert_eq!(r.code, 0, "{}", r.all());
}
