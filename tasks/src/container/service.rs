//! `service`: a long-running container (Postgres, Redis, the app in dev). Its proof in the
//! world is a running, healthy container labelled with its key; dependants start only when it
//! is healthy. A changed config recreates it (named volumes stay); a stopped one is started.

use async_trait::async_trait;
use lifeos_cache::InputSet;
use lifeos_engine::{ExecCx, Executed, KeyCx, Probe, ProbeCx, Task, TaskError, TaskInputs};
use serde_json::json;

use super::{ops, ContainerSpec, ImageRef, VolumeSource, KEY_LABEL};
use crate::docker::Docker;

pub struct ServiceTask {
    pub spec: ContainerSpec,
    docker: Docker,
    binds: Option<InputSet>,
}

/// Bind-mounted project files are inputs: what the container sees is part of its result.
pub(super) fn bind_inputs(spec: &ContainerSpec) -> Option<InputSet> {
    let binds: Vec<String> = spec
        .volumes
        .iter()
        .filter_map(|v| match &v.source {
            VolumeSource::Bind(rel) if rel.is_empty() => Some("**".to_string()),
            VolumeSource::Bind(rel) => Some(rel.clone()),
            VolumeSource::Named(_) => None,
        })
        .collect();
    (!binds.is_empty()).then(|| InputSet::new(&binds).expect("validated bind paths"))
}

pub(super) async fn key_inputs(
    spec: &ContainerSpec,
    binds: &Option<InputSet>,
    docker: &Docker,
    cx: &KeyCx<'_>,
) -> Result<TaskInputs, TaskError> {
    let mut inputs = TaskInputs::default();
    if let Some(b) = binds {
        inputs.files = cx.hash_inputs(b).await?;
    }
    if let ImageRef::External(r) = &spec.image {
        let d = docker.get().await?;
        inputs
            .extras
            .insert(format!("image {r}"), ops::image_id(&d, r, None).await?);
    }
    Ok(inputs)
}

impl ServiceTask {
    pub fn new(spec: ContainerSpec, docker: Docker) -> Self {
        let binds = bind_inputs(&spec);
        Self {
            spec,
            docker,
            binds,
        }
    }

    fn container_name(&self) -> String {
        format!("{}-{}", self.spec.project, self.spec.task)
    }
}

impl ServiceTask {
    fn endpoints(&self, container_id: &str) -> super::ServiceResult {
        let first = self.spec.ports.first();
        super::ServiceResult {
            container: self.container_name(),
            container_id: container_id.to_string(),
            host: match first.map(|p| p.host_ip.as_str()) {
                None | Some("0.0.0.0") => "127.0.0.1".to_string(),
                Some("::") => "::1".to_string(),
                Some(ip) => ip.to_string(),
            },
            port: first.map(|p| p.host_port),
        }
    }
}

#[async_trait]
impl Task for ServiceTask {
    fn kind(&self) -> &'static str {
        "service"
    }

    fn config(&self) -> serde_json::Value {
        serde_json::to_value(self.spec.key()).expect("spec serializes")
    }

    fn result(&self, data: &serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        let id = data["container_id"].as_str().unwrap_or_default();
        match serde_json::to_value(self.endpoints(id)) {
            Ok(serde_json::Value::Object(m)) => m,
            _ => Default::default(),
        }
    }

    fn watch_paths(&self) -> Vec<String> {
        self.binds
            .as_ref()
            .map(|b| b.roots().to_vec())
            .unwrap_or_default()
    }

    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }

    fn describe(&self) -> String {
        let ports: Vec<String> = self
            .spec
            .ports
            .iter()
            .map(|p| p.host_port.to_string())
            .collect();
        if ports.is_empty() {
            format!("service {}", self.spec.image.reference())
        } else {
            format!(
                "service {} on {}",
                self.spec.image.reference(),
                ports.join(", ")
            )
        }
    }

    async fn inputs(&self, cx: &KeyCx) -> Result<TaskInputs, TaskError> {
        key_inputs(&self.spec, &self.binds, &self.docker, cx).await
    }

    async fn probe(&self, cx: &ProbeCx<'_>) -> Result<Probe, TaskError> {
        let d = self.docker.get().await?;
        let key = cx.key.to_hex();
        let ours = |labels: Option<&std::collections::HashMap<String, String>>| {
            labels.and_then(|l| l.get(KEY_LABEL)) == Some(&key)
        };
        // The container by its name first: one inspect, where listing by label makes the
        // engine look at every container it has.
        let info = match d.inspect_container(&self.container_name(), None).await {
            Ok(info) if ours(info.config.as_ref().and_then(|c| c.labels.as_ref())) => info,
            _ => {
                let found = ops::find(&d, &self.spec.project, Some(&self.spec.task)).await?;
                let Some(c) = found.iter().find(|c| ours(c.labels.as_ref())) else {
                    return Ok(Probe::Missing(if found.is_empty() {
                        "container missing".into()
                    } else {
                        "container has another config".into()
                    }));
                };
                let id = c.id.clone().unwrap_or_default();
                d.inspect_container(&id, None)
                    .await
                    .map_err(|e| crate::docker::classify(e, "inspect container"))?
            }
        };
        let id = info.id.clone().unwrap_or_default();
        let state = info.state.unwrap_or_default();
        if !state.running.unwrap_or(false) {
            return Ok(Probe::Missing(format!(
                "container {} ({}, exit code {})",
                state
                    .status
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "stopped".into()),
                &id[..12.min(id.len())],
                state.exit_code.unwrap_or(0)
            )));
        }
        let health = state.health.and_then(|h| h.status).map(|h| h.to_string());
        match (self.spec.health.is_some(), health.as_deref()) {
            (false, _) => Ok(Probe::Fresh(format!("running, container {}", &id[..12]))),
            (true, Some("healthy")) => Ok(Probe::Fresh(format!(
                "running, healthy, container {}",
                &id[..12]
            ))),
            (true, h) => Ok(Probe::Missing(format!(
                "container {}",
                h.unwrap_or("not healthy")
            ))),
        }
    }

    async fn execute(&self, cx: &ExecCx<'_>) -> Result<Executed, TaskError> {
        let d = self.docker.get().await?;
        ops::ensure_network(&d, &self.spec).await?;
        ops::ensure_volumes(&d, &self.spec).await?;
        let key = cx.key.to_hex();
        let found = ops::find(&d, &self.spec.project, Some(&self.spec.task)).await?;
        // Same config, just stopped or crashed: start it again rather than recreate.
        if let Some(c) = found
            .iter()
            .find(|c| c.labels.as_ref().and_then(|l| l.get(KEY_LABEL)) == Some(&key))
        {
            let id = c.id.clone().unwrap_or_default();
            cx.log.progress("starting the existing container");
            ops::start(&d, &id, &self.spec).await?;
            ops::wait_healthy(&d, &id, &self.spec, &cx.log, &cx.cancel).await?;
            return Ok(Executed {
                data: json!({ "container_id": id }),
                ..Default::default()
            });
        }
        for c in &found {
            if let Some(id) = &c.id {
                cx.log.progress("removing the container of the old config");
                ops::stop_and_remove(&d, id).await;
            }
        }
        if let ImageRef::External(r) = &self.spec.image {
            ops::image_id(&d, r, Some(&cx.log)).await?;
        }
        let labels = ops::labels_of(&self.spec, Some(&cx.key), cx.run_id);
        let spec = self.spec.expanded(cx.deps).map_err(TaskError::Failed)?;
        let id = ops::create(&d, &spec, &self.container_name(), labels, &cx.env, cx.root).await?;
        ops::start(&d, &id, &self.spec).await?;
        match ops::wait_healthy(&d, &id, &self.spec, &cx.log, &cx.cancel).await {
            Ok(()) => Ok(Executed {
                data: json!({ "container_id": id }),
                ..Default::default()
            }),
            Err(e) => {
                // Never leave a half-started service behind: it is not the recorded result.
                ops::remove(&d, &id).await;
                Err(e)
            }
        }
    }
}
