//! The `deploy`, `canary` and `promote` nodes on Cloud Run. Their proof in the world is
//! `gcloud run services describe`: a deploy is fresh while the service's latest ready
//! revision carries this key's label and image and is routed as this deploy routes it; a
//! canary while its tag holds its share (or it was promoted since); a promote while the
//! revision takes all the traffic.

use async_trait::async_trait;
use lifeos_engine::{
    Deps, ExecCx, Executed, KeyCx, LogSink, Probe, ProbeCx, Stream, Task, TaskError, TaskInputs,
};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::config::{CloudImage, CloudRunBody};
use super::gcloud::{is_not_found, Gcloud};
use super::model::ServiceView;
use super::{history, key_label};
use crate::services::Services;

/// The gcloud of a task.
pub(super) fn gcloud(b: &CloudRunBody) -> Gcloud {
    let (program, source) = b.program();
    Gcloud::new(program, source, vec![])
}

/// `services describe`; `None` when the service does not exist yet. A read: its stderr
/// (gcloud's "Cannot find service" before a first deploy) stays out of the log.
pub(super) async fn describe(
    g: &Gcloud,
    b: &CloudRunBody,
    _log: Option<&LogSink>,
    cancel: Option<&CancellationToken>,
) -> Result<Option<ServiceView>, TaskError> {
    let mut args: Vec<String> = ["run", "services", "describe", &b.service]
        .map(String::from)
        .to_vec();
    args.extend(b.scope());
    match g.json(&args, None, cancel).await {
        Ok(v) => ServiceView::parse(&v).map(Some).map_err(TaskError::Failed),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// `services update-traffic SERVICE ARGS...`, then the service as it is now.
pub(super) async fn update_traffic(
    g: &Gcloud,
    b: &CloudRunBody,
    change: &[String],
    log: Option<&LogSink>,
    cancel: Option<&CancellationToken>,
) -> Result<ServiceView, TaskError> {
    let mut args: Vec<String> = ["run", "services", "update-traffic", &b.service]
        .map(String::from)
        .to_vec();
    args.extend(change.iter().cloned());
    args.extend(b.scope());
    if let Some(l) = log {
        l.progress(&format!(
            "gcloud run services update-traffic {} {}",
            b.service,
            change.join(" ")
        ));
    }
    g.json(&args, log, cancel).await?;
    describe(g, b, log, cancel).await?.ok_or_else(|| {
        TaskError::Failed(format!("service {} vanished during the change", b.service))
    })
}

/// The image by digest: a push task's `reference`, or the configured one. `None` while the
/// push has not run (plan).
fn image_of(b: &CloudRunBody, deps: &Deps) -> Option<String> {
    match &b.image {
        CloudImage::Reference(r) => Some(r.clone()),
        CloudImage::Push(t) => deps.field(t, "reference").ok(),
    }
}

/// `${tasks.DEPLOY.revision}`, or `None` while the deploy has not run (plan).
fn revision_of(deps: &Deps, deploy: &str) -> Option<String> {
    deps.field(deploy, "revision").ok()
}

fn where_(b: &CloudRunBody) -> String {
    format!(
        "service {} (project {}, region {})",
        b.service, b.project, b.region
    )
}

/// The URL a check of `rev` probes: its tag's, or the service's when it serves alone.
fn url_of(s: &ServiceView, b: &CloudRunBody, rev: &str) -> String {
    match s.tagged(&b.tag) {
        Some(t) if t.revision == rev && !s.serves_all(rev) => {
            t.url.clone().unwrap_or_else(|| s.url.clone())
        }
        _ => s.url.clone(),
    }
}

fn result(b: &CloudRunBody, s: &ServiceView, rev: &str, image: &str) -> Value {
    json!({
        "revision": rev,
        "url": url_of(s, b, rev),
        "service": b.service,
        "env": b.env,
        "image": image,
        "project": b.project,
        "region": b.region,
    })
}

pub struct CloudRunDeploy {
    pub body: CloudRunBody,
    pub services: Services,
}

impl CloudRunDeploy {
    /// Is `rev` routed as this deploy routes a new revision: all the traffic, or (traffic
    /// < 100) the tagged canary at any share, which `canary` and `check` then own.
    fn routed(&self, s: &ServiceView, rev: &str) -> bool {
        let b = &self.body;
        s.serves_all(rev)
            || (b.traffic < 100 && s.tagged(&b.tag).is_some_and(|t| t.revision == rev))
    }
}

#[async_trait]
impl Task for CloudRunDeploy {
    fn kind(&self) -> &'static str {
        "deploy"
    }

    fn config(&self) -> Value {
        let mut v = serde_json::to_value(&self.body).expect("body serializes");
        if let Some(m) = v.as_object_mut() {
            // Where gcloud lives and the task's name do not change what Cloud Run runs.
            for k in ["task", "gcloud", "secret_names"] {
                m.remove(k);
            }
            m.insert("platform".into(), json!("cloudrun"));
        }
        v
    }

    fn delivered(&self, r: &serde_json::Map<String, serde_json::Value>) -> Option<String> {
        crate::deploy::delivered::deploy(r)
    }

    fn describe(&self) -> String {
        let b = &self.body;
        let split = if b.traffic < 100 {
            format!(" --no-traffic --tag {}", b.tag)
        } else {
            String::new()
        };
        let after = match b.traffic {
            100 => String::new(),
            0 => " (a first deploy takes all traffic)".into(),
            n => format!(
                "; update-traffic --to-tags {}={n} (a first deploy takes all traffic)",
                b.tag
            ),
        };
        format!(
            "gcloud run deploy {} --image {}{split} --region {} --project {}{after}",
            b.service,
            b.image_text(),
            b.region,
            b.project
        )
    }

    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }

    async fn inputs(&self, _cx: &KeyCx) -> Result<TaskInputs, TaskError> {
        Ok(TaskInputs::default())
    }

    async fn probe(&self, cx: &ProbeCx<'_>) -> Result<Probe, TaskError> {
        let b = &self.body;
        let Some(image) = image_of(b, cx.deps) else {
            return Ok(Probe::Missing("the image is pushed first".into()));
        };
        let g = gcloud(b);
        let Some(s) = describe(&g, b, None, None).await? else {
            return Ok(Probe::Missing(format!("{} does not exist yet", where_(b))));
        };
        let key = key_label(&cx.key);
        let Some(rev) = s.made_by(&key, &image) else {
            return Ok(Probe::Missing(format!(
                "{} runs another image or config (latest ready {}; traffic {})",
                b.service,
                s.latest_ready.as_deref().unwrap_or("none"),
                s.describe()
            )));
        };
        if !self.routed(&s, rev) {
            return Ok(Probe::Missing(format!(
                "{rev} is not routed as this deploy routes it ({})",
                s.describe()
            )));
        }
        Ok(Probe::FreshAt {
            location: format!("Cloud Run {rev}, traffic {}", s.describe()),
            data: result(b, &s, rev, &image),
        })
    }

    async fn execute(&self, cx: &ExecCx<'_>) -> Result<Executed, TaskError> {
        let b = &self.body;
        let image = image_of(b, cx.deps).ok_or_else(|| {
            TaskError::Failed(format!("the push task of `{}` left no reference", b.task))
        })?;
        let g = gcloud(b);
        let (log, cancel) = (Some(&cx.log), Some(&cx.cancel));
        let before = describe(&g, b, log, cancel).await?;
        let exists = before.is_some();
        let key = key_label(&cx.key);
        // The revision this key made may still be there (traffic moved away since): route it
        // again rather than deploy a copy.
        let kept = before
            .as_ref()
            .and_then(|s| s.made_by(&key, &image))
            .map(str::to_string);
        let (mut s, rev) = match (kept, before) {
            (Some(rev), Some(s)) => {
                cx.log.line(
                    Stream::Stdout,
                    &format!("{}: {rev} already runs this image and config", b.service),
                );
                (s, rev)
            }
            _ => {
                let args = b.deploy_args(&image, &key, &cx.env, exists);
                cx.log.progress(&format!("gcloud run deploy {}", b.service));
                let v = g.json(&args, log, cancel).await?;
                let s = ServiceView::parse(&v).map_err(TaskError::Failed)?;
                let rev = s.latest_ready.clone().unwrap_or_default();
                if s.latest_created.as_deref() != Some(rev.as_str()) {
                    return Err(TaskError::Failed(format!(
                        "revision {} of {} is not ready; traffic stays as it was ({})",
                        s.latest_created.as_deref().unwrap_or("?"),
                        b.service,
                        s.describe()
                    )));
                }
                (s, rev)
            }
        };
        let dir = self.services.cache_dir();
        if !exists || b.traffic >= 100 {
            if !s.serves_all(&rev) {
                // Traffic pinned by an earlier --no-traffic does not follow new revisions.
                let change = if s.latest_ready.as_deref() == Some(rev.as_str()) {
                    vec!["--to-latest".to_string()]
                } else {
                    vec!["--to-revisions".to_string(), format!("{rev}=100")]
                };
                s = update_traffic(&g, b, &change, log, cancel).await?;
            }
            if let Err(e) = history::record(dir.as_deref(), b, &rev) {
                cx.log
                    .line(Stream::Stderr, &format!("lifeos: history not kept: {e}"));
            }
        } else if !s.serves_all(&rev) {
            if s.tagged(&b.tag).map(|t| t.revision.as_str()) != Some(rev.as_str()) {
                let change = vec!["--update-tags".to_string(), format!("{}={rev}", b.tag)];
                s = update_traffic(&g, b, &change, log, cancel).await?;
            }
            if b.traffic > 0 && s.percent(&rev) != b.traffic {
                let change = vec!["--to-tags".to_string(), format!("{}={}", b.tag, b.traffic)];
                s = update_traffic(&g, b, &change, log, cancel).await?;
            }
        }
        cx.log.line(
            Stream::Stdout,
            &format!("{}: {rev} ready; traffic {}", b.service, s.describe()),
        );
        Ok(Executed {
            data: result(b, &s, &rev, &image),
            ..Default::default()
        })
    }
}

/// `canary` on Cloud Run: `update-traffic --to-tags TAG=N`.
pub struct CloudRunCanary {
    pub deploy: String,
    pub percent: u8,
    pub body: CloudRunBody,
}

impl CloudRunCanary {
    fn data(&self, s: &ServiceView, rev: &str) -> Value {
        json!({
            "revision": rev, "percent": self.percent, "url": url_of(s, &self.body, rev),
            "service": self.body.service, "env": self.body.env,
        })
    }
}

#[async_trait]
impl Task for CloudRunCanary {
    fn kind(&self) -> &'static str {
        "canary"
    }

    fn config(&self) -> Value {
        json!({ "percent": self.percent, "platform": "cloudrun", "tag": self.body.tag })
    }

    fn delivered(&self, r: &serde_json::Map<String, serde_json::Value>) -> Option<String> {
        crate::deploy::delivered::canary(r)
    }

    fn describe(&self) -> String {
        format!(
            "gcloud run services update-traffic {} --to-tags {}={}",
            self.body.service, self.body.tag, self.percent
        )
    }

    async fn inputs(&self, _cx: &KeyCx) -> Result<TaskInputs, TaskError> {
        Ok(TaskInputs::default())
    }

    async fn probe(&self, cx: &ProbeCx<'_>) -> Result<Probe, TaskError> {
        let b = &self.body;
        let Some(rev) = revision_of(cx.deps, &self.deploy) else {
            return Ok(Probe::Missing(format!("{} deploys first", self.deploy)));
        };
        let Some(s) = describe(&gcloud(b), b, None, None).await? else {
            return Ok(Probe::Missing(format!("{} does not exist yet", where_(b))));
        };
        let data = self.data(&s, &rev);
        if s.serves_all(&rev) {
            return Ok(Probe::FreshAt {
                location: format!("{rev} serves all traffic"),
                data,
            });
        }
        match s.tagged(&b.tag) {
            Some(t) if t.revision == rev && s.percent(&rev) == self.percent => Ok(Probe::FreshAt {
                location: format!("traffic {}", s.describe()),
                data,
            }),
            _ => Ok(Probe::Missing(format!(
                "{rev} is not the {} at {}% ({})",
                b.tag,
                self.percent,
                s.describe()
            ))),
        }
    }

    async fn execute(&self, cx: &ExecCx<'_>) -> Result<Executed, TaskError> {
        let b = &self.body;
        let rev = revision_of(cx.deps, &self.deploy).ok_or_else(|| {
            TaskError::Failed(format!("deploy task `{}` left no revision", self.deploy))
        })?;
        let g = gcloud(b);
        let (log, cancel) = (Some(&cx.log), Some(&cx.cancel));
        let s = describe(&g, b, log, cancel)
            .await?
            .ok_or_else(|| TaskError::Failed(format!("{} does not exist", where_(b))))?;
        if s.serves_all(&rev) {
            cx.log.line(
                Stream::Stdout,
                &format!(
                    "{}: {rev} already serves all the traffic; no canary",
                    b.service
                ),
            );
            return Ok(Executed {
                data: self.data(&s, &rev),
                ..Default::default()
            });
        }
        if s.tagged(&b.tag).map(|t| t.revision.as_str()) != Some(rev.as_str()) {
            return Err(TaskError::Failed(format!(
                "{rev} of {} is not tagged `{}` ({}); run `{}` (traffic < 100) first",
                b.service,
                b.tag,
                s.describe(),
                self.deploy
            )));
        }
        let change = vec![
            "--to-tags".to_string(),
            format!("{}={}", b.tag, self.percent),
        ];
        let s = update_traffic(&g, b, &change, log, cancel).await?;
        cx.log.line(
            Stream::Stdout,
            &format!("{}: traffic {}", b.service, s.describe()),
        );
        Ok(Executed {
            data: self.data(&s, &rev),
            ..Default::default()
        })
    }
}

/// `promote` on Cloud Run: `update-traffic --to-latest` (or `--to-revisions REV=100` when
/// a newer revision exists).
pub struct CloudRunPromote {
    pub deploy: String,
    pub body: CloudRunBody,
    pub services: Services,
}

#[async_trait]
impl Task for CloudRunPromote {
    fn kind(&self) -> &'static str {
        "promote"
    }

    fn config(&self) -> Value {
        json!({ "platform": "cloudrun" })
    }

    fn delivered(&self, r: &serde_json::Map<String, serde_json::Value>) -> Option<String> {
        crate::deploy::delivered::promote(r)
    }

    fn describe(&self) -> String {
        format!(
            "gcloud run services update-traffic {} --to-latest",
            self.body.service
        )
    }

    async fn inputs(&self, _cx: &KeyCx) -> Result<TaskInputs, TaskError> {
        Ok(TaskInputs::default())
    }

    async fn probe(&self, cx: &ProbeCx<'_>) -> Result<Probe, TaskError> {
        let b = &self.body;
        let Some(rev) = revision_of(cx.deps, &self.deploy) else {
            return Ok(Probe::Missing(format!("{} deploys first", self.deploy)));
        };
        let Some(s) = describe(&gcloud(b), b, None, None).await? else {
            return Ok(Probe::Missing(format!("{} does not exist yet", where_(b))));
        };
        if s.serves_all(&rev) {
            Ok(Probe::Fresh(format!("traffic {}", s.describe())))
        } else {
            Ok(Probe::Missing(format!(
                "{rev} is not promoted ({})",
                s.describe()
            )))
        }
    }

    async fn execute(&self, cx: &ExecCx<'_>) -> Result<Executed, TaskError> {
        let b = &self.body;
        let rev = revision_of(cx.deps, &self.deploy).ok_or_else(|| {
            TaskError::Failed(format!("deploy task `{}` left no revision", self.deploy))
        })?;
        let g = gcloud(b);
        let (log, cancel) = (Some(&cx.log), Some(&cx.cancel));
        let mut s = describe(&g, b, log, cancel)
            .await?
            .ok_or_else(|| TaskError::Failed(format!("{} does not exist", where_(b))))?;
        let before: Vec<String> = s.split().into_keys().filter(|r| r != &rev).collect();
        if !s.serves_all(&rev) {
            let change = if s.latest_ready.as_deref() == Some(rev.as_str()) {
                vec!["--to-latest".to_string()]
            } else {
                vec!["--to-revisions".to_string(), format!("{rev}=100")]
            };
            s = update_traffic(&g, b, &change, log, cancel).await?;
        }
        if let Err(e) = history::record(self.services.cache_dir().as_deref(), b, &rev) {
            cx.log
                .line(Stream::Stderr, &format!("lifeos: history not kept: {e}"));
        }
        cx.log.line(
            Stream::Stdout,
            &format!("{}: traffic {}", b.service, s.describe()),
        );
        Ok(Executed {
            data: json!({
                "revision": rev, "service": b.service, "env": b.env, "previous": before.first(),
            }),
            ..Default::default()
        })
    }
}
