//! Every config error: exit 2, file:line:col and the offending text, nothing executed.

use crate::support::{Project, Run};

fn check(toml: &str, line_col: &str, needles: &[&str]) -> Run {
    let p = Project::new();
    p.config(toml);
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
    assert!(
        !p.p(".lifeos").exists(),
        "no cache is created on a config error"
    );
    r
}

const OK_TASK: &str = "[tasks.ok]\nkind = \"exec\"\nrun = \"touch ran\"\n";

#[test]
fn unknown_field() {
    check(
        &format!("{OK_TASK}\n[tasks.x]\nkind = \"exec\"\nrun = \"true\"\ninptus = [\"a\"]\n"),
        "8:1",
        &["unknown field `inptus`", "inptus = [\"a\"]"],
    );
}

#[test]
fn unknown_kind() {
    check(
        &format!("{OK_TASK}\n[tasks.x]\nkind = \"shell\"\n"),
        "6:8",
        &["unknown variant `shell`", "kind = \"shell\""],
    );
}

#[test]
fn field_of_another_kind() {
    check(
        &format!("{OK_TASK}\n[tasks.x]\nkind = \"exec\"\nrun = \"true\"\ntarget = \"web\"\n"),
        "8:10",
        &["field `target` does not apply to kind `exec`"],
    );
}

#[test]
fn unknown_dependency_with_did_you_mean() {
    check(
        &format!("{OK_TASK}\n[tasks.x]\nkind = \"exec\"\nrun = \"true\"\ndeps = [\"okk\"]\n"),
        "8:9",
        &["unknown dependency `okk`", "did you mean `ok`?"],
    );
}

#[test]
fn cycle_names_every_task_on_it() {
    let toml = r#"[tasks.a]
kind = "exec"
run = "touch ran"
deps = ["c"]

[tasks.b]
kind = "exec"
run = "true"
deps = ["a"]

[tasks.c]
kind = "exec"
run = "true"
deps = ["b"]
"#;
    check(toml, "4:9", &["dependency cycle: a → c → b → a"]);
}

#[test]
fn bad_glob() {
    check(
        &format!("{OK_TASK}\n[tasks.x]\nkind = \"exec\"\nrun = \"true\"\ninputs = [\"src/**\", \"src/[a\"]\n"),
        "8:21",
        &["bad glob in inputs", "\"src/[a\""],
    );
}

#[test]
fn unknown_variable() {
    check(
        &format!("[vars]\nregistry = \"r\"\n\n{OK_TASK}\n[tasks.x]\nkind = \"exec\"\nrun = \"push ${{vars.registy}}/x\"\n"),
        "10:13",
        &["unknown variable `${vars.registy}`", "did you mean `${vars.registry}`?"],
    );
}

#[test]
fn toml_syntax_error() {
    check(
        &format!("{OK_TASK}\n[tasks.x\nkind = \"exec\"\n"),
        "5:9",
        &["unclosed table"],
    );
}

#[test]
fn invalid_values() {
    let r = check(
        &format!("{OK_TASK}\n[tasks.x]\nkind = \"exec\"\nrun = \"true\"\ntimeout = \"soon\"\ncache = {{ every = \"often\" }}\n"),
        "8:11",
        &["invalid timeout `soon`", "invalid `cache` value"],
    );
    assert!(r.stderr.contains("2 config errors"), "{}", r.stderr);
}

#[test]
fn missing_dockerfile() {
    check(
        &format!("{OK_TASK}\n[tasks.img]\nkind = \"image\"\ncontext = \".\"\ndockerfile = \"nope/Dockerfile\"\n"),
        "8:14",
        &["Dockerfile `nope/Dockerfile` not found"],
    );
}

#[test]
fn no_config_file_is_a_usage_error() {
    let p = Project::new();
    let r = p.run(&["run"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("no lifeos.toml"), "{}", r.all());
}
