//! `[cache] remote`: a Bazel-HTTP remote cache on a real nginx (WebDAV PUT). A second
//! checkout reuses what the first built; outages, corruption and refusals degrade to the
//! local cache with one warning.

use crate::support::{all_bytes, Nginx, Project};

/// A checkout of the same little project, its cache pointing at `remote`.
fn checkout(remote: &str, extra: &str) -> Project {
    let p = Project::new();
    p.file("src/a.txt", "alpha\n").config(&format!(
        r#"[cache]
remote = "{remote}"
{extra}

[tasks.gen]
kind = "exec"
inputs = ["src/**"]
outputs = ["dist/**"]
run = "mkdir -p dist && cat src/a.txt src/a.txt > dist/out.txt && date +%s%N > dist/stamp"
"#
    ));
    p
}

fn puts(n: &Nginx) -> usize {
    n.access_log()
        .iter()
        .filter(|l| l.contains("\"PUT "))
        .count()
}

#[test]
fn a_second_checkout_reuses_what_the_first_built() {
    let nginx = Nginx::start("");
    let url = nginx.url("lifeos");
    let first = checkout(&url, "");
    let r = first.json(&["run"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(r.outcomes()["gen"], "ran");
    let log = nginx.access_log();
    assert!(log.iter().any(|l| l.contains("PUT /lifeos/ac/")), "{log:?}");
    assert!(
        log.iter().any(|l| l.contains("PUT /lifeos/cas/")),
        "{log:?}"
    );

    let second = checkout(&url, "");
    let plan = second.run(&["plan"]);
    assert_eq!(plan.code, 0, "{}", plan.all());
    assert!(plan.stdout.contains("remote cache"), "{}", plan.all());
    let r = second.json(&["run"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(r.outcomes()["gen"], "cached", "{}", r.all());
    for f in ["dist/out.txt", "dist/stamp"] {
        assert_eq!(
            std::fs::read(second.p(f)).unwrap(),
            std::fs::read(first.p(f)).unwrap(),
            "{f} restored byte for byte (the stamp would differ had it run)"
        );
    }
    // Kept locally now: a third run asks the remote nothing.
    let before = nginx.access_log().len();
    let r = second.json(&["run"]);
    assert_eq!(r.outcomes()["gen"], "cached");
    assert_eq!(nginx.access_log().len(), before, "{:?}", nginx.access_log());
    let stats = second.run(&["cache", "stats"]);
    assert!(
        stats.stdout.contains("remote cache:   1 hits"),
        "{}",
        stats.all()
    );
}

#[test]
fn a_corrupt_blob_on_the_server_is_caught_and_the_task_reruns() {
    let nginx = Nginx::start("");
    let url = nginx.url("lifeos");
    let r = checkout(&url, "").run(&["run"]);
    assert_eq!(r.code, 0, "{}", r.all());
    // Every blob on the server changed behind lifeos's back.
    let cas = nginx.root.join("lifeos/cas");
    let mut digests = Vec::new();
    for e in std::fs::read_dir(&cas).unwrap().flatten() {
        digests.push(e.file_name().to_string_lossy().into_owned());
        std::fs::write(e.path(), "tampered").unwrap();
    }
    let other = checkout(&url, "");
    let r = other.json(&["run"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(
        r.outcomes()["gen"],
        "ran",
        "a wrong blob is a miss: {}",
        r.all()
    );
    assert_eq!(other.read("dist/out.txt"), "alpha\nalpha\n");
    assert!(
        digests.iter().any(|d| r.all().contains(d.as_str())),
        "the warning names the digest: {}",
        r.all()
    );
}

#[test]
fn an_outage_or_a_refusal_is_one_warning_and_the_run_goes_on() {
    let mut nginx = Nginx::start("");
    let url = nginx.url("lifeos");
    nginx.stop();
    let p = checkout(&url, "");
    let r = p.run(&["run"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(r.stderr.matches("unusable").count(), 1, "{}", r.all());
    assert!(r.stderr.contains(&url), "{}", r.all());

    // 401 with a token: named server and status, never the token.
    let denied = Nginx::start("return 401;");
    let url = denied.url("lifeos");
    let p = checkout(&url, "");
    let token = "tok-VERY-SECRET-4711";
    let r = p.run_env(&["run"], &[("LIFEOS_REMOTE_CACHE_TOKEN", token)]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(
        r.stderr.contains("401") && r.stderr.contains(&url),
        "{}",
        r.all()
    );
    assert!(!r.all().contains(token), "{}", r.all());
    for (path, bytes) in all_bytes(p.path()) {
        assert!(
            !String::from_utf8_lossy(&bytes).contains(token),
            "the token is in {}",
            path.display()
        );
    }
}

#[test]
fn a_read_only_checkout_never_uploads() {
    let nginx = Nginx::start("");
    let url = nginx.url("lifeos");
    let p = checkout(&url, "remote_write = false");
    let r = p.run(&["run"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(puts(&nginx), 0, "{:?}", nginx.access_log());
    // The environment turns writes on (CI writes, laptops read).
    std::fs::write(p.p("src/a.txt"), "beta\n").unwrap();
    let r = p.run_env(&["run"], &[("LIFEOS_REMOTE_CACHE_WRITE", "1")]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(puts(&nginx) > 0, "{:?}", nginx.access_log());
}

#[test]
fn credentials_in_the_remote_url_are_a_config_error() {
    let p = checkout("http://user:pw@127.0.0.1:1/lifeos", "");
    let r = p.run(&["run"]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("lifeos.toml:2:10"), "{}", r.all());
    assert!(
        r.stderr.contains("LIFEOS_REMOTE_CACHE_TOKEN"),
        "{}",
        r.all()
    );
}

#[test]
fn the_server_going_away_during_a_run_is_one_warning() {
    let nginx = Nginx::start("");
    let url = nginx.url("lifeos");
    let pid = nginx.pid().unwrap();
    // `down` stops the server (its workers follow the master within a moment); nothing
    // after that can upload.
    let p = checkout(&url, "");
    let toml = p.read("lifeos.toml").replace(
        "[tasks.gen]\n",
        &format!(
            "[tasks.down]\nkind = \"exec\"\nrun = \"kill -TERM {pid}; sleep 1\"\n\n[tasks.gen]\ndeps = [\"down\"]\n"
        ),
    );
    p.config(&toml);
    let r = p.json(&["run"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(r.outcomes()["gen"], "ran", "{}", r.all());
    let warnings: Vec<String> = r
        .events()
        .iter()
        .filter(|e| e["event"] == "warning")
        .map(|e| e["message"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        warnings.iter().filter(|w| w.contains("unusable")).count(),
        1,
        "{warnings:?}"
    );
    assert!(warnings.iter().any(|w| w.contains(&url)), "{warnings:?}");
    // Recorded locally all the same.
    let again = p.json(&["run", "gen"]);
    assert_eq!(again.outcomes()["gen"], "cached", "{}", again.all());
}
