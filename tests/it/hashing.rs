//! Files over 1 MiB take the memory-mapped, multi-threaded hashing path: same digests as
//! blake3 over the whole file, a change past the first MiB is seen, big outputs restore.

use std::fs;

use crate::support::Project;

fn big(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2654435761).to_le_bytes()[1] ^ seed)
        .collect()
}

#[test]
fn files_over_one_mib_are_hashed_whole_and_restored_whole() {
    let p = Project::new();
    let len = 3 * 1024 * 1024 + 17;
    let mut data = big(len, 1);
    fs::write(p.p("big.bin"), &data).unwrap();
    crate::support::backdate(&p.p("big.bin"));
    p.config(
        r#"
[tasks.copy]
kind = "exec"
run = "cp big.bin out.bin; echo x >> runs.log"
inputs = ["big.bin"]
outputs = ["out.bin"]
"#,
    );
    let r = p.json(&["run"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(r.ran(), ["copy"]);

    // The recorded digest is blake3 of every byte.
    let exp = p.run(&["explain", "copy", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&exp.stdout).unwrap();
    let recorded = v["fingerprint"]["inputs"]["big.bin"].to_string();
    let want = blake3::hash(&data).to_hex().to_string();
    assert!(recorded.contains(&want), "{recorded} vs {want}");

    // One byte changed near the end (same size): the task runs again.
    data[len - 5] ^= 0xff;
    fs::write(p.p("big.bin"), &data).unwrap();
    let r = p.json(&["run"]);
    assert_eq!(r.ran(), ["copy"], "{}", r.all());
    assert_eq!(
        r.outcome("copy")["reason"]["changes"][0]["path"],
        "big.bin",
        "{}",
        r.all()
    );
    let summary = r
        .events()
        .into_iter()
        .find(|e| e["event"] == "run_finished")
        .unwrap();
    assert!(summary["summary"]["files_hashed"].as_u64().unwrap() >= 1);

    // The big output comes back byte for byte without running the command.
    fs::remove_file(p.p("out.bin")).unwrap();
    let r = p.json(&["run"]);
    assert_eq!(r.cached(), ["copy"], "{}", r.all());
    assert!(
        fs::read(p.p("out.bin")).unwrap() == data,
        "restored output differs"
    );
    assert_eq!(p.read("runs.log").lines().count(), 2);
}
