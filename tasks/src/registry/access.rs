//! One repository's registry as lifeos reaches it: the host, the credentials found for it
//! (looked up once per run), and registry failures turned into task errors that say where
//! lifeos looked for credentials and never what it found.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bollard::auth::DockerCredentials;
use lifeos_engine::TaskError;
use tokio::sync::OnceCell;

use super::credentials::{self, Found, Vars};
use super::reference::registry_host;
use super::remote::RemoteError;

pub struct Access {
    pub repository: String,
    creds: OnceCell<Result<Found, String>>,
    /// `None`: the process environment, whose answers are shared by every task of the
    /// process (two pushes to one registry look once, and run a credential helper once).
    vars: Option<Arc<Vars>>,
}

type Answer = Arc<OnceCell<Result<Found, String>>>;

/// How long the process environment's answer for a host is shared: one run, not a
/// long-lived process's lifetime (a helper's token expires; `docker login` changes things).
const SHARED_FOR: Duration = Duration::from_secs(60);

/// The process environment's answer for `host`, shared by the tasks of a run.
fn shared_for(host: &str) -> Answer {
    static SHARED: OnceLock<Mutex<HashMap<String, (Instant, Answer)>>> = OnceLock::new();
    let mut map = SHARED.get_or_init(Default::default).lock().unwrap();
    let entry = map
        .entry(host.to_string())
        .or_insert_with(|| (Instant::now(), Answer::default()));
    if entry.0.elapsed() > SHARED_FOR {
        *entry = (Instant::now(), Answer::default());
    }
    entry.1.clone()
}

/// A variable and a small file are read in place; only a credential helper (a process, a
/// network call for some) runs off the async thread. (A blocking-pool thread costs a thread
/// start, ~0.1 ms idle and several ms on a loaded machine, on every run.)
async fn look_up(host: String, vars: Arc<Vars>) -> Result<Found, String> {
    if let Some(found) = credentials::lookup_without_helpers(&host, &*vars) {
        return found;
    }
    tokio::task::spawn_blocking(move || credentials::lookup(&host, &*vars))
        .await
        .unwrap_or_else(|e| Err(format!("credential lookup panicked: {e}")))
}

impl Access {
    pub fn new(repository: &str) -> Self {
        Self {
            repository: repository.to_string(),
            creds: OnceCell::new(),
            vars: None,
        }
    }

    /// Read credential variables (`LIFEOS_REGISTRY_*`, `DOCKER_CONFIG`, `HOME`, `PATH`)
    /// from `vars` rather than the process environment.
    pub fn set_vars(&mut self, vars: impl Fn(&str) -> Option<String> + Send + Sync + 'static) {
        self.vars = Some(Arc::new(vars));
    }

    pub fn host(&self) -> &str {
        registry_host(&self.repository)
    }

    /// The credentials found for the registry (none is an answer too), looked up once.
    pub async fn found(&self) -> Result<&Found, TaskError> {
        let host = self.host().to_string();
        self.creds
            .get_or_init(|| async move {
                match &self.vars {
                    Some(vars) => look_up(host, vars.clone()).await,
                    None => {
                        let cell = shared_for(&host);
                        let vars: Arc<Vars> = Arc::new(credentials::process_env);
                        cell.get_or_init(|| look_up(host, vars)).await.clone()
                    }
                }
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
