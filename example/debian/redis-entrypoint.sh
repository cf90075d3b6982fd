#!/bin/sh
# Redis in the foreground, for the lifeos-debian image.
#
#   docker run -v redisdata:/data lifeos-debian:bookworm redis-entrypoint.sh [redis-server options]
#
# Listens on 0.0.0.0:6379 (REDIS_PORT) without protected mode (it is meant
# for a private container network), keeps its RDB snapshots in /data, logs
# to stdout. Starts as root to own /data (a fresh named volume is
# root-owned), then execs redis-server as user redis, so redis is PID 1 and
# saves and exits cleanly on docker stop (SIGINT or SIGTERM).
set -eu

datadir=/data
if [ "$(id -u)" = 0 ]; then
    mkdir -p "$datadir"
    chown redis:redis "$datadir"
    set -- setpriv --reuid=redis --regid=redis --init-groups -- \
        redis-server --bind 0.0.0.0 --port "${REDIS_PORT:-6379}" --protected-mode no \
        --dir "$datadir" --daemonize no --logfile '' "$@"
else
    set -- redis-server --bind 0.0.0.0 --port "${REDIS_PORT:-6379}" --protected-mode no \
        --dir "$datadir" --daemonize no --logfile '' "$@"
fi
exec "$@"
