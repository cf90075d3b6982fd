//! `push`: an image task's image in a registry, under the user's tags and a key tag
//! (`key-<image key prefix>`) by which any machine finds the image for a key.
//!
//! Proof of a result: the registry has the key tag with the recorded digest, and every user
//! tag with the same digest. A user tag that is missing is added by pushing it again: the
//! engine finds every layer already there and only puts the manifest (no layer upload).
//!
//! The record is never trusted alone: a registry is shared (CI moves `latest`, someone
//! deletes a tag), so a no-op costs one manifest `HEAD` per tag, all at once. On an htpasswd
//! registry each is a bcrypt check on the registry's side, the floor of the no-op
//! (benches/README.md, vs-docker-push); asking for fewer tags would make "cached" a guess.

use std::collections::BTreeMap;

use bollard::query_parameters::{RemoveImageOptionsBuilder, TagImageOptionsBuilder};
use lifeos_engine::{
    ExecCx, Executed, Key, KeyCx, LogSink, Probe, ProbeCx, Stream, Task, TaskError, TaskInputs,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::access::Access;
use super::credentials::Found;
use super::remote;
use crate::docker::{classify, Docker};

/// Hex digits of the image key in the key tag: 64 bits, unique among one repository's tags.
pub const KEY_TAG_HEX: usize = 16;

/// The fields users write (the push's key covers all of them, the image task's key through
/// the dependency).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PushSpec {
    /// The image task whose image is pushed.
    pub image: String,
    pub repository: String,
    pub tags: Vec<String>,
}

/// What the registry holds for a push: tag → digest (None: no such tag).
type Remote = BTreeMap<String, Option<String>>;

pub struct PushTask {
    pub spec: PushSpec,
    docker: Docker,
    access: Access,
    /// The probe's look at the registry, for `execute`: (key tag, what it found).
    looked: std::sync::Mutex<Option<(String, Remote)>>,
}

/// `key-` and the first [`KEY_TAG_HEX`] hex digits of `key`.
pub fn key_tag(key: &str) -> String {
    format!("key-{}", &key[..KEY_TAG_HEX.min(key.len())])
}

impl PushTask {
    pub fn new(spec: PushSpec, docker: Docker) -> Self {
        Self {
            access: Access::new(&spec.repository),
            spec,
            docker,
            looked: Default::default(),
        }
    }

    /// Read credential variables (`LIFEOS_REGISTRY_*`, `DOCKER_CONFIG`, `HOME`, `PATH`)
    /// from `vars` rather than the process environment.
    pub fn with_vars(
        mut self,
        vars: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.access.set_vars(vars);
        self
    }

    /// The local image (ID, key tag): the key tag names the image task's key (its
    /// `lifeos.key` label), else this push's own key.
    async fn local(&self, source: &str, own_key: &Key) -> Result<(String, String), TaskError> {
        let facts = self.docker.image(source).await?.ok_or_else(|| {
            TaskError::Failed(format!(
                "image {source} (of task `{}`) is not in the engine: run the image task again",
                self.spec.image
            ))
        })?;
        let key = facts.key.unwrap_or_else(|| own_key.to_hex());
        Ok((facts.id, key_tag(&key)))
    }

    /// The key tag and the user tags, once each, key tag first.
    fn all_tags(&self, key_tag: &str) -> Vec<String> {
        let mut tags = vec![key_tag.to_string()];
        for t in &self.spec.tags {
            if !tags.contains(t) {
                tags.push(t.clone());
            }
        }
        tags
    }

    /// Ask the registry for every tag at once (each call retried while the registry is down).
    async fn look(
        &self,
        tags: &[String],
        found: &Found,
        log: Option<&LogSink>,
        cancel: &CancellationToken,
    ) -> Result<Remote, TaskError> {
        let client = super::client::shared();
        let creds = found.credentials.as_ref();
        let repo = &self.spec.repository;
        let asks = tags.iter().map(|t| async move {
            let what = format!("look up {repo}:{t}");
            remote::retried(&what, log, cancel, || {
                client.manifest_digest(repo, t, creds)
            })
            .await
        });
        let answers = futures_util::future::join_all(asks).await;
        let mut remote = Remote::new();
        for (t, a) in tags.iter().zip(answers) {
            remote.insert(t.clone(), a.map_err(|e| self.access.error(e, found))?);
        }
        Ok(remote)
    }

    /// Is the push for this key done? `source` is the image task's image (ID or tag),
    /// `recorded` the digest this key's record names.
    pub async fn probe_source(
        &self,
        source: &str,
        own_key: &Key,
        recorded: Option<&str>,
    ) -> Result<Probe, TaskError> {
        let (_, key_tag) = self.local(source, own_key).await?;
        let found = self.access.found().await?;
        let tags = self.all_tags(&key_tag);
        let remote = self
            .look(&tags, found, None, &CancellationToken::new())
            .await?;
        *self.looked.lock().unwrap() = Some((key_tag.clone(), remote.clone()));
        let repo = &self.spec.repository;
        let Some(Some(digest)) = remote.get(&key_tag) else {
            return Ok(Probe::Missing(format!(
                "{repo}:{key_tag} not in the registry"
            )));
        };
        if recorded.is_some_and(|r| r != digest) {
            return Ok(Probe::Missing(format!(
                "{repo}:{key_tag} has another digest than the record"
            )));
        }
        let missing: Vec<&str> = self
            .spec
            .tags
            .iter()
            .filter(|t| remote.get(*t).and_then(|d| d.as_deref()) != Some(digest))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            return Ok(Probe::Missing(format!(
                "tag {} not in {repo} with {} (added without a layer upload)",
                missing.join(", "),
                short(digest)
            )));
        }
        let location = format!("{repo}@{}", short(digest));
        if recorded == Some(digest.as_str()) {
            Ok(Probe::Fresh(location))
        } else {
            Ok(Probe::FreshAt {
                location,
                data: self.result_data(digest, &key_tag),
            })
        }
    }

    fn result_data(&self, digest: &str, key_tag: &str) -> serde_json::Value {
        json!({
            "digest": digest,
            "reference": format!("{}@{digest}", self.spec.repository),
            "repository": self.spec.repository,
            "tags": self.spec.tags,
            "key_tag": key_tag,
        })
    }

    /// Push the key tag (the layer upload, when the registry lacks it), then every user tag
    /// the registry lacks (a manifest put each). Nothing is recorded unless all succeed.
    pub async fn push_source(
        &self,
        source: &str,
        own_key: &Key,
        log: &LogSink,
        cancel: &CancellationToken,
    ) -> Result<serde_json::Value, TaskError> {
        let (id, key_tag) = self.local(source, own_key).await?;
        let found = self.access.found().await?;
        let tags = self.all_tags(&key_tag);
        let looked = self
            .looked
            .lock()
            .unwrap()
            .take()
            .filter(|(k, _)| *k == key_tag);
        let remote = match looked {
            Some((_, r)) => r,
            None => self.look(&tags, found, Some(log), cancel).await?,
        };
        let d = self.docker.get().await?;
        let creds = self.access.engine_creds(found);
        let repo = &self.spec.repository;
        let mut digest = remote.get(&key_tag).cloned().flatten();
        for tag in &tags {
            let is_key = *tag == key_tag;
            if !is_key && digest.is_some() && remote.get(tag).cloned().flatten() == digest {
                continue;
            }
            if is_key && digest.is_some() {
                continue;
            }
            d.tag_image(
                &id,
                Some(
                    TagImageOptionsBuilder::default()
                        .repo(repo)
                        .tag(tag)
                        .build(),
                ),
            )
            .await
            .map_err(|e| classify(e, &format!("tag {repo}:{tag}")))?;
            let what = format!("push {repo}:{tag}");
            let pushed = remote::retried(&what, Some(log), cancel, || {
                remote::push(&d, repo, tag, creds.as_ref(), log, cancel)
            })
            .await
            .map_err(|e| self.access.error(e, found))?;
            if is_key {
                // The key tag is the registry's; locally it would only pile up.
                let _ = d
                    .remove_image(
                        &format!("{repo}:{tag}"),
                        Some(RemoveImageOptionsBuilder::default().noprune(true).build()),
                        None,
                    )
                    .await;
            }
            let how = if pushed.uploaded == 0 {
                format!("no layer upload ({} layers already there)", pushed.existed)
            } else {
                format!(
                    "{} layers uploaded ({:.1} MB), {} already there",
                    pushed.uploaded,
                    pushed.bytes as f64 / 1e6,
                    pushed.existed
                )
            };
            log.line(
                Stream::Stdout,
                &format!("pushed {repo}:{tag} {}: {how}", short(&pushed.digest)),
            );
            match &digest {
                Some(d) if *d != pushed.digest => {
                    return Err(TaskError::Failed(format!(
                        "{repo}:{tag} was pushed as {} but {repo}:{key_tag} is {}: the engine made another manifest for the same image",
                        pushed.digest, d
                    )))
                }
                Some(_) => {}
                None => digest = Some(pushed.digest),
            }
        }
        let digest = digest.expect("the key tag was pushed or found");
        Ok(self.result_data(&digest, &key_tag))
    }
}

fn short(digest: &str) -> String {
    let hex = digest.trim_start_matches("sha256:");
    format!("sha256:{}", &hex[..12.min(hex.len())])
}

#[async_trait::async_trait]
impl Task for PushTask {
    fn kind(&self) -> &'static str {
        "push"
    }

    /// The tags are left out: a new tag is a manifest put under the same key, not a new push.
    fn config(&self) -> serde_json::Value {
        json!({ "image": self.spec.image, "repository": self.spec.repository })
    }

    fn describe(&self) -> String {
        format!("push {}:{}", self.spec.repository, self.spec.tags.join(","))
    }

    async fn inputs(&self, _cx: &KeyCx) -> Result<TaskInputs, TaskError> {
        Ok(TaskInputs::default())
    }

    async fn probe(&self, cx: &ProbeCx<'_>) -> Result<Probe, TaskError> {
        let Ok(source) = self.source(cx.deps) else {
            // `plan` of a graph whose image task will run: nothing to look up yet.
            return Ok(Probe::Missing(format!(
                "image task `{}` has no image yet",
                self.spec.image
            )));
        };
        let recorded = cx
            .record
            .and_then(|r| r.data.get("digest"))
            .and_then(|d| d.as_str());
        self.probe_source(&source, &cx.key, recorded).await
    }

    async fn execute(&self, cx: &ExecCx<'_>) -> Result<Executed, TaskError> {
        let source = self.source(cx.deps)?;
        let data = self
            .push_source(&source, &cx.key, &cx.log, &cx.cancel)
            .await?;
        Ok(Executed {
            outputs: vec![],
            data,
        })
    }

    fn delivered(&self, r: &serde_json::Map<String, serde_json::Value>) -> Option<String> {
        let reference = r.get("reference")?.as_str()?;
        Some(format!("{reference} ({})", self.spec.tags.join(", ")))
    }

    fn result(&self, data: &serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        let mut m = serde_json::Map::new();
        for f in ["digest", "reference", "repository"] {
            if let Some(v) = data.get(f) {
                m.insert(f.into(), v.clone());
            }
        }
        m
    }
}

impl PushTask {
    /// The image task's image ID, from its result in this run.
    fn source(&self, deps: &lifeos_engine::Deps) -> Result<String, TaskError> {
        deps.typed::<crate::image::ImageResult>(&self.spec.image)
            .map(|r| r.id)
            .filter(|id| !id.is_empty())
            .ok_or_else(|| {
                TaskError::Failed(format!(
                    "image task `{}` left no image ID for this push",
                    self.spec.image
                ))
            })
    }
}
