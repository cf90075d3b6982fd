//! A one-shot Postgres client container on the database's network: a shell script, an
//! optional file streamed into its stdin, its stdout handed over chunk by chunk (a dump goes
//! straight to disk), its stderr line by line. Created, attached and removed through
//! `container::ops`, labelled like every one-shot container (a killed run's leftovers are
//! swept by the next run).

use std::path::PathBuf;

use bollard::query_parameters::{AttachContainerOptionsBuilder, WaitContainerOptions};
use futures_util::StreamExt;
use lifeos_engine::TaskError;
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

use crate::container::{ops, owner, ContainerSpec, ImageRef};
use crate::docker::classify;

/// Where and as whom the client containers run.
#[derive(Clone)]
pub struct Client {
    /// The database service's spec: project, network, the labels its containers carry.
    pub db: ContainerSpec,
    /// The task (a backup task's name) the containers are labelled with.
    pub task: String,
    /// Image with the Postgres client tools (the database's own by default).
    pub image: String,
    /// `PGHOST`, `PGPORT`, `PGUSER`, `PGDATABASE`, `PGPASSWORD`, ...
    pub env: Vec<(String, String)>,
    pub run_id: String,
    /// On the host's network instead of the project's: a database given by URL is reached
    /// as this machine reaches it (`127.0.0.1` included).
    pub host_network: bool,
}

/// How a client container ended.
pub struct Ended {
    pub code: i64,
    /// Its stderr lines that were not protocol lines, for error messages.
    pub stderr: Vec<String>,
}

impl Ended {
    /// The last error it reported on stderr (else its last line), for a one-line error.
    pub fn why(&self) -> String {
        let said = |l: &&String| !l.trim().is_empty();
        let error = |l: &&String| l.contains("error") || l.contains("FATAL") || l.contains("ERROR");
        self.stderr
            .iter()
            .rev()
            .find(|l| said(l) && error(l))
            .or_else(|| self.stderr.iter().rev().find(said))
            .cloned()
            .unwrap_or_else(|| format!("exit code {}", self.code))
    }
}

impl Client {
    fn spec(&self, script: &str) -> ContainerSpec {
        ContainerSpec {
            sync: vec![],
            project: self.db.project.clone(),
            task: self.task.clone(),
            image: ImageRef::External(self.image.clone()),
            cmd: Some(vec![script.to_string()]),
            entrypoint: Some(vec!["sh".into(), "-c".into()]),
            workdir: None,
            user: None,
            ports: vec![],
            volumes: vec![],
            health: None,
            restart: None,
            labels: self.db.labels.clone(),
        }
    }

    /// Run `script` (`sh -c`) to its end. `stdin`: a file fed to it. `stdout`: every chunk
    /// of its output, in order; an error from it stops the container. `stderr`: each line.
    #[allow(clippy::too_many_arguments)] // the script, its three streams, and where it runs
    pub async fn run(
        &self,
        d: &bollard::Docker,
        purpose: &str,
        script: &str,
        stdin: Option<PathBuf>,
        stdout: &mut (dyn FnMut(&[u8]) -> std::io::Result<()> + Send),
        stderr: &mut (dyn FnMut(&str) + Send),
        cancel: &CancellationToken,
    ) -> Result<Ended, TaskError> {
        let spec = self.spec(script);
        if !self.host_network {
            ops::ensure_network(d, &spec).await?;
        }
        ops::image_id(d, &self.image, None).await.map_err(|e| match e {
            TaskError::Failed(why) => TaskError::Failed(format!(
                "{why}; set `image` of task `{}` to a Postgres image with pg_dump at least as new as the server",
                self.task
            )),
            other => other,
        })?;
        owner::sweep_once(d, &spec.project).await;
        let name = format!(
            "{}-{}-{purpose}-{}",
            spec.project,
            spec.task,
            self.run_id.to_lowercase()
        );
        let mut labels = ops::labels_of(&spec, None, &self.run_id);
        labels.insert(owner::OWNER_LABEL.into(), owner::label_value());
        let mut body = ops::create_body(&spec, labels, &self.env, std::path::Path::new("/"));
        // No tini: `sh` is the only process and exits with the script.
        if let Some(h) = body.host_config.as_mut() {
            h.init = Some(false);
            if self.host_network {
                h.network_mode = Some("host".into());
            }
        }
        if self.host_network {
            body.networking_config = None;
        }
        if stdin.is_some() {
            body.open_stdin = Some(true);
            body.stdin_once = Some(true);
            body.attach_stdin = Some(true);
        }
        let id = ops::create_with(d, &name, body).await?;
        let result = self
            .attached(d, &id, &spec, stdin, stdout, stderr, cancel)
            .await;
        ops::remove(d, &id).await;
        result
    }

    #[allow(clippy::too_many_arguments)]
    async fn attached(
        &self,
        d: &bollard::Docker,
        id: &str,
        spec: &ContainerSpec,
        stdin: Option<PathBuf>,
        stdout: &mut (dyn FnMut(&[u8]) -> std::io::Result<()> + Send),
        stderr: &mut (dyn FnMut(&str) + Send),
        cancel: &CancellationToken,
    ) -> Result<Ended, TaskError> {
        let attached = d
            .attach_container(
                id,
                Some(
                    AttachContainerOptionsBuilder::default()
                        .stdin(stdin.is_some())
                        .stdout(true)
                        .stderr(true)
                        .stream(true)
                        .logs(true)
                        .build(),
                )
                .clone(),
            )
            .await
            .map_err(|e| classify(e, "attach to container"))?;
        let mut output = attached.output;
        let mut input = attached.input;
        ops::start(d, id, spec).await?;
        // The file goes in while the output comes out; a client that stops reading early
        // (pg_restore on a damaged file) ends the copy with a broken pipe, which is fine:
        // its exit code says what happened.
        let feed = async move {
            if let Some(path) = stdin {
                if let Ok(mut f) = tokio::fs::File::open(&path).await {
                    let _ = tokio::io::copy(&mut f, &mut input).await;
                }
                let _ = input.shutdown().await;
            }
            std::future::pending::<()>().await
        };
        let mut lines = Vec::new();
        let mut kept = Vec::new();
        let mut write_error = None;
        let pump = async {
            while let Some(chunk) = output.next().await {
                let Ok(chunk) = chunk else { break };
                match chunk {
                    bollard::container::LogOutput::StdOut { message } => {
                        if let Err(e) = stdout(&message) {
                            write_error = Some(e);
                            break;
                        }
                    }
                    bollard::container::LogOutput::StdErr { message } => {
                        lines.extend_from_slice(&message);
                        while let Some(end) = lines.iter().position(|&b| b == b'\n') {
                            let rest = lines.split_off(end + 1);
                            let line = String::from_utf8_lossy(&lines[..end]).into_owned();
                            lines = rest;
                            stderr(&line);
                            keep_tail(&mut kept, line);
                        }
                    }
                    _ => {}
                }
            }
            if !lines.is_empty() {
                let line = String::from_utf8_lossy(&lines).into_owned();
                stderr(&line);
                keep_tail(&mut kept, line);
            }
        };
        tokio::select! {
            _ = pump => {}
            _ = feed => {}
            _ = cancel.cancelled() => return Err(TaskError::Interrupted),
        }
        if let Some(e) = write_error {
            return Err(TaskError::Failed(format!("cannot write the backup: {e}")));
        }
        let mut wait = d.wait_container(id, None::<WaitContainerOptions>);
        let code = match wait.next().await {
            Some(Ok(r)) => r.status_code,
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => code,
            Some(Err(e)) => return Err(classify(e, "wait for container")),
            None => {
                return Err(TaskError::Failed(
                    "the engine ended the wait without an exit code".into(),
                ))
            }
        };
        Ok(Ended { code, stderr: kept })
    }
}

fn keep_tail(kept: &mut Vec<String>, line: String) {
    if !line.starts_with("lifeos-") {
        kept.push(line);
        if kept.len() > 20 {
            kept.remove(0);
        }
    }
}
