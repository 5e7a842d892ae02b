#!/usr/bin/env bash
# Apache Kafka for native mode, the tests, chaos and bench: the one place that knows how to
# install it and how to run a node.
#
#   kafka.sh install            fetch the pinned Kafka (pom.xml) from Maven Central into the cache
#                               and check it; idempotent, quick when already there
#   kafka.sh version            the pinned version
#   kafka.sh cluster-id FILE    write a new cluster id to FILE unless it holds one already
#   kafka.sh run [options]      run one KRaft node (combined broker + controller) in the foreground
#   kafka.sh tool CLASS [args]  run one of Kafka's command-line tools (topics, consumer groups, ...)
#
# run options:
#   --dir DIR               the node's folder: server.properties, data/ (the log), kafka.pid
#   --port PORT             client listener on 127.0.0.1
#   --controller-port PORT  KRaft controller listener on 127.0.0.1
#   --node-id N             default 1
#   --voters LIST           the controller quorum, "1@127.0.0.1:9093,2@..."; default this node alone
#   --cluster-id ID         default: the id in DIR/cluster-id, made on the first run
#   --replication N         default replication factor of topics and Kafka's internal topics (1)
#   --min-isr N             min.insync.replicas (1)
#   --ephemeral             for test harnesses: stop the node when standard input closes and
#                           delete DIR, so the broker dies with the test process however it ends
#
# Environment: KAFKA_HEAP (512m), the JVM's maximum heap; KAFKA_OPTS, more JVM flags (as with
# Kafka's own scripts, e.g. -Xlog:gc:file=gc.log); KAFKA_CACHE, where the jars live
# (default ${XDG_DATA_HOME:-~/.local/share}/algotrader/kafka/<version>).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
POM="$HERE/pom.xml"

die() {
    printf 'kafka: error: %s\n' "$*" >&2
    exit 1
}

version() {
    sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$POM"
}

VERSION="$(version)"
[ -n "$VERSION" ] || die "no <kafka.version> in $POM"
CACHE="${KAFKA_CACHE:-${XDG_DATA_HOME:-$HOME/.local/share}/algotrader/kafka/$VERSION}"
LIBS="$CACHE/libs"
# Written last by a complete install, so an interrupted one is redone.
MARKER="$CACHE/installed"
# Jars without which the broker or the tools do not run: a partial copy is caught here rather
# than as a ClassNotFoundException at the first start.
REQUIRED_JARS=(kafka_2.13 kafka-clients kafka-server kafka-raft kafka-metadata kafka-storage
    kafka-group-coordinator kafka-transaction-coordinator kafka-share-coordinator kafka-tools)

need_java() {
    command -v java >/dev/null 2>&1 ||
        die "Java is not installed; Kafka needs Java 17 or newer: ./docker/docker-helper.sh deps (Debian's openjdk-17-jre-headless)"
    local major
    major="$(java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')"
    [ "${major:-0}" -ge 17 ] 2>/dev/null ||
        die "Java $major is too old; Kafka $VERSION needs 17 or newer: apt-get install openjdk-17-jre-headless"
}

# Prints the first required jar the cache lacks; fails when none is missing.
missing_jar() {
    local jar
    for jar in "${REQUIRED_JARS[@]}"; do
        [ -f "$LIBS/$jar-$VERSION.jar" ] || {
            echo "$jar-$VERSION.jar"
            return 0
        }
    done
    return 1
}

check_install() {
    ! missing_jar >/dev/null && [ "$(cat "$MARKER" 2>/dev/null)" = "$VERSION" ]
}

installed_or_die() {
    check_install || die "Kafka $VERSION is not installed in $LIBS: run ./docker/docker-helper.sh deps"
}

install() {
    need_java
    check_install && return 0
    command -v mvn >/dev/null 2>&1 || die "Maven is not installed: apt-get install maven"
    echo "kafka: fetching Apache Kafka $VERSION from Maven Central into $LIBS"
    rm -rf "$LIBS" "$MARKER"
    mkdir -p "$LIBS"
    mvn -q -B -f "$POM" dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$LIBS" ||
        die "mvn could not fetch Kafka $VERSION (is Maven Central reachable?)"
    local missing got
    if missing="$(missing_jar)"; then die "the install lacks $missing; see $POM"; fi
    got="$(java -cp "$LIBS/*" kafka.Kafka --version 2>/dev/null | tail -n 1)" || got="nothing"
    [ "$got" = "$VERSION" ] || die "the installed Kafka says it is '$got', not $VERSION"
    echo "$VERSION" >"$MARKER"
    echo "kafka: Apache Kafka $VERSION installed ($(find "$LIBS" -name '*.jar' | wc -l) jars)"
}

# What `StorageTool random-uuid` prints (a UUID, base64url), without starting a JVM for it;
# written whole or not at all, so a failure never leaves an empty id behind. Like Kafka's own
# Uuid.randomUuid, never one that starts with '-': the storage tool would read it as an option
# ("argument --cluster-id/-t: expected one argument"), one broker start in 64. An id left by a
# start that failed so is replaced (a log dir is only formatted with an id that worked).
cluster_id() {
    local file="$1"
    if [ -s "$file" ] && [ "$(head -c 1 "$file")" != "-" ]; then return 0; fi
    python3 -c '
import base64, uuid
while True:
    id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    if not id.startswith("-"):
        print(id)
        break' >"$file.tmp" ||
        die "cannot make a cluster id (python3 is needed)"
    mv "$file.tmp" "$file"
}

# The JVM flags of Kafka's own kafka-server-start.sh, with a bounded heap.
jvm_flags() {
    local heap="${KAFKA_HEAP:-512m}"
    echo "-Xmx$heap -Xms$heap -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35" \
        "-XX:+ExplicitGCInvokesConcurrent -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true" \
        "-Dlog4j2.configurationFile=$HERE/log4j2.properties ${KAFKA_OPTS:-}"
}

port_busy() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

run() {
    local dir="" port="" cport="" node=1 voters="" cluster="" rf=1 isr=1 ephemeral=0
    while [ $# -gt 0 ]; do
        case "$1" in --dir | --port | --controller-port | --node-id | --voters | --cluster-id | --replication | --min-isr)
            [ $# -ge 2 ] || die "run: $1 needs a value" ;;
        esac
        case "$1" in
            --dir) dir="$2" ;;
            --port) port="$2" ;;
            --controller-port) cport="$2" ;;
            --node-id) node="$2" ;;
            --voters) voters="$2" ;;
            --cluster-id) cluster="$2" ;;
            --replication) rf="$2" ;;
            --min-isr) isr="$2" ;;
            --ephemeral)
                ephemeral=1
                shift
                continue
                ;;
            *) die "run: unknown option '$1'" ;;
        esac
        shift 2
    done
    if [ -z "$dir" ] || [ -z "$port" ] || [ -z "$cport" ]; then die "run needs --dir, --port and --controller-port"; fi
    need_java
    installed_or_die
    port_busy "$port" && die "port $port is busy: another broker runs there; stop it or pick another port"
    port_busy "$cport" && die "controller port $cport is busy: stop the process using it or pick another port"
    mkdir -p "$dir"
    dir="$(cd "$dir" && pwd)"
    voters="${voters:-$node@127.0.0.1:$cport}"
    if [ -z "$cluster" ]; then
        cluster_id "$dir/cluster-id"
        cluster="$(cat "$dir/cluster-id")"
    fi
    # Fast failure detection where there are replicas to fail over to: a dead leader is fenced
    # (and its partitions led elsewhere) within a few seconds instead of Kafka's 9 s.
    local session=9000
    [ "$rf" -gt 1 ] && session=3000
    cat >"$dir/server.properties" <<EOF
# Written by docker/kafka/kafka.sh at each start; edit that script, not this file.
process.roles=broker,controller
node.id=$node
controller.quorum.voters=$voters
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$dir/data
num.partitions=3
default.replication.factor=$rf
min.insync.replicas=$isr
offsets.topic.replication.factor=$rf
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$isr
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$isr
unclean.leader.election.enable=false
group.initial.rebalance.delay.ms=0
broker.heartbeat.interval.ms=500
broker.session.timeout.ms=$session
EOF
    local meta="$dir/data/meta.properties" formatted
    if [ -f "$meta" ]; then
        formatted="$(sed -n 's/^cluster.id=//p' "$meta")"
        [ "$formatted" = "$cluster" ] ||
            die "$dir/data holds cluster $formatted, not $cluster; delete $dir to start afresh (./docker/docker-helper.sh clean)"
    else
        java -cp "$LIBS/*" -Dlog4j2.configurationFile="$HERE/log4j2.properties" kafka.tools.StorageTool format \
            -t "$cluster" -c "$dir/server.properties" >"$dir/format.log" 2>&1 ||
            die "cannot format $dir/data: $(tail -n 1 "$dir/format.log")"
    fi
    # shellcheck disable=SC2046 # the flags are words on purpose
    set -- java $(jvm_flags) -cp "$LIBS/*" kafka.Kafka "$dir/server.properties"
    if [ "$ephemeral" = 1 ]; then
        # A background job's stdin is /dev/null unless redirected, hence the copy on fd 3.
        exec 3<&0
        "$@" </dev/null &
        local jpid=$!
        echo "$jpid" >"$dir/kafka.pid"
        (
            cat <&3 >/dev/null
            kill -9 "$jpid" 2>/dev/null || true
            while kill -0 "$jpid" 2>/dev/null; do sleep 0.1; done
            rm -rf "$dir"
        ) &
        # Stopped by a signal instead: the node goes with the launcher.
        trap 'kill -9 "$jpid" 2>/dev/null || true' TERM INT
        wait "$jpid"
    else
        echo $$ >"$dir/kafka.pid"
        exec "$@"
    fi
}

tool() {
    [ $# -ge 1 ] || die "tool needs a class name"
    installed_or_die
    local class="$1"
    shift
    java -Xmx256m -cp "$LIBS/*" -Dlog4j2.configurationFile="$HERE/log4j2.properties" "$class" "$@"
}

cmd="${1:-}"
shift || true
case "$cmd" in
    install) install ;;
    version) echo "$VERSION" ;;
    cluster-id)
        [ $# -eq 1 ] || die "usage: kafka.sh cluster-id FILE"
        cluster_id "$1"
        ;;
    run) run "$@" ;;
    tool) tool "$@" ;;
    *) die "usage: kafka.sh install | version | cluster-id FILE | run [options] | tool CLASS [args]" ;;
esac
