//! URL inputs: fetched once into the cache's `downloads/` with cached-path, revalidated by
//! ETag on later runs, and keyed by the blake3 of their content, not by the URL or the ETag:
//! the copy kept for `--offline` keys the same as a fresh one.

use std::path::PathBuf;

use crate::services::Downloads;

pub struct Fetched {
    pub url: String,
    pub path: PathBuf,
    /// blake3 of the content, as the key's input digest.
    pub digest: String,
}

/// Fetch (or find kept) every URL. Call from a blocking thread. The error names the URL and
/// what to do.
pub fn fetch_all(downloads: &Downloads, urls: &[String]) -> Result<Vec<Fetched>, String> {
    let cache = downloads.cache()?;
    urls.iter()
        .map(|url| {
            let path = cache.cached_path(url).map_err(|e| {
                if downloads.offline() {
                    format!("URL input {url}: no kept copy for --offline ({e}); run once online first")
                } else {
                    format!("URL input {url}: cannot fetch it: {e}; --offline uses the copy kept from an earlier run")
                }
            })?;
            let digest = lifeos_cache::snapshot::hash_file(&path, false)
                .map_err(|e| format!("URL input {url}: cannot read its copy {}: {e}", path.display()))?;
            Ok(Fetched {
                url: url.clone(),
                path,
                digest: digest.to_hex(),
            })
        })
        .collect()
}
