//! `lifeos cache stats|prune|clean`.

use crate::support::Project;

#[test]
fn stats_prune_and_clean() {
    let p = Project::new();
    p.config("[tasks.a]\nkind = \"exec\"\nrun = \"echo hi > a.txt\"\noutputs = [\"a.txt\"]\n");
    assert_eq!(p.json(&["run"]).code, 0);
    let s = p.run(&["cache", "stats", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&s.stdout).unwrap();
    assert_eq!(v["records"], 1);
    assert!(
        v["blobs"].as_u64().unwrap() >= 3,
        "fingerprint, log and output: {v}"
    );

    let r = p.run(&["cache", "prune", "--older-than", "7d", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["records_removed"], 0, "{}", r.all());
    assert_eq!(p.json(&["run"]).cached(), ["a"]);

    std::thread::sleep(std::time::Duration::from_millis(2100));
    let r = p.run(&["cache", "prune", "--older-than", "1s", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["records_removed"], 1, "{}", r.all());
    assert_eq!(p.json(&["run"]).ran(), ["a"]);

    assert_eq!(p.run(&["cache", "clean"]).code, 0);
    let s = p.run(&["cache", "stats", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&s.stdout).unwrap();
    assert_eq!(v["records"], 0);
    assert_eq!(p.json(&["run"]).ran(), ["a"]);
    let bad = p.run(&["cache", "prune", "--older-than", "soon"]);
    assert_eq!(bad.code, 2);
}
