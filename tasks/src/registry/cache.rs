//! The registry as a shared image cache (`[cache] images = "REPO"`, or an image's own
//! `registry_cache`): an image task whose image is missing locally asks
//! `REPO:key-<key prefix>` (what a build or a push of the same key left) and pulls it instead
//! of building; with `[cache] images` a build is pushed there under that tag. The pulled image carries the `lifeos.key` label it was
//! built with, which is checked: a key-prefix collision is a build, never a wrong image.

use std::collections::BTreeMap;
use std::time::Duration;

use bollard::query_parameters::{CreateImageOptionsBuilder, TagImageOptionsBuilder};
use futures_util::StreamExt;
use lifeos_engine::{LogSink, Stream, TaskError};
use tokio_util::sync::CancellationToken;

use super::access::Access;
use super::push::key_tag;
use super::remote::{self, RemoteError};
use crate::docker::{classify, Docker};
use crate::image::KEY_LABEL;

pub struct ImageCache {
    access: Access,
}

impl ImageCache {
    pub fn new(repository: &str) -> Self {
        Self {
            access: Access::new(repository),
        }
    }

    pub fn with_vars(
        mut self,
        vars: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.access.set_vars(vars);
        self
    }

    pub fn repository(&self) -> &str {
        &self.access.repository
    }

    /// Pull the image of `key` (hex) when the registry has it: its ID and the reference it
    /// was pulled as (tag it, then untag that), or `None` (not there, or another key's).
    pub async fn fetch(
        &self,
        docker: &Docker,
        key: &str,
        log: &LogSink,
        cancel: &CancellationToken,
    ) -> Result<Option<(String, String)>, TaskError> {
        let found = self.access.found().await?;
        let creds = self.access.engine_creds(found);
        let d = docker.get().await?;
        let repo = self.repository();
        let tag = key_tag(key);
        let reference = format!("{repo}:{tag}");
        let client = super::client::shared();
        let digest = remote::retried(&format!("look up {reference}"), Some(log), cancel, || {
            client.manifest_digest(repo, &tag, found.credentials.as_ref())
        })
        .await
        .map_err(|e| self.access.error(e, found))?;
        if digest.is_none() {
            log.line(
                Stream::Stdout,
                &format!("not in {repo} (no {tag}): building"),
            );
            return Ok(None);
        }
        remote::retried(&format!("pull {reference}"), Some(log), cancel, || {
            pull(&d, repo, &tag, creds.as_ref(), log, cancel)
        })
        .await
        .map_err(|e| self.access.error(e, found))?;
        docker.forget(&reference, "");
        let facts = docker.image(&reference).await?.ok_or_else(|| {
            TaskError::Failed(format!(
                "{reference} was pulled but the engine does not have it"
            ))
        })?;
        if facts.key.as_deref() != Some(key) {
            log.line(
                Stream::Stdout,
                &format!("{reference} is another key's image (label {KEY_LABEL}): building"),
            );
            untag(&d, &reference).await;
            return Ok(None);
        }
        log.line(Stream::Stdout, &format!("pulled from {repo} ({tag})"));
        Ok(Some((facts.id, reference)))
    }
}

impl ImageCache {
    /// Push image `id`, built for `key` (hex), under its key tag, so that any machine that
    /// needs the same key pulls it instead of building. Only the layers the registry lacks
    /// are uploaded; the key tag is not left behind locally.
    pub async fn store(
        &self,
        docker: &Docker,
        id: &str,
        key: &str,
        log: &LogSink,
        cancel: &CancellationToken,
    ) -> Result<(), TaskError> {
        let found = self.access.found().await?;
        let creds = self.access.engine_creds(found);
        let d = docker.get().await?;
        let repo = self.repository();
        let tag = key_tag(key);
        let reference = format!("{repo}:{tag}");
        d.tag_image(
            id,
            Some(
                TagImageOptionsBuilder::default()
                    .repo(repo)
                    .tag(&tag)
                    .build(),
            ),
        )
        .await
        .map_err(|e| classify(e, &format!("tag {reference}")))?;
        let pushed = remote::retried(&format!("push {reference}"), Some(log), cancel, || {
            remote::push(&d, repo, &tag, creds.as_ref(), log, cancel)
        })
        .await;
        untag(&d, &reference).await;
        docker.forget(&reference, id);
        let pushed = pushed.map_err(|e| self.access.error(e, found))?;
        log.line(
            Stream::Stdout,
            &format!(
                "stored in {repo} as {tag}: {} layers uploaded, {} already there",
                pushed.uploaded, pushed.existed
            ),
        );
        Ok(())
    }
}

/// Remove a tag only (the image stays under its other tags).
pub async fn untag(d: &bollard::Docker, reference: &str) {
    let _ = d
        .remove_image(
            reference,
            Some(
                bollard::query_parameters::RemoveImageOptionsBuilder::default()
                    .noprune(true)
                    .build(),
            ),
            None,
        )
        .await;
}

/// `docker pull repo:tag` through the engine, with byte progress per layer.
async fn pull(
    d: &bollard::Docker,
    repo: &str,
    tag: &str,
    creds: Option<&bollard::auth::DockerCredentials>,
    log: &LogSink,
    cancel: &CancellationToken,
) -> Result<(), RemoteError> {
    let what = format!("pull {repo}:{tag}");
    let mut stream = d.create_image(
        Some(
            CreateImageOptionsBuilder::default()
                .from_image(repo)
                .tag(tag)
                .build(),
        ),
        None,
        creds.cloned(),
    );
    let mut layers: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    let mut last = std::time::Instant::now();
    loop {
        let item = tokio::select! {
            _ = cancel.cancelled() => return Err(RemoteError::Other(TaskError::Interrupted)),
            item = stream.next() => item,
        };
        let Some(item) = item else { break };
        let info = item.map_err(|e| remote::sort_error(e, &what))?;
        if let Some(err) = info.error_detail.and_then(|e| e.message) {
            return Err(remote::sort_message(err, &what));
        }
        if info.status.as_deref() == Some("Downloading") {
            if let (Some(id), Some(p)) = (info.id, info.progress_detail) {
                if let (Some(cur), Some(total)) = (p.current, p.total) {
                    let new_layer = layers.insert(id, (cur.min(total), total)).is_none();
                    if new_layer || last.elapsed() >= Duration::from_millis(100) {
                        last = std::time::Instant::now();
                        let done: i64 = layers.values().map(|v| v.0).sum();
                        let total: i64 = layers.values().map(|v| v.1).sum();
                        let each: Vec<String> = layers
                            .iter()
                            .map(|(id, (c, t))| {
                                format!(
                                    "{}: {:.1}/{:.1} MB",
                                    &id[..12.min(id.len())],
                                    *c as f64 / 1e6,
                                    *t as f64 / 1e6
                                )
                            })
                            .collect();
                        log.progress(&format!(
                            "pulling :{tag} {:.1} / {:.1} MB ({})",
                            done as f64 / 1e6,
                            total as f64 / 1e6,
                            each.join(", ")
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}
