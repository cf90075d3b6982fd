//! Exit codes, one meaning each.

pub const OK: i32 = 0;
/// A task failed.
pub const TASK_FAILED: i32 = 1;
/// Config or usage error: nothing ran.
pub const USAGE: i32 = 2;
/// The environment is not as lifeos needs it (Docker unreachable, cache not writable).
pub const ENVIRONMENT: i32 = 3;
pub const INTERRUPTED: i32 = 130;
