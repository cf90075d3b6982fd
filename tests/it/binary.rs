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
    let has_debug_info = section_names(&bytes).iter().any(|n| n == ".debug_info");
    (e_type, has_debug_info)
}

/// The names in the section header table (not a byte search: std's symbolizer carries the
/// string ".debug_info" in every binary).
fn section_names(elf: &[u8]) -> Vec<String> {
    let u16_at = |o: usize| u16::from_le_bytes(elf[o..o + 2].try_into().unwrap()) as usize;
    let u32_at = |o: usize| u32::from_le_bytes(elf[o..o + 4].try_into().unwrap()) as usize;
    let u64_at = |o: usize| u64::from_le_bytes(elf[o..o + 8].try_into().unwrap()) as usize;
    let (shoff, shentsize, shnum, shstrndx) =
        (u64_at(0x28), u16_at(0x3a), u16_at(0x3c), u16_at(0x3e));
    let header = |i: usize| shoff + i * shentsize;
    let strtab = u64_at(header(shstrndx) + 0x18);
    (0..shnum)
        .map(|i| {
            let start = strtab + u32_at(header(i));
            let end = start + elf[start..].iter().position(|&b| b == 0).unwrap();
            String::from_utf8_lossy(&elf[start..end]).into_owned()
        })
        .collect()
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
