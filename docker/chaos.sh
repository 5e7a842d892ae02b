#!/usr/bin/env bash
# Fault-injection suite: runs an isolated native stack (its own Kafka, the three planes, free
# ports, a temporary RUN_DIR) on the sample data and, during the replay,
#   - kill -9s each plane at random moments and restarts it (as a supervisor would),
#   - kill -9s the broker and restarts it, and freezes it (SIGSTOP) for 90 s (single node), or, on
#     a three-node cluster
#     (--cluster: replication factor 3, min.insync.replicas 2, acks=all), kill -9s the node that
#     leads a partition of order_intents or exec_reports, several times, and restarts it,
#   - writes poison records to every topic,
# then checks, with its own consumer (crates/chaos), that nothing was lost or done twice; and
# that bad configuration exits 78 naming the field, and no secret leaks into logs, metrics or
# records. Prints a table of faults and invariants; exits 1 on any violation.
#
# Usage: docker/chaos.sh [--short] [--cluster]
#   --short    a few faults, for CI (full: 20 kills per plane)
#   --cluster  the three-node cluster run only; the full suite (no --short) runs both
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
HELPER="$ROOT/docker/docker-helper.sh"
PLANES=(data-plane strategy-plane order-plane)

SHORT=0 CLUSTER=0
for arg in "$@"; do
    case "$arg" in
        --short) SHORT=1 ;;
        --cluster) CLUSTER=1 ;;
        # The full suite's single-node half.
        --single) SHORT=2 ;;
        *)
            echo "usage: docker/chaos.sh [--short] [--cluster]" >&2
            exit 2
            ;;
    esac
done
if [ "$SHORT" = 0 ] && [ "$CLUSTER" = 0 ]; then
    # The full suite: the single-node run, then the cluster run; each prints its own table.
    status=0
    "$0" --single || status=1
    "$0" --cluster || status=1
    exit "$status"
fi
if [ "$SHORT" = 1 ]; then
    KILLS_PER_PLANE=2 POISON_PER_TOPIC=300 SPEED=10x LEADER_KILLS=3
else
    KILLS_PER_PLANE=20 POISON_PER_TOPIC=2000 SPEED=2x LEADER_KILLS=8
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

RUN_DIR="$(mktemp -d /tmp/algotrader-chaos.XXXXXX)"
BROKER_PORT="$(free_port)"
KAFKA_CONTROLLER_PORT="$(free_port)"
DATA_PLANE_PORT="$(free_port)"
STRATEGY_PLANE_PORT="$(free_port)"
ORDER_PLANE_PORT="$(free_port)"
PROMETHEUS_PORT="$(free_port)"
KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:$BROKER_PORT"
if [ "$CLUSTER" = 1 ]; then
    KAFKA_PORTS="$BROKER_PORT,$(free_port),$(free_port)"
    KAFKA_CONTROLLER_PORTS="$KAFKA_CONTROLLER_PORT,$(free_port),$(free_port)"
    KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:${KAFKA_PORTS//,/,127.0.0.1:}"
    export KAFKA_NODES=3 KAFKA_PORTS KAFKA_CONTROLLER_PORTS KAFKA_REPLICATION_FACTOR=3 KAFKA_MIN_INSYNC_REPLICAS=2
fi
export RUN_DIR BROKER_PORT KAFKA_CONTROLLER_PORT DATA_PLANE_PORT STRATEGY_PLANE_PORT ORDER_PLANE_PORT PROMETHEUS_PORT
export KAFKA_BOOTSTRAP_SERVERS
export REPLAY_SPEED="$SPEED" REPLAY_LOOP=1 LOG_LEVEL=info
# The invariants are about trades; with the shipped fees weighed, the samples make none.
export COST_AVERSION=0
# The suite restarts the planes it kills itself, at once and counted (native mode's supervisor
# would wait longer after each death of a plane killed every few seconds).
export NATIVE_SUPERVISE=0
# Secrets the system holds; none may appear in a log, a metric or a record.
export IBKR_ACCOUNT="DU$RANDOM$RANDOM" ADMIN_ENABLED=true ADMIN_TOKEN="chaos-token-$RANDOM$RANDOM"
export GRAFANA_ADMIN_PASSWORD="chaos-grafana-$RANDOM$RANDOM"
CHAOS_SECRETS="$IBKR_ACCOUNT,$ADMIN_TOKEN,$GRAFANA_ADMIN_PASSWORD"

# The build docker-helper.sh start runs too: CARGO_TARGET_DIR when set (relative to the repository).
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR="$ROOT/$TARGET_DIR" ;; esac
CHAOS="$TARGET_DIR/release/chaos"
declare -A PORT=([data-plane]=$DATA_PLANE_PORT [strategy-plane]=$STRATEGY_PLANE_PORT [order-plane]=$ORDER_PLANE_PORT)
declare -A KILLS=([data-plane]=0 [strategy-plane]=0 [order-plane]=0)
ROWS=()
VIOLATIONS=0

say() { printf '\033[1;34mchaos:\033[0m %s\n' "$*"; }
row() { # invariant checked violations [detail]
    ROWS+=("$(printf '%-58s %9s %10s  %s' "$1" "$2" "$3" "${4:-}")")
    VIOLATIONS=$((VIOLATIONS + $3))
}
cleanup() {
    "$HELPER" stop >/dev/null 2>&1 || true
    if [ "$VIOLATIONS" -eq 0 ] && [ "${KEEP_RUN_DIR:-}" != 1 ]; then rm -rf "$RUN_DIR"; fi
}
trap cleanup EXIT

pid_of() { cat "$RUN_DIR/logs/$1.pid" 2>/dev/null || true; }
# A plane that is restarting does not answer: that reads as 0, not as a failure of the suite.
scrape() { curl -s "http://127.0.0.1:${PORT[$1]}/metrics" || true; }
metric_sum() { # plane name-prefix → sum over label sets
    scrape "$1" | awk -v m="$2" 'index($1, m) == 1 { s += $2 } END { print s + 0 }'
}
counted_at_least() { [ "$(metric_sum "$1" "$2")" -ge "$3" ]; }
stopped() { ! kill -0 "$1" 2>/dev/null; }
# Restarts whatever is not running, retrying while the broker itself is coming back.
supervise() {
    local i
    for i in $(seq 1 30); do
        NO_BUILD=1 "$HELPER" start >>"$RUN_DIR/supervisor.log" 2>&1 && return 0
        sleep 1
    done
    echo "chaos: could not restart the stack; see $RUN_DIR/logs" >&2
    return 1
}
wait_for() { # seconds description command...
    local secs="$1" what="$2" i
    shift 2
    for i in $(seq 1 $((secs * 2))); do
        "$@" && return 0
        sleep 0.5
    done
    echo "chaos: timed out after ${secs}s waiting for $what" >&2
    return 1
}

# ---- 1. bad configuration: exit 78 naming the field, before anything starts -------------------
say "building (release)"
cargo build --release --locked -p data-plane -p strategy-plane -p order-plane -p chaos >/dev/null 2>&1 ||
    cargo build --release --locked -p data-plane -p strategy-plane -p order-plane -p chaos
# The planes read configuration the same way whatever the broker: checked in the single-node run.
if [ "$CLUSTER" = 0 ]; then
    BAD_CONFIG=(
        "KAFKA_TOPIC_PARTITIONS=0|kafka.partitions"
        "KAFKA_BOOTSTRAP_SERVERS=|kafka.bootstrap_servers"
        "REPLAY_SPEED=fast|data_plane.replay.speed"
        "REPLAY_LOOP=-1|data_plane.replay.loop_count"
        "REPLAY_PATH=|data_plane.replay.path"
        "REPLAY_RESUME=perhaps|data_plane.replay.resume"
        "DATA_SOURCE=carrier-pigeon|data_plane.source"
        "DATA_PLANE_PORT=notaport|data_plane.http_port"
        "STRATEGY_PLANE_PORT=70000|strategy_plane.http_port"
        "ORDER_PLANE_PORT=0|order_plane.http_port"
        "OFI_WINDOW_MS=-5|data_plane.ofi.window_ms"
        "DECISION_INTERVAL_MS=0|strategy_plane.decision_interval_ms"
        "RISK_AVERSION=-1|strategy_plane.risk_aversion"
        "LIMIT_SHARE=2|strategy_plane.limit_share"
        "COST_AVERSION=-0.5|strategy_plane.cost_aversion"
        "MAX_GROSS_EXPOSURE=abc|risk.max_gross_exposure"
        "MAX_NET_EXPOSURE=-1|risk.max_net_exposure"
        "MAX_POSITION_SIZE=-3|risk.max_position_size"
        "SIM_LATENCY_MS=x|order_plane.latency_ms"
        "SIM_LATENCY_JITTER_MS=-2|order_plane.latency_jitter_ms"
        "SIM_LATENCY_SEED=-1|order_plane.latency_seed"
        "KILL_SWITCH=maybe|order_plane.kill_switch"
        "IBKR_CLIENT_ID=abc|ibkr.client_id"
        "IBKR_ORDER_CLIENT_ID=1|ibkr.order_client_id"
        "ORDER_VENUE=ib|order_plane.venue"
        "IBKR_PORT=7496|ibkr.port"
        "ENABLE_LIVE_TRADING=true|trading.enable_live_trading"
        "ADMIN_TOKEN=|order_plane.admin_token"
        "ALGOTRADER__DATA_PLANE__NO_SUCH_KEY=1|data_plane.no_such_key"
    )
    bad_failures=()
    i=0
    for case in "${BAD_CONFIG[@]}"; do
        setting="${case%%|*}" field="${case#*|}"
        plane="${PLANES[$((i % 3))]}"
        i=$((i + 1))
        set +e
        out="$(env "$setting" timeout 20 "$TARGET_DIR/release/$plane" 2>&1)"
        code=$?
        set -e
        if [ "$code" -ne 78 ] || ! grep -qF -- "- $field:" <<<"$out"; then
            bad_failures+=("$plane with $setting: exit $code")
        fi
    done
    row "bad configuration exits 78 naming the field" "${#BAD_CONFIG[@]}" "${#bad_failures[@]}" "${bad_failures[*]:0:3}"
fi

# ---- 2. the run ---------------------------------------------------------------------------------
say "starting an isolated stack in $RUN_DIR (broker :$BROKER_PORT, planes :$DATA_PLANE_PORT-:$ORDER_PLANE_PORT, replay $SPEED)"
"$HELPER" start >"$RUN_DIR/start.log" 2>&1 || {
    cat "$RUN_DIR/start.log"
    exit 1
}

if [ "$CLUSTER" = 0 ]; then
    # Graceful shutdown loses nothing and re-reads nothing: a plane stopped with SIGTERM commits every
    # offset it processed, so once restarted it meets no record it has already handled (a kill -9
    # restart does, and drops them as duplicates).
    sleep 4
    for plane in strategy-plane order-plane; do
        pid="$(pid_of "$plane")"
        kill -TERM "$pid"
        if ! wait_for 30 "$plane to stop on SIGTERM" stopped "$pid"; then
            row "$plane stops within 30 s of SIGTERM" 1 1
            kill -9 "$pid" 2>/dev/null || true
        fi
        supervise
    done
    for plane in strategy-plane order-plane; do
        prefix="${plane//-/_}"
        # It takes its partitions back, then must be working through new records.
        wait_for 90 "$plane to consume again" counted_at_least "$plane" "${prefix}_messages_processed_total" 1 || true
        sleep 3
        again=$(($(metric_sum "$plane" "${prefix}_duplicates_total") + $(metric_sum "$plane" "${prefix}_duplicate_intents_total")))
        processed="$(metric_sum "$plane" "${prefix}_messages_processed_total")"
        if [ "$again" -eq 0 ] && [ "$processed" -gt 0 ]; then
            row "$plane re-reads nothing after a SIGTERM restart" "$processed" 0
        else
            row "$plane re-reads nothing after a SIGTERM restart" "$processed" 1 "$again records seen before"
        fi
    done
fi

TOTAL_KILLS=$((KILLS_PER_PLANE * 3))
BROKER_RESTART_AT=$((TOTAL_KILLS / 2))
LEADER_EVERY=$((TOTAL_KILLS / LEADER_KILLS))
LEADER_TOPICS=(order_intents exec_reports)
# Every partition of every topic has all its replicas in sync: only then is the next node killed,
# as an operator restarts one broker at a time (two down would leave fewer in sync than
# min.insync.replicas, and acks=all producers waiting).
all_in_sync() { "$CHAOS" leaders market_events ofi_events order_intents exec_reports 2>/dev/null | awk '$3 < 0 || $4 < $5 { bad++ } END { exit bad > 0 || NR == 0 }'; }
kill_broker() { # name
    local pid
    pid="$(pid_of "$1")"
    [ -n "$pid" ] || return 0
    kill -9 "$pid" 2>/dev/null || true
    wait_for 30 "$1 to die" stopped "$pid"
    # The system runs without it for a while: the cluster on two nodes, the planes on no broker.
    sleep 3
    supervise
    broker_kills=$((broker_kills + 1))
}
# A broker that hangs (SIGSTOP: its sockets stay open, nothing answers) for longer than any
# timeout of the planes: each must live through it, not ready meanwhile, and go on after it.
FREEZE_AT=$((TOTAL_KILLS / 4))
FREEZE_S=90
froze=0
freeze_broker() {
    local pid plane code died=() end
    local -A before=() unready=()
    pid="$(pid_of broker)"
    [ -n "$pid" ] || return 0
    for plane in "${PLANES[@]}"; do before[$plane]="$(pid_of "$plane")"; done
    say "SIGSTOP of the broker for ${FREEZE_S} s"
    kill -STOP "$pid"
    end=$((SECONDS + FREEZE_S))
    while [ "$SECONDS" -lt "$end" ]; do
        for plane in "${PLANES[@]}"; do
            code="$(curl -s -o /dev/null -m 1 -w '%{http_code}' "http://127.0.0.1:${PORT[$plane]}/health/ready" || true)"
            [ "$code" != 503 ] || unready[$plane]=1
        done
        sleep 1
    done
    kill -CONT "$pid"
    froze=$((froze + 1))
    for plane in "${PLANES[@]}"; do
        kill -0 "${before[$plane]}" 2>/dev/null || died+=("$plane")
    done
    row "every plane outlives a ${FREEZE_S} s broker freeze" "${#PLANES[@]}" "${#died[@]}" "${died[*]}"
    row "every plane is not ready while the broker is frozen" "${#PLANES[@]}" $((${#PLANES[@]} - ${#unready[@]}))
}
# Late enough that every topic has real records to build the poison from.
POISON_AT=$((TOTAL_KILLS * 2 / 3))
poisoned=0 refused=0
broker_kills=0
leader_kills=()
for k in $(seq 0 $((TOTAL_KILLS - 1))); do
    sleep "$(awk -v r="$RANDOM" 'BEGIN { printf "%.2f", 0.5 + (r % 250) / 100 }')"
    if [ "$k" -eq "$POISON_AT" ]; then
        say "writing $POISON_PER_TOPIC poison records to every topic"
        declare -A before=()
        for plane in strategy-plane order-plane; do before[$plane]="$(metric_sum "$plane" "${plane//-/_}_decode_errors_total")"; done
        "$CHAOS" poison --per-topic "$POISON_PER_TOPIC" >"$RUN_DIR/poison.out"
        poisoned=$(awk '{ s += $3 } END { print s + 0 }' "$RUN_DIR/poison.out")
        refused=$(awk '{ s += $5 } END { print s + 0 }' "$RUN_DIR/poison.out")
        # Every undecodable record on a plane's input topics is counted, and the plane lives on.
        for plane in strategy-plane order-plane; do
            prefix="${plane//-/_}_decode_errors_total"
            if [ "$plane" = strategy-plane ]; then inputs="ofi_events|market_events|exec_reports"; else inputs="order_intents|market_events"; fi
            want=$(awk -v re="($inputs)\$" '$2 ~ re { s += $4 } END { print s + 0 }' "$RUN_DIR/poison.out")
            if wait_for 120 "$plane to count $want poison records" counted_at_least "$plane" "$prefix" $((before[$plane] + want)); then
                row "$plane counts every undecodable poison record" "$want" 0
            else
                row "$plane counts every undecodable poison record" "$want" 1 "counted $(metric_sum "$plane" "$prefix")"
            fi
        done
        for plane in "${PLANES[@]}"; do
            pid="$(pid_of "$plane")"
            if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then row "$plane survives the poison" 1 0; else row "$plane survives the poison" 1 1; fi
        done
    fi
    if [ "$CLUSTER" = 0 ] && [ "$k" -eq "$FREEZE_AT" ]; then
        freeze_broker
    fi
    if [ "$CLUSTER" = 0 ] && [ "$k" -eq "$BROKER_RESTART_AT" ]; then
        say "kill -9 of the broker"
        kill_broker broker
    elif [ "$CLUSTER" = 1 ] && [ $(((k + 1) % LEADER_EVERY)) -eq 0 ] && [ "${#leader_kills[@]}" -lt "$LEADER_KILLS" ]; then
        topic="${LEADER_TOPICS[$((${#leader_kills[@]} % 2))]}"
        partition=$(((${#leader_kills[@]} / 2) % 3))
        leader=""
        if wait_for 120 "every replica to be in sync" all_in_sync; then
            leader="$("$CHAOS" leaders "$topic" | awk -v p="$partition" '$2 == p { print $3 }')" || true
        else
            row "replicas back in sync within 120 s of a node's restart" 1 1 "before killing the leader of $topic/$partition"
        fi
        if [ -n "$leader" ] && [ "$leader" -ge 1 ]; then
            say "kill -9 of broker-$leader, the leader of $topic partition $partition"
            kill_broker "broker-$leader"
            leader_kills+=("$topic/$partition:broker-$leader")
        fi
    fi
    plane="${PLANES[$((k % 3))]}"
    pid="$(pid_of "$plane")"
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -9 "$pid"
        wait_for 10 "$plane to die" stopped "$pid"
        KILLS[$plane]=$((KILLS[$plane] + 1))
    fi
    supervise
done
say "faults done; waiting for the replay to finish and the planes to catch up"
"$HELPER" status >"$RUN_DIR/status.log" 2>&1 || true
wait_for 600 "the replay to complete" counted_at_least data-plane data_plane_replay_complete 1
# Caught up: every consumer group has committed everything on its input topics (auto-commit runs
# every second). A restarted plane that is still rejoining its group has not. The Order Plane
# commits its market data behind on purpose, so it also says itself that it has read all of both
# inputs: each series present (a plane that is down or not measured yet has none) and 0.
read_everything() {
    scrape order-plane | awk '$1 ~ /^order_plane_input_backlog_records\{/ { n++; if ($2 != 0) bad++ }
        END { exit !(n == 2 && bad == 0) }'
}
caught_up() { read_everything && "$CHAOS" check --committed-only 2>/dev/null | grep -q '^violations 0$'; }
wait_for 600 "the planes to catch up with every topic" caught_up
for plane in "${PLANES[@]}"; do scrape "$plane" >"$RUN_DIR/$plane.metrics"; done

# ---- 3. invariants --------------------------------------------------------------------------------
say "checking invariants"
# `chaos check` prints one row per invariant, then "violations <n>".
checked() {
    local out="$RUN_DIR/$1.out" line
    shift
    "$CHAOS" check "$@" >"$out" || true
    while IFS= read -r line; do
        case "$line" in
            "violations "*) VIOLATIONS=$((VIOLATIONS + ${line#violations })) ;;
            *) ROWS+=("$line") ;;
        esac
    done <"$out"
    grep -q '^violations ' "$out" || row "the checker ran to the end" 1 1 "see $out"
}
checked check --strategy "127.0.0.1:$STRATEGY_PLANE_PORT" --secret "$CHAOS_SECRETS"
if [ "$CLUSTER" = 1 ]; then
    # The failover above proves something only if every partition really had three replicas.
    "$CHAOS" leaders market_events ofi_events order_intents exec_reports >"$RUN_DIR/leaders.out" || true
    partitions="$(wc -l <"$RUN_DIR/leaders.out")"
    short=$(awk '$5 != 3 || $4 != 3 { n++ } END { print n + 0 }' "$RUN_DIR/leaders.out")
    [ "$partitions" -gt 0 ] || short=1
    row "every partition has 3 replicas, all in sync at the end" "$partitions" "$short"
fi

# Every plane stops on SIGTERM within its drain grace. (What a graceful stop must not lose is
# checked by the SIGTERM restarts during the run: once caught up, everything is committed anyway.)
slow=()
for plane in "${PLANES[@]}"; do kill -TERM "$(pid_of "$plane")" 2>/dev/null || true; done
for plane in "${PLANES[@]}"; do
    wait_for 30 "$plane to stop" stopped "$(pid_of "$plane")" || slow+=("$plane")
done
row "every plane stops within 30 s of SIGTERM" "${#PLANES[@]}" "${#slow[@]}" "${slow[*]}"

leaks=0
for secret in ${CHAOS_SECRETS//,/ }; do
    found="$(grep -rlF -- "$secret" "$RUN_DIR/logs" "$RUN_DIR"/*.metrics 2>/dev/null || true)"
    [ -z "$found" ] || leaks=$((leaks + $(wc -l <<<"$found")))
done
files=("$RUN_DIR"/logs/*.out "$RUN_DIR"/*.metrics)
row "no secret in any log or /metrics output" "${#files[@]}" "$leaks"

# ---- 4. the table ---------------------------------------------------------------------------------
echo
printf '%-58s %9s\n' "FAULT INJECTED" "COUNT"
for plane in "${PLANES[@]}"; do printf '%-58s %9s\n' "kill -9 $plane (restarted each time)" "${KILLS[$plane]}"; done
if [ "$CLUSTER" = 1 ]; then
    printf '%-58s %9s  %s\n' "kill -9 of a partition's leader (3-node cluster)" "$broker_kills" "${leader_kills[*]}"
else
    printf '%-58s %9s\n' "kill -9 of the broker" "$broker_kills"
    printf '%-58s %9s\n' "SIGSTOP of the broker for ${FREEZE_S} s" "$froze"
fi
printf '%-58s %9s\n' "poison records (every topic)" "$poisoned"
printf '%-58s %9s\n' "poison records refused by the broker (over its size limit)" "$refused"
[ "$CLUSTER" = 1 ] || printf '%-58s %9s\n' "bad configurations" "${#BAD_CONFIG[@]}"
echo
printf '%-58s %9s %10s\n' "INVARIANT" "CHECKED" "VIOLATIONS"
for r in "${ROWS[@]}"; do echo "$r"; done
echo
if [ "$VIOLATIONS" -eq 0 ]; then
    say "0 violations"
else
    say "$VIOLATIONS violation(s); logs kept in $RUN_DIR"
    exit 1
fi
