#!/usr/bin/env bash
# Time from `lifeos up` to Postgres + Redis healthy: cold (containers and volumes absent:
# initdb runs), restart (containers absent, volumes kept), and the no-op `up` (all running).
# Goal: the no-op `up` under 200 ms. Needs lifeos-debian:bookworm (built here through
# `lifeos build debian` on the repository's own lifeos.toml).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
lifeos=${LIFEOS:-$("$root/scripts/build-release.sh")}
[[ -x $lifeos ]] || { echo "up: LIFEOS=$lifeos is not an executable" >&2; exit 2; }
command -v hyperfine >/dev/null || { echo "hyperfine is missing: scripts/setup.sh installs it" >&2; exit 1; }

CI=1 "$lifeos" -C "$root" build debian >/dev/null

dir=$(mktemp -d /tmp/lifeos-bench-up.XXXXXX)
project="benchup$$"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pg=$(free_port); rd=$(free_port)
cleanup() { (cd "$dir" && "$lifeos" down --volumes >/dev/null 2>&1 || true); rm -rf "$dir"; }
trap cleanup EXIT

cat > "$dir/lifeos.toml" <<TOML
[project]
name = "$project"

[tasks.postgres]
kind = "service"
image = "lifeos-debian:bookworm"
cmd = ["pg-entrypoint.sh"]
env = ["POSTGRES_DB=lifeos", "POSTGRES_PASSWORD=bench"]
ports = ["127.0.0.1:$pg:5432"]
volumes = ["pgdata:/var/lib/postgresql/data"]
health = { cmd = ["pg_isready", "-U", "postgres", "-h", "127.0.0.1"], interval = "200ms", retries = 150 }
labels = { "lifeos.test" = "bench" }

[tasks.redis]
kind = "service"
image = "lifeos-debian:bookworm"
cmd = ["redis-entrypoint.sh"]
ports = ["127.0.0.1:$rd:6379"]
volumes = ["redisdata:/data"]
health = { cmd = ["redis-cli", "ping"], interval = "200ms", retries = 150 }
labels = { "lifeos.test" = "bench" }
TOML

cd "$dir"
export CI=1
echo "load before: $(uptime)"
hyperfine --style basic --runs 3 --prepare "$lifeos down --volumes" "$lifeos up" --export-json cold.json
hyperfine --style basic --runs 3 --prepare "$lifeos down" "$lifeos up" --export-json restart.json
"$lifeos" up >/dev/null
hyperfine --style basic --warmup 3 --runs 30 "$lifeos up" --export-json noop.json
python3 - <<'PY'
import json
def mean(f):
    r = json.load(open(f))["results"][0]
    return r["mean"] * 1000, r["stddev"] * 1000
rows = [("cold (no containers, no volumes)", "cold.json"), ("restart (volumes kept)", "restart.json"), ("no-op (all healthy)", "noop.json")]
print()
print("| lifeos up | mean ms | stddev ms |")
print("|---|---|---|")
for name, f in rows:
    m, s = mean(f)
    print(f"| {name} | {m:.0f} | {s:.0f} |")
m = json.load(open("noop.json"))["results"][0]["median"] * 1000
print(f"\nno-op goal < 200 ms (median): {'PASS' if m < 200 else 'FAIL'} ({m} ms)")
raise SystemExit(0 if m < 200 else 1)
PY
