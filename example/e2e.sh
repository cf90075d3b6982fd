#!/bin/sh
# End-to-end smoke test of a deployed release: the web page and the api's /health answer
# 200 at the URLs the deploy tasks report (lifeos.toml: WEB_URL, API_URL). On Cloud Run the
# api URL is the new revision's tagged URL, before it gets any traffic.
set -eu
: "${WEB_URL:?WEB_URL is not set}" "${API_URL:?API_URL is not set}"

get() { # get URL: the body, or fail after 5 tries
    i=0
    while :; do
        if command -v curl >/dev/null 2>&1; then
            curl -fsS --max-time 10 "$1" && return 0
        else
            wget -q -T 10 -O - "$1" && return 0
        fi
        i=$((i + 1))
        [ "$i" -lt 5 ] || { echo "FAIL - $1 did not answer 2xx" >&2; return 1; }
        sleep 2
    done
}

get "$WEB_URL/" >/dev/null && echo "ok   - web $WEB_URL/"
get "$API_URL/health" >/dev/null && echo "ok   - api $API_URL/health"
