//! Secrets: masked in every output path (console, `--json`, the cached log, `lifeos logs`),
//! multi-line values included, and never handed to a task that does not declare them.

use crate::support::{all_bytes, contains, DockerFx, Project, Run};

/// A PEM-like key: every line distinct, none a substring of ordinary output.
const KEY: &str = "-----BEGIN TEST PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCzQ1\nBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKjW2\nx4Lq9ZpRUuTnYdz0wJkQv3hs7AoE5Hf8Ny\n-----END TEST PRIVATE KEY-----";

/// The lines of `value` that must not appear anywhere.
fn pieces(value: &str) -> Vec<&str> {
    value
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect()
}

fn assert_masked(what: &str, hay: &[u8], value: &str) {
    for piece in pieces(value) {
        assert!(
            !contains(hay, piece),
            "{what} shows `{piece}`:\n{}",
            String::from_utf8_lossy(hay)
        );
    }
}

fn assert_run_masked(r: &Run, value: &str) {
    assert_masked("stdout", r.stdout.as_bytes(), value);
    assert_masked("stderr", r.stderr.as_bytes(), value);
}

#[test]
fn a_multi_line_secret_is_masked_on_the_console_in_json_and_in_the_cache() {
    let p = Project::new();
    p.config(
        r#"
[tasks.sign]
kind = "exec"
run = "printf '%s\n' \"$TLS_KEY\"; printf 'key:%s\n' \"$TLS_KEY\" >&2; echo signed"
secrets = ["TLS_KEY"]
"#,
    );
    let r = p.json_env(&["run"], &[("TLS_KEY", KEY)]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_run_masked(&r, KEY);
    let logs: Vec<String> = r
        .events()
        .iter()
        .filter(|e| e["event"] == "task_log")
        .map(|e| e["line"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(logs.iter().any(|l| l == "signed"), "{logs:?}");
    assert_eq!(
        logs.iter().filter(|l| l.contains("***")).count(),
        2 * pieces(KEY).len(),
        "each line of the key, on both streams, is masked: {logs:?}"
    );

    // The plain console (every line, `sign |` prefix), after a forced run.
    let plain = p.run_env(&["run", "--force"], &[("TLS_KEY", KEY)]);
    assert_eq!(plain.code, 0, "{}", plain.all());
    assert!(plain.all().contains("signed"), "{}", plain.all());
    assert_run_masked(&plain, KEY);

    // The cached log blob and everything else lifeos keeps.
    let kept = all_bytes(&p.p(".lifeos"));
    assert!(
        kept.iter().any(|(_, b)| contains(b, "signed")),
        "the log was cached"
    );
    for (path, bytes) in &kept {
        assert_masked(&path.display().to_string(), bytes, KEY);
    }
}

#[test]
fn a_secret_declared_by_any_task_is_masked_in_every_task() {
    let p = Project::new();
    p.file("token.txt", "tok-3141-5926-zz\n").config(
        r#"
[tasks.uses]
kind = "exec"
run = "true"
secrets = ["DEPLOY_TOKEN"]

[tasks.leaks]
kind = "exec"
run = "echo read $(cat token.txt)"
"#,
    );
    // Only `leaks` runs; the value is known as a secret from `uses`.
    let r = p.json_env(&["run", "leaks"], &[("DEPLOY_TOKEN", "tok-3141-5926-zz")]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(r.ran(), ["leaks"]);
    assert_run_masked(&r, "tok-3141-5926-zz");
    assert!(r.stdout.contains("read ***"), "{}", r.all());
    for (path, bytes) in all_bytes(&p.p(".lifeos")) {
        assert_masked(&path.display().to_string(), &bytes, "tok-3141-5926-zz");
    }
}

#[test]
fn an_exec_task_gets_only_declared_variables_and_the_base() {
    let p = Project::new();
    p.config(
        r#"
[tasks.env]
kind = "exec"
run = "echo token=$${API_TOKEN:-unset} mode=$${MODE:-unset} key=$${DECLARED:-unset} path=$${PATH:+set} home=$${HOME:+set} lc=$${LC_ALL:-unset}"
env = ["MODE=ci"]
secrets = ["DECLARED"]
"#,
    );
    let r = p.json_env(
        &["run"],
        &[
            ("API_TOKEN", "host-only-value-77"),
            ("DECLARED", "declared-value-88"),
            ("LC_ALL", "C"),
        ],
    );
    assert_eq!(r.code, 0, "{}", r.all());
    assert_run_masked(&r, "host-only-value-77");
    assert!(
        r.stdout
            .contains("token=unset mode=ci key=*** path=set home=set lc=C"),
        "{}",
        r.all()
    );
}

#[test]
fn lifeos_logs_masks_a_services_secrets() {
    let fx = DockerFx::new();
    fx.p.config(&format!(
        r#"
[project]
name = "{id}"

[tasks.web]
kind = "service"
image = "{base}"
cmd = ["sh", "-c", "trap 'exit 0' TERM; echo pw=$WEB_PASSWORD; printenv WEB_KEY; echo started; while true; do sleep 1; done"]
secrets = ["WEB_PASSWORD", "WEB_KEY"]
labels = {{ "lifeos.test" = "{id}" }}
"#,
        id = fx.id,
        base = fx.base(),
    ));
    let password = "pw-2718-2818-qq";
    let env = [("WEB_PASSWORD", password), ("WEB_KEY", KEY)];
    let r = fx.p.json_env(&["up"], &env);
    assert_eq!(r.code, 0, "{}", r.all());

    // The container prints once it runs; `up` may return first.
    let mut logs = fx.p.run_env(&["logs", "web"], &env);
    for _ in 0..100 {
        if logs.stdout.contains("started") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        logs = fx.p.run_env(&["logs", "web"], &env);
    }
    assert_eq!(logs.code, 0, "{}", logs.all());
    assert!(logs.stdout.contains("started"), "{}", logs.all());
    assert!(logs.stdout.contains("pw=***"), "{}", logs.all());
    assert_run_masked(&logs, password);
    assert_run_masked(&logs, KEY);

    // A shell without the values: the container's own are masked.
    let bare = fx.p.run(&["logs", "web"]);
    assert_eq!(bare.code, 0, "{}", bare.all());
    assert!(bare.stdout.contains("pw=***"), "{}", bare.all());
    assert_run_masked(&bare, password);
    assert_run_masked(&bare, KEY);

    assert_eq!(fx.p.run(&["down"]).code, 0);
}

#[test]
fn a_secret_passed_as_plain_env_elsewhere_is_a_config_error() {
    let p = Project::new();
    p.config(
        r#"[tasks.deploy]
kind = "exec"
run = "true"
secrets = ["API_TOKEN"]

[tasks.debug]
kind = "exec"
run = "touch ran"
env = ["MODE=x", "API_TOKEN"]
"#,
    );
    let r = p.run_env(&["run"], &[("API_TOKEN", "tok-1618-0339")]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("lifeos.toml:9:18"), "{}", r.all());
    assert!(
        r.stderr.contains("`API_TOKEN` is a secret")
            && r.stderr.contains("declared in `secrets` of task `deploy`"),
        "{}",
        r.all()
    );
    assert!(!p.p("ran").exists());
    assert_run_masked(&r, "tok-1618-0339");
}
