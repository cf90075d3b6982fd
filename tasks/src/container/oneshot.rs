//! `container`: a one-shot container (migrations, tests in the image). The exit code is the
//! result and the logs are kept. Its key includes the identity of the services it acts on
//! (their volumes), so a recreated database gets its migrations again.

use async_trait::async_trait;
use bollard::query_parameters::AttachContainerOptionsBuilder;
use futures_util::StreamExt;
use lifeos_cache::InputSet;
use lifeos_engine::{ExecCx, Executed, KeyCx, Probe, ProbeCx, Stream, Task, TaskError, TaskInputs};
use serde_json::json;

use super::service::{bind_inputs, key_inputs};
use super::{ops, ContainerSpec};
use crate::docker::{classify, Docker};

pub struct ContainerTask {
    pub spec: ContainerSpec,
    /// The services among its dependencies, whose identity is part of the key.
    pub acts_on: Vec<ContainerSpec>,
    docker: Docker,
    binds: Option<InputSet>,
}

impl ContainerTask {
    pub fn new(spec: ContainerSpec, acts_on: Vec<ContainerSpec>, docker: Docker) -> Self {
        let binds = bind_inputs(&spec);
        Self {
            spec,
            acts_on,
            docker,
            binds,
        }
    }
}

#[async_trait]
impl Task for ContainerTask {
    fn kind(&self) -> &'static str {
        "container"
    }

    fn config(&self) -> serde_json::Value {
        serde_json::to_value(self.spec.key()).expect("spec serializes")
    }

    fn watch_paths(&self) -> Vec<String> {
        self.binds
            .as_ref()
            .map(|b| b.roots().to_vec())
            .unwrap_or_default()
    }

    fn describe(&self) -> String {
        format!(
            "container {} {}",
            self.spec.image.reference(),
            self.spec
                .cmd
                .as_ref()
                .map(|c| c.join(" "))
                .unwrap_or_default()
        )
    }

    async fn inputs(&self, cx: &KeyCx) -> Result<TaskInputs, TaskError> {
        let mut inputs = key_inputs(&self.spec, &self.binds, &self.docker, cx).await?;
        if !self.acts_on.is_empty() {
            let d = self.docker.get().await?;
            for s in &self.acts_on {
                inputs.extras.insert(
                    format!("identity of {}", s.task),
                    ops::identity(&d, s).await?,
                );
            }
        }
        Ok(inputs)
    }

    async fn probe(&self, cx: &ProbeCx<'_>) -> Result<Probe, TaskError> {
        Ok(match cx.record {
            Some(_) => Probe::Fresh("recorded success".into()),
            None => Probe::Missing("no record".into()),
        })
    }

    async fn execute(&self, cx: &ExecCx<'_>) -> Result<Executed, TaskError> {
        let d = self.docker.get().await?;
        ops::ensure_network(&d, &self.spec).await?;
        ops::ensure_volumes(&d, &self.spec).await?;
        if let super::ImageRef::External(r) = &self.spec.image {
            ops::image_id(&d, r, Some(&cx.log)).await?;
        }
        // A run that was killed could not remove its one-shot containers: the first run
        // that creates one does (once, so a run with nothing to execute never asks).
        super::owner::sweep_once(&d, &self.spec.project).await;
        let name = format!("{}-{}-{}", self.spec.project, self.spec.task, cx.run_id);
        let mut labels = ops::labels_of(&self.spec, None, cx.run_id);
        // For the next run, should this one die before it removes the container.
        labels.insert(
            super::owner::OWNER_LABEL.into(),
            super::owner::label_value(),
        );
        let spec = self.spec.expanded(cx.deps).map_err(TaskError::Failed)?;
        let id = ops::create(&d, &spec, &name, labels, &cx.env, cx.root).await?;
        let result = run_to_end(&d, &id, &self.spec, cx).await;
        ops::remove(&d, &id).await;
        let code = result?;
        if code != 0 {
            return Err(TaskError::Failed(format!(
                "{} exited with code {code}",
                self.spec.task
            )));
        }
        Ok(Executed {
            data: json!({ "exit_code": 0 }),
            ..Default::default()
        })
    }
}

/// Attach (before start, as `docker run` does, so no output is lost to a race with a fast
/// exit), start, stream the output into the task log, and wait for the exit code.
async fn run_to_end(
    d: &bollard::Docker,
    id: &str,
    spec: &ContainerSpec,
    cx: &ExecCx<'_>,
) -> Result<i64, TaskError> {
    let attached = d
        .attach_container(
            id,
            Some(
                AttachContainerOptionsBuilder::default()
                    .stdout(true)
                    .stderr(true)
                    .stream(true)
                    .logs(true)
                    .build(),
            ),
        )
        .await
        .map_err(|e| classify(e, "attach to container"))?;
    let mut output = attached.output;
    ops::start(d, id, spec).await?;
    let pump = async {
        // Frames may end mid-line: keep the rest of each stream until its newline comes.
        let (mut out, mut err) = (Vec::new(), Vec::new());
        while let Some(Ok(chunk)) = output.next().await {
            let (buf, stream) = match chunk {
                bollard::container::LogOutput::StdErr { .. } => (&mut err, Stream::Stderr),
                _ => (&mut out, Stream::Stdout),
            };
            buf.extend_from_slice(&chunk.into_bytes());
            if let Some(end) = buf.iter().rposition(|&b| b == b'\n') {
                let rest = buf.split_off(end + 1);
                cx.log.text(stream, &String::from_utf8_lossy(buf));
                *buf = rest;
            }
        }
        for (buf, stream) in [(out, Stream::Stdout), (err, Stream::Stderr)] {
            if !buf.is_empty() {
                cx.log.text(stream, &String::from_utf8_lossy(&buf));
            }
        }
    };
    tokio::select! {
        _ = pump => {}
        _ = cx.cancel.cancelled() => return Err(TaskError::Interrupted),
    }
    let mut wait = d.wait_container(id, None::<bollard::query_parameters::WaitContainerOptions>);
    match wait.next().await {
        Some(Ok(r)) => Ok(r.status_code),
        Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => Ok(code),
        Some(Err(e)) => Err(classify(e, "wait for container")),
        None => Err(TaskError::Failed(
            "the engine ended the wait without an exit code".into(),
        )),
    }
}
