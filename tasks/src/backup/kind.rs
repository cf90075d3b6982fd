//! `kind = "backup"` in lifeos.toml: `database`, `dir`, `format`, `keep`, `upload`, and the
//! connection details `dbname`, `user`, `port`, `image`.

use std::sync::Arc;

use lifeos_engine::{Class, Task, TaskSpec};
use serde::Deserialize;

use super::retention::Keep;
use super::task::{BackupTask, Settings};
use crate::container::ServiceKind;
use crate::kind::{Defaults, Diagnostic, InstantiateCx, ResolveCx, TaskTable, TypedKind, S};

pub struct BackupKind;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Raw {
    /// A service task of the graph that runs Postgres.
    database: Option<S<String>>,
    dir: Option<S<String>>,
    format: Option<S<String>>,
    keep: Option<S<RawKeep>>,
    upload: Option<S<String>>,
    /// The database's name in the server (default `postgres`).
    dbname: Option<S<String>>,
    user: Option<S<String>>,
    port: Option<S<u16>>,
    /// The client image (default: the database service's).
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
        let database = cx.interp(db)?;
        match cx.peers.get(&database) {
            Some(p) if p.kind == ServiceKind::NAME => {}
            found => {
                let what = match found {
                    Some(p) => format!("task `{database}` is of kind `{}`", p.kind),
                    None => format!("no task `{database}`"),
                };
                cx.err(
                    Diagnostic::new(format!("invalid `database` of task `{}`", t.id))
                        .at(db.span(), what)
                        .help("name the service task that runs Postgres, e.g. database = \"postgres\""),
                );
                return None;
            }
        }
        if !spec.deps.contains(&database) {
            spec.deps.push(database.clone());
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
                Some(i) => Some(cx.interp(i)?),
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
        let db = cx.peer::<ServiceKind>(&body.database).ok_or_else(|| {
            format!(
                "task `{}`: `{}` is not a service task",
                body.task, body.database
            )
        })?;
        Ok(Arc::new(BackupTask::new(
            body,
            db,
            cx.services.docker().clone(),
        )))
    }
}
