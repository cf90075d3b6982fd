//! The router of one environment: an nginx container (`<project>-<env>-router`) publishing
//! each deployed service on its `publish` address, and its state volume. Every change goes
//! the same way: render the config from the state, `nginx -t` it as `next.conf` inside the
//! running router, only then make it `nginx.conf` (with `state.json`), reload, and wait until
//! the control page answers the new generation. A config nginx rejects never replaces the
//! working one. The volume is read and written through a created, never started container
//! (`<router>-state`), so the state outlives the router container.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bollard::models::{
    ContainerCreateBody, EndpointSettings, HostConfig, Mount, MountType, NetworkingConfig,
    PortBinding, RestartPolicy, RestartPolicyNameEnum, VolumeCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, DownloadFromContainerOptionsBuilder,
    UploadToContainerOptionsBuilder,
};
use futures_util::StreamExt;
use lifeos_engine::{LogSink, TaskError};
use serde::{Deserialize, Serialize};

use super::state::{render, State, CONTROL_PORT, LOGS_MARK, LOGS_PATH, STATE_PATH};
use super::{revision_name, ENV_LABEL, ROLE_LABEL};
use crate::container::{network_name, ops, PROJECT_LABEL};
use crate::docker::classify;

/// Labels on the router and its volume record the published ports, to know when the
/// container must be made again (a service added).
const PORTS_LABEL: &str = "lifeos.router.ports";

/// One environment's router, as a deploy body keeps it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Router {
    pub project: String,
    pub env: String,
    /// Image reference with nginx (an image task's tag, or a reference).
    pub image: String,
    /// Extra `http { }` directives from `[router] http` (checked by `nginx -t` like the rest).
    #[serde(default)]
    pub http: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

fn is_404(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

impl Router {
    /// The router a recorded state describes (for `lifeos rollback`).
    pub fn from_state(project: &str, env: &str, state: &State) -> Router {
        Router {
            project: project.into(),
            env: env.into(),
            image: state.image.clone(),
            http: state.http.clone(),
            labels: state.labels.clone(),
        }
    }

    pub fn name(&self) -> String {
        format!("{}-{}-router", self.project, self.env)
    }

    fn store_name(&self) -> String {
        format!("{}-state", self.name())
    }

    fn labels(&self, role: &str) -> HashMap<String, String> {
        let mut l: HashMap<String, String> = self.labels.clone().into_iter().collect();
        l.insert(PROJECT_LABEL.into(), self.project.clone());
        l.insert(ENV_LABEL.into(), self.env.clone());
        l.insert(ROLE_LABEL.into(), role.into());
        l
    }

    fn mount(&self) -> Mount {
        Mount {
            typ: Some(MountType::VOLUME),
            source: Some(self.name()),
            target: Some("/lifeos".into()),
            ..Default::default()
        }
    }

    async fn ensure_volume(&self, d: &bollard::Docker) -> Result<(), TaskError> {
        d.create_volume(VolumeCreateRequest {
            name: Some(self.name()),
            labels: Some(self.labels("router")),
            ..Default::default()
        })
        .await
        .map_err(|e| classify(e, "create the router volume"))?;
        Ok(())
    }

    /// The created (never started) container through which the volume is read and written.
    async fn store(&self, d: &bollard::Docker, image: &str) -> Result<String, TaskError> {
        let name = self.store_name();
        match d.inspect_container(&name, None).await {
            Ok(c) => return Ok(c.id.unwrap_or(name)),
            Err(e) if is_404(&e) => {}
            Err(e) => return Err(classify(e, "inspect the router state container")),
        }
        self.ensure_volume(d).await?;
        ops::image_id(d, image, None).await?;
        let body = ContainerCreateBody {
            image: Some(image.to_string()),
            cmd: Some(vec!["true".into()]),
            labels: Some(self.labels("router-state")),
            host_config: Some(HostConfig {
                mounts: Some(vec![self.mount()]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let r = d
            .create_container(
                Some(CreateContainerOptionsBuilder::default().name(&name).build()),
                body,
            )
            .await
            .map_err(|e| classify(e, &format!("create container {name}")))?;
        Ok(r.id)
    }

    /// The recorded state (empty before the first deploy): from the running router's control
    /// port when it serves it, else from the volume through the state container.
    pub async fn read_state(&self, d: &bollard::Docker) -> Result<State, TaskError> {
        match self.running(d).await? {
            Some((_, control)) => self.state_at(d, &control).await,
            None => self.stored_state(d).await,
        }
    }

    /// The recorded state, and whether the router runs and serves it (`None`) or why not:
    /// what a probe needs, in one inspect and two local HTTP requests at once.
    pub async fn observe(&self, d: &bollard::Docker) -> Result<(State, Option<String>), TaskError> {
        let Some((_, control)) = self.running(d).await? else {
            let why = format!("router {} is not running", self.name());
            return Ok((self.stored_state(d).await?, Some(why)));
        };
        let (state, generation) = tokio::join!(
            self.state_at(d, &control),
            super::http::get(&control, "/lifeos/generation", Duration::from_secs(2))
        );
        let state = state?;
        let why = Self::generation_verdict(generation, &state);
        Ok((state, why))
    }

    /// `state.json` as the router's control port serves it; from the volume when it does not
    /// (a router config written before it did: 404), or not readably (a write in progress).
    async fn state_at(&self, d: &bollard::Docker, control: &str) -> Result<State, TaskError> {
        if let Ok(a) = super::http::get(control, STATE_PATH, Duration::from_secs(2)).await {
            if a.status == 200 {
                if let Ok(state) = serde_json::from_str(&a.body) {
                    return Ok(state);
                }
            }
        }
        self.stored_state(d).await
    }

    /// The recorded state from the volume, through the state container.
    async fn stored_state(&self, d: &bollard::Docker) -> Result<State, TaskError> {
        let name = self.store_name();
        match d.inspect_container(&name, None).await {
            Ok(_) => {}
            Err(e) if is_404(&e) => return Ok(State::default()),
            Err(e) => return Err(classify(e, "inspect the router state container")),
        }
        match read_file(d, &name, "/lifeos/state.json").await? {
            None => Ok(State::default()),
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                TaskError::Failed(format!(
                    "the router state of environment `{}` is unreadable ({e}); remove the volume {} to start over",
                    self.env,
                    self.name()
                ))
            }),
        }
    }

    async fn put(
        &self,
        d: &bollard::Docker,
        image: &str,
        files: &[(&str, &[u8])],
    ) -> Result<(), TaskError> {
        let store = self.store(d, image).await?;
        let mut b = tar::Builder::new(Vec::new());
        // nginx does not make the directory of its access logs.
        let mut dir = tar::Header::new_gnu();
        dir.set_entry_type(tar::EntryType::Directory);
        dir.set_size(0);
        dir.set_mode(0o755);
        dir.set_mtime(0);
        dir.set_cksum();
        b.append_data(&mut dir, "logs/", std::io::empty())?;
        for (path, data) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_mtime(0);
            h.set_cksum();
            b.append_data(&mut h, path, *data)?;
        }
        let bytes = b.into_inner()?;
        d.upload_to_container(
            &store,
            Some(
                UploadToContainerOptionsBuilder::default()
                    .path("/lifeos")
                    .build(),
            ),
            bollard::body_full(bytes.into()),
        )
        .await
        .map_err(|e| classify(e, "write the router config"))
    }

    /// Write `state.json` alone (no config change): a check's verdict.
    pub async fn save_state(&self, d: &bollard::Docker, state: &State) -> Result<(), TaskError> {
        let json = serde_json::to_vec_pretty(state).expect("state serializes");
        self.put(d, &state.image, &[("state.json", &json)]).await
    }

    /// The router container if it runs: (id, control address on the host).
    pub async fn running(
        &self,
        d: &bollard::Docker,
    ) -> Result<Option<(String, String)>, TaskError> {
        let info = match d.inspect_container(&self.name(), None).await {
            Ok(i) => i,
            Err(e) if is_404(&e) => return Ok(None),
            Err(e) => return Err(classify(e, "inspect the router")),
        };
        if !info.state.as_ref().and_then(|s| s.running).unwrap_or(false) {
            return Ok(None);
        }
        let port = info
            .network_settings
            .and_then(|n| n.ports)
            .and_then(|p| p.get(&format!("{CONTROL_PORT}/tcp")).cloned().flatten())
            .and_then(|b| b.first().and_then(|b| b.host_port.clone()));
        Ok(port.map(|p| (info.id.unwrap_or_default(), format!("127.0.0.1:{p}"))))
    }

    /// Whether the router runs and serves `state`'s generation (empty if not: why).
    pub async fn serving(
        &self,
        d: &bollard::Docker,
        state: &State,
    ) -> Result<Option<String>, TaskError> {
        let Some((_, control)) = self.running(d).await? else {
            return Ok(Some(format!("router {} is not running", self.name())));
        };
        let answer = super::http::get(&control, "/lifeos/generation", Duration::from_secs(2)).await;
        Ok(Self::generation_verdict(answer, state))
    }

    /// Whether the control page's answer is `state`'s generation (`None`), or why not.
    fn generation_verdict(
        answer: Result<super::http::Answer, String>,
        state: &State,
    ) -> Option<String> {
        match answer {
            Ok(a) if a.body.trim() == state.generation.to_string() => None,
            Ok(a) => Some(format!(
                "router serves generation {} of its config, the state says {}",
                a.body.trim(),
                state.generation
            )),
            Err(e) => Some(format!("router does not answer: {e}")),
        }
    }

    fn ports(state: &State) -> Vec<String> {
        let mut v: Vec<String> = state.services.values().map(|s| s.publish.clone()).collect();
        v.sort();
        v.dedup();
        v
    }

    /// Start (or make again) the router container for `state`'s published ports.
    async fn ensure_running(
        &self,
        d: &bollard::Docker,
        state: &State,
        log: Option<&LogSink>,
    ) -> Result<String, TaskError> {
        let ports = Self::ports(state).join(",");
        let existing = match d.inspect_container(&self.name(), None).await {
            Ok(i) => Some(i),
            Err(e) if is_404(&e) => None,
            Err(e) => return Err(classify(e, "inspect the router")),
        };
        if let Some(i) = &existing {
            let same = i
                .config
                .as_ref()
                .and_then(|c| c.labels.as_ref())
                .and_then(|l| l.get(PORTS_LABEL))
                == Some(&ports)
                && i.config.as_ref().and_then(|c| c.image.as_deref()) == Some(state.image.as_str());
            let id = i.id.clone().unwrap_or_default();
            if same {
                if !i.state.as_ref().and_then(|s| s.running).unwrap_or(false) {
                    if let Some(l) = log {
                        l.progress("starting the router");
                    }
                    d.start_container(&id, None)
                        .await
                        .map_err(|e| classify(e, "start the router"))?;
                    self.wait_up(d).await?;
                }
                return Ok(id);
            }
            if let Some(l) = log {
                l.progress("making the router again (published ports changed)");
            }
            ops::remove(d, &id).await;
        }
        // A fresh container starts from a config that is known to load: the control page
        // only; the caller's config follows through the usual test and reload.
        let boot = render(&State {
            generation: 0,
            ..Default::default()
        });
        self.put(d, &state.image, &[("nginx.conf", boot.as_bytes())])
            .await?;
        crate::container::ops::ensure_network(d, &self.net_spec()).await?;
        let mut bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
        for p in Self::ports(state) {
            let (ip, port) = p.rsplit_once(':').unwrap_or(("0.0.0.0", &p));
            bindings.insert(
                format!("{port}/tcp"),
                Some(vec![PortBinding {
                    host_ip: Some(ip.to_string()),
                    host_port: Some(port.to_string()),
                }]),
            );
        }
        bindings.insert(
            format!("{CONTROL_PORT}/tcp"),
            Some(vec![PortBinding {
                host_ip: Some("127.0.0.1".into()),
                host_port: Some(String::new()),
            }]),
        );
        let mut labels = self.labels("router");
        labels.insert(PORTS_LABEL.into(), ports);
        let net = network_name(&self.project);
        let body = ContainerCreateBody {
            image: Some(state.image.clone()),
            cmd: Some(
                ["nginx", "-c", "/lifeos/nginx.conf", "-g", "daemon off;"]
                    .map(String::from)
                    .to_vec(),
            ),
            labels: Some(labels),
            exposed_ports: Some(bindings.keys().cloned().collect()),
            host_config: Some(HostConfig {
                mounts: Some(vec![self.mount()]),
                port_bindings: Some(bindings),
                network_mode: Some(net.clone()),
                restart_policy: Some(RestartPolicy {
                    name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
                    maximum_retry_count: None,
                }),
                ..Default::default()
            }),
            networking_config: Some(NetworkingConfig {
                endpoints_config: Some(HashMap::from([(net, EndpointSettings::default())])),
            }),
            ..Default::default()
        };
        if let Some(l) = log {
            l.progress(&format!("starting router {}", self.name()));
        }
        let name = self.name();
        let r = d
            .create_container(
                Some(CreateContainerOptionsBuilder::default().name(&name).build()),
                body,
            )
            .await
            .map_err(|e| classify(e, &format!("create container {name}")))?;
        if let Err(e) = d.start_container(&r.id, None).await {
            ops::remove(d, &r.id).await;
            let msg = e.to_string();
            if msg.contains("already allocated") || msg.contains("address already in use") {
                return Err(TaskError::Failed(format!(
                    "router {name}: a `publish` address ({}) is already in use on the host; stop what uses it or change `publish`",
                    Self::ports(state).join(", ")
                )));
            }
            return Err(classify(e, "start the router"));
        }
        self.wait_up(d).await?;
        Ok(r.id)
    }

    /// Until nginx answers its control page (it has written its pid file, so a reload can
    /// signal it).
    async fn wait_up(&self, d: &bollard::Docker) -> Result<(), TaskError> {
        let start = Instant::now();
        let mut why = String::from("not running");
        while start.elapsed() < Duration::from_secs(15) {
            if let Some((_, control)) = self.running(d).await? {
                match super::http::get(&control, "/lifeos/generation", Duration::from_secs(1)).await
                {
                    Ok(_) => return Ok(()),
                    Err(e) => why = e,
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let tail = ops::log_tail(d, &self.name(), 10).await;
        Err(TaskError::Failed(format!(
            "router {} did not start within 15s ({why}); its last log lines:\n  {}",
            self.name(),
            tail.join("\n  ")
        )))
    }

    fn net_spec(&self) -> crate::container::ContainerSpec {
        crate::container::ContainerSpec {
            sync: vec![],
            project: self.project.clone(),
            task: self.name(),
            image: crate::container::ImageRef::External(self.image.clone()),
            cmd: None,
            entrypoint: None,
            workdir: None,
            user: None,
            ports: vec![],
            volumes: vec![],
            health: None,
            restart: None,
            labels: self.labels.clone(),
        }
    }

    /// Refresh the routed revisions' addresses, then test, install and reload the config for
    /// `state`, and wait until nginx serves it. On any failure the working config stays.
    pub async fn apply(
        &self,
        d: &bollard::Docker,
        state: &mut State,
        log: Option<&LogSink>,
    ) -> Result<(), TaskError> {
        if !self.image.is_empty() {
            state.image = self.image.clone();
            state.http = self.http.clone();
            state.labels = self.labels.clone();
        }
        if state.image.is_empty() {
            return Err(TaskError::Failed(format!(
                "environment `{}` has no router yet: run the deploy first",
                self.env
            )));
        }
        for (service, s) in state.services.iter_mut() {
            for (rev, w) in s.split() {
                if w == 0 {
                    continue;
                }
                let name = revision_name(&self.project, &self.env, service, rev);
                let addr = revision_addr(d, &name, &self.project, s.port).await?;
                s.addrs.insert(rev, addr);
            }
        }
        state.generation += 1;
        let mut conf = render(state);
        if !state.http.trim().is_empty() {
            conf = conf.replacen(
                "http {\n",
                &format!("http {{\n    {}\n", state.http.trim()),
                1,
            );
        }
        let id = self.ensure_running(d, state, log).await?;
        self.put(d, &state.image, &[("next.conf", conf.as_bytes())])
            .await?;
        let (code, out) = exec(d, &id, &["nginx", "-t", "-q", "-c", "/lifeos/next.conf"]).await?;
        if code != 0 {
            return Err(TaskError::Failed(format!(
                "nginx rejected the new router config (the working one stays): {}",
                out.trim()
            )));
        }
        let json = serde_json::to_vec_pretty(&*state).expect("state serializes");
        self.put(
            d,
            &state.image,
            &[("nginx.conf", conf.as_bytes()), ("state.json", &json)],
        )
        .await?;
        let (code, out) = exec(
            d,
            &id,
            &["nginx", "-s", "reload", "-c", "/lifeos/nginx.conf"],
        )
        .await?;
        if code != 0 {
            return Err(TaskError::Failed(format!(
                "nginx could not reload the router config: {}",
                out.trim()
            )));
        }
        // Verify: new connections are served by workers of the new generation.
        let start = Instant::now();
        loop {
            match self.serving(d, state).await? {
                None => return Ok(()),
                Some(why) if start.elapsed() > Duration::from_secs(10) => {
                    return Err(TaskError::Failed(format!(
                        "the router did not take the new config within 10s: {why}"
                    )))
                }
                Some(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    /// New access-log text of `service` from byte `from` on (only whole lines), and where
    /// the next read starts.
    pub async fn access_log(
        &self,
        d: &bollard::Docker,
        service: &str,
        from: u64,
    ) -> Result<(String, u64), TaskError> {
        let Some((id, control)) = self.running(d).await? else {
            return Err(TaskError::Failed(format!(
                "router {} is not running: no access log to read",
                self.name()
            )));
        };
        let out = match log_request(&control, service, http::Method::GET, Some(from)).await {
            // 206: from `from` on; 416: nothing after it; 404: no log yet.
            Some(a) if a.status == 206 => a.body,
            Some(a) if a.status == 200 && from == 0 => a.body,
            Some(a) if a.status == 416 || a.status == 404 => String::new(),
            _ => {
                let path = format!("/lifeos/logs/{service}.log");
                exec(
                    d,
                    &id,
                    &[
                        "sh",
                        "-c",
                        &format!("tail -c +{} {path} 2>/dev/null || true", from + 1),
                    ],
                )
                .await?
                .1
            }
        };
        let whole = out.rfind('\n').map(|i| i + 1).unwrap_or(0);
        Ok((out[..whole].to_string(), from + whole as u64))
    }

    /// The access log's size now (where a check starts reading).
    pub async fn access_log_end(
        &self,
        d: &bollard::Docker,
        service: &str,
    ) -> Result<u64, TaskError> {
        let Some((id, control)) = self.running(d).await? else {
            return Ok(0);
        };
        match log_request(&control, service, http::Method::HEAD, None).await {
            Some(a) if a.status == 200 => {
                if let Some(n) = a
                    .headers
                    .get(http::header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
                {
                    return Ok(n);
                }
            }
            Some(a) if a.status == 404 => return Ok(0),
            _ => {}
        }
        let path = format!("/lifeos/logs/{service}.log");
        let (_, out) = exec(
            d,
            &id,
            &["sh", "-c", &format!("wc -c < {path} 2>/dev/null || echo 0")],
        )
        .await?;
        Ok(out.trim().parse().unwrap_or(0))
    }
}

/// A request for `service`'s access log on the control port; `None` when the answer is not
/// from the logs location (a router config written before it existed) or there is none.
async fn log_request(
    control: &str,
    service: &str,
    method: http::Method,
    from: Option<u64>,
) -> Option<super::http::Answer> {
    let path = format!("{LOGS_PATH}{service}.log");
    let a = super::http::request(control, method, &path, from, Duration::from_secs(5))
        .await
        .ok()?;
    a.headers.contains_key(LOGS_MARK).then_some(a)
}

/// A revision's address on the project network (`IP:port`).
pub async fn revision_addr(
    d: &bollard::Docker,
    name: &str,
    project: &str,
    port: u16,
) -> Result<String, TaskError> {
    let info = d
        .inspect_container(name, None)
        .await
        .map_err(|e| classify(e, &format!("inspect revision {name}")))?;
    let ip = info
        .network_settings
        .and_then(|n| n.networks)
        .and_then(|n| n.get(&network_name(project)).cloned())
        .and_then(|e| e.ip_address)
        .filter(|ip| !ip.is_empty())
        .ok_or_else(|| {
            TaskError::Failed(format!(
                "revision {name} has no address on network {} (is it running?)",
                network_name(project)
            ))
        })?;
    Ok(format!("{ip}:{port}"))
}

/// Run a command in a container through the Engine API: exit code and output.
pub async fn exec(d: &bollard::Docker, id: &str, cmd: &[&str]) -> Result<(i64, String), TaskError> {
    let argv = cmd.iter().map(|s| s.to_string()).collect();
    ops::exec_in(d, id, argv, None, None, "exec in the router").await
}

/// One file from a container (running or not), `None` when it does not exist.
async fn read_file(
    d: &bollard::Docker,
    container: &str,
    path: &str,
) -> Result<Option<Vec<u8>>, TaskError> {
    let mut s = d.download_from_container(
        container,
        Some(
            DownloadFromContainerOptionsBuilder::default()
                .path(path)
                .build(),
        ),
    );
    let mut tar_bytes = Vec::new();
    while let Some(chunk) = s.next().await {
        match chunk {
            Ok(b) => tar_bytes.extend_from_slice(&b),
            Err(e) if is_404(&e) => return Ok(None),
            Err(e) => return Err(classify(e, &format!("read {path} of the router"))),
        }
    }
    let mut a = tar::Archive::new(&tar_bytes[..]);
    let Some(entry) = a.entries()?.next() else {
        return Ok(None);
    };
    let mut v = Vec::new();
    std::io::Read::read_to_end(&mut entry?, &mut v)?;
    Ok(Some(v))
}
