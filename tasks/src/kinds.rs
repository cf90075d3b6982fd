//! Every kind lifeos knows: one line each.

use crate::kind::{Kind, Registered, Registry};

static EXEC: Registered<crate::exec::ExecKind> = Registered::new();
static IMAGE: Registered<crate::image::ImageKind> = Registered::new();
static SERVICE: Registered<crate::container::ServiceKind> = Registered::new();
static CONTAINER: Registered<crate::container::ContainerKind> = Registered::new();
static PUSH: Registered<crate::registry::PushKind> = Registered::new();

static DEPLOY: Registered<crate::deploy::DeployKind> = Registered::new();
static CANARY: Registered<crate::deploy::CanaryKind> = Registered::new();
static CHECK: Registered<crate::deploy::CheckKind> = Registered::new();
static PROMOTE: Registered<crate::deploy::PromoteKind> = Registered::new();

static BACKUP: Registered<crate::backup::BackupKind> = Registered::new();

pub static REGISTRY: Registry = Registry::new(&[
    &EXEC, &IMAGE, &SERVICE, &CONTAINER, &PUSH, &DEPLOY, &CANARY, &CHECK, &PROMOTE, &BACKUP,
]);

/// For callers that want the trait object of one kind.
pub fn get(name: &str) -> Option<&'static dyn Kind> {
    REGISTRY.get(name)
}
