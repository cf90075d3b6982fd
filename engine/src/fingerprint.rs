//! A fingerprint is everything that determines a task's result, as a sorted serde struct.
//! It is stored as JSON with each record, so `lifeos explain` can diff two runs field by field.
//! The `Key` is blake3 of a compact length-prefixed encoding of its fields ([`key_of`]): the
//! JSON (hex dependency keys, quoted field names) was twice the bytes to hash.

use std::collections::BTreeMap;

use lifeos_cache::names;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use lifeos_cache::ActionKey as Key;

/// Bump when the meaning of a fingerprint changes, so old records stop matching.
/// 2: keys hash the binary encoding of [`key_of`] (1 hashed the JSON); `explain` of a
/// record from before says the format changed.
pub const FINGERPRINT_VERSION: u32 = 2;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Fingerprint {
    pub version: u32,
    pub kind: String,
    /// The task's canonical config: maps sorted, paths relative to the project root.
    pub config: Value,
    /// Input files: relative path → content digest (with `+x` when executable).
    pub inputs: BTreeMap<String, String>,
    /// Declared environment variables and their values (`None`: unset).
    pub env: BTreeMap<String, Option<String>>,
    /// Secrets as keyed hashes; the value itself is never stored.
    pub secrets: BTreeMap<String, String>,
    /// Dependency task → its key.
    pub deps: BTreeMap<String, Key>,
    /// Kind-specific facts: base image IDs, the identity of a database, ...
    pub extras: BTreeMap<String, String>,
}

impl Fingerprint {
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("fingerprint serializes")
    }

    pub fn key(&self) -> Key {
        key_of(Fields {
            version: self.version,
            kind: &self.kind,
            config: |out: &mut Vec<u8>| write_value(out, &self.config),
            inputs: &self.inputs,
            env: &self.env,
            secrets: &self.secrets,
            deps: self.deps.iter().map(|(k, v)| (k.as_str(), v)),
            extras: &self.extras,
        })
    }

    /// What changed from `old` to `self`, most telling first.
    pub fn diff(&self, old: &Fingerprint) -> Vec<Change> {
        let mut out = Vec::new();
        if self.version != old.version {
            out.push(Change::Version);
        }
        if self.kind != old.kind {
            out.push(Change::Kind {
                old: old.kind.clone(),
                new: self.kind.clone(),
            });
        }
        for (name, new) in &self.deps {
            if old.deps.get(name) != Some(new) {
                out.push(Change::Dep { name: name.clone() });
            }
        }
        for name in old.deps.keys().filter(|n| !self.deps.contains_key(*n)) {
            out.push(Change::Dep { name: name.clone() });
        }
        diff_maps(&old.inputs, &self.inputs, |path, o, n| match (o, n) {
            (None, Some(_)) => Change::FileAdded { path },
            (Some(_), None) => Change::FileRemoved { path },
            _ => Change::FileChanged { path },
        })
        .into_iter()
        .for_each(|c| out.push(c));
        let mut cfg = Vec::new();
        diff_json("", &old.config, &self.config, &mut cfg);
        out.extend(cfg);
        out.extend(diff_maps(&old.env, &self.env, |name, _, _| Change::Env {
            name,
        }));
        out.extend(diff_maps(&old.secrets, &self.secrets, |name, _, _| {
            Change::Secret { name }
        }));
        out.extend(diff_maps(&old.extras, &self.extras, |name, o, n| {
            Change::Extra {
                name,
                old: o.cloned(),
                new: n.cloned(),
            }
        }));
        out
    }
}

/// A fingerprint's fields, borrowed: what its key hashes. On a cache hit the key is all a
/// run needs, so the scheduler keys a task from these without building a [`Fingerprint`]
/// (its config `Value`, its copies of the dependency names) at all.
pub struct Fields<'a, C, D> {
    pub version: u32,
    pub kind: &'a str,
    /// Writes the canonical config as serde_json would ([`write_value`], [`crate::Task::write_config`]).
    pub config: C,
    pub inputs: &'a BTreeMap<String, String>,
    pub env: &'a BTreeMap<String, Option<String>>,
    pub secrets: &'a BTreeMap<String, String>,
    /// Dependency name → key, sorted by name (as a `BTreeMap<String, Key>` iterates).
    pub deps: D,
    pub extras: &'a BTreeMap<String, String>,
}

/// The key of `fields`: the same as the key of the [`Fingerprint`] made of them.
pub fn key_of<'d, C, D>(fields: Fields<'_, C, D>) -> Key
where
    C: FnOnce(&mut Vec<u8>),
    D: Iterator<Item = (&'d str, &'d Key)>,
{
    // Keyed by a key derived once per process: `new_derive_key` per call re-hashes
    // the context string, a measurable part of keying 10,000 tasks. The context names
    // the encoding: a key of another encoding can never equal one of this.
    static DOMAIN: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();
    let domain = DOMAIN.get_or_init(|| blake3::derive_key("lifeos 2026 task fingerprint v2", b""));
    // Encoded into one reused buffer: no allocation per task on a no-op.
    thread_local! {
        static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    BUF.with_borrow_mut(|buf| {
        buf.clear();
        encode(buf, fields);
        Key::from_hash(blake3::keyed_hash(domain, buf))
    })
}

/// What the key hashes: the fields in their fixed order, each string and map prefixed with
/// its length (so no two different fingerprints encode alike), dependency keys as their
/// 32 bytes, the config as its canonical JSON.
fn encode<'d, C, D>(out: &mut Vec<u8>, f: Fields<'_, C, D>)
where
    C: FnOnce(&mut Vec<u8>),
    D: Iterator<Item = (&'d str, &'d Key)>,
{
    out.extend_from_slice(&f.version.to_le_bytes());
    put_str(out, f.kind);
    let at = out.len();
    (f.config)(out);
    prefix_len(out, at);
    put_map(out, f.inputs, |out, v| put_str(out, v));
    put_map(out, f.env, |out, v| match v {
        Some(v) => {
            out.push(1);
            put_str(out, v);
        }
        None => out.push(0),
    });
    put_map(out, f.secrets, |out, v| put_str(out, v));
    let at = out.len();
    for (name, k) in f.deps {
        put_str(out, name);
        out.extend_from_slice(&k.0);
    }
    prefix_len(out, at);
    put_map(out, f.extras, |out, v| put_str(out, v));
}

/// `n` as LEB128: one byte for the short strings and small maps of a fingerprint.
fn put_len(out: &mut Vec<u8>, mut n: usize) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_len(out, s.len());
    out.extend_from_slice(s.as_bytes());
}

/// Puts the byte length of what was written since `at` in front of it.
fn prefix_len(out: &mut Vec<u8>, at: usize) {
    let mut len = Vec::<u8>::new();
    let n = out.len() - at;
    if n < 0x80 {
        out.insert(at, n as u8);
        return;
    }
    put_len(&mut len, n);
    out.splice(at..at, len);
}

fn put_map<V>(out: &mut Vec<u8>, m: &BTreeMap<String, V>, mut value: impl FnMut(&mut Vec<u8>, &V)) {
    put_len(out, m.len());
    for (k, v) in m {
        put_str(out, k);
        value(out, v);
    }
}

/// A JSON string as serde_json writes it: as is unless it holds `"`, `\\` or a control
/// character, which serde_json escapes.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    if s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        serde_json::to_writer(&mut *out, s).expect("a string serializes");
        return;
    }
    out.reserve(s.len() + 2);
    out.push(b'"');
    out.extend_from_slice(s.as_bytes());
    out.push(b'"');
}

/// An array of strings as serde_json writes it.
pub fn write_strs(out: &mut Vec<u8>, a: &[String]) {
    out.push(b'[');
    for (i, s) in a.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, s);
    }
    out.push(b']');
}

/// A `Value` as serde_json writes it (maps in their own iteration order, as serde_json).
pub fn write_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::String(s) => write_str(out, s),
        Value::Array(a) => {
            out.push(b'[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, x);
            }
            out.push(b']');
        }
        Value::Object(m) => {
            out.push(b'{');
            for (i, (k, x)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(out, k);
                out.push(b':');
                write_value(out, x);
            }
            out.push(b'}');
        }
        Value::Number(_) => serde_json::to_writer(&mut *out, v).expect("a number serializes"),
    }
}

fn diff_maps<V: PartialEq>(
    old: &BTreeMap<String, V>,
    new: &BTreeMap<String, V>,
    mut f: impl FnMut(String, Option<&V>, Option<&V>) -> Change,
) -> Vec<Change> {
    let mut out = Vec::new();
    for (k, n) in new {
        match old.get(k) {
            Some(o) if o == n => {}
            o => out.push(f(k.clone(), o, Some(n))),
        }
    }
    for (k, o) in old {
        if !new.contains_key(k) {
            out.push(f(k.clone(), Some(o), None));
        }
    }
    out
}

fn diff_json(path: &str, old: &Value, new: &Value, out: &mut Vec<Change>) {
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => {
            let mut keys: Vec<&String> = o.keys().chain(n.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                diff_json(
                    &p,
                    o.get(k).unwrap_or(&Value::Null),
                    n.get(k).unwrap_or(&Value::Null),
                    out,
                );
            }
        }
        (o, n) if o != n => out.push(Change::Config {
            field: path.to_string(),
            old: o.clone(),
            new: n.clone(),
        }),
        _ => {}
    }
}

/// One difference between the fingerprint of this run and the last successful one.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum Change {
    Version,
    Kind {
        old: String,
        new: String,
    },
    FileChanged {
        path: String,
    },
    FileAdded {
        path: String,
    },
    FileRemoved {
        path: String,
    },
    Config {
        field: String,
        old: Value,
        new: Value,
    },
    Env {
        name: String,
    },
    Secret {
        name: String,
    },
    Dep {
        name: String,
    },
    Extra {
        name: String,
        old: Option<String>,
        new: Option<String>,
    },
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::Version => write!(f, "lifeos fingerprint format changed"),
            Change::Kind { old, new } => write!(f, "kind changed from {old} to {new}"),
            Change::FileChanged { path } => write!(f, "file {} changed", names::display(path)),
            Change::FileAdded { path } => write!(f, "file {} added", names::display(path)),
            Change::FileRemoved { path } => write!(f, "file {} removed", names::display(path)),
            Change::Config { field, old, new } => {
                write!(f, "config field `{field}` changed: {old} → {new}")
            }
            // Env values may be sensitive enough; say which, not what.
            Change::Env { name } => write!(f, "env {name} changed"),
            Change::Secret { name } => write!(f, "secret {name} changed"),
            Change::Dep { name } => write!(f, "dependency {name} changed"),
            Change::Extra { name, old, new } => match (old, new) {
                (Some(o), Some(n)) => write!(f, "{name} changed: {o} → {n}"),
                (None, Some(n)) => write!(f, "{name} added: {n}"),
                (Some(o), None) => write!(f, "{name} removed (was {o})"),
                (None, None) => write!(f, "{name} changed"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fp() -> Fingerprint {
        Fingerprint {
            version: FINGERPRINT_VERSION,
            kind: "exec".into(),
            config: json!({"run": "make", "outputs": ["out"]}),
            inputs: BTreeMap::from([("a.txt".into(), "d1".into())]),
            ..Default::default()
        }
    }

    fn odd() -> Fingerprint {
        let odd = "q\"b\\s\n\t\u{1}\u{1f}\u{7f}é/</script>";
        Fingerprint {
            version: 4_000_000_000,
            kind: odd.into(),
            config: json!({
                "run": ["sh", "-c", odd], odd: {"z": null, "a": [true, false, 1, -2, 3.5, 1e300, 0.1]},
                "n": -9_223_372_036_854_775_808i64, "u": u64::MAX, "e": [], "o": {}
            }),
            inputs: BTreeMap::from([(odd.into(), "d+x".into()), ("a".into(), odd.into())]),
            env: BTreeMap::from([("A".into(), None), (odd.into(), Some(odd.into()))]),
            secrets: BTreeMap::from([("S".into(), "h".into())]),
            deps: BTreeMap::from([("base".into(), Key([7; 32])), (odd.into(), Key([0; 32]))]),
            extras: BTreeMap::from([
                ("x".into(), String::new()),
                ("y".repeat(300), "z".repeat(200)),
            ]),
        }
    }

    /// The config part of the key is the config's serde_json bytes, written directly.
    #[test]
    fn written_config_is_serde_json() {
        for f in [Fingerprint::default(), fp(), odd()] {
            let mut direct = Vec::new();
            write_value(&mut direct, &f.config);
            assert_eq!(
                String::from_utf8(direct).unwrap(),
                serde_json::to_string(&f.config).unwrap()
            );
        }
    }

    /// One key pinned: a change to the encoding would orphan every cache, so it must be on
    /// purpose (with a new domain and `FINGERPRINT_VERSION`).
    #[test]
    fn key_is_pinned() {
        assert_eq!(
            fp().key().to_hex(),
            "d53425e5a5057cdece6dc477a47d3c579e4d86ade59a9acf5144b4e2657c364c"
        );
        // Long fields (two-byte lengths) key too, and differently.
        assert_ne!(odd().key(), fp().key());
    }

    /// Bytes moved from one field or entry to its neighbour change the key: every string
    /// and map carries its length.
    #[test]
    fn fields_do_not_run_together() {
        let base = fp();
        let variants: Vec<fn(&mut Fingerprint)> = vec![
            |f| f.kind = "exe".into(),
            |f| f.kind = "execc".into(),
            |f| {
                f.inputs =
                    BTreeMap::from([("a.txt".into(), "d".into()), ("1".into(), String::new())])
            },
            |f| f.inputs = BTreeMap::from([("a.tx".into(), "td1".into())]),
            |f| f.inputs.clear(),
            |f| f.env = BTreeMap::from([("a.txt".into(), None)]),
            |f| f.env = BTreeMap::from([("A".into(), Some(String::new()))]),
            |f| f.secrets = BTreeMap::from([("a.txt".into(), "d1".into())]),
            |f| f.extras = BTreeMap::from([("a.txt".into(), "d1".into())]),
            |f| f.deps = BTreeMap::from([("a".into(), Key([0; 32]))]),
            |f| f.deps = BTreeMap::from([("a".into(), Key([1; 32]))]),
            |f| f.deps = BTreeMap::from([("b".into(), Key([0; 32]))]),
            |f| f.config = json!({"run": "make", "outputs": ["out", ""]}),
            |f| f.version += 1,
        ];
        let mut keys = vec![base.key()];
        for v in &variants {
            let mut f = fp();
            v(&mut f);
            keys.push(f.key());
        }
        let mut unique = keys.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), keys.len(), "two variants keyed alike");
    }

    #[test]
    fn key_is_stable_and_sensitive() {
        let a = fp();
        assert_eq!(a.key(), fp().key());
        let mut b = fp();
        b.inputs.insert("b.txt".into(), "d2".into());
        assert_ne!(a.key(), b.key());
    }

    #[test]
    fn diff_names_files_config_and_deps() {
        let old = fp();
        let mut new = fp();
        new.inputs.clear();
        new.inputs.insert("a2.txt".into(), "d1".into());
        new.config = json!({"run": "make all", "outputs": ["out"]});
        new.deps.insert("base".into(), Key([1; 32]));
        let d: Vec<String> = new.diff(&old).iter().map(|c| c.to_string()).collect();
        assert_eq!(
            d,
            [
                "dependency base changed",
                "file a2.txt added",
                "file a.txt removed",
                "config field `run` changed: \"make\" → \"make all\"",
            ]
        );
    }
}
