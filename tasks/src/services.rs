//! The one bundle of outside connections kinds use, made by the binary and shared by every
//! node: the Docker engine client (connected on first use, never while the config loads)
//! and the download cache for URL inputs. Registry HTTP and credentials join it as kinds
//! need them.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use crate::docker::Docker;

#[derive(Clone, Default)]
pub struct Services {
    docker: Docker,
    downloads: Arc<Downloads>,
}

/// Where URL inputs are kept (`<cache>/downloads`), and whether the network may be used.
#[derive(Default)]
pub struct Downloads {
    dir: OnceLock<PathBuf>,
    offline: OnceLock<bool>,
    /// Made on first use, on a blocking thread (its client may not be made in async code).
    cache: OnceLock<Result<cached_path::Cache, String>>,
}

impl Services {
    /// Nothing connects here: each part connects on its first use.
    pub fn new() -> Self {
        Self::default()
    }

    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    /// Set once, when the cache directory is known; `offline`: `--offline`.
    pub fn keep_downloads_in(&self, dir: PathBuf, offline: bool) {
        let _ = self.downloads.dir.set(dir);
        let _ = self.downloads.offline.set(offline);
    }

    pub fn downloads(&self) -> Arc<Downloads> {
        self.downloads.clone()
    }

    /// The cache directory (where downloads are kept, one level up), once it is known:
    /// kinds keep small state of their own under it (Cloud Run's serving history).
    pub fn cache_dir(&self) -> Option<PathBuf> {
        self.downloads
            .dir
            .get()
            .and_then(|d| d.parent())
            .map(|p| p.to_path_buf())
    }
}

impl Downloads {
    pub fn offline(&self) -> bool {
        self.offline.get().copied().unwrap_or(false)
    }

    /// The cached-path cache. Call from a blocking thread.
    pub fn cache(&self) -> Result<&cached_path::Cache, String> {
        self.cache
            .get_or_init(|| {
                let dir = self
                    .dir
                    .get()
                    .cloned()
                    .ok_or("no cache directory for downloads")?;
                // Inside the cache directory, which a run has made (and tagged) by now.
                lifeos_cache::safe_fs::ensure_dir(&dir).map_err(|e| {
                    format!("cannot make the download directory {}: {e}", dir.display())
                })?;
                cached_path::Cache::builder()
                    .dir(dir)
                    .offline(self.offline())
                    .connect_timeout(std::time::Duration::from_secs(10))
                    .timeout(std::time::Duration::from_secs(300))
                    .max_retries(2)
                    .build()
                    .map_err(|e| format!("cannot set up downloads: {e}"))
            })
            .as_ref()
            .map_err(Clone::clone)
    }
}
