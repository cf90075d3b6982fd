//! Delivery on platform `docker` (platform `cloudrun`: [`cloudrun`]): `deploy` starts revision N+1 of a service next to the
//! running one, `canary` and `promote` move traffic in the environment's router (an nginx
//! container lifeos runs, [`router`]), `check` judges the canary from the router's access
//! log, and [`ops::rollback`] moves traffic back. What is routed where lives in the router's
//! state volume ([`state`]), so a router removed from outside comes back with its split.

mod check;
pub mod cloudrun;
mod delivered;
pub mod http;
mod kind;
pub mod ops;
mod revision;
pub mod router;
pub mod state;
mod tasks;

pub use check::CheckTask;
pub use kind::{CanaryKind, CheckKind, DeployConf, DeployKind, PromoteKind};
pub use tasks::{CanaryTask, DeployResult, DeployTask, PromoteTask};

pub const ENV_LABEL: &str = "lifeos.env";
pub const SERVICE_LABEL: &str = "lifeos.service";
pub const REVISION_LABEL: &str = "lifeos.revision";
/// `revision`, `router` or `router-state`.
pub const ROLE_LABEL: &str = "lifeos.role";
/// `task=key` of each migration the revision was deployed after, comma-separated.
pub const MIGRATION_LABEL: &str = "lifeos.migrations";

/// The environment name when `--env` selects none.
pub const DEFAULT_ENV: &str = "default";

/// `<project>-<env>-<service>-r<N>`.
pub fn revision_name(project: &str, env: &str, service: &str, rev: u32) -> String {
    format!("{project}-{env}-{service}-r{rev}")
}

/// The host address for `publish` ("127.0.0.1:9081"; 0.0.0.0 is reached on loopback).
pub fn reach(publish: &str) -> String {
    match publish.rsplit_once(':') {
        Some(("0.0.0.0", p)) | Some(("", p)) => format!("127.0.0.1:{p}"),
        _ => publish.to_string(),
    }
}
