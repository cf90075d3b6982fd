//! Revision containers of a deployed service: made, waited for (`ready` answers 2xx),
//! stopped and pruned. Each publishes its port on an ephemeral loopback port, so lifeos
//! can ask `ready` of that one revision before any traffic reaches it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bollard::models::{
    ContainerCreateBody, ContainerSummary, EndpointSettings, HostConfig, NetworkingConfig,
    PortBinding, RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, StopContainerOptionsBuilder,
};
use lifeos_engine::{LogSink, Stream, TaskError};
use tokio_util::sync::CancellationToken;

use super::{ENV_LABEL, REVISION_LABEL, ROLE_LABEL, SERVICE_LABEL};
use crate::container::{network_name, ops, PROJECT_LABEL};
use crate::docker::classify;

/// One revision container as found in the engine.
#[derive(Debug, Clone)]
pub struct Revision {
    pub rev: u32,
    pub id: String,
    pub running: bool,
    pub labels: HashMap<String, String>,
    /// Unix seconds.
    pub created: i64,
}

/// Revisions of `service` in `env`, newest first.
pub async fn list(
    d: &bollard::Docker,
    project: &str,
    env: &str,
    service: &str,
) -> Result<Vec<Revision>, TaskError> {
    let filters = HashMap::from([(
        "label".to_string(),
        vec![
            format!("{PROJECT_LABEL}={project}"),
            format!("{ENV_LABEL}={env}"),
            format!("{SERVICE_LABEL}={service}"),
            format!("{ROLE_LABEL}=revision"),
        ],
    )]);
    let list: Vec<ContainerSummary> = d
        .list_containers(Some(
            ListContainersOptionsBuilder::default()
                .all(true)
                .filters(&filters)
                .build(),
        ))
        .await
        .map_err(|e| classify(e, "list revisions"))?;
    let mut out: Vec<Revision> = list
        .into_iter()
        .filter_map(|c| {
            let labels = c.labels.clone().unwrap_or_default();
            Some(Revision {
                rev: labels.get(REVISION_LABEL)?.parse().ok()?,
                id: c.id.clone()?,
                running: c.state.map(|s| s.to_string()) == Some("running".into()),
                labels,
                created: c.created.unwrap_or(0),
            })
        })
        .collect();
    out.sort_by_key(|r| std::cmp::Reverse(r.rev));
    Ok(out)
}

/// What a new revision container is made of.
pub struct NewRevision<'a> {
    pub name: String,
    pub image: &'a str,
    pub cmd: Option<Vec<String>>,
    pub port: u16,
    pub env: &'a [(String, String)],
    pub labels: HashMap<String, String>,
    pub project: &'a str,
}

pub async fn create(d: &bollard::Docker, r: NewRevision<'_>) -> Result<String, TaskError> {
    let port = format!("{}/tcp", r.port);
    let bindings = HashMap::from([(
        port.clone(),
        Some(vec![PortBinding {
            host_ip: Some("127.0.0.1".into()),
            host_port: Some(String::new()),
        }]),
    )]);
    let net = network_name(r.project);
    let body = ContainerCreateBody {
        image: Some(r.image.to_string()),
        cmd: r.cmd,
        env: Some(r.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        labels: Some(r.labels),
        exposed_ports: Some(vec![port]),
        host_config: Some(HostConfig {
            port_bindings: Some(bindings),
            network_mode: Some(net.clone()),
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
                maximum_retry_count: None,
            }),
            init: Some(true),
            ..Default::default()
        }),
        networking_config: Some(NetworkingConfig {
            endpoints_config: Some(HashMap::from([(net, EndpointSettings::default())])),
        }),
        ..Default::default()
    };
    let c = d
        .create_container(
            Some(
                CreateContainerOptionsBuilder::default()
                    .name(&r.name)
                    .build(),
            ),
            body,
        )
        .await
        .map_err(|e| classify(e, &format!("create container {}", r.name)))?;
    if let Err(e) = d.start_container(&c.id, None).await {
        ops::remove(d, &c.id).await;
        return Err(classify(e, &format!("start revision {}", r.name)));
    }
    Ok(c.id)
}

pub async fn start(d: &bollard::Docker, id: &str) -> Result<(), TaskError> {
    d.start_container(id, None)
        .await
        .map_err(|e| classify(e, "start a revision"))
}

/// Stop (kept for rollback).
pub async fn stop(d: &bollard::Docker, id: &str) {
    let _ = d
        .stop_container(
            id,
            Some(StopContainerOptionsBuilder::default().t(5).build()),
        )
        .await;
}

/// The loopback address of the revision's published port.
async fn host_addr(d: &bollard::Docker, id: &str, port: u16) -> Result<Option<String>, TaskError> {
    let info = d
        .inspect_container(id, None)
        .await
        .map_err(|e| classify(e, "inspect a revision"))?;
    Ok(info
        .network_settings
        .and_then(|n| n.ports)
        .and_then(|p| p.get(&format!("{port}/tcp")).cloned().flatten())
        .and_then(|b| b.first().and_then(|b| b.host_port.clone()))
        .map(|p| format!("127.0.0.1:{p}")))
}

/// Wait until `GET ready` answers 2xx. A revision that exits or does not answer in time
/// fails with its last log lines (also written to the task's log).
#[allow(clippy::too_many_arguments)]
pub async fn wait_ready(
    d: &bollard::Docker,
    id: &str,
    name: &str,
    port: u16,
    ready: &str,
    timeout: Duration,
    log: &LogSink,
    cancel: &CancellationToken,
) -> Result<(), TaskError> {
    let start = Instant::now();
    let mut last = String::from("no answer yet");
    loop {
        let info = d
            .inspect_container(id, None)
            .await
            .map_err(|e| classify(e, "inspect a revision"))?;
        let st = info.state.unwrap_or_default();
        if !st.running.unwrap_or(false) {
            last = format!("it exited with code {}", st.exit_code.unwrap_or(-1));
            break;
        }
        if let Some(addr) = host_addr(d, id, port).await? {
            match super::http::get(&addr, ready, Duration::from_secs(2)).await {
                Ok(a) if (200..300).contains(&a.status) => return Ok(()),
                Ok(a) => last = format!("last answer {} on {ready}", a.status),
                Err(e) => last = e,
            }
        }
        if start.elapsed() > timeout {
            break;
        }
        // Often at first: a rollback waits on this.
        let pause = if start.elapsed() < Duration::from_secs(2) {
            25
        } else {
            200
        };
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(pause)) => {}
            _ = cancel.cancelled() => return Err(TaskError::Interrupted),
        }
    }
    let tail = ops::log_tail(d, id, 20).await;
    log.line(Stream::Stderr, &format!("last log lines of {name}:"));
    for l in &tail {
        log.line(Stream::Stderr, l);
    }
    Err(TaskError::Failed(format!(
        "revision {name} did not answer 2xx on `{ready}` within {}s ({last}); it was removed and traffic stays where it was{}",
        timeout.as_secs(),
        if tail.is_empty() {
            " (it wrote no log lines)".to_string()
        } else {
            format!(
                "; its last log lines:\n  {}",
                tail[tail.len().saturating_sub(5)..].join("\n  ")
            )
        }
    )))
}
