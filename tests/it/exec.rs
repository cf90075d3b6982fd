//! The engine through the `exec` kind: keys, skips, failures, outputs, signals, concurrency.

use std::fs;
use std::time::Duration;

use crate::support::{all_bytes, contains, process_gone_within, started, Project};

/// a ← b ← c, plus an independent d. Each task appends to a counter so reruns are visible.
fn chain() -> Project {
    let p = Project::new();
    p.file("src/a.txt", "a1")
        .file("src/b.txt", "b1")
        .file("d/d.txt", "d1")
        .config(
            r#"
[tasks.a]
kind = "exec"
run = "echo a >> runs.log"
inputs = ["src/a.txt"]

[tasks.b]
kind = "exec"
run = "echo b >> runs.log"
inputs = ["src/b.txt"]
deps = ["a"]
env = ["B_MODE"]

[tasks.c]
kind = "exec"
run = "echo c >> runs.log"
deps = ["b"]

[tasks.d]
kind = "exec"
run = "echo d >> runs.log"
inputs = ["d/**"]
"#,
        );
    p
}

#[test]
fn second_run_is_all_cached() {
    let p = chain();
    let r = p.json(&["run"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(r.ran(), ["a", "b", "c", "d"]);
    let r = p.json(&["run"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(r.cached(), ["a", "b", "c", "d"], "{}", r.all());
    assert_eq!(p.read("runs.log").lines().count(), 4);
}

#[test]
fn touching_an_input_reruns_that_task_and_its_dependants_only() {
    let p = chain();
    assert_eq!(p.json(&["run"]).code, 0);
    fs::write(p.p("src/b.txt"), "b2").unwrap();
    let r = p.json(&["run"]);
    assert_eq!(r.ran(), ["b", "c"], "{}", r.all());
    assert_eq!(r.cached(), ["a", "d"]);
    let why = r.outcome("b");
    assert_eq!(why["reason"]["reason"], "changed");
    assert_eq!(why["reason"]["changes"][0]["change"], "file_changed");
    assert_eq!(why["reason"]["changes"][0]["path"], "src/b.txt");
    assert_eq!(r.outcome("c")["reason"]["changes"][0]["name"], "b");
}

#[test]
fn same_content_new_mtime_is_still_cached() {
    let p = chain();
    assert_eq!(p.json(&["run"]).code, 0);
    fs::write(p.p("src/a.txt"), "a1").unwrap(); // same bytes, new mtime: re-hashed, same key
    let r = p.json(&["run"]);
    assert_eq!(r.cached(), ["a", "b", "c", "d"], "{}", r.all());
}

#[test]
fn renaming_an_input_reruns() {
    let p = chain();
    assert_eq!(p.json(&["run"]).code, 0);
    fs::rename(p.p("d/d.txt"), p.p("d/renamed.txt")).unwrap();
    let r = p.json(&["run"]);
    assert_eq!(r.ran(), ["d"], "{}", r.all());
    let changes = r.outcome("d")["reason"]["changes"].clone();
    let kinds: Vec<&str> = changes
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["change"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["file_added", "file_removed"]);
}

#[test]
fn declared_env_reruns_and_undeclared_env_does_not() {
    let p = chain();
    assert_eq!(p.json_env(&["run"], &[("B_MODE", "x")]).code, 0);
    let r = p.json_env(&["run"], &[("B_MODE", "x"), ("UNDECLARED", "1")]);
    assert_eq!(r.ran(), Vec::<String>::new(), "{}", r.all());
    let r = p.json_env(&["run"], &[("B_MODE", "y")]);
    assert_eq!(r.ran(), ["b", "c"], "{}", r.all());
    assert_eq!(r.outcome("b")["reason"]["changes"][0]["change"], "env");
    assert_eq!(r.outcome("b")["reason"]["changes"][0]["name"], "B_MODE");
}

#[test]
fn secrets_appear_nowhere_but_still_change_the_key() {
    let p = Project::new();
    p.config(
        r#"
[tasks.deploy]
kind = "exec"
run = "echo token is $API_TOKEN; echo err $API_TOKEN >&2; echo $API_TOKEN > out.txt"
secrets = ["API_TOKEN"]
outputs = ["out.txt"]
"#,
    );
    let secret = "s3cr3t-Value-42";
    let r = p.json_env(&["run"], &[("API_TOKEN", secret)]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(
        !r.stdout.contains(secret) && !r.stderr.contains(secret),
        "{}",
        r.all()
    );
    assert!(r.stdout.contains("token is ***"), "{}", r.all());
    let plain = p.run_env(&["run", "--force"], &[("API_TOKEN", secret)]);
    assert!(
        !plain.stderr.contains(secret) && !plain.stdout.contains(secret),
        "{}",
        plain.all()
    );
    // out.txt's blob is the task's own output, written by the command; the secret in a
    // user's output file is theirs. Records, logs, fingerprints and indexes must be clean:
    // the one file allowed to hold it is byte for byte out.txt (no log line is only the
    // secret: each has words around it).
    let output = fs::read(p.p("out.txt")).unwrap();
    assert_eq!(output, format!("{secret}\n").as_bytes());
    let holding: Vec<_> = all_bytes(&p.p(".lifeos"))
        .into_iter()
        .filter(|(_, bytes)| contains(bytes, secret))
        .collect();
    for (path, bytes) in &holding {
        assert_eq!(bytes, &output, "secret leaked into {}", path.display());
    }
    assert!(holding.len() <= 1, "{holding:?}");
    let exp = p.run_env(&["explain", "deploy", "--json"], &[("API_TOKEN", secret)]);
    assert!(!exp.stdout.contains(secret), "{}", exp.all());
    let r = p.json_env(&["run"], &[("API_TOKEN", "another-secret")]);
    assert_eq!(r.ran(), ["deploy"], "{}", r.all());
    assert_eq!(
        r.outcome("deploy")["reason"]["changes"][0]["change"],
        "secret"
    );
}

#[test]
fn failure_is_not_cached_dependants_skip_and_keep_going_runs_the_rest() {
    let p = Project::new();
    p.config(
        r#"
[tasks.bad]
kind = "exec"
run = "echo boom; echo x >> bad.log; exit 3"

[tasks.after_bad]
kind = "exec"
run = "echo never"
deps = ["bad"]

[tasks.slow_other]
kind = "exec"
run = "sleep 0.3; echo other >> other.log"
"#,
    );
    let r = p.json(&["run", "-j", "1", "bad", "after_bad", "slow_other"]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert_eq!(r.outcomes()["bad"], "failed");
    assert_eq!(r.outcomes()["after_bad"], "skipped");
    assert_eq!(
        r.outcomes()["slow_other"],
        "skipped",
        "fail-fast: nothing new starts"
    );
    assert!(r.outcome("bad")["error"]
        .as_str()
        .unwrap()
        .contains("exited with code 3"));
    assert!(r.outcome("bad")["log_tail"][0]
        .as_str()
        .unwrap()
        .contains("boom"));

    let r = p.json(&["run", "-j", "1", "--keep-going"]);
    assert_eq!(r.code, 1);
    assert_eq!(r.outcomes()["bad"], "failed", "{}", r.all());
    assert!(started(&r, "bad"), "a failure is never cached: {}", r.all());
    assert_eq!(
        p.read("bad.log").lines().count(),
        2,
        "the command ran again"
    );
    assert_eq!(r.outcomes()["after_bad"], "skipped");
    assert_eq!(r.outcomes()["slow_other"], "ran", "{}", r.all());
    assert_eq!(r.outcome("after_bad")["because"], "dependency bad failed");
}

#[test]
fn fail_fast_starts_nothing_new_after_a_failure() {
    let p = Project::new();
    p.config(
        r#"
[tasks.bad]
kind = "exec"
run = "exit 1"

[tasks.later]
kind = "exec"
run = "touch later-ran"
"#,
    );
    let r = p.json(&["run", "-j", "1"]);
    assert_eq!(r.code, 1);
    assert_eq!(r.outcomes()["later"], "skipped", "{}", r.all());
    assert!(!p.p("later-ran").exists());
}

#[test]
fn deleted_outputs_are_restored_without_rerunning() {
    let p = Project::new();
    p.file("in.txt", "hello").config(
        r#"
[tasks.gen]
kind = "exec"
run = "mkdir -p dist/sub && cat in.txt > dist/out.txt && echo x > dist/sub/y.txt && chmod +x dist/out.txt && echo ran >> count.log"
inputs = ["in.txt"]
outputs = ["dist/**"]
"#,
    );
    assert_eq!(p.json(&["run"]).code, 0);
    fs::remove_dir_all(p.p("dist")).unwrap();
    let r = p.json(&["run"]);
    assert_eq!(r.cached(), ["gen"], "{}", r.all());
    assert!(r.outcome("gen")["location"]
        .as_str()
        .unwrap()
        .contains("2 output file(s) restored"));
    assert_eq!(p.read("dist/out.txt"), "hello");
    assert_eq!(p.read("dist/sub/y.txt"), "x\n");
    use std::os::unix::fs::PermissionsExt;
    assert_ne!(
        fs::metadata(p.p("dist/out.txt"))
            .unwrap()
            .permissions()
            .mode()
            & 0o111,
        0
    );
    assert_eq!(
        p.read("count.log").lines().count(),
        1,
        "the command did not run again"
    );

    fs::write(p.p("dist/out.txt"), "tampered").unwrap();
    let r = p.json(&["run"]);
    assert_eq!(r.cached(), ["gen"]);
    assert_eq!(p.read("dist/out.txt"), "hello");
}

#[test]
fn timeout_and_retries() {
    let p = Project::new();
    p.config(
        r#"
[tasks.flaky]
kind = "exec"
run = "n=$(cat n 2>/dev/null || echo 0); n=$((n+1)); echo $n > n; [ $n -ge 3 ]"
retries = 2

[tasks.hang]
kind = "exec"
run = "sh -c 'echo $$ > hang.pid; exec sleep 30'"
timeout = "500ms"
"#,
    );
    let r = p.json(&["run", "flaky"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(p.read("n").trim(), "3");
    let retries = r
        .events()
        .iter()
        .filter(|e| e["event"] == "task_retry")
        .count();
    assert_eq!(retries, 2);

    let r = p.json(&["run", "hang"]);
    assert_eq!(r.code, 1);
    assert!(
        r.outcome("hang")["error"]
            .as_str()
            .unwrap()
            .contains("timed out after 500ms"),
        "{}",
        r.all()
    );
    let sleeper: i32 = p.read("hang.pid").trim().parse().unwrap();
    assert!(
        process_gone_within(sleeper, 10),
        "the timed-out command {sleeper} was not killed"
    );
}

#[test]
fn sigint_kills_the_process_group_and_exits_130() {
    let p = Project::new();
    p.config(
        r#"
[tasks.long]
kind = "exec"
run = "test -f go || sh -c 'echo $$ > child.pid; sleep 60'; echo done > after.txt"
outputs = ["after.txt"]
"#,
    );
    let mut child = p.cmd(&["run"]).spawn().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !p.p("child.pid").exists() || p.read("child.pid").trim().is_empty() {
        assert!(std::time::Instant::now() < deadline, "task never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    let grandchild: i32 = p.read("child.pid").trim().parse().unwrap();
    // SAFETY: plain syscall to a child this test spawned and has not yet reaped.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    // Gone, or at most a zombie waiting for init to reap it.
    assert!(
        process_gone_within(grandchild, 5),
        "the task's child process {grandchild} is still running"
    );
    assert!(!p.p("after.txt").exists());

    // Nothing half-done was recorded: with the same config (same key; `go` is no input)
    // the next run runs it again, and now it finishes at once.
    p.file("go", "");
    let r = p.json(&["run"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(r.ran(), ["long"], "{}", r.all());
    assert_eq!(p.read("after.txt"), "done\n");
}

#[test]
fn two_concurrent_runs_on_one_cache_both_succeed() {
    let p = Project::new();
    let mut cfg = String::new();
    for i in 0..12 {
        p.file(&format!("in/{i}.txt"), &i.to_string());
        cfg.push_str(&format!(
            "[tasks.t{i}]\nkind = \"exec\"\nrun = \"sleep 0.05; mkdir -p out; echo {i} > out/{i}.txt\"\ninputs = [\"in/{i}.txt\"]\noutputs = [\"out/{i}.txt\"]\n\n"
        ));
    }
    p.config(&cfg);
    let a = p
        .cmd(&["--json", "run"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let b = p
        .cmd(&["--json", "run"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(a.status.success() && b.status.success());
    let r = p.json(&["run"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(
        r.cached().len(),
        12,
        "the merged index knows every task: {}",
        r.all()
    );
    // With --json, warnings are events on stdout: none of the three runs saw a corrupt
    // record or index.
    let corrupt = |stdout: &str| {
        stdout.lines().any(|l| {
            serde_json::from_str::<serde_json::Value>(l).is_ok_and(|e| {
                e["event"] == "warning" && e["message"].as_str().unwrap().contains("corrupt")
            })
        })
    };
    for out in [&a.stdout, &b.stdout] {
        let text = String::from_utf8_lossy(out);
        assert!(!corrupt(&text), "{text}");
    }
    assert!(!corrupt(&r.stdout), "{}", r.all());
}

#[test]
fn a_corrupt_record_is_a_miss_with_a_warning() {
    let p = chain();
    assert_eq!(p.json(&["run"]).code, 0);
    fs::write(p.p(".lifeos/index.json"), "{ this is not json").unwrap();
    for (path, _) in all_bytes(&p.p(".lifeos/ac")) {
        fs::write(path, "garbage").unwrap();
    }
    let r = p.json(&["run"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(r.ran(), ["a", "b", "c", "d"]);
    let warnings: Vec<_> = r
        .events()
        .into_iter()
        .filter(|e| e["event"] == "warning")
        .collect();
    assert!(
        warnings
            .iter()
            .any(|w| w["message"].as_str().unwrap().contains("corrupt")),
        "{}",
        r.all()
    );
    let r = p.json(&["run"]);
    assert_eq!(r.cached().len(), 4, "the cache healed: {}", r.all());
}

#[test]
fn cache_window_expires() {
    let p = Project::new();
    p.config(
        r#"
[tasks.nightly]
kind = "exec"
run = "echo x >> n.log"
cache = { every = "3s" }

[tasks.always]
kind = "exec"
run = "echo y >> y.log"
cache = false
"#,
    );
    assert_eq!(p.json(&["run"]).code, 0);
    let r = p.json(&["run"]);
    assert_eq!(r.outcomes()["nightly"], "cached");
    assert_eq!(r.outcomes()["always"], "ran");
    assert_eq!(r.outcome("always")["reason"]["reason"], "cache_disabled");
    std::thread::sleep(Duration::from_millis(3200));
    let r = p.json(&["run"]);
    assert_eq!(r.outcomes()["nightly"], "ran", "{}", r.all());
    assert_eq!(r.outcome("nightly")["reason"]["reason"], "window_expired");
}

#[test]
fn selection_vars_environments_and_force() {
    let p = Project::new();
    p.config(
        r#"
[vars]
greeting = "hello"

[environments.staging]
vars = { greeting = "hi-staging" }

[tasks.base]
kind = "exec"
run = "echo ${vars.greeting} > base.txt"
outputs = ["base.txt"]

[tasks.top]
kind = "exec"
run = ["sh", "-c", "cat base.txt > top.txt"]
deps = ["base"]

[tasks.other]
kind = "exec"
run = "touch other.txt"
"#,
    );
    let r = p.json(&["run", "top"]);
    assert_eq!(r.ran(), ["base", "top"], "{}", r.all());
    assert!(!p.p("other.txt").exists());
    assert_eq!(p.read("top.txt"), "hello\n");
    let r = p.json(&["run", "top", "--env", "staging"]);
    assert_eq!(r.ran(), ["base", "top"]);
    assert_eq!(p.read("top.txt"), "hi-staging\n");
    let r = p.json(&["run", "top", "--set", "greeting=yo"]);
    assert_eq!(p.read("top.txt"), "yo\n", "{}", r.all());
    let r = p.json(&["run", "top", "--set", "greeting=yo", "--force=top"]);
    assert_eq!(r.ran(), ["top"]);
    assert_eq!(r.outcome("top")["reason"]["reason"], "forced");
    let r = p.json(&["run", "top", "--set", "greeting=yo", "--force"]);
    assert_eq!(r.ran(), ["base", "top"]);

    let r = p.run(&["run", "topp"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("did you mean `top`"), "{}", r.all());
    let r = p.run(&["run", "--env", "prod"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("unknown environment `prod`"),
        "{}",
        r.all()
    );
    let r = p.run(&["run", "--set", "greting=x"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("did you mean `greeting`"), "{}", r.all());
}

#[test]
fn plain_output_prefixes_lines_and_prints_a_summary() {
    let p = Project::new();
    p.config("[tasks.hello]\nkind = \"exec\"\nrun = \"echo hello world\"\n");
    let r = p.run(&["run"]);
    assert_eq!(r.code, 0);
    assert!(r.stderr.contains("hello | hello world"), "{}", r.all());
    assert!(r.stderr.contains("lifeos: 1 ran, 0 cached"), "{}", r.all());
    let r = p.run(&["run"]);
    assert!(r.stderr.contains("0 ran, 1 cached"), "{}", r.all());
}

/// The commands lifeos starts see the system's transparent-huge-page setting: nothing lifeos
/// does to its own memory (an earlier version turned THP off for itself) may reach them.
#[test]
fn commands_run_with_the_system_huge_page_setting() {
    let p = Project::new();
    p.config(
        r#"
[tasks.thp]
kind = "exec"
run = "grep THP_enabled /proc/self/status > thp.txt"
"#,
    );
    let r = p.json(&["run"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(p.read("thp.txt").trim(), "THP_enabled:\t1");
}
