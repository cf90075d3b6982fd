//! `lifeos cache stats|prune|clean`.

use crate::support::{all_bytes, Project};

#[test]
fn stats_prune_and_clean() {
    let p = Project::new();
    p.config("[tasks.a]\nkind = \"exec\"\nrun = \"echo hi > a.txt\"\noutputs = [\"a.txt\"]\n");
    assert_eq!(p.json(&["run"]).code, 0);
    let s = p.run(&["cache", "stats", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&s.stdout).unwrap();
    assert_eq!(v["records"], 1);
    let blobs = v["blobs"].as_u64().unwrap();
    assert!(blobs >= 3, "fingerprint, log and output: {v}");
    let blob_files = || all_bytes(&p.p(".lifeos/blobs")).len() as u64;
    assert_eq!(blob_files(), blobs);

    let r = p.run(&["cache", "prune", "--older-than", "7d", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["records_removed"], 0, "{}", r.all());
    assert_eq!(v["blobs_removed"], 0, "{}", r.all());
    assert_eq!(blob_files(), blobs, "a kept record keeps its blobs");
    assert_eq!(p.json(&["run"]).cached(), ["a"]);

    std::thread::sleep(std::time::Duration::from_millis(2100));
    let r = p.run(&["cache", "prune", "--older-than", "1s", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["records_removed"], 1, "{}", r.all());
    // The record's blobs went with it: nothing else refers to them.
    assert_eq!(v["blobs_removed"], blobs, "{}", r.all());
    assert!(v["bytes_freed"].as_u64().unwrap() > 0, "{}", r.all());
    assert_eq!(blob_files(), 0, "blob files left after prune");
    let s = p.run(&["cache", "stats", "--json"]);
    let stats: serde_json::Value = serde_json::from_str(&s.stdout).unwrap();
    assert_eq!(stats["blobs"], 0, "{}", s.all());
    assert_eq!(p.json(&["run"]).ran(), ["a"]);

    assert_eq!(p.run(&["cache", "clean"]).code, 0);
    let s = p.run(&["cache", "stats", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&s.stdout).unwrap();
    assert_eq!(v["records"], 0);
    assert_eq!(p.json(&["run"]).ran(), ["a"]);
    let bad = p.run(&["cache", "prune", "--older-than", "soon"]);
    assert_eq!(bad.code, 2);
}
