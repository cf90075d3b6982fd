//! One module per command; this file finds and loads the project for them.

mod cache;
mod explain;
mod run;
mod services;

use std::path::PathBuf;
use std::sync::Arc;

use lifeos_cache::{CacheDir, Snapshot};
use lifeos_engine::GraphFormat;
use lifeos_tasks::Docker;

use crate::cli::{Cli, Cmd, Format, Global};
use crate::config::{self, LoadError, LoadOptions, Project};
use crate::diagnostic::did_you_mean;
use crate::exit;

pub async fn dispatch(cli: Cli) -> i32 {
    let g = &cli.global;
    let project = match load(g) {
        Ok(p) => p,
        Err(code) => return code,
    };
    match cli.command {
        Cmd::Build { images } => run::build(g, &project, images).await,
        Cmd::Run { tasks } => run::run(g, &project, tasks).await,
        Cmd::Plan { tasks } => run::plan(g, &project, tasks).await,
        Cmd::Explain { task } => explain::explain(g, &project, task).await,
        Cmd::Graph { tasks, format } => graph(&project, &tasks, format),
        Cmd::Cache { action } => cache::cache(g, &project, action),
        Cmd::Up { services } => services::up(g, &project, services).await,
        Cmd::Down { volumes } => services::down(&project, volumes).await,
        Cmd::Status => services::status(g, &project).await,
        Cmd::Logs { service, follow } => services::logs(&project, &service, follow).await,
    }
}

pub fn usage_error(msg: impl std::fmt::Display) -> i32 {
    eprintln!(
        "{} {msg}",
        console::style("error:").red().bold().for_stderr()
    );
    exit::USAGE
}

fn load(g: &Global) -> Result<Project, i32> {
    let file: PathBuf = match &g.file {
        Some(f) => f.clone(),
        None => {
            let cwd = std::env::current_dir()
                .map_err(|e| usage_error(format!("no current directory: {e}")))?;
            config::find(&cwd).ok_or_else(|| {
                usage_error(format!(
                    "no {} in {} or any parent directory\n  create one, or pass -f FILE / -C DIR",
                    config::FILE_NAME,
                    cwd.display()
                ))
            })?
        }
    };
    let opts = LoadOptions {
        env: g.env.clone(),
        set: g.set.clone(),
        cache_dir: g.cache_dir.clone(),
    };
    config::load(&file, &opts, &Docker::new()).map_err(|e| match e {
        LoadError::Config(d) => {
            eprint!("{}", d.render(console::colors_enabled_stderr()));
            let n = d.errors.len();
            eprintln!(
                "{} {} in {}; nothing was run",
                console::style("error:").red().bold().for_stderr(),
                if n == 1 {
                    "1 config error".to_string()
                } else {
                    format!("{n} config errors")
                },
                d.path
            );
            exit::USAGE
        }
        LoadError::Usage(m) => usage_error(m),
    })
}

/// Check task names given on the command line, with a suggestion for typos.
pub fn check_names(project: &Project, names: &[String]) -> Result<(), i32> {
    for n in names {
        if project.graph.get(n).is_none() {
            let hint = match did_you_mean(n, project.graph.ids()) {
                Some(s) => format!("did you mean `{s}`?"),
                None => format!(
                    "tasks: {}",
                    project.graph.ids().collect::<Vec<_>>().join(", ")
                ),
            };
            return Err(usage_error(format!("unknown task `{n}`: {hint}")));
        }
    }
    Ok(())
}

/// The run's file-system view, with the stat cache from the last run.
pub fn snapshot(project: &Project, cache: &CacheDir) -> Arc<Snapshot> {
    let mut s = Snapshot::open(&project.root, Some(cache.stat_cache_path()));
    s.skip_dir(project.cache_dir.clone());
    Arc::new(s)
}

fn graph(project: &Project, tasks: &[String], format: Format) -> i32 {
    if let Err(code) = check_names(project, tasks) {
        return code;
    }
    let sel = project.graph.select(tasks).expect("names checked");
    let f = match format {
        Format::Text => GraphFormat::Text,
        Format::Dot => GraphFormat::Dot,
        Format::Mermaid => GraphFormat::Mermaid,
        Format::Json => GraphFormat::Json,
    };
    print!("{}", project.graph.render(&sel, f));
    exit::OK
}
