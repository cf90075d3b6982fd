//! Command-line interface (clap): the commands, flags and their parsing. `main.rs` runs them.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{Args, Command, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "lifeos",
    version,
    about = "Build, ship and run a web + API monorepo as one content-hashed task graph"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Cmd,
}

impl Cli {
    /// Parse the process's arguments (see [`Cli::try_parse_from`]).
    pub fn try_parse() -> Result<Cli, clap::Error> {
        Self::try_parse_from(std::env::args_os())
    }

    /// Parse `args`. The [`Shared`] options are accepted before the command and after it (at
    /// any depth); after it they win. They are added to a command only when it is the one
    /// given: clap's `global = true` would copy all 12 into each of the 16 commands on every
    /// run, a third of what a no-op `lifeos build` allocated before its first task.
    pub fn try_parse_from<I, T>(args: I) -> Result<Cli, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let mut matches = command().try_get_matches_from(args)?;
        let mut after = Vec::new();
        let mut level = &matches;
        while let Some((_, sub)) = level.subcommand() {
            let progress_given = sub.value_source("progress") == Some(ValueSource::CommandLine);
            after.push((Shared::from_arg_matches(sub)?, progress_given));
            level = sub;
        }
        let mut cli = Cli::from_arg_matches_mut(&mut matches)?;
        for (shared, progress_given) in after {
            cli.global.shared.merge(shared, progress_given);
        }
        Ok(cli)
    }
}

/// The whole command line, each command's [`Shared`] options added when it is built.
pub fn command() -> Command {
    let cmd = Cli::command();
    let names: Vec<String> = cmd
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .collect();
    names.into_iter().fold(cmd, |cmd, name| {
        cmd.mut_subcommand(name, |c| c.defer(with_shared))
    })
}

/// A command with the shared options, and its own commands set up to get them when built.
fn with_shared(cmd: Command) -> Command {
    let names: Vec<String> = cmd
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .collect();
    let cmd = Shared::augment_args(cmd);
    names.into_iter().fold(cmd, |cmd, name| {
        cmd.mut_subcommand(name, |c| c.defer(with_shared))
    })
}

#[derive(Args, Debug, Clone)]
pub struct Global {
    /// The config file (default: lifeos.toml here or in the nearest parent directory).
    /// Give it before the command: `lifeos -f ci.toml run`.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    #[command(flatten)]
    pub shared: Shared,
}

impl std::ops::Deref for Global {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.shared
    }
}

impl std::ops::DerefMut for Global {
    fn deref_mut(&mut self) -> &mut Shared {
        &mut self.shared
    }
}

// Options every command takes, before or after its name (a `///` here would become the
// about text of each command they are added to).
#[derive(Args, Debug, Clone)]
pub struct Shared {
    /// Run as if started in DIR.
    #[arg(short = 'C', value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// How many tasks execute at once (default: the number of cores); cache checks do not count.
    #[arg(short = 'j', long = "jobs", value_name = "N")]
    pub jobs: Option<usize>,
    /// Select [environments.NAME] from the config.
    #[arg(long = "env", value_name = "NAME")]
    pub env: Option<String>,
    /// Override a [vars] value.
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_kv)]
    pub set: Vec<(String, String)>,
    /// Keep running independent tasks after a failure.
    #[arg(long)]
    pub keep_going: bool,
    /// Ignore the cache: `--force` for every selected task, `--force=TASK` for one (repeatable).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "*", value_name = "TASK")]
    pub force: Vec<String>,
    /// One JSON event per line on stdout.
    #[arg(long)]
    pub json: bool,
    /// Progress display.
    #[arg(long, value_enum, default_value_t = Progress::Auto)]
    pub progress: Progress,
    /// Show every log line, also on a terminal.
    #[arg(short = 'v', long)]
    pub verbose: bool,
    /// Fail (exit 3) instead of waiting when another lifeos run is using the cache.
    #[arg(long)]
    pub no_wait: bool,
    /// Never use the network for URL inputs: their kept copies are used (a missing one is an
    /// error).
    #[arg(long)]
    pub offline: bool,
    /// Also write the run summary as JSON to FILE (each task's outcome, reason and time,
    /// what the cache saved, what was delivered), for CI systems to attach.
    #[arg(long, value_name = "FILE")]
    pub summary: Option<PathBuf>,
    /// Cache directory (default: .lifeos next to lifeos.toml).
    #[arg(long, env = "LIFEOS_CACHE_DIR", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
}

impl Shared {
    /// `self` given before the command, `later` after it: a value given later wins, flags
    /// add up, lists go on.
    fn merge(&mut self, later: Shared, progress_given: bool) {
        let Shared {
            dir,
            jobs,
            env,
            set,
            keep_going,
            force,
            json,
            progress,
            verbose,
            no_wait,
            offline,
            summary,
            cache_dir,
        } = later;
        self.dir = dir.or(self.dir.take());
        self.jobs = jobs.or(self.jobs);
        self.env = env.or(self.env.take());
        self.set.extend(set);
        self.keep_going |= keep_going;
        self.force.extend(force);
        self.json |= json;
        if progress_given {
            self.progress = progress;
        }
        self.verbose |= verbose;
        self.no_wait |= no_wait;
        self.offline |= offline;
        self.summary = summary.or(self.summary.take());
        self.cache_dir = cache_dir.or(self.cache_dir.take());
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Progress {
    /// Bars on a terminal, plain lines otherwise or when CI is set.
    Auto,
    Tty,
    Plain,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Dot,
    Mermaid,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Build image tasks and what they depend on (none named: every image).
    Build { images: Vec<String> },
    /// Run tasks and what they depend on (none named: the whole graph).
    Run { tasks: Vec<String> },
    /// Dry run: each task's key, cached or will run, and why.
    Plan { tasks: Vec<String> },
    /// Field-by-field difference between a task's key now and its last successful run.
    Explain { task: String },
    /// Print the graph.
    Graph {
        tasks: Vec<String>,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Start services and what they need; wait until healthy (none named: every service).
    Up { services: Vec<String> },
    /// Bring services up, then keep them in step with the files: sync what a service
    /// declares in `sync`, rebuild an image whose other inputs changed, rerun changed tasks.
    Watch { services: Vec<String> },
    /// Stop and remove the project's containers and network.
    Down {
        /// Also remove the project's named volumes (their data is lost).
        #[arg(long)]
        volumes: bool,
    },
    /// The project's services: state, health, ports, image, since.
    Status,
    /// Print a service's logs.
    Logs {
        service: String,
        /// Keep following new output.
        #[arg(short = 'f', long)]
        follow: bool,
    },
    /// Move a deployed service's traffic back to its previous revision (or --to REV); with
    /// --force also across a migration.
    Rollback {
        service: String,
        /// The revision to go back to (r3 or 3); default: the previous one.
        #[arg(long, value_name = "REV")]
        to: Option<String>,
    },
    /// Inspect or trim the local cache.
    Cache {
        #[command(subcommand)]
        action: CacheCmd,
    },
    /// Verify or prune the files of `backup` tasks.
    Backup {
        #[command(subcommand)]
        action: BackupCmd,
    },
    /// Restore a backup (a file, or an http:// or gs:// URL) into its database: sha256 first, then a
    /// scratch database whose row counts must match, then a rename into place.
    Restore {
        /// A `.dump` file with its `.dump.json` sidecar, or an http:// or gs:// URL of one.
        source: String,
        /// The database to replace (default: the backup task's `dbname`).
        #[arg(long, value_name = "DB")]
        into: Option<String>,
        /// Drop the replaced database instead of keeping it under a dated name.
        #[arg(long)]
        drop_old: bool,
        /// The backup task whose database it is (needed when there are several).
        #[arg(long, value_name = "TASK")]
        task: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum BackupCmd {
    /// Check a backup: sha256, a full read, and a restore into a scratch database with the
    /// sidecar's row counts (default: the newest backup).
    Verify {
        file: Option<PathBuf>,
        #[arg(long, value_name = "TASK")]
        task: Option<String>,
    },
    /// Apply the task's `keep` rules to its backups.
    Prune {
        /// List what would go, and which rule keeps each file that stays; delete nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(long, value_name = "TASK")]
        task: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum CacheCmd {
    /// Records, blobs and sizes.
    Stats,
    /// Remove records older than a duration, and blobs nothing refers to.
    Prune {
        #[arg(long, value_name = "DURATION", value_parser = parse_dur)]
        older_than: std::time::Duration,
    },
    /// Remove the whole cache.
    Clean,
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected KEY=VALUE, got `{s}`"))
}

fn parse_dur(s: &str) -> Result<std::time::Duration, String> {
    crate::config::parse_duration(s)
        .ok_or_else(|| format!("expected a duration such as 7d, 12h, 30m; got `{s}`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("lifeos").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    #[test]
    fn the_command_line_is_consistent() {
        // Builds every command (deferred ones too) and checks ids, shorts and positionals.
        command().debug_assert();
    }

    #[test]
    fn shared_options_go_before_or_after_the_command_and_after_wins() {
        let cli = parse(&[
            "-j", "2", "--set", "a=1", "build", "web", "--json", "-j", "3", "--set", "a=2",
        ]);
        assert_eq!(cli.global.jobs, Some(3));
        assert!(cli.global.json);
        assert_eq!(
            cli.global.set,
            vec![("a".into(), "1".into()), ("a".into(), "2".into())]
        );
        assert!(matches!(cli.command, Cmd::Build { ref images } if images == &["web"]));

        let cli = parse(&["-C", "/tmp", "--keep-going", "run"]);
        assert_eq!(
            cli.global.dir.as_deref(),
            Some(std::path::Path::new("/tmp"))
        );
        assert!(cli.global.keep_going);
        assert_eq!(cli.global.jobs, None);
    }

    #[test]
    fn a_default_after_the_command_does_not_undo_a_choice_before_it() {
        let cli = parse(&["--progress", "plain", "build"]);
        assert_eq!(cli.global.progress, Progress::Plain);
        let cli = parse(&["--progress", "plain", "build", "--progress", "tty"]);
        assert_eq!(cli.global.progress, Progress::Tty);
        assert_eq!(parse(&["status"]).global.progress, Progress::Auto);
    }

    #[test]
    fn nested_commands_take_shared_options_and_own_shorts_stay_their_own() {
        let cli = parse(&["cache", "stats", "--json"]);
        assert!(cli.global.json);
        assert!(matches!(
            cli.command,
            Cmd::Cache {
                action: CacheCmd::Stats
            }
        ));
        let cli = parse(&["cache", "--offline", "prune", "--older-than", "7d"]);
        assert!(cli.global.offline);
        // `-f` after `logs` is its --follow; before a command it is --file.
        let cli = parse(&["-f", "ci.toml", "logs", "api", "-f"]);
        assert_eq!(
            cli.global.file.as_deref(),
            Some(std::path::Path::new("ci.toml"))
        );
        assert!(matches!(cli.command, Cmd::Logs { follow: true, .. }));
        let e = Cli::try_parse_from(["lifeos", "build", "--file", "x.toml"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::UnknownArgument, "{e}");
    }
}
