//! Declared outputs: checked against the record on a hit, restored from the blob store when
//! missing or changed, so a cached task leaves the tree as if it had run.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use lifeos_cache::{BlobStore, OutputFile, Snapshot};

pub enum OutputState {
    Intact,
    /// These need restoring.
    Stale(Vec<OutputFile>),
    /// The blob store lost content they need: the task must run.
    Unrestorable(String),
}

pub fn check(snapshot: &Snapshot, outputs: &[OutputFile], blobs: &BlobStore) -> OutputState {
    let mut stale = Vec::new();
    for o in outputs {
        // Stat and stat cache: an intact output is not read.
        let current = match snapshot.stat(&o.path) {
            Ok(Some(meta)) => snapshot.digest(&meta).ok(),
            _ => None,
        };
        if current != Some(o.digest) {
            stale.push(o.clone());
        }
    }
    if let Some(o) = stale.iter().find(|o| !blobs.contains(&o.digest)) {
        return OutputState::Unrestorable(format!(
            "cached output {} is gone from the blob store",
            o.path
        ));
    }
    if stale.is_empty() {
        OutputState::Intact
    } else {
        OutputState::Stale(stale)
    }
}

pub fn restore(root: &Path, files: &[OutputFile], blobs: &BlobStore) -> io::Result<()> {
    for o in files {
        let bytes = blobs.get(&o.digest)?;
        let dst = root.join(&o.path);
        if let Some(dir) = dst.parent() {
            fs::create_dir_all(dir)?;
        }
        if let Ok(m) = fs::symlink_metadata(&dst) {
            if m.is_dir() {
                fs::remove_dir_all(&dst)?;
            } else {
                fs::remove_file(&dst)?;
            }
        }
        if o.symlink {
            let target = String::from_utf8_lossy(&bytes).into_owned();
            std::os::unix::fs::symlink(target, &dst)?;
        } else {
            lifeos_cache::atomic::write(&dst, &bytes)?;
            fs::set_permissions(&dst, fs::Permissions::from_mode(o.mode))?;
        }
    }
    Ok(())
}
