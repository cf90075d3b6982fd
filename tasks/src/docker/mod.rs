//! The Docker Engine connection: made on first use (exec-only projects never need Docker),
//! honouring DOCKER_HOST, with the API version negotiated and the registry-auth header fixed.

pub mod dial;
mod links;
mod ssh;
mod view;
pub mod watchdog;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use base64::Engine;
use lifeos_engine::TaskError;
use tokio::sync::OnceCell;

use view::View;

/// The label that proves an image or container is the result of a lifeos key (one name for
/// images and containers, read here for every image the engine inspects).
pub const KEY_LABEL: &str = "lifeos.key";

/// A bollard client whose connections come from `connector` (the watched unix/tcp one, or
/// ssh). `keep_idle: false` keeps no idle connection, as bollard's own unix and http clients
/// do. hyper only needs a name to pool connections under.
fn custom_client<C>(
    connector: C,
    keep_idle: bool,
    timeout_secs: u64,
    api: &bollard::ClientVersion,
) -> Result<bollard::Docker, bollard::errors::Error>
where
    C: hyper_util::client::legacy::connect::Connect + Clone + Send + Sync + 'static,
{
    let mut builder =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new());
    if !keep_idle {
        builder.pool_max_idle_per_host(0);
    }
    let http = Arc::new(builder.build(connector));
    bollard::Docker::connect_with_custom_transport(
        move |req: bollard::BollardRequest| {
            let http = http.clone();
            async move { Ok(http.request(req).await?) }
        },
        Some("http://docker"),
        timeout_secs,
        api,
    )
}

/// The engine client, for callers outside this crate that hold one (`lifeos watch`).
pub use bollard::Docker as Client;
pub use view::ImageFacts;

#[derive(Clone, Default)]
pub struct Docker {
    inner: Arc<OnceCell<Result<bollard::Docker, String>>>,
    /// Whether the engine answered `/_ping` (unix sockets are only connected to at first).
    pinged: Arc<OnceCell<Result<(), String>>>,
    /// Base image IDs by reference, inspected once per run however many image tasks build
    /// FROM them (on a 2-core machine each concurrent inspect costs the engine ~0.3 ms).
    bases: Arc<Mutex<HashMap<String, Arc<BaseCell>>>>,
    /// Where the engine view is kept between runs (`.lifeos/engine.json`), once a run says.
    view_path: Arc<OnceLock<PathBuf>>,
    view: Arc<OnceCell<Mutex<View>>>,
    /// The view's events call, sent ahead by [`Docker::prefetch_view`].
    pending_view: Arc<Mutex<Option<view::Pending>>>,
}

/// A base's facts (None: absent), or the error as (environment?, message).
type BaseCell = OnceCell<Result<Option<ImageFacts>, (bool, String)>>;

/// Where lifeos connects, for messages and the engine view: a password in the URL is shown
/// as `***` (an ssh URL with one is refused, but the refusal names the host).
pub fn host() -> String {
    let raw = raw_host();
    if let Some((scheme, rest)) = raw.split_once("://") {
        if let Some((userinfo, after)) = rest.split_once('@') {
            if let Some((user, _password)) = userinfo.split_once(':') {
                return format!("{scheme}://{user}:***@{after}");
            }
        }
    }
    raw
}

fn raw_host() -> String {
    std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into())
}

/// How lifeos reaches the engine `DOCKER_HOST` names: one reading for the API client and the
/// build session's raw connection.
enum Endpoint {
    /// A local socket or a plain tcp engine, through lifeos's watched connector.
    Plain(watchdog::Target),
    Ssh(ssh::SshTarget),
    /// https and TLS-verified tcp: left to bollard's own client.
    Bollard,
}

fn endpoint(host: &str) -> Result<Endpoint, String> {
    let tls = std::env::var_os("DOCKER_TLS_VERIFY").is_some_and(|v| !v.is_empty());
    Ok(if let Some(path) = host.strip_prefix("unix://") {
        Endpoint::Plain(watchdog::Target::Unix(path.into()))
    } else if !tls && (host.starts_with("tcp://") || host.starts_with("http://")) {
        let addr = host.split_once("://").map_or(host, |(_, a)| a);
        Endpoint::Plain(watchdog::Target::Tcp(
            addr.trim_end_matches('/').to_string(),
        ))
    } else if host.starts_with("ssh://") {
        Endpoint::Ssh(ssh::SshTarget::parse(host)?)
    } else {
        Endpoint::Bollard
    })
}

/// An error with its causes: hyper's "client error (Connect)" alone does not say that ssh
/// refused the key or that nothing listens on the port.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !msg.contains(&text) {
            msg = format!("{msg}: {text}");
        }
        cause = c.source();
    }
    msg
}

pub(crate) fn connect_error(e: impl std::fmt::Display) -> String {
    let host = host();
    let next = if host.starts_with("ssh://") {
        "lifeos runs `ssh -o BatchMode=yes [-l USER] [-p PORT] HOST docker system dial-stdio`: check that `ssh -o BatchMode=yes ... HOST docker version` works without a prompt (a key in ssh-agent or ~/.ssh, the docker CLI on HOST)"
    } else {
        "start it (scripts/setup.sh starts dockerd on this machine) or point DOCKER_HOST at a running engine"
    };
    format!("cannot reach the Docker engine at {host}: {e}\n  {next}")
}

impl Docker {
    pub fn new() -> Self {
        Self::default()
    }

    /// The client of an engine that answers (`/_ping` once per run), or an environment
    /// error (exit code 3) naming the host tried.
    pub async fn get(&self) -> Result<bollard::Docker, TaskError> {
        let d = self.connected().await?;
        self.pinged
            .get_or_init(|| async {
                match tokio::time::timeout(QUICK, d.ping()).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => {
                        Err(watchdog::stalled(&e).unwrap_or_else(|| connect_error(with_causes(&e))))
                    }
                    Err(_) => Err(connect_error("no answer within 15 s")),
                }
            })
            .await
            .clone()
            .map_err(TaskError::Environment)?;
        Ok(d)
    }

    /// The client without the ping, for calls that carry their own short timeout (a no-op
    /// image build is three inspects; a ping before them would be a fourth, in series). On
    /// a unix socket something is known to be listening.
    pub async fn connected(&self) -> Result<bollard::Docker, TaskError> {
        self.inner
            .get_or_init(connect)
            .await
            .clone()
            .map_err(TaskError::Environment)
    }

    /// Keep the engine view (see `view.rs`) in `path` between runs.
    pub fn keep_view_in(&self, path: PathBuf) {
        let _ = self.view_path.set(path);
    }

    /// Send the engine view's events call now, so the engine answers while the run keys its
    /// tasks on this thread; the first image question then finds the answer waiting.
    pub async fn prefetch_view(&self) {
        let host = host();
        let Some(socket) = host.strip_prefix("unix://") else {
            return;
        };
        if self.view.initialized() {
            return;
        }
        let path = self.view_path.get().cloned();
        *self.pending_view.lock().unwrap() = Some(view::start(socket, path, &host));
        // The spawned call connects, then hands the request to hyper's connection task,
        // which writes it: a few turns of this (single-threaded) runtime, no waiting.
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
    }

    /// Save what this run learned about images, if anything (a failure only costs the next
    /// run its shortcut, the file is written atomically).
    pub fn save_view(&self) {
        if let Some(v) = self.view.get() {
            let _ = v.lock().unwrap().save();
        }
    }

    /// The run's engine view, checked against the engine's event log on first use. Remote
    /// engines get an empty one (see `view.rs`).
    async fn view(&self) -> Result<&Mutex<View>, TaskError> {
        self.view
            .get_or_try_init(|| async {
                let host = host();
                let Some(socket) = host.strip_prefix("unix://") else {
                    return Ok(Mutex::new(View::default()));
                };
                let pending = self.pending_view.lock().unwrap().take();
                if let Some(pending) = pending {
                    return Ok(Mutex::new(pending.finish().await?));
                }
                let path = self.view_path.get().cloned();
                Ok(Mutex::new(view::open(socket, path, &host).await?))
            })
            .await
    }

    /// What the engine has under `reference` (a tag or an image ID): from the engine view
    /// when no image changed since it was learned, else one inspect. None: no such image.
    pub async fn image(&self, reference: &str) -> Result<Option<ImageFacts>, TaskError> {
        let view = self.view().await?;
        if let Some(known) = view.lock().unwrap().get(reference) {
            return Ok(known);
        }
        let d = self.connected().await?;
        let answer = tokio::time::timeout(QUICK, d.inspect_image(reference))
            .await
            .map_err(|_| TaskError::Environment(connect_error("no answer within 15 s")))?;
        let facts = match answer {
            Ok(img) => {
                let config = img.config.unwrap_or_default();
                Some(ImageFacts {
                    id: img.id.unwrap_or_default(),
                    key: config.labels.and_then(|mut l| l.remove(KEY_LABEL)),
                    tags: img.repo_tags.unwrap_or_default(),
                })
            }
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => None,
            Err(e) => return Err(classify(e, &format!("inspect image {reference}"))),
        };
        view.lock().unwrap().put(reference, facts.clone());
        Ok(facts)
    }

    /// The ID of base image `reference` as a key records it: the image ID, or "absent" when
    /// the engine has none (the build will try to pull it). Asked once per run.
    pub async fn base_id(&self, reference: &str) -> Result<String, TaskError> {
        let cell = self
            .bases
            .lock()
            .unwrap()
            .entry(reference.to_string())
            .or_default()
            .clone();
        let answer = cell
            .get_or_init(|| async { self.image(reference).await.map_err(split) })
            .await;
        match answer.clone() {
            Ok(Some(facts)) => Ok(facts.id),
            Ok(None) => Ok("absent (the build will try to pull it)".into()),
            Err((true, m)) => Err(TaskError::Environment(m)),
            Err((false, m)) => Err(TaskError::Failed(m)),
        }
    }

    /// Forget what this run learned of `reference` and of image `id`: a task just pointed
    /// the one at the other.
    pub fn forget(&self, reference: &str, id: &str) {
        let mut bases = self.bases.lock().unwrap();
        bases.remove(reference);
        if let Some(short) = reference.strip_suffix(":latest") {
            bases.remove(short);
        }
        if let Some(v) = self.view.get() {
            let mut v = v.lock().unwrap();
            v.forget(reference, id);
            if let Some(short) = reference.strip_suffix(":latest") {
                v.forget(short, id);
            }
        }
    }
}

fn split(e: TaskError) -> (bool, String) {
    match e {
        TaskError::Environment(m) => (true, m),
        other => (false, other.to_string()),
    }
}

/// The API version lifeos is built and tested against (Docker 20.10). bollard 0.21.1 does not
/// put the version into request paths (bollard #736), so the engine answers with its default
/// either way; pinning it saves the `/version` round trip that negotiation costs on every run.
/// Re-check this when bollard is bumped (it is pinned with `=`).
const API: bollard::ClientVersion = bollard::ClientVersion {
    major_version: 1,
    minor_version: 41,
};
const TIMEOUT_SECS: u64 = 600;
/// For calls that answer at once when the engine is well: an engine that accepts
/// connections but does not answer is an environment error after this, not after 600 s.
pub const QUICK: Duration = Duration::from_secs(15);

async fn connect() -> Result<bollard::Docker, String> {
    let limit = watchdog::limit()?;
    let endpoint =
        endpoint(&raw_host()).map_err(|e| format!("DOCKER_HOST={}: {e}", self::host()))?;
    let d = if let Endpoint::Plain(target) = endpoint {
        if let watchdog::Target::Unix(path) = &target {
            // A local socket: a connect shows whether anything listens; `get` pings.
            std::os::unix::net::UnixStream::connect(path).map_err(connect_error)?;
        }
        watchdog::client(target, &self::host(), limit, TIMEOUT_SECS, &API).map_err(connect_error)?
    } else if let Endpoint::Ssh(target) = endpoint {
        ssh::client(target, TIMEOUT_SECS, &API).map_err(connect_error)?
    } else {
        // https and TLS-verified tcp: bollard's own DOCKER_HOST handling, negotiated.
        let d = bollard::Docker::connect_with_defaults()
            .map_err(connect_error)?
            .with_timeout(Duration::from_secs(TIMEOUT_SECS));
        return match tokio::time::timeout(Duration::from_secs(15), d.negotiate_version()).await {
            Ok(Ok(d)) => Ok(fix_registry_auth(d)),
            Ok(Err(e)) => Err(connect_error(with_causes(&e))),
            Err(_) => Err(connect_error("no answer within 15 s")),
        };
    };
    Ok(fix_registry_auth(d))
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
        other => match watchdog::stalled(&other) {
            // A frozen engine: the message names the call and the engine already.
            Some(msg) => TaskError::Environment(format!("{what}: {msg}")),
            None => TaskError::Environment(connect_error(with_causes(&other))),
        },
    }
}
