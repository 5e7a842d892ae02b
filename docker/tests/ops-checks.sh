#!/usr/bin/env bash
# The operator tooling's proof: lints every script and the Dockerfile, validates the compose file
# and the Prometheus config offline, then starts an isolated native stack (temp RUN_DIR, free
# ports) with a real Prometheus, checks each plane's live /metrics with promtool and evaluates
# every Grafana panel's query. Every tool is required: `docker-helper.sh deps` installs them.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
export PATH="$HOME/.cargo/bin:$HOME/.local/share/algotrader/tools/bin:$PATH"
HELPER="$ROOT/docker/docker-helper.sh"

step() { printf '\033[1;34m==>\033[0m ops: %s\n' "$*"; }
fail() {
    printf '\033[1;31merror:\033[0m ops: %s\n' "$*" >&2
    exit 1
}

for tool in shellcheck hadolint docker-compose promtool prometheus python3 curl ss; do
    command -v "$tool" >/dev/null 2>&1 || fail "$tool is not installed; run ./docker/docker-helper.sh deps"
done

step "shellcheck on every shell script"
scripts=()
while IFS= read -r f; do
    [ -f "$f" ] && head -n 1 "$f" | grep -qE '^#!.*\b(ba|da)?sh\b' && scripts+=("$f")
done < <(git ls-files --cached --others --exclude-standard)
[ ${#scripts[@]} -gt 0 ] || fail "found no shell scripts"
shellcheck "${scripts[@]}"
echo "${#scripts[@]} scripts clean: ${scripts[*]}"

step "hadolint docker/Dockerfile"
hadolint docker/Dockerfile

step "dashboard and alert rules: datasources, metric names, sums over Strategy Plane instances, a test per rule, offline (the queries are evaluated on the stack below)"
python3 docker/tests/dashboard_check.py \
    --dashboard docker/grafana/dashboards/algotrader-overview.json \
    --datasources docker/grafana/provisioning/datasources/prometheus.yml \
    --sources crates/*/src/metrics.rs \
    --rules docker/prometheus/alerts.yml \
    --rule-tests docker/prometheus/alerts_test.yml

WORK="$(mktemp -d)"
STACK_UP=""
cleanup() {
    local status=$?
    # The run folder is deleted below, so show CI what the services said.
    if [ "$status" -ne 0 ] && [ -d "${RUN_DIR:-}/logs" ]; then
        for log in "$RUN_DIR"/logs/*.out; do
            [ -f "$log" ] && { echo "--- $log (last 30 lines)"; tail -n 30 "$log"; }
        done
    fi
    if [ -n "$STACK_UP" ]; then
        ALGOTRADER_MODE=native "$HELPER" stop >/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

step "docker-compose config -q (with .env from .env.example, as the helper creates it)"
# compose refuses a missing env_file, and the operator's own .env must not decide the result.
mkdir -p "$WORK/compose"
cp docker-compose.yml "$WORK/compose/"
cp .env.example "$WORK/compose/.env"
docker-compose -f "$WORK/compose/docker-compose.yml" config -q
replicas="$(docker-compose -f "$WORK/compose/docker-compose.yml" config | grep -c 'container_name: algotrader-strategy' || true)"
[ "$replicas" -eq 0 ] || fail "strategy-plane has a container name, so it cannot scale"

step "docker-compose: each secret reaches only the service that uses it; Kafka UI read-only; INSTALL_DEV"
# Marked values for the secrets, so the resolved file shows every service that receives one.
sed -i -e 's/^ADMIN_TOKEN=.*/ADMIN_TOKEN=ops-check-admin-token/' -e 's/^IBKR_ACCOUNT=.*/IBKR_ACCOUNT=ops-check-ibkr-account/' \
    -e 's/^GRAFANA_ADMIN_PASSWORD=.*/GRAFANA_ADMIN_PASSWORD=ops-check-grafana-password/' "$WORK/compose/.env"
resolved="$(INSTALL_DEV=true docker-compose -f "$WORK/compose/docker-compose.yml" config)"
holders() { # value: the services whose resolved configuration holds it, space-separated
    awk -v value="$1" '
        /^services:/ { inside = 1; next }
        inside && /^[^ ]/ { inside = 0 }
        inside && /^  [A-Za-z0-9_-]+:$/ { service = $1; sub(/:$/, "", service) }
        inside && index($0, value) { print service }' <<<"$resolved" | sort -u | paste -sd ' ' -
}
for secret in ops-check-admin-token:order-plane ops-check-ibkr-account:order-plane ops-check-grafana-password:grafana; do
    got="$(holders "${secret%%:*}")"
    [ "$got" = "${secret#*:}" ] || fail "${secret%%:*} (from .env) reaches '${got}', not only ${secret#*:}"
done
! grep -q 'env_file' <<<"$resolved" || fail "a service has env_file: it hands every secret in .env to that service"
[ "$(holders 'KAFKA_CLUSTERS_0_READONLY: "true"')" = kafka-ui ] || fail "Kafka UI is not read-only"
[ "$(holders 'INSTALL_DEV: "true"')" = "data-plane order-plane strategy-plane" ] ||
    fail "INSTALL_DEV from the environment is not a build argument of the planes' image"
[ "$(holders 'host.docker.internal:host-gateway')" = "data-plane order-plane strategy-plane" ] ||
    fail "the planes cannot reach TWS / IB Gateway on the host (extra_hosts host.docker.internal:host-gateway)"

step "promtool check config docker/prometheus/prometheus.yml (and the rule files it loads)"
promtool check config docker/prometheus/prometheus.yml

step "promtool check rules and test rules: docker/prometheus/alerts.yml"
promtool check rules docker/prometheus/alerts.yml
promtool test rules docker/prometheus/alerts_test.yml

# promtool's lint wants `_total` on counters only, but the specification names the portfolio PnL
# gauge strategy_plane_pnl_total (a PnL falls as well as rises, so it cannot be a counter). That
# one finding is allowed; any other finding, or a body promtool cannot parse, fails.
PROMTOOL_ALLOWED='^strategy_plane_pnl_total non-counter metrics should not have "_total" suffix$'
check_metrics() { # body
    local out status=0
    out="$(printf '%s\n' "$1" | promtool check metrics 2>&1)" || status=$?
    out="$(grep -Ev "$PROMTOOL_ALLOWED" <<<"$out" || true)"
    # Exit status 3 means lint findings only; the allowed one is filtered out above.
    if [ -n "$out" ] || { [ "$status" -ne 0 ] && [ "$status" -ne 3 ]; }; then
        printf '%s\n' "$out" >&2
        return 1
    fi
}

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
export ALGOTRADER_MODE=native RUN_DIR="$WORK/run"
# Every panel must show data, the trading ones too: with the shipped fees weighed, the sample
# makes no trade (README, "Strategy Plane").
export COST_AVERSION=0
BROKER_PORT="$(free_port)"
KAFKA_CONTROLLER_PORT="$(free_port)"
DATA_PLANE_PORT="$(free_port)"
STRATEGY_PLANE_PORT="$(free_port)"
ORDER_PLANE_PORT="$(free_port)"
PROMETHEUS_PORT="$(free_port)"
export BROKER_PORT KAFKA_CONTROLLER_PORT DATA_PLANE_PORT STRATEGY_PLANE_PORT ORDER_PLANE_PORT PROMETHEUS_PORT
mkdir -p "$RUN_DIR"

step "native stack with Prometheus in $RUN_DIR (broker $BROKER_PORT, planes $DATA_PLANE_PORT/$STRATEGY_PLANE_PORT/$ORDER_PLANE_PORT, Prometheus $PROMETHEUS_PORT)"
STACK_UP=1
"$HELPER" start
"$HELPER" status | grep -E '^prometheus +running .*ready' >/dev/null || fail "status does not show Prometheus running and ready"
promtool check config "$RUN_DIR/state/prometheus/prometheus.yml"
rules_loaded() {
    curl -fsS "http://127.0.0.1:$PROMETHEUS_PORT/api/v1/rules" | python3 -c '
import json, sys
groups = json.load(sys.stdin)["data"]["groups"]
print(sum(len(g["rules"]) for g in groups if g["name"] == "algotrader"))'
}
want="$(grep -c '^      - alert: ' docker/prometheus/alerts.yml)"
got="$(rules_loaded)" || fail "cannot read the native Prometheus's rules"
[ "$got" = "$want" ] || fail "the native Prometheus loaded $got of the $want alert rules in docker/prometheus/alerts.yml"

step "dashboard queries through Prometheus's HTTP API"
python3 docker/tests/dashboard_check.py \
    --dashboard docker/grafana/dashboards/algotrader-overview.json \
    --datasources docker/grafana/provisioning/datasources/prometheus.yml \
    --sources crates/*/src/metrics.rs \
    --prometheus "http://127.0.0.1:$PROMETHEUS_PORT" \
    --timeout 180

step "promtool check metrics on each plane's live /metrics"
for port in "$DATA_PLANE_PORT" "$STRATEGY_PLANE_PORT" "$ORDER_PLANE_PORT"; do
    body="$(curl -fsS "http://127.0.0.1:$port/metrics")" || fail "no /metrics on port $port"
    [ -n "$body" ] || fail "empty /metrics on port $port"
    check_metrics "$body" || fail "promtool check metrics failed for port $port"
done
step "native mode restarts a plane that dies, and stop ends it and its supervisor"
pid_before="$(cat "$RUN_DIR/logs/strategy-plane.pid")"
kill -9 "$pid_before"
restarted=""
for _ in $(seq 1 150); do
    pid_now="$(cat "$RUN_DIR/logs/strategy-plane.pid" 2>/dev/null || true)"
    if [ -n "$pid_now" ] && [ "$pid_now" != "$pid_before" ] && kill -0 "$pid_now" 2>/dev/null &&
        [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$STRATEGY_PLANE_PORT/health/ready")" = 200 ]; then
        restarted="$pid_now"
        break
    fi
    sleep 0.2
done
[ -n "$restarted" ] || fail "the Strategy Plane was not restarted and ready within 30 s of a kill -9"
grep -q "supervisor: strategy-plane exited with status 137; restarting it in 1 s" "$RUN_DIR/logs/strategy-plane.out" ||
    fail "the supervisor did not log the restart"
supervisor="$(cat "$RUN_DIR/logs/strategy-plane.supervisor.pid")"
"$HELPER" stop >/dev/null
STACK_UP=""
for pid in "$restarted" "$supervisor"; do
    ! kill -0 "$pid" 2>/dev/null || fail "process $pid of the Strategy Plane survived stop"
done

step "all operator checks passed"
