//! Reading lifeos.toml: a regular file of bounded size, in UTF-8. `-f /dev/zero`, a FIFO or
//! a directory fail at once instead of reading (or waiting) forever.

use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

use crate::diagnostic::Diagnostic;

/// Far beyond any real config (10,000 tasks are ~1 MiB), small enough to read at once.
pub const MAX_BYTES: u64 = 4 << 20;

pub enum SourceError {
    /// No place in the file to point at: missing, not a file, too big.
    Usage(String),
    /// Not UTF-8: the text up to the bad byte (lossy) and an error pointing at it.
    Encoding(String, Diagnostic),
}

pub fn read(file: &Path) -> Result<String, SourceError> {
    let shown = file.display();
    let usage = |m: String| SourceError::Usage(m);
    // O_NONBLOCK: opening a FIFO would otherwise wait for a writer.
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(file)
        .map_err(|e| usage(format!("cannot read {shown}: {e}")))?;
    let meta = f
        .metadata()
        .map_err(|e| usage(format!("cannot read {shown}: {e}")))?;
    if !meta.is_file() {
        let t = meta.file_type();
        let what = if t.is_dir() {
            "a directory"
        } else if t.is_char_device() {
            "a character device"
        } else if t.is_block_device() {
            "a block device"
        } else if t.is_fifo() {
            "a FIFO"
        } else if t.is_socket() {
            "a socket"
        } else {
            "not a regular file"
        };
        return Err(usage(format!(
            "cannot read {shown}: it is {what}, not a file\n  pass the path of a lifeos.toml with -f"
        )));
    }
    let too_big = || {
        usage(format!(
            "cannot read {shown}: larger than {} MiB, the most a config may be",
            MAX_BYTES >> 20
        ))
    };
    if meta.len() > MAX_BYTES {
        return Err(too_big());
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    f.take(MAX_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| usage(format!("cannot read {shown}: {e}")))?;
    if bytes.len() as u64 > MAX_BYTES {
        return Err(too_big());
    }
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let bytes = e.into_bytes();
        let bad = bytes[at];
        let before = std::str::from_utf8(&bytes[..at]).expect("valid up to here");
        let line = before.matches('\n').count() + 1;
        let col = before[before.rfind('\n').map_or(0, |i| i + 1)..]
            .chars()
            .count()
            + 1;
        // The valid prefix is the same in the lossy text, so the span still fits.
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let end = text[at..].chars().next().map_or(at, |c| at + c.len_utf8());
        SourceError::Encoding(
            text,
            Diagnostic::new(format!(
                "{} is not UTF-8: byte 0x{bad:02X} at line {line}, column {col} (byte offset {at})",
                file.file_name()
                    .map(|n| n.to_string_lossy())
                    .unwrap_or_default()
            ))
            .at(at..end, "not UTF-8")
            .help("save the file as UTF-8"),
        )
    })
}
