#!/usr/bin/env bash
# Run every benchmark in turn (and `cargo bench --bench graph`), printing the load average
# before each. Output: the scripts' own tables. Usage: benches/run-all.sh [NAME...]
# (NAME: noop-monorepo vs-ninja vs-docker-build vs-docker-push parallel-images hash-vs-b3sum graph).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
names=("$@")
((${#names[@]})) || names=(noop-monorepo vs-ninja vs-docker-build vs-docker-push parallel-images hash-vs-b3sum graph)

echo "# lifeos benchmarks, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $(uname -r)"
for n in "${names[@]}"; do
    echo
    echo "=== $n ($(uptime | sed 's/.*load average/load average/'))"
    if [[ $n == graph ]]; then
        (cd "$here/.." && cargo bench --bench graph 2>&1 | grep -E '^(graph_10k|\s+time:)|time:')
    else
        "$here/$n.sh"
    fi
done
