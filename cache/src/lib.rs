//! lifeos-cache: everything lifeos keeps on disk.
//!
//! - [`digest`]: typed blake3 digests (a file digest is not an action key).
//! - [`snapshot`]: one file-system view per run; the stat cache decides what to re-hash.
//! - [`blobs`]: content-addressed store for outputs, logs and fingerprints.
//! - [`records`]: action records (key → result) and the per-task index a no-op run loads.
//! - [`action_cache`], [`cas`]: the ports the scheduler talks to (the local store implements
//!   both); [`layered`]: a store in front of another; [`remote`]: the Bazel-HTTP remote.
//! - [`run_lock`]: one run at a time per cache.
//! - [`dir`]: the cache directory layout, its lock, stats, prune and clean.
//! - [`marker`]: the `CACHEDIR.TAG` that makes a directory lifeos's, and lifeos's own names.
//! - [`safe_fs`], [`stream`], [`names`]: no symlink followed in the cache, private modes,
//!   streaming sparse-aware copies, non-UTF-8 file names.

pub mod action_cache;
pub mod atomic;
pub mod blobs;
pub mod cas;
pub mod digest;
pub mod dir;
pub mod index_bin;
pub mod inputs;
pub mod layered;
pub mod marker;
pub mod names;
pub mod records;
pub mod remote;
pub mod run_lock;
pub mod safe_fs;
pub mod snapshot;
pub mod stream;

pub use action_cache::ActionCache;
pub use blobs::BlobStore;
pub use cas::Cas;
pub use digest::{ActionKey, FileDigest};
pub use dir::{CacheDir, CacheError};
pub use inputs::{InputSet, InputSetError};
pub use layered::{LayeredActionCache, LayeredCas};
pub use records::{ActionRecord, OutputFile, RecordStore};
pub use remote::{HttpRemote, RemoteConfig, RemoteStats};
pub use run_lock::RunLock;
pub use snapshot::{FileMeta, Snapshot};
