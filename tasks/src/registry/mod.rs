//! Registries: credentials the way Docker users have them, registry calls through the
//! engine (with bounded retries), and the `push` kind.

pub mod access;
pub mod cache;
pub mod client;
pub mod credentials;
mod kind;
pub mod push;
pub mod reference;
pub mod remote;

pub use kind::PushKind;
pub use push::{PushSpec, PushTask};
