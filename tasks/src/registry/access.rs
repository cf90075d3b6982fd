//! One repository's registry as lifeos reaches it: the host, the credentials found for it
//! (looked up once per run), and registry failures turned into task errors that say where
//! lifeos looked for credentials and never what it found.

use std::sync::Arc;

use bollard::auth::DockerCredentials;
use lifeos_engine::TaskError;
use tokio::sync::OnceCell;

use super::credentials::{self, Found, Vars};
use super::reference::registry_host;
use super::remote::RemoteError;

pub struct Access {
    pub repository: String,
    creds: OnceCell<Result<Found, String>>,
    vars: Arc<Vars>,
}

impl Access {
    pub fn new(repository: &str) -> Self {
        Self {
            repository: repository.to_string(),
            creds: OnceCell::new(),
            vars: Arc::new(credentials::process_env),
        }
    }

    /// Read credential variables (`LIFEOS_REGISTRY_*`, `DOCKER_CONFIG`, `HOME`, `PATH`)
    /// from `vars` rather than the process environment.
    pub fn set_vars(&mut self, vars: impl Fn(&str) -> Option<String> + Send + Sync + 'static) {
        self.vars = Arc::new(vars);
    }

    pub fn host(&self) -> &str {
        registry_host(&self.repository)
    }

    /// The credentials found for the registry (none is an answer too), looked up once.
    pub async fn found(&self) -> Result<&Found, TaskError> {
        let host = self.host().to_string();
        let vars = self.vars.clone();
        self.creds
            .get_or_init(|| async move {
                tokio::task::spawn_blocking(move || credentials::lookup(&host, &*vars))
                    .await
                    .unwrap_or_else(|e| Err(format!("credential lookup panicked: {e}")))
            })
            .await
            .as_ref()
            .map_err(|e| TaskError::Environment(e.clone()))
    }

    /// For the engine's `X-Registry-Auth`.
    pub fn engine_creds(&self, found: &Found) -> Option<DockerCredentials> {
        found
            .credentials
            .as_ref()
            .map(|c| c.for_engine(self.host()))
    }

    /// A registry failure as the task's error: a refusal is the environment's (exit 3) and
    /// says where lifeos looked for credentials; a registry that stays down fails the task.
    pub fn error(&self, e: RemoteError, found: &Found) -> TaskError {
        let secret = found.credentials.as_ref().map(|c| c.secret());
        let clean = |m: String| match secret {
            Some(s) if !s.is_empty() => m.replace(s, "***"),
            _ => m,
        };
        let host = self.host();
        match e {
            RemoteError::Auth(m) => TaskError::Environment(format!(
                "registry {host} refused access to {} ({}); credentials looked for in: {}\n  log in with `docker login {host}`, add a credHelpers entry for {host} to the Docker config, or set {}/{}",
                self.repository,
                clean(m),
                found.looked,
                credentials::USER_ENV,
                credentials::PASSWORD_ENV,
            )),
            RemoteError::Transient(m) => TaskError::Failed(format!(
                "registry {host} is unreachable or failing: {}",
                clean(m)
            )),
            RemoteError::Other(e) => e,
        }
    }
}
