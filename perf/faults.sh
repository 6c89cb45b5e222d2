#!/usr/bin/env bash
# Fault scenarios side by side: ringmq and Mosquitto, each at its own default limits (these
# runs are about what a broker bounds, so neither gets the lifted queues of perf/race.sh),
# freshly started per scenario. ringmq-load's slowsub, storm and garbage each run beside a
# healthy publisher/subscriber pair and sample the broker's RSS.
# Writes perf/results/faults-<stamp>.md.
#
# Usage: perf/faults.sh          (needs jq and /usr/sbin/mosquitto)
#   BROKERS="ringmq mosquitto"   DURATION=20 seconds per scenario   SKIP_BUILD=1
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
# shellcheck source=perf/lib.sh
source "$ROOT/perf/lib.sh"
BROKERS=${BROKERS:-ringmq mosquitto}
DURATION=${DURATION:-20}
LOAD=$ROOT/target/release/ringmq-load
STAMP=$(date +%Y%m%d-%H%M%S)
OUT=$ROOT/perf/results/faults-$STAMP.md
WORK=$(mktemp -d /tmp/ringmq-faults.XXXXXX)
BROKER_PID=
PORT=19970

log() { echo "faults: $*" >&2; }
cleanup() { stop_broker; rm -rf "$WORK"; }
trap cleanup EXIT

cat >"$WORK/mosquitto.conf" <<EOF
listener $PORT 127.0.0.1
allow_anonymous true
persistence false
log_dest stderr
log_type error
log_type warning
connection_messages false
EOF

start_broker() { # name
    case $1 in
        ringmq) exec "$ROOT/target/release/ringmq" --bind 127.0.0.1 -p "$PORT" ;;
        mosquitto) exec /usr/sbin/mosquitto -c "$WORK/mosquitto.conf" ;;
    esac >"$WORK/$1.log" 2>&1 &
    BROKER_PID=$!
    wait_for_port "$1" "$PORT"
}



declare -A ARGS=(
    [slowsub]="slowsub --qos 1 --rate 5000 --payload 256"
    [storm]="storm --clients 8 --rate 2000"
    [garbage]="garbage --clients 8 --rate 2000"
)
SCENARIOS=(slowsub storm garbage)

if [[ -z ${SKIP_BUILD:-} ]]; then
    cargo build --release --workspace -q
fi
[[ -x /usr/sbin/mosquitto ]] || BROKERS=${BROKERS/mosquitto/}

for sc in "${SCENARIOS[@]}"; do
    for b in $BROKERS; do
        log "$sc on $b"
        start_broker "$b" || { echo '{}' >"$WORK/$sc-$b.json"; continue; }
        # shellcheck disable=SC2086
        "$LOAD" ${ARGS[$sc]} --port "$PORT" --duration "$DURATION" --broker-pid "$BROKER_PID" \
            --prefix "$b" --json >"$WORK/$sc-$b.json" 2>"$WORK/$sc-$b.err" || true
        [[ -s $WORK/$sc-$b.json ]] || echo '{}' >"$WORK/$sc-$b.json"
        kill -0 "$BROKER_PID" 2>/dev/null || log "$b died during $sc"
        stop_broker
        sleep 1
    done
done

{
    echo "# Fault scenarios, $(date -u +%Y-%m-%d)"
    echo
    echo "Command: \`perf/faults.sh\` (DURATION=$DURATION s per scenario), on the shared 2-core VM."
    echo "Each broker at its default limits, freshly started per scenario; a healthy QoS pair"
    echo "runs beside the fault (QoS 1 for slowsub, 0 otherwise), and the broker's RSS is"
    echo "sampled every 100 ms (after: 3 s past the end of the fault)."
    echo
    for b in $BROKERS; do echo "- $b: $(version_of "$b")"; done
    echo
    echo "| scenario | broker | pair sent | pair received | pair p99 ms | pair max ms | faulty conns | closed by broker | RSS before MiB | RSS peak MiB | RSS after MiB |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    for sc in "${SCENARIOS[@]}"; do
        for b in $BROKERS; do
            jq -r --arg sc "$sc" --arg b "$b" '
                def mib(k): if .[k] then ((.[k] / 1024 * 10 | round) / 10 | tostring) else "-" end;
                "| \($sc) | \($b) | \(.pair_sent // "-") | \(.pair_received // "-") | \(.pair_p99_ms // "-") | \(.pair_max_ms // "-") | \(.fault_connections // "-") | \(.fault_closed_by_broker // "-") | \(mib("rss_start_kib")) | \(mib("rss_peak_kib")) | \(mib("rss_end_kib")) |"' \
                "$WORK/$sc-$b.json"
        done
    done
    echo
    echo "Scenarios (\`ringmq-load --help\`): ${ARGS[slowsub]}; ${ARGS[storm]}; ${ARGS[garbage]}."
    for sc in "${SCENARIOS[@]}"; do
        for b in $BROKERS; do
            if [[ -s $WORK/$sc-$b.err ]]; then
                echo
                echo "$sc on $b, stderr: \`$(tail -c 300 "$WORK/$sc-$b.err" | tr '\n' ' ')\`"
            fi
        done
    done
} >"$OUT"
log "wrote $OUT"
cat "$OUT"
