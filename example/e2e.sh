#!/bin/sh
# End-to-end smoke test of a deployed release: the web page and its stylesheet, the api's
# /health (200, database and redis ok: else 503 naming the part that is down) and /ready
# (200 once migrated) at the URLs the deploy tasks report (lifeos.toml: WEB_URL, API_URL).
# On Cloud Run the api URL is the new revision's tagged URL, before it gets any traffic.
set -eu
: "${WEB_URL:?WEB_URL is not set}" "${API_URL:?API_URL is not set}"
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT

get() { # get URL: the body, or fail after 5 tries saying what the last one answered
    i=0
    while :; do
        if command -v curl >/dev/null 2>&1; then
            code=$(curl -sS --max-time 10 -o "$tmp" -w '%{http_code}' "$1") || code=000
            case $code in 2??) cat "$tmp"; return 0 ;; esac
            last="HTTP $code $(cat "$tmp" 2>/dev/null)"
        else
            wget -q -T 10 -O - "$1" && return 0
            last="no 2xx answer"
        fi
        i=$((i + 1))
        [ "$i" -lt 5 ] || { echo "FAIL - $1: $last" >&2; return 1; }
        sleep 2
    done
}

# expect URL TEXT: the body of URL (2xx) contains TEXT. (`&&` lists do not stop `set -e`.)
expect() {
    body=$(get "$1") || exit 1
    case $body in
        *"$2"*) echo "ok   - $1" ;;
        *) echo "FAIL - $1 does not say $2: $body" >&2; exit 1 ;;
    esac
}

expect "$WEB_URL/" '<!DOCTYPE html>'
expect "$WEB_URL/app.css" '{'
expect "$API_URL/health" '"database":"ok","redis":"ok"'
expect "$API_URL/ready" '"ready":true'
