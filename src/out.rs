//! Standard output that never panics: `lifeos plan | head -1` closes the pipe after one line,
//! and `println!` panics on the EPIPE that follows. A closed stdout ends the output quietly;
//! the command itself goes on (a run still finishes, records and cleans up) and exits as it
//! would have.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

static CLOSED: AtomicBool = AtomicBool::new(false);

/// Write to stdout; after a write error (the reader went away) write nothing more.
pub fn write(args: std::fmt::Arguments) {
    if CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if out.write_fmt(args).and_then(|()| out.flush()).is_err() {
        CLOSED.store(true, Ordering::Relaxed);
    }
}

/// `println!` for command output: a closed pipe is not an error (see [`write`]).
#[macro_export]
macro_rules! outln {
    ($($t:tt)*) => {
        $crate::out::write(format_args!("{}\n", format_args!($($t)*)))
    };
}

/// `print!` for command output (see [`write`]).
#[macro_export]
macro_rules! out {
    ($($t:tt)*) => {
        $crate::out::write(format_args!($($t)*))
    };
}
