//! Docker operations on containers, networks and volumes, with errors that say what to do.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::models::{
    ContainerCreateBody, ContainerSummary, EndpointSettings, HealthConfig, HealthStatusEnum,
    HostConfig, Mount, MountType, NetworkCreateRequest, NetworkingConfig, PortBinding,
    RestartPolicy, RestartPolicyNameEnum, VolumeCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, ListContainersOptionsBuilder,
    ListVolumesOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
    StopContainerOptionsBuilder,
};
use futures_util::StreamExt;
use lifeos_engine::{Key, LogSink, Stream, TaskError};
use tokio_util::sync::CancellationToken;

use super::{ContainerSpec, VolumeSource, KEY_LABEL, PROJECT_LABEL, RUN_LABEL, TASK_LABEL};
use crate::docker::classify;

fn is_404(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// The project network; created once. 20.10 happily creates a second network with the
/// same name, so creation is serialised in this process, and duplicates another process made
/// at the same moment are removed (the oldest one stays).
pub async fn ensure_network(d: &bollard::Docker, spec: &ContainerSpec) -> Result<(), TaskError> {
    static CREATING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _guard = CREATING.lock().await;
    let name = spec.network();
    match d.inspect_network(&name, None).await {
        Ok(_) => return Ok(()),
        // "ambiguous": duplicates exist already; fall through and remove them.
        Err(e) if is_404(&e) || e.to_string().contains("ambiguous") => {}
        Err(e) => return Err(classify(e, "inspect network")),
    }
    let labels = HashMap::from([(PROJECT_LABEL.to_string(), spec.project.clone())])
        .into_iter()
        .chain(spec.labels.clone())
        .collect();
    let existing = networks_named(d, &name).await?;
    if existing.is_empty() {
        d.create_network(NetworkCreateRequest {
            name: name.clone(),
            labels: Some(labels),
            ..Default::default()
        })
        .await
        .map_err(|e| classify(e, &format!("create network {name}")))?;
    }
    let mut all = networks_named(d, &name).await?;
    all.sort_by_key(|n| (n.created, n.id.clone()));
    for dup in all.iter().skip(1) {
        if let Some(id) = &dup.id {
            let _ = d.remove_network(id).await;
        }
    }
    Ok(())
}

async fn networks_named(
    d: &bollard::Docker,
    name: &str,
) -> Result<Vec<bollard::models::Network>, TaskError> {
    let filters = HashMap::from([("name".to_string(), vec![name.to_string()])]);
    let list = d
        .list_networks(Some(
            bollard::query_parameters::ListNetworksOptionsBuilder::default()
                .filters(&filters)
                .build(),
        ))
        .await
        .map_err(|e| classify(e, "list networks"))?;
    // The name filter matches substrings.
    Ok(list
        .into_iter()
        .filter(|n| n.name.as_deref() == Some(name))
        .collect())
}

/// Each volume lifeos creates carries a random incarnation label: a volume removed and made
/// again is a new database, even under the same name. (Docker's CreatedAt for local volumes
/// is a directory mtime, which moves on first use.)
pub const INCARNATION_LABEL: &str = "lifeos.incarnation";

fn random_hex() -> Result<String, TaskError> {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b)
        .map_err(|e| TaskError::Environment(format!("the system's random source failed: {e}")))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

pub async fn ensure_volumes(d: &bollard::Docker, spec: &ContainerSpec) -> Result<(), TaskError> {
    for v in &spec.volumes {
        if let VolumeSource::Named(n) = &v.source {
            // Creating an existing volume returns it unchanged, labels included.
            let labels = HashMap::from([
                (PROJECT_LABEL.to_string(), spec.project.clone()),
                (INCARNATION_LABEL.to_string(), random_hex()?),
            ])
            .into_iter()
            .chain(spec.labels.clone())
            .collect();
            d.create_volume(VolumeCreateRequest {
                name: Some(spec.volume_name(n)),
                labels: Some(labels),
                ..Default::default()
            })
            .await
            .map_err(|e| classify(e, &format!("create volume {n}")))?;
        }
    }
    Ok(())
}

/// The image ID of a reference, pulling it when it is not in the engine.
pub async fn image_id(
    d: &bollard::Docker,
    reference: &str,
    log: Option<&LogSink>,
) -> Result<String, TaskError> {
    match d.inspect_image(reference).await {
        Ok(img) => return Ok(img.id.unwrap_or_default()),
        Err(e) if is_404(&e) => {}
        Err(e) => return Err(classify(e, &format!("inspect image {reference}"))),
    }
    if let Some(l) = log {
        l.progress(&format!("pulling {reference}"));
    }
    let mut s = d.create_image(
        Some(
            CreateImageOptionsBuilder::default()
                .from_image(reference)
                .build(),
        ),
        None,
        None,
    );
    while let Some(item) = s.next().await {
        if let Err(e) = item {
            return Err(TaskError::Failed(format!(
                "image {reference} is not in the engine and cannot be pulled: {}",
                classify(e, "pull")
            )));
        }
    }
    match d.inspect_image(reference).await {
        Ok(img) => Ok(img.id.unwrap_or_default()),
        Err(e) => Err(classify(e, &format!("inspect image {reference}"))),
    }
}

pub fn labels_of(spec: &ContainerSpec, key: Option<&Key>, run_id: &str) -> HashMap<String, String> {
    let mut l: HashMap<String, String> = spec.labels.clone().into_iter().collect();
    l.insert(PROJECT_LABEL.into(), spec.project.clone());
    l.insert(TASK_LABEL.into(), spec.task.clone());
    l.insert(RUN_LABEL.into(), run_id.into());
    if let Some(k) = key {
        l.insert(KEY_LABEL.into(), k.to_hex());
    }
    l
}

/// Create (not start) a container for `spec`.
pub async fn create(
    d: &bollard::Docker,
    spec: &ContainerSpec,
    name: &str,
    labels: HashMap<String, String>,
    env: &[(String, String)],
    root: &Path,
) -> Result<String, TaskError> {
    let body = create_body(spec, labels, env, root);
    create_with(d, name, body).await
}

/// Create a container from a body made by [`create_body`] (and adjusted by the caller).
pub async fn create_with(
    d: &bollard::Docker,
    name: &str,
    body: ContainerCreateBody,
) -> Result<String, TaskError> {
    let r = d
        .create_container(
            Some(CreateContainerOptionsBuilder::default().name(name).build()),
            body,
        )
        .await
        .map_err(|e| classify(e, &format!("create container {name}")))?;
    Ok(r.id)
}

/// What [`create`] asks the engine for: `spec` on the project network.
pub fn create_body(
    spec: &ContainerSpec,
    labels: HashMap<String, String>,
    env: &[(String, String)],
    root: &Path,
) -> ContainerCreateBody {
    let mounts: Vec<Mount> = spec
        .volumes
        .iter()
        .map(|v| match &v.source {
            VolumeSource::Named(n) => Mount {
                typ: Some(MountType::VOLUME),
                source: Some(spec.volume_name(n)),
                target: Some(v.target.clone()),
                read_only: Some(v.read_only),
                ..Default::default()
            },
            VolumeSource::Bind(rel) => Mount {
                typ: Some(MountType::BIND),
                source: Some(root.join(rel).to_string_lossy().into_owned()),
                target: Some(v.target.clone()),
                read_only: Some(v.read_only),
                ..Default::default()
            },
        })
        .collect();
    let mut bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    for p in &spec.ports {
        bindings
            .entry(format!("{}/{}", p.container_port, p.protocol))
            .or_insert_with(|| Some(vec![]))
            .as_mut()
            .unwrap()
            .push(PortBinding {
                host_ip: Some(p.host_ip.clone()),
                host_port: Some(p.host_port.to_string()),
            });
    }
    let restart = spec.restart.as_deref().map(|r| RestartPolicy {
        name: Some(match r {
            "always" => RestartPolicyNameEnum::ALWAYS,
            "unless-stopped" => RestartPolicyNameEnum::UNLESS_STOPPED,
            "on-failure" => RestartPolicyNameEnum::ON_FAILURE,
            _ => RestartPolicyNameEnum::NO,
        }),
        maximum_retry_count: None,
    });
    let ns = |d: Duration| d.as_nanos() as i64;
    let healthcheck = spec.health.as_ref().map(|h| HealthConfig {
        test: Some(h.test.clone()),
        interval: Some(ns(h.interval)),
        timeout: Some(ns(h.timeout)),
        retries: Some(h.retries as i64),
        start_period: Some(ns(h.start_period)),
        start_interval: None,
    });
    let network = spec.network();
    ContainerCreateBody {
        image: Some(spec.image.reference().to_string()),
        cmd: spec.cmd.clone(),
        entrypoint: spec.entrypoint.clone(),
        working_dir: spec.workdir.clone(),
        user: spec.user.clone(),
        env: Some(env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        labels: Some(labels),
        exposed_ports: Some(bindings.keys().cloned().collect()),
        healthcheck,
        host_config: Some(HostConfig {
            mounts: Some(mounts),
            port_bindings: Some(bindings),
            network_mode: Some(network.clone()),
            restart_policy: restart,
            init: Some(true),
            ..Default::default()
        }),
        networking_config: Some(NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                network,
                EndpointSettings {
                    aliases: Some(vec![spec.task.clone()]),
                    ..Default::default()
                },
            )])),
        }),
        ..Default::default()
    }
}

/// Start a created container; on failure remove it (nothing half-made stays behind) and
/// say which port is taken when that is the cause.
pub async fn start(d: &bollard::Docker, id: &str, spec: &ContainerSpec) -> Result<(), TaskError> {
    if let Err(e) = d.start_container(id, None).await {
        remove(d, id).await;
        let msg = e.to_string();
        if msg.contains("port is already allocated") || msg.contains("address already in use") {
            let port = spec
                .ports
                .iter()
                .find(|p| msg.contains(&format!(":{}", p.host_port)))
                .or(spec.ports.first())
                .map(|p| format!("{}:{}", p.host_ip, p.host_port))
                .unwrap_or_default();
            return Err(TaskError::Failed(format!(
                "service {}: host port {port} is already in use; stop what uses it or change `ports` in lifeos.toml",
                spec.task
            )));
        }
        return Err(classify(e, &format!("start container for {}", spec.task)));
    }
    Ok(())
}

pub async fn remove(d: &bollard::Docker, id: &str) {
    let _ = d
        .remove_container(
            id,
            Some(RemoveContainerOptionsBuilder::default().force(true).build()),
        )
        .await;
}

/// Stop gracefully, then remove (volumes stay).
pub async fn stop_and_remove(d: &bollard::Docker, id: &str) {
    let _ = d
        .stop_container(
            id,
            Some(StopContainerOptionsBuilder::default().t(10).build()),
        )
        .await;
    remove(d, id).await;
}

/// Containers of `project` (and of one task, if given), running or not.
pub async fn find(
    d: &bollard::Docker,
    project: &str,
    task: Option<&str>,
) -> Result<Vec<ContainerSummary>, TaskError> {
    let mut labels = vec![format!("{PROJECT_LABEL}={project}")];
    if let Some(t) = task {
        labels.push(format!("{TASK_LABEL}={t}"));
    }
    let filters = HashMap::from([("label".to_string(), labels)]);
    d.list_containers(Some(
        ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build(),
    ))
    .await
    .map_err(|e| classify(e, "list containers"))
}

/// Wait until the container is healthy (or running, without a healthcheck). A container that
/// exits or turns unhealthy fails with its last health output or log lines.
pub async fn wait_healthy(
    d: &bollard::Docker,
    id: &str,
    spec: &ContainerSpec,
    log: &LogSink,
    cancel: &CancellationToken,
) -> Result<(), TaskError> {
    let started = Instant::now();
    let mut last_streak = None;
    let limit = spec
        .health
        .as_ref()
        .map(|h| {
            h.start_period + (h.interval + h.timeout) * (h.retries + 1) + Duration::from_secs(30)
        })
        .unwrap_or(Duration::from_secs(30));
    loop {
        let info = d
            .inspect_container(id, None)
            .await
            .map_err(|e| classify(e, "inspect container"))?;
        let state = info.state.unwrap_or_default();
        let running = state.running.unwrap_or(false);
        if !running && !state.restarting.unwrap_or(false) {
            let tail = log_tail(d, id, 20).await;
            for l in &tail {
                log.line(Stream::Stderr, l);
            }
            return Err(TaskError::Failed(format!(
                "service {} exited with code {} before it was healthy{}",
                spec.task,
                state.exit_code.unwrap_or(-1),
                tail.last().map(|l| format!(": {l}")).unwrap_or_default()
            )));
        }
        let health = state.health.as_ref();
        match (spec.health.is_some(), health.and_then(|h| h.status)) {
            (false, _) => return Ok(()),
            (true, Some(HealthStatusEnum::HEALTHY)) => return Ok(()),
            (true, Some(HealthStatusEnum::UNHEALTHY)) => {
                let last = health
                    .and_then(|h| h.log.as_ref())
                    .and_then(|l| l.last())
                    .and_then(|r| r.output.clone())
                    .unwrap_or_default();
                log.line(
                    Stream::Stderr,
                    &format!("last health check output: {}", last.trim()),
                );
                return Err(TaskError::Failed(format!(
                    "service {} is unhealthy: {}",
                    spec.task,
                    last.trim()
                )));
            }
            _ => {
                let streak = health.and_then(|h| h.failing_streak).unwrap_or(0);
                if last_streak.replace(streak) != Some(streak) {
                    log.progress(&format!("waiting until healthy ({streak} failed checks)"));
                }
            }
        }
        if started.elapsed() > limit {
            return Err(TaskError::Failed(format!(
                "service {} did not become healthy within {}s",
                spec.task,
                limit.as_secs()
            )));
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = cancel.cancelled() => return Err(TaskError::Interrupted),
        }
    }
}

pub async fn log_tail(d: &bollard::Docker, id: &str, n: usize) -> Vec<String> {
    let mut s = d.logs(
        id,
        Some(
            LogsOptionsBuilder::default()
                .stdout(true)
                .stderr(true)
                .tail(&n.to_string())
                .build(),
        ),
    );
    let mut out = Vec::new();
    while let Some(Ok(chunk)) = s.next().await {
        out.extend(
            String::from_utf8_lossy(&chunk.into_bytes())
                .lines()
                .map(str::to_owned),
        );
    }
    out
}

/// Remove every container a run created (Ctrl-C during `up`).
pub async fn remove_run(d: &bollard::Docker, run_id: &str) -> usize {
    let filters = HashMap::from([("label".to_string(), vec![format!("{RUN_LABEL}={run_id}")])]);
    let Ok(list) = d
        .list_containers(Some(
            ListContainersOptionsBuilder::default()
                .all(true)
                .filters(&filters)
                .build(),
        ))
        .await
    else {
        return 0;
    };
    for c in &list {
        if let Some(id) = &c.id {
            remove(d, id).await;
        }
    }
    list.len()
}

/// What the identity of a service is: its named volumes' incarnations (the data lives
/// there), or its container ID when it has none.
pub async fn identity(d: &bollard::Docker, spec: &ContainerSpec) -> Result<String, TaskError> {
    let mut parts = Vec::new();
    for v in &spec.volumes {
        if let VolumeSource::Named(n) = &v.source {
            let name = spec.volume_name(n);
            match d.inspect_volume(&name).await {
                Ok(vol) => parts.push(format!(
                    "volume {name} incarnation {}",
                    vol.labels
                        .get(INCARNATION_LABEL)
                        .map(String::as_str)
                        .unwrap_or("unlabelled")
                )),
                Err(e) if is_404(&e) => parts.push(format!("volume {name} absent")),
                Err(e) => return Err(classify(e, "inspect volume")),
            }
        }
    }
    if parts.is_empty() {
        let c = find(d, &spec.project, Some(&spec.task)).await?;
        parts.push(match c.first().and_then(|c| c.id.clone()) {
            Some(id) => format!("container {}", &id[..12.min(id.len())]),
            None => "no container".into(),
        });
    }
    Ok(parts.join(", "))
}

/// `lifeos down`: remove the project's containers and network, and its volumes if asked.
pub async fn down(
    d: &bollard::Docker,
    project: &str,
    volumes: bool,
) -> Result<Vec<String>, TaskError> {
    let mut removed = Vec::new();
    for c in find(d, project, None).await? {
        if let Some(id) = &c.id {
            stop_and_remove(d, id).await;
            let name = c.names.and_then(|n| n.first().cloned()).unwrap_or_default();
            removed.push(format!("container {}", name.trim_start_matches('/')));
        }
    }
    let net = super::network_name(project);
    if d.remove_network(&net).await.is_ok() {
        removed.push(format!("network {net}"));
    }
    if volumes {
        let filters = HashMap::from([(
            "label".to_string(),
            vec![format!("{PROJECT_LABEL}={project}")],
        )]);
        let list = d
            .list_volumes(Some(
                ListVolumesOptionsBuilder::default()
                    .filters(&filters)
                    .build(),
            ))
            .await
            .map_err(|e| classify(e, "list volumes"))?;
        for v in list.volumes.unwrap_or_default() {
            d.remove_volume(
                &v.name,
                None::<bollard::query_parameters::RemoveVolumeOptions>,
            )
            .await
            .map_err(|e| classify(e, &format!("remove volume {}", v.name)))?;
            removed.push(format!("volume {}", v.name));
        }
    }
    Ok(removed)
}

#[derive(Debug, serde::Serialize)]
pub struct StatusRow {
    pub service: String,
    pub state: String,
    pub health: String,
    pub ports: Vec<String>,
    pub image: String,
    pub since: String,
}

pub async fn status(
    d: &bollard::Docker,
    project: &str,
    services: &[String],
) -> Result<Vec<StatusRow>, TaskError> {
    let mut rows = Vec::new();
    for s in services {
        let found = find(d, project, Some(s)).await?;
        let Some(c) = found.first() else {
            rows.push(StatusRow {
                service: s.clone(),
                state: "absent".into(),
                health: "-".into(),
                ports: vec![],
                image: "-".into(),
                since: "-".into(),
            });
            continue;
        };
        let info = d
            .inspect_container(c.id.as_deref().unwrap_or_default(), None)
            .await
            .map_err(|e| classify(e, "inspect container"))?;
        let state = info.state.unwrap_or_default();
        rows.push(StatusRow {
            service: s.clone(),
            state: state.status.map(|s| s.to_string()).unwrap_or_default(),
            health: state
                .health
                .and_then(|h| h.status)
                .map(|h| h.to_string())
                .unwrap_or_else(|| "-".into()),
            ports: ports_of(c),
            image: c.image.clone().unwrap_or_default(),
            since: state.started_at.unwrap_or_default(),
        });
    }
    Ok(rows)
}

pub fn ports_of(c: &ContainerSummary) -> Vec<String> {
    let mut v: Vec<String> = c
        .ports
        .iter()
        .flatten()
        .filter_map(|p| {
            p.public_port.map(|pp| {
                format!(
                    "{}:{}->{}",
                    p.ip.clone().unwrap_or_default(),
                    pp,
                    p.private_port
                )
            })
        })
        .collect();
    v.sort();
    v.dedup();
    v
}

/// `lifeos logs [-f]`: copy a service's output to `out` (the caller's stdout), with every
/// value `secrets` knows masked. `tasks/` never writes to the process's stdout itself.
pub async fn logs(
    d: &bollard::Docker,
    project: &str,
    task: &str,
    follow: bool,
    secrets: &lifeos_engine::Redactor,
    out: &mut (dyn std::io::Write + Send),
) -> Result<(), TaskError> {
    let found = find(d, project, Some(task)).await?;
    let Some(id) = found.first().and_then(|c| c.id.clone()) else {
        return Err(TaskError::Failed(format!(
            "service {task} has no container; start it with `lifeos up {task}`"
        )));
    };
    let mut s = d.logs(
        &id,
        Some(
            LogsOptionsBuilder::default()
                .stdout(true)
                .stderr(true)
                .follow(follow)
                .build(),
        ),
    );
    let mut masked = lifeos_engine::redact::StreamRedactor::new(secrets);
    while let Some(item) = s.next().await {
        let chunk = item.map_err(|e| classify(e, "logs"))?;
        if out
            .write_all(&masked.push(&chunk.into_bytes()))
            .and_then(|()| out.flush())
            .is_err()
        {
            // The reader went away (`lifeos logs -f api | head`): done, quietly.
            return Ok(());
        }
    }
    let _ = out.write_all(&masked.finish()).and_then(|()| out.flush());
    Ok(())
}

/// Run `argv` in container `id` through the Engine API (as `user`, default the container's;
/// in `workdir`, default the container's): exit code and output. `what` names it in errors.
pub async fn exec_in(
    d: &bollard::Docker,
    id: &str,
    argv: Vec<String>,
    user: Option<&str>,
    workdir: Option<&str>,
    what: &str,
) -> Result<(i64, String), TaskError> {
    let e = d
        .create_exec(
            id,
            CreateExecOptions::<String> {
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                cmd: Some(argv),
                user: user.map(str::to_owned),
                working_dir: workdir.map(str::to_owned),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| classify(e, what))?;
    let mut out = Vec::new();
    if let StartExecResults::Attached { mut output, .. } = d
        .start_exec(&e.id, None)
        .await
        .map_err(|e| classify(e, what))?
    {
        while let Some(Ok(chunk)) = output.next().await {
            out.extend_from_slice(&chunk.into_bytes());
        }
    }
    let code = d
        .inspect_exec(&e.id)
        .await
        .map_err(|e| classify(e, what))?
        .exit_code
        .unwrap_or(-1);
    Ok((code, String::from_utf8_lossy(&out).into_owned()))
}
