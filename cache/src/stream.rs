//! Streaming copy and hash: a file's content passes through a fixed-size buffer, never whole
//! in memory, and holes are skipped on both sides (SEEK_DATA/SEEK_HOLE to find them, zero
//! blocks not written), so a sparse file stays sparse and a 2 GiB output needs no 2 GiB of RAM.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

use crate::digest::FileDigest;

const CHUNK: usize = 1 << 20;
/// Zero blocks of this size are left as holes in the copy.
const BLOCK: usize = 64 * 1024;
/// From this size a file is hashed with rayon (as `update_mmap_rayon` did, without the mmap:
/// mapped pages would count as the process's memory).
const PARALLEL_BYTES: u64 = 4 << 20;

static ZEROS: [u8; BLOCK] = [0; BLOCK];

/// Hash `src` from its start and, with `dst`, copy it there. Returns the digest and the length.
pub fn copy_hash(src: &File, dst: Option<&File>) -> io::Result<(FileDigest, u64)> {
    let len = src.metadata()?.len();
    let parallel = len >= PARALLEL_BYTES;
    let mut h = blake3::Hasher::new();
    let update = |h: &mut blake3::Hasher, b: &[u8]| {
        if parallel {
            h.update_rayon(b);
        } else {
            h.update(b);
        }
    };
    let mut buf = vec![0u8; CHUNK.min(len as usize).max(1)];
    let mut pos = 0u64;
    while pos < len {
        // A small file is read whole: two seeks would cost more than they could save.
        let data = if len < CHUNK as u64 {
            pos
        } else {
            seek(src, pos, libc::SEEK_DATA).unwrap_or(pos).min(len)
        };
        while pos < data {
            let n = (data - pos).min(BLOCK as u64) as usize;
            h.update(&ZEROS[..n]);
            pos += n as u64;
        }
        if pos >= len {
            break;
        }
        let hole = if len < CHUNK as u64 {
            len
        } else {
            seek(src, pos, libc::SEEK_HOLE)
                .unwrap_or(len)
                .clamp(pos + 1, len)
        };
        while pos < hole {
            let n = (hole - pos).min(buf.len() as u64) as usize;
            let got = src.read_at(&mut buf[..n], pos)?;
            if got == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the file shrank while it was read",
                ));
            }
            let b = &buf[..got];
            update(&mut h, b);
            if let Some(d) = dst {
                for (i, block) in b.chunks(BLOCK).enumerate() {
                    if block.iter().any(|&x| x != 0) {
                        d.write_all_at(block, pos + (i * BLOCK) as u64)?;
                    }
                }
            }
            pos += got as u64;
        }
    }
    if let Some(d) = dst {
        // Trailing zeros were skipped: the length makes them (a hole).
        d.set_len(len)?;
    }
    Ok((FileDigest::from_hash(h.finalize()), len))
}

/// The next data (or hole) offset at or after `pos`; None when the file system cannot say,
/// which makes the caller read everything. ENXIO for SEEK_DATA means "no data after pos".
fn seek(f: &File, pos: u64, whence: libc::c_int) -> Option<u64> {
    // SAFETY: lseek on a descriptor we own; it only moves the file offset, which this module
    // never relies on (it reads and writes with pread/pwrite).
    let r = unsafe { libc::lseek(f.as_raw_fd(), pos as libc::off_t, whence) };
    if r >= 0 {
        return Some(r as u64);
    }
    match io::Error::last_os_error().raw_os_error() {
        Some(libc::ENXIO) if whence == libc::SEEK_DATA => Some(u64::MAX),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn copies_hashes_and_keeps_holes() {
        let t = tempfile::tempdir().unwrap();
        let src_path = t.path().join("sparse");
        let src = File::create(&src_path).unwrap();
        src.write_all_at(b"head", 0).unwrap();
        src.write_all_at(b"tail", 64 << 20).unwrap();
        drop(src);
        let expected = {
            let mut h = blake3::Hasher::new();
            h.update_reader(File::open(&src_path).unwrap()).unwrap();
            FileDigest::from_hash(h.finalize())
        };
        let src = File::open(&src_path).unwrap();
        let dst_path = t.path().join("copy");
        let dst = File::create(&dst_path).unwrap();
        let (d, len) = copy_hash(&src, Some(&dst)).unwrap();
        assert_eq!(d, expected);
        assert_eq!(len, (64 << 20) + 4);
        let m = std::fs::metadata(&dst_path).unwrap();
        assert_eq!(m.len(), len);
        assert!(
            m.blocks() * 512 < 1 << 20,
            "copy allocated {} blocks",
            m.blocks()
        );
        assert_eq!(
            std::fs::read(&dst_path).unwrap(),
            std::fs::read(&src_path).unwrap()
        );

        let empty = File::create(t.path().join("empty")).unwrap();
        let (d, len) = copy_hash(&empty, None).unwrap();
        assert_eq!((d, len), (FileDigest::of(b""), 0));
    }
}
