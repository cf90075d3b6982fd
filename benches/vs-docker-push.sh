#!/usr/bin/env bash
# No-op push of two images against `docker push` of the same two tags, both already in the
# registry.
#
# A real registry (Debian's docker-registry, htpasswd auth) on a free loopback port; a
# project with two image tasks (FROM scratch + the host's static busybox, one small file each)
# and a push of each to that registry under `v1` and `latest`. After the first run:
#
#   lifeos no-op push   `lifeos run push-web push-api`: both images cached (the engine's
#                       events since the last run: one call), both pushes cached (a manifest
#                       HEAD per tag, all six at once, straight to the registry);
#   docker push x2      `docker push REPO-web:v1` then `REPO-api:v1` with the same
#                       credentials (a temp DOCKER_CONFIG): the engine HEADs every layer,
#                       finds them all, and puts the manifest again.
#
# Checks: the lifeos row must be a clean no-op (ran=0), and the registry log must show no
# blob upload during the timed runs.
#
# Goal: the lifeos no-op at least 20x faster than the two docker pushes (ratio of medians).
#
# Also CPU per run (less at the mercy of a shared machine than wall time): the client
# processes' user+sys, plus what the registry and dockerd spent meanwhile (/proc ticks).
# htpasswd registries check a bcrypt hash on every request, so each HEAD costs the registry
# ~2-3 ms of CPU: the floor of any check that asks the registry.
#
# Env: LIFEOS (default: scripts/build-release.sh's binary), RUNS (docker rows, default 10),
#      LIFEOS_RUNS (default 50), ROUNDS (default 3), KEEP=1, AUTH=none (no htpasswd on the
#      registry).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=common.sh
. "$here/common.sh"
bench_init vs-docker-push hyperfine jq docker docker-registry htpasswd curl
RUNS=${RUNS:-10}
LIFEOS_RUNS=${LIFEOS_RUNS:-50}
ROUNDS=${ROUNDS:-3}
GOAL=20

user=bench
pass='b?+/nch'
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
host=127.0.0.1:$port
htpasswd -Bbn "$user" "$pass" >"$tmp/htpasswd"
cat >"$tmp/registry.yml" <<YML
version: 0.1
log:
  level: warn
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: $tmp/registry
http:
  addr: $host
YML
# AUTH=none: a registry without htpasswd, to see what its bcrypt costs both sides.
if [[ ${AUTH:-htpasswd} == htpasswd ]]; then
    printf 'auth:\n  htpasswd:\n    realm: bench\n    path: %s\n' "$tmp/htpasswd" >>"$tmp/registry.yml"
fi
docker-registry serve "$tmp/registry.yml" >"$tmp/registry.log" 2>&1 &
reg_pid=$!
bench_cleanup_push() {
    kill "$reg_pid" 2>/dev/null || true
    docker image prune -a -f --filter label=lifeos.test=bench-push >/dev/null 2>&1 || true
    bench_cleanup
}
trap bench_cleanup_push EXIT
for _ in $(seq 100); do curl -s "http://$host/v2/" >/dev/null && break; sleep 0.1; done

proj=$tmp/proj
mkdir -p "$proj/app"
cp /bin/busybox "$proj/app/busybox"
echo "web $$" >"$proj/app/web.txt"
echo "api $$" >"$proj/app/api.txt"
cat >"$proj/app/Dockerfile" <<'DF'
FROM scratch AS base
LABEL lifeos.test=bench-push
COPY busybox /bin/busybox
FROM base AS web
COPY web.txt /srv/web.txt
FROM base AS api
COPY api.txt /srv/api.txt
DF
cat >"$proj/lifeos.toml" <<TOML
[vars]
registry = "$host/bench"

[tasks.web]
kind = "image"
context = "app"
target = "web"
tag = "lifeos-bench-push-web:latest"

[tasks.api]
kind = "image"
context = "app"
target = "api"
tag = "lifeos-bench-push-api:latest"

[tasks.push-web]
kind = "push"
image = "web"
repository = "\${vars.registry}/web"
tags = ["v1", "latest"]

[tasks.push-api]
kind = "push"
image = "api"
repository = "\${vars.registry}/api"
tags = ["v1", "latest"]
TOML
find "$proj" -exec touch -h -d '@'$(($(date +%s) - 3600)) {} +
export LIFEOS_REGISTRY_USER=$user LIFEOS_REGISTRY_PASSWORD=$pass
"$LIFEOS" -C "$proj" run push-web push-api >"$tmp/first.log" 2>&1 || { tail -n 30 "$tmp/first.log"; exit 1; }

# The Docker CLI with the same credentials, in its own config dir.
export DOCKER_CONFIG=$tmp/docker-config
mkdir -p "$DOCKER_CONFIG"
printf '%s' "$pass" | docker login -u "$user" --password-stdin "$host" >/dev/null 2>&1
cat >"$tmp/docker-push.sh" <<SH
#!/bin/sh
set -e
docker push -q $host/bench/web:v1 >/dev/null
docker push -q $host/bench/api:v1 >/dev/null
SH
chmod +x "$tmp/docker-push.sh"
"$tmp/docker-push.sh"

check=$("$LIFEOS" -C "$proj" --json run push-web push-api | jq -r 'select(.event == "run_finished") | .summary
    | "ran=\(.ran) cached=\(.cached) failed=\(.failed)"')
[[ $check == ran=0*failed=0* ]] || { echo "vs-docker-push: the lifeos run is not a no-op: $check" >&2; exit 1; }
uploads_before=$(grep -c '"POST /v2/.*/blobs/uploads/' "$tmp/registry.log" || true)

# The registry floor: the same six manifest HEADs (every tag of both pushes, all at once, with
# the same credentials and Accept types) from curl, whose process start is the only other
# cost. No check that asks this registry about each tag can be faster than this row, less
# curl's start (`curl --version` below).
printf 'user = "%s:%s"\nsilent\nhead\nheader = "Accept: %s"\n' "$user" "$pass" \
    "application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json" \
    >"$tmp/curlrc"
heads=()
for name in web api; do
    for t in $(curl -s -u "$user:$pass" "http://$host/v2/bench/$name/tags/list" | jq -r '.tags[]'); do
        heads+=("http://$host/v2/bench/$name/manifests/$t")
        printf 'url = "%s"\noutput = "/dev/null"\n' "http://$host/v2/bench/$name/manifests/$t" >>"$tmp/curlrc"
    done
done
[[ ${#heads[@]} == 6 ]] || { echo "vs-docker-push: expected 6 tags in the registry, found ${#heads[@]}" >&2; exit 1; }

# Rounds: docker then lifeos, ROUNDS times, so a load change on this shared machine hits both
# sides of a ratio; the verdict is the median of the rounds' ratios. Each round also times
# the images-only no-op (`lifeos run web api`: lifeos without the registry), so what the
# registry costs the push no-op shows as the difference.
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
ratios=()
for round in $(seq "$ROUNDS"); do
    hyperfine -N --style basic --warmup 2 --runs "$RUNS" --export-json "$tmp/docker.$round.json" \
        -n "docker push x2 (already there)" "$tmp/docker-push.sh" >"$tmp/hf.log" 2>&1 \
        || { cat "$tmp/hf.log"; exit 1; }
    hyperfine -N --style basic --warmup 5 --runs "$LIFEOS_RUNS" --export-json "$tmp/lifeos.$round.json" \
        -n "lifeos no-op push x2" "$LIFEOS -C $proj run push-web push-api" \
        -n "lifeos no-op, images only" "$LIFEOS -C $proj run web api" \
        -n "registry floor: the 6 HEADs by curl -Z" "curl -Z -K $tmp/curlrc" \
        -n "curl --version (its start)" "curl --version" >"$tmp/hf.log" 2>&1 \
        || { cat "$tmp/hf.log"; exit 1; }
    r=$(jq -s '(.[0].results[0].median) / (.[1].results[0].median)' "$tmp/docker.$round.json" "$tmp/lifeos.$round.json")
    ratios+=("$r")
    printf 'round %s: docker %.1f ms, lifeos %.1f ms (images only %.1f ms; curl HEADs %.1f ms, curl start %.1f ms): %.2fx (load %s)\n' "$round" \
        "$(jq '.results[0].median*1000' "$tmp/docker.$round.json")" \
        "$(jq '.results[0].median*1000' "$tmp/lifeos.$round.json")" \
        "$(jq '.results[1].median*1000' "$tmp/lifeos.$round.json")" \
        "$(jq '.results[2].median*1000' "$tmp/lifeos.$round.json")" \
        "$(jq '.results[3].median*1000' "$tmp/lifeos.$round.json")" "$r" "$(cut -d' ' -f1 /proc/loadavg)"
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
uploads_after=$(grep -c '"POST /v2/.*/blobs/uploads/' "$tmp/registry.log" || true)
[[ $uploads_after == "$uploads_before" ]] || { echo "vs-docker-push: blobs were uploaded during the timed runs" >&2; exit 1; }
# The last round's rows are the table; every round's ratio is printed above.
cp "$tmp/docker.$ROUNDS.json" "$tmp/docker.json"
cp "$tmp/lifeos.$ROUNDS.json" "$tmp/lifeos.json"

# CPU per run: the command's own (children's rusage) and the registry's and dockerd's.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
dockerd_pid=$(pgrep -o -x dockerd || true)
requests() { grep -cE '"(GET|HEAD|PUT|POST|PATCH) /v2/' "$tmp/registry.log" || true; }
cpu_per_run() { # N CMD...: "client registry dockerd requests" per run (ms, ms, ms, count)
    local n=$1 r0 d0 r1 d1 q0 q1 c
    shift
    r0=$(ticks "$reg_pid"); d0=$([[ -n $dockerd_pid ]] && ticks "$dockerd_pid" || echo 0); q0=$(requests)
    c=$( { TIMEFORMAT='%U %S'; time (for _ in $(seq "$n"); do "$@" >/dev/null 2>&1; done); } 2>&1 | tail -n 1)
    r1=$(ticks "$reg_pid"); d1=$([[ -n $dockerd_pid ]] && ticks "$dockerd_pid" || echo 0); q1=$(requests)
    awk -v c="$c" -v n="$n" -v r=$((r1 - r0)) -v d=$((d1 - d0)) -v q=$((q1 - q0)) -v hz="$hz" 'BEGIN {
        split(c, t, " "); printf "%.1f %.1f %.1f %.1f", (t[1] + t[2]) * 1000 / n, r * 1000 / hz / n, d * 1000 / hz / n, q / n }'
}
read -r dc dr dd dq <<<"$(cpu_per_run "$RUNS" "$tmp/docker-push.sh")"
read -r lc lr ld lq <<<"$(cpu_per_run "$LIFEOS_RUNS" "$LIFEOS" -C "$proj" run push-web push-api)"

jq -s '{results: (.[0].results + .[1].results)}' "$tmp/docker.json" "$tmp/lifeos.json" >"$tmp/r.json"
med() { jq --arg n "$1" '.results[] | select(.command == $n) | .median*1000' "$tmp/r.json"; }
ratio=$(printf '%s\n' "${ratios[@]}" | sort -g | awk '{ r[NR] = $1 } END { printf "%.6f", (NR % 2) ? r[(NR + 1) / 2] : (r[NR / 2] + r[NR / 2 + 1]) / 2 }')
verdict=$(awk -v r="$ratio" -v g="$GOAL" 'BEGIN { print (r >= g ? "PASS" : "FAIL") }')
echo
echo "## vs-docker-push: two images already in the registry ($(nproc) cores; load $load_before -> $load_after)"
jq -r '.results[] | [.command, (.median*1000|.*100|round/100), (.mean*1000|.*100|round/100), ((.stddev // 0)*1000|.*100|round/100), (.min*1000|.*100|round/100)] | @tsv' "$tmp/r.json" \
    | { printf 'command\tmedian ms\tmean ms\tstddev ms\tmin ms\n'; cat; } | column -t -s $'\t'
echo
echo "CPU ms per run      client  registry  dockerd  total  registry requests  registry ms/request"
awk -v c="$dc" -v r="$dr" -v d="$dd" -v q="$dq" 'BEGIN { printf "docker push x2      %6.1f  %8.1f  %7.1f  %5.1f  %17.1f  %19.2f\n", c, r, d, c + r + d, q, q ? r / q : 0 }'
awk -v c="$lc" -v r="$lr" -v d="$ld" -v q="$lq" 'BEGIN { printf "lifeos no-op push   %6.1f  %8.1f  %7.1f  %5.1f  %17.1f  %19.2f\n", c, r, d, c + r + d, q, q ? r / q : 0 }'
echo "lifeos check: $check; blob uploads during the timed runs: 0"
echo "ratio of medians per round: ${ratios[*]}"
echo "goal: lifeos no-op push >= ${GOAL}x faster than docker push x2 (median of the rounds' ratios of medians): $verdict (${ratio}x)"
[[ $verdict == PASS ]]
