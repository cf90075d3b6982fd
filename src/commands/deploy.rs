//! `lifeos rollback SERVICE` and the revisions part of `lifeos status`: the deploy kinds'
//! state, read from the engine (`lifeos_tasks::deploy::ops`).

use lifeos_engine::TaskError;
use lifeos_tasks::deploy::cloudrun::{self, CloudRunBody, CloudRunDeploy};
use lifeos_tasks::deploy::{ops, DEFAULT_ENV};

use crate::cli::Global;
use crate::config::Project;
use crate::exit;

fn env_name(g: &Global) -> String {
    g.env.clone().unwrap_or_else(|| DEFAULT_ENV.to_string())
}

fn fail(e: TaskError) -> i32 {
    eprintln!("{} {e}", console::style("error:").red().bold().for_stderr());
    match e {
        TaskError::Environment(_) => exit::ENVIRONMENT,
        TaskError::Interrupted => exit::INTERRUPTED,
        TaskError::Failed(_) => exit::TASK_FAILED,
    }
}

/// The Cloud Run deploys of the selected environment's graph.
fn cloudrun_deploys(project: &Project) -> Vec<(String, CloudRunBody)> {
    project
        .graph
        .ids()
        .filter_map(|id| {
            let node = project.graph.get(id)?;
            let d = node.task.as_any()?.downcast_ref::<CloudRunDeploy>()?;
            Some((id.to_string(), d.body.clone()))
        })
        .collect()
}

/// `lifeos rollback SERVICE [--env E] [--to REV] [--force]`.
pub async fn rollback(g: &Global, project: &Project, service: String, to: Option<String>) -> i32 {
    // A Cloud Run service of this environment, by its name or its deploy task's.
    if let Some((_, body)) = cloudrun_deploys(project)
        .into_iter()
        .find(|(task, b)| b.service == service || *task == service)
    {
        return match cloudrun::ops::rollback(&body, Some(&project.cache_dir), to.as_deref()).await {
            Ok(msg) => {
                crate::outln!("{msg}");
                exit::OK
            }
            Err(e) => fail(e),
        };
    }
    let to = match to
        .as_deref()
        .map(|t| t.trim_start_matches('r').parse::<u32>())
    {
        None => None,
        Some(Ok(n)) => Some(n),
        Some(Err(_)) => {
            return super::usage_error(format!(
                "--to takes a revision such as r3 or 3, got `{}`",
                to.unwrap_or_default()
            ))
        }
    };
    let env = env_name(g);
    match ops::rollback(
        project.services.docker(),
        &project.name,
        &env,
        &service,
        to,
        !g.force.is_empty(),
    )
    .await
    {
        Ok(msg) => {
            crate::outln!("{msg}");
            exit::OK
        }
        Err(e) => fail(e),
    }
}

/// Revisions of the environment (`--env`), after the services table; nothing when none.
pub async fn status(g: &Global, project: &Project) -> i32 {
    let env = env_name(g);
    let clouds = cloudrun_deploys(project);
    if !clouds.is_empty() && !g.json {
        crate::outln!("");
        crate::outln!("environment {env}: Cloud Run");
        for (_, b) in &clouds {
            match cloudrun::ops::status(b).await {
                Ok(line) => crate::outln!("{line}"),
                Err(e) => return fail(e),
            }
        }
    }
    let (rows, router) = match ops::status(project.services.docker(), &project.name, &env).await {
        Ok(x) => x,
        Err(e) => return fail(e),
    };
    let Some(router) = router else {
        return exit::OK;
    };
    if g.json {
        let v = serde_json::json!({ "env": env, "router": router, "revisions": rows });
        crate::outln!("{}", v);
        return exit::OK;
    }
    crate::outln!("");
    crate::outln!("environment {env}: {router}");
    crate::outln!(
        "{:14} {:9} {:9} {:8} {:9} AGE",
        "SERVICE",
        "REVISION",
        "ROLE",
        "TRAFFIC",
        "STATE"
    );
    for r in rows {
        crate::outln!(
            "{:14} {:9} {:9} {:8} {:9} {}",
            r.service,
            r.revision,
            r.role,
            r.traffic,
            r.state,
            r.age
        );
    }
    exit::OK
}
