//! The seam between lifeos.toml and the task kinds.
//!
//! The binary's config loader knows only what every task has (`kind`, `deps`, `env`,
//! `secrets`, `timeout`, `retries`, `cache`). Everything else belongs to a [`Kind`]: its
//! fields (a serde struct of `Spanned` values, so errors keep their place), their resolution
//! (vars, paths, defaults), the body it keeps in the compiled config, and the node it builds
//! from that body. A new kind is one module implementing [`TypedKind`] plus one line in
//! [`crate::kinds`].

mod cx;
mod diagnostic;
mod fields;
pub mod git;
pub mod names;
pub mod overlap;

use std::collections::{BTreeMap, HashMap};
use std::marker::PhantomData;
use std::ops::Range;
use std::sync::Arc;

use lifeos_engine::{CachePolicy, Class, Task, TaskSpec};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::value::RawValue;

pub use cx::{Peer, Protected, ResolveCx, RouterTable};
pub use diagnostic::{did_you_mean, Diagnostic};

use crate::services::Services;

/// A value with its byte range in lifeos.toml.
pub type S<T> = toml::Spanned<T>;

/// Facts a kind declares before any task resolves, for the others (an image's `reference`).
pub type Facts = BTreeMap<&'static str, String>;

/// A kind's defaults for the fields every task has.
#[derive(Debug, Clone, Default)]
pub struct Defaults {
    /// When the task sets no `cache`.
    pub cache: CachePolicy,
    /// Which executor slots it takes.
    pub class: Class,
    /// Its records may go to and come from a remote cache: its result lives in files (exec
    /// outputs) or is probed in the world anyway (images). Never for services, deploys, checks.
    pub shared: bool,
}

/// One `[tasks.NAME]` table, without the fields every task has.
pub struct TaskTable<'s> {
    pub id: String,
    /// The task's name in its table header, for errors about the task as a whole.
    pub name_span: Range<usize>,
    /// The kind's own fields, as parsed (spans into lifeos.toml).
    pub fields: toml::de::DeTable<'s>,
    pub span: Range<usize>,
}

impl TaskTable<'_> {
    /// The fields as the kind's raw struct; a wrong type becomes an error at its place.
    pub fn parse<T: DeserializeOwned>(&self, cx: &mut ResolveCx) -> Option<T> {
        let value = toml::Spanned::new(
            self.span.clone(),
            toml::de::DeValue::Table(self.fields.clone()),
        );
        match T::deserialize(toml::de::ValueDeserializer::from(value)) {
            Ok(t) => Some(t),
            Err(e) => {
                let d = Diagnostic::new(format!("task `{}`: {}", self.id, e.message().trim()));
                cx.err(match e.span() {
                    Some(s) => d.at(s, "here"),
                    None => d.at(self.name_span.clone(), "in this task"),
                });
                None
            }
        }
    }

    /// The task's name span, for "needs field X" errors.
    pub fn missing(&self, cx: &mut ResolveCx, kind: &str, field: &str, example: &str) {
        cx.err(
            Diagnostic::new(format!(
                "task `{}` of kind `{kind}` needs `{field}`",
                self.id
            ))
            .at(self.name_span.clone(), format!("add {example}")),
        );
    }
}

/// What a kind's constructor may use: the service bundle and the other tasks' bodies.
pub struct InstantiateCx<'a> {
    pub services: &'a Services,
    /// Every task of the config: (id, kind, compiled body), borrowed from the compiled config.
    tasks: &'a [(&'a str, &'a str, &'a RawValue)],
    /// `tasks` by id, made on the first [`InstantiateCx::peer`]: most tasks never ask, and a
    /// map of 10,000 was a visible part of loading a config.
    peers: std::cell::OnceCell<HashMap<&'a str, (&'a str, &'a RawValue)>>,
}

impl<'a> InstantiateCx<'a> {
    pub fn new(services: &'a Services, tasks: &'a [(&'a str, &'a str, &'a RawValue)]) -> Self {
        Self {
            services,
            tasks,
            peers: Default::default(),
        }
    }

    /// The body of `task` if it is of kind `K`.
    pub fn peer<K: TypedKind>(&self, task: &str) -> Option<K::Body> {
        let peers = self.peers.get_or_init(|| {
            self.tasks
                .iter()
                .map(|&(id, kind, body)| (id, (kind, body)))
                .collect()
        });
        let (kind, body) = peers.get(task)?;
        (*kind == K::NAME)
            .then(|| serde_json::from_str(body.get()).ok())
            .flatten()
    }
}

/// A task kind, as the config loader sees it. Implement [`TypedKind`] rather than this.
pub trait Kind: Send + Sync + 'static {
    /// `kind = "NAME"`.
    fn name(&self) -> &'static str;
    /// Its own fields, for unknown-field errors and "did you mean".
    fn fields(&self) -> &'static [&'static str];
    /// Fields of its result that others may name as `${tasks.NAME.FIELD}` (`key` always can).
    fn result_fields(&self) -> &'static [&'static str];
    fn defaults(&self) -> Defaults;
    /// Facts for other tasks, before any task resolves. Errors are `resolve`'s to report.
    fn declare(&self, cx: &mut ResolveCx, t: &TaskTable) -> Facts;
    /// The body for the compiled config, or `None` after reporting errors in `cx`.
    fn resolve(
        &self,
        cx: &mut ResolveCx,
        t: &TaskTable,
        spec: &mut TaskSpec,
    ) -> Option<Box<RawValue>>;
    /// The node for a compiled body.
    fn instantiate(
        &self,
        spec: &TaskSpec,
        body: &RawValue,
        cx: &InstantiateCx,
    ) -> Result<Arc<dyn Task>, String>;
}

/// A kind with typed raw fields and body.
pub trait TypedKind: Send + Sync + 'static {
    const NAME: &'static str;
    const RESULT_FIELDS: &'static [&'static str] = &[];
    /// The fields as written: a `#[derive(Deserialize)]` struct of `S<_>` values.
    type Raw: DeserializeOwned;
    /// What the compiled config keeps: everything the node needs, nothing from the file.
    type Body: Serialize + DeserializeOwned;

    fn defaults() -> Defaults {
        Defaults::default()
    }

    fn declare(_cx: &mut ResolveCx, _t: &TaskTable, _raw: &Self::Raw) -> Facts {
        Facts::new()
    }

    fn resolve(
        cx: &mut ResolveCx,
        t: &TaskTable,
        raw: Self::Raw,
        spec: &mut TaskSpec,
    ) -> Option<Self::Body>;

    fn instantiate(
        spec: &TaskSpec,
        body: Self::Body,
        cx: &InstantiateCx,
    ) -> Result<Arc<dyn Task>, String>;
}

/// A [`TypedKind`] as a [`Kind`] for the registry.
pub struct Registered<K>(PhantomData<fn() -> K>);

impl<K> Registered<K> {
    pub const fn new() -> Self {
        Self(PhantomData)
    }
}

impl<K> Default for Registered<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: TypedKind> Kind for Registered<K> {
    fn name(&self) -> &'static str {
        K::NAME
    }

    fn fields(&self) -> &'static [&'static str] {
        fields::of::<K::Raw>()
    }

    fn result_fields(&self) -> &'static [&'static str] {
        K::RESULT_FIELDS
    }

    fn defaults(&self) -> Defaults {
        K::defaults()
    }

    fn declare(&self, cx: &mut ResolveCx, t: &TaskTable) -> Facts {
        // Errors in the fields are reported once, by `resolve`.
        let before = cx.errors.len();
        let facts = match t.parse::<K::Raw>(cx) {
            Some(raw) => K::declare(cx, t, &raw),
            None => Facts::new(),
        };
        cx.errors.truncate(before);
        facts
    }

    fn resolve(
        &self,
        cx: &mut ResolveCx,
        t: &TaskTable,
        spec: &mut TaskSpec,
    ) -> Option<Box<RawValue>> {
        let raw = t.parse::<K::Raw>(cx)?;
        let before = cx.errors.len();
        let body = K::resolve(cx, t, raw, spec)?;
        if cx.errors.len() > before {
            return None;
        }
        Some(serde_json::value::to_raw_value(&body).expect("a kind's body serializes"))
    }

    fn instantiate(
        &self,
        spec: &TaskSpec,
        body: &RawValue,
        cx: &InstantiateCx,
    ) -> Result<Arc<dyn Task>, String> {
        let body: K::Body = serde_json::from_str(body.get())
            .map_err(|e| format!("task `{}`: compiled {} body: {e}", spec.id, K::NAME))?;
        K::instantiate(spec, body, cx)
    }
}

/// The kinds lifeos knows, by name.
pub struct Registry {
    kinds: &'static [&'static dyn Kind],
}

impl Registry {
    pub const fn new(kinds: &'static [&'static dyn Kind]) -> Self {
        Self { kinds }
    }

    pub fn get(&self, name: &str) -> Option<&'static dyn Kind> {
        self.kinds.iter().copied().find(|k| k.name() == name)
    }

    /// Kinds whose records a remote cache may share ([`Defaults::shared`]).
    pub fn shared(&self) -> Vec<String> {
        self.kinds
            .iter()
            .filter(|k| k.defaults().shared)
            .map(|k| k.name().to_string())
            .collect()
    }

    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.kinds.iter().map(|k| k.name())
    }

    /// The first kind that takes `field`, for "does not apply to kind X" errors.
    pub fn owner_of(&self, field: &str) -> Option<&'static str> {
        self.kinds
            .iter()
            .find(|k| k.fields().contains(&field))
            .map(|k| k.name())
    }
}
