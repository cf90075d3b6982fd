#!/usr/bin/env bash
# No-op of a 10,000-node graph: lifeos against ninja.
#
# The same graph as benches/graph.rs: node i depends on nodes i-1, i/2 and i/3 (those
# below i, deduplicated). Each node creates one empty file:
#
#   lifeos   [tasks.tI] kind = "exec", run = "touch out/tI", outputs = ["out/tI"],
#            deps = [...]
#   ninja    build out/tI: touch | out/tJ ...   (the deps' outputs as implicit inputs)
#
# Both are run once to build everything (and once more to be sure the next run is a
# no-op), then hyperfine times the no-op of each in the same invocation. On a no-op
# lifeos hashes the 10,000-task TOML and, since it is unchanged, loads its compiled form
# (.lifeos/config.compiled.json) instead of parsing it, builds the graph, keys every task
# and checks each output still matches its record; ninja parses build.ninja + .ninja_log
# and stats every file.
#
# Goal: lifeos no-op within 2x of ninja's: the ratio of the medians, unrounded; the script
# exits 1 when it is missed (and when lifeos's no-op is not clean).
#
# Env: LIFEOS, N (nodes, default 10000), RUNS (default 20), KEEP=1,
#      PROFILE=1 also runs `strace -c -f` and `perf stat` on one lifeos no-op.
set -euo pipefail

N=${N:-10000}
RUNS=${RUNS:-20}
GOAL_RATIO=2

# shellcheck source=benches/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
bench_init ninja hyperfine jq ninja
mkdir -p "$tmp/lifeos/out" "$tmp/ninja/out"

echo "vs-ninja: generating $N nodes"
awk -v n="$N" -v L="$tmp/lifeos/lifeos.toml" -v B="$tmp/ninja/build.ninja" 'BEGIN {
    print "[project]\nname = \"bench-ninja\"" > L
    print "rule touch\n  command = touch $out\n  description = touch $out" > B
    for (i = 0; i < n; i++) {
        k = 0; split("", seen)
        cand[1] = i - 1; cand[2] = int(i / 2); cand[3] = int(i / 3)
        for (c = 1; c <= 3; c++) {
            d = cand[c]
            if (d >= 0 && d < i && !(d in seen)) { seen[d] = 1; deps[++k] = d }
        }
        ldeps = ""; ndeps = ""
        for (c = 1; c <= k; c++) {
            ldeps = ldeps (c > 1 ? ", " : "") "\"t" deps[c] "\""
            ndeps = ndeps " out/t" deps[c]
        }
        printf "\n[tasks.t%d]\nkind = \"exec\"\nrun = \"touch out/t%d\"\noutputs = [\"out/t%d\"]\n", i, i, i > L
        if (k > 0) printf "deps = [%s]\n", ldeps > L
        printf "build out/t%d: touch%s\n", i, (k > 0 ? " |" ndeps : "") > B
    }
}'
edges=$(grep -c '^build ' "$tmp/ninja/build.ninja")
echo "vs-ninja: lifeos.toml $(($(stat -c %s "$tmp/lifeos/lifeos.toml") / 1024)) KiB," \
    "build.ninja $(($(stat -c %s "$tmp/ninja/build.ninja") / 1024)) KiB, $edges edges"

# First builds (not measured in the table, but timed for the record).
t0=$(date +%s%N)
"$LIFEOS" -C "$tmp/lifeos" run >"$tmp/lifeos-first.log" 2>&1 || { tail "$tmp/lifeos-first.log"; exit 1; }
t1=$(date +%s%N)
ninja -C "$tmp/ninja" >"$tmp/ninja-first.log" 2>&1 || { tail "$tmp/ninja-first.log"; exit 1; }
t2=$(date +%s%N)
first_lifeos_ms=$(((t1 - t0) / 1000000))
first_ninja_ms=$(((t2 - t1) / 1000000))
# Let every output leave lifeos's 2 s "racily clean" window, then settle the stat cache.
sleep 3
"$LIFEOS" -C "$tmp/lifeos" run >/dev/null 2>&1

# Both must really be no-ops now.
lsum=$("$LIFEOS" -C "$tmp/lifeos" --json run | jq -r 'select(.event == "run_finished") | .summary
    | "ran=\(.ran) cached=\(.cached) hashed=\(.files_hashed)"')
nout=$(ninja -C "$tmp/ninja" | tail -n1)
echo "vs-ninja: lifeos no-op check: $lsum; ninja: $nout"
[[ $lsum == "ran=0 cached=$N hashed=0" ]] || { echo "vs-ninja: lifeos no-op is not clean: $lsum" >&2; exit 1; }

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
hyperfine -N --style basic --warmup 3 --runs "$RUNS" \
    --export-json "$tmp/noop.json" \
    -n "ninja no-op" "ninja -C $tmp/ninja" \
    -n "lifeos no-op" "$LIFEOS -C $tmp/lifeos run"
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# Where lifeos's time goes, by phase: loading the config (`lifeos graph t0` loads and checks
# all 10,000 tasks and builds the graph, then prints one node) and the scheduler's run
# (summary.wall_ms of a --json no-op).
wall_ms=$("$LIFEOS" -C "$tmp/lifeos" --json run | jq -r 'select(.event == "run_finished") | .summary.wall_ms')
hyperfine -N --style basic --warmup 1 --runs 5 --export-json "$tmp/load.json" \
    -n "lifeos graph t0" "$LIFEOS -C $tmp/lifeos graph t0" >/dev/null
load_ms=$(jq '.results[0].mean*1000|round' "$tmp/load.json")

ninja_ms=$(jq '.results[0].median*1000' "$tmp/noop.json")
lifeos_ms=$(jq '.results[1].median*1000' "$tmp/noop.json")
ratio=$(awk -v a="$lifeos_ms" -v b="$ninja_ms" 'BEGIN { printf "%.6f", a / b }')
verdict=$(awk -v r="$ratio" -v g="$GOAL_RATIO" 'BEGIN { print (r <= g ? "PASS" : "FAIL") }')

echo
echo "## vs-ninja: $N nodes, no-op ($(nproc) cores; load $load_before -> $load_after)"
{
    printf 'tool\tno-op median ms\tmean ms\tstddev ms\tmin ms\tfirst build ms\n'
    jq -r --arg f "$first_ninja_ms" '.results[0] | ["ninja", (.median*1000|.*10|round/10), (.mean*1000|.*10|round/10), ((.stddev // 0)*1000|.*10|round/10), (.min*1000|.*10|round/10), $f] | @tsv' "$tmp/noop.json"
    jq -r --arg f "$first_lifeos_ms" '.results[1] | ["lifeos", (.median*1000|.*10|round/10), (.mean*1000|.*10|round/10), ((.stddev // 0)*1000|.*10|round/10), (.min*1000|.*10|round/10), $f] | @tsv' "$tmp/noop.json"
} | column -t -s $'\t'
echo
echo "lifeos phases: config load + graph (\`lifeos graph t0\`) $load_ms ms; scheduler run (summary.wall_ms, --json) $wall_ms ms"
echo "goal: lifeos/ninja <= ${GOAL_RATIO}x (ratio of medians): $verdict (${ratio}x)"

if [[ ${PROFILE:-0} == 1 ]]; then
    echo
    echo "## profile of one lifeos no-op"
    if command -v strace >/dev/null; then
        strace -c -f -o "$tmp/strace.txt" "$LIFEOS" -C "$tmp/lifeos" run >/dev/null 2>&1 || true
        head -n 25 "$tmp/strace.txt"
    fi
    if command -v perf >/dev/null; then
        perf stat -e task-clock,context-switches,page-faults -- "$LIFEOS" -C "$tmp/lifeos" run 2>&1 >/dev/null | sed -n '/Performance/,$p' || true
    fi
fi
[[ $verdict == PASS ]]
