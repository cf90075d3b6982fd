//! Transparent huge pages (THP), switched by the size of the run.
//!
//! mimalloc advises its arena `MADV_HUGEPAGE`, so every 2 MiB region a run touches is faulted
//! in and zeroed whole. A ~2 ms no-op touches a few hundred KiB spread over several regions;
//! zeroing whole huge pages was a quarter of its CPU samples (`clear_page_erms`), and it ran
//! fastest when the kernel happened to have no free huge page. A 10,000-task run is the other
//! way round: huge pages save it 20–30 ms of 4 KiB faults (benches/README.md).
//!
//! So the binary turns THP off for the process before its first allocation (main.rs) and
//! lifeos turns it back on when the project turns out big, and before it starts any child
//! process, which would otherwise inherit the setting.

use std::sync::atomic::{AtomicBool, Ordering};

static OFF: AtomicBool = AtomicBool::new(false);

/// THP off for this process. Allocates nothing: main.rs calls it before the runtime starts.
pub extern "C" fn disable() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: a plain prctl on our own process.
        if unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) } == 0 {
            OFF.store(true, Ordering::Relaxed);
        }
    }
}

/// THP back to the system's setting (nothing to do unless `disable` took effect).
pub fn allow() {
    #[cfg(target_os = "linux")]
    if OFF.swap(false, Ordering::Relaxed) {
        // SAFETY: as above.
        unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 0, 0, 0, 0) };
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// Whether THP is off for this process now (the kernel's answer, not ours).
    fn disabled() -> bool {
        // SAFETY: a plain prctl; PR_GET_THP_DISABLE returns the flag.
        unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) == 1 }
    }

    /// What a child process started now reports: "THP_enabled:\t0" or "...1".
    fn child_sees() -> String {
        let out = std::process::Command::new("grep")
            .args(["THP_enabled", "/proc/self/status"])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    #[test]
    fn off_then_back_on_and_children_see_the_system_setting() {
        disable();
        assert!(disabled(), "PR_SET_THP_DISABLE did not take");
        // Why `allow` must come before a spawn: children inherit the flag.
        assert_eq!(child_sees(), "THP_enabled:\t0");
        allow();
        assert!(!disabled());
        assert_eq!(child_sees(), "THP_enabled:\t1");
        allow(); // twice is fine
        assert!(!disabled());
    }
}
