//! `plan`, `explain` and `graph`: the why of every rerun, and the shape of the graph.

use std::fs;

use crate::support::Project;

fn project() -> Project {
    let p = Project::new();
    p.file("src/main.c", "int main(){}").config(
        r#"
[tasks.compile]
kind = "exec"
run = "echo compile >> log; mkdir -p out; cp src/main.c out/main.o"
inputs = ["src/**"]
outputs = ["out/**"]

[tasks.package]
kind = "exec"
run = "echo package >> log"
deps = ["compile"]
"#,
    );
    p
}

#[test]
fn plan_says_what_would_run_and_why_without_running() {
    let p = project();
    let r = p.run(&["plan"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(
        r.stdout.contains("compile") && r.stdout.contains("will run  first run"),
        "{}",
        r.all()
    );
    assert!(!p.p("log").exists(), "plan executes nothing");
    assert_eq!(p.json(&["run"]).code, 0);
    let r = p.run(&["plan"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let lines: Vec<&str> = r.stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(
        lines.len() >= 2
            && lines.iter().any(|l| l.contains("compile"))
            && lines.iter().any(|l| l.contains("package"))
            && lines
                .iter()
                .filter(|l| l.contains("compile") || l.contains("package"))
                .all(|l| l.contains("cached")),
        "{}",
        r.all()
    );
    fs::write(p.p("src/main.c"), "int main(){return 1;}").unwrap();
    fs::write(p.p("src/new.h"), "").unwrap();
    let r = p.run(&["plan"]);
    assert!(
        r.stdout
            .contains("will run  file src/main.c changed, file src/new.h added"),
        "{}",
        r.all()
    );
    assert!(
        r.stdout.contains("will run  dependency compile changed"),
        "{}",
        r.all()
    );
    let j = p.run(&["plan", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&j.stdout).unwrap();
    assert_eq!(v[0]["task"], "compile");
    assert_eq!(v[0]["outcome"]["outcome"], "would_run");
    assert_eq!(
        v[0]["outcome"]["reason"]["changes"][0]["path"],
        "src/main.c"
    );
    assert_eq!(p.read("log").lines().count(), 2, "plan ran nothing");
}

#[test]
fn explain_diffs_field_by_field() {
    let p = project();
    let r = p.run(&["explain", "package"]);
    assert!(r.stdout.contains("previous: none"), "{}", r.all());
    assert_eq!(p.json(&["run"]).code, 0);
    let r = p.run(&["explain", "compile"]);
    assert!(r.stdout.contains("no differences"), "{}", r.all());
    let cfg = p
        .read("lifeos.toml")
        .replace("echo compile >> log", "echo compile2 >> log");
    p.config(&cfg);
    fs::write(p.p("src/main.c"), "changed").unwrap();
    let r = p.run(&["explain", "compile"]);
    assert_eq!(r.code, 0);
    assert!(r.stdout.contains("differences (2)"), "{}", r.all());
    assert!(r.stdout.contains("file src/main.c changed"), "{}", r.all());
    assert!(
        r.stdout.contains("config field `run` changed"),
        "{}",
        r.all()
    );
    let j = p.run(&["explain", "compile", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&j.stdout).unwrap();
    assert_eq!(v["changes"].as_array().unwrap().len(), 2);
    assert_eq!(v["fingerprint"]["kind"], "exec");
}

#[test]
fn pruned_outputs_in_the_blob_store_force_a_rerun() {
    let p = project();
    assert_eq!(p.json(&["run"]).code, 0);
    fs::remove_dir_all(p.p("out")).unwrap();
    fs::remove_dir_all(p.p(".lifeos/blobs")).unwrap();
    let r = p.json(&["run"]);
    assert_eq!(r.outcomes()["compile"], "ran", "{}", r.all());
    assert!(r.outcome("compile")["reason"]["detail"]
        .as_str()
        .unwrap()
        .contains("gone from the blob store"));
}

#[test]
fn graph_formats() {
    let p = project();
    let t = p.run(&["graph"]);
    assert!(
        t.stdout
            .contains("package (exec: echo package >> log) ← compile"),
        "{}",
        t.all()
    );
    let d = p.run(&["graph", "--format", "dot"]);
    assert!(
        d.stdout.starts_with("digraph lifeos {")
            && d.stdout.contains("\"compile\" -> \"package\";")
    );
    let m = p.run(&["graph", "--format", "mermaid"]);
    assert!(m.stdout.contains("compile --> package"), "{}", m.all());
    let j = p.run(&["graph", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&j.stdout).unwrap();
    assert_eq!(v["tasks"][1]["deps"][0], "compile");
    let only = p.run(&["graph", "compile"]);
    assert_eq!(only.code, 0, "{}", only.all());
    assert!(
        only.stdout.contains("compile (exec:") && !only.stdout.contains("package"),
        "{}",
        only.all()
    );
}
