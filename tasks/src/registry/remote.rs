//! Pushes through the Docker engine: `POST /images/{name}/push` uploads only the layers the
//! registry lacks, with the engine's TLS, proxy and `insecure-registries` settings. (Manifest
//! look-ups go to the registry directly: `client.rs`.)
//!
//! Every call is retried (bounded, with backoff) when the registry is unreachable or answers
//! 5xx; an auth refusal is never retried.

use std::collections::BTreeMap;
use std::time::Duration;

use bollard::auth::DockerCredentials;
use bollard::query_parameters::PushImageOptionsBuilder;
use futures_util::StreamExt;
use lifeos_engine::{LogSink, Stream, TaskError};
use tokio_util::sync::CancellationToken;

use crate::docker::classify;

/// Attempts per registry call, and the first pause (doubled after each failure).
pub const ATTEMPTS: u32 = 4;
const FIRST_PAUSE: Duration = Duration::from_millis(500);

/// How a registry call failed.
#[derive(Debug)]
pub enum RemoteError {
    /// The registry refused the credentials (or had none): not worth retrying.
    Auth(String),
    /// Unreachable, 5xx, a dropped connection: worth retrying.
    Transient(String),
    /// Anything else (the engine's own errors, a missing local image).
    Other(TaskError),
}

/// What the registry says about a manifest reference.
pub fn sort_error(e: bollard::errors::Error, what: &str) -> RemoteError {
    use bollard::errors::Error as E;
    match e {
        E::DockerResponseServerError {
            status_code,
            message,
        } => {
            if status_code == 401 || is_auth(&message) {
                RemoteError::Auth(message)
            } else if status_code >= 500 {
                RemoteError::Transient(message)
            } else {
                RemoteError::Other(TaskError::Failed(format!("{what}: {message}")))
            }
        }
        E::DockerStreamError { error } => sort_message(error, what),
        other => RemoteError::Other(classify(other, what)),
    }
}

/// A push stream's error item: auth, a local problem, else a registry or network fault.
pub fn sort_message(error: String, what: &str) -> RemoteError {
    if is_auth(&error) {
        RemoteError::Auth(error)
    } else if error.contains("does not exist") || error.contains("No such image") {
        RemoteError::Other(TaskError::Failed(format!("{what}: {error}")))
    } else {
        RemoteError::Transient(error)
    }
}

fn is_auth(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "unauthorized",
        "no basic auth credentials",
        "authentication required",
        "denied",
    ]
    .iter()
    .any(|s| m.contains(s))
}

/// Run `call` up to [`ATTEMPTS`] times while it fails transiently, pausing 0.5 s, 1 s, 2 s.
/// Each retry is logged; the last error is returned with the attempt count.
pub async fn retried<T, F, Fut>(
    what: &str,
    log: Option<&LogSink>,
    cancel: &CancellationToken,
    mut call: F,
) -> Result<T, RemoteError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, RemoteError>>,
{
    let mut pause = FIRST_PAUSE;
    let mut attempt = 1;
    loop {
        match call().await {
            Err(RemoteError::Transient(msg)) if attempt < ATTEMPTS => {
                if let Some(log) = log {
                    log.line(
                        Stream::Stderr,
                        &format!(
                            "{what}: {msg} (attempt {attempt} of {ATTEMPTS}; retrying in {} ms)",
                            pause.as_millis()
                        ),
                    );
                }
                tokio::select! {
                    _ = cancel.cancelled() => return Err(RemoteError::Other(TaskError::Interrupted)),
                    _ = tokio::time::sleep(pause) => {}
                }
                pause *= 2;
                attempt += 1;
            }
            Err(RemoteError::Transient(msg)) => {
                return Err(RemoteError::Transient(format!(
                    "{msg} (gave up after {ATTEMPTS} attempts)"
                )))
            }
            other => return other,
        }
    }
}

/// What one push did.
#[derive(Debug, Default)]
pub struct Pushed {
    pub digest: String,
    /// Layers uploaded, and layers the registry already had.
    pub uploaded: usize,
    pub existed: usize,
    pub bytes: u64,
}

/// `docker push repository:tag` through the engine, with byte progress per layer sent to
/// the task's progress line. Stops at the first error item (bollard keeps the stream open).
pub async fn push(
    d: &bollard::Docker,
    repository: &str,
    tag: &str,
    creds: Option<&DockerCredentials>,
    log: &LogSink,
    cancel: &CancellationToken,
) -> Result<Pushed, RemoteError> {
    let what = format!("push {repository}:{tag}");
    let mut stream = d.push_image(
        repository,
        Some(PushImageOptionsBuilder::default().tag(tag).build()),
        creds.cloned(),
    );
    let mut pushed = Pushed::default();
    // The engine's push items carry no layer id (notes/crates.md §1.5): a layer is known by
    // its size, which is what the progress line shows anyway.
    let mut layers: BTreeMap<i64, i64> = BTreeMap::new();
    let mut last_shown = std::time::Instant::now();
    loop {
        let item = tokio::select! {
            _ = cancel.cancelled() => return Err(RemoteError::Other(TaskError::Interrupted)),
            item = stream.next() => item,
        };
        let Some(item) = item else { break };
        let info = item.map_err(|e| sort_error(e, &what))?;
        if let Some(err) = info.error_detail.and_then(|e| e.message) {
            return Err(sort_message(err, &what));
        }
        let status = info.status.unwrap_or_default();
        if status.starts_with("Retrying in") {
            // The engine's own retry of a layer upload waits 5, 10, 15, 20 s and says no
            // more than this; this push stops (dropping the request cancels the engine's
            // push) and `retried` decides, with its shorter, bounded pauses.
            return Err(RemoteError::Transient(format!(
                "a layer upload failed (the engine said \"{status}\")"
            )));
        }
        match status.as_str() {
            "Pushed" => pushed.uploaded += 1,
            "Layer already exists" | "Mounted from" => pushed.existed += 1,
            "Pushing" => {
                if let Some(p) = info.progress_detail {
                    if let (Some(cur), Some(total)) = (p.current, p.total) {
                        let new_layer = layers.insert(total, cur.min(total)).is_none();
                        if new_layer || last_shown.elapsed() >= Duration::from_millis(100) {
                            last_shown = std::time::Instant::now();
                            log.progress(&progress_line(tag, &layers));
                        }
                    }
                }
            }
            s => {
                // `TAG: digest: sha256:… size: N` ends a successful push.
                if let Some(rest) = s.split_once(": digest: ").map(|(_, r)| r) {
                    if let Some(digest) = rest.split_whitespace().next() {
                        pushed.digest = digest.to_string();
                    }
                }
            }
        }
    }
    pushed.bytes = layers.keys().map(|&t| t.max(0) as u64).sum();
    if pushed.digest.is_empty() {
        return Err(RemoteError::Transient(format!(
            "{what}: the engine ended the push without a digest"
        )));
    }
    Ok(pushed)
}

fn progress_line(tag: &str, layers: &BTreeMap<i64, i64>) -> String {
    let done: i64 = layers.values().sum();
    let total: i64 = layers.keys().sum();
    let each: Vec<String> = layers
        .iter()
        .rev()
        .map(|(t, c)| format!("{}/{}", mb(*c), mb(*t)))
        .collect();
    format!(
        "pushing :{tag} {} / {} ({} layers: {})",
        mb(done),
        mb(total),
        layers.len(),
        each.join(", ")
    )
}

fn mb(bytes: i64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_answers_are_sorted_into_auth_transient_and_other() {
        let server = |code: u16, m: &str| bollard::errors::Error::DockerResponseServerError {
            status_code: code,
            message: m.into(),
        };
        assert!(matches!(
            sort_error(server(401, "unauthorized: authentication required"), "x"),
            RemoteError::Auth(_)
        ));
        assert!(matches!(
            sort_error(
                server(
                    500,
                    "Head \"http://h/v2/a/manifests/1\": no basic auth credentials"
                ),
                "x"
            ),
            RemoteError::Auth(_)
        ));
        assert!(matches!(
            sort_error(
                server(500, "Get \"http://127.0.0.1:1/v2/\": dial tcp 127.0.0.1:1: connect: connection refused"),
                "x"
            ),
            RemoteError::Transient(_)
        ));
        assert!(matches!(
            sort_message(
                "An image does not exist locally with the tag: x".into(),
                "x"
            ),
            RemoteError::Other(_)
        ));
        assert!(matches!(
            sort_message(
                "received unexpected HTTP status: 503 Service Unavailable".into(),
                "x"
            ),
            RemoteError::Transient(_)
        ));
    }

    #[tokio::test]
    async fn retries_are_bounded_and_auth_is_not_retried() {
        let cancel = CancellationToken::new();
        let mut calls = 0;
        let r: Result<(), _> = retried("x", None, &cancel, || {
            calls += 1;
            async { Err(RemoteError::Transient("503".into())) }
        })
        .await;
        assert_eq!(calls, ATTEMPTS);
        assert!(matches!(r, Err(RemoteError::Transient(m)) if m.contains("gave up after 4")));
        let mut calls = 0;
        let r: Result<(), _> = retried("x", None, &cancel, || {
            calls += 1;
            async { Err(RemoteError::Auth("unauthorized".into())) }
        })
        .await;
        assert_eq!(calls, 1);
        assert!(matches!(r, Err(RemoteError::Auth(_))));
    }
}
