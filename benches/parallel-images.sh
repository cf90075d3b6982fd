#!/usr/bin/env bash
# Two independent cold image builds: in parallel (one `lifeos build a b`) against one after
# the other (`lifeos build a` then `lifeos build b`).
#
# Images a and b: FROM lifeos-base:latest (built with `lifeos build base --force=base` in
# the repository root and pinned as lifeos-bench-base:par; see vs-docker-build.sh for why),
# LABEL lifeos.test=bench lifeos.key="" (so no image made here passes for the base), COPY
# a fresh nonce file, COPY 200 small source files, then `RUN sleep 2` (CPU-free). The nonce changes before every timed run, so each
# build misses lifeos's cache *and* the builder's layer cache from the first COPY on: every
# run is a real cold build of both images, with no --force needed.
#
# Measured for both builders (BuildKit, lifeos's default, and the classic builder), each
# with hyperfine (1 warmup, RUNS runs):
#   a alone      `lifeos build a`             (the floor for the parallel build)
#   sequential   `lifeos build a && lifeos build b`
#   parallel     `lifeos build a b`           (-j defaults to the 2 cores)
#
# Ideal: parallel ~ "a alone", i.e. sequential/parallel ~ 2.
#
# Cleanup: the images (tags lifeos-bench-par-*, label lifeos.test=bench, including the
# classic builder's intermediate images) are removed. BuildKit's build-cache records have
# no labels; the few small records these builds leave are for the daemon's cache GC
# (`docker builder prune` removes them, along with everyone else's).
#
# Env: LIFEOS, RUNS (default 3), BUILDERS (default "buildkit classic"), KEEP=1.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LIFEOS=${LIFEOS:-$("$root/scripts/build-release.sh")}
RUNS=${RUNS:-3}
BUILDERS=${BUILDERS:-buildkit classic}
PIN=lifeos-bench-base:par

for tool in hyperfine jq docker; do
    command -v "$tool" >/dev/null || { echo "parallel-images: needs $tool" >&2; exit 2; }
done
docker info >/dev/null 2>&1 || { echo "parallel-images: no Docker engine" >&2; exit 2; }
[[ -x $LIFEOS ]] || { echo "parallel-images: LIFEOS=$LIFEOS is not an executable" >&2; exit 2; }
export CI=1 NO_COLOR=1

tmp=$(mktemp -d /tmp/lifeos-bench-par.XXXXXX)
cleanup() {
    set +e
    for b in $BUILDERS; do docker rmi -f "lifeos-bench-par-a:$b" "lifeos-bench-par-b:$b"; done >/dev/null 2>&1
    docker image prune -a -f --filter label=lifeos.test=bench >/dev/null 2>&1
    docker rmi "$PIN" >/dev/null 2>&1
    if [[ ${KEEP:-0} == 1 ]]; then echo "kept $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT

echo "parallel-images: lifeos build base --force=base (in $root), pinned as $PIN"
"$LIFEOS" -C "$root" build base --force=base >"$tmp/base.log" 2>&1 || { tail "$tmp/base.log"; exit 1; }
docker tag lifeos-base:latest "$PIN"
base_user=$(docker image inspect "$PIN" --format '{{.Config.User}}')
[[ -z $base_user ]] || { echo "parallel-images: lifeos-base:latest is not the base image (USER $base_user)" >&2; exit 1; }

cat >"$tmp/nonce.sh" <<EOF
#!/bin/sh
n=\$(date +%s%N)
for b in $BUILDERS; do
    for i in a b; do echo "\$n" >"$tmp/\$b/\$i/nonce.txt"; done
done
EOF
chmod +x "$tmp/nonce.sh"

for b in $BUILDERS; do
    p=$tmp/$b
    for i in a b; do
        mkdir -p "$p/$i/src"
        for f in $(seq 1 200); do
            head -c $((1024 + (f * 37) % 3072)) /dev/urandom | base64 >"$p/$i/src/f$f.txt"
        done
        cat >"$p/$i/Dockerfile" <<EOF
FROM $PIN
LABEL lifeos.test=bench lifeos.key=""
COPY nonce.txt /bench/nonce-$i.txt
COPY src/ /bench/src/
RUN sleep 2 && ls /bench/src | wc -l >/bench/count-$i
EOF
    done
    cat >"$p/lifeos.toml" <<EOF
[project]
name = "bench-parallel-$b"

[tasks.a]
kind = "image"
context = "a"
tag = "lifeos-bench-par-a:$b"
builder = "$b"
labels = { "lifeos.test" = "bench" }

[tasks.b]
kind = "image"
context = "b"
tag = "lifeos-bench-par-b:$b"
builder = "$b"
labels = { "lifeos.test" = "bench" }
EOF
    cat >"$tmp/seq-$b.sh" <<EOF
#!/bin/sh
set -e
"$LIFEOS" -C "$p" build a
"$LIFEOS" -C "$p" build b
EOF
    chmod +x "$tmp/seq-$b.sh"
done
find "$tmp" -exec touch -h -d '@'$(($(date +%s) - 3600)) {} +

# One checked cold parallel build per builder: both must really build.
"$tmp/nonce.sh"
for b in $BUILDERS; do
    out=$("$LIFEOS" -C "$tmp/$b" --json build a b | jq -r 'select(.event == "run_finished") | .summary
        | "ran=\(.ran) cached=\(.cached) wall_ms=\(.wall_ms)"')
    echo "parallel-images: $b check: $out"
    [[ $out == ran=2* ]] || { echo "parallel-images: expected both images to build" >&2; exit 1; }
done

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for b in $BUILDERS; do
    p=$tmp/$b
    hyperfine -N --style basic --warmup 1 --runs "$RUNS" --prepare "$tmp/nonce.sh" \
        --export-json "$tmp/$b.json" \
        -n "$b: a alone" "$LIFEOS -C $p build a" \
        -n "$b: sequential (a then b)" "$tmp/seq-$b.sh" \
        -n "$b: parallel (a b)" "$LIFEOS -C $p build a b"
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

echo
echo "## parallel-images: two cold images, RUN sleep 2 each ($(nproc) cores; load $load_before -> $load_after)"
{
    printf 'builder\ta alone s\tsequential s\tparallel s\tseq/parallel\tparallel/alone\n'
    for b in $BUILDERS; do
        jq -r --arg b "$b" '[.results[].mean] as $m |
            [$b, ($m[0]*100|round/100), ($m[1]*100|round/100), ($m[2]*100|round/100),
             ($m[1]/$m[2]*100|round/100), ($m[2]/$m[0]*100|round/100)] | @tsv' "$tmp/$b.json"
    done
} | column -t -s $'\t'
echo
echo "ideal: parallel/alone ~ 1.0 and sequential/parallel ~ 2.0"
