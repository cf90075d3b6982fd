//! The run summary: `--summary FILE` as JSON for CI, and the "delivered" block on stderr.

use serde_json::Value;

use crate::support::Project;

fn two_tasks() -> Project {
    let p = Project::new();
    p.file("src/a.txt", "a1").config(
        r#"
[tasks.gen]
kind = "exec"
run = "echo gen >> runs.log"
inputs = ["src/a.txt"]

[tasks.fail]
kind = "exec"
run = "exit 7"
cache = false
"#,
    );
    p
}

fn summary(p: &Project, name: &str) -> Value {
    serde_json::from_str(&p.read(name)).expect("the summary is JSON")
}

fn task<'a>(s: &'a Value, name: &str) -> &'a Value {
    s["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no task {name} in {s}"))
}

#[test]
fn the_summary_file_says_per_task_what_happened_why_and_how_long() {
    let p = two_tasks();
    let r = p.run(&["run", "gen", "--summary", "out/summary.json"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let s = summary(&p, "out/summary.json");
    assert_eq!(s["version"], 1);
    assert_eq!(s["command"], "run gen");
    assert_eq!(s["exit_code"], 0);
    assert_eq!(
        (s["ran"].as_u64(), s["cached"].as_u64()),
        (Some(1), Some(0))
    );
    let gen = task(&s, "gen");
    assert_eq!(gen["kind"], "exec");
    assert_eq!(gen["status"], "ran");
    assert_eq!(gen["reason"], "first run");
    assert_eq!(gen["key"].as_str().map(str::len), Some(64), "{gen}");
    assert!(gen["ms"].is_u64(), "{gen}");
    assert!(
        chrono_like(s["finished_at"].as_str().unwrap()),
        "{}",
        s["finished_at"]
    );

    // Second run: cached, with where and what it saved; the summary is replaced, not appended.
    let r = p.run(&["run", "gen", "--summary", "out/summary.json"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let s = summary(&p, "out/summary.json");
    let gen = task(&s, "gen");
    assert_eq!(gen["status"], "cached", "{s}");
    assert_eq!(gen["reason"], "record");
    assert!(gen["saved_ms"].is_u64(), "{gen}");
    assert_eq!(
        (s["ran"].as_u64(), s["cached"].as_u64()),
        (Some(0), Some(1))
    );
    // Nothing delivered: no block on stderr, an empty list in the file.
    assert_eq!(s["delivered"], Value::Array(vec![]));
    assert!(!r.stderr.contains("delivered:"), "{}", r.stderr);
}

#[test]
fn a_failed_run_still_writes_its_summary_with_the_error_and_the_exit_code() {
    let p = two_tasks();
    let r = p.run(&["--keep-going", "run", "--summary", "s.json"]);
    assert_eq!(r.code, 1, "{}", r.all());
    let s = summary(&p, "s.json");
    assert_eq!(s["exit_code"], 1);
    assert_eq!(s["failed"], 1);
    let fail = task(&s, "fail");
    assert_eq!(fail["status"], "failed");
    assert!(
        fail["reason"].as_str().unwrap().contains('7'),
        "the error names the exit status: {fail}"
    );
    assert_eq!(task(&s, "gen")["status"], "ran");
}

#[test]
fn a_summary_that_cannot_be_written_is_an_environment_error_after_the_run() {
    let p = two_tasks();
    p.file("blocker", "a file where the summary's directory would be");
    let r = p.run(&["run", "gen", "--summary", "blocker/s.json"]);
    assert_eq!(r.code, 3, "{}", r.all());
    assert!(
        r.stderr
            .contains("cannot write the run summary to blocker/s.json"),
        "{}",
        r.stderr
    );
    // The run itself happened.
    assert_eq!(p.read("runs.log").lines().count(), 1);
}

/// 2026-12-02T06:10:00Z: RFC 3339 in UTC, to the second.
fn chrono_like(s: &str) -> bool {
    let b = s.as_bytes();
    s.len() == 20
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'Z'
}
