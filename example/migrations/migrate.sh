#!/bin/sh
# Apply the example's SQL migrations: every *.sql next to this script (or in
# $MIGRATIONS_DIR), in lexical order, that is not yet recorded in the
# schema_migrations table. Each file runs in ONE transaction together with
# the insert of its schema_migrations row, so a failing migration changes
# nothing and is not recorded (migration files must not BEGIN/COMMIT).
#
# Runs in the lifeos-debian image with this directory mounted read-only:
#   docker run --rm --network NET -v "$PWD/example/migrations:/migrations:ro" \
#       -e PGHOST=postgres -e PGUSER=postgres -e PGPASSWORD=... -e PGDATABASE=lifeos \
#       lifeos-debian:bookworm sh /migrations/migrate.sh
# (or on the host, with psql installed and PG* pointing at a published port).
#
# Environment: libpq's PGHOST, PGPORT (5432), PGUSER, PGPASSWORD,
# PGDATABASE; MIGRATIONS_DIR (default: this script's directory);
# MIGRATE_WAIT seconds to wait for the server to accept connections (30).
#
# Prints "applied NAME" per migration, or "up to date". Exit status: 0 on
# success, 1 if a migration failed (psql's error is on stderr), 2 if the
# server could not be reached.
set -eu
export LC_ALL=C    # lexical (byte) order of the file names

dir=${MIGRATIONS_DIR:-$(cd "$(dirname "$0")" && pwd)}
wait_secs=${MIGRATE_WAIT:-30}

run_psql() { psql -X -q -v ON_ERROR_STOP=1 "$@"; }

# Wait for the server (a service task may still be starting up).
waited=0
until pg_isready -q; do
    if [ "$waited" -ge "$wait_secs" ]; then
        echo "migrate: postgres at ${PGHOST:-local socket}:${PGPORT:-5432} is not accepting connections after ${wait_secs}s" >&2
        exit 2
    fi
    sleep 1
    waited=$((waited + 1))
done

run_psql -c 'SET client_min_messages = warning;
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    text PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
)' || exit 2
applied=$(run_psql -At -c 'SELECT version FROM schema_migrations') || exit 2

count=0
for file in "$dir"/*.sql; do
    [ -f "$file" ] || continue    # no *.sql at all: the glob stays literal
    name=$(basename "$file")
    if printf '%s\n' "$applied" | grep -qxF -- "$name"; then
        continue
    fi
    # The file, then the bookkeeping insert (read from stdin), both inside
    # the single transaction psql wraps around all its -f arguments.
    if ! printf '%s\n' "INSERT INTO schema_migrations (version) VALUES (:'version');" \
        | run_psql --single-transaction -v version="$name" -f "$file" -f - > /dev/null; then
        echo "migrate: $name failed: rolled back, not recorded" >&2
        exit 1
    fi
    echo "applied $name"
    count=$((count + 1))
done

# The api's /ready probe (example/api/lib/probe.sh says why): a login that may read
# schema_migrations and nothing else, granted only once every migration has applied, so
# /ready turns 200 after a complete migrate. pg-entrypoint.sh trusts it on this database.
run_psql -c "SET client_min_messages = warning;
DO \$\$ BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'lifeos_probe') THEN
        CREATE ROLE lifeos_probe LOGIN NOINHERIT CONNECTION LIMIT 10;
    END IF;
END \$\$;
GRANT SELECT ON schema_migrations TO lifeos_probe" || {
    echo "migrate: could not create the /ready probe role lifeos_probe (needs CREATEROLE)" >&2
    exit 1
}

if [ "$count" -eq 0 ]; then
    echo "up to date"
fi
