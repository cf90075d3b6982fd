//! `lifeos up`, `down`, `status`, `logs`: local development through the same graph.

use lifeos_engine::{Redactor, TaskError};
use lifeos_tasks::container::ops;

use super::check_names;
use super::run::{execute, select_of_kind};
use crate::cli::Global;
use crate::config::Project;
use crate::exit;
use lifeos_tasks::container::ServiceKind;
use lifeos_tasks::kind::TypedKind;

fn env_error(e: TaskError) -> i32 {
    eprintln!("{} {e}", console::style("error:").red().bold().for_stderr());
    match e {
        TaskError::Environment(_) => exit::ENVIRONMENT,
        _ => exit::TASK_FAILED,
    }
}

pub async fn up(g: &Global, project: &Project, services: Vec<String>) -> i32 {
    let names = match select_of_kind(project, services, ServiceKind::NAME) {
        Ok(n) => n,
        Err(code) => return code,
    };
    let (code, _) = execute(g, project, "up", names.clone(), false).await;
    if code != exit::OK || g.json {
        return code;
    }
    // Where to reach what came up.
    let Ok(d) = project.services.docker().get().await else {
        return code;
    };
    if let Ok(rows) = ops::status(&d, &project.name, &names).await {
        for r in rows {
            let at = if r.ports.is_empty() {
                format!("{} (no published ports)", r.service)
            } else {
                r.ports.join(", ")
            };
            eprintln!("  {:12} {}  {}", r.service, r.health, at);
        }
    }
    code
}

pub async fn down(project: &Project, volumes: bool) -> i32 {
    let d = match project.services.docker().get().await {
        Ok(d) => d,
        Err(e) => return env_error(e),
    };
    match ops::down(&d, &project.name, volumes).await {
        Ok(removed) if removed.is_empty() => {
            eprintln!("lifeos: nothing to remove for project {}", project.name);
            exit::OK
        }
        Ok(removed) => {
            for r in removed {
                eprintln!("removed {r}");
            }
            exit::OK
        }
        Err(e) => env_error(e),
    }
}

pub async fn status(g: &Global, project: &Project) -> i32 {
    let d = match project.services.docker().get().await {
        Ok(d) => d,
        Err(e) => return env_error(e),
    };
    let services = project.of_kind(ServiceKind::NAME);
    match ops::status(&d, &project.name, &services).await {
        Ok(rows) if g.json => {
            crate::outln!("{}", serde_json::to_string(&rows).unwrap());
            exit::OK
        }
        Ok(rows) => {
            crate::outln!(
                "{:14} {:10} {:10} {:28} {:28} SINCE",
                "SERVICE",
                "STATE",
                "HEALTH",
                "PORTS",
                "IMAGE"
            );
            for r in rows {
                crate::outln!(
                    "{:14} {:10} {:10} {:28} {:28} {}",
                    r.service,
                    r.state,
                    r.health,
                    if r.ports.is_empty() {
                        "-".to_string()
                    } else {
                        r.ports.join(",")
                    },
                    r.image,
                    r.since
                );
            }
            for (service, n) in synced_differences(&d, project, &services).await {
                crate::outln!(
                    "{service}: differs from its image by {n} synced file{} (lifeos watch)",
                    if n == 1 { "" } else { "s" }
                );
            }
            exit::OK
        }
        Err(e) => env_error(e),
    }
}

/// Services whose running container holds synced files its image does not (what `lifeos
/// watch` left in `.lifeos/watch/<service>.json`, while that container still runs).
async fn synced_differences(
    d: &lifeos_tasks::docker::Client,
    project: &Project,
    services: &[String],
) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for s in services {
        let path = project.cache_dir.join("watch").join(format!("{s}.json"));
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
            continue;
        };
        let n = v["synced"].as_u64().unwrap_or(0);
        let Some(id) = v["container"].as_str() else {
            continue;
        };
        let current = ops::find(d, &project.name, Some(s))
            .await
            .unwrap_or_default()
            .into_iter()
            .any(|c| c.id.as_deref() == Some(id));
        if n > 0 && current {
            out.push((s.clone(), n));
        }
    }
    out
}

pub async fn logs(project: &Project, service: &str, follow: bool) -> i32 {
    if let Err(code) = check_names(project, &[service.to_string()]) {
        return code;
    }
    let d = match project.services.docker().get().await {
        Ok(d) => d,
        Err(e) => return env_error(e),
    };
    // Every secret the graph declares, as this shell has them, plus the values the
    // service's container was started with (a later shell may hold others, or none).
    let names = project
        .graph
        .get(service)
        .map(|n| n.spec.secrets.clone())
        .unwrap_or_default();
    let mut values = Vec::new();
    if !names.is_empty() {
        for c in ops::find(&d, &project.name, Some(service))
            .await
            .unwrap_or_default()
        {
            let Some(id) = c.id else { continue };
            let Ok(info) = d.inspect_container(&id, None).await else {
                continue;
            };
            for kv in info.config.and_then(|c| c.env).unwrap_or_default() {
                match kv.split_once('=') {
                    Some((k, v)) if names.iter().any(|n| n == k) => values.push(v.to_string()),
                    _ => {}
                }
            }
        }
    }
    let secrets = Redactor::for_graph_and(&project.graph, values);
    let mut stdout = std::io::stdout();
    // Ctrl-C and SIGTERM end `logs -f` alike, with 130; nothing to clean up.
    tokio::select! {
        r = ops::logs(&d, &project.name, service, follow, &secrets, &mut stdout) => match r {
            Ok(()) => exit::OK,
            Err(e) => env_error(e),
        },
        _ = super::run::interrupted() => exit::INTERRUPTED,
    }
}
