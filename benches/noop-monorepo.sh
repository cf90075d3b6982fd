#!/usr/bin/env bash
# No-op speed on a 10,000-file monorepo.
#
# Generates 100 packages x 100 files (0.5-4 KiB each, ~22 MiB) and one `exec` task per
# package (inputs = ["pkgNN/**"], run = "true"). Dependencies: ten chains of ten
# (pkgN1..pkgN9 each depend on the previous package; the head of every chain, pkg10,
# pkg20, ..., depends on pkg00). Then, with hyperfine:
#
#   cold      `lifeos run` with an empty cache (.lifeos removed before each run):
#             walks and hashes all 10,000 files and runs the 100 tasks;
#   no-op     `lifeos run` again: nothing changed, nothing read but metadata;
#   touched   one file of pkg57 gets new contents before each run: pkg57 and its
#             dependants pkg58 and pkg59 rerun, one file is hashed.
#
# Goal: no-op under 100 ms (median); the script exits 1 when it is missed.
#
# Env: LIFEOS (binary; default: what scripts/build-release.sh builds), RUNS (no-op
# runs, default 30), COLD_RUNS (default 5), KEEP=1 keeps the temp dir.
set -euo pipefail

RUNS=${RUNS:-30}
COLD_RUNS=${COLD_RUNS:-5}
GOAL_MS=100

# shellcheck source=benches/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
bench_init noop hyperfine jq perl
repo=$tmp/repo
mkdir -p "$repo"

echo "noop-monorepo: generating 100 packages x 100 files in $repo"
# Deterministic pseudo-random contents, 512..4096 bytes per file.
perl -e '
    my $root = shift; srand(42);
    for my $p (0..99) {
        my $dir = sprintf("%s/pkg%02d", $root, $p);
        mkdir $dir; mkdir "$dir/src";
        for my $f (0..99) {
            my $sub = $f < 50 ? "" : "src/";
            my $n = 512 + int(rand(3585));
            my $s = join("", map { chr(32 + int(rand(95))) } 1..$n);
            open(my $fh, ">", sprintf("%s/%sf%03d.txt", $dir, $sub, $f)) or die $!;
            print $fh $s; close $fh;
        }
    }' "$repo"

{
    echo '[project]'
    echo 'name = "bench-noop"'
    for p in $(seq 0 99); do
        n=$(printf 'pkg%02d' "$p")
        echo
        echo "[tasks.$n]"
        echo 'kind = "exec"'
        echo 'run = "true"'
        echo "inputs = [\"$n/**\"]"
        if ((p % 10 != 0)); then
            printf 'deps = ["pkg%02d"]\n' $((p - 1))
        elif ((p > 0)); then
            echo 'deps = ["pkg00"]'
        fi
    done
} >"$repo/lifeos.toml"

# lifeos only remembers a file's digest when its mtime is >2 s older than the run
# (racily-clean guard); backdate everything so the first no-op already hits the stat cache.
find "$repo" -exec touch -h -d '@'$(($(date +%s) - 3600)) {} +

nfiles=$(find "$repo" -path "$repo/.lifeos" -prune -o -type f -print | wc -l)
nbytes=$(find "$repo" -type f -printf '%s\n' | awk '{s+=$1} END {print s}')
echo "noop-monorepo: $nfiles files, $((nbytes / 1024)) KiB, 100 tasks"

summary() { # args: lifeos args...; prints "ran=N cached=N hashed=N"
    "$LIFEOS" -C "$repo" --json "$@" | jq -r 'select(.event == "run_finished") | .summary
        | "ran=\(.ran) cached=\(.cached) hashed=\(.files_hashed)"'
}

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
echo "noop-monorepo: load average before: $load_before"

# --- cold
hyperfine -N --style basic --runs "$COLD_RUNS" \
    --prepare "rm -rf $repo/.lifeos" \
    --export-json "$tmp/cold.json" \
    -n cold "$LIFEOS -C $repo run"
rm -rf "$repo/.lifeos"
cold_check=$(summary run)

# --- no-op
noop_check=$(summary run)
hyperfine -N --style basic --warmup 3 --runs "$RUNS" \
    --export-json "$tmp/noop.json" \
    -n no-op "$LIFEOS -C $repo run"

# --- one file changed (new contents every time, so it is never a cache hit)
cat >"$tmp/touch.sh" <<EOF
#!/bin/sh
printf 'changed %s\n' "\$(date +%s%N)" >>"$repo/pkg57/src/f077.txt"
EOF
chmod +x "$tmp/touch.sh"
"$tmp/touch.sh"
touch_check=$(summary run)
hyperfine -N --style basic --warmup 1 --runs "$RUNS" \
    --prepare "$tmp/touch.sh" \
    --export-json "$tmp/touched.json" \
    -n touched "$LIFEOS -C $repo run"

load_after=$(cut -d' ' -f1-3 /proc/loadavg)

row() { # name json check
    jq -r --arg name "$1" --arg check "$3" '.results[0] |
        [$name, (.mean*1000|.*10|round/10|tostring), ((.stddev // 0)*1000|.*10|round/10|tostring),
         (.min*1000|.*10|round/10|tostring), (.times|length|tostring), $check] | @tsv' "$2"
}
noop_ms=$(jq '.results[0].median*1000' "$tmp/noop.json")
verdict=$(awk -v m="$noop_ms" -v g="$GOAL_MS" 'BEGIN { print (m < g ? "PASS" : "FAIL") }')

echo
echo "## noop-monorepo: $nfiles files, 100 tasks ($(nproc) cores; load $load_before -> $load_after)"
{
    printf 'run\tmean ms\tstddev ms\tmin ms\truns\tlifeos summary\n'
    row "cold (empty cache)" "$tmp/cold.json" "$cold_check"
    row "no-op" "$tmp/noop.json" "$noop_check"
    row "1 file changed" "$tmp/touched.json" "$touch_check"
} | column -t -s $'\t'
echo
printf 'goal: no-op < %s ms (median): %s (%s ms)\n' "$GOAL_MS" "$verdict" "$noop_ms"
[[ $verdict == PASS ]]
