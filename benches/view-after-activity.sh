#!/usr/bin/env bash
# No-op `lifeos build web api` (the example, classic builder) right after other Docker
# activity, which used to drop lifeos's engine view (.lifeos/engine.json, README "engine
# view") so that the no-op inspected every image again:
#
#   quiet                 nothing happened since the last run
#   other image tagged    before each run: `docker tag` + `docker rmi` of an image this
#                         script made for the purpose (image events about another image)
#   container run         before each run: `docker run --rm BASE true` (container events)
#   our base re-tagged    before each run: `docker tag BASE BASE` (an image event about the
#                         base: its facts must be dropped and the base inspected again)
#
# With BEFORE=/path/to/an/older/lifeos the same rows run for it too, in the same hyperfine
# invocations, each binary on its own copy of the example (its own .lifeos), so the two
# are measured side by side (how the hand-written early events call of an older binary
# compared with hyper's: benches/README.md). No goal: the numbers go to benches/README.md.
#
# Env: LIFEOS, BEFORE, RUNS (per row, default 30), KEEP=1.
set -euo pipefail

RUNS=${RUNS:-30}
PIN=lifeos-bench-base:view
OTHER=lifeos-bench-view-other:1

# shellcheck source=benches/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
bench_init view hyperfine jq docker
docker info >/dev/null 2>&1 || { echo "view-after-activity: no Docker engine" >&2; exit 2; }
cleanup() {
    set +e
    docker rmi -f lifeos-bench-view-web:classic lifeos-bench-view-api:classic "$OTHER" >/dev/null 2>&1
    docker image prune -a -f --filter label=lifeos.test=bench-view >/dev/null 2>&1
    docker rmi "$PIN" >/dev/null 2>&1
    bench_cleanup
}
trap cleanup EXIT

echo "view-after-activity: lifeos build base --force=base (in $root), pinned as $PIN"
"$LIFEOS" -C "$root" build base --force=base >"$tmp/base.log" 2>&1 || { tail "$tmp/base.log"; exit 1; }
docker tag lifeos-base:latest "$PIN"

# name, command (word-split: no spaces in the paths).
bins=(after "$LIFEOS")
[[ -n ${BEFORE:-} ]] && bins+=(before "$BEFORE")
for ((b = 0; b < ${#bins[@]}; b += 2)); do
    proj=$tmp/${bins[b]}
    mkdir -p "$proj"
    cp -a "$root/example" "$proj/example"
    rm -rf "$proj/example/.lifeos"
    sed -e 's/lifeos-bench-\(web\|api\):classic/lifeos-bench-view-\1:classic/' \
        -e 's/"lifeos.test" = "bench"/"lifeos.test" = "bench-view"/' \
        "$root/benches/classic.lifeos.toml" >"$proj/lifeos.toml"
    sed "s|^FROM lifeos-base:latest|FROM $PIN|" "$root/example/Dockerfile.classic" \
        | awk '{ print } /^FROM / && !done { print "LABEL lifeos.test=bench-view lifeos.key=\"\""; done = 1 }' \
        >"$proj/example/Dockerfile.classic"
    find "$proj" -exec touch -h -d '@'$(($(date +%s) - 3600)) {} +
    ${bins[b + 1]} -C "$proj" build web api >"$tmp/first-${bins[b]}.log" 2>&1 \
        || { tail -n 20 "$tmp/first-${bins[b]}.log"; exit 1; }
done
mkdir -p "$tmp/other"
printf 'FROM %s\nLABEL lifeos.test=bench-view other=1\n' "$PIN" >"$tmp/other/Dockerfile"
DOCKER_BUILDKIT=0 docker build -q -t "$OTHER" "$tmp/other" >/dev/null

cat >"$tmp/tag-other.sh" <<EOF
#!/bin/sh
docker tag $OTHER lifeos-bench-view-other:2 && docker rmi lifeos-bench-view-other:2 >/dev/null
EOF
cat >"$tmp/run-container.sh" <<EOF
#!/bin/sh
docker run --rm --label lifeos.test=bench-view $PIN true
EOF
cat >"$tmp/tag-base.sh" <<EOF
#!/bin/sh
docker tag $PIN $PIN
EOF
chmod +x "$tmp"/*.sh

check() { # binary project -> summary of a no-op
    $1 -C "$2" --json build web api | jq -r 'select(.event == "run_finished") | .summary
        | "ran=\(.ran) cached=\(.cached) failed=\(.failed)"'
}
for ((b = 0; b < ${#bins[@]}; b += 2)); do
    c=$(check "${bins[b + 1]}" "$tmp/${bins[b]}")
    echo "view-after-activity: ${bins[b]} no-op check: $c"
    [[ $c == "ran=0 cached=2 failed=0" ]] || { echo "not a clean no-op" >&2; exit 1; }
done
sync
sleep 3

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
results=()
for row in quiet tag-other run-container tag-base; do
    args=()
    for ((b = 0; b < ${#bins[@]}; b += 2)); do
        args+=(-n "$row (${bins[b]})" "${bins[b + 1]} -C $tmp/${bins[b]} build web api")
    done
    prep=()
    [[ $row != quiet ]] && prep=(--prepare "$tmp/$row.sh")
    hyperfine -N --style basic --warmup 3 --runs "$RUNS" "${prep[@]}" \
        --export-json "$tmp/$row.json" "${args[@]}" >"$tmp/$row.log" 2>&1 \
        || { cat "$tmp/$row.log"; exit 1; }
    results+=("$tmp/$row.json")
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
jq -s '{results: [.[].results[]]}' "${results[@]}" >"$tmp/r.json"

echo
echo "## view-after-activity: no-op \`lifeos build web api\` (classic) after other Docker activity ($(nproc) cores; load $load_before -> $load_after)"
jq -r '.results[] | [.command, (.median*1000|.*100|round/100), (.mean*1000|.*100|round/100), ((.stddev // 0)*1000|.*100|round/100), (.min*1000|.*100|round/100)] | @tsv' "$tmp/r.json" \
    | { printf 'row\tmedian ms\tmean ms\tstddev ms\tmin ms\n'; cat; } | column -t -s $'\t'
