#!/bin/sh
# Waits until Kafka accepts connections, then execs the plane named by the first argument, so the
# plane is PID 1 and receives SIGTERM directly.
set -eu
plane="${1:?usage: entrypoint.sh <data-plane|strategy-plane|order-plane> [args]}"
shift
servers="${KAFKA_BOOTSTRAP_SERVERS:-kafka:29092}"
first="${servers%%,*}"
host="${first%:*}"
port="${first##*:}"
tries=0
until nc -z "$host" "$port" 2>/dev/null; do
    tries=$((tries + 1))
    if [ "$tries" -ge 120 ]; then
        echo "entrypoint: Kafka at $host:$port not reachable after 120 s" >&2
        exit 69
    fi
    sleep 1
done
# A bind-mounted ./logs belongs to the host user, not to this image's uid; a plane that cannot
# write its log folder refuses to start (exit 78), so fall back to stdout, which `docker logs`
# keeps anyway.
if [ -n "${LOG_DIR:-}" ] && ! { mkdir -p "$LOG_DIR" 2>/dev/null && [ -w "$LOG_DIR" ]; }; then
    echo "entrypoint: $LOG_DIR is not writable by uid $(id -u); logging to stdout only" >&2
    LOG_DIR=""
    export LOG_DIR
fi
exec "$plane" "$@"
