#!/usr/bin/env bash
# A second checkout against a warm remote cache, against a cold run of the same graph.
#
# Generates 100 packages x 20 files (0.5-4 KiB) and one `exec` task per package with an
# output (`out/pkgNN/all`, the package's files concatenated, after 100 ms of "work"),
# chained as in noop-monorepo.sh. A real nginx (Debian's, WebDAV) on a loopback port is the
# remote cache. Then, once each (a run is seconds, not milliseconds):
#
#   cold     checkout A, empty local cache, empty remote: runs the 100 tasks, uploads;
#   warm     checkout B (a fresh copy of the sources), empty local cache, warm remote:
#            keys every task, finds the records, restores the outputs, runs nothing;
#   local    checkout C, no remote at all, empty cache: the same 100 tasks (the baseline).
#
# Reports wall time of each and the bytes moved (nginx's log). Goal: warm ≥ 5× faster than
# cold; the script exits 1 when missed.
#
# Env: LIFEOS (binary; default: scripts/build-release.sh), KEEP=1 keeps the temp dir.
set -euo pipefail
GOAL=5

# shellcheck source=benches/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
bench_init remote nginx perl jq

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$tmp/nginx/root/lifeos" "$tmp/nginx/body"
cat >"$tmp/nginx/nginx.conf" <<CONF
user root;
daemon on;
worker_processes 2;
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/error.log;
events { worker_connections 256; }
http {
    log_format bytes '\$request_method \$status \$body_bytes_sent \$request_length';
    access_log $tmp/nginx/access.log bytes;
    client_body_temp_path $tmp/nginx/body;
    client_max_body_size 0;
    server {
        listen 127.0.0.1:$port;
        root $tmp/nginx/root;
        location / { dav_methods PUT DELETE; create_full_put_path on; }
    }
}
CONF
nginx -c "$tmp/nginx/nginx.conf"
stop_nginx() { kill "$(cat "$tmp/nginx/nginx.pid")" 2>/dev/null || true; bench_cleanup; }
trap stop_nginx EXIT

src=$tmp/src
mkdir -p "$src"
perl -e '
    my $root = shift; srand(42);
    for my $p (0..99) {
        my $dir = sprintf("%s/pkg%02d", $root, $p);
        mkdir $dir;
        for my $f (0..19) {
            my $n = 512 + int(rand(3585));
            my $s = join("", map { chr(32 + int(rand(95))) } 1..$n);
            open(my $fh, ">", sprintf("%s/f%03d.txt", $dir, $f)) or die $!;
            print $fh $s; close $fh;
        }
    }' "$src"
config() { # $1: remote URL or ""
    if [[ -n $1 ]]; then printf '[cache]\nremote = "%s"\n' "$1"; fi
    echo '[project]'
    echo 'name = "bench-remote"'
    for p in $(seq 0 99); do
        n=$(printf 'pkg%02d' "$p")
        printf '\n[tasks.%s]\nkind = "exec"\ninputs = ["%s/**"]\noutputs = ["out/%s/**"]\n' "$n" "$n" "$n"
        printf 'run = "sleep 0.1; mkdir -p out/%s && cat %s/*.txt > out/%s/all"\n' "$n" "$n" "$n"
        if ((p % 10 != 0)); then
            printf 'deps = ["pkg%02d"]\n' $((p - 1))
        elif ((p > 0)); then
            echo 'deps = ["pkg00"]'
        fi
    done
}
for c in a b c; do
    cp -r "$src" "$tmp/$c"
done
config "http://127.0.0.1:$port/lifeos" >"$tmp/a/lifeos.toml"
config "http://127.0.0.1:$port/lifeos" >"$tmp/b/lifeos.toml"
config "" >"$tmp/c/lifeos.toml"

timed() { # dir → "ms ran cached"
    local t0 t1 s
    t0=$(date +%s%N)
    s=$("$LIFEOS" -C "$1" --json run | jq -r 'select(.event == "run_finished") | .summary | "\(.ran) \(.cached)"')
    t1=$(date +%s%N)
    echo "$(((t1 - t0) / 1000000)) $s"
}
bytes() { awk -v m="$1" '$1 == m { b += ($1 == "PUT" ? $4 : $3) } END { print b + 0 }' "$tmp/nginx/access.log"; }

read -r cold_ms cold_ran _ < <(timed "$tmp/a")
up=$(bytes PUT)
read -r warm_ms warm_ran warm_cached < <(timed "$tmp/b")
down=$(bytes GET)
read -r local_ms local_ran _ < <(timed "$tmp/c")
cmp -s "$tmp/a/out/pkg57/all" "$tmp/b/out/pkg57/all" || { echo "remote-cache: restored output differs" >&2; exit 1; }

ratio=$(awk -v c="$cold_ms" -v w="$warm_ms" 'BEGIN { printf "%.1f", c / w }')
echo "remote-cache: cold (runs ${cold_ran}, uploads $((up / 1024)) KiB): ${cold_ms} ms"
echo "remote-cache: warm second checkout (ran ${warm_ran}, cached ${warm_cached}, downloads $((down / 1024)) KiB): ${warm_ms} ms"
echo "remote-cache: local only, cold (runs ${local_ran}): ${local_ms} ms"
echo "remote-cache: warm is ${ratio}x faster than cold (goal >= ${GOAL}x)"
awk -v r="$ratio" -v g="$GOAL" 'BEGIN { exit !(r >= g) }' || { echo "remote-cache: goal missed" >&2; exit 1; }
