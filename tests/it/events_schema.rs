//! The `--json` event stream is an interface (benches read `summary.files_hashed` and
//! `wall_ms`; CI tools read outcomes): its shape is checked against a golden file,
//! tests/it/golden/events.jsonl. After an intended change: `LIFEOS_BLESS=1 cargo test --test
//! it events_schema` rewrites it; review the diff.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use crate::support::Project;

/// Fields whose value names a variant (kept as is); every other leaf becomes its type.
const TAGS: [&str; 5] = ["event", "outcome", "reason", "change", "stream"];

fn shape(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| {
                    let s = if TAGS.contains(&k.as_str()) && v.is_string() {
                        v.clone()
                    } else {
                        shape(v)
                    };
                    (k.clone(), s)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.first().map(shape).into_iter().collect()),
        Value::String(_) => json!("string"),
        Value::Number(n) if n.is_u64() => json!("uint"),
        Value::Number(_) => json!("number"),
        Value::Bool(_) => json!("bool"),
        Value::Null => json!("null"),
    }
}

#[test]
fn json_events_match_the_golden_schema() {
    let p = Project::new();
    p.file("in.txt", "1").config(
        r#"
[tasks.build]
kind = "exec"
run = "cat in.txt > out.txt; echo built; echo warn >&2"
inputs = ["in.txt"]
outputs = ["out.txt"]

[tasks.flaky]
kind = "exec"
run = "test -f tried || { touch tried; exit 1; }"
retries = 1

[tasks.bad]
kind = "exec"
run = "echo broken; exit 4"

[tasks.after]
kind = "exec"
run = "true"
deps = ["bad"]
"#,
    );
    let mut shapes = BTreeSet::new();
    let first = p.json(&["run", "-j", "1", "--keep-going"]);
    assert_eq!(first.code, 1, "{}", first.all());
    p.file("in.txt", "2");
    let second = p.json(&["run", "-j", "1", "--keep-going"]);
    let plan = p.run(&["plan", "--json"]);
    for r in [&first, &second] {
        for e in r.events() {
            shapes.insert(shape(&e).to_string());
        }
    }
    let plan: Value = serde_json::from_str(&plan.stdout).unwrap();
    for row in plan.as_array().unwrap() {
        shapes.insert(format!("plan {}", shape(row)));
    }
    let got: String = shapes.into_iter().map(|s| s + "\n").collect();

    // What the benchmarks rely on, said outright.
    let finished = second
        .events()
        .into_iter()
        .find(|e| e["event"] == "run_finished")
        .expect("a run_finished event");
    assert!(finished["summary"]["files_hashed"].is_u64(), "{finished}");
    assert!(finished["summary"]["wall_ms"].is_u64(), "{finished}");
    assert_eq!(
        finished["summary"]["files_hashed"], 1,
        "in.txt only: {finished}"
    );

    let golden =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/golden/events.jsonl");
    if std::env::var_os("LIFEOS_BLESS").is_some() {
        std::fs::write(&golden, &got).unwrap();
    }
    let want = std::fs::read_to_string(&golden).unwrap_or_default();
    assert!(
        got == want,
        "the --json event schema changed; if intended, run with LIFEOS_BLESS=1 and review the diff.\n--- golden\n{want}\n--- now\n{got}"
    );
}
