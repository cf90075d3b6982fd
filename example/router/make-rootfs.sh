#!/bin/sh
# Graph step before the router image (lifeos-router): a small Debian bookworm root
# filesystem holding nginx (nginx-light) as example/router/rootfs.tar, made from the
# machine's Debian package mirror like example/debian/make-rootfs.sh (no registry, no
# image pull). The deploy kinds run one such nginx per environment and write its config.
# The tarball is gitignored. Knobs: SOURCE_DATE_EPOCH, DEBIAN_SOURCES (as for the Debian image).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
dest="$here/rootfs.tar"
suite=bookworm

if ! command -v mmdebstrap >/dev/null 2>&1; then
    echo "make-rootfs: mmdebstrap is not installed: run scripts/setup.sh (or apt-get install mmdebstrap)" >&2
    exit 1
fi
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1704067200}
export SOURCE_DATE_EPOCH

sources=${DEBIAN_SOURCES:-}
if [ -z "$sources" ]; then
    for f in /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list; do
        if [ -s "$f" ] && grep -Eq "^[[:space:]]*(Suites:.*[[:space:]]$suite([[:space:]]|\$)|deb[[:space:]].*[[:space:]]$suite[[:space:]])" "$f"; then
            sources=$f
            break
        fi
    done
fi

tmp="$dest.tmp.$$"
trap 'rm -f "$tmp"' EXIT
trap 'exit 130' INT TERM

start=$(date +%s)
echo "make-rootfs: mmdebstrap $suite with nginx-light (sources: ${sources:-mmdebstrap default})"
mmdebstrap \
    --variant=essential \
    --mode=auto \
    --format=tar \
    --aptopt='Apt::Install-Recommends "false"' \
    --aptopt='Acquire::Languages "none"' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --include=nginx-light \
    --customize-hook='rm -f "$1"/var/log/*.log "$1"/var/log/apt/* "$1"/var/cache/debconf/*-old "$1"/var/lib/dpkg/*-old "$1/var/cache/ldconfig/aux-cache" "$1/etc/ssl/private/ssl-cert-snakeoil.key" "$1/etc/ssl/certs/ssl-cert-snakeoil.pem"' \
    --skip=output/dev \
    "$suite" "$tmp" ${sources:+"$sources"}

mv -f "$tmp" "$dest"
trap - EXIT
end=$(date +%s)
echo "make-rootfs: wrote $dest ($(($(wc -c < "$dest") / 1024 / 1024)) MiB) in $((end - start))s"
