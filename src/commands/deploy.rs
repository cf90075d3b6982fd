//! `lifeos rollback SERVICE` and the revisions part of `lifeos status`: the deploy kinds'
//! state, read from the engine (`lifeos_tasks::deploy::ops`).

use lifeos_engine::TaskError;
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

/// `lifeos rollback SERVICE [--env E] [--to REV] [--force]`.
pub async fn rollback(g: &Global, project: &Project, service: String, to: Option<String>) -> i32 {
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
