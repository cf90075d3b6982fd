//! One sync batch as the resident receiver reads it (receiver.sh): a header line
//! `F <seq> <pre> <tar> <links> <uid>:<gid>`, then three sections of exactly those byte
//! counts. The receiver checks `seq` (1, 2, ...): a stream out of step ends it.
//! Counts, not markers: tar reads past its own end-of-archive, so the stream is cut by length.
//!
//! - pre: NUL-terminated ops run before the tar: `r<path>` removes (the batch's deletes),
//!   `d<path>` / `f<path>` clear whatever would keep tar from making that directory / file
//!   (the archive endpoint removes it too);
//! - tar: the batch's directories and files, as the archive endpoint would get them;
//! - links: NUL-terminated paths (relative to `/`) of the symlinks in the tar, to `chown -h`.

use super::sync::{Changes, Packed};

#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pre: Vec<u8>,
    tar: Vec<u8>,
    links: Vec<u8>,
    owner: (u64, u64),
}

impl Frame {
    /// None when a path has a NUL (no real path has; the sections are NUL-separated).
    pub fn new(owner: (u64, u64), changes: &Changes, packed: Packed) -> Option<Frame> {
        let mut pre = Vec::new();
        let ops = changes
            .deletes
            .iter()
            .map(|p| (b'r', p))
            .chain(changes.dirs.iter().map(|p| (b'd', p)))
            .chain(changes.files.iter().map(|f| (b'f', &f.path)));
        for (op, path) in ops {
            if path.contains('\0') {
                return None;
            }
            pre.push(op);
            pre.extend_from_slice(path.as_bytes());
            pre.push(0);
        }
        let mut links = Vec::new();
        for l in &packed.links {
            if l.contains('\0') {
                return None;
            }
            links.extend_from_slice(l.trim_start_matches('/').as_bytes());
            links.push(0);
        }
        Some(Frame {
            pre,
            tar: packed.tar,
            links,
            owner,
        })
    }

    /// The header line (`seq`: this frame's number for its receiver, from 1), then the
    /// sections, in the order they are written.
    pub fn parts(&self, seq: u64) -> [std::borrow::Cow<'_, [u8]>; 4] {
        let header = format!(
            "F {seq} {} {} {} {}:{}\n",
            self.pre.len(),
            self.tar.len(),
            self.links.len(),
            self.owner.0,
            self.owner.1
        );
        [
            header.into_bytes().into(),
            self.pre.as_slice().into(),
            self.tar.as_slice().into(),
            self.links.as_slice().into(),
        ]
    }

    /// Its tar, for the archive endpoint when the receiver cannot take it.
    pub fn into_tar(self) -> Vec<u8> {
        self.tar
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::sync::Upsert;

    #[test]
    fn sections_are_counted_and_nul_terminated() {
        let changes = Changes {
            deletes: vec!["/srv/www/old".into()],
            dirs: vec!["/srv/www/new".into()],
            files: vec![
                Upsert {
                    path: "/srv/www/new/a b\n".into(),
                    host: "x".into(),
                    mode: 0o644,
                },
                Upsert {
                    path: "/srv/www/ln".into(),
                    host: "y".into(),
                    mode: 0o777,
                },
            ],
        };
        let f = Frame::new(
            (65534, 65533),
            &changes,
            Packed {
                tar: vec![7; 1024],
                links: vec!["/srv/www/ln".into()],
            },
        )
        .unwrap();
        let pre = b"r/srv/www/old\0d/srv/www/new\0f/srv/www/new/a b\n\0f/srv/www/ln\0";
        let [h, p, t, l] = f.parts(3);
        assert_eq!(
            String::from_utf8(h.to_vec()).unwrap(),
            format!("F 3 {} 1024 11 65534:65533\n", pre.len())
        );
        assert_eq!(&p[..], &pre[..]);
        assert_eq!(t.len(), 1024);
        assert_eq!(&l[..], b"srv/www/ln\0");

        let bad = Changes {
            deletes: vec!["/a\0b".into()],
            ..Default::default()
        };
        let none = Packed {
            tar: vec![],
            links: vec![],
        };
        assert!(Frame::new((0, 0), &bad, none).is_none());
    }
}
