//! `index.bin`: the index's records in a compact binary form, so a no-op run does not parse
//! the JSON index (10,000 tasks: 4.6 MB of JSON, a fifth of the run's instructions).
//!
//! `index.json` stays the truth. The binary copy carries the stamp (size, mtime, ctime,
//! inode) of the `index.json` it was made from and is used only while that file still has
//! it: any rewrite of the JSON (a run's flush, `cache prune`, an edit) makes a new stamp, and
//! the next load parses the JSON again. A short, cut or foreign file decodes to nothing.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;

use crate::digest::{ActionKey, FileDigest};
use crate::records::{ActionRecord, OutputFile, RECORD_VERSION};

/// The binary copy's file name in the cache directory.
pub const INDEX_BIN_FILE: &str = "index.bin";

const MAGIC: &[u8; 8] = b"LIFEOSIX";
/// Bump when the layout below changes.
const FORMAT: u32 = 1;

/// Records by task, as the store keeps them.
pub type TaskMap = HashMap<String, ActionRecord, foldhash::fast::RandomState>;

/// Which `index.json` a binary copy was made from: size, mtime, ctime (ns) and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonStamp([u64; 5]);

impl JsonStamp {
    pub fn of(m: &std::fs::Metadata) -> Self {
        Self([
            m.len(),
            m.mtime() as u64,
            m.mtime_nsec() as u64,
            m.ctime() as u64 ^ (m.ctime_nsec() as u64).rotate_left(32),
            m.ino(),
        ])
    }

    /// The stamp of the open file `f` (the same inode its contents are read from).
    pub fn of_file(f: &File) -> io::Result<Self> {
        Ok(Self::of(&f.metadata()?))
    }
}

pub fn encode<'a>(
    stamp: JsonStamp,
    records: impl ExactSizeIterator<Item = &'a ActionRecord>,
) -> Vec<u8> {
    let mut w = Vec::with_capacity(64 + records.len() * 256);
    w.extend_from_slice(MAGIC);
    put_u32(&mut w, FORMAT);
    put_u32(&mut w, RECORD_VERSION);
    for n in stamp.0 {
        put_u64(&mut w, n);
    }
    put_u32(&mut w, records.len() as u32);
    for r in records {
        put_u32(&mut w, r.version);
        put_str(&mut w, &r.task);
        put_str(&mut w, &r.kind);
        w.extend_from_slice(&r.key.0);
        put_u64(&mut w, r.finished_at);
        put_u64(&mut w, r.duration_ms);
        w.extend_from_slice(&r.fingerprint.0);
        match &r.log {
            Some(d) => {
                w.push(1);
                w.extend_from_slice(&d.0);
            }
            None => w.push(0),
        }
        put_u32(&mut w, r.outputs.len() as u32);
        for o in &r.outputs {
            put_str(&mut w, &o.path);
            w.extend_from_slice(&o.digest.0);
            put_u32(&mut w, o.mode);
            put_u64(&mut w, o.size);
            w.push(u8::from(o.symlink));
        }
        // Kind data as JSON text: small, and mostly `null`.
        put_str(
            &mut w,
            &serde_json::to_string(&r.data).expect("a Value serializes"),
        );
    }
    w.extend_from_slice(MAGIC);
    w
}

/// The records of `bytes` if it is a binary copy of the `index.json` stamped `stamp`.
pub fn decode(bytes: &[u8], stamp: JsonStamp) -> Option<TaskMap> {
    let mut r = Reader(bytes);
    if r.take(8)? != MAGIC || r.u32()? != FORMAT || r.u32()? != RECORD_VERSION {
        return None;
    }
    for n in stamp.0 {
        if r.u64()? != n {
            return None;
        }
    }
    let count = r.u32()? as usize;
    // Each record takes at least 100 bytes: a cut file cannot ask for a huge map.
    if count > bytes.len() / 100 {
        return None;
    }
    let mut map = TaskMap::with_capacity_and_hasher(count, Default::default());
    for _ in 0..count {
        let version = r.u32()?;
        let task = r.string()?;
        let kind = r.string()?;
        let key = ActionKey(r.digest()?);
        let finished_at = r.u64()?;
        let duration_ms = r.u64()?;
        let fingerprint = FileDigest(r.digest()?);
        let log = match r.take(1)?[0] {
            0 => None,
            1 => Some(FileDigest(r.digest()?)),
            _ => return None,
        };
        let n = r.u32()? as usize;
        if n > r.0.len() / 40 {
            return None;
        }
        let mut outputs = Vec::with_capacity(n);
        for _ in 0..n {
            outputs.push(OutputFile {
                path: r.string()?,
                digest: FileDigest(r.digest()?),
                mode: r.u32()?,
                size: r.u64()?,
                symlink: match r.take(1)?[0] {
                    0 => false,
                    1 => true,
                    _ => return None,
                },
            });
        }
        let data = match r.str()? {
            "null" => serde_json::Value::Null,
            text => serde_json::from_str(text).ok()?,
        };
        let record = ActionRecord {
            version,
            task,
            kind,
            key,
            finished_at,
            duration_ms,
            fingerprint,
            log,
            outputs,
            data,
        };
        map.insert(record.task.clone(), record);
    }
    (r.take(8)? == MAGIC && r.0.is_empty()).then_some(map)
}

fn put_u32(w: &mut Vec<u8>, n: u32) {
    w.extend_from_slice(&n.to_le_bytes());
}

fn put_u64(w: &mut Vec<u8>, n: u64) {
    w.extend_from_slice(&n.to_le_bytes());
}

fn put_str(w: &mut Vec<u8>, s: &str) {
    put_u32(w, s.len() as u32);
    w.extend_from_slice(s.as_bytes());
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    fn digest(&mut self) -> Option<[u8; 32]> {
        self.take(32)?.try_into().ok()
    }

    fn str(&mut self) -> Option<&'a str> {
        let n = self.u32()? as usize;
        std::str::from_utf8(self.take(n)?).ok()
    }

    fn string(&mut self) -> Option<String> {
        self.str().map(str::to_owned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(task: &str, n: u8) -> ActionRecord {
        ActionRecord {
            version: RECORD_VERSION,
            task: task.into(),
            kind: "exec".into(),
            key: ActionKey([n; 32]),
            finished_at: 1_700_000_000 + u64::from(n),
            duration_ms: 5,
            fingerprint: FileDigest::of(b"fp"),
            log: n.is_multiple_of(2).then(|| FileDigest::of(b"log")),
            outputs: vec![OutputFile {
                path: format!("out/{task}\u{e9}"),
                digest: FileDigest::of(task.as_bytes()),
                mode: 0o100644,
                size: 3,
                symlink: n.is_multiple_of(3),
            }],
            data: if n == 1 {
                serde_json::json!({"image_id": "sha256:abc", "n": [1, 2]})
            } else {
                serde_json::Value::Null
            },
        }
    }

    #[test]
    fn round_trip_for_its_stamp_only() {
        let recs: Vec<ActionRecord> = (0..7).map(|n| rec(&format!("t{n}"), n)).collect();
        let stamp = JsonStamp([1, 2, 3, 4, 5]);
        let bytes = encode(stamp, recs.iter());
        let map = decode(&bytes, stamp).expect("decodes");
        assert_eq!(map.len(), recs.len());
        for r in &recs {
            assert_eq!(map.get(&r.task), Some(r));
        }
        assert!(
            decode(&bytes, JsonStamp([1, 2, 3, 4, 6])).is_none(),
            "other stamp"
        );
        for cut in [0, 8, 40, bytes.len() / 2, bytes.len() - 1] {
            assert!(decode(&bytes[..cut], stamp).is_none(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode(&longer, stamp).is_none(), "trailing bytes");
        assert!(decode(b"{\"version\":1,\"tasks\":{}}", stamp).is_none());
    }
}
