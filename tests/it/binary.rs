//! Properties of the binary itself (the debug build, or the release binary that
//! `LIFEOS_TEST_BIN=$(scripts/build-release.sh)` points the suite at).

use std::io::Read;

use crate::support::lifeos_bin;

/// The ELF header of the binary under test: (`e_type`, whether a `.debug_info` section is there).
fn elf_facts() -> (u16, bool) {
    let mut bytes = Vec::new();
    std::fs::File::open(lifeos_bin())
        .expect("the binary under test")
        .read_to_end(&mut bytes)
        .unwrap();
    assert_eq!(&bytes[..4], b"\x7fELF", "not an ELF file");
    assert_eq!(bytes[4], 2, "expected a 64-bit ELF");
    assert_eq!(bytes[5], 1, "expected little-endian");
    let e_type = u16::from_le_bytes([bytes[16], bytes[17]]);
    let has_debug_info = bytes.windows(11).any(|w| w == b".debug_info");
    (e_type, has_debug_info)
}

/// ASLR needs a position-independent executable: ET_DYN (3), never ET_EXEC (2). lifeos holds
/// registry credentials and database secrets; start-up speed is no reason to give that up.
#[test]
fn the_binary_is_position_independent() {
    let (e_type, _) = elf_facts();
    assert_eq!(e_type, 3, "e_type {e_type}: the binary is not a PIE");
}

/// A release binary ships without debug info (the `profiling` profile keeps it for perf).
#[test]
fn a_release_binary_has_no_debug_info() {
    let (_, has_debug_info) = elf_facts();
    let release = std::env::var_os("LIFEOS_TEST_BIN").is_some() || !cfg!(debug_assertions);
    if release {
        assert!(!has_debug_info, "the release binary carries .debug_info");
    } else {
        // The debug build keeps it: this proves the check sees debug info when it is there.
        assert!(
            has_debug_info,
            "the check did not find .debug_info in a debug build"
        );
    }
}
