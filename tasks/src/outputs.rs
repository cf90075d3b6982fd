//! Declared outputs: checked against the record on a hit, restored from the blob store when
//! missing or changed, so a cached task leaves the tree as if it had run. Restores stream
//! through a temp file beside the output (holes stay holes) and check each blob against its
//! digest on the way: a corrupt blob makes the task a miss, and its rerun replaces the blob.

use std::fs;
use std::io;
use std::path::Path;

use lifeos_cache::{names, Cas, OutputFile, Snapshot};

pub enum OutputState {
    Intact,
    /// These need restoring.
    Stale(Vec<OutputFile>),
    /// The blob store lost content they need: the task must run.
    Unrestorable(String),
}

pub fn check(snapshot: &Snapshot, outputs: &[OutputFile], blobs: &dyn Cas) -> OutputState {
    let mut stale = Vec::new();
    for o in outputs {
        // Stat and stat cache: an intact output is not read. A symlink output is compared by
        // its link text (what its blob holds).
        let current = match snapshot.stat(&o.path) {
            Ok(Some(meta)) if meta.symlink && o.symlink => {
                lifeos_cache::snapshot::link_digest(&meta.path_in(snapshot.root())).ok()
            }
            Ok(Some(meta)) if meta.symlink == o.symlink => snapshot.digest(&meta).ok(),
            _ => None,
        };
        if current != Some(o.digest) {
            stale.push(o.clone());
        }
    }
    if let Some(o) = stale.iter().find(|o| !blobs.contains(&o.digest)) {
        return OutputState::Unrestorable(format!(
            "cached output {} is gone from the blob store",
            names::display(&o.path)
        ));
    }
    if stale.is_empty() {
        OutputState::Intact
    } else {
        OutputState::Stale(stale)
    }
}

/// Why a restore failed: a corrupt blob (the task must run again) or an I/O error.
pub enum RestoreError {
    Corrupt(String),
    Io(io::Error),
}

impl From<io::Error> for RestoreError {
    fn from(e: io::Error) -> Self {
        RestoreError::Io(e)
    }
}

fn corrupt_message(o: &OutputFile) -> String {
    format!(
        "cached output {} is corrupt (blob {}); running the task again replaces it",
        names::display(&o.path),
        o.digest
    )
}

/// `plan`: would a restore succeed? Reads the blobs, writes nothing.
pub fn verify(files: &[OutputFile], blobs: &dyn Cas) -> Result<(), String> {
    for o in files {
        if blobs.verify(&o.digest).is_err() {
            return Err(corrupt_message(o));
        }
    }
    Ok(())
}

pub fn restore(root: &Path, files: &[OutputFile], blobs: &dyn Cas) -> Result<(), RestoreError> {
    for o in files {
        let dst = names::to_path(root, &o.path);
        let corrupt = |e: io::Error| {
            if e.kind() == io::ErrorKind::InvalidData {
                RestoreError::Corrupt(corrupt_message(o))
            } else {
                RestoreError::Io(e)
            }
        };
        // Check the blob before the output's current file is touched.
        let link = if o.symlink {
            Some(blobs.get(&o.digest).map_err(corrupt)?)
        } else {
            None
        };
        if let Some(dir) = dst.parent() {
            fs::create_dir_all(dir)?;
        }
        if let Ok(m) = fs::symlink_metadata(&dst) {
            if m.is_dir() {
                fs::remove_dir_all(&dst)?;
            } else if o.symlink {
                fs::remove_file(&dst)?;
            }
        }
        match link {
            Some(bytes) => {
                let target = <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(&bytes);
                std::os::unix::fs::symlink(target, &dst)?;
            }
            // Renamed over whatever is at `dst` (a stale file, a link: never written through).
            None => blobs.restore_to(&o.digest, &dst, o.mode).map_err(corrupt)?,
        }
    }
    Ok(())
}
