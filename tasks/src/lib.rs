//! lifeos-tasks: one module per task kind, the seam the config loader sees them through
//! ([`kind`], [`kinds`]), and the services they share. The only crate that talks to Docker.

// Output goes through events, the log sink or a writer the caller passes, never to stdout.
#![deny(clippy::print_stdout)]

pub mod backup;
pub mod container;
pub mod deploy;
pub mod docker;
pub mod download;
pub mod exec;
pub mod image;
pub mod kind;
pub mod kinds;
pub mod outputs;
pub mod process;
pub mod registry;
pub mod services;

pub use container::{ContainerSpec, ContainerTask, ServiceTask};
pub use docker::Docker;
pub use exec::{Command, ExecTask};
pub use image::{Builder, ImageSpec, ImageTask};
pub use registry::{PushSpec, PushTask};
pub use services::Services;
