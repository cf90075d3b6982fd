//! Command-line interface (clap): the commands, flags and their parsing. `main.rs` runs them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

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

#[derive(Args, Debug, Clone)]
pub struct Global {
    /// Run as if started in DIR.
    #[arg(short = 'C', global = true, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// The config file (default: lifeos.toml here or in the nearest parent directory).
    /// Give it before the command: `lifeos -f ci.toml run`.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// How many tasks execute at once (default: the number of cores); cache checks do not count.
    #[arg(short = 'j', long = "jobs", global = true, value_name = "N")]
    pub jobs: Option<usize>,
    /// Select [environments.NAME] from the config.
    #[arg(long = "env", global = true, value_name = "NAME")]
    pub env: Option<String>,
    /// Override a [vars] value.
    #[arg(long = "set", global = true, value_name = "KEY=VALUE", value_parser = parse_kv)]
    pub set: Vec<(String, String)>,
    /// Keep running independent tasks after a failure.
    #[arg(long, global = true)]
    pub keep_going: bool,
    /// Ignore the cache: `--force` for every selected task, `--force=TASK` for one (repeatable).
    #[arg(long, global = true, num_args = 0..=1, require_equals = true, default_missing_value = "*", value_name = "TASK")]
    pub force: Vec<String>,
    /// One JSON event per line on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// Progress display.
    #[arg(long, global = true, value_enum, default_value_t = Progress::Auto)]
    pub progress: Progress,
    /// Show every log line, also on a terminal.
    #[arg(short = 'v', long, global = true)]
    pub verbose: bool,
    /// Fail (exit 3) instead of waiting when another lifeos run is using the cache.
    #[arg(long, global = true)]
    pub no_wait: bool,
    /// Never use the network for URL inputs: their kept copies are used (a missing one is an
    /// error).
    #[arg(long, global = true)]
    pub offline: bool,
    /// Also write the run summary as JSON to FILE (each task's outcome, reason and time,
    /// what the cache saved, what was delivered), for CI systems to attach.
    #[arg(long, global = true, value_name = "FILE")]
    pub summary: Option<PathBuf>,
    /// Cache directory (default: .lifeos next to lifeos.toml).
    #[arg(long, global = true, env = "LIFEOS_CACHE_DIR", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
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
