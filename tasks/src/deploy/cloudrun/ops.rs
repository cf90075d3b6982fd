//! `lifeos rollback` and `lifeos status --env E` for Cloud Run services.

use std::path::Path;
use std::time::Instant;

use lifeos_engine::TaskError;

use super::config::CloudRunBody;
use super::history;
use super::model::RevisionView;
use super::tasks::{describe, gcloud, update_traffic};

/// The previous serving revision: the newest in the recorded history that no longer serves
/// and still exists ready; else, from `revisions list`, the newest ready one created before
/// the newest serving one. With its source, for the message.
fn previous(
    revs: &[RevisionView],
    serving: &[String],
    recorded: &[String],
) -> Option<(String, &'static str)> {
    let ready = |name: &str| revs.iter().any(|r| r.name == name && r.ready);
    if let Some(r) = recorded
        .iter()
        .rev()
        .find(|r| !serving.contains(r) && ready(r))
    {
        return Some((r.clone(), "the recorded history"));
    }
    let newest = revs
        .iter()
        .filter(|r| serving.contains(&r.name))
        .map(|r| r.created.as_str())
        .max()?;
    revs.iter()
        .filter(|r| r.ready && !serving.contains(&r.name) && r.created.as_str() < newest)
        .max_by(|a, b| a.created.cmp(&b.created))
        .map(|r| (r.name.clone(), "revisions list"))
}

/// All traffic of the deploy's service to `to` (a revision name or its suffix) or to the
/// previous serving revision, in one `update-traffic --to-revisions REV=100` call.
pub async fn rollback(
    b: &CloudRunBody,
    cache_dir: Option<&Path>,
    to: Option<&str>,
) -> Result<String, TaskError> {
    let started = Instant::now();
    let g = gcloud(b);
    let s = describe(&g, b, None, None).await?.ok_or_else(|| {
        TaskError::Failed(format!(
            "Cloud Run service {} does not exist in project {} region {}",
            b.service, b.project, b.region
        ))
    })?;
    let mut args: Vec<String> = ["run", "revisions", "list", "--service", &b.service]
        .map(String::from)
        .to_vec();
    args.extend(b.scope());
    let revs =
        RevisionView::parse_list(&g.json(&args, None, None).await?).map_err(TaskError::Failed)?;
    let serving: Vec<String> = s.split().into_keys().collect();
    let (target, source) = match to {
        Some(t) => {
            let found = revs
                .iter()
                .find(|r| r.name == t || r.name.ends_with(&format!("-{t}")))
                .ok_or_else(|| {
                    let names: Vec<&str> = revs.iter().map(|r| r.name.as_str()).collect();
                    TaskError::Failed(format!(
                        "{} has no revision `{t}`; revisions: {}",
                        b.service,
                        names.join(", ")
                    ))
                })?;
            if !found.ready {
                return Err(TaskError::Failed(format!(
                    "{} is not ready and cannot serve traffic",
                    found.name
                )));
            }
            (found.name.clone(), "--to")
        }
        None => {
            // During a canary, "back" is the revision the canary was split against.
            let canary = s
                .tagged(&b.tag)
                .filter(|t| s.percent(&t.revision) > 0)
                .map(|t| t.revision.clone());
            let stable: Vec<&String> = serving
                .iter()
                .filter(|r| Some(*r) != canary.as_ref())
                .collect();
            let recorded = history::load(cache_dir, b).serving;
            match (&canary, stable.as_slice()) {
                (Some(_), [one]) => Some(((*one).clone(), "the stable side of the canary")),
                _ => previous(&revs, &serving, &recorded),
            }
            .ok_or_else(|| {
                TaskError::Failed(format!(
                    "{} has no previous revision to roll back to (traffic {})",
                    b.service,
                    s.describe()
                ))
            })?
        }
    };
    if s.serves_all(&target) {
        return Ok(format!(
            "{}: already on {target} ({})",
            b.service,
            s.describe()
        ));
    }
    let mut change = vec!["--to-revisions".to_string(), format!("{target}=100")];
    // A canary tag on a newer revision goes too: the next deploy routes it again.
    if s.tagged(&b.tag).is_some_and(|t| t.revision != target) {
        change.extend(["--remove-tags".to_string(), b.tag.clone()]);
    }
    let from = s.describe();
    let after = update_traffic(&g, b, &change, None, None).await?;
    let moved = started.elapsed();
    if let Err(e) = history::record(cache_dir, b, &target) {
        eprintln!("lifeos: history not kept: {e}");
    }
    Ok(format!(
        "{}: {from} → {} (previous from {source}; traffic moved in {} ms)",
        b.service,
        after.describe(),
        moved.as_millis()
    ))
}

/// One line per Cloud Run service: its traffic and URL.
pub async fn status(b: &CloudRunBody) -> Result<String, TaskError> {
    let g = gcloud(b);
    Ok(match describe(&g, b, None, None).await? {
        None => format!(
            "{} (Cloud Run {}/{}): not deployed",
            b.service, b.project, b.region
        ),
        Some(s) => format!(
            "{} (Cloud Run {}/{}): traffic {}; {}",
            b.service,
            b.project,
            b.region,
            s.describe(),
            s.url
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rev(name: &str, created: &str, ready: bool) -> RevisionView {
        RevisionView {
            name: name.into(),
            created: created.into(),
            ready,
            image_digest: String::new(),
        }
    }

    #[test]
    fn history_first_then_the_newest_older_ready_revision() {
        let revs = [
            rev("a-1", "2026-01-01T00:00:01Z", true),
            rev("a-2", "2026-01-01T00:00:02Z", true),
            rev("a-3", "2026-01-01T00:00:03Z", false),
            rev("a-4", "2026-01-01T00:00:04Z", true),
        ];
        let serving = ["a-4".to_string()];
        assert_eq!(
            previous(&revs, &serving, &["a-1".into(), "a-4".into()]),
            Some(("a-1".into(), "the recorded history"))
        );
        assert_eq!(
            previous(&revs, &serving, &[]),
            Some(("a-2".into(), "revisions list"))
        );
        assert_eq!(previous(&revs[..1], &["a-1".into()], &[]), None);
    }
}
