//! The `service` and `container` kinds: image, command, ports, volumes, health check.

use std::time::Duration;

use lifeos_engine::TaskSpec;
use lifeos_tasks::container::{ContainerSpec, Health, ImageRef, Port, Volume};
use toml::Value;

use super::duration;
use super::raw::{RawHealth, RawTask, S};
use super::resolve::Resolver;
use super::Kind;
use crate::diagnostic::Diagnostic;

impl Resolver<'_> {
    pub(super) fn duration(
        &mut self,
        d: &Option<S<String>>,
        default: Duration,
        bounds: duration::Bounds,
    ) -> Duration {
        match d {
            None => default,
            Some(s) => duration::parse_in(s.get_ref(), bounds).unwrap_or_else(|why| {
                self.err(
                    Diagnostic::new(format!("invalid {} `{}`", bounds.field, s.get_ref()))
                        .at(s.span(), why),
                );
                default
            }),
        }
    }

    pub(super) fn health(&mut self, h: &S<RawHealth>) -> Option<Health> {
        let r = h.get_ref();
        let test = match r.cmd.get_ref() {
            Value::String(s) => vec!["CMD-SHELL".to_string(), self.interp_at(s, r.cmd.span())?],
            Value::Array(a) if !a.is_empty() && a.iter().all(|v| v.is_str()) => {
                let mut v = vec!["CMD".to_string()];
                for x in a {
                    v.push(self.interp_at(x.as_str().unwrap(), r.cmd.span())?);
                }
                v
            }
            _ => {
                self.err(
                    Diagnostic::new("invalid health `cmd`")
                        .at(r.cmd.span(), "expected an argv array or a shell string"),
                );
                return None;
            }
        };
        Some(Health {
            test,
            interval: self.duration(
                &r.interval,
                Duration::from_secs(1),
                duration::HEALTH_INTERVAL,
            ),
            timeout: self.duration(&r.timeout, Duration::from_secs(5), duration::HEALTH_TIMEOUT),
            retries: self.health_retries(r),
            start_period: self.duration(&r.start_period, Duration::ZERO, duration::START_PERIOD),
        })
    }

    /// Failed checks before unhealthy; bounded so the wait for health stays finite.
    fn health_retries(&mut self, r: &RawHealth) -> u32 {
        const MAX: u32 = 10_000;
        match &r.retries {
            None => 30,
            Some(x) if *x.get_ref() > MAX => {
                self.err(
                    Diagnostic::new(format!("invalid health retries `{}`", x.get_ref()))
                        .at(x.span(), format!("at most {MAX}")),
                );
                MAX
            }
            Some(x) => *x.get_ref(),
        }
    }

    pub(super) fn container_spec(
        &mut self,
        id: &str,
        name: &S<String>,
        t: &RawTask,
        spec: &mut TaskSpec,
    ) -> Option<ContainerSpec> {
        let Some(image) = &t.image else {
            self.err(
                Diagnostic::new(format!(
                    "task `{id}` of kind `{}` needs `image`",
                    t.kind.get_ref().name()
                ))
                .at(name.span(), "add image = \"<image task or reference>\""),
            );
            return None;
        };
        let image_ref = self.interp(image)?;
        if let Some(kind) = self.kinds.get(&image_ref).filter(|k| **k != Kind::Image) {
            let what = if image_ref == id {
                "names this task itself".to_string()
            } else {
                format!("names task `{image_ref}` of kind `{}`", kind.name())
            };
            self.err(
                Diagnostic::new(format!("invalid `image` of task `{id}`"))
                    .at(image.span(), what)
                    .help(format!(
                        "name an image task, or a reference with a tag such as `{image_ref}:latest`"
                    )),
            );
            return None;
        }
        if !self.image_tags.contains_key(&image_ref) {
            if let Some(why) = super::names::reference_problem(&image_ref, true) {
                self.err(
                    Diagnostic::new(format!("invalid image reference `{image_ref}`"))
                        .at(image.span(), why),
                );
                return None;
            }
        }
        let image = match self.image_tags.get(&image_ref) {
            Some(tag) => {
                if !spec.deps.contains(&image_ref) {
                    spec.deps.push(image_ref.clone());
                }
                ImageRef::Task {
                    task: image_ref,
                    reference: tag.clone(),
                }
            }
            None => ImageRef::External(image_ref),
        };
        let list =
            |this: &mut Self, v: &Option<Vec<S<String>>>| v.as_ref().map(|v| this.strings(v));
        let cmd = list(self, &t.cmd);
        let entrypoint = list(self, &t.entrypoint);
        let mut ports = Vec::new();
        for p in t.ports.iter().flatten() {
            let text = self.interp(p)?;
            match Port::parse(&text) {
                Some(port) => match port_problem(&port) {
                    None => ports.push(port),
                    Some(why) => self
                        .err(Diagnostic::new(format!("invalid port `{text}`")).at(p.span(), why)),
                },
                None => self.err(
                    Diagnostic::new(format!("invalid port `{text}`"))
                        .at(p.span(), "expected \"HOST:CONTAINER\", \"IP:HOST:CONTAINER\" or \"PORT\", optionally /udp"),
                ),
            }
        }
        let mut volumes = Vec::new();
        for v in t.volumes.iter().flatten() {
            let text = self.interp(v)?;
            match Volume::parse(&text) {
                Ok(vol) => volumes.push(vol),
                Err(e) => {
                    self.err(Diagnostic::new(format!("invalid volume `{text}`")).at(v.span(), e))
                }
            }
        }
        let health = match &t.health {
            Some(h) => Some(self.health(h)?),
            None => None,
        };
        let restart = match &t.restart {
            None => None,
            Some(r)
                if ["no", "always", "unless-stopped", "on-failure"]
                    .contains(&r.get_ref().as_str()) =>
            {
                Some(r.get_ref().clone())
            }
            Some(r) => {
                self.err(
                    Diagnostic::new(format!("invalid restart policy `{}`", r.get_ref())).at(
                        r.span(),
                        "expected no, always, unless-stopped or on-failure",
                    ),
                );
                None
            }
        };
        let labels = t
            .labels
            .iter()
            .flatten()
            .filter_map(|(k, v)| self.interp(v).map(|v| (k.clone(), v)))
            .collect();
        Some(ContainerSpec {
            project: self.project.clone(),
            task: id.to_string(),
            image,
            cmd,
            entrypoint,
            workdir: t.workdir.as_ref().and_then(|w| self.interp(w)),
            user: t.user.as_ref().and_then(|u| self.interp(u)),
            ports,
            volumes,
            health,
            restart,
            labels,
        })
    }
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
