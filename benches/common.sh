# Shared set-up of the benchmark scripts; `source` it after `set -euo pipefail`.
#   bench_init NAME TOOL...   checks the tools, builds lifeos (scripts/build-release.sh), makes $tmp
# Sets: root (repository), LIFEOS (binary), tmp (removed on exit unless KEEP=1).

bench_init() {
    local name=$1
    shift
    root=$(cd "$(dirname "${BASH_SOURCE[1]}")/.." && pwd)
    # The binary users get from scripts/build-release.sh (static musl where possible),
    # rebuilt if the source changed, unless LIFEOS names one.
    LIFEOS=${LIFEOS:-$("$root/scripts/build-release.sh")}
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null || { echo "$name: needs $tool" >&2; exit 2; }
    done
    [[ -x $LIFEOS ]] || { echo "$name: LIFEOS=$LIFEOS is not an executable" >&2; exit 2; }
    export CI=1 NO_COLOR=1
    tmp=$(mktemp -d "/tmp/lifeos-bench-$name.XXXXXX")
    trap bench_cleanup EXIT
}

bench_cleanup() {
    if [[ ${KEEP:-0} == 1 ]]; then echo "kept $tmp"; else rm -rf "$tmp"; fi
}
