//! lifeos.toml as written. The file is parsed once into toml's spanned document; the top
//! level and the fields every task has become flat serde structs with spans, and each task's
//! other fields stay a spanned table for its kind (`lifeos_tasks::kind`) to read.

use std::collections::BTreeMap;
use std::ops::Range;

use lifeos_tasks::kind::TaskTable;
use serde::Deserialize;
use toml::de::{DeTable, DeValue, ValueDeserializer};
use toml::Spanned;

pub type S<T> = Spanned<T>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub project: Option<RawProject>,
    pub cache: Option<RawCache>,
    #[serde(default)]
    pub vars: BTreeMap<S<String>, S<toml::Value>>,
    #[serde(default)]
    pub environments: BTreeMap<S<String>, RawEnvironment>,
    /// `[router]`: the deploy kinds' (`lifeos_tasks::deploy`).
    pub router: Option<lifeos_tasks::kind::RouterTable>,
}

/// `[cache]`: caches shared beyond this machine.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCache {
    /// `http(s)://host[:port]/prefix`: a Bazel HTTP cache (bazel-remote, nginx WebDAV).
    pub remote: Option<S<String>>,
    pub remote_read: Option<S<bool>>,
    pub remote_write: Option<S<bool>>,
    /// Per request, e.g. "10s".
    pub remote_timeout: Option<S<String>>,
    /// A registry repository: images are pulled from its key tags instead of built, and
    /// pushed there after a build.
    pub images: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProject {
    pub name: Option<S<String>>,
    pub cache_dir: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEnvironment {
    #[serde(default)]
    pub vars: BTreeMap<S<String>, S<toml::Value>>,
}

/// The fields every task has, whatever its kind.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCommon {
    pub kind: S<String>,
    #[serde(default)]
    pub deps: Vec<S<String>>,
    #[serde(default)]
    pub env: Vec<S<String>>,
    #[serde(default)]
    pub secrets: Vec<S<String>>,
    pub timeout: Option<S<String>>,
    pub retries: Option<S<u32>>,
    /// `true`, `false`, or `{ every = "24h" }`.
    pub cache: Option<S<toml::Value>>,
}

/// The names of [`RawCommon`]'s fields.
pub const COMMON: &[&str] = &[
    "kind", "deps", "env", "secrets", "timeout", "retries", "cache",
];

/// One `[tasks.NAME]`: its common fields, and the rest for its kind.
pub struct RawTask<'s> {
    pub name: S<String>,
    pub common: RawCommon,
    pub table: TaskTable<'s>,
}

/// A parse error: message and place.
pub struct ParseError {
    pub message: String,
    pub span: Option<Range<usize>>,
}

impl From<toml::de::Error> for ParseError {
    fn from(e: toml::de::Error) -> Self {
        Self {
            message: e.message().trim().to_string(),
            span: e.span(),
        }
    }
}

/// The document, and its tasks in declaration order.
pub fn parse(source: &str) -> Result<(RawConfig, Vec<RawTask<'_>>), Vec<ParseError>> {
    let doc = DeTable::parse(source).map_err(|e| vec![ParseError::from(e)])?;
    let doc_span = doc.span();
    let mut doc = doc.into_inner();
    let tasks_entry = {
        let key = doc.keys().find(|k| k.get_ref() == "tasks").cloned();
        key.and_then(|k| doc.remove(&k).map(|v| (k, v)))
    };
    let config = RawConfig::deserialize(ValueDeserializer::from(Spanned::new(
        doc_span,
        DeValue::Table(doc),
    )))
    .map_err(|e| vec![ParseError::from(e)])?;
    let Some((_, tasks)) = tasks_entry else {
        return Ok((config, Vec::new()));
    };
    let tasks_span = tasks.span();
    let DeValue::Table(tasks) = tasks.into_inner() else {
        return Err(vec![ParseError {
            message: "`tasks` must be a table of tasks: [tasks.NAME]".into(),
            span: Some(tasks_span),
        }]);
    };
    let mut out = Vec::with_capacity(tasks.len());
    let mut errors = Vec::new();
    for (name, value) in tasks {
        let name = Spanned::new(name.span(), name.get_ref().to_string());
        let span = value.span();
        let DeValue::Table(table) = value.into_inner() else {
            errors.push(ParseError {
                message: format!("task `{}` must be a table", name.get_ref()),
                span: Some(span),
            });
            continue;
        };
        let (mut common, mut own) = (DeTable::new(), DeTable::new());
        for (k, v) in table {
            if COMMON.contains(&k.get_ref().as_ref()) {
                common.insert(k, v);
            } else {
                own.insert(k, v);
            }
        }
        let common = match RawCommon::deserialize(ValueDeserializer::from(Spanned::new(
            span.clone(),
            DeValue::Table(common),
        ))) {
            Ok(c) => c,
            Err(e) => {
                let mut e = ParseError::from(e);
                if e.message.starts_with("missing field `kind`") {
                    e.message = format!("task `{}` has no `kind`", name.get_ref());
                    e.span = Some(name.span());
                }
                errors.push(e);
                continue;
            }
        };
        let table = TaskTable {
            id: name.get_ref().clone(),
            name_span: name.span(),
            fields: own,
            span,
        };
        out.push(RawTask {
            name,
            common,
            table,
        });
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    // Declaration order, not the map's sorted order.
    out.sort_by_key(|t| t.name.span().start);
    Ok((config, out))
}
