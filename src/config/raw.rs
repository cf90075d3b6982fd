//! lifeos.toml as written: flat structs with spans (no tagged enums, which lose spans).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use toml::Spanned;

pub type S<T> = Spanned<T>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub project: Option<RawProject>,
    #[serde(default)]
    pub vars: BTreeMap<S<String>, S<toml::Value>>,
    #[serde(default)]
    pub environments: BTreeMap<S<String>, RawEnvironment>,
    /// In declaration order. A Vec, not a map: 10,000 tasks of ~1 KiB each made a BTreeMap's
    /// node moves and allocations the largest cost of loading a big file.
    #[serde(default, deserialize_with = "in_order")]
    pub tasks: Vec<(S<String>, Box<S<RawTask>>)>,
}

/// A TOML table as a list of entries (TOML itself rejects duplicate keys).
fn in_order<'de, D, V>(d: D) -> Result<Vec<(S<String>, V)>, D::Error>
where
    D: serde::Deserializer<'de>,
    V: Deserialize<'de>,
{
    struct Entries<V>(std::marker::PhantomData<V>);
    impl<'de, V: Deserialize<'de>> serde::de::Visitor<'de> for Entries<V> {
        type Value = Vec<(S<String>, V)>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a table")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            let mut v = Vec::with_capacity(map.size_hint().unwrap_or(0));
            while let Some(entry) = map.next_entry()? {
                v.push(entry);
            }
            Ok(v)
        }
    }
    d.deserialize_map(Entries(std::marker::PhantomData))
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Exec,
    Image,
    Service,
    Container,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Exec => "exec",
            Kind::Image => "image",
            Kind::Service => "service",
            Kind::Container => "container",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealth {
    /// An argv array (`CMD`) or a shell string (`CMD-SHELL`).
    pub cmd: S<toml::Value>,
    pub interval: Option<S<String>>,
    pub timeout: Option<S<String>>,
    pub retries: Option<S<u32>>,
    pub start_period: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTask {
    pub kind: S<Kind>,
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

    // exec
    /// A shell string or an argv array.
    pub run: Option<S<toml::Value>>,
    pub cwd: Option<S<String>>,
    pub inputs: Option<Vec<S<String>>>,
    pub outputs: Option<Vec<S<String>>>,

    // image
    pub context: Option<S<String>>,
    pub dockerfile: Option<S<String>>,
    pub target: Option<S<String>>,
    pub build_args: Option<BTreeMap<String, S<String>>>,
    pub labels: Option<BTreeMap<String, S<String>>>,
    pub tag: Option<S<String>>,
    pub tags: Option<Vec<S<String>>>,
    pub platform: Option<S<String>>,
    pub builder: Option<S<String>>,

    // service, container
    /// An image task of the graph, or an image reference.
    pub image: Option<S<String>>,
    pub cmd: Option<Vec<S<String>>>,
    pub entrypoint: Option<Vec<S<String>>>,
    pub workdir: Option<S<String>>,
    pub user: Option<S<String>>,
    pub ports: Option<Vec<S<String>>>,
    pub volumes: Option<Vec<S<String>>>,
    pub health: Option<S<RawHealth>>,
    pub restart: Option<S<String>>,
}

impl RawTask {
    /// Kind-specific fields that are set, with their spans, to reject those another kind owns.
    pub fn kind_fields(&self) -> Vec<(&'static str, std::ops::Range<usize>)> {
        let mut v = Vec::new();
        macro_rules! f {
            ($($name:ident),*) => {$(
                if let Some(x) = &self.$name { v.push((stringify!($name), span_of(x))); }
            )*};
        }
        f!(run, cwd, context, dockerfile, target, tag, platform, builder);
        f!(image, workdir, user, health, restart);
        for (name, list) in [
            ("cmd", &self.cmd),
            ("entrypoint", &self.entrypoint),
            ("ports", &self.ports),
            ("volumes", &self.volumes),
        ] {
            if let Some(x) = list {
                v.push((name, x.first().map(|s| s.span()).unwrap_or(0..0)));
            }
        }
        if let Some(x) = &self.inputs {
            v.push(("inputs", x.first().map(|s| s.span()).unwrap_or(0..0)));
        }
        if let Some(x) = &self.outputs {
            v.push(("outputs", x.first().map(|s| s.span()).unwrap_or(0..0)));
        }
        if let Some(x) = &self.tags {
            v.push(("tags", x.first().map(|s| s.span()).unwrap_or(0..0)));
        }
        if let Some(x) = &self.build_args {
            v.push((
                "build_args",
                x.values().next().map(|s| s.span()).unwrap_or(0..0),
            ));
        }
        if let Some(x) = &self.labels {
            v.push((
                "labels",
                x.values().next().map(|s| s.span()).unwrap_or(0..0),
            ));
        }
        v
    }
}

fn span_of<T>(s: &S<T>) -> std::ops::Range<usize> {
    s.span()
}
