#!/usr/bin/env bash
# README's first command, end to end: prepare the machine, build lifeos
# (release, reusing target/: scripts/build-release.sh), then build the example's web and api images.
# Extra arguments go to `lifeos build`, e.g. scripts/build-example.sh --jobs 2
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

"$root/scripts/setup.sh"

# setup.sh runs in its own process: pick up cargo here too.
if ! command -v cargo >/dev/null 2>&1 && [[ -f $HOME/.cargo/env ]]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi

lifeos=$("$root/scripts/build-release.sh")

echo "build-example: lifeos build web api $*"
exec "$lifeos" build web api "$@"
