//! The Docker Engine connection: made on first use (exec-only projects never need Docker),
//! honouring DOCKER_HOST, with the API version negotiated and the registry-auth header fixed.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use lifeos_engine::TaskError;
use tokio::sync::OnceCell;

#[derive(Clone, Default)]
pub struct Docker {
    inner: Arc<OnceCell<Result<bollard::Docker, String>>>,
}

/// Where bollard will connect, for messages.
pub fn host() -> String {
    std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into())
}

fn connect_error(e: impl std::fmt::Display) -> String {
    format!(
        "cannot reach the Docker engine at {}: {e}\n  start it (scripts/setup.sh starts dockerd on this machine) or point DOCKER_HOST at a running engine",
        host()
    )
}

impl Docker {
    pub fn new() -> Self {
        Self::default()
    }

    /// The connected client, or an environment error (exit code 3) naming the host tried.
    pub async fn get(&self) -> Result<bollard::Docker, TaskError> {
        self.inner
            .get_or_init(|| async {
                let d = bollard::Docker::connect_with_defaults()
                    .map_err(connect_error)?
                    .with_timeout(Duration::from_secs(600));
                let d = fix_registry_auth(d);
                match tokio::time::timeout(Duration::from_secs(15), d.negotiate_version()).await {
                    Ok(Ok(d)) => Ok(d),
                    Ok(Err(e)) => Err(connect_error(e)),
                    Err(_) => Err(connect_error("no answer within 15 s")),
                }
            })
            .await
            .clone()
            .map_err(TaskError::Environment)
    }
}

/// bollard sends X-Registry-Auth in standard base64; Docker decodes URL-safe base64 and
/// silently drops credentials it cannot decode (see notes/crates.md §1.6).
fn fix_registry_auth(d: bollard::Docker) -> bollard::Docker {
    d.with_request_modifier(|mut req| {
        for h in ["X-Registry-Auth", "X-Registry-Config"] {
            let value = req
                .headers()
                .get(h)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            if let Some(v) = value {
                if let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(v) {
                    let enc = base64::engine::general_purpose::URL_SAFE.encode(raw);
                    if let Ok(hv) = http::HeaderValue::from_str(&enc) {
                        req.headers_mut().insert(h, hv);
                    }
                }
            }
        }
        req
    })
}

/// Sort a bollard error into a task failure or an environment problem.
pub fn classify(e: bollard::errors::Error, what: &str) -> TaskError {
    use bollard::errors::Error as E;
    match e {
        E::DockerStreamError { error } => TaskError::Failed(error),
        // The engine answered: it refused the request (bad Dockerfile, no such image).
        E::DockerResponseServerError { message, .. } => {
            TaskError::Failed(format!("{what}: {message}"))
        }
        other => TaskError::Environment(connect_error(other)),
    }
}
