//! `gcloud ... --format json` as a child process: stdout is the JSON answer, stderr (its
//! progress and errors) streams into the task's log line by line. Failures are sorted the way
//! a user acts on them: gcloud missing or not logged in is the environment (exit 3), anything
//! gcloud reports as `ERROR: (gcloud.run.…)` is the task's failure (exit 1) with gcloud's
//! own message.

use std::process::Stdio;
use std::time::Duration;

use lifeos_engine::{LogSink, Stream, TaskError};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio_util::sync::CancellationToken;

/// How to install the CLI, for "gcloud missing".
const INSTALL: &str = "install the Google Cloud CLI (https://cloud.google.com/sdk/docs/install; Debian/Ubuntu: apt-get install google-cloud-cli; GitHub Actions: google-github-actions/setup-gcloud)";

/// What to do when gcloud has no usable credentials.
const LOGIN: &str = "run `gcloud auth login` (a workstation), or use a service account: `gcloud auth activate-service-account --key-file=KEY.json`, GOOGLE_APPLICATION_CREDENTIALS, or google-github-actions/auth in CI";

/// gcloud's words for "no usable credentials" (auth list, expired tokens, revoked keys).
const AUTH_SIGNS: &[&str] = &[
    "You do not currently have an active account selected",
    "gcloud auth login",
    "There was a problem refreshing your current auth tokens",
    "does not have any valid credentials",
    "Reauthentication failed",
    "Your current active account",
    "invalid_grant",
];

/// A gcloud program and the calls lifeos makes with it.
#[derive(Debug, Clone)]
pub struct Gcloud {
    pub program: String,
    /// Where the program came from, for "not installed" messages.
    pub source: &'static str,
    /// Extra environment for gcloud (the task's secrets: a token, never in argv).
    pub env: Vec<(String, String)>,
}

/// `gcloud run deploy lifeos-api` from an argument list: the words before the first flag.
pub fn command_text(args: &[String]) -> String {
    let words: Vec<&str> = args
        .iter()
        .take_while(|a| !a.starts_with('-'))
        .map(String::as_str)
        .collect();
    format!("gcloud {}", words.join(" "))
}

/// The `ERROR: (gcloud.…) message` of gcloud's stderr, with the lines that follow it.
fn error_text(stderr: &str) -> Option<String> {
    let at = stderr.find("ERROR: (gcloud")?;
    Some(stderr[at..].trim_end().to_string())
}

impl Gcloud {
    pub fn new(program: String, source: &'static str, env: Vec<(String, String)>) -> Self {
        Self {
            program,
            source,
            env,
        }
    }

    /// Run gcloud with `args`; its JSON answer (`Null` for an empty stdout).
    pub async fn json(
        &self,
        args: &[String],
        log: Option<&LogSink>,
        cancel: Option<&CancellationToken>,
    ) -> Result<Value, TaskError> {
        let what = command_text(args);
        let mut cmd = tokio::process::Command::new(&self.program);
        cmd.args(args)
            .envs(self.env.iter().cloned())
            .env("CLOUDSDK_CORE_DISABLE_PROMPTS", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        crate::process::die_with_lifeos(&mut cmd);
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(TaskError::Environment(format!(
                    "gcloud is not installed: `{}` (from {}) was not found; {INSTALL}, or point LIFEOS_GCLOUD (or the task's `gcloud`) at it",
                    self.program, self.source
                )))
            }
            Err(e) => {
                return Err(TaskError::Environment(format!(
                    "cannot run gcloud `{}` (from {}): {e}",
                    self.program, self.source
                )))
            }
        };
        let pgid = child.id().map(|p| p as i32);
        let mut stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        let log2 = log.cloned();
        let err_task = tokio::spawn(async move {
            let mut text = String::new();
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                if let Some(log) = &log2 {
                    log.line(Stream::Stderr, &l);
                }
                text.push_str(&l);
                text.push('\n');
            }
            text
        });
        let out_task = tokio::spawn(async move {
            let mut buf = Vec::new();
            let _ = stdout.read_to_end(&mut buf).await;
            buf
        });
        let never = CancellationToken::new();
        let cancel = cancel.unwrap_or(&never);
        let status = tokio::select! {
            s = child.wait() => s?,
            _ = cancel.cancelled() => {
                if let Some(g) = pgid {
                    // SAFETY: signalling our own child's process group.
                    unsafe { libc::killpg(g, libc::SIGTERM) };
                }
                if tokio::time::timeout(Duration::from_secs(3), child.wait()).await.is_err() {
                    if let Some(g) = pgid {
                        // SAFETY: as above.
                        unsafe { libc::killpg(g, libc::SIGKILL) };
                    }
                    let _ = child.wait().await;
                }
                return Err(TaskError::Interrupted);
            }
        };
        let out = out_task.await.unwrap_or_default();
        let err = err_task.await.unwrap_or_default();
        if !status.success() {
            return Err(classify(&what, status.code(), &err));
        }
        let text = String::from_utf8_lossy(&out);
        let t = text.trim();
        if t.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(t).map_err(|e| {
            TaskError::Failed(format!(
                "failed to parse the response of `{what}` as JSON ({e}): {}",
                t.chars().take(200).collect::<String>()
            ))
        })
    }
}

/// A failed call: not logged in → environment; gcloud's ERROR → the task failed with it.
pub fn classify(what: &str, code: Option<i32>, stderr: &str) -> TaskError {
    if AUTH_SIGNS.iter().any(|s| stderr.contains(s)) {
        let first = error_text(stderr)
            .unwrap_or_else(|| stderr.trim().to_string())
            .lines()
            .next()
            .unwrap_or_default()
            .to_string();
        return TaskError::Environment(format!(
            "gcloud is not authenticated (`{what}`: {first}); {LOGIN}"
        ));
    }
    let code = code
        .map(|c| c.to_string())
        .unwrap_or_else(|| "a signal".into());
    match error_text(stderr) {
        Some(e) => TaskError::Failed(format!("`{what}` failed (exit {code}): {e}")),
        None => {
            let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            TaskError::Failed(format!(
                "`{what}` failed (exit {code}){}",
                if tail.is_empty() {
                    String::new()
                } else {
                    format!(": {}", tail.join(" / "))
                }
            ))
        }
    }
}

/// gcloud's "Cannot find service [X]" (a first deploy), told apart from real failures.
pub fn is_not_found(e: &TaskError) -> bool {
    matches!(e, TaskError::Failed(m) if m.contains("Cannot find service ["))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_sorted_for_the_user() {
        let e = classify(
            "gcloud run deploy api",
            Some(1),
            "Deploying...\nERROR: (gcloud.run.deploy) You do not currently have an active account selected.\nPlease run:\n\n  $ gcloud auth login\n",
        );
        assert!(
            matches!(&e, TaskError::Environment(m) if m.contains("gcloud auth login") && m.contains("service account")),
            "{e:?}"
        );
        let e = classify(
            "gcloud run deploy api",
            Some(1),
            "Deploying...\nERROR: (gcloud.run.deploy) Revision 'api-00002-abc' is not ready and cannot serve traffic.\n",
        );
        assert!(
            matches!(&e, TaskError::Failed(m) if m.contains("ERROR: (gcloud.run.deploy) Revision 'api-00002-abc' is not ready")),
            "{e:?}"
        );
        assert!(is_not_found(&classify(
            "gcloud run services describe api",
            Some(1),
            "ERROR: (gcloud.run.services.describe) Cannot find service [api]\n"
        )));
        assert_eq!(
            command_text(&[
                "run".into(),
                "deploy".into(),
                "api".into(),
                "--image".into()
            ]),
            "gcloud run deploy api"
        );
    }
}
