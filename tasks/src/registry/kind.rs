//! `kind = "push"` in lifeos.toml: an image task's image in a registry repository, under
//! the given tags and the key tag.

use std::sync::Arc;

use lifeos_engine::{Class, Task, TaskSpec};
use serde::Deserialize;

use super::reference::{invalid_repository, invalid_tag};
use super::{PushSpec, PushTask};
use crate::image::ImageKind;
use crate::kind::{Defaults, Diagnostic, InstantiateCx, ResolveCx, TaskTable, TypedKind, S};

pub struct PushKind;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Raw {
    image: Option<S<String>>,
    repository: Option<S<String>>,
    tags: Option<Vec<S<String>>>,
}

impl TypedKind for PushKind {
    const NAME: &'static str = "push";
    const RESULT_FIELDS: &'static [&'static str] = &["digest", "reference", "repository"];
    type Raw = Raw;
    type Body = PushSpec;

    fn defaults() -> Defaults {
        Defaults {
            class: Class::Docker,
            ..Defaults::default()
        }
    }

    fn resolve(
        cx: &mut ResolveCx,
        t: &TaskTable,
        raw: Raw,
        spec: &mut TaskSpec,
    ) -> Option<PushSpec> {
        let id = t.id.as_str();
        let before = cx.error_count();
        let image = match &raw.image {
            None => {
                t.missing(cx, Self::NAME, "image", "image = \"<image task>\"");
                None
            }
            Some(s) => {
                let name = cx.interp(s)?;
                match cx.peers.get(&name).map(|p| p.kind) {
                    Some(k) if k == ImageKind::NAME => {
                        if !spec.deps.contains(&name) {
                            spec.deps.push(name.clone());
                        }
                        Some(name)
                    }
                    other => {
                        let what = match other {
                            _ if name == id => "names this task itself".to_string(),
                            Some(k) => format!("names task `{name}` of kind `{k}`"),
                            None => format!("no task `{name}`"),
                        };
                        cx.err(
                            Diagnostic::new(format!("invalid `image` of task `{id}`"))
                                .at(s.span(), what)
                                .help("a push takes the image of an image task of this file"),
                        );
                        None
                    }
                }
            }
        };
        let repository = match &raw.repository {
            None => {
                t.missing(
                    cx,
                    Self::NAME,
                    "repository",
                    "repository = \"127.0.0.1:5000/NAME\" (or gcr.io/PROJECT/NAME)",
                );
                None
            }
            Some(s) => {
                let r = cx.interp(s)?;
                if let Some(why) = invalid_repository(&r) {
                    cx.err(
                        Diagnostic::new(format!("invalid `repository` `{r}`")).at(s.span(), why),
                    );
                }
                Some(r)
            }
        };
        let mut tags = Vec::new();
        match &raw.tags {
            None => tags.push("latest".to_string()),
            Some(v) => {
                for s in v {
                    let Some(tag) = cx.interp(s) else { continue };
                    if let Some(why) = invalid_tag(&tag) {
                        cx.err(Diagnostic::new(format!("invalid tag `{tag}`")).at(s.span(), why));
                    } else if tag.starts_with("key-") {
                        cx.err(Diagnostic::new(format!("invalid tag `{tag}`")).at(
                            s.span(),
                            "tags starting with `key-` are lifeos's own key tags",
                        ));
                    } else if !tags.contains(&tag) {
                        tags.push(tag);
                    }
                }
            }
        }
        if cx.error_count() > before {
            return None;
        }
        Some(PushSpec {
            image: image?,
            repository: repository?,
            tags,
        })
    }

    fn instantiate(
        _spec: &TaskSpec,
        body: PushSpec,
        cx: &InstantiateCx,
    ) -> Result<Arc<dyn Task>, String> {
        Ok(Arc::new(PushTask::new(body, cx.services.docker().clone())))
    }
}
