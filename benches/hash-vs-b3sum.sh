#!/usr/bin/env bash
# Cold hashing throughput: lifeos's first run against b3sum over the same files.
#
# Tree: 20,000 files of 0.5-4 KiB (200 dirs x 100) plus 3 files of 50 MiB (~195 MiB).
# Both sides hash everything with BLAKE3 with a warm page cache (a warmup run of each
# reads the whole tree first):
#
#   lifeos          one exec task, inputs = ["**"], run = "true"; .lifeos is deleted before
#                   every run, so each run walks the tree, hashes every file (rayon; files
#                   over 1 MiB mmap'd and hashed with rayon) and writes the stat cache;
#   b3sum           `find -print0 | xargs -0 b3sum` (one process per ~5,000 files; b3sum
#                   hashes big files multithreaded but files one after another);
#   b3sum -P N      the same with `xargs -P N`, N = nproc, the files split evenly: N b3sum
#                   processes at a time, as many as lifeos has threads.
#
# Reported as seconds and MB/s (10^6 bytes) of file data. Before timing, the digests lifeos
# recorded (`lifeos explain hash --json`) are compared with b3sum's for every file: the
# script exits 1 if any differs or is missing.
#
# Env: LIFEOS, B3SUM (default: b3sum on PATH or ~/.cargo/bin/b3sum; installed with
#      `cargo install b3sum` into ~/.cargo/bin if missing), RUNS (default 5), KEEP=1.
set -euo pipefail

RUNS=${RUNS:-5}

B3SUM=${B3SUM:-$(command -v b3sum || echo "$HOME/.cargo/bin/b3sum")}
if [[ ! -x $B3SUM ]]; then
    echo "hash-vs-b3sum: installing b3sum (cargo install b3sum)"
    CARGO_TARGET_DIR=/tmp/b3sum-target cargo install b3sum
    rm -rf /tmp/b3sum-target
    B3SUM=$HOME/.cargo/bin/b3sum
fi
# shellcheck source=benches/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
bench_init hash hyperfine jq perl
tree=$tmp/tree
mkdir -p "$tree"

echo "hash-vs-b3sum: generating 20,000 small files + 3 x 50 MiB in $tree"
perl -e '
    my $root = shift; srand(7);
    for my $d (0..199) {
        my $dir = sprintf("%s/d%03d", $root, $d);
        mkdir $dir;
        for my $f (0..99) {
            my $n = 512 + int(rand(3585));
            my $s = join("", map { chr(32 + int(rand(95))) } 1..$n);
            open(my $fh, ">", sprintf("%s/f%03d.txt", $dir, $f)) or die $!;
            print $fh $s; close $fh;
        }
    }' "$tree"
mkdir -p "$tree/big"
for i in 1 2 3; do head -c $((50 << 20)) /dev/urandom >"$tree/big/blob$i.bin"; done
cat >"$tree/lifeos.toml" <<'EOF'
[project]
name = "bench-hash"

[tasks.hash]
kind = "exec"
run = "true"
inputs = ["**"]
EOF
find "$tree" -exec touch -h -d '@'$(($(date +%s) - 3600)) {} +

nfiles=$(find "$tree" -type f | wc -l)
nbytes=$(find "$tree" -type f -printf '%s\n' | awk '{s+=$1} END {print s}')
echo "hash-vs-b3sum: $nfiles files, $((nbytes >> 20)) MiB"

cat >"$tmp/b3sum.sh" <<EOF
#!/bin/sh
cd "$tree" && find . -path ./.lifeos -prune -o -type f -print0 | xargs -0 -n 5000 "$B3SUM" >/dev/null
EOF
P=$(nproc)
cat >"$tmp/b3sum-p.sh" <<EOF
#!/bin/sh
cd "$tree" && find . -path ./.lifeos -prune -o -type f -print0 | xargs -0 -P $P -n $((nfiles / P + 1)) "$B3SUM" >/dev/null
EOF
chmod +x "$tmp"/b3sum*.sh

rm -rf "$tree/.lifeos"
check=$("$LIFEOS" -C "$tree" --json run | jq -r 'select(.event == "run_finished") | .summary
    | "ran=\(.ran) hashed=\(.files_hashed)"')
echo "hash-vs-b3sum: lifeos cold check: $check"

# Same digests as b3sum, file for file (lifeos records "<hex>" or "<hex>:<mode>" per path).
"$LIFEOS" -C "$tree" explain hash --json \
    | jq -r '.fingerprint.inputs | to_entries[] | "\(.value | split(":")[0])  \(.key)"' \
    | sort -k2 >"$tmp/lifeos.sums"
(cd "$tree" && find . -path ./.lifeos -prune -o -type f -print0 | xargs -0 "$B3SUM" | sed 's|  \./|  |') \
    | sort -k2 >"$tmp/b3sum.sums"
if ! diff -q "$tmp/lifeos.sums" "$tmp/b3sum.sums" >/dev/null; then
    echo "hash-vs-b3sum: lifeos's digests differ from b3sum's:" >&2
    diff "$tmp/lifeos.sums" "$tmp/b3sum.sums" | head -n 10 >&2
    exit 1
fi
digests="$(wc -l <"$tmp/lifeos.sums") of $nfiles files: same digests as b3sum"
echo "hash-vs-b3sum: $digests"

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
hyperfine -N --style basic --warmup 1 --runs "$RUNS" --export-json "$tmp/r.json" \
    --prepare "rm -rf $tree/.lifeos" -n "lifeos cold run" "$LIFEOS -C $tree run" \
    --prepare "true" -n "b3sum (xargs)" "$tmp/b3sum.sh" \
    --prepare "true" -n "b3sum (xargs -P $P)" "$tmp/b3sum-p.sh"
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

echo
echo "## hash-vs-b3sum: $nfiles files, $((nbytes >> 20)) MiB, warm page cache ($(nproc) cores; load $load_before -> $load_after)"
jq -r --argjson bytes "$nbytes" '.results[] |
    [.command, (.mean*1000|round), ((.stddev // 0)*1000|round), (.min*1000|round), ($bytes/.mean/1e6|round)] | @tsv' "$tmp/r.json" \
    | { printf 'command\tmean ms\tstddev ms\tmin ms\tMB/s\n'; cat; } | column -t -s $'\t'
l=$(jq '.results[0].mean' "$tmp/r.json")
b=$(jq '[.results[1].mean, .results[2].mean] | min' "$tmp/r.json")
echo
awk -v l="$l" -v b="$b" 'BEGIN { printf "lifeos cold / best b3sum = %.2fx the time\n", l / b }'
echo "lifeos check: $check (lifeos.toml is one of the files it hashes); $digests"
