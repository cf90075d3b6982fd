#!/usr/bin/env bash
# No-op `lifeos build web api` against a fully cached `docker build` of the same targets.
#
# In a temp copy of example/ (with benches/classic.lifeos.toml next to it as lifeos.toml):
#
#   lifeos classic   `lifeos build web api`, builder = "classic", Dockerfile.classic,
#                    everything cached: parses the Dockerfile, keys the context files from
#                    the stat cache, inspects lifeos-base:latest and finds each image by its
#                    lifeos.key label through the Engine API (no build request at all);
#   docker classic   `docker build --target web-runner` then `--target api-runner` with the
#                    classic builder (DOCKER_BUILDKIT=0) on Dockerfile.classic, fully cached:
#                    the CLI tars and uploads the context, the daemon replays every step
#                    against its layer cache.
#
# Extra rows: the BuildKit no-op of the real `lifeos build web api` in the repository root
# (its own lifeos.toml, Dockerfile and .lifeos cache), and a fully cached BuildKit
# `docker build` (/usr/bin/docker, DOCKER_BUILDKIT=1) of the same two targets from the
# real Dockerfile.
#
# The copy of Dockerfile.classic gets one `LABEL lifeos.test=bench` line after its first
# FROM, so that every intermediate image the classic builder commits carries the label and
# is removed at the end (docker image prune -a --filter label=lifeos.test=bench); the
# stages and their cache behaviour are otherwise those of example/Dockerfile.classic.
#
# Goal: lifeos no-op at least 50x faster than the cached classic docker builds.
#
# Env: LIFEOS, RUNS (default 10), DOCKER (CLI for the classic builds; default `docker` on
#      PATH), DOCKER_BK (a CLI that can do BuildKit; default /usr/bin/docker), KEEP=1.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
here=$root/benches
LIFEOS=${LIFEOS:-$root/target/release/lifeos}
RUNS=${RUNS:-10}
DOCKER=${DOCKER:-docker}
DOCKER_BK=${DOCKER_BK:-/usr/bin/docker}
GOAL=50

for tool in hyperfine jq "$DOCKER"; do
    command -v "$tool" >/dev/null || { echo "vs-docker-build: needs $tool" >&2; exit 2; }
done
"$DOCKER" info >/dev/null 2>&1 || { echo "vs-docker-build: no Docker engine" >&2; exit 2; }
if [[ ! -x $LIFEOS ]]; then
    echo "vs-docker-build: building lifeos (cargo build --release)"
    (cd "$root" && cargo build --release)
fi
export CI=1 NO_COLOR=1

tmp=$(mktemp -d /tmp/lifeos-bench-docker.XXXXXX)
tags=(lifeos-bench-web:classic lifeos-bench-api:classic
      lifeos-bench-cli-web:classic lifeos-bench-cli-api:classic
      lifeos-bench-cli-web:buildkit lifeos-bench-cli-api:buildkit)
cleanup() {
    set +e
    "$DOCKER" rmi -f "${tags[@]}" >/dev/null 2>&1
    "$DOCKER" image prune -a -f --filter label=lifeos.test=bench >/dev/null 2>&1
    if [[ ${KEEP:-0} == 1 ]]; then echo "kept $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT

echo "vs-docker-build: lifeos build base (in $root)"
"$LIFEOS" -C "$root" build base >"$tmp/base.log" 2>&1 || { tail "$tmp/base.log"; exit 1; }

proj=$tmp/proj
mkdir -p "$proj"
cp -a "$root/example" "$proj/example"
rm -rf "$proj/example/.lifeos"
cp "$here/classic.lifeos.toml" "$proj/lifeos.toml"
awk '{ print } /^FROM / && !done { print "LABEL lifeos.test=bench"; done = 1 }' \
    "$root/example/Dockerfile.classic" >"$proj/example/Dockerfile.classic"
# Out of lifeos's 2 s racily-clean window, so the stat cache holds every context file.
find "$proj" -exec touch -h -d '@'$(($(date +%s) - 3600)) {} +

cat >"$tmp/docker-classic.sh" <<EOF
#!/bin/sh
set -e
export DOCKER_BUILDKIT=0
cd "$proj"
"$DOCKER" build -q --label lifeos.test=bench --target web-runner -t lifeos-bench-cli-web:classic -f example/Dockerfile.classic example
"$DOCKER" build -q --label lifeos.test=bench --target api-runner -t lifeos-bench-cli-api:classic -f example/Dockerfile.classic example
EOF
cat >"$tmp/docker-buildkit.sh" <<EOF
#!/bin/sh
set -e
export DOCKER_BUILDKIT=1
cd "$proj"
"$DOCKER_BK" build -q --label lifeos.test=bench --target web-runner -t lifeos-bench-cli-web:buildkit -f example/Dockerfile example
"$DOCKER_BK" build -q --label lifeos.test=bench --target api-runner -t lifeos-bench-cli-api:buildkit -f example/Dockerfile example
EOF
chmod +x "$tmp"/docker-*.sh

echo "vs-docker-build: first (cold or partly cached) builds"
"$LIFEOS" -C "$proj" build web api >"$tmp/first.log" 2>&1 || { tail -n 30 "$tmp/first.log"; exit 1; }
"$tmp/docker-classic.sh" >"$tmp/first-docker.log" 2>&1 || { tail -n 30 "$tmp/first-docker.log"; exit 1; }
"$LIFEOS" -C "$root" build web api >"$tmp/first-real.log" 2>&1 || { tail -n 30 "$tmp/first-real.log"; exit 1; }
bk=1
if [[ -x $DOCKER_BK ]]; then
    "$tmp/docker-buildkit.sh" >"$tmp/first-bk.log" 2>&1 || {
        echo "vs-docker-build: no BuildKit docker build here, skipping that row:"
        tail -n 5 "$tmp/first-bk.log"
        bk=0
    }
else
    bk=0
fi
sleep 2

check() { # dir -> lifeos summary of a build web api
    "$LIFEOS" -C "$1" --json build web api | jq -r 'select(.event == "run_finished") | .summary
        | "ran=\(.ran) cached=\(.cached) hashed=\(.files_hashed)"'
}
classic_check=$(check "$proj")
real_check=$(check "$root")
echo "vs-docker-build: lifeos classic no-op: $classic_check; real (BuildKit): $real_check"

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
cmds=(-n "lifeos no-op (classic)" "$LIFEOS -C $proj build web api"
      -n "docker build x2 cached (classic)" "$tmp/docker-classic.sh"
      -n "lifeos no-op (BuildKit, real config)" "$LIFEOS -C $root build web api")
((bk)) && cmds+=(-n "docker build x2 cached (BuildKit)" "$tmp/docker-buildkit.sh")
hyperfine -N --style basic --warmup 2 --runs "$RUNS" --export-json "$tmp/r.json" "${cmds[@]}"
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

ms() { jq ".results[$1].mean*1000" "$tmp/r.json"; }
ratio=$(awk -v d="$(ms 1)" -v l="$(ms 0)" 'BEGIN { printf "%.0f", d / l }')
verdict=$(awk -v r="$ratio" -v g="$GOAL" 'BEGIN { print (r >= g ? "PASS" : "FAIL") }')
bk_ratio=""
((bk)) && bk_ratio=$(awk -v d="$(ms 3)" -v l="$(ms 2)" 'BEGIN { printf "%.0f", d / l }')

echo
echo "## vs-docker-build: example web + api, everything cached ($(nproc) cores; load $load_before -> $load_after)"
jq -r '.results[] | [.command, (.mean*1000|.*10|round/10), ((.stddev // 0)*1000|.*10|round/10), (.min*1000|.*10|round/10)] | @tsv' "$tmp/r.json" \
    | { printf 'command\tmean ms\tstddev ms\tmin ms\n'; cat; } | column -t -s $'\t'
echo
echo "lifeos checks: classic $classic_check; real $real_check"
echo "goal: lifeos classic no-op >= ${GOAL}x faster than cached classic docker build: $verdict (${ratio}x)"
[[ -n $bk_ratio ]] && echo "BuildKit: cached docker build / lifeos no-op = ${bk_ratio}x"
exit 0
