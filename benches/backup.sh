#!/usr/bin/env bash
# The cost of a verified backup: `lifeos run backup --force` (pg_dump -Fc in a snapshot with
# per-table row counts, streamed to disk with sha256, fsync, full read back with pg_restore,
# sidecar, rename) against a plain `pg_dump -Fc` of the same database through the Docker CLI
# (`docker run --rm ... pg_dump -Fc > file`: the same image, network and output path through
# the engine). Goal: the verified backup costs at most 2x the plain dump.
#
#   BACKUP_BENCH_MB  size of the table data to generate (default 1024: 1 GiB; BENCH_DB_MB too)
#   RUNS          hyperfine runs of each (default 3)
#   LIFEOS        the binary (default: scripts/build-release.sh)
# Needs lifeos-debian:bookworm (built through `lifeos build debian` on the repository's
# lifeos.toml), hyperfine and psql.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
lifeos=${LIFEOS:-$("$root/scripts/build-release.sh")}
[[ -x $lifeos ]] || { echo "backup: LIFEOS=$lifeos is not an executable" >&2; exit 2; }
for t in hyperfine psql docker; do
    command -v "$t" >/dev/null || { echo "backup: needs $t (scripts/setup.sh)" >&2; exit 2; }
done
mb=${BACKUP_BENCH_MB:-${BENCH_DB_MB:-1024}}
runs=${RUNS:-3}

docker image inspect lifeos-debian:bookworm >/dev/null 2>&1 \
    || CI=1 "$lifeos" -C "$root" build debian >/dev/null

dir=$(mktemp -d /tmp/lifeos-bench-backup.XXXXXX)
project="benchbk$$"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pg=$(free_port)
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

[tasks.backup]
kind = "backup"
database = "postgres"
dbname = "lifeos"
dir = "backups"
keep = { last = 1 }
env = ["PGPASSWORD=bench"]
TOML

cd "$dir"
export CI=1 PGPASSWORD=bench
"$lifeos" up postgres >/dev/null
psql_() { psql -X -q -t -A -h 127.0.0.1 -p "$pg" -U postgres -d lifeos "$@"; }
# ~100 bytes of heap per row (two md5 texts); plus a small second table.
rows=$((mb * 1024 * 1024 / 100))
echo "filling: $rows rows (~$mb MiB of table data)"
psql_ -c "create table big (id bigint, a text, b text); insert into big select g, md5(g::text), md5((g * 7)::text) from generate_series(1, $rows) g; create table small as select g as id from generate_series(1, 1000) g" -c "vacuum analyze"
size=$(psql_ -c "select pg_size_pretty(pg_database_size('lifeos'))")
echo "database size: $size; load before: $(uptime)"

net="${project}_default"
plain="docker run --rm --label lifeos.test=bench --network $net -e PGPASSWORD=bench lifeos-debian:bookworm pg_dump -Fc -h $project-postgres -U postgres lifeos > $dir/plain.dump"
hyperfine --style basic --runs "$runs" "$plain" --export-json plain.json
hyperfine --style basic --runs "$runs" "$lifeos run backup --force" --export-json verified.json
echo "plain dump: $(stat -c %s plain.dump) bytes; verified: $(stat -c %s backups/*.dump) bytes"
# Where the verified run's time goes (its own log line), from one more run.
"$lifeos" --json run backup --force | python3 -c '
import json, sys
for l in sys.stdin:
    e = json.loads(l)
    if e.get("event") == "task_log" and e.get("line", "").startswith("times:"):
        print("verified run, " + e["line"])
'
echo "load after: $(uptime)"
python3 - "$size" <<'PY'
import json, sys
p = json.load(open("plain.json"))["results"][0]
v = json.load(open("verified.json"))["results"][0]
ratio = v["median"] / p["median"]
print()
print(f"| database {sys.argv[1]} | median s | stddev s |")
print("|---|---|---|")
print(f"| plain pg_dump -Fc (docker run) | {p['median']:.2f} | {p['stddev']:.2f} |")
print(f"| lifeos run backup (dump + verify) | {v['median']:.2f} | {v['stddev']:.2f} |")
print(f"\nratio {ratio:.2f}x; goal <= 2x: {'PASS' if ratio <= 2 else 'FAIL'}")
raise SystemExit(0 if ratio <= 2 else 1)
PY
