//! Platform `cloudrun`: the same `deploy`, `canary`, `check` and `promote` kinds (and
//! `lifeos rollback`) on Google Cloud Run, through the `gcloud` CLI as a process
//! ([`gcloud::Gcloud`]): `run deploy` by image digest (with `--no-traffic --tag canary` for a
//! canary), `services update-traffic --to-tags canary=N`, `--to-latest`, and
//! `--to-revisions PREV=100`. What Cloud Run runs is the proof in the world: a deploy is
//! fresh while `services describe` shows the revision this key made (a label on it) serving
//! as this key would route it. Every traffic change is one `update-traffic` call, which Cloud
//! Run applies whole or not at all, so lifeos never leaves the split half-moved.

mod check;
mod config;
pub mod gcloud;
pub mod history;
pub mod model;
pub mod ops;
mod tasks;

pub use check::CloudRunCheck;
pub use config::{resolve, CloudImage, CloudRunBody};
pub use tasks::{CloudRunCanary, CloudRunDeploy, CloudRunPromote};

/// The label on each revision lifeos deploys: the first 32 hex digits of the deploy's key
/// (a label value holds at most 63 characters).
pub const KEY_LABEL: &str = "lifeos-key";

/// The key as its label value.
pub fn key_label(key: &lifeos_engine::Key) -> String {
    key.to_hex()[..32].to_string()
}
