//! The `deploy`, `canary` and `promote` nodes. Their proof in the world is the router's
//! recorded state: a deploy is fresh while its revision (found by its key label) runs and
//! gets traffic as stable or canary; a canary while its share is as set (or it was
//! promoted since); a promote while its revision is the only one routed.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use async_trait::async_trait;
use lifeos_engine::{ExecCx, Executed, KeyCx, Probe, ProbeCx, Task, TaskError, TaskInputs};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::revision::{self, NewRevision};
use super::router::Router;
use super::state::{ServiceState, State};
use super::{revision_name, ENV_LABEL, MIGRATION_LABEL, REVISION_LABEL, ROLE_LABEL, SERVICE_LABEL};
use crate::container::{ops, ImageRef, KEY_LABEL, PROJECT_LABEL, TASK_LABEL};
use crate::docker::Docker;
use crate::image::ImageResult;

/// Router changes of this process, one at a time (deploys of two services in one run share
/// the state file).
pub(super) static ROUTER_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How long old workers may finish requests to a revision that just lost its traffic.
pub(super) const GRACE: Duration = Duration::from_millis(1000);

/// The label with the readiness path, for `rollback` (which has no config to read it from).
pub const READY_LABEL: &str = "lifeos.ready";

/// A `deploy` task, compiled.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeployBody {
    pub router: Router,
    /// `None`: the router image is a reference (in `router.image`); else that image task.
    pub router_task: Option<String>,
    pub task: String,
    pub service: String,
    pub image: ImageRef,
    pub cmd: Option<Vec<String>>,
    pub port: u16,
    pub publish: String,
    pub ready: String,
    pub ready_timeout_ms: u64,
    pub traffic: u8,
    pub keep: u32,
    /// One-shot container tasks among the deps: the revision is deployed after them.
    pub migrations: Vec<String>,
    pub labels: BTreeMap<String, String>,
}

/// What a deploy's dependants get (`${tasks.deploy-api.revision}`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeployResult {
    pub revision: u32,
    pub container: String,
    pub service: String,
    pub env: String,
}

impl DeployBody {
    /// The router with its image as this run has it (an image task's ID).
    pub fn router(&self, deps: &lifeos_engine::Deps) -> Result<Router, TaskError> {
        let mut r = self.router.clone();
        if let Some(t) = &self.router_task {
            // Canary, promote and check do not depend on the router's image task: they
            // keep the image the deploy recorded (an empty one here).
            r.image = deps
                .typed::<ImageResult>(t)
                .map(|i| i.id)
                .unwrap_or_default();
        }
        Ok(r)
    }

    fn image(&self, deps: &lifeos_engine::Deps) -> Result<String, TaskError> {
        match &self.image {
            ImageRef::Task { task, .. } => deps
                .typed::<ImageResult>(task)
                .map(|i| i.id)
                .ok_or_else(|| TaskError::Failed(format!("image task `{task}` left no image"))),
            ImageRef::External(r) => Ok(r.clone()),
        }
    }

    fn migration_label(&self, deps: &lifeos_engine::Deps) -> String {
        self.migrations
            .iter()
            .filter_map(|m| deps.get(m).map(|r| format!("{m}={}", r.key.to_hex())))
            .collect::<Vec<_>>()
            .join(",")
    }
}

pub struct DeployTask {
    pub body: DeployBody,
    docker: Docker,
}

impl DeployTask {
    pub fn new(body: DeployBody, docker: Docker) -> Self {
        Self { body, docker }
    }
}

/// What the key covers: not the task's name nor the router's labels.
#[derive(Serialize)]
struct DeployKey<'a> {
    platform: &'static str,
    env: &'a str,
    router_image: &'a str,
    router_http: &'a str,
    service: &'a str,
    image: &'a ImageRef,
    cmd: &'a Option<Vec<String>>,
    port: u16,
    publish: &'a str,
    ready: &'a str,
    traffic: u8,
    keep: u32,
    labels: &'a BTreeMap<String, String>,
}

/// Stop revisions that lost their traffic and remove all but the newest `keep` stopped ones.
pub(super) async fn settle(
    d: &bollard::Docker,
    router: &Router,
    service: &str,
    s: &ServiceState,
    keep: u32,
    changed: bool,
) -> Result<(), TaskError> {
    let revs = revision::list(d, &router.project, &router.env, service).await?;
    let live = [s.stable, s.canary];
    let idle: Vec<_> = revs
        .iter()
        .filter(|r| !live.contains(&Some(r.rev)))
        .collect();
    if changed && idle.iter().any(|r| r.running) {
        tokio::time::sleep(GRACE).await;
    }
    for (i, r) in idle.iter().enumerate() {
        if i < keep as usize {
            if r.running {
                revision::stop(d, &r.id).await;
            }
        } else {
            ops::remove(d, &r.id).await;
        }
    }
    Ok(())
}

/// The (router, state, service state) for a probe, or why the result is missing.
async fn look(
    d: &bollard::Docker,
    router: &Router,
    service: &str,
) -> Result<Result<(State, ServiceState), String>, TaskError> {
    let (state, not_serving) = router.observe(d).await?;
    let Some(s) = state.services.get(service).cloned() else {
        return Ok(Err(format!(
            "service {service} has no deploy in environment {}",
            router.env
        )));
    };
    if let Some(why) = not_serving {
        return Ok(Err(why));
    }
    Ok(Ok((state, s)))
}

#[async_trait]
impl Task for DeployTask {
    fn kind(&self) -> &'static str {
        "deploy"
    }

    fn config(&self) -> serde_json::Value {
        let b = &self.body;
        serde_json::to_value(DeployKey {
            platform: "docker",
            env: &b.router.env,
            router_image: if b.router_task.is_some() {
                ""
            } else {
                &b.router.image
            },
            router_http: &b.router.http,
            service: &b.service,
            image: &b.image,
            cmd: &b.cmd,
            port: b.port,
            publish: &b.publish,
            ready: &b.ready,
            traffic: b.traffic,
            keep: b.keep,
            labels: &b.labels,
        })
        .expect("key serializes")
    }

    fn result(&self, data: &serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        data.as_object().cloned().unwrap_or_default()
    }

    fn delivered(&self, r: &serde_json::Map<String, serde_json::Value>) -> Option<String> {
        super::delivered::deploy(r)
    }

    fn describe(&self) -> String {
        format!(
            "deploy {} to {} on {}",
            self.body.service, self.body.router.env, self.body.publish
        )
    }

    async fn inputs(&self, _cx: &KeyCx) -> Result<TaskInputs, TaskError> {
        let mut inputs = TaskInputs::default();
        let d = self.docker.get().await?;
        if let ImageRef::External(r) = &self.body.image {
            inputs
                .extras
                .insert(format!("image {r}"), ops::image_id(&d, r, None).await?);
        }
        Ok(inputs)
    }

    async fn probe(&self, cx: &ProbeCx<'_>) -> Result<Probe, TaskError> {
        let d = self.docker.get().await?;
        let router = self.body.router(cx.deps)?;
        let (_, s) = match look(&d, &router, &self.body.service).await? {
            Ok(x) => x,
            Err(why) => return Ok(Probe::Missing(why)),
        };
        let key = cx.key.to_hex();
        // The routed revisions first, one inspect each at once: on a no-op one of them is this
        // config's, and listing every revision by label costs the engine far more.
        let routed: Vec<u32> = [s.stable, s.canary].into_iter().flatten().collect();
        let inspects = routed.iter().map(|rev| {
            let name = revision_name(&router.project, &router.env, &self.body.service, *rev);
            let d = &d;
            async move { d.inspect_container(&name, None).await }
        });
        let found = futures_util::future::join_all(inspects).await;
        for (rev, info) in routed.iter().zip(found) {
            let Ok(info) = info else { continue };
            let ours = info
                .config
                .as_ref()
                .and_then(|c| c.labels.as_ref())
                .and_then(|l| l.get(KEY_LABEL))
                == Some(&key);
            let running = info.state.as_ref().and_then(|st| st.running) == Some(true);
            if ours && running {
                return Ok(Probe::Fresh(format!(
                    "r{rev} running, routed: {}",
                    s.describe()
                )));
            }
        }
        // Not routed, or not running: the whole list says which.
        let revs = revision::list(&d, &router.project, &router.env, &self.body.service).await?;
        let Some(r) = revs.iter().find(|r| r.labels.get(KEY_LABEL) == Some(&key)) else {
            return Ok(Probe::Missing("no revision with this config".into()));
        };
        if !r.running {
            return Ok(Probe::Missing(format!("revision r{} is stopped", r.rev)));
        }
        if s.stable != Some(r.rev) && s.canary != Some(r.rev) {
            return Ok(Probe::Missing(format!(
                "revision r{} gets no traffic ({})",
                r.rev,
                s.describe()
            )));
        }
        Ok(Probe::Fresh(format!(
            "r{} running, routed: {}",
            r.rev,
            s.describe()
        )))
    }

    async fn execute(&self, cx: &ExecCx<'_>) -> Result<Executed, TaskError> {
        let b = &self.body;
        let d = self.docker.get().await?;
        let router = b.router(cx.deps)?;
        ops::image_id(&d, &router.image, Some(&cx.log)).await?;
        let image = b.image(cx.deps)?;
        let _lock = ROUTER_LOCK.lock().await;
        let mut state = router.read_state(&d).await?;
        let revs = revision::list(&d, &router.project, &router.env, &b.service).await?;
        let key = cx.key.to_hex();
        let s = state.services.entry(b.service.clone()).or_default();
        s.publish = b.publish.clone();
        s.port = b.port;
        let found = revs.iter().find(|r| r.labels.get(KEY_LABEL) == Some(&key));
        let (rev, id, fresh) = match found {
            Some(r) => {
                if !r.running {
                    cx.log
                        .progress(&format!("starting revision r{} again", r.rev));
                    revision::start(&d, &r.id).await?;
                }
                (r.rev, r.id.clone(), false)
            }
            None => {
                let n = revs.iter().map(|r| r.rev).max().unwrap_or(0).max(s.last) + 1;
                let name = revision_name(&router.project, &router.env, &b.service, n);
                let mut labels: HashMap<String, String> = b.labels.clone().into_iter().collect();
                labels.extend([
                    (PROJECT_LABEL.to_string(), router.project.clone()),
                    (TASK_LABEL.to_string(), b.task.clone()),
                    (ENV_LABEL.to_string(), router.env.clone()),
                    (SERVICE_LABEL.to_string(), b.service.clone()),
                    (REVISION_LABEL.to_string(), n.to_string()),
                    (ROLE_LABEL.to_string(), "revision".to_string()),
                    (KEY_LABEL.to_string(), key.clone()),
                    (MIGRATION_LABEL.to_string(), b.migration_label(cx.deps)),
                    (READY_LABEL.to_string(), b.ready.clone()),
                ]);
                ops::ensure_network(&d, &router_net_spec(&router)).await?;
                cx.log.progress(&format!("starting revision r{n}"));
                let cmd = match &b.cmd {
                    Some(c) => Some(
                        c.iter()
                            .map(|s| cx.deps.expand(s))
                            .collect::<Result<Vec<_>, _>>()
                            .map_err(TaskError::Failed)?,
                    ),
                    None => None,
                };
                let id = revision::create(
                    &d,
                    NewRevision {
                        name,
                        image: &image,
                        cmd,
                        port: b.port,
                        env: &cx.env,
                        labels,
                        project: &router.project,
                    },
                )
                .await?;
                (n, id, true)
            }
        };
        s.last = s.last.max(rev);
        let name = revision_name(&router.project, &router.env, &b.service, rev);
        cx.log
            .progress(&format!("waiting until r{rev} answers {}", b.ready));
        let waited = revision::wait_ready(
            &d,
            &id,
            &name,
            b.port,
            &b.ready,
            Duration::from_millis(b.ready_timeout_ms),
            &cx.log,
            &cx.cancel,
        )
        .await;
        if let Err(e) = waited {
            if fresh {
                ops::remove(&d, &id).await;
            }
            return Err(e);
        }
        let routed = s.stable == Some(rev) || s.canary == Some(rev);
        if !routed {
            if b.traffic >= 100 || s.stable.is_none() {
                s.make_stable(rev);
            } else {
                s.canary = Some(rev);
                s.weight = b.traffic;
            }
        }
        let split = s.describe();
        cx.log.progress(&format!("routing {split}"));
        if let Err(e) = router.apply(&d, &mut state, Some(&cx.log)).await {
            // Nothing half-done: a revision made for a change the router refused goes.
            if fresh {
                ops::remove(&d, &id).await;
            }
            return Err(e);
        }
        cx.log.line(
            lifeos_engine::Stream::Stdout,
            &format!("{}: r{rev} ready; traffic {split}", b.service),
        );
        let s = state.services[&b.service].clone();
        settle(&d, &router, &b.service, &s, b.keep, !routed).await?;
        Ok(Executed {
            data: json!({
                "revision": rev,
                "container": name,
                "service": b.service,
                "env": router.env,
                "url": format!("http://{}", super::reach(&b.publish)),
            }),
            ..Default::default()
        })
    }
}

pub(super) fn router_net_spec(router: &Router) -> crate::container::ContainerSpec {
    crate::container::ContainerSpec {
        sync: vec![],
        project: router.project.clone(),
        task: router.name(),
        image: ImageRef::External(router.image.clone()),
        cmd: None,
        entrypoint: None,
        workdir: None,
        user: None,
        ports: vec![],
        volumes: vec![],
        health: None,
        restart: None,
        labels: router.labels.clone(),
    }
}

/// What canary, promote and check share: the deploy they act on.
fn deployed(deps: &lifeos_engine::Deps, deploy: &str) -> Result<DeployResult, TaskError> {
    deps.typed::<DeployResult>(deploy)
        .ok_or_else(|| TaskError::Failed(format!("deploy task `{deploy}` left no revision")))
}

/// `canary`: `percent` of the service's requests to the deploy's revision.
pub struct CanaryTask {
    pub deploy: String,
    pub percent: u8,
    pub body: DeployBody,
    docker: Docker,
}

impl CanaryTask {
    pub fn new(deploy: String, percent: u8, body: DeployBody, docker: Docker) -> Self {
        Self {
            deploy,
            percent,
            body,
            docker,
        }
    }
}

#[async_trait]
impl Task for CanaryTask {
    fn kind(&self) -> &'static str {
        "canary"
    }

    fn config(&self) -> serde_json::Value {
        json!({ "percent": self.percent })
    }

    fn delivered(&self, r: &serde_json::Map<String, serde_json::Value>) -> Option<String> {
        super::delivered::canary(r)
    }

    fn describe(&self) -> String {
        format!("canary {}% of {}", self.percent, self.body.service)
    }

    async fn inputs(&self, _cx: &KeyCx) -> Result<TaskInputs, TaskError> {
        Ok(TaskInputs::default())
    }

    async fn probe(&self, cx: &ProbeCx<'_>) -> Result<Probe, TaskError> {
        // `plan`: the deploy has not run yet, so there is no revision to look for.
        let Ok(rev) = deployed(cx.deps, &self.deploy).map(|d| d.revision) else {
            return Ok(Probe::Missing(format!("{} deploys first", self.deploy)));
        };
        let d = self.docker.get().await?;
        let router = self.body.router(cx.deps)?;
        let (_, s) = match look(&d, &router, &self.body.service).await? {
            Ok(x) => x,
            Err(why) => return Ok(Probe::Missing(why)),
        };
        // The data too: a check reads the revision from this task's result, also when the
        // canary never ran (a service's first revision goes straight to stable).
        let data = json!({ "revision": rev, "percent": self.percent, "service": self.body.service, "env": router.env });
        if s.canary == Some(rev) && s.weight == self.percent {
            Ok(Probe::FreshAt {
                location: format!("routed: {}", s.describe()),
                data,
            })
        } else if s.stable == Some(rev) && s.canary.is_none() {
            Ok(Probe::FreshAt {
                location: format!("r{rev} promoted since"),
                data,
            })
        } else {
            Ok(Probe::Missing(format!(
                "r{rev} is not the canary at {}% ({})",
                self.percent,
                s.describe()
            )))
        }
    }

    async fn execute(&self, cx: &ExecCx<'_>) -> Result<Executed, TaskError> {
        let d = self.docker.get().await?;
        let rev = deployed(cx.deps, &self.deploy)?.revision;
        let router = self.body.router(cx.deps)?;
        let _lock = ROUTER_LOCK.lock().await;
        let mut state = router.read_state(&d).await?;
        let service = &self.body.service;
        let s = state
            .services
            .get_mut(service)
            .ok_or_else(|| TaskError::Failed(format!("{service} is not deployed")))?;
        let data = json!({ "revision": rev, "percent": self.percent, "service": service, "env": router.env });
        // A service's first revision goes straight to stable: there is nothing to split,
        // and the check that follows judges that revision alone.
        if s.stable == Some(rev) && s.canary.is_none() {
            cx.log.line(
                lifeos_engine::Stream::Stdout,
                &format!("{service}: r{rev} is already stable with all the traffic; no canary"),
            );
            return Ok(Executed {
                data,
                ..Default::default()
            });
        }
        if s.canary != Some(rev) {
            return Err(TaskError::Failed(format!(
                "r{rev} of {service} is not the canary ({}); deploy it with traffic < 100 first (`{}`)",
                s.describe(),
                self.deploy
            )));
        }
        s.weight = self.percent;
        let split = s.describe();
        router.apply(&d, &mut state, Some(&cx.log)).await?;
        cx.log.line(
            lifeos_engine::Stream::Stdout,
            &format!("{service}: traffic {split}"),
        );
        Ok(Executed {
            data,
            ..Default::default()
        })
    }
}

/// `promote`: all traffic to the deploy's revision; the stable one becomes "previous".
pub struct PromoteTask {
    pub deploy: String,
    pub body: DeployBody,
    docker: Docker,
}

impl PromoteTask {
    pub fn new(deploy: String, body: DeployBody, docker: Docker) -> Self {
        Self {
            deploy,
            body,
            docker,
        }
    }
}

#[async_trait]
impl Task for PromoteTask {
    fn kind(&self) -> &'static str {
        "promote"
    }

    fn config(&self) -> serde_json::Value {
        json!({})
    }

    fn delivered(&self, r: &serde_json::Map<String, serde_json::Value>) -> Option<String> {
        super::delivered::promote(r)
    }

    fn describe(&self) -> String {
        format!("promote {}", self.body.service)
    }

    async fn inputs(&self, _cx: &KeyCx) -> Result<TaskInputs, TaskError> {
        Ok(TaskInputs::default())
    }

    async fn probe(&self, cx: &ProbeCx<'_>) -> Result<Probe, TaskError> {
        // `plan`: the deploy has not run yet, so there is no revision to look for.
        let Ok(rev) = deployed(cx.deps, &self.deploy).map(|d| d.revision) else {
            return Ok(Probe::Missing(format!("{} deploys first", self.deploy)));
        };
        let d = self.docker.get().await?;
        let router = self.body.router(cx.deps)?;
        let (_, s) = match look(&d, &router, &self.body.service).await? {
            Ok(x) => x,
            Err(why) => return Ok(Probe::Missing(why)),
        };
        if s.stable == Some(rev) && s.canary.is_none() {
            // Also without a record of ours (a first revision is stable from the start): the
            // result dependants and the run summary see.
            Ok(Probe::FreshAt {
                location: format!("routed: {}", s.describe()),
                data: json!({ "revision": rev, "service": self.body.service, "env": router.env, "previous": s.previous.first() }),
            })
        } else {
            Ok(Probe::Missing(format!(
                "r{rev} is not promoted ({})",
                s.describe()
            )))
        }
    }

    async fn execute(&self, cx: &ExecCx<'_>) -> Result<Executed, TaskError> {
        let d = self.docker.get().await?;
        let rev = deployed(cx.deps, &self.deploy)?.revision;
        let router = self.body.router(cx.deps)?;
        let _lock = ROUTER_LOCK.lock().await;
        let mut state = router.read_state(&d).await?;
        let service = &self.body.service;
        let s = state
            .services
            .get_mut(service)
            .ok_or_else(|| TaskError::Failed(format!("{service} is not deployed")))?;
        let changed = !(s.stable == Some(rev) && s.canary.is_none());
        if changed {
            if s.canary != Some(rev) && s.stable != Some(rev) {
                return Err(TaskError::Failed(format!(
                    "r{rev} of {service} is neither the canary nor stable ({}); run `{}` again",
                    s.describe(),
                    self.deploy
                )));
            }
            s.make_stable(rev);
            router.apply(&d, &mut state, Some(&cx.log)).await?;
        }
        let s = state.services[service].clone();
        cx.log.line(
            lifeos_engine::Stream::Stdout,
            &format!(
                "{service}: traffic {}{}",
                s.describe(),
                s.previous
                    .first()
                    .map(|p| format!(", previous r{p}"))
                    .unwrap_or_default()
            ),
        );
        settle(&d, &router, service, &s, self.body.keep, changed).await?;
        Ok(Executed {
            data: json!({ "revision": rev, "service": service, "env": router.env, "previous": s.previous.first() }),
            ..Default::default()
        })
    }
}
