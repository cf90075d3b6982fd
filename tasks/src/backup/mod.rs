//! `backup`: a verified `pg_dump -Fc` of a Postgres service, with retention and upload; and
//! what `lifeos backup verify|prune` and `lifeos restore` use (read back, scratch restore,
//! swap). See DESIGN.md "Delivery" and README "Backups".

pub mod conn;
pub mod gcs;
pub mod http;
mod kind;
pub mod oneshot;
pub mod restore;
pub mod retention;
pub mod scripts;
pub mod sidecar;
mod task;

pub use kind::{BackupKind, DEFAULT_URL_IMAGE};
pub use task::{read_back, BackupResult, BackupTask, Database, Settings};
