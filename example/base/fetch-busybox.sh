#!/bin/sh
# Graph step before the lifeos-base image: put a static busybox into the
# image's build context. lifeos runs this from the repository root.
# The copied binary is gitignored (/example/base/busybox).
set -eu

src=/bin/busybox
dest="$(dirname "$0")/busybox"

is_static() {
    [ -x "$1" ] || return 1
    if command -v file >/dev/null 2>&1; then
        file -L "$1" | grep -Eq 'statically linked|static-pie linked'
    elif command -v ldd >/dev/null 2>&1; then
        # glibc ldd: "not a dynamic executable" (static) / "statically linked" (static-pie)
        ldd "$1" 2>&1 | grep -Eq 'not a dynamic executable|statically linked'
    else
        # No tools: a dynamic ELF names its program interpreter.
        if grep -Eq 'ld-linux|ld-musl' "$1"; then return 1; fi
    fi
}

if ! is_static "$src"; then
    echo "busybox-static is not installed: run scripts/setup.sh (or apt-get install busybox-static)" >&2
    exit 1
fi

if [ -f "$dest" ] && cmp -s "$src" "$dest"; then
    echo "fetch-busybox: $dest is up to date"
    exit 0
fi

tmp="$dest.tmp.$$"
cp "$src" "$tmp"
chmod 0755 "$tmp"
mv -f "$tmp" "$dest"
echo "fetch-busybox: copied $src -> $dest ($(wc -c < "$dest") bytes)"
