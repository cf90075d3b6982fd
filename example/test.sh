#!/bin/sh
# Fast host-side tests of the Life OS example (no Docker needed).
# POSIX sh: runs under busybox sh, dash and bash. Usage: sh example/test.sh [web|api]
# (one side only: lifeos.toml's test-web and test-api, so a change to one app does not
# invalidate the other's image; both by default).
#
#  1. web/index.html is well-formed enough (doctype, balanced tags, assets).
#  2. api CGI scripts are executable and, run directly with a CGI
#     environment, print CRLF headers with Content-Type: application/json
#     and a valid JSON body.
#  3. web/build.sh and api/build.sh produce the runtime trees (in a temp dir).
#  4. If busybox httpd is available, a request for /health and /ready goes
#     through api/bin/handle-request end to end (no network).
set -u

here=$(cd "$(dirname "$0")" && pwd)
part=${1:-all}
case $part in all|web|api) ;; *) echo "usage: sh example/test.sh [web|api]" >&2; exit 2 ;; esac
want() { [ "$part" = all ] || [ "$part" = "$1" ]; }
failures=0
checks=0

pass() { checks=$((checks + 1)); echo "ok   - $1"; }
fail() { checks=$((checks + 1)); failures=$((failures + 1)); echo "FAIL - $1" >&2; }
check() { # check DESCRIPTION COMMAND...
    desc=$1
    shift
    if "$@"; then pass "$desc"; else fail "$desc"; fi
}

work=$(mktemp -d "${TMPDIR:-/tmp}/lifeos-example-test.XXXXXX") || exit 1
# (fake.pids: loopback test servers started by the /health checks below)
trap 'for pid in $(cat "$work/fake.pids" 2>/dev/null); do kill "$pid" 2>/dev/null; done; rm -rf "$work"' EXIT
trap 'exit 130' INT TERM

# /health probes these when set: start from the unconfigured defaults.
unset DATABASE_HOST DATABASE_PORT DATABASE_USER DATABASE_NAME REDIS_HOST REDIS_PORT REDIS_PASSWORD

# Validate JSON on stdin (objects, arrays, strings, numbers, literals).
json_valid() {
    awk '
    function bad(msg) { printf "invalid JSON: %s at offset %d\n", msg, pos > "/dev/stderr"; exit 1 }
    function ch() { return substr(s, pos, 1) }
    function ws() { while (pos <= n && index(" \t\r\n", ch()) > 0) pos++ }
    function str(   c) {
        if (ch() != "\"") bad("expected string")
        pos++
        while (pos <= n) {
            c = ch()
            if (c == "\"") { pos++; return }
            if (c == "\\") {
                c = substr(s, pos + 1, 1)
                if (index("\"\\/bfnrt", c) > 0) { pos += 2; continue }
                if (c == "u" && substr(s, pos + 2, 4) ~ /^[0-9A-Fa-f][0-9A-Fa-f][0-9A-Fa-f][0-9A-Fa-f]$/) { pos += 6; continue }
                bad("bad escape")
            }
            if (c == "\n" || c == "\t" || c == "\r") bad("control character in string")
            pos++
        }
        bad("unterminated string")
    }
    function obj() {
        pos++; ws()
        if (ch() == "}") { pos++; return }
        while (1) {
            ws(); str(); ws()
            if (ch() != ":") bad("expected :")
            pos++; val(); ws()
            if (ch() == ",") { pos++; continue }
            if (ch() == "}") { pos++; return }
            bad("expected , or }")
        }
    }
    function arr() {
        pos++; ws()
        if (ch() == "]") { pos++; return }
        while (1) {
            val(); ws()
            if (ch() == ",") { pos++; continue }
            if (ch() == "]") { pos++; return }
            bad("expected , or ]")
        }
    }
    function val(   c, rest) {
        ws(); c = ch()
        if (c == "{") { obj(); return }
        if (c == "[") { arr(); return }
        if (c == "\"") { str(); return }
        if (substr(s, pos, 4) == "true" || substr(s, pos, 4) == "null") { pos += 4; return }
        if (substr(s, pos, 5) == "false") { pos += 5; return }
        rest = substr(s, pos)
        if (match(rest, /^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?/)) { pos += RLENGTH; return }
        bad("unexpected character")
    }
    { s = s $0 "\n" }
    END {
        n = length(s); pos = 1
        if (n == 0) bad("empty document")
        val(); ws()
        if (pos <= n) bad("trailing data")
    }'
}

# CGI output helpers: header block (CR stripped) / body (after blank line).
cgi_headers() { awk '{ sub(/\r$/, "") } $0 == "" { exit } { print }' "$1"; }
cgi_body() { awk 'body { print; next } { sub(/\r$/, "") } $0 == "" { body = 1 }' "$1"; }
has_header() { cgi_headers "$1" | grep -qi "^$2"; }
lacks_header() { ! has_header "$@"; }
lacks_text() { ! grep -q "$1" "$2"; }
first_line_matches() { head -n 1 "$1" | grep -q "$2"; }
# Every header line and the blank separator must end in CRLF.
cgi_crlf() {
    awk '{ if ($0 !~ /\r$/) exit 1; if ($0 == "\r") { sep = 1; exit 0 } }
         END { if (!sep) exit 1 }' "$1"
}

if want web; then
# ---------------------------------------------------------------- web
html=$here/web/index.html
check "web/index.html exists and is non-empty" test -s "$html"
check "web/index.html starts with <!DOCTYPE html>" first_line_matches "$html" '^<!DOCTYPE html>' 
for tag in html head title body main; do
    opens=$(grep -o "<${tag}[ >]" "$html" | wc -l | tr -d ' ')
    closes=$(grep -o "</$tag>" "$html" | wc -l | tr -d ' ')
    if [ "$opens" -eq 1 ] && [ "$closes" -eq 1 ]; then
        pass "web/index.html has exactly one <$tag>...</$tag>"
    else
        fail "web/index.html <$tag>: $opens opening vs $closes closing tags"
    fi
done
for tag in section ul li h1 h2 p script header; do
    opens=$(grep -o "<${tag}[ >]" "$html" | wc -l | tr -d ' ')
    closes=$(grep -o "</$tag>" "$html" | wc -l | tr -d ' ')
    if [ "$opens" -eq "$closes" ]; then
        pass "web/index.html <$tag> balanced ($opens)"
    else
        fail "web/index.html <$tag>: $opens opening vs $closes closing tags"
    fi
done
check "web/index.html declares a charset" grep -qi '<meta charset="utf-8">' "$html"
for f in web/styles.css web/app.js web/build.sh web/httpd.conf shared/app.env shared/theme.css; do
    check "$f exists" test -s "$here/$f"
done

fi

if want api; then
# ---------------------------------------------------------------- api CGI
. "$here/shared/app.env"
for name in health ready; do
    script=$here/api/cgi-bin/$name
    check "api/cgi-bin/$name is executable" test -x "$script"
    out=$work/$name.out
    if ! env REQUEST_METHOD=GET REQUEST_URI="/$name" SCRIPT_NAME="/cgi-bin/$name" \
        QUERY_STRING= GATEWAY_INTERFACE=CGI/1.1 SERVER_PROTOCOL=HTTP/1.1 \
        REMOTE_ADDR=127.0.0.1 "$script" > "$out" 2> "$work/$name.err"; then
        fail "api/cgi-bin/$name exits 0 (stderr: $(cat "$work/$name.err"))"
        continue
    fi
    pass "api/cgi-bin/$name exits 0"
    check "$name: header lines end in CRLF, blank line separates body" cgi_crlf "$out"
    check "$name: Content-Type: application/json" has_header "$out" 'Content-Type: application/json'
    if [ "$name" = health ]; then
        check "$name: no Status header (plain 200)" lacks_header "$out" 'Status:'
    else
        check "$name: Status: 503 (no database or redis settings)" first_line_matches "$out" '^Status: 503 '
    fi
    cgi_body "$out" > "$work/$name.json"
    check "$name: body is valid JSON" json_valid < "$work/$name.json"
done
check "health body reports status ok" grep -q '"status":"ok"' "$work/health.json"
check "health body reports version $APP_VERSION" grep -q "\"version\":\"$APP_VERSION\"" "$work/health.json"
check "health body: database not configured (DATABASE_HOST unset)" grep -q '"database":"not configured"' "$work/health.json"
check "health body: redis not configured (REDIS_HOST unset)" grep -q '"redis":"not configured"' "$work/health.json"

# A configured dependency that does not answer: 503, status degraded. Port 1
# (tcpmux) on the loopback is refused at once (and if no nc is installed at
# all, the probe fails the same way).
run_health() { # run_health OUT [VAR=VALUE...]
    o=$1
    shift
    env REQUEST_METHOD=GET REQUEST_URI=/health SCRIPT_NAME=/cgi-bin/health QUERY_STRING= \
        GATEWAY_INTERFACE=CGI/1.1 SERVER_PROTOCOL=HTTP/1.1 REMOTE_ADDR=127.0.0.1 \
        HEALTH_PROBE_TIMEOUT=1 "$@" "$here/api/cgi-bin/health" > "$o" 2> "$o.err"
}
if run_health "$work/degraded.out" DATABASE_HOST=127.0.0.1 DATABASE_PORT=1; then
    pass "health with an unreachable database exits 0"
else
    fail "health with an unreachable database exits 0 (stderr: $(cat "$work/degraded.out.err"))"
fi
check "health, database down: Status: 503" first_line_matches "$work/degraded.out" '^Status: 503 '
check "health, database down: header lines end in CRLF" cgi_crlf "$work/degraded.out"
cgi_body "$work/degraded.out" > "$work/degraded.json"
check "health, database down: body is valid JSON" json_valid < "$work/degraded.json"
check "health, database down: status degraded" grep -q '"status":"degraded"' "$work/degraded.json"
check "health, database down: database down" grep -q '"database":"down"' "$work/degraded.json"
check "health, database down: redis still not configured" grep -q '"redis":"not configured"' "$work/degraded.json"
run_health "$work/redis-down.out" REDIS_HOST=127.0.0.1 REDIS_PORT=1
cgi_body "$work/redis-down.out" > "$work/redis-down.json"
check "health, redis down: Status: 503" first_line_matches "$work/redis-down.out" '^Status: 503 '
check "health, redis down: redis down, status degraded" \
    grep -q '"status":"degraded",.*"database":"not configured","redis":"down"' "$work/redis-down.json"
check "ready body: not ready, names the missing settings" \
    grep -q '"ready":false,.*"settings":"missing DATABASE_HOST REDIS_HOST","migrations":"not configured"' "$work/ready.json"
check "health and ready report version $APP_VERSION" grep -q "\"version\":\"$APP_VERSION\"" "$work/ready.json"
run_version() { # APP_REVISION (the image's GIT_SHA) joins the version
    env REQUEST_METHOD=GET APP_REVISION=abc123 "$here/api/cgi-bin/$1" 2>/dev/null | grep -q "\"version\":\"$APP_VERSION+abc123\""
}
check "health: version $APP_VERSION+abc123 with APP_REVISION=abc123" run_version health
check "ready: version $APP_VERSION+abc123 with APP_REVISION=abc123" run_version ready

REQUEST_METHOD=POST "$here/api/cgi-bin/health" > "$work/post.out" 2>/dev/null
check "health rejects POST with Status: 405" first_line_matches "$work/post.out" '^Status: 405' 
cgi_body "$work/post.out" > "$work/post.json"
check "405 body is valid JSON" json_valid < "$work/post.json"

for f in api/bin/serve api/bin/handle-request api/build.sh; do
    check "$f is executable" test -x "$here/$f"
done

fi

# ---------------------------------------------------------------- builds
app=$work/app
mkdir -p "$app"
cp -R "$here/package.json" "$here/shared" "$here/web" "$here/api" "$app/"
rm -rf "$app/web/dist" "$app/api/dist"
for side in web api; do
    want "$side" || continue
    if (cd "$app" && sh "$side/build.sh") > "$work/build-$side.log" 2>&1; then
        pass "$side/build.sh succeeds"
    else
        fail "$side/build.sh failed: $(cat "$work/build-$side.log")"
    fi
done
if want web; then
for f in web/dist/index.html web/dist/app.css web/dist/app.js web/dist/httpd.conf web/dist/version.json; do
    check "build produced $f" test -s "$app/$f"
done
check "web/dist/index.html has no unreplaced {{placeholders}}" lacks_text '{{' "$app/web/dist/index.html"
check "web/dist/version.json is valid JSON" json_valid < "$app/web/dist/version.json"
fi
if want api; then
for f in api/dist/bin/serve api/dist/bin/handle-request api/dist/etc/app.env api/dist/etc/httpd.conf \
         api/dist/lib/probe.sh api/dist/public/cgi-bin/health api/dist/public/cgi-bin/ready api/dist/public/version.json; do
    check "build produced $f" test -s "$app/$f"
done
check "api/dist/public/version.json is valid JSON" json_valid < "$app/api/dist/public/version.json"
fi

if want api; then
# ---------------------------------------------------------------- end to end
# handle-request runs `httpd -i` from PATH: point PATH at busybox's httpd.
# (A busybox "standalone" shell resolves applets internally, so look for the
# busybox binary itself rather than trusting `command -v httpd`.)
e2e=
for bb in "$(command -v busybox 2>/dev/null)" /bin/busybox /usr/bin/busybox; do
    case $bb in /*) ;; *) continue ;; esac
    if [ -x "$bb" ] && "$bb" httpd --help >/dev/null 2>&1; then
        mkdir -p "$work/bin"
        ln -s "$bb" "$work/bin/httpd"
        PATH=$work/bin:$PATH
        e2e=1
        break
    fi
done
if [ -n "$e2e" ]; then
    for name in health ready; do
        resp=$work/e2e-$name.out
        printf 'GET /%s HTTP/1.1\r\nHost: localhost\r\nUser-Agent: test.sh\r\n\r\n' "$name" \
            | APP_ENV_FILE="$app/api/dist/etc/app.env" "$app/api/dist/bin/handle-request" > "$resp" 2>&1
        if [ "$name" = health ]; then code=200; else code=503; fi    # /ready: no settings
        check "GET /$name via handle-request: HTTP $code" first_line_matches "$resp" "^HTTP/1\\.[01] $code "
        check "GET /$name via handle-request: application/json" grep -qi '^Content-Type: application/json' "$resp"
        # Drop the status line and parse the rest as CGI-style output.
        tail -n +2 "$resp" > "$resp.cgi"
        cgi_body "$resp.cgi" > "$resp.json"
        check "GET /$name via handle-request: valid JSON body" json_valid < "$resp.json"
    done
    printf 'GET /nope HTTP/1.0\r\n\r\n' | "$app/api/dist/bin/handle-request" > "$work/e2e-404.out" 2>&1
    check "GET /nope via handle-request: 404" first_line_matches "$work/e2e-404.out" '^HTTP/1\.[01] 404 ' 

    # /health against fake Postgres and Redis servers on the loopback
    # (busybox nc -ll), probed with busybox nc as in the api-runner image:
    # the Postgres probe must get an 'R' reply, the Redis probe "+PONG".
    for applet in nc timeout; do ln -sf "$bb" "$work/bin/$applet"; done
    printf '#!/bin/sh\ncat > /dev/null\nprintf "R\\000\\000\\000\\010\\000\\000\\000\\000"\n' > "$work/fake-pg"
    printf '#!/bin/sh\ncat > /dev/null\nprintf "+PONG\\r\\n"\n' > "$work/fake-redis"
    # A migrated database as /ready's probe sees it: AuthenticationOk, then a DataRow
    # with the count, CommandComplete, ReadyForQuery.
    printf '#!/bin/sh\ncat > /dev/null\nprintf "R\\000\\000\\000\\010\\000\\000\\000\\000D\\000\\000\\000\\036\\000\\001\\000\\000\\000\\024lifeos-migrations:2C\\000\\000\\000\\015SELECT 1\\000Z\\000\\000\\000\\005I"\n' > "$work/fake-pg-migrated"
    chmod +x "$work/fake-pg" "$work/fake-redis" "$work/fake-pg-migrated"
    # start_fake SCRIPT: listen on a free-looking loopback port with SCRIPT
    # as the per-connection handler; print the port, record the pid.
    start_fake() {
        for try in 1 2 3 4 5; do
            p=$(( 20000 + ($$ * 7 + try * 7919 + ${#1} * 104729) % 40000 ))
            "$bb" nc -ll -p "$p" -e "$1" > /dev/null 2>&1 &
            pid=$!
            echo "$pid" >> "$work/fake.pids"
            n=0
            while [ "$n" -lt 20 ] && kill -0 "$pid" 2>/dev/null; do   # exits at once if the bind failed
                # (timeout: a port taken by another server, say Postgres, may never close)
                if "$bb" timeout 2 "$bb" nc -w 1 127.0.0.1 "$p" < /dev/null > /dev/null 2>&1; then
                    echo "$p"
                    return 0
                fi
                sleep 0.1 2>/dev/null || sleep 1
                n=$((n + 1))
            done
            kill "$pid" 2>/dev/null
        done
        return 1
    }
    pg_port=$(start_fake "$work/fake-pg") || pg_port=
    redis_port=$(start_fake "$work/fake-redis") || redis_port=
    migrated_port=$(start_fake "$work/fake-pg-migrated") || migrated_port=
    if [ -n "${pg_port:-}" ] && [ -n "${redis_port:-}" ]; then
        run_health "$work/deps-ok.out" DATABASE_HOST=127.0.0.1 DATABASE_PORT="$pg_port" \
            REDIS_HOST=127.0.0.1 REDIS_PORT="$redis_port"
        cgi_body "$work/deps-ok.out" > "$work/deps-ok.json"
        check "health with fake postgres + redis: no Status header (200)" lacks_header "$work/deps-ok.out" 'Status:'
        check "health with fake postgres + redis: valid JSON" json_valid < "$work/deps-ok.json"
        check "health with fake postgres + redis: status ok, database ok, redis ok" \
            grep -q '"status":"ok",.*"database":"ok","redis":"ok"' "$work/deps-ok.json"
        # Swapped ports: each probe meets the wrong protocol.
        run_health "$work/deps-swapped.out" DATABASE_HOST=127.0.0.1 DATABASE_PORT="$redis_port" \
            REDIS_HOST=127.0.0.1 REDIS_PORT="$pg_port"
        cgi_body "$work/deps-swapped.out" > "$work/deps-swapped.json"
        check "health with swapped ports: both down, 503" \
            grep -q '"status":"degraded",.*"database":"down","redis":"down"' "$work/deps-swapped.json"
        run_ready() { # run_ready OUT PG_PORT
            o=$1
            env REQUEST_METHOD=GET HEALTH_PROBE_TIMEOUT=1 DATABASE_HOST=127.0.0.1 DATABASE_PORT="$2" \
                REDIS_HOST=127.0.0.1 REDIS_PORT="$redis_port" "$here/api/cgi-bin/ready" > "$o" 2>/dev/null
            cgi_body "$o" > "$o.json"
        }
        run_ready "$work/ready-plain.out" "$pg_port"
        check "ready, database without a migrations answer: 503, migrations down" \
            grep -q '"ready":false,.*"settings":"ok","migrations":"down"' "$work/ready-plain.out.json"
        if [ -n "${migrated_port:-}" ]; then
            run_ready "$work/ready-ok.out" "$migrated_port"
            check "ready, migrated database: no Status header (200)" lacks_header "$work/ready-ok.out" 'Status:'
            check "ready, migrated database: ready, 2 applied" \
                grep -q '"ready":true,.*"migrations":"ok"},"applied":2}' "$work/ready-ok.out.json"
            check "ready, migrated database: valid JSON" json_valid < "$work/ready-ok.out.json"
        fi
    else
        echo "skip - /health against fake servers (could not listen on the loopback)"
    fi
    for pid in $(cat "$work/fake.pids" 2>/dev/null); do kill "$pid" 2>/dev/null; done
else
    echo "skip - end-to-end request (no busybox httpd on this machine)"
fi
fi

echo
if [ "$failures" -ne 0 ]; then
    echo "example/test.sh: $failures of $checks checks FAILED" >&2
    exit 1
fi
echo "example/test.sh: all $checks checks passed"
