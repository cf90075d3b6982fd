//! Dependency results: what a finished task hands to the tasks that depend on it (an image's
//! ID and reference, a service's endpoints, later a pushed digest or a deployed revision).
//!
//! Config strings may name them as `${tasks.NAME.FIELD}`; the loader checks the task and the
//! field and leaves the placeholder in the string, which the kind expands at run time with
//! [`Deps::expand`]. The dependency's key is already part of the dependant's key, so the
//! placeholder text (not its value) is what the key needs to cover.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::fingerprint::Key;
use crate::task::Task;

/// One finished dependency: its key, and the data its record keeps.
pub struct DepResult {
    pub key: Key,
    /// The task that produced it, which knows how to present its data ([`Task::result`]).
    pub task: Arc<dyn Task>,
    pub data: Value,
}

impl DepResult {
    /// The fields dependants see: the kind's own (see its `RESULT_FIELDS`) plus `key`.
    pub fn fields(&self) -> Map<String, Value> {
        let mut m = self.task.result(&self.data);
        m.insert("key".into(), Value::String(self.key.to_hex()));
        m
    }
}

/// The results of a task's dependencies, by task name: sorted by name, each once. A small
/// vector, not a map: a node of a 10,000-task no-op builds one, and the names are shared
/// (`Arc<str>`), not copied per edge.
#[derive(Clone, Default)]
pub struct Deps(Vec<(Arc<str>, Arc<DepResult>)>);

impl Deps {
    pub fn new(map: BTreeMap<String, Arc<DepResult>>) -> Self {
        Self(map.into_iter().map(|(k, r)| (Arc::from(k), r)).collect())
    }

    /// From (name, result) pairs in any order; a name given twice is kept once.
    pub fn from_named(mut named: Vec<(Arc<str>, Arc<DepResult>)>) -> Self {
        named.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        named.dedup_by(|a, b| a.0 == b.0);
        Self(named)
    }

    pub fn get(&self, task: &str) -> Option<&DepResult> {
        let i = self.0.binary_search_by(|(k, _)| (**k).cmp(task)).ok()?;
        Some(&self.0[i].1)
    }

    /// Task name → key, for the fingerprint.
    pub fn keys(&self) -> BTreeMap<String, Key> {
        self.0.iter().map(|(k, r)| (k.to_string(), r.key)).collect()
    }

    /// Task name → key, borrowed and sorted by name (as [`Deps::keys`]).
    pub fn iter_keys(&self) -> impl Iterator<Item = (&str, &Key)> {
        self.0.iter().map(|(k, r)| (&**k, &r.key))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// One field as text (`${tasks.NAME.FIELD}`).
    pub fn field(&self, task: &str, field: &str) -> Result<String, String> {
        let r = self.get(task).ok_or_else(|| {
            format!("`${{tasks.{task}.{field}}}`: `{task}` has no result in this run (is it a dependency?)")
        })?;
        match r.fields().get(field) {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(Value::Null) | None => Err(format!(
                "`${{tasks.{task}.{field}}}`: task `{task}` ({}) left no `{field}`",
                r.task.kind()
            )),
            Some(other) => Ok(other.to_string()),
        }
    }

    /// A dependency's result as the kind's typed struct (for example an image's ID and
    /// reference), or `None` when it is not a dependency or not of that shape.
    pub fn typed<T: DeserializeOwned>(&self, task: &str) -> Option<T> {
        let fields = self.get(task)?.fields();
        serde_json::from_value(Value::Object(fields)).ok()
    }

    /// Expand `${tasks.NAME.FIELD}` placeholders; `$${` is a literal `${`. Nothing else is
    /// touched: config variables were expanded when the config was loaded.
    pub fn expand(&self, s: &str) -> Result<String, String> {
        if !s.contains('$') {
            return Ok(s.to_string());
        }
        let mut out = String::with_capacity(s.len());
        let mut rest = s;
        while let Some(i) = rest.find('$') {
            out.push_str(&rest[..i]);
            let after = &rest[i..];
            if let Some(r) = after.strip_prefix("$${") {
                out.push_str("${");
                rest = r;
                continue;
            }
            match parse_ref(after) {
                Some((task, field, len)) => {
                    out.push_str(&self.field(task, field)?);
                    rest = &after[len..];
                }
                None => {
                    out.push('$');
                    rest = &after[1..];
                }
            }
        }
        out.push_str(rest);
        Ok(out)
    }
}

/// `${tasks.NAME.FIELD}` at the start of `s`: (name, field, length of the placeholder).
/// Task names may contain dots, so the field is what follows the last one.
pub fn parse_ref(s: &str) -> Option<(&str, &str, usize)> {
    let body = s.strip_prefix("${tasks.")?;
    let end = body.find('}')?;
    let (task, field) = body[..end].rsplit_once('.')?;
    (!task.is_empty() && !field.is_empty()).then_some((task, field, end + "${tasks.}".len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::{ExecCx, Executed, KeyCx, Probe, ProbeCx, TaskError, TaskInputs};

    struct Img;

    #[async_trait::async_trait]
    impl Task for Img {
        fn kind(&self) -> &'static str {
            "image"
        }
        fn config(&self) -> Value {
            Value::Null
        }
        fn result(&self, data: &Value) -> Map<String, Value> {
            let mut m = Map::new();
            m.insert("id".into(), data["image_id"].clone());
            m
        }
        async fn inputs(&self, _: &KeyCx) -> Result<TaskInputs, TaskError> {
            Ok(TaskInputs::default())
        }
        async fn probe(&self, _: &ProbeCx<'_>) -> Result<Probe, TaskError> {
            Ok(Probe::Missing(String::new()))
        }
        async fn execute(&self, _: &ExecCx<'_>) -> Result<Executed, TaskError> {
            Ok(Executed::default())
        }
    }

    fn deps() -> Deps {
        let r = DepResult {
            key: Key::from_hash(blake3::hash(b"k")),
            task: Arc::new(Img),
            data: serde_json::json!({ "image_id": "sha256:abc" }),
        };
        Deps::new([("api.v2".to_string(), Arc::new(r))].into())
    }

    #[test]
    fn placeholders_expand_and_escapes_stay_literal() {
        let d = deps();
        assert_eq!(
            d.expand("run ${tasks.api.v2.id} $${tasks.api.v2.id} $HOME")
                .unwrap(),
            "run sha256:abc ${tasks.api.v2.id} $HOME"
        );
        assert_eq!(
            d.expand("${tasks.api.v2.key}").unwrap(),
            Key::from_hash(blake3::hash(b"k")).to_hex()
        );
    }

    #[test]
    fn named_results_are_sorted_and_found() {
        let r = |k: &[u8]| {
            Arc::new(DepResult {
                key: Key::from_hash(blake3::hash(k)),
                task: Arc::new(Img),
                data: Value::Null,
            })
        };
        let d = Deps::from_named(vec![
            ("b".into(), r(b"b")),
            ("a.x".into(), r(b"a")),
            ("b".into(), r(b"b")),
            ("c".into(), r(b"c")),
        ]);
        let names: Vec<&str> = d.iter_keys().map(|(n, _)| n).collect();
        assert_eq!(names, ["a.x", "b", "c"]);
        assert_eq!(d.keys().keys().collect::<Vec<_>>(), ["a.x", "b", "c"]);
        for n in ["a.x", "b", "c"] {
            assert_eq!(
                d.get(n).unwrap().key,
                Key::from_hash(blake3::hash(&n.as_bytes()[..1]))
            );
        }
        assert!(d.get("a").is_none() && d.get("d").is_none());
    }

    #[test]
    fn a_missing_task_or_field_is_an_error_that_names_it() {
        let d = deps();
        let e = d.expand("${tasks.web.id}").unwrap_err();
        assert!(e.contains("`web` has no result"), "{e}");
        let e = d.expand("${tasks.api.v2.digest}").unwrap_err();
        assert!(e.contains("left no `digest`"), "{e}");
    }
}
