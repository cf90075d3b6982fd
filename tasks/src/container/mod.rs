//! Containers through the Engine API, shared by the `service` (long-running) and `container`
//! (one-shot) kinds: one project network, named volumes, labels to find what lifeos made.

pub mod copier;
pub mod frame;
mod kind;
pub mod oneshot;
pub mod ops;
pub mod owner;
pub mod receiver;
pub mod service;
pub mod sync;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use kind::{ContainerKind, ServiceKind};
pub use oneshot::ContainerTask;
pub use service::ServiceTask;
pub use sync::SyncRule;

pub const PROJECT_LABEL: &str = "lifeos.project";
pub const TASK_LABEL: &str = "lifeos.task";
pub use crate::docker::KEY_LABEL;
pub const RUN_LABEL: &str = "lifeos.run";

/// Which image a container runs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum ImageRef {
    /// An image task of the graph (a dependency): its key covers the image, so only the
    /// task name goes into this task's key.
    Task { task: String, reference: String },
    /// A reference such as `postgres:15-alpine`; its image ID goes into the key.
    External(String),
}

impl ImageRef {
    pub fn reference(&self) -> &str {
        match self {
            ImageRef::Task { reference, .. } => reference,
            ImageRef::External(r) => r,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Port {
    pub host_ip: String,
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: String,
}

impl Port {
    /// `5432`, `5432:5432`, `127.0.0.1:5432:5432`, with an optional `/udp`.
    pub fn parse(s: &str) -> Option<Port> {
        let (spec, protocol) = match s.rsplit_once('/') {
            Some((a, p)) if p == "tcp" || p == "udp" => (a, p.to_string()),
            Some(_) => return None,
            None => (s, "tcp".to_string()),
        };
        let parts: Vec<&str> = spec.split(':').collect();
        let (ip, host, container) = match parts.as_slice() {
            [c] => ("0.0.0.0", *c, *c),
            [h, c] => ("0.0.0.0", *h, *c),
            [ip, h, c] => (*ip, *h, *c),
            _ => return None,
        };
        Some(Port {
            host_ip: ip.to_string(),
            host_port: host.parse().ok()?,
            container_port: container.parse().ok()?,
            protocol,
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum VolumeSource {
    /// A named volume; the Docker name is `<project>_<name>`.
    Named(String),
    /// A project-relative host path.
    Bind(String),
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Volume {
    pub source: VolumeSource,
    pub target: String,
    pub read_only: bool,
}

impl Volume {
    /// `name:/path[:ro]` (named) or `./dir:/path[:ro]` (bind, relative to the project).
    pub fn parse(s: &str) -> Result<Volume, String> {
        let parts: Vec<&str> = s.split(':').collect();
        let (src, target, mode) = match parts.as_slice() {
            [a, b] => (*a, *b, None),
            [a, b, m] => (*a, *b, Some(*m)),
            _ => return Err("expected SOURCE:TARGET[:ro]".into()),
        };
        let read_only = match mode {
            None | Some("rw") => false,
            Some("ro") => true,
            Some(m) => return Err(format!("unknown mode `{m}` (use ro or rw)")),
        };
        if !target.starts_with('/') {
            return Err("the target must be an absolute path in the container".into());
        }
        let source = if src.starts_with('.') || src.contains('/') {
            let rel = src.trim_start_matches("./").trim_end_matches('/');
            if src.starts_with('/') || rel.split('/').any(|c| c == "..") {
                return Err("bind sources must be paths inside the project (./dir)".into());
            }
            VolumeSource::Bind(if rel == "." {
                String::new()
            } else {
                rel.to_string()
            })
        } else if !src.is_empty()
            && src
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        {
            VolumeSource::Named(src.to_string())
        } else {
            return Err(format!("invalid volume name `{src}`"));
        };
        Ok(Volume {
            source,
            target: target.to_string(),
            read_only,
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Health {
    /// `["CMD", ...]` or `["CMD-SHELL", "..."]`.
    pub test: Vec<String>,
    #[serde(with = "ms")]
    pub interval: Duration,
    #[serde(with = "ms")]
    pub timeout: Duration,
    pub retries: u32,
    #[serde(with = "ms")]
    pub start_period: Duration,
}

mod ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// Everything about a container except its environment (the engine passes that). Its key
/// is the narrower [`ContainerKey`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerSpec {
    pub project: String,
    pub task: String,
    pub image: ImageRef,
    pub cmd: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub ports: Vec<Port>,
    pub volumes: Vec<Volume>,
    pub health: Option<Health>,
    pub restart: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// `lifeos watch`: project files copied into the running container. Not in the key:
    /// they change what `watch` does, not the container `up` makes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sync: Vec<SyncRule>,
}

/// What a container's key covers: not the project or task name, nor an image task's tag
/// (that task's own key covers its image), so a rename or a retag reruns nothing.
#[derive(Serialize)]
pub struct ContainerKey<'a> {
    image: ImageRefKey<'a>,
    cmd: &'a Option<Vec<String>>,
    entrypoint: &'a Option<Vec<String>>,
    workdir: &'a Option<String>,
    user: &'a Option<String>,
    ports: &'a [Port],
    volumes: &'a [Volume],
    health: &'a Option<Health>,
    restart: &'a Option<String>,
    labels: &'a BTreeMap<String, String>,
}

#[derive(Serialize)]
#[serde(rename_all = "snake_case")]
enum ImageRefKey<'a> {
    Task { task: &'a str },
    External(&'a str),
}

/// What a service's dependants get (`${tasks.db.port}`, [`lifeos_engine::Deps::typed`]).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ServiceResult {
    /// Its name on the project network (`<project>-<task>`), for other containers.
    pub container: String,
    pub container_id: String,
    /// Where the host reaches its first published port.
    pub host: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

impl ContainerSpec {
    /// `cmd` and `entrypoint` with `${tasks.NAME.FIELD}` expanded, for creating the container.
    pub fn expanded(&self, deps: &lifeos_engine::Deps) -> Result<ContainerSpec, String> {
        let list = |v: &Option<Vec<String>>| -> Result<Option<Vec<String>>, String> {
            v.as_ref()
                .map(|v| v.iter().map(|s| deps.expand(s)).collect())
                .transpose()
        };
        Ok(ContainerSpec {
            cmd: list(&self.cmd)?,
            entrypoint: list(&self.entrypoint)?,
            ..self.clone()
        })
    }

    pub fn key(&self) -> ContainerKey<'_> {
        ContainerKey {
            image: match &self.image {
                ImageRef::Task { task, .. } => ImageRefKey::Task { task },
                ImageRef::External(r) => ImageRefKey::External(r),
            },
            cmd: &self.cmd,
            entrypoint: &self.entrypoint,
            workdir: &self.workdir,
            user: &self.user,
            ports: &self.ports,
            volumes: &self.volumes,
            health: &self.health,
            restart: &self.restart,
            labels: &self.labels,
        }
    }

    pub fn network(&self) -> String {
        network_name(&self.project)
    }

    pub fn volume_name(&self, name: &str) -> String {
        volume_name(&self.project, name)
    }
}

pub fn network_name(project: &str) -> String {
    format!("{project}_default")
}

pub fn volume_name(project: &str, name: &str) -> String {
    format!("{project}_{name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports() {
        assert_eq!(Port::parse("5432").unwrap().host_port, 5432);
        let p = Port::parse("127.0.0.1:15432:5432/tcp").unwrap();
        assert_eq!(
            (p.host_ip.as_str(), p.host_port, p.container_port),
            ("127.0.0.1", 15432, 5432)
        );
        assert!(Port::parse("x:1").is_none());
        assert!(Port::parse("1/sctp").is_none());
    }

    #[test]
    fn volumes() {
        let v = Volume::parse("pgdata:/var/lib/postgresql/data").unwrap();
        assert_eq!(v.source, VolumeSource::Named("pgdata".into()));
        let b = Volume::parse("./example/migrations:/migrations:ro").unwrap();
        assert_eq!(b.source, VolumeSource::Bind("example/migrations".into()));
        assert!(b.read_only);
        assert!(Volume::parse("/etc:/etc").is_err());
        assert!(Volume::parse("a:relative").is_err());
        assert!(Volume::parse("../up:/x").is_err());
    }
}
