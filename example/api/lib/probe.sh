# Probes of the API's backing services, sourced by cgi-bin/health and cgi-bin/ready.
# busybox only: nc (+ timeout), printf, tr, grep. HEALTH_PROBE_TIMEOUT seconds (2).
#
# Why a password-less probe role for /ready: the api image is busybox and Postgres
# wants SCRAM-SHA-256 over TCP, which a shell cannot compute in reasonable time (PBKDF2
# with 4096 HMAC rounds), and shipping psql would make the image 20x larger. So
# migrate.sh (after the last migration) creates the role lifeos_probe that may SELECT from
# schema_migrations and nothing else, and pg-entrypoint.sh trusts that role on that one
# database only (a pg_hba line above the SCRAM one). The probe then logs in and sends one
# simple-protocol query. What the role can see beyond the table is what PUBLIC can (the
# catalogs): no application data. Without migrate.sh the role does not exist and /ready
# stays 503, which is the point.

probe_timeout=${HEALTH_PROBE_TIMEOUT:-2}

# talk HOST PORT: stdin to HOST:PORT, the reply to stdout. nc half-closes after stdin's
# EOF and exits when the server closes; `timeout` bounds a server that never answers
# (nc -w only covers the connect).
talk() {
    if command -v timeout >/dev/null 2>&1; then
        timeout "$((probe_timeout + 1))" nc -w "$probe_timeout" "$1" "$2" 2>/dev/null
    else
        nc -w "$probe_timeout" "$1" "$2" 2>/dev/null
    fi
}

# be32 N: N as a 4-byte big-endian integer.
be32() {
    printf "$(printf '\\%03o\\%03o\\%03o\\%03o' \
        $(($1 >> 24 & 255)) $(($1 >> 16 & 255)) $(($1 >> 8 & 255)) $(($1 & 255)))"
}

# pg_startup USER DB: a protocol-3.0 StartupMessage (length, 196608, NUL-terminated
# key/value pairs, a final NUL).
pg_startup() {
    app=lifeos-probe
    len=$((4 + 4 + 5 + ${#1} + 1 + 9 + ${#2} + 1 + 17 + ${#app} + 1 + 1))
    be32 "$len"
    be32 196608
    printf 'user\000%s\000database\000%s\000application_name\000%s\000\000' "$1" "$2" "$app"
}

# check_database: "ok" when the server answers a startup packet with an authentication
# request ('R'): accepting connections (what pg_isready checks; no login, nothing in the
# server log). 'E' (e.g. "starting up") or no answer: "down".
check_database() {
    [ -n "${DATABASE_HOST:-}" ] || { echo "not configured"; return; }
    first=$(pg_startup "${DATABASE_USER:-postgres}" "${DATABASE_NAME:-postgres}" |
        talk "$DATABASE_HOST" "${DATABASE_PORT:-5432}" | head -c 1)
    if [ "$first" = R ]; then echo ok; else echo down; fi
}

# check_redis: PING -> +PONG ("ok"), else "down".
check_redis() {
    [ -n "${REDIS_HOST:-}" ] || { echo "not configured"; return; }
    reply=$(
        {
            if [ -n "${REDIS_PASSWORD:-}" ]; then
                printf '*2\r\n$4\r\nAUTH\r\n$%s\r\n%s\r\n' "${#REDIS_PASSWORD}" "$REDIS_PASSWORD"
            fi
            printf 'PING\r\n'
        } | talk "$REDIS_HOST" "${REDIS_PORT:-6379}" | tr -d '\r'
    )
    case $reply in
        *+PONG*) echo ok ;;
        *) echo down ;;
    esac
}

# check_migrations: as DATABASE_PROBE_USER (lifeos_probe) on DATABASE_NAME (lifeos), the
# number of applied migrations: "ok N"; "pending" when the role or the table is missing
# (migrate.sh has not run); "down" with no answer; "error WHY" otherwise.
check_migrations() {
    [ -n "${DATABASE_HOST:-}" ] || { echo "not configured"; return; }
    sql="SELECT 'lifeos-migrations:' || count(*) FROM schema_migrations"
    # Startup, Query ('Q', length, SQL, NUL) and Terminate ('X') in one go: with a trust
    # login the server reads them in order; with any other method it asks for a password
    # and takes the 'Q' for a protocol violation (08P01).
    reply=$(
        {
            pg_startup "${DATABASE_PROBE_USER:-lifeos_probe}" "${DATABASE_NAME:-lifeos}"
            printf Q
            be32 $((4 + ${#sql} + 1))
            printf '%s\000X\000\000\000\004' "$sql"
        } | talk "$DATABASE_HOST" "${DATABASE_PORT:-5432}" | tr -c 'A-Za-z0-9:-' '\n'
    )
    # The DataRow's value (the next message's type byte, 'C', follows its digits).
    n=$(printf '%s\n' "$reply" | grep -o 'lifeos-migrations:[0-9]*' | head -n 1)
    if [ -n "$n" ]; then echo "ok ${n#lifeos-migrations:}"; return; fi
    # An ErrorResponse's SQLSTATE field: 'C' and five characters.
    code=$(printf '%s\n' "$reply" | grep -x 'C[0-9A-Z][0-9A-Z][0-9A-Z][0-9A-Z][0-9A-Z]' | head -n 1)
    case $code in
        "") echo down ;;
        C28000 | C42P01 | C3D000) echo pending ;;      # no role, no table, no database
        C08P01) echo "error: no trust login for the probe role (pg_hba.conf)" ;;
        C42501) echo "error: the probe role may not read schema_migrations" ;;
        *) echo "error: SQLSTATE ${code#C}" ;;
    esac
}

# app_version: APP_VERSION, plus the build's revision (the api image's GIT_SHA build
# arg) when there is one, so two builds can be told apart.
app_version() {
    if [ -n "${APP_REVISION:-}" ]; then
        echo "${APP_VERSION:-unknown}+$APP_REVISION"
    else
        echo "${APP_VERSION:-unknown}"
    fi
}
