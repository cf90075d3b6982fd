//! lifeos-tasks: one module per task kind. The only crate that talks to Docker.

pub mod container;
pub mod docker;
pub mod exec;
pub mod image;
pub mod outputs;
pub mod process;
pub mod registry;

pub use container::{ContainerSpec, ContainerTask, ServiceTask};
pub use docker::Docker;
pub use exec::{Command, ExecTask};
pub use image::{Builder, ImageSpec, ImageTask};
pub use registry::{PushSpec, PushTask};
