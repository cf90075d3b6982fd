//! `kind = "image"` in lifeos.toml: a Dockerfile target, its build args, labels and tags.

use std::collections::BTreeMap;
use std::sync::Arc;

use lifeos_engine::{Class, Task, TaskSpec};
use serde::{Deserialize, Serialize};

use super::{Builder, ImageSpec, ImageTask};
use crate::kind::names::reference_problem;
use crate::kind::{Defaults, Diagnostic, Facts, InstantiateCx, ResolveCx, TaskTable, TypedKind, S};

pub struct ImageKind;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Raw {
    context: Option<S<String>>,
    dockerfile: Option<S<String>>,
    target: Option<S<String>>,
    build_args: Option<BTreeMap<String, S<String>>>,
    labels: Option<BTreeMap<String, S<String>>>,
    tag: Option<S<String>>,
    tags: Option<Vec<S<String>>>,
    platform: Option<S<String>>,
    builder: Option<S<String>>,
    registry_cache: Option<S<String>>,
    cache_from: Option<Vec<S<String>>>,
}

/// What dependants get (`${tasks.NAME.id}`, [`lifeos_engine::Deps::typed`]).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ImageResult {
    /// `sha256:…`
    pub id: String,
    /// The first tag, `name:tag`.
    pub reference: String,
}

/// A tag without one gets `:latest`, as Docker does.
fn full(mut tag: String) -> String {
    if !tag.rsplit('/').next().unwrap_or("").contains(':') {
        tag.push_str(":latest");
    }
    tag
}

impl TypedKind for ImageKind {
    const NAME: &'static str = "image";
    const RESULT_FIELDS: &'static [&'static str] = &["id", "reference"];
    type Raw = Raw;
    type Body = ImageSpec;

    fn defaults() -> Defaults {
        Defaults {
            class: Class::Docker,
            // A remote record names the image; the probe still looks for it in the engine.
            shared: true,
            ..Defaults::default()
        }
    }

    /// Its first tag, for the services and containers that run it.
    fn declare(cx: &mut ResolveCx, t: &TaskTable, raw: &Raw) -> Facts {
        let first = raw
            .tag
            .as_ref()
            .or_else(|| raw.tags.as_ref().and_then(|v| v.first()));
        let tag = match first {
            Some(x) => cx.interp(x).unwrap_or_default(),
            None => cx.default_tag(&t.id),
        };
        Facts::from([("reference", full(tag))])
    }

    fn resolve(
        cx: &mut ResolveCx,
        t: &TaskTable,
        raw: Raw,
        spec: &mut TaskSpec,
    ) -> Option<ImageSpec> {
        let before = cx.error_count();
        let context = match &raw.context {
            Some(c) => cx.rel_path(c, "context"),
            None => Some(String::new()),
        };
        if let (Some(ctx), Some(c)) = (&context, &raw.context) {
            if cx.root.join(ctx).is_dir() {
                cx.found(ctx, true);
            } else {
                cx.err(
                    Diagnostic::new(format!("context directory `{ctx}` not found"))
                        .at(c.span(), "no such directory under the project root"),
                );
            }
        }
        let dockerfile = match (&raw.dockerfile, &context) {
            (Some(d), _) => cx.rel_path(d, "dockerfile"),
            (None, Some(ctx)) => Some(if ctx.is_empty() {
                "Dockerfile".into()
            } else {
                format!("{ctx}/Dockerfile")
            }),
            (None, None) => None,
        };
        if let Some(df) = &dockerfile {
            if cx.root.join(df).is_file() {
                cx.found(df, false);
            } else {
                let d = Diagnostic::new(format!("Dockerfile `{df}` not found"));
                cx.err(match &raw.dockerfile {
                    Some(s) => d.at(s.span(), "no such file"),
                    None => d.at(
                        t.name_span.clone(),
                        "no Dockerfile in the context; set `dockerfile`",
                    ),
                });
            }
        }
        let map = |cx: &mut ResolveCx, m: &Option<BTreeMap<String, S<String>>>| {
            m.iter()
                .flatten()
                .filter_map(|(k, v)| cx.interp(v).map(|v| (k.clone(), v)))
                .collect::<BTreeMap<String, String>>()
        };
        let build_args = map(cx, &raw.build_args);
        let labels = map(cx, &raw.labels);
        if let (Some(a), Some(_)) = (&raw.tag, &raw.tags) {
            cx.err(Diagnostic::new("set `tag` or `tags`, not both").at(a.span(), "here"));
        }
        let tags: Vec<String> = match (&raw.tag, &raw.tags) {
            (Some(a), _) => cx.interp(a).into_iter().collect(),
            (None, Some(v)) => cx.strings(v),
            (None, None) => vec![cx.default_tag(&t.id)],
        };
        let mut full_tags = Vec::with_capacity(tags.len());
        for (i, tag) in tags.into_iter().enumerate() {
            if let Some(why) = reference_problem(&tag, false) {
                let span = match (&raw.tag, &raw.tags) {
                    (Some(s), _) => s.span(),
                    (None, Some(v)) => v[i].span(),
                    (None, None) => t.name_span.clone(),
                };
                let d = Diagnostic::new(format!("invalid image tag `{tag}`")).at(span, why);
                cx.err(if raw.tag.is_none() && raw.tags.is_none() {
                    d.help("this is the default tag `<project>-<task>`; set `tag`")
                } else {
                    d
                });
            }
            full_tags.push(full(tag));
        }
        let builder = match raw
            .builder
            .as_ref()
            .map(|b| (b.get_ref().as_str(), b.span()))
        {
            None | Some(("buildkit", _)) => Builder::BuildKit,
            Some(("classic", _)) => Builder::Classic,
            Some((_, span)) => {
                cx.err(
                    Diagnostic::new("invalid `builder`")
                        .at(span, "expected \"buildkit\" or \"classic\""),
                );
                Builder::BuildKit
            }
        };
        let target = raw.target.as_ref().and_then(|x| cx.interp(x));
        let platform = raw.platform.as_ref().and_then(|x| cx.interp(x));
        let registry_cache = raw.registry_cache.as_ref().and_then(|x| {
            let repo = cx.interp(x)?;
            if let Some(why) = crate::registry::reference::invalid_repository(&repo) {
                cx.err(
                    Diagnostic::new(format!("invalid `registry_cache` `{repo}`"))
                        .at(x.span(), why)
                        .help("the repository a push task of this image pushes to"),
                );
            }
            Some(repo)
        });
        // A per-image `registry_cache` is filled by the push task of the image; the project's
        // `[cache] images` by the image task itself.
        let (registry_cache, fill_registry_cache) = match (registry_cache, &cx.image_cache) {
            (Some(r), _) => (Some(r), false),
            (None, Some(r)) => (Some(r.clone()), true),
            (None, None) => (None, false),
        };
        let mut cache_from = Vec::new();
        for s in raw.cache_from.iter().flatten() {
            let Some(r) = cx.interp(s) else { continue };
            let problem = reference_problem(&r, true)
                .or_else(|| {
                    (builder == Builder::Classic).then(|| {
                        "the classic builder only uses images already in the engine: set builder = \"buildkit\"".to_string()
                    })
                })
                .or_else(|| {
                    // Such a build goes through BuildKit's solve API (image/solve.rs), which
                    // lifeos does not give a cache import yet.
                    (!spec.secrets.is_empty()).then(|| {
                        "an image task with `secrets` cannot use `cache_from` yet".to_string()
                    })
                });
            match problem {
                Some(why) => cx.err(
                    Diagnostic::new(format!("invalid `cache_from` `{r}`"))
                        .at(s.span(), why)
                        .help("an image whose build exported its cache, e.g. \"${vars.registry}/api:latest\""),
                ),
                None if !cache_from.contains(&r) => cache_from.push(r),
                None => {}
            }
        }
        if cx.error_count() > before {
            return None;
        }
        Some(ImageSpec {
            context: context?,
            dockerfile: dockerfile?,
            target,
            build_args,
            labels,
            tags: full_tags,
            platform,
            builder,
            secrets: spec.secrets.clone(),
            registry_cache,
            fill_registry_cache,
            cache_from,
        })
    }

    fn instantiate(
        _spec: &TaskSpec,
        body: ImageSpec,
        cx: &InstantiateCx,
    ) -> Result<Arc<dyn Task>, String> {
        Ok(Arc::new(ImageTask::new(body, cx.services.docker().clone())))
    }
}
