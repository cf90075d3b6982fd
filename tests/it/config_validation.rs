//! Values the loader used to accept (or panic on): each is a config error with its
//! position, exit 2, and nothing runs. Also the config file itself: its type, size and
//! encoding, and property tests that feed generated and mutated configs to the binary.

use std::fs;

use crate::support::{Project, Run};

/// `toml` is rejected: exit 2, `lifeos.toml:LINE:COL`, every needle in stderr, nothing ran.
fn rejected(toml: &str, line_col: &str, needles: &[&str]) -> Run {
    let p = Project::new();
    p.file("ctx/Dockerfile", "FROM scratch\n").config(toml);
    let r = p.run(&["run"]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(
        r.stderr.contains(&format!("lifeos.toml:{line_col}")),
        "expected lifeos.toml:{line_col} in:\n{}",
        r.stderr
    );
    for n in needles {
        assert!(r.stderr.contains(n), "expected `{n}` in:\n{}", r.stderr);
    }
    assert!(!p.p("ran").exists(), "nothing may run on a config error");
    r
}

const OK_TASK: &str = "[tasks.ok]\nkind = \"exec\"\nrun = \"touch ran\"\n";

fn exec_with(field: &str) -> String {
    format!("{OK_TASK}\n[tasks.x]\nkind = \"exec\"\nrun = \"true\"\n{field}\n")
}

fn service_with(fields: &str) -> String {
    format!("{OK_TASK}\n[tasks.s]\nkind = \"service\"\nimage = \"busybox:latest\"\n{fields}\n")
}

// ---- outputs that would overwrite what a restore must never touch

#[test]
fn outputs_may_not_match_the_config_file() {
    rejected(
        &exec_with("outputs = [\"**\"]"),
        "8:12",
        &["may not include the config file `lifeos.toml`", "\"**\""],
    );
    rejected(
        &exec_with("outputs = [\"dist/**\", \"*.toml\"]"),
        "8:23",
        &["the config file `lifeos.toml`"],
    );
}

#[test]
fn outputs_may_not_reach_into_the_cache_or_git() {
    rejected(
        &exec_with("outputs = [\".lifeos/records/x\"]"),
        "8:12",
        &["the cache directory `.lifeos/`"],
    );
    rejected(&exec_with("outputs = [\".g*/HEAD\"]"), "8:12", &["`.git/`"]);
    // A cache moved by cache_dir is protected where it is.
    rejected(
        &format!(
            "[project]\ncache_dir = \"build/cache\"\n\n{}",
            exec_with("outputs = [\"build/**\"]")
        ),
        "11:12",
        &["the cache directory `build/cache/`"],
    );
}

#[test]
fn outputs_may_not_match_inputs_of_the_same_task() {
    rejected(
        &exec_with("inputs = [\"src/**\"]\noutputs = [\"src/gen/*.rs\"]"),
        "9:12",
        &["may not include an input of task `x`", "!dist/**"],
    );
}

#[test]
fn outputs_excluded_from_inputs_are_fine() {
    let p = Project::new();
    p.file("src/a.txt", "a").config(
        "[tasks.x]\nkind = \"exec\"\nrun = \"mkdir -p dist && cp src/a.txt dist/\"\ninputs = [\"**\", \"!dist/**\"]\noutputs = [\"dist/**\"]\n",
    );
    let r = p.json(&["run"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(r.ran(), ["x"]);
    assert_eq!(p.json(&["run"]).cached(), ["x"]);
}

// ---- names Docker sees

#[test]
fn project_names_follow_dockers_rules() {
    let long = "a".repeat(10_000);
    for bad in ["", "a/b", "..", long.as_str()] {
        rejected(
            &format!("[project]\nname = \"{bad}\"\n\n{OK_TASK}"),
            "2:8",
            &["invalid project name"],
        );
    }
}

#[test]
fn image_tags_follow_the_reference_grammar() {
    for (tag, why) in [
        ("UPPER:Case", "must be lowercase"),
        ("a:b:c:d", "not a repository name"),
        ("", "empty"),
    ] {
        rejected(
            &format!(
                "{OK_TASK}\n[tasks.img]\nkind = \"image\"\ncontext = \"ctx\"\ntag = \"{tag}\"\n"
            ),
            "8:7",
            &[&format!("invalid image tag `{tag}`"), why],
        );
    }
    rejected(
        &service_with("").replace("busybox:latest", "Busy Box"),
        "7:9",
        &["invalid image reference `Busy Box`"],
    );
}

#[test]
fn a_service_image_may_not_name_itself_or_an_exec_task() {
    rejected(
        &format!("{OK_TASK}\n[tasks.s]\nkind = \"service\"\nimage = \"s\"\n"),
        "7:9",
        &["invalid `image` of task `s`", "names this task itself"],
    );
    rejected(
        &format!("{OK_TASK}\n[tasks.s]\nkind = \"service\"\nimage = \"ok\"\n"),
        "7:9",
        &["names task `ok` of kind `exec`"],
    );
}

#[test]
fn ports_are_1_to_65535_on_an_ip_address() {
    rejected(
        &service_with("ports = [\"0:0\"]"),
        "8:10",
        &["invalid port `0:0`", "1 to 65535"],
    );
    rejected(
        &service_with("ports = [\"999.1.1.1:20001:80\"]"),
        "8:10",
        &["`999.1.1.1` is not an IP address"],
    );
}

// ---- durations

#[test]
fn durations_that_round_to_zero_are_refused_like_zero() {
    rejected(
        &exec_with("timeout = \"0.0000000001s\""),
        "8:11",
        &["invalid timeout", "at least 1ms"],
    );
    rejected(&exec_with("timeout = \"0s\""), "8:11", &["more than zero"]);
}

#[test]
fn absurd_durations_are_refused_not_panics() {
    rejected(
        &exec_with("timeout = \"99999999999999999999999s\""),
        "8:11",
        &["at most 7d"],
    );
    rejected(
        &exec_with("cache = { every = \"99999999999d\" }"),
        "8:20",
        &["invalid `cache` value", "at most 400d"],
    );
    rejected(
        &service_with("health = { cmd = \"true\", timeout = \"99999999999d\" }"),
        "8:36",
        &["invalid health timeout", "at most 1h"],
    );
    rejected(
        &service_with("health = { cmd = \"true\", interval = \"99999999999d\" }"),
        "8:37",
        &["invalid health interval", "at most 1h"],
    );
    rejected(
        &service_with("health = { cmd = \"true\", start_period = \"999999999999999999999d\" }"),
        "8:41",
        &["invalid health start_period", "at most 1d"],
    );
    rejected(
        &exec_with("retries = 4294967295"),
        "8:11",
        &["invalid retries", "at most 100"],
    );
}

#[test]
fn a_zero_start_period_is_accepted() {
    let p = Project::new();
    p.config(&service_with(
        "health = { cmd = \"true\", start_period = \"0s\" }",
    ));
    let r = p.run(&["graph"]);
    assert_eq!(r.code, 0, "{}", r.all());
}

// ---- the file itself

#[test]
fn device_files_and_fifos_are_refused_at_once() {
    let p = Project::new();
    for dev in ["/dev/zero", "/dev/urandom"] {
        let r = p.run(&["-f", dev, "run"]);
        assert_eq!(r.code, 2, "{}", r.all());
        assert!(
            r.stderr.contains("is a character device, not a file"),
            "{}",
            r.all()
        );
    }
    let fifo = p.p("fifo.toml");
    let ok = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(ok.success());
    let r = p.run(&["-f", "fifo.toml", "plan"]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("is a FIFO"), "{}", r.all());
    let r = p.run(&["-f", ".", "plan"]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("is a directory"), "{}", r.all());
}

#[test]
fn a_config_over_4_mib_is_refused() {
    let p = Project::new();
    let mut big = String::from(OK_TASK);
    big.push_str(&"# padding\n".repeat(450_000));
    p.config(&big);
    let r = p.run(&["run"]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("larger than 4 MiB"), "{}", r.all());
    assert!(!p.p("ran").exists());
}

#[test]
fn a_config_that_is_not_utf8_names_line_column_and_byte() {
    let p = Project::new();
    let mut bytes = OK_TASK.as_bytes().to_vec();
    bytes.extend_from_slice(b"\n[tasks.x]\nkind = \"exec\"\nrun = \"ec\xff\xfeho\"\n");
    fs::write(p.p("lifeos.toml"), &bytes).unwrap();
    let r = p.run(&["run"]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("lifeos.toml:7:10"), "{}", r.all());
    assert!(
        r.stderr
            .contains("not UTF-8: byte 0xFF at line 7, column 10 (byte offset 77)"),
        "{}",
        r.all()
    );
}

// ---- `sync` rules (lifeos watch)

#[test]
fn sync_rules_are_checked_before_anything_runs() {
    rejected(
        &service_with(r#"sync = [{ from = "web", to = "srv/www" }]"#),
        "8:",
        &["invalid sync `to` `srv/www`", "absolute path"],
    );
    rejected(
        &service_with(r#"sync = [{ from = "../web", to = "/srv" }]"#),
        "8:",
        &["sync `from` must be a path inside the project"],
    );
    rejected(
        &service_with(r#"sync = [{ from = "web", to = "/srv", owner = "node" }]"#),
        "8:",
        &["invalid sync `owner` `node`", "UID:GID"],
    );
    rejected(
        &service_with(r#"sync = [{ from = "web", to = "/srv", ignore = ["a[b"] }]"#),
        "8:",
        &["bad glob in sync `ignore`"],
    );
    rejected(
        &format!(
            "{OK_TASK}\n[tasks.c]\nkind = \"container\"\nimage = \"busybox:latest\"\nsync = [{{ from = \"web\", to = \"/srv\" }}]\n"
        ),
        "8:",
        &["only a service has a running container to sync into"],
    );
}
