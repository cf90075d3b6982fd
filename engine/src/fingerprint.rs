//! A fingerprint is everything that determines a task's result, as a sorted serde struct.
//! It is stored as JSON with each record, so `lifeos explain` can diff two runs field by field.
//! The `Key` is blake3 of its canonical JSON.

use std::collections::BTreeMap;

use lifeos_cache::names;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use lifeos_cache::ActionKey as Key;

/// Bump when the meaning of a fingerprint changes, so old records stop matching.
pub const FINGERPRINT_VERSION: u32 = 1;

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
        hash_json(|buf| self.write_json(buf))
    }

    /// The bytes `serde_json::to_vec(self)` gives (the key hashes them), written directly:
    /// serde's generic path took two thirds of keying a task.
    fn write_json(&self, out: &mut Vec<u8>) {
        write_fields(
            out,
            Fields {
                version: self.version,
                kind: &self.kind,
                config: |out: &mut Vec<u8>| write_value(out, &self.config),
                inputs: &self.inputs,
                env: &self.env,
                secrets: &self.secrets,
                deps: self.deps.iter().map(|(k, v)| (k.as_str(), v)),
                extras: &self.extras,
            },
        );
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
    hash_json(|buf| write_fields(buf, fields))
}

/// blake3 of what `write` writes, keyed by the fingerprint domain.
fn hash_json(write: impl FnOnce(&mut Vec<u8>)) -> Key {
    // Keyed by a key derived once per process: `new_derive_key` per call re-hashes
    // the context string, a measurable part of keying 10,000 tasks.
    static DOMAIN: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();
    let domain = DOMAIN.get_or_init(|| blake3::derive_key("lifeos 2026 task fingerprint v1", b""));
    // Serialized into one reused buffer: no allocation per task on a no-op.
    thread_local! {
        static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    BUF.with_borrow_mut(|buf| {
        buf.clear();
        write(buf);
        Key::from_hash(blake3::keyed_hash(domain, buf))
    })
}

/// The JSON serde_json writes for a `Fingerprint` with these fields. Strings that need
/// escaping and the config's numbers go through serde_json itself.
fn write_fields<'d, C, D>(out: &mut Vec<u8>, f: Fields<'_, C, D>)
where
    C: FnOnce(&mut Vec<u8>),
    D: Iterator<Item = (&'d str, &'d Key)>,
{
    out.extend_from_slice(b"{\"version\":");
    let _ = std::io::Write::write_fmt(out, format_args!("{}", f.version));
    out.extend_from_slice(b",\"kind\":");
    write_str(out, f.kind);
    out.extend_from_slice(b",\"config\":");
    (f.config)(out);
    out.extend_from_slice(b",\"inputs\":");
    json_map(out, f.inputs, |out, v| write_str(out, v));
    out.extend_from_slice(b",\"env\":");
    json_map(out, f.env, |out, v| match v {
        Some(v) => write_str(out, v),
        None => out.extend_from_slice(b"null"),
    });
    out.extend_from_slice(b",\"secrets\":");
    json_map(out, f.secrets, |out, v| write_str(out, v));
    out.extend_from_slice(b",\"deps\":");
    out.push(b'{');
    for (i, (name, k)) in f.deps.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, name);
        out.push(b':');
        push_hex(out, &k.0);
    }
    out.push(b'}');
    out.extend_from_slice(b",\"extras\":");
    json_map(out, f.extras, |out, v| write_str(out, v));
    out.push(b'}');
}

/// A digest as a quoted lowercase hex string (as `Key` serializes), without `to_hex`'s
/// per-nibble formatting.
fn push_hex(out: &mut Vec<u8>, bytes: &[u8; 32]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = [b'"'; 66];
    for (i, b) in bytes.iter().enumerate() {
        s[1 + 2 * i] = HEX[usize::from(b >> 4)];
        s[2 + 2 * i] = HEX[usize::from(b & 15)];
    }
    out.extend_from_slice(&s);
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

fn json_map<V>(
    out: &mut Vec<u8>,
    m: &BTreeMap<String, V>,
    mut value: impl FnMut(&mut Vec<u8>, &V),
) {
    out.push(b'{');
    for (i, (k, v)) in m.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, k);
        out.push(b':');
        value(out, v);
    }
    out.push(b'}');
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

    /// The key's bytes are serde_json's, so keys (and caches) stay what they were.
    #[test]
    fn direct_json_is_serde_json() {
        let odd = "q\"b\\s\n\t\u{1}\u{1f}\u{7f}é/</script>";
        let mut fps = vec![Fingerprint::default(), fp()];
        fps.push(Fingerprint {
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
            extras: BTreeMap::from([("x".into(), String::new())]),
        });
        for f in fps {
            let mut direct = Vec::new();
            f.write_json(&mut direct);
            assert_eq!(
                String::from_utf8(direct).unwrap(),
                String::from_utf8(f.to_json()).unwrap()
            );
        }
        // One key pinned: a change to the bytes would orphan every cache.
        assert_eq!(
            fp().key().to_hex(),
            "39826750a3f1b42f377915db65857c0d4508bb3af40a11c16617620487b6922d"
        );
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
