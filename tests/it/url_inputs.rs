//! `inputs` that are URLs: fetched into the cache, revalidated by ETag, their content in the
//! key; `--offline` uses the kept copy. Served by a real nginx.

use crate::support::{Nginx, Project};

fn project(url: &str) -> Project {
    let p = Project::new();
    p.config(&format!(
        "[tasks.seed]\nkind = \"exec\"\ninputs = [\"{url}\"]\nrun = \"cat \\\"$(printf '%s' \\\"$LIFEOS_URL_INPUTS\\\" | cut -f2)\\\" > seeded.txt\"\n"
    ));
    p
}

#[test]
fn a_url_input_reruns_when_its_content_changes_and_works_offline() {
    let mut nginx = Nginx::start("");
    std::fs::write(nginx.root.join("seed.sql"), "v1\n").unwrap();
    let p = project(&nginx.url("seed.sql"));

    let r = p.json(&["run"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(r.outcomes()["seed"], "ran");
    assert_eq!(p.read("seeded.txt"), "v1\n");

    // Unchanged: cached (the server is asked, the content is the same).
    let r = p.json(&["run"]);
    assert_eq!(r.outcomes()["seed"], "cached", "{}", r.all());

    // Changed on the server (a new ETag): fetched again, and the task reruns.
    std::fs::write(nginx.root.join("seed.sql"), "v2, longer\n").unwrap();
    let r = p.json(&["run"]);
    assert_eq!(r.outcomes()["seed"], "ran", "{}", r.all());
    assert_eq!(p.read("seeded.txt"), "v2, longer\n");
    let gets = nginx
        .access_log()
        .iter()
        .filter(|l| l.contains("GET /seed.sql"))
        .count();
    assert_eq!(
        gets,
        2,
        "downloaded once per version: {:?}",
        nginx.access_log()
    );

    // Server gone: --offline uses the kept copy (cached: same content, same key).
    nginx.stop();
    let r = p.json(&["run", "--offline"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(r.outcomes()["seed"], "cached", "{}", r.all());
    assert!(r.stderr.contains("--offline"), "says so: {}", r.all());
    // Online but unreachable: an environment error (exit 3) that names the URL and the way out.
    let r = p.run(&["run"]);
    assert_eq!(r.code, 3, "{}", r.all());
    assert!(r.all().contains(&nginx.url("seed.sql")), "{}", r.all());
    assert!(r.all().contains("--offline"), "{}", r.all());
    // No kept copy: --offline cannot help, and says so.
    let fresh = project(&nginx.url("seed.sql"));
    let r = fresh.run(&["run", "--offline"]);
    assert_eq!(r.code, 3, "{}", r.all());
    assert!(r.all().contains("no kept copy"), "{}", r.all());

    // `cache clean` removes the kept copies (they are lifeos's names).
    let r = p.run(&["cache", "clean"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(!p.p(".lifeos/downloads").exists(), "{}", r.all());
}

#[test]
fn a_url_with_credentials_is_a_config_error() {
    let p = Project::new();
    p.config("[tasks.seed]\nkind = \"exec\"\ninputs = [\"https://user:pw@example.com/x\"]\nrun = \"true\"\n");
    let r = p.run(&["run"]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("lifeos.toml:3:11"), "{}", r.all());
    assert!(
        r.stderr.contains("credentials do not belong"),
        "{}",
        r.all()
    );
}
