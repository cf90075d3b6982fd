//! `deploy`, `canary`, `check` and `promote` in lifeos.toml, and `[router]`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use lifeos_engine::duration::Bounds;
use lifeos_engine::{CachePolicy, Class, Task, TaskSpec};
use serde::Deserialize;

use super::check::{CheckBody, CheckTask};
use super::cloudrun::{
    CloudRunBody, CloudRunCanary, CloudRunCheck, CloudRunDeploy, CloudRunPromote,
};
use super::router::Router;
use super::tasks::{CanaryTask, DeployBody, DeployTask, PromoteTask};
use super::DEFAULT_ENV;
use crate::container::{ContainerKind, ImageRef};
use crate::image::ImageKind;
use crate::kind::names::reference_problem;
use crate::kind::{Defaults, Diagnostic, InstantiateCx, ResolveCx, TaskTable, TypedKind, S};

pub struct DeployKind;
pub struct CanaryKind;
pub struct PromoteKind;
pub struct CheckKind;

/// A compiled deploy: on the local engine behind lifeos' router, or on Cloud Run.
#[derive(Debug, Clone, serde::Serialize, Deserialize)]
#[serde(tag = "platform", rename_all = "snake_case")]
pub enum DeployConf {
    Docker(DeployBody),
    Cloudrun(CloudRunBody),
}

const DAY: u64 = 86_400;
const READY_TIMEOUT: Bounds = Bounds {
    field: "ready_timeout",
    zero: false,
    max: Duration::from_secs(DAY),
};
const WINDOW: Bounds = Bounds {
    field: "window",
    zero: false,
    max: Duration::from_secs(DAY),
};
const INTERVAL: Bounds = Bounds {
    field: "interval",
    zero: false,
    max: Duration::from_secs(DAY),
};
const LATENCY: Bounds = Bounds {
    field: "latency threshold",
    zero: false,
    max: Duration::from_secs(3600),
};

/// A duration field, `${vars.x}` allowed.
fn dur(cx: &mut ResolveCx, s: Option<&S<String>>, default: Duration, b: Bounds) -> Duration {
    match s {
        None => default,
        Some(s) => match cx.interp(s) {
            Some(v) => cx.duration(Some(&S::new(s.span(), v)), default, b),
            None => default,
        },
    }
}

fn docker() -> Defaults {
    Defaults {
        class: Class::Docker,
        ..Defaults::default()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDeploy {
    /// "docker" (a local or remote engine behind lifeos' router) or "cloudrun" (`gcloud`).
    pub(super) platform: Option<S<String>>,
    pub(super) service: Option<S<String>>,
    pub(super) image: Option<S<String>>,
    cmd: Option<Vec<S<String>>>,
    pub(super) port: Option<S<u16>>,
    publish: Option<S<String>>,
    ready: Option<S<String>>,
    ready_timeout: Option<S<String>>,
    pub(super) traffic: Option<S<u8>>,
    keep: Option<S<u32>>,
    pub(super) labels: Option<BTreeMap<String, S<String>>>,
    // Platform "cloudrun" only (a platform from `${vars.x}` ignores the other's fields).
    pub(super) project: Option<S<String>>,
    pub(super) region: Option<S<String>>,
    pub(super) gcloud: Option<S<String>>,
    pub(super) tag: Option<S<String>>,
    pub(super) secret_refs: Option<BTreeMap<String, S<String>>>,
    pub(super) min_instances: Option<S<u32>>,
    pub(super) max_instances: Option<S<u32>>,
    pub(super) cpu: Option<S<String>>,
    pub(super) memory: Option<S<String>>,
    pub(super) concurrency: Option<S<u32>>,
    pub(super) request_timeout: Option<S<String>>,
    pub(super) service_account: Option<S<String>>,
    pub(super) allow_unauthenticated: Option<S<bool>>,
}

/// An image task of the graph (added to `deps`) or a reference.
fn image_ref(
    cx: &mut ResolveCx,
    id: &str,
    field: &str,
    s: &S<String>,
    spec: &mut TaskSpec,
) -> Option<ImageRef> {
    let r = cx.interp(s)?;
    match cx.peers.get(&r).cloned() {
        Some(p) if p.kind == ImageKind::NAME => {
            if !spec.deps.contains(&r) {
                spec.deps.push(r.clone());
            }
            Some(ImageRef::Task {
                reference: p.facts.get("reference").cloned().unwrap_or_default(),
                task: r,
            })
        }
        Some(p) => {
            cx.err(
                Diagnostic::new(format!("invalid `{field}` of task `{id}`"))
                    .at(s.span(), format!("names task `{r}` of kind `{}`", p.kind))
                    .help("name an image task, or an image reference such as `nginx:1.27-alpine`"),
            );
            None
        }
        None => match reference_problem(&r, true) {
            Some(why) => {
                cx.err(Diagnostic::new(format!("invalid image reference `{r}`")).at(s.span(), why));
                None
            }
            None => Some(ImageRef::External(r)),
        },
    }
}

fn name_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 40
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
}

/// `"127.0.0.1:9081"` or `"9081"` (all interfaces).
fn publish(cx: &mut ResolveCx, s: &S<String>) -> Option<String> {
    let text = cx.interp(s)?;
    let (ip, port) = match text.rsplit_once(':') {
        Some((ip, p)) => (ip.to_string(), p),
        None => ("0.0.0.0".to_string(), text.as_str()),
    };
    let ok_port = port.parse::<u16>().is_ok_and(|p| p > 0);
    if !ok_port || ip.parse::<std::net::IpAddr>().is_err() {
        cx.err(
            Diagnostic::new(format!("invalid publish address `{text}`")).at(
                s.span(),
                "expected \"IP:PORT\" such as \"127.0.0.1:9081\", or \"PORT\"",
            ),
        );
        return None;
    }
    Some(format!("{ip}:{port}"))
}

impl TypedKind for DeployKind {
    const NAME: &'static str = "deploy";
    const RESULT_FIELDS: &'static [&'static str] =
        &["revision", "container", "service", "env", "url"];
    type Raw = RawDeploy;
    type Body = DeployConf;

    fn defaults() -> Defaults {
        docker()
    }

    fn resolve(
        cx: &mut ResolveCx,
        t: &TaskTable,
        raw: RawDeploy,
        spec: &mut TaskSpec,
    ) -> Option<DeployConf> {
        let id = t.id.as_str();
        if let Some(p) = &raw.platform {
            let v = cx.interp(p)?;
            if v == "cloudrun" {
                return super::cloudrun::resolve(cx, t, raw, spec).map(DeployConf::Cloudrun);
            }
            if v != "docker" {
                cx.err(
                    Diagnostic::new(format!("platform `{v}` is not supported by this lifeos"))
                        .at(p.span(), "expected \"docker\" or \"cloudrun\"")
                        .help("platform \"docker\" deploys to the engine DOCKER_HOST names, behind an nginx router; \"cloudrun\" to Google Cloud Run with `gcloud`"),
                );
                return None;
            }
        }
        let Some(router_raw) = cx.router.clone() else {
            cx.err(
                Diagnostic::new(format!("task `{id}` of kind `deploy` needs a [router]"))
                    .at(t.name_span.clone(), "deployed here")
                    .help("add `[router]` with `image = \"<image task or reference with nginx>\"`"),
            );
            return None;
        };
        let Some(service) = &raw.service else {
            t.missing(cx, "deploy", "service", "service = \"api\"");
            return None;
        };
        let service_name = cx.interp(service)?;
        if !name_ok(&service_name) {
            cx.err(
                Diagnostic::new(format!("invalid service name `{service_name}`")).at(
                    service.span(),
                    "use lowercase letters, digits and `-` (at most 40)",
                ),
            );
            return None;
        }
        let Some(image) = &raw.image else {
            t.missing(
                cx,
                "deploy",
                "image",
                "image = \"<image task or reference>\"",
            );
            return None;
        };
        let image = image_ref(cx, id, "image", image, spec)?;
        let Some(port) = &raw.port else {
            t.missing(
                cx,
                "deploy",
                "port",
                "port = 8081 (the port the service listens on)",
            );
            return None;
        };
        let Some(publish_s) = &raw.publish else {
            t.missing(cx, "deploy", "publish", "publish = \"127.0.0.1:9081\"");
            return None;
        };
        let publish = publish(cx, publish_s)?;
        let router_image = image_ref(cx, id, "image", &router_raw.image, spec)?;
        let (router_task, router_image) = match router_image {
            ImageRef::Task { task, reference } => (Some(task), reference),
            ImageRef::External(r) => (None, r),
        };
        let ready = match &raw.ready {
            Some(r) => cx.interp(r)?,
            None => "/".into(),
        };
        if !ready.starts_with('/') {
            cx.err(Diagnostic::new(format!("invalid ready path `{ready}`")).at(
                raw.ready.as_ref().unwrap().span(),
                "an HTTP path starting with `/`",
            ));
        }
        let traffic = raw.traffic.as_ref().map(|t| *t.get_ref()).unwrap_or(100);
        if traffic > 100 {
            cx.err(Diagnostic::new(format!("invalid traffic `{traffic}`")).at(
                raw.traffic.as_ref().unwrap().span(),
                "a percentage, 0 to 100",
            ));
        }
        let keep = raw.keep.as_ref().map(|k| *k.get_ref()).unwrap_or(3);
        let migrations = spec
            .deps
            .iter()
            .filter(|d| {
                cx.peers
                    .get(*d)
                    .is_some_and(|p| p.kind == ContainerKind::NAME)
            })
            .cloned()
            .collect();
        let labels: BTreeMap<String, String> = raw
            .labels
            .iter()
            .flatten()
            .filter_map(|(k, v)| cx.interp(v).map(|v| (k.clone(), v)))
            .collect();
        let router_labels = router_raw
            .labels
            .iter()
            .filter_map(|(k, v)| cx.interp(v).map(|v| (k.clone(), v)))
            .collect();
        let http = match &router_raw.http {
            Some(h) => cx.interp(h)?,
            None => String::new(),
        };
        Some(DeployConf::Docker(DeployBody {
            router: Router {
                project: cx.project.clone(),
                env: cx.env.clone().unwrap_or_else(|| DEFAULT_ENV.into()),
                image: router_image,
                http,
                labels: router_labels,
            },
            router_task,
            task: id.to_string(),
            service: service_name,
            image,
            cmd: raw.cmd.as_ref().map(|v| cx.strings_late(v)),
            port: *port.get_ref(),
            publish,
            ready,
            ready_timeout_ms: dur(
                cx,
                raw.ready_timeout.as_ref(),
                Duration::from_secs(60),
                READY_TIMEOUT,
            )
            .as_millis() as u64,
            traffic,
            keep,
            migrations,
            labels,
        }))
    }

    fn instantiate(
        spec: &TaskSpec,
        body: DeployConf,
        cx: &InstantiateCx,
    ) -> Result<Arc<dyn Task>, String> {
        Ok(match body {
            DeployConf::Docker(body) => {
                Arc::new(DeployTask::new(body, cx.services.docker().clone()))
            }
            DeployConf::Cloudrun(mut body) => {
                body.secret_names = spec.secrets.clone();
                Arc::new(CloudRunDeploy {
                    body,
                    services: cx.services.clone(),
                })
            }
        })
    }
}

/// `deploy = "deploy-api"`: a deploy task of the graph, made a dependency.
fn deploy_ref(
    cx: &mut ResolveCx,
    t: &TaskTable,
    d: Option<&S<String>>,
    kind: &str,
    spec: &mut TaskSpec,
) -> Option<String> {
    let Some(d) = d else {
        t.missing(cx, kind, "deploy", "deploy = \"<deploy task>\"");
        return None;
    };
    let name = cx.interp(d)?;
    match cx.peers.get(&name) {
        Some(p) if p.kind == DeployKind::NAME => {}
        other => {
            let what = match other {
                Some(p) => format!("task `{name}` is of kind `{}`", p.kind),
                None => format!("no task `{name}`"),
            };
            cx.err(
                Diagnostic::new(format!("invalid `deploy` of task `{}`", t.id))
                    .at(d.span(), what)
                    .help("name a task of kind `deploy`"),
            );
            return None;
        }
    }
    if !spec.deps.contains(&name) {
        spec.deps.push(name.clone());
    }
    Some(name)
}

fn deploy_body(cx: &InstantiateCx, deploy: &str) -> Result<DeployConf, String> {
    cx.peer::<DeployKind>(deploy)
        .ok_or_else(|| format!("task `{deploy}` is not a deploy"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCanary {
    deploy: Option<S<String>>,
    percent: Option<S<u8>>,
}

#[derive(Debug, Clone, serde::Serialize, Deserialize)]
pub struct CanaryBody {
    pub deploy: String,
    pub percent: u8,
}

impl TypedKind for CanaryKind {
    const NAME: &'static str = "canary";
    const RESULT_FIELDS: &'static [&'static str] =
        &["revision", "percent", "service", "env", "url"];
    type Raw = RawCanary;
    type Body = CanaryBody;

    fn defaults() -> Defaults {
        docker()
    }

    fn resolve(
        cx: &mut ResolveCx,
        t: &TaskTable,
        raw: RawCanary,
        spec: &mut TaskSpec,
    ) -> Option<CanaryBody> {
        let deploy = deploy_ref(cx, t, raw.deploy.as_ref(), "canary", spec)?;
        let Some(p) = &raw.percent else {
            t.missing(cx, "canary", "percent", "percent = 10");
            return None;
        };
        if *p.get_ref() > 100 {
            cx.err(
                Diagnostic::new(format!("invalid percent `{}`", p.get_ref()))
                    .at(p.span(), "0 to 100"),
            );
            return None;
        }
        Some(CanaryBody {
            deploy,
            percent: *p.get_ref(),
        })
    }

    fn instantiate(
        _spec: &TaskSpec,
        body: CanaryBody,
        cx: &InstantiateCx,
    ) -> Result<Arc<dyn Task>, String> {
        Ok(match deploy_body(cx, &body.deploy)? {
            DeployConf::Docker(d) => Arc::new(CanaryTask::new(
                body.deploy,
                body.percent,
                d,
                cx.services.docker().clone(),
            )),
            DeployConf::Cloudrun(d) => Arc::new(CloudRunCanary {
                deploy: body.deploy,
                percent: body.percent,
                body: d,
            }),
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPromote {
    deploy: Option<S<String>>,
}

#[derive(Debug, Clone, serde::Serialize, Deserialize)]
pub struct PromoteBody {
    pub deploy: String,
}

impl TypedKind for PromoteKind {
    const NAME: &'static str = "promote";
    const RESULT_FIELDS: &'static [&'static str] = &["revision", "service", "env"];
    type Raw = RawPromote;
    type Body = PromoteBody;

    fn defaults() -> Defaults {
        docker()
    }

    fn resolve(
        cx: &mut ResolveCx,
        t: &TaskTable,
        raw: RawPromote,
        spec: &mut TaskSpec,
    ) -> Option<PromoteBody> {
        Some(PromoteBody {
            deploy: deploy_ref(cx, t, raw.deploy.as_ref(), "promote", spec)?,
        })
    }

    fn instantiate(
        _spec: &TaskSpec,
        body: PromoteBody,
        cx: &InstantiateCx,
    ) -> Result<Arc<dyn Task>, String> {
        Ok(match deploy_body(cx, &body.deploy)? {
            DeployConf::Docker(d) => Arc::new(PromoteTask::new(
                body.deploy,
                d,
                cx.services.docker().clone(),
            )),
            DeployConf::Cloudrun(d) => Arc::new(CloudRunPromote {
                deploy: body.deploy,
                body: d,
                services: cx.services.clone(),
            }),
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProbe {
    path: S<String>,
    rate: Option<S<u32>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCheck {
    target: Option<S<String>>,
    window: Option<S<String>>,
    interval: Option<S<String>>,
    probe: Option<S<RawProbe>>,
    success_rate: Option<S<f64>>,
    p50: Option<S<String>>,
    p95: Option<S<String>>,
    p99: Option<S<String>>,
    min_requests: Option<S<u64>>,
    max_drop: Option<S<f64>>,
    on_failure: Option<S<String>>,
}

impl TypedKind for CheckKind {
    const NAME: &'static str = "check";
    const RESULT_FIELDS: &'static [&'static str] = &["passed"];
    type Raw = RawCheck;
    type Body = CheckBody;

    /// A check judges the canary as it is now: never cached unless the task says so.
    fn defaults() -> Defaults {
        Defaults {
            cache: CachePolicy::Never,
            class: Class::Docker,
            shared: false,
        }
    }

    fn resolve(
        cx: &mut ResolveCx,
        t: &TaskTable,
        raw: RawCheck,
        spec: &mut TaskSpec,
    ) -> Option<CheckBody> {
        let Some(target) = &raw.target else {
            t.missing(cx, "check", "target", "target = \"<canary task>\"");
            return None;
        };
        let name = cx.interp(target)?;
        if cx.peers.get(&name).map(|p| p.kind) != Some(CanaryKind::NAME) {
            cx.err(
                Diagnostic::new(format!("invalid `target` of task `{}`", t.id))
                    .at(target.span(), "not a task of kind `canary`")
                    .help("name the canary task whose revision this check judges"),
            );
            return None;
        }
        if !spec.deps.contains(&name) {
            spec.deps.push(name.clone());
        }
        let ms = |cx: &mut ResolveCx, s: &Option<S<String>>| {
            s.as_ref()
                .map(|s| dur(cx, Some(s), Duration::ZERO, LATENCY).as_millis() as u64)
        };
        let rollback = match &raw.on_failure {
            None => false,
            Some(v) => match v.get_ref().as_str() {
                "rollback" => true,
                "fail" => false,
                other => {
                    cx.err(
                        Diagnostic::new(format!("invalid on_failure `{other}`"))
                            .at(v.span(), "expected \"rollback\" or \"fail\""),
                    );
                    false
                }
            },
        };
        if let Some(r) = &raw.success_rate {
            if !(0.0..=1.0).contains(r.get_ref()) {
                cx.err(
                    Diagnostic::new(format!("invalid success_rate `{}`", r.get_ref()))
                        .at(r.span(), "a fraction, 0 to 1 (0.99)"),
                );
            }
        }
        let probe = raw.probe.as_ref().map(|p| p.get_ref());
        let probe_path = match probe {
            Some(p) => Some(cx.interp(&p.path)?),
            None => None,
        };
        Some(CheckBody {
            task: t.id.clone(),
            target: name,
            window_ms: dur(cx, raw.window.as_ref(), Duration::from_secs(600), WINDOW).as_millis()
                as u64,
            interval_ms: dur(cx, raw.interval.as_ref(), Duration::from_secs(10), INTERVAL)
                .as_millis() as u64,
            probe_path,
            probe_rate: probe
                .and_then(|p| p.rate.as_ref())
                .map(|r| *r.get_ref())
                .unwrap_or(10),
            success_rate: raw.success_rate.as_ref().map(|r| *r.get_ref()),
            p50_ms: ms(cx, &raw.p50),
            p95_ms: ms(cx, &raw.p95),
            p99_ms: ms(cx, &raw.p99),
            min_requests: raw.min_requests.as_ref().map(|m| *m.get_ref()).unwrap_or(1),
            max_drop: raw.max_drop.as_ref().map(|m| *m.get_ref()).unwrap_or(0.01),
            rollback,
        })
    }

    fn instantiate(
        _spec: &TaskSpec,
        body: CheckBody,
        cx: &InstantiateCx,
    ) -> Result<Arc<dyn Task>, String> {
        let canary = cx
            .peer::<CanaryKind>(&body.target)
            .ok_or_else(|| format!("task `{}` is not a canary", body.target))?;
        Ok(match deploy_body(cx, &canary.deploy)? {
            DeployConf::Docker(d) => {
                Arc::new(CheckTask::new(body, d, cx.services.docker().clone()))
            }
            DeployConf::Cloudrun(d) => Arc::new(CloudRunCheck { body, deploy: d }),
        })
    }
}
