//! lifeos-engine: the task graph and how it runs.
//!
//! - [`task`]: the `Task` trait every kind implements, and the contexts it is given.
//! - [`deps`]: dependency results (`${tasks.NAME.FIELD}`).
//! - [`fingerprint`]: what a key covers, the typed `Key`, and why two fingerprints differ.
//! - [`graph`]: the DAG (petgraph), selection, cycles, rendering.
//! - [`scheduler`]: runs a selection in parallel; the cache check is a layer before `execute`.
//! - [`event`]: the one `Event` enum that UIs subscribe to. The engine never prints.

mod cache_layer;
pub mod deps;
pub mod duration;
pub mod event;
pub mod fingerprint;
pub mod graph;
pub mod redact;
pub mod scheduler;
pub mod task;

pub use deps::{DepResult, Deps};
pub use event::{Event, Outcome, Reason, Stream, Summary};
pub use fingerprint::{Change, Fingerprint, Key};
pub use graph::{Graph, GraphError, GraphFormat};
pub use redact::Redactor;
pub use scheduler::{RunOptions, RunReport};
pub use task::{
    CachePolicy, Class, EnvVar, ExecCx, Executed, KeyCx, LogSink, Node, Probe, ProbeCx, Task,
    TaskError, TaskInputs, TaskSpec,
};
