//! `kind = "service"` and `kind = "container"` in lifeos.toml: one set of fields (image,
//! command, ports, volumes, health), two kinds.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use lifeos_engine::duration::{HEALTH_INTERVAL, HEALTH_TIMEOUT, START_PERIOD};
use lifeos_engine::{Class, Task, TaskSpec};
use serde::Deserialize;
use toml::Value;

use super::{ContainerSpec, ContainerTask, Health, ImageRef, Port, ServiceTask, SyncRule, Volume};
use crate::image::ImageKind;
use crate::kind::names::reference_problem;
use crate::kind::{Defaults, Diagnostic, InstantiateCx, ResolveCx, TaskTable, TypedKind, S};

pub struct ServiceKind;
pub struct ContainerKind;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Raw {
    /// An image task of the graph, or an image reference.
    image: Option<S<String>>,
    cmd: Option<Vec<S<String>>>,
    entrypoint: Option<Vec<S<String>>>,
    workdir: Option<S<String>>,
    user: Option<S<String>>,
    ports: Option<Vec<S<String>>>,
    volumes: Option<Vec<S<String>>>,
    health: Option<S<RawHealth>>,
    restart: Option<S<String>>,
    labels: Option<BTreeMap<String, S<String>>>,
    /// `lifeos watch`: files copied into the running service (services only).
    sync: Option<Vec<S<RawSync>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSync {
    from: S<String>,
    to: S<String>,
    ignore: Option<Vec<S<String>>>,
    restart: Option<bool>,
    run: Option<S<String>>,
    owner: Option<S<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealth {
    /// An argv array (`CMD`) or a shell string (`CMD-SHELL`).
    cmd: S<Value>,
    interval: Option<S<String>>,
    timeout: Option<S<String>>,
    retries: Option<S<u32>>,
    start_period: Option<S<String>>,
}

fn docker_class() -> Defaults {
    Defaults {
        class: Class::Docker,
        ..Defaults::default()
    }
}

impl TypedKind for ServiceKind {
    const NAME: &'static str = "service";
    /// See [`super::ServiceResult`].
    const RESULT_FIELDS: &'static [&'static str] = &["container", "container_id", "host", "port"];
    type Raw = Raw;
    type Body = ContainerSpec;

    fn defaults() -> Defaults {
        docker_class()
    }

    fn resolve(
        cx: &mut ResolveCx,
        t: &TaskTable,
        raw: Raw,
        spec: &mut TaskSpec,
    ) -> Option<ContainerSpec> {
        container_spec(cx, t, Self::NAME, raw, spec)
    }

    fn instantiate(
        _spec: &TaskSpec,
        body: ContainerSpec,
        cx: &InstantiateCx,
    ) -> Result<Arc<dyn Task>, String> {
        Ok(Arc::new(ServiceTask::new(
            body,
            cx.services.docker().clone(),
        )))
    }
}

impl TypedKind for ContainerKind {
    const NAME: &'static str = "container";
    const RESULT_FIELDS: &'static [&'static str] = &["exit_code"];
    type Raw = Raw;
    type Body = ContainerSpec;

    fn defaults() -> Defaults {
        docker_class()
    }

    fn resolve(
        cx: &mut ResolveCx,
        t: &TaskTable,
        raw: Raw,
        spec: &mut TaskSpec,
    ) -> Option<ContainerSpec> {
        container_spec(cx, t, Self::NAME, raw, spec)
    }

    /// A one-shot container acts on the services it depends on: its key covers their
    /// identity (a recreated database gets its migrations again).
    fn instantiate(
        spec: &TaskSpec,
        body: ContainerSpec,
        cx: &InstantiateCx,
    ) -> Result<Arc<dyn Task>, String> {
        let acts_on = spec
            .deps
            .iter()
            .filter_map(|d| cx.peer::<ServiceKind>(d))
            .collect();
        Ok(Arc::new(ContainerTask::new(
            body,
            acts_on,
            cx.services.docker().clone(),
        )))
    }
}

fn health(cx: &mut ResolveCx, h: &S<RawHealth>) -> Option<Health> {
    let r = h.get_ref();
    let test = match r.cmd.get_ref() {
        Value::String(s) => vec!["CMD-SHELL".to_string(), cx.interp_at(s, r.cmd.span())?],
        Value::Array(a) if !a.is_empty() && a.iter().all(|v| v.is_str()) => {
            let mut v = vec!["CMD".to_string()];
            for x in a {
                v.push(cx.interp_at(x.as_str().unwrap(), r.cmd.span())?);
            }
            v
        }
        _ => {
            cx.err(
                Diagnostic::new("invalid health `cmd`")
                    .at(r.cmd.span(), "expected an argv array or a shell string"),
            );
            return None;
        }
    };
    Some(Health {
        test,
        interval: cx.duration(r.interval.as_ref(), Duration::from_secs(1), HEALTH_INTERVAL),
        timeout: cx.duration(r.timeout.as_ref(), Duration::from_secs(5), HEALTH_TIMEOUT),
        retries: health_retries(cx, r),
        start_period: cx.duration(r.start_period.as_ref(), Duration::ZERO, START_PERIOD),
    })
}

/// Failed checks before unhealthy; bounded so the wait for health stays finite.
fn health_retries(cx: &mut ResolveCx, r: &RawHealth) -> u32 {
    const MAX: u32 = 10_000;
    match &r.retries {
        None => 30,
        Some(x) if *x.get_ref() > MAX => {
            cx.err(
                Diagnostic::new(format!("invalid health retries `{}`", x.get_ref()))
                    .at(x.span(), format!("at most {MAX}")),
            );
            MAX
        }
        Some(x) => *x.get_ref(),
    }
}

fn container_spec(
    cx: &mut ResolveCx,
    t: &TaskTable,
    kind: &str,
    raw: Raw,
    spec: &mut TaskSpec,
) -> Option<ContainerSpec> {
    let id = t.id.as_str();
    let Some(image) = &raw.image else {
        t.missing(cx, kind, "image", "image = \"<image task or reference>\"");
        return None;
    };
    let image_ref = cx.interp(image)?;
    let peer = cx.peers.get(&image_ref).cloned();
    if let Some(p) = peer.as_ref().filter(|p| p.kind != ImageKind::NAME) {
        let what = if image_ref == id {
            "names this task itself".to_string()
        } else {
            format!("names task `{image_ref}` of kind `{}`", p.kind)
        };
        cx.err(
            Diagnostic::new(format!("invalid `image` of task `{id}`"))
                .at(image.span(), what)
                .help(format!(
                    "name an image task, or a reference with a tag such as `{image_ref}:latest`"
                )),
        );
        return None;
    }
    let image = match peer {
        Some(p) => {
            if !spec.deps.contains(&image_ref) {
                spec.deps.push(image_ref.clone());
            }
            ImageRef::Task {
                reference: p.facts.get("reference").cloned().unwrap_or_default(),
                task: image_ref,
            }
        }
        None => {
            if let Some(why) = reference_problem(&image_ref, true) {
                cx.err(
                    Diagnostic::new(format!("invalid image reference `{image_ref}`"))
                        .at(image.span(), why),
                );
                return None;
            }
            ImageRef::External(image_ref)
        }
    };
    // The command may use dependency results (`${tasks.db.port}`): expanded when it runs.
    let cmd = raw.cmd.as_ref().map(|v| cx.strings_late(v));
    let entrypoint = raw.entrypoint.as_ref().map(|v| cx.strings_late(v));
    let mut ports = Vec::new();
    for p in raw.ports.iter().flatten() {
        let text = cx.interp(p)?;
        match Port::parse(&text) {
            Some(port) => match port_problem(&port) {
                None => ports.push(port),
                Some(why) => {
                    cx.err(Diagnostic::new(format!("invalid port `{text}`")).at(p.span(), why))
                }
            },
            None => cx.err(Diagnostic::new(format!("invalid port `{text}`")).at(
                p.span(),
                "expected \"HOST:CONTAINER\", \"IP:HOST:CONTAINER\" or \"PORT\", optionally /udp",
            )),
        }
    }
    let mut volumes = Vec::new();
    for v in raw.volumes.iter().flatten() {
        let text = cx.interp(v)?;
        match Volume::parse(&text) {
            Ok(vol) => volumes.push(vol),
            Err(e) => cx.err(Diagnostic::new(format!("invalid volume `{text}`")).at(v.span(), e)),
        }
    }
    let health = match &raw.health {
        Some(h) => Some(health(cx, h)?),
        None => None,
    };
    let restart = match &raw.restart {
        None => None,
        Some(r)
            if ["no", "always", "unless-stopped", "on-failure"].contains(&r.get_ref().as_str()) =>
        {
            Some(r.get_ref().clone())
        }
        Some(r) => {
            cx.err(
                Diagnostic::new(format!("invalid restart policy `{}`", r.get_ref())).at(
                    r.span(),
                    "expected no, always, unless-stopped or on-failure",
                ),
            );
            None
        }
    };
    let labels = raw
        .labels
        .iter()
        .flatten()
        .filter_map(|(k, v)| cx.interp(v).map(|v| (k.clone(), v)))
        .collect();
    let mut sync = Vec::new();
    for r in raw.sync.iter().flatten() {
        if kind != ServiceKind::NAME {
            cx.err(
                Diagnostic::new(format!("`sync` of task `{id}`"))
                    .at(
                        r.span(),
                        "only a service has a running container to sync into",
                    )
                    .help("move `sync` to a task of kind \"service\""),
            );
            break;
        }
        if let Some(rule) = sync_rule(cx, r.get_ref()) {
            sync.push(rule);
        }
    }
    Some(ContainerSpec {
        project: cx.project.clone(),
        task: id.to_string(),
        image,
        cmd,
        entrypoint,
        workdir: raw.workdir.as_ref().and_then(|w| cx.interp(w)),
        user: raw.user.as_ref().and_then(|u| cx.interp(u)),
        ports,
        volumes,
        health,
        restart,
        labels,
        sync,
    })
}

/// One `sync` table: `from` inside the project, `to` absolute, valid ignore globs, a
/// numeric `owner`.
fn sync_rule(cx: &mut ResolveCx, r: &RawSync) -> Option<SyncRule> {
    let from = cx.rel_path(&r.from, "sync `from`")?;
    let to = cx.interp(&r.to)?;
    if !to.starts_with('/') {
        cx.err(
            Diagnostic::new(format!("invalid sync `to` `{to}`"))
                .at(r.to.span(), "must be an absolute path in the container"),
        );
        return None;
    }
    let mut ignore = Vec::new();
    for g in r.ignore.iter().flatten() {
        let text = cx.interp(g)?;
        if let Err(e) = super::sync::check_glob(&text) {
            cx.err(
                Diagnostic::new(format!("bad glob in sync `ignore`: {e}"))
                    .at(g.span(), "this pattern"),
            );
            return None;
        }
        ignore.push(text);
    }
    let owner = match &r.owner {
        None => None,
        Some(o) => {
            let text = cx.interp(o)?;
            if super::sync::parse_numeric_user(&text).is_none() {
                cx.err(
                    Diagnostic::new(format!("invalid sync `owner` `{text}`"))
                        .at(o.span(), "expected numbers: \"UID:GID\" or \"UID\""),
                );
                return None;
            }
            Some(text)
        }
    };
    let run = match &r.run {
        Some(c) => Some(cx.interp(c)?),
        None => None,
    };
    Some(SyncRule {
        from,
        to,
        ignore,
        restart: r.restart.unwrap_or(false),
        run,
        owner,
    })
}

/// Docker publishes ports 1-65535 on an IP address of this host.
fn port_problem(p: &Port) -> Option<String> {
    if p.host_port == 0 || p.container_port == 0 {
        return Some("ports are 1 to 65535".into());
    }
    if p.host_ip.parse::<std::net::IpAddr>().is_err() {
        return Some(format!("`{}` is not an IP address", p.host_ip));
    }
    None
}
