//! Does a base image hold a symlink at, above or under some paths? What a narrowed image key
//! relies on (see `image/dockerfile/narrow.rs`). Asked of the engine through a container
//! that is created, never started, and always removed; the answer is kept per image ID and
//! path set in `.lifeos/base-links/`, so a no-op reads one small file and makes no container.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;

use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{
    ContainerArchiveInfoOptionsBuilder, DownloadFromContainerOptionsBuilder,
    RemoveContainerOptionsBuilder,
};
use futures_util::StreamExt;

use super::{Docker, QUICK};

/// Go's `os.ModeSymlink` and `os.ModeDir`, as the archive stat header carries them.
const MODE_SYMLINK: u32 = 1 << 27;
const MODE_DIR: u32 = 1 << 31;
/// A directory that exists in the image is read as a tar to look for links below it; past
/// this size the answer is "not known" (the key then counts the whole reads).
const TREE_LIMIT: usize = 16 << 20;
/// What a container's init layer puts over the image (and the directories holding it): the
/// engine shows these, not what the image has there, so a path at, under or above one is
/// never known to be link-free.
const INIT_LAYER: &[&str] = &["/dev", "/proc", "/sys", "/etc", "/.dockerenv"];
/// Labels the checking container, for `docker ps -a` and for finding one a killed run left.
pub const ROLE_LABEL: &str = "lifeos.role";
pub const ROLE: &str = "base-links";

impl Docker {
    /// True only when image `id` certainly has no ONBUILD trigger and no symlink at, above
    /// or under any of `paths` (absolute, cleaned). Any failure or doubt: false.
    pub async fn free_of_links(&self, id: &str, paths: &BTreeSet<String>) -> bool {
        if !id.starts_with("sha256:") {
            // "absent": the build will pull whatever the registry has.
            return false;
        }
        let file = self.links_file(id, paths);
        if let Some(f) = &file {
            match std::fs::read(f).as_deref() {
                Ok(b"free") => return true,
                Ok(b"links") => return false,
                _ => {}
            }
        }
        // On its own task: a run cancelled meanwhile still removes the container.
        let (me, owned_id, owned) = (self.clone(), id.to_string(), paths.clone());
        let asked = tokio::spawn(async move { me.ask_links(&owned_id, &owned).await });
        let Ok(Some(free)) = asked.await else {
            return false;
        };
        if let Some(f) = &file {
            // Losing the record costs only the next run a container.
            let _ = f
                .parent()
                .map(std::fs::create_dir_all)
                .transpose()
                .and_then(|_| {
                    lifeos_cache::atomic::write(f, if free { b"free" } else { b"links" })
                });
        }
        free
    }

    fn links_file(&self, id: &str, paths: &BTreeSet<String>) -> Option<PathBuf> {
        let dir = self.view_path.get()?.parent()?.join("base-links");
        let mut named = id.to_string();
        for p in paths {
            named.push('\0');
            named.push_str(p);
        }
        Some(dir.join(lifeos_cache::FileDigest::of(named.as_bytes()).to_hex()))
    }

    /// The engine's answer; None when it could not be had.
    async fn ask_links(&self, id: &str, paths: &BTreeSet<String>) -> Option<bool> {
        let d = self.connected().await.ok()?;
        sweep_once(&d).await;
        let img = tokio::time::timeout(QUICK, d.inspect_image(id))
            .await
            .ok()?
            .ok()?;
        let config = img.config.unwrap_or_default();
        // Triggers run in the stage; a volume's content, not the image's, is what the
        // engine would show at its path.
        if config.on_build.is_some_and(|t| !t.is_empty())
            || config.volumes.is_some_and(|v| !v.is_empty())
        {
            return Some(false);
        }
        if paths
            .iter()
            .any(|p| INIT_LAYER.iter().any(|i| under(p, i) || under(i, p)))
        {
            return Some(false);
        }
        let labels = HashMap::from([
            (ROLE_LABEL.to_string(), ROLE.to_string()),
            (
                crate::container::owner::OWNER_LABEL.to_string(),
                crate::container::owner::label_value(),
            ),
        ]);
        let body = ContainerCreateBody {
            image: Some(id.to_string()),
            // Never started: a command only so that an image without one can be created.
            cmd: Some(vec!["/lifeos-never-run".into()]),
            network_disabled: Some(true),
            labels: Some(labels),
            ..Default::default()
        };
        let created = tokio::time::timeout(QUICK, d.create_container(None, body))
            .await
            .ok()?
            .ok()?;
        let answer = links_in(&d, &created.id, paths).await;
        // With its anonymous volumes, if the image declared any.
        let _ = d
            .remove_container(
                &created.id,
                Some(
                    RemoveContainerOptionsBuilder::default()
                        .force(true)
                        .v(true)
                        .build(),
                ),
            )
            .await;
        answer
    }
}

/// Once per process, before its first checking container: remove those that runs killed
/// mid-check left behind (a SIGKILLed lifeos cannot remove its own).
async fn sweep_once(d: &bollard::Docker) {
    static DONE: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    if DONE.set(()).is_err() {
        return;
    }
    let label = format!("{ROLE_LABEL}={ROLE}");
    for (name, pid) in crate::container::owner::remove_dead_labelled(d, &label).await {
        eprintln!(
            "lifeos: removed container {name}, a base image check left by a lifeos run that died (pid {pid})"
        );
    }
}

/// Walk each path down from the root in container `c`: a link on the way or at the end is
/// a no; a missing component ends the walk; a directory at the end is read for links below.
async fn links_in(d: &bollard::Docker, c: &str, paths: &BTreeSet<String>) -> Option<bool> {
    let mut checked = BTreeSet::new();
    for path in paths {
        let mut at = String::new();
        let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let mut last = None;
        for part in &parts {
            at.push('/');
            at.push_str(part);
            if !checked.insert(at.clone()) && at != *path {
                continue;
            }
            let opts = ContainerArchiveInfoOptionsBuilder::default()
                .path(&at)
                .build();
            match tokio::time::timeout(QUICK, d.get_container_archive_info(c, Some(opts))).await {
                Err(_) => return None,
                Ok(Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404,
                    ..
                })) => {
                    last = None;
                    break;
                }
                Ok(Err(_)) => return None,
                Ok(Ok(stat)) => {
                    if stat.file_mode & MODE_SYMLINK != 0 || !stat.link_target.is_empty() {
                        return Some(false);
                    }
                    last = Some(stat.file_mode);
                }
            }
        }
        // The root is a directory; a path that exists as one may hold links below it.
        let is_dir = if parts.is_empty() {
            true
        } else {
            last.is_some_and(|m| m & MODE_DIR != 0)
        };
        if is_dir && tree_has_link(d, c, path).await? {
            return Some(false);
        }
    }
    Some(true)
}

/// Does the tree at `path` in container `c` hold a symlink? None: too big or unreadable.
async fn tree_has_link(d: &bollard::Docker, c: &str, path: &str) -> Option<bool> {
    let opts = DownloadFromContainerOptionsBuilder::default()
        .path(path)
        .build();
    let mut stream = d.download_from_container(c, Some(opts));
    let mut tar = Vec::new();
    while let Some(chunk) = tokio::time::timeout(QUICK, stream.next()).await.ok()? {
        tar.extend_from_slice(&chunk.ok()?);
        if tar.len() > TREE_LIMIT {
            return None;
        }
    }
    let mut archive = tar::Archive::new(tar.as_slice());
    for entry in archive.entries().ok()? {
        if entry.ok()?.header().entry_type() == tar::EntryType::Symlink {
            return Some(true);
        }
    }
    Some(false)
}

/// `a` at or under `b` (both absolute and cleaned).
fn under(a: &str, b: &str) -> bool {
    b == "/" || a == b || a.strip_prefix(b).is_some_and(|r| r.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_the_init_layer_covers_is_never_known() {
        let hit = |p: &str| INIT_LAYER.iter().any(|i| under(p, i) || under(i, p));
        assert!(hit("/") && hit("/etc/app") && hit("/dev") && hit("/.dockerenv"));
        assert!(!hit("/src") && !hit("/usr/etc") && !hit("/etcetera") && !hit("/app/dev"));
    }
}
