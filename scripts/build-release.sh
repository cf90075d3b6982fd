#!/usr/bin/env bash
# Build the release lifeos and print its path (the only line on stdout; cargo talks on stderr).
#
# Where the toolchain can, this is a static musl binary (static-pie: position-independent, so
# ASLR applies; debug info stripped by the release profile): a no-op `lifeos build` is a few
# ms, and the dynamic glibc binary spends 0.7 ms of it before `main` (the loader binding libc,
# libm and libgcc_s, and glibc's start-up CPU probe: ~40 CPUID instructions, each a ~5 us trap
# to the hypervisor on a VM). Numbers: benches/README.md.
#
# Needs the Rust target <arch>-unknown-linux-musl (added with rustup when missing) and
# musl-gcc (Debian's musl-tools, installed by scripts/setup.sh) for the C parts (mimalloc,
# ring). Without them, or if that build fails: `cargo build --release`, target/release/lifeos,
# with a note why.
#
# Env: LIFEOS_RELEASE=glibc skips the musl attempt.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

musl=$(uname -m)-unknown-linux-musl
why=
if [[ ${LIFEOS_RELEASE:-musl} != musl ]]; then
    why="LIFEOS_RELEASE=${LIFEOS_RELEASE}"
elif [[ $(uname -s) != Linux ]]; then
    why="not Linux"
elif ! command -v musl-gcc >/dev/null; then
    why="no musl-gcc (apt-get install musl-tools)"
elif ! command -v rustup >/dev/null; then
    why="no rustup to add the $musl target"
elif ! rustup target list --installed | grep -qx "$musl" \
    && ! rustup target add "$musl" >&2; then
    why="rustup could not add the $musl target"
fi

target_dir=${CARGO_TARGET_DIR:-$root/target}

# The binary must stay position-independent (ASLR): refuse one the linker made fixed-address.
pie_or_die() {
    if command -v readelf >/dev/null && ! readelf -h "$1" | grep -q 'Type:.*DYN'; then
        echo "build-release: $1 is not position-independent (readelf: $(readelf -h "$1" | grep Type:))" >&2
        exit 1
    fi
    echo "$1"
}

if [[ -z $why ]]; then
    echo "build-release: cargo build --release --target $musl" >&2
    if cargo build --release --locked --target "$musl" >&2; then
        pie_or_die "$target_dir/$musl/release/lifeos"
        exit 0
    fi
    why="the $musl build failed (above)"
fi
echo "build-release: $why; building the default (dynamic glibc) binary" >&2
cargo build --release --locked >&2
pie_or_die "$target_dir/release/lifeos"
