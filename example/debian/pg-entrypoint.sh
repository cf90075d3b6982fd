#!/bin/sh
# PostgreSQL 15 in the foreground, for the lifeos-debian image.
#
#   docker run -e POSTGRES_PASSWORD=... -v pgdata:/var/lib/postgresql/data \
#       lifeos-debian:bookworm pg-entrypoint.sh [postgres options, e.g. -c shared_buffers=64MB]
#
# Environment:
#   POSTGRES_PASSWORD  required on first start (password of POSTGRES_USER)
#   POSTGRES_USER      superuser name (default postgres)
#   POSTGRES_DB        database created on first start (default lifeos)
#   PGDATA             data directory (default /var/lib/postgresql/data)
#
# Starts as root: owns $PGDATA (a fresh named volume is root-owned), runs
# initdb once if $PGDATA holds no cluster yet, then execs postgres as user
# postgres, so postgres is PID 1 and gets docker stop's signal itself. The
# image's STOPSIGNAL is SIGINT (fast shutdown: rolls back open sessions and
# checkpoints); a plain SIGTERM is a smart shutdown (waits for clients to
# disconnect). Both end in a clean shutdown, no recovery on the next start.
set -eu

PGDATA=${PGDATA:-/var/lib/postgresql/data}
POSTGRES_USER=${POSTGRES_USER:-postgres}
POSTGRES_DB=${POSTGRES_DB:-lifeos}
export PGDATA
sockdir=/run/postgresql

log() { echo "pg-entrypoint: $*" >&2; }
die() { log "error: $*"; exit 1; }

# Run a command as the postgres user (from root), or as ourselves otherwise.
if [ "$(id -u)" = 0 ]; then
    as_postgres() { setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"; }
    mkdir -p "$PGDATA" "$sockdir"
    chown postgres:postgres "$PGDATA" "$sockdir"
    chmod 0700 "$PGDATA"
    chmod 2775 "$sockdir"
else
    as_postgres() { "$@"; }
    mkdir -p "$PGDATA" "$sockdir" 2>/dev/null || true
    chmod 0700 "$PGDATA" 2>/dev/null || true
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    if [ -z "${POSTGRES_PASSWORD:-}" ]; then
        die "POSTGRES_PASSWORD is not set: it is required to initialise the database in $PGDATA"
    fi
    if [ -n "$(ls -A "$PGDATA" 2>/dev/null)" ]; then
        die "$PGDATA is not empty but holds no cluster (no PG_VERSION); refusing to initdb over it"
    fi
    log "initialising a new cluster in $PGDATA (superuser $POSTGRES_USER, database $POSTGRES_DB)"

    pwfile=$(mktemp)
    trap 'rm -f "$pwfile"' EXIT
    printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
    [ "$(id -u)" = 0 ] && chown postgres "$pwfile"

    # Local (unix socket, inside the container) connections are trusted;
    # every TCP connection needs the password (SCRAM).
    as_postgres initdb --pgdata="$PGDATA" --username="$POSTGRES_USER" \
        --pwfile="$pwfile" --encoding=UTF8 --locale=C.UTF-8 \
        --auth-local=trust --auth-host=scram-sha-256 > /dev/null
    rm -f "$pwfile"

    {
        echo
        echo "# added by pg-entrypoint.sh"
        echo "listen_addresses = '*'"
        echo "unix_socket_directories = '$sockdir'"
        # The image leaves out LLVM (see make-rootfs.sh): say so explicitly.
        if [ ! -e "$(pg_config --pkglibdir)/llvmjit.so" ]; then echo "jit = off"; fi
    } >> "$PGDATA/postgresql.conf"
    {
        echo
        echo "# added by pg-entrypoint.sh: password (SCRAM) logins from any host"
        echo "host all all all scram-sha-256"
    } >> "$PGDATA/pg_hba.conf"

    if [ "$POSTGRES_DB" != postgres ]; then
        # A private, socket-only server just for the setup.
        as_postgres pg_ctl --pgdata="$PGDATA" --wait --silent \
            -o "-c listen_addresses='' -c unix_socket_directories=$sockdir" start
        as_postgres createdb --host="$sockdir" --username="$POSTGRES_USER" -- "$POSTGRES_DB"
        as_postgres pg_ctl --pgdata="$PGDATA" --wait --silent --mode=fast stop
    fi
    trap - EXIT
    log "cluster ready"
fi

# The example api's /ready probe role (created by migrate.sh, example/api/lib/probe.sh
# says why) logs in without a password, on POSTGRES_DB only. pg_hba.conf takes the first
# matching line: this one goes on top, once, also into clusters made before it existed.
probe_line="host $POSTGRES_DB lifeos_probe all trust"
if ! grep -qxF "$probe_line" "$PGDATA/pg_hba.conf"; then
    sed -i "1i # added by pg-entrypoint.sh: the api's /ready probe (SELECT on schema_migrations only)\\n$probe_line" \
        "$PGDATA/pg_hba.conf"
    if [ "$(id -u)" = 0 ]; then chown postgres:postgres "$PGDATA/pg_hba.conf"; fi
fi

if [ "$(id -u)" = 0 ]; then
    exec setpriv --reuid=postgres --regid=postgres --init-groups -- postgres -D "$PGDATA" "$@"
fi
exec postgres -D "$PGDATA" "$@"
