//! Verify and restore: the sha256 first (nothing touches a database before), then a restore
//! into a scratch database whose row counts must match the sidecar's, and for a restore a
//! swap that renames the scratch database into place (the old one kept under a dated name).
//! Interrupted or failed before the swap: the scratch database is dropped and the live one
//! was never touched.

use std::collections::BTreeMap;
use std::path::Path;

use lifeos_engine::TaskError;
use tokio_util::sync::CancellationToken;

use super::oneshot::Client;
use super::sidecar::{self, Sidecar};
use super::{read_back, retention, scripts};

/// One line of a verdict: the check, whether it passed, and what was found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Check {
    pub check: String,
    pub ok: bool,
    pub detail: String,
}

/// Postgres names are at most 63 bytes.
fn db_name(base: &str, suffix: &str) -> String {
    let room = 63 - suffix.len();
    let mut b = base.to_string();
    while b.len() > room {
        b.pop();
    }
    format!("{b}{suffix}")
}

fn maintenance(db: &str) -> &'static str {
    if db == "postgres" {
        "template1"
    } else {
        "postgres"
    }
}

fn with(client: &Client, vars: &[(&str, &str)]) -> Client {
    let mut c = client.clone();
    c.env
        .extend(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    c
}

/// Restore `file` into a new database `scratch` and count its rows. Err: why not.
async fn into_scratch(
    client: &Client,
    d: &bollard::Docker,
    file: &Path,
    scratch: &str,
    cancel: &CancellationToken,
) -> Result<Result<BTreeMap<String, u64>, String>, TaskError> {
    let c = with(
        client,
        &[
            ("LIFEOS_SCRATCH", scratch),
            ("LIFEOS_MAINTENANCE", maintenance(scratch)),
        ],
    );
    let mut tables = BTreeMap::new();
    let ended = c
        .run(
            d,
            "restore",
            &scripts::restore_scratch(),
            Some(file.to_path_buf()),
            &mut |_: &[u8]| Ok(()),
            &mut |line: &str| {
                if let Some(json) = line.strip_prefix("lifeos-meta ") {
                    if let Ok(v) = serde_json::from_str::<serde_json::Value>(json) {
                        if let (Some(t), Some(n)) = (v["table"].as_str(), v["rows"].as_u64()) {
                            tables.insert(t.to_string(), n);
                        }
                    }
                }
            },
            cancel,
        )
        .await?;
    Ok(if ended.code == 0 {
        Ok(tables)
    } else {
        Err(ended.why())
    })
}

/// Drop `scratch` (best effort, never interrupted: it is the cleanup).
async fn drop_db(client: &Client, d: &bollard::Docker, name: &str) -> Result<(), String> {
    let c = with(
        client,
        &[
            ("LIFEOS_SCRATCH", name),
            ("LIFEOS_MAINTENANCE", maintenance(name)),
        ],
    );
    let ended = c
        .run(
            d,
            "drop",
            &scripts::drop_scratch(),
            None,
            &mut |_: &[u8]| Ok(()),
            &mut |_: &str| {},
            &CancellationToken::new(),
        )
        .await
        .map_err(|e| e.to_string())?;
    if ended.code == 0 {
        Ok(())
    } else {
        Err(ended.why())
    }
}

fn stamp() -> String {
    retention::stamp(chrono::Utc::now()).to_lowercase()
}

/// `lifeos backup verify`: sha256, full read with row counts, restore into a scratch
/// database with row counts. Every check that could run, in order; stops at the first
/// failure (a damaged file is not restored).
pub async fn verify(
    client: &Client,
    d: &bollard::Docker,
    file: &Path,
    side: &Path,
    cancel: &CancellationToken,
) -> Result<Vec<Check>, TaskError> {
    let mut out = Vec::new();
    let side = match sidecar::check(file, side) {
        Ok(s) => {
            out.push(Check {
                check: "sha256 and size".into(),
                ok: true,
                detail: format!("{} bytes, sha256 {}", s.size, s.sha256),
            });
            s
        }
        Err(why) => {
            out.push(Check {
                check: "sha256 and size".into(),
                ok: false,
                detail: why,
            });
            return Ok(out);
        }
    };
    let read = read_back(client, d, file, cancel, None).await?;
    let ok = match read {
        Ok(rows) => counts_check(&mut out, "full read (pg_restore)", &side, &rows),
        Err(why) => {
            out.push(Check {
                check: "full read (pg_restore)".into(),
                ok: false,
                detail: why,
            });
            false
        }
    };
    if !ok {
        return Ok(out);
    }
    let scratch = db_name(&side.database, &format!("_lifeos_verify_{}", stamp()));
    let restored = into_scratch(client, d, file, &scratch, cancel).await;
    let dropped = drop_db(client, d, &scratch).await;
    match restored? {
        Ok(rows) => {
            counts_check(&mut out, "restore into a scratch database", &side, &rows);
        }
        Err(why) => out.push(Check {
            check: "restore into a scratch database".into(),
            ok: false,
            detail: why,
        }),
    }
    if let Err(why) = dropped {
        out.push(Check {
            check: format!("drop scratch database {scratch}"),
            ok: false,
            detail: why,
        });
    }
    Ok(out)
}

fn counts_check(
    out: &mut Vec<Check>,
    check: &str,
    side: &Sidecar,
    rows: &BTreeMap<String, u64>,
) -> bool {
    let diff = sidecar::count_differences(&side.tables, rows);
    let total: u64 = rows.values().sum();
    let ok = diff.is_empty();
    out.push(Check {
        check: check.into(),
        ok,
        detail: if ok {
            format!(
                "{} tables, {total} rows, counts match the sidecar",
                rows.len()
            )
        } else {
            diff.join("; ")
        },
    });
    ok
}

/// What a restore did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Restored {
    pub database: String,
    /// The previous database, kept under this name (none: there was none, or it was dropped).
    pub kept_old: Option<String>,
    pub dropped_old: Option<String>,
    pub tables: BTreeMap<String, u64>,
}

/// `lifeos restore`: check, restore into scratch, compare, swap in. Err: why it refused or
/// failed; the live database is untouched unless the result is Ok.
pub async fn restore(
    client: &Client,
    d: &bollard::Docker,
    file: &Path,
    side: &Path,
    into: &str,
    drop_old: bool,
    cancel: &CancellationToken,
) -> Result<Restored, TaskError> {
    let side =
        sidecar::check(file, side).map_err(|why| TaskError::Failed(format!("refused: {why}")))?;
    let s = stamp();
    let scratch = db_name(into, &format!("_lifeos_restore_{s}"));
    let restored = into_scratch(client, d, file, &scratch, cancel).await;
    let scratch_name = scratch.as_str();
    let fail = |why: String| async move {
        let _ = drop_db(client, d, scratch_name).await;
        why
    };
    let rows = match restored {
        Err(TaskError::Interrupted) => {
            fail(String::new()).await;
            return Err(TaskError::Interrupted);
        }
        Err(e) => return Err(TaskError::Failed(fail(e.to_string()).await)),
        Ok(Err(why)) => {
            return Err(TaskError::Failed(
                fail(format!("restore into a scratch database failed: {why}")).await,
            ))
        }
        Ok(Ok(rows)) => rows,
    };
    let diff = sidecar::count_differences(&side.tables, &rows);
    if !diff.is_empty() {
        return Err(TaskError::Failed(
            fail(format!(
                "the restored rows differ from the sidecar: {}",
                diff.join("; ")
            ))
            .await,
        ));
    }
    if cancel.is_cancelled() {
        fail(String::new()).await;
        return Err(TaskError::Interrupted);
    }
    let old = db_name(into, &format!("_old_{s}"));
    let c = with(
        client,
        &[
            ("LIFEOS_SCRATCH", scratch.as_str()),
            ("LIFEOS_LIVE", into),
            ("LIFEOS_OLD", old.as_str()),
            ("LIFEOS_MAINTENANCE", maintenance(into)),
        ],
    );
    // The swap is one transaction: not interrupted halfway by Ctrl-C.
    let ended = c
        .run(
            d,
            "swap",
            &scripts::swap(),
            None,
            &mut |_: &[u8]| Ok(()),
            &mut |_: &str| {},
            &CancellationToken::new(),
        )
        .await?;
    if ended.code != 0 {
        return Err(TaskError::Failed(
            fail(format!(
                "could not swap the restored database in (the live one is unchanged): {}",
                ended.why()
            ))
            .await,
        ));
    }
    let existed = old_exists(client, d, &old).await;
    let mut r = Restored {
        database: into.to_string(),
        kept_old: existed.then(|| old.clone()),
        dropped_old: None,
        tables: rows,
    };
    if drop_old && existed {
        drop_db(client, d, &old).await.map_err(|why| {
            TaskError::Failed(format!("restored, but dropping {old} failed: {why}"))
        })?;
        r.kept_old = None;
        r.dropped_old = Some(old);
    }
    Ok(r)
}

async fn old_exists(client: &Client, d: &bollard::Docker, name: &str) -> bool {
    let c = with(
        client,
        &[
            ("LIFEOS_DB", name),
            ("LIFEOS_MAINTENANCE", maintenance(name)),
        ],
    );
    let mut found = false;
    let _ = c
        .run(
            d,
            "check",
            "psql -X -q -w -t -A -d \"$LIFEOS_MAINTENANCE\" -v db=\"$LIFEOS_DB\" <<'SQL' | sed 's/^/lifeos-found /' >&2\nSELECT count(*) FROM pg_database WHERE datname = :'db';\nSQL\n",
            None,
            &mut |_: &[u8]| Ok(()),
            &mut |line: &str| {
                if line.trim() == "lifeos-found 1" {
                    found = true;
                }
            },
            &CancellationToken::new(),
        )
        .await;
    found
}
