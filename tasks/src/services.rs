//! The one bundle of outside connections kinds use, made by the binary and shared by every
//! node: the Docker engine client (connected on first use, never while the config loads).
//! Registry HTTP and credentials join it as kinds need them.

use crate::docker::Docker;

#[derive(Clone, Default)]
pub struct Services {
    docker: Docker,
}

impl Services {
    /// Nothing connects here: each part connects on its first use.
    pub fn new() -> Self {
        Self::default()
    }

    pub fn docker(&self) -> &Docker {
        &self.docker
    }
}
