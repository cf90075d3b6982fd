//! The sidecar next to each verified dump (`<file>.json`): its sha256 and size, the server's
//! version, and the row count of every table in the dump's snapshot. A `.dump` with no
//! sidecar was never verified by lifeos; a sidecar is written only after the full read.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Sidecar {
    /// The dump's file name (same directory).
    pub file: String,
    pub sha256: String,
    pub size: u64,
    /// The database name inside the server.
    pub database: String,
    pub server_version: String,
    /// UTC, RFC 3339.
    pub created: String,
    /// `custom` (pg_dump -Fc).
    pub format: String,
    /// `schema.table` (quoted as pg_dump quotes it) → rows, in the dump's snapshot.
    pub tables: BTreeMap<String, u64>,
    /// How it was verified before it was renamed into place.
    pub verified: String,
}

/// `x.dump` → `x.dump.json`.
pub fn path_of(dump: &Path) -> PathBuf {
    let mut s = dump.as_os_str().to_owned();
    s.push(".json");
    PathBuf::from(s)
}

/// `x` → `x.partial`: where a file is written before it is complete.
pub fn partial(p: &Path) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(".partial");
    PathBuf::from(s)
}

impl Sidecar {
    pub fn read(dump: &Path) -> Result<Sidecar, String> {
        Self::read_at(&path_of(dump))
    }

    /// A sidecar kept elsewhere than beside its dump (a download).
    pub fn read_at(p: &Path) -> Result<Sidecar, String> {
        let text = fs::read(p).map_err(|e| {
            format!(
                "cannot read the sidecar {}: {e}; without it the backup is unverified",
                p.display()
            )
        })?;
        serde_json::from_slice(&text).map_err(|e| format!("{}: not a sidecar: {e}", p.display()))
    }

    /// Write to `<sidecar>.partial` and fsync; the caller renames it into place.
    pub fn write_partial(&self, dump: &Path) -> std::io::Result<PathBuf> {
        let p = partial(&path_of(dump));
        let mut f = fs::File::create(&p)?;
        f.write_all(&serde_json::to_vec_pretty(self).expect("serializes"))?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        Ok(p)
    }
}

/// sha256 (hex) and size of a file.
pub fn sha256_file(p: &Path) -> std::io::Result<(String, u64)> {
    let mut f = fs::File::open(p)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finish())
}

/// A running sha256 and byte count.
pub struct Sha256 {
    ctx: ring::digest::Context,
    size: u64,
}

impl Default for Sha256 {
    fn default() -> Self {
        Self::new()
    }
}

impl Sha256 {
    pub fn new() -> Self {
        Self {
            ctx: ring::digest::Context::new(&ring::digest::SHA256),
            size: 0,
        }
    }

    pub fn update(&mut self, b: &[u8]) {
        self.ctx.update(b);
        self.size += b.len() as u64;
    }

    /// (hex digest, size).
    pub fn finish(self) -> (String, u64) {
        let d = self.ctx.finish();
        let hex = d.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        (hex, self.size)
    }
}

/// Check a dump against its sidecar (at `side`) before anything reads it: size, then sha256.
pub fn check(dump: &Path, side: &Path) -> Result<Sidecar, String> {
    let side = Sidecar::read_at(side)?;
    let (sha, size) =
        sha256_file(dump).map_err(|e| format!("cannot read {}: {e}", dump.display()))?;
    if size != side.size {
        return Err(format!(
            "{}: size {size} bytes, but its sidecar says {} (truncated or replaced)",
            dump.display(),
            side.size
        ));
    }
    if sha != side.sha256 {
        return Err(format!(
            "{}: sha256 {sha} does not match its sidecar's {} (the file is damaged)",
            dump.display(),
            side.sha256
        ));
    }
    Ok(side)
}

/// Row counts that differ between what the sidecar says and what was found: one line each.
pub fn count_differences(
    expected: &BTreeMap<String, u64>,
    found: &BTreeMap<String, u64>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (t, n) in expected {
        match found.get(t) {
            Some(m) if m == n => {}
            Some(m) => out.push(format!("{t}: {m} rows, expected {n}")),
            None => out.push(format!("{t}: missing, expected {n} rows")),
        }
    }
    for (t, m) in found {
        if !expected.contains_key(t) {
            out.push(format!("{t}: {m} rows, not in the backup"));
        }
    }
    out
}

/// Make a file's directory entry durable (after a rename into it).
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_known_input() {
        let mut h = Sha256::new();
        h.update(b"abc");
        assert_eq!(
            h.finish(),
            (
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad".into(),
                3
            )
        );
    }

    #[test]
    fn differences_name_the_table() {
        let e = BTreeMap::from([("public.a".to_string(), 3), ("public.b".to_string(), 1)]);
        let f = BTreeMap::from([("public.a".to_string(), 2), ("public.c".to_string(), 1)]);
        let d = count_differences(&e, &f);
        assert_eq!(
            d,
            [
                "public.a: 2 rows, expected 3",
                "public.b: missing, expected 1 rows",
                "public.c: 1 rows, not in the backup"
            ]
        );
        assert!(count_differences(&e, &e).is_empty());
    }
}
