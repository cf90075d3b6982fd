#!/bin/sh
# Graph step before the lifeos-debian image: build a small Debian bookworm
# root filesystem holding PostgreSQL 15 (server + client) and Redis (server +
# redis-cli) as example/debian/rootfs.tar, entirely from the machine's Debian
# package mirror (no registry, no image pull). lifeos runs this from the
# repository root; the tarball is gitignored (/example/debian/rootfs.tar).
#
# Knobs (environment):
#   SOURCE_DATE_EPOCH  timestamps in the tarball (default: fixed, see below);
#                      same value + same mirror state => same tarball bytes.
#   DEBIAN_SOURCES     apt sources to use: a sources file (.list / .sources),
#                      a "deb ..." line or a mirror URL (default: the host's
#                      /etc/apt/sources.list.d/debian.sources or sources.list).
#   ROOTFS_VARIANT     mmdebstrap variant (default: essential = Essential:yes
#                      packages only, no apt in the image; minbase adds apt).
#   ROOTFS_KEEP_JIT=1  keep PostgreSQL's LLVM JIT (libLLVM + libz3 + bitcode,
#                      ~150 MiB); by default those files are not unpacked and
#                      postgres runs with jit disabled (it checks for
#                      llvmjit.so and quietly goes without).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
dest="$here/rootfs.tar"
suite=bookworm
variant=${ROOTFS_VARIANT:-essential}

if ! command -v mmdebstrap >/dev/null 2>&1; then
    echo "make-rootfs: mmdebstrap is not installed: run scripts/setup.sh (or apt-get install mmdebstrap)" >&2
    exit 1
fi

# Reproducible by default: a fixed epoch (2024-01-01T00:00:00Z) rather than
# "now", so two runs against the same mirror state give identical bytes.
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1704067200}
export SOURCE_DATE_EPOCH

# Use the host's configured Debian mirror: the only network this machine may
# reach is its Debian mirror, so never fall back to a hard-coded one if the
# host has sources for $suite.
sources=${DEBIAN_SOURCES:-}
if [ -z "$sources" ]; then
    for f in /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list; do
        if [ -s "$f" ] && grep -Eq "^[[:space:]]*(Suites:.*[[:space:]]$suite([[:space:]]|\$)|deb[[:space:]].*[[:space:]]$suite[[:space:]])" "$f"; then
            sources=$f
            break
        fi
    done
fi
# (No host sources for $suite: mmdebstrap's default, deb.debian.org plus
# bookworm-updates and bookworm-security.)

tmp="$dest.tmp.$$"
trap 'rm -f "$tmp"' EXIT
trap 'exit 130' INT TERM

# PostgreSQL's JIT provider is the biggest part of the image by far; the
# package depends on libllvm14 so it is installed, just without its files.
set -- \
    --dpkgopt='path-exclude=/usr/share/i18n/charmaps/*' \
    --dpkgopt='path-exclude=/usr/share/i18n/locales/*'
if [ "${ROOTFS_KEEP_JIT:-0}" != 1 ]; then
    set -- "$@" \
        --dpkgopt='path-exclude=/usr/lib/*/libLLVM-*.so*' \
        --dpkgopt='path-exclude=/usr/lib/*/libz3.so*' \
        --dpkgopt='path-exclude=/usr/lib/postgresql/*/lib/llvmjit*' \
        --dpkgopt='path-exclude=/usr/lib/postgresql/*/lib/bitcode/*'
fi

start=$(date +%s)
echo "make-rootfs: mmdebstrap $suite (variant $variant, sources: ${sources:-mmdebstrap default}, SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH)"

# - path-exclude: no docs, man/info pages or translations in the image
#   (copyright files are kept); /usr/lib/locale/C.utf8 stays (initdb uses it),
#   the locale sources for locale-gen go (postgresql-15 pulls in `locales`,
#   but nothing is generated: the cluster uses C.UTF-8 from libc-bin).
# - essential-hook: stop postgresql-common from creating (initdb'ing) the
#   default 15/main cluster at install time; the entrypoint owns $PGDATA.
#   (createcluster.d/, which createcluster.conf includes, rather than
#   createcluster.conf itself: that one is ucf-managed, and a pre-existing
#   copy leaves a random temp path in the debconf db = not reproducible.)
# - customize-hook: drop install-time leftovers that are host/run specific
#   (the ssl-cert snakeoil key pair, logs, *-old backups, caches).
# - --skip=output/dev: no device nodes in the tarball (Docker supplies /dev).
mmdebstrap \
    --variant="$variant" \
    --mode=auto \
    --format=tar \
    --aptopt='Apt::Install-Recommends "false"' \
    --aptopt='Acquire::Languages "none"' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-include=/usr/share/locale/locale.alias' \
    --dpkgopt='path-exclude=/usr/share/lintian/*' \
    --dpkgopt='path-exclude=/usr/share/bug/*' \
    --include=postgresql-15,postgresql-client-15,redis-server,redis-tools \
    --essential-hook='mkdir -p "$1/etc/postgresql-common/createcluster.d" && printf "%s\n" "create_main_cluster = false" > "$1/etc/postgresql-common/createcluster.d/lifeos.conf"' \
    --customize-hook='rm -rf "$1/etc/postgresql/15" "$1/var/lib/postgresql/15" "$1/var/log/postgresql"/* "$1/var/log/redis"/*' \
    --customize-hook='rm -f "$1/etc/ssl/private/ssl-cert-snakeoil.key" "$1/etc/ssl/certs/ssl-cert-snakeoil.pem"' \
    --customize-hook='rm -f "$1"/var/log/*.log "$1"/var/log/apt/* "$1"/var/cache/debconf/*-old "$1"/var/lib/dpkg/*-old "$1/var/cache/ldconfig/aux-cache"' \
    --skip=output/dev \
    "$@" \
    "$suite" "$tmp" ${sources:+"$sources"}

mv -f "$tmp" "$dest"
trap - EXIT
end=$(date +%s)
size=$(wc -c < "$dest")
echo "make-rootfs: wrote $dest ($((size / 1024 / 1024)) MiB, $size bytes) in $((end - start))s"
