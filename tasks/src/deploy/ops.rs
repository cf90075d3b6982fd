//! What the `rollback` and `status` commands do, from the engine alone: the router's
//! recorded state and the revision containers' labels.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bollard::query_parameters::ListContainersOptionsBuilder;
use lifeos_engine::TaskError;
use serde::Serialize;

use super::revision;
use super::router::Router;
use super::tasks::{settle, READY_LABEL, ROUTER_LOCK};
use super::{ENV_LABEL, MIGRATION_LABEL, ROLE_LABEL};
use crate::container::PROJECT_LABEL;
use crate::docker::{classify, Docker};

/// Environments that have a router state, by name.
async fn router_of(
    d: &bollard::Docker,
    project: &str,
    env: &str,
) -> Result<(Router, super::state::State), TaskError> {
    let probe = Router {
        project: project.into(),
        env: env.into(),
        image: String::new(),
        http: String::new(),
        labels: BTreeMap::new(),
    };
    let state = probe.read_state(d).await?;
    if state.image.is_empty() {
        return Err(TaskError::Failed(format!(
            "nothing is deployed in environment `{env}` of project {project}{}",
            if env == super::DEFAULT_ENV {
                " (use --env NAME for another environment)"
            } else {
                ""
            }
        )));
    }
    Ok((Router::from_state(project, env, &state), state))
}

fn migrations(labels: &HashMap<String, String>) -> BTreeMap<String, String> {
    labels
        .get(MIGRATION_LABEL)
        .map(|s| {
            s.split(',')
                .filter_map(|p| p.split_once('='))
                .map(|(t, k)| (t.to_string(), k.to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// Move all traffic of `service` to the previous (or the named) revision.
pub async fn rollback(
    docker: &Docker,
    project: &str,
    env: &str,
    service: &str,
    to: Option<u32>,
    force: bool,
) -> Result<String, TaskError> {
    let started = std::time::Instant::now();
    let d = docker.get().await?;
    let _lock = ROUTER_LOCK.lock().await;
    let (router, mut state) = router_of(&d, project, env).await?;
    let Some(s) = state.services.get(service).cloned() else {
        let known: Vec<&str> = state.services.keys().map(String::as_str).collect();
        return Err(TaskError::Failed(format!(
            "service `{service}` has no deploys in environment `{env}`; deployed: {}",
            known.join(", ")
        )));
    };
    let current = s.stable;
    let Some(target) = to.or(s.previous.first().copied()) else {
        return Err(TaskError::Failed(format!(
            "{service} has no previous revision to roll back to ({})",
            s.describe()
        )));
    };
    if current == Some(target) && s.canary.is_none() {
        return Ok(format!(
            "{service}: already on r{target} ({})",
            s.describe()
        ));
    }
    let revs = revision::list(&d, project, env, service).await?;
    let Some(t) = revs.iter().find(|r| r.rev == target) else {
        let kept: Vec<String> = revs.iter().map(|r| format!("r{}", r.rev)).collect();
        return Err(TaskError::Failed(format!(
            "r{target} of {service} is not kept (kept: {}); `keep` on the deploy sets how many are",
            kept.join(", ")
        )));
    };
    // The newest revision with traffic is what the migrations were made for.
    let newest = [s.canary, s.stable].into_iter().flatten().max();
    if let Some(cur) = newest.and_then(|c| revs.iter().find(|r| r.rev == c)) {
        let (now, then) = (migrations(&cur.labels), migrations(&t.labels));
        for (task, key) in &now {
            if then.get(task) != Some(key) && !force {
                return Err(TaskError::Failed(format!(
                    "refusing to roll {service} back to r{target}: r{} was deployed after migration `{task}` (key {}) and r{target} before it, so r{target} may not work with the migrated database; pass --force to roll back anyway",
                    cur.rev,
                    &key[..12.min(key.len())]
                )));
            }
        }
    }
    if !t.running {
        revision::start(&d, &t.id).await?;
    }
    let ready = t
        .labels
        .get(READY_LABEL)
        .cloned()
        .unwrap_or_else(|| "/".into());
    let sink_events = tokio::sync::mpsc::unbounded_channel().0;
    let sink = lifeos_engine::LogSink::new("rollback", sink_events, Default::default());
    let name = super::revision_name(project, env, service, target);
    revision::wait_ready(
        &d,
        &t.id,
        &name,
        s.port,
        &ready,
        Duration::from_secs(30),
        &sink,
        &Default::default(),
    )
    .await
    .map_err(|e| TaskError::Failed(e.to_string().replace("it was removed and ", "")))?;
    let from = s.describe();
    let svc = state.services.get_mut(service).expect("checked");
    svc.make_stable(target);
    router.apply(&d, &mut state, None).await?;
    let moved = started.elapsed();
    let after = state.services[service].clone();
    settle(
        &d,
        &router,
        service,
        &after,
        after.previous.len().max(revs.len()) as u32,
        true,
    )
    .await?;
    Ok(format!(
        "{service}: {from} → {} (traffic moved in {} ms)",
        after.describe(),
        moved.as_millis()
    ))
}

/// One revision as `lifeos status --env E` shows it.
#[derive(Debug, Serialize)]
pub struct RevisionRow {
    pub service: String,
    pub revision: String,
    pub role: String,
    pub traffic: String,
    pub state: String,
    pub age: String,
}

fn age(created: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs() as i64;
    let d = (now - created).max(0);
    match d {
        0..=59 => format!("{d}s"),
        60..=3599 => format!("{}m", d / 60),
        3600..=86399 => format!("{}h", d / 3600),
        _ => format!("{}d", d / 86400),
    }
}

/// Every revision of the environment, with its role and share; empty when nothing is deployed.
pub async fn status(
    docker: &Docker,
    project: &str,
    env: &str,
) -> Result<(Vec<RevisionRow>, Option<String>), TaskError> {
    let d = docker.get().await?;
    let (router, state) = match router_of(&d, project, env).await {
        Ok(x) => x,
        Err(_) => return Ok((vec![], None)),
    };
    let mut rows = Vec::new();
    for (service, s) in &state.services {
        let split: HashMap<u32, u8> = s.split().into_iter().collect();
        for r in revision::list(&d, project, env, service).await? {
            let role = if s.stable == Some(r.rev) {
                "stable"
            } else if s.canary == Some(r.rev) {
                "canary"
            } else if s.previous.first() == Some(&r.rev) {
                "previous"
            } else {
                "-"
            };
            rows.push(RevisionRow {
                service: service.clone(),
                revision: format!("r{}", r.rev),
                role: role.into(),
                traffic: format!("{}%", split.get(&r.rev).copied().unwrap_or(0)),
                state: if r.running { "running" } else { "stopped" }.into(),
                age: age(r.created),
            });
        }
    }
    let health = match router.serving(&d, &state).await? {
        None => format!(
            "router {} serving generation {}",
            router.name(),
            state.generation
        ),
        Some(why) => why,
    };
    Ok((rows, Some(health)))
}

/// Names of the environments with a router in this project.
pub async fn environments(docker: &Docker, project: &str) -> Result<Vec<String>, TaskError> {
    let d = docker.get().await?;
    let filters = HashMap::from([(
        "label".to_string(),
        vec![
            format!("{PROJECT_LABEL}={project}"),
            format!("{ROLE_LABEL}=router-state"),
        ],
    )]);
    let list = d
        .list_containers(Some(
            ListContainersOptionsBuilder::default()
                .all(true)
                .filters(&filters)
                .build(),
        ))
        .await
        .map_err(|e| classify(e, "list routers"))?;
    let mut v: Vec<String> = list
        .into_iter()
        .filter_map(|c| c.labels?.get(ENV_LABEL).cloned())
        .collect();
    v.sort();
    Ok(v)
}

/// The last verdict a check task kept in the environment's router state, if any.
pub async fn last_check(
    docker: &Docker,
    project: &str,
    env: &str,
    task: &str,
) -> Result<Option<serde_json::Value>, TaskError> {
    let d = docker.get().await?;
    match router_of(&d, project, env).await {
        Ok((_, state)) => Ok(state.checks.get(task).cloned()),
        Err(_) => Ok(None),
    }
}
