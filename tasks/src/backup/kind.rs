//! `kind = "backup"` in lifeos.toml: `database`, `dir`, `format`, `keep`, `upload`, and the
//! connection details `dbname`, `user`, `port`, `image`.

use std::sync::Arc;

use lifeos_engine::{Class, Task, TaskSpec};
use serde::Deserialize;

use super::retention::Keep;
use super::task::{BackupTask, Database, Settings};
use crate::container::{ContainerSpec, ImageRef, ServiceKind};
use crate::kind::{Defaults, Diagnostic, InstantiateCx, ResolveCx, TaskTable, TypedKind, S};

pub struct BackupKind;

/// The client image for a database given by URL: the example's Postgres image (PostgreSQL 15
/// on Debian bookworm, `lifeos build debian`). pg_dump must be at least the server's version.
pub const DEFAULT_URL_IMAGE: &str = "lifeos-debian:bookworm";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Raw {
    /// A service task of the graph that runs Postgres (a string), or
    /// `{ url_secret = "NAME" }`: a connection URL, the value of that secret.
    database: Option<S<toml::Value>>,
    dir: Option<S<String>>,
    format: Option<S<String>>,
    keep: Option<S<RawKeep>>,
    upload: Option<S<String>>,
    /// The database's name in the server (default `postgres`).
    dbname: Option<S<String>>,
    user: Option<S<String>>,
    port: Option<S<u16>>,
    /// The client image, an image task or a reference (default: the database service's;
    /// for a URL, [`DEFAULT_URL_IMAGE`]).
    image: Option<S<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKeep {
    last: Option<u32>,
    daily: Option<u32>,
    weekly: Option<u32>,
    monthly: Option<u32>,
}

impl TypedKind for BackupKind {
    const NAME: &'static str = "backup";
    const RESULT_FIELDS: &'static [&'static str] = &["file", "sha256", "size"];
    type Raw = Raw;
    type Body = Settings;

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
    ) -> Option<Settings> {
        let Some(db) = &raw.database else {
            t.missing(cx, Self::NAME, "database", "database = \"<service task>\"");
            return None;
        };
        let database = database(cx, t, db, spec)?;
        if let Database::UrlSecret(_) = &database {
            // Host, port, user and database come from the URL alone.
            for (field, span) in [
                ("dbname", raw.dbname.as_ref().map(|s| s.span())),
                ("user", raw.user.as_ref().map(|s| s.span())),
                ("port", raw.port.as_ref().map(|s| s.span())),
            ] {
                if let Some(span) = span {
                    cx.err(
                        Diagnostic::new(format!("`{field}` with a database URL"))
                            .at(span, "the URL in the secret says this")
                            .help(format!(
                                "remove `{field}`; write it into the URL (postgres://USER:PASSWORD@HOST:PORT/DBNAME)"
                            )),
                    );
                }
            }
        }
        if let Some(f) = &raw.format {
            if f.get_ref() != "custom" {
                cx.err(
                    Diagnostic::new(format!("unsupported backup format `{}`", f.get_ref()))
                        .at(f.span(), "only \"custom\" (pg_dump -Fc) is supported")
                        .help(
                            "the custom format is what `pg_restore` reads back in full to verify",
                        ),
                );
            }
        }
        let dir = match &raw.dir {
            None => "backups".to_string(),
            Some(d) => {
                let text = cx.interp(d)?;
                if std::path::Path::new(&text).is_absolute() {
                    text.trim_end_matches('/').to_string()
                } else {
                    let rel = cx.rel_path(d, "dir")?;
                    if rel.is_empty() {
                        cx.err(Diagnostic::new("`dir` may not be the project root").at(
                            d.span(),
                            "name a directory for the backups, e.g. \"backups\"",
                        ));
                        return None;
                    }
                    rel
                }
            }
        };
        let keep = raw.keep.as_ref().map(|k| {
            let k = k.get_ref();
            Keep {
                last: k.last.unwrap_or(0),
                daily: k.daily.unwrap_or(0),
                weekly: k.weekly.unwrap_or(0),
                monthly: k.monthly.unwrap_or(0),
            }
        });
        let upload = match &raw.upload {
            None => None,
            Some(u) => {
                let url = cx.interp(u)?;
                if let Some(why) = super::http::url_problem(&url) {
                    cx.err(Diagnostic::new(format!("invalid `upload` `{url}`")).at(u.span(), why));
                    return None;
                }
                Some(url)
            }
        };
        let text = |cx: &mut ResolveCx, f: &Option<S<String>>, default: &str| match f {
            Some(s) => cx.interp(s),
            None => Some(default.to_string()),
        };
        let dbname = text(cx, &raw.dbname, "postgres")?;
        if dbname.is_empty() || dbname.contains('/') {
            cx.err(Diagnostic::new(format!("invalid `dbname` `{dbname}`")).at(
                raw.dbname.as_ref().unwrap().span(),
                "a database name, e.g. \"lifeos\"",
            ));
            return None;
        }
        Some(Settings {
            project: cx.project.clone(),
            task: t.id.clone(),
            database,
            dbname,
            user: text(cx, &raw.user, "postgres")?,
            port: raw.port.as_ref().map(|p| *p.get_ref()).unwrap_or(5432),
            image: match &raw.image {
                Some(i) => Some(image(cx, i, spec)?),
                None => None,
            },
            dir,
            keep: keep.unwrap_or_default(),
            upload,
        })
    }

    fn instantiate(
        _spec: &TaskSpec,
        body: Settings,
        cx: &InstantiateCx,
    ) -> Result<Arc<dyn Task>, String> {
        let db = match &body.database {
            Database::Service(name) => cx
                .peer::<ServiceKind>(name)
                .ok_or_else(|| format!("task `{}`: `{name}` is not a service task", body.task))?,
            // No service: the client containers are the task's own, on the host's network.
            Database::UrlSecret(_) => ContainerSpec {
                sync: vec![],
                project: body.project.clone(),
                task: body.task.clone(),
                image: ImageRef::External(
                    body.image
                        .clone()
                        .unwrap_or_else(|| DEFAULT_URL_IMAGE.to_string()),
                ),
                cmd: None,
                entrypoint: None,
                workdir: None,
                user: None,
                ports: vec![],
                volumes: vec![],
                health: None,
                restart: None,
                labels: Default::default(),
            },
        };
        Ok(Arc::new(BackupTask::new(
            body,
            db,
            cx.services.docker().clone(),
        )))
    }
}

/// `database`: a service task (a dependency), or `{ url_secret = "NAME" }` (a secret of the
/// task: masked everywhere, keyed by a keyed hash of its value).
fn database(
    cx: &mut ResolveCx,
    t: &TaskTable,
    db: &S<toml::Value>,
    spec: &mut TaskSpec,
) -> Option<Database> {
    let help = "name the service task that runs Postgres, e.g. database = \"postgres\", or give a URL in a secret: database = { url_secret = \"PROD_DATABASE_URL\" }";
    let invalid = |cx: &mut ResolveCx, what: String| {
        cx.err(
            Diagnostic::new(format!("invalid `database` of task `{}`", t.id))
                .at(db.span(), what)
                .help(help),
        );
        None
    };
    match db.get_ref() {
        toml::Value::String(text) => {
            let name = cx.interp_at(text, db.span())?;
            match cx.peers.get(&name) {
                Some(p) if p.kind == ServiceKind::NAME => {}
                Some(p) => {
                    let kind = p.kind;
                    return invalid(cx, format!("task `{name}` is of kind `{kind}`"));
                }
                None => return invalid(cx, format!("no task `{name}`")),
            }
            if !spec.deps.contains(&name) {
                spec.deps.push(name.clone());
            }
            Some(Database::Service(name))
        }
        toml::Value::Table(table) => {
            if let Some(k) = table.keys().find(|k| *k != "url_secret") {
                return invalid(cx, format!("unknown key `{k}`; expected `url_secret`"));
            }
            let Some(v) = table.get("url_secret") else {
                return invalid(cx, "expected `url_secret = \"NAME\"`".into());
            };
            let Some(name) = v.as_str() else {
                return invalid(cx, "`url_secret` is the name of a secret, a string".into());
            };
            let valid = !name.is_empty()
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return invalid(cx, format!("`{name}` is not an environment variable name"));
            }
            // A secret of the task: masked in all output, its value keyed but never kept.
            if !spec.secrets.iter().any(|s| s == name) {
                spec.secrets.push(name.to_string());
            }
            Some(Database::UrlSecret(name.to_string()))
        }
        _ => invalid(
            cx,
            "expected a service task's name or { url_secret = \"NAME\" }".into(),
        ),
    }
}

/// `image`: an image task of the graph (its image, a dependency) or a reference.
fn image(cx: &mut ResolveCx, i: &S<String>, spec: &mut TaskSpec) -> Option<String> {
    let text = cx.interp(i)?;
    if let Some(p) = cx.peers.get(&text) {
        if p.kind == crate::image::ImageKind::NAME {
            let reference = p.facts.get("reference").cloned().unwrap_or_default();
            if !spec.deps.contains(&text) {
                spec.deps.push(text);
            }
            return Some(reference);
        }
    }
    Some(text)
}
