//! The one event stream. The scheduler sends; the console, `--json` writer and summary listen.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::fingerprint::{Change, Key};

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Why a task runs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Reason {
    FirstRun,
    Forced,
    CacheDisabled,
    WindowExpired {
        every: String,
    },
    /// The key matched a record, but its result is gone from the world.
    ResultMissing {
        detail: String,
    },
    Changed {
        changes: Vec<Change>,
    },
    /// Keys differ but the previous fingerprint could not be read.
    KeyChanged,
    /// `plan` only: a dependency will run first, so this one may see new inputs.
    DependencyRuns {
        name: String,
    },
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::FirstRun => write!(f, "first run"),
            Reason::Forced => write!(f, "forced"),
            Reason::CacheDisabled => write!(f, "cache disabled"),
            Reason::WindowExpired { every } => write!(f, "cache window expired (every {every})"),
            Reason::ResultMissing { detail } => write!(f, "{detail}"),
            Reason::KeyChanged => write!(f, "key changed"),
            Reason::DependencyRuns { name } => write!(f, "dependency {name} will run"),
            Reason::Changed { changes } => {
                const SHOWN: usize = 3;
                let parts: Vec<String> =
                    changes.iter().take(SHOWN).map(|c| c.to_string()).collect();
                write!(f, "{}", parts.join(", "))?;
                if changes.len() > SHOWN {
                    write!(f, " and {} more", changes.len() - SHOWN)?;
                }
                Ok(())
            }
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    Ran {
        key: Key,
        reason: Reason,
    },
    Cached {
        key: Key,
        /// Where the result was found: "record", "image lifeos-web:latest", "outputs restored".
        location: String,
        /// How long the task took when it last ran.
        saved_ms: u64,
    },
    Failed {
        key: Option<Key>,
        error: String,
        /// An environment problem (Docker unreachable, auth refused): exit code 3, not 1.
        environment: bool,
        log_tail: Vec<String>,
    },
    Skipped {
        because: String,
    },
    Interrupted,
    /// `plan` only.
    WouldRun {
        key: Key,
        reason: Reason,
    },
}

impl Outcome {
    pub fn is_success(&self) -> bool {
        matches!(
            self,
            Outcome::Ran { .. } | Outcome::Cached { .. } | Outcome::WouldRun { .. }
        )
    }
    pub fn key(&self) -> Option<Key> {
        match self {
            Outcome::Ran { key, .. }
            | Outcome::Cached { key, .. }
            | Outcome::WouldRun { key, .. } => Some(*key),
            Outcome::Failed { key, .. } => *key,
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    pub ran: usize,
    pub cached: usize,
    pub failed: usize,
    pub skipped: usize,
    pub interrupted: usize,
    pub would_run: usize,
    pub wall_ms: u64,
    /// Sum of the recorded run times of the cached tasks.
    pub saved_ms: u64,
    pub files_hashed: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    RunStarted {
        run_id: String,
        tasks: Vec<String>,
    },
    /// A task missed the cache and starts executing.
    TaskStarted {
        task: String,
        key: Key,
        reason: Reason,
    },
    TaskLog {
        task: String,
        stream: Stream,
        line: String,
    },
    /// A short status for the progress bar (a build step, a health wait).
    TaskProgress {
        task: String,
        message: String,
    },
    TaskRetry {
        task: String,
        attempt: u32,
        of: u32,
        error: String,
    },
    TaskFinished {
        task: String,
        outcome: Outcome,
        #[serde(with = "millis")]
        duration: Duration,
    },
    Warning {
        message: String,
    },
    RunFinished {
        summary: Summary,
    },
}

mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}
