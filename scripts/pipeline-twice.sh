#!/usr/bin/env bash
# The root lifeos.toml's whole release graph on the example, twice, offline (no --env: the
# local engine behind lifeos' router; staging and prod are Cloud Run): test → images → push
# → Postgres + Redis → migrate → deploy web/api → e2e → canary → check → promote → backup.
# The first run starts from nothing (a fresh cache dir); it must succeed. The second must
# do nothing but the checks (e2e, check-canary): any other task that runs fails this script.
#
#   scripts/pipeline-twice.sh [LIFEOS_BINARY]     (default: lifeos on PATH)
#
# Isolated from anything else on the engine: its own project name (so its own containers,
# network, router and volumes), image tags, free loopback ports and a docker-registry of its
# own on a free port; all removed at the end (`lifeos down --volumes`, the app images' tags).
# Shared, content-addressed: lifeos-base:latest, lifeos-debian:bookworm, lifeos-router:bookworm
# and the rootfs tarballs under example/ (what `lifeos build` makes there anyway).
# Writes the two run summaries to $PIPELINE_SUMMARY_DIR (default: a temp dir) for CI to keep.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
lifeos=${1:-lifeos}
token=${LIFEOS_TEST_RUN:-$$}
name=lifeos-ci-$token
work=$(mktemp -d "${TMPDIR:-/tmp}/lifeos-pipeline.XXXXXX")
summaries=${PIPELINE_SUMMARY_DIR:-$work}
mkdir -p "$summaries"
# Next to the original: the project root is the repository (example/ paths, ${git.sha}).
cfg=$root/lifeos.ci-$token.toml
reg_pid=
reg_port=

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

cleanup() {
    set +e
    "$lifeos" -f "$cfg" --cache-dir "$work/cache" down --volumes >/dev/null 2>&1
    # By reference, never by ID: the same image may carry other projects' tags.
    docker rmi "lifeos-web:ci$token" "lifeos-api:ci$token" \
        $(docker images --format '{{.Repository}}:{{.Tag}}' | grep "^127.0.0.1:$reg_port/") >/dev/null 2>&1
    [[ -z $reg_pid ]] || kill "$reg_pid" 2>/dev/null
    rm -rf "$cfg" "$root/.lifeos-ci-$token" "$work"
}
trap cleanup EXIT

# Its own project name and backup directory; everything else as in the repository.
sed -e "s/^name = \"lifeos\"\$/name = \"$name\"/" \
    -e "s|^dir = \"backups\"\$|dir = \".lifeos-ci-$token/backups\"|" \
    "$root/lifeos.toml" > "$cfg"
grep -q "^name = \"$name\"\$" "$cfg" || { echo "pipeline: lifeos.toml has no [project] name = \"lifeos\" line to rename" >&2; exit 1; }

reg_port=$(free_port)
mkdir -p "$work/registry"
cat > "$work/registry/config.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $work/registry/data
http:
  addr: 127.0.0.1:$reg_port
EOF
docker-registry serve "$work/registry/config.yml" > "$work/registry/log" 2>&1 &
reg_pid=$!
for _ in $(seq 50); do
    curl -fsS "http://127.0.0.1:$reg_port/v2/" >/dev/null 2>&1 && break
    sleep 0.2
done

sets=(
    --set "tag=ci$token"
    --set "registry=127.0.0.1:$reg_port/lifeos"
    --set "pg_port=$(free_port)" --set "redis_port=$(free_port)" --set "api_port=$(free_port)"
    --set "web_publish=$(free_port)" --set "api_publish=$(free_port)"
    --set check_window=10s
)
# The release graph (api-dev, a development convenience, is not part of it).
targets=(promote-api deploy-web push-web push-api backup)

run() { # run N: one run of the graph, its summary in $summaries/runN.json; its time
    local start end rc=0
    start=$(date +%s.%N)
    CI=1 "$lifeos" -f "$cfg" --cache-dir "$work/cache" "${sets[@]}" run \
        --summary "$summaries/run$1.json" "${targets[@]}" || rc=$?
    end=$(date +%s.%N)
    echo "pipeline: run $1 exit $rc in $(awk "BEGIN { printf \"%.1f\", $end - $start }")s"
    return "$rc"
}

run 1 || { echo "pipeline: the first run failed" >&2; exit 1; }
run 2 || { echo "pipeline: the second run failed" >&2; exit 1; }

# Anything but the checks that ran (or failed, or was skipped) the second time is a cache miss.
python3 - "$summaries/run2.json" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
checks = {"e2e", "check-canary"}
bad = [(t["name"], t["status"], t["reason"]) for t in s["tasks"]
       if t["status"] != "cached" and t["name"] not in checks]
for name, status, reason in bad:
    print(f"pipeline: second run: {name} {status}: {reason}", file=sys.stderr)
ran = sorted(t["name"] for t in s["tasks"] if t["status"] == "ran")
print(f"pipeline: second run ran {ran}, {s['cached']} cached, {s['wall_ms']} ms")
sys.exit(1 if bad else 0)
EOF
