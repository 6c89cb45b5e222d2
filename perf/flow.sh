#!/usr/bin/env bash
# Flow control side by side: QoS 1 floods where the subscriber is slower than its publishers,
# and a stuck subscriber beside a healthy pair. ringmq runs at its DEFAULT limits (what a user
# gets), the peers with the fair settings of ../shared/peers. For each: delivered msgs/s, lost
# (acknowledged to the publisher, never delivered), the broker's peak RSS, p99 latency.
# Writes perf/results/flow-<stamp>.md.
#
# Usage: perf/flow.sh           (needs jq)
#   BROKERS="ringmq mosquitto nats rumqttd"   DURATION=10   SKIP_BUILD=1
#   RINGMQ_BIN=path RINGMQ_VERSION=label   race another build of ringmq (e.g. the one before a change)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
# shellcheck source=perf/lib.sh
source "$ROOT/perf/lib.sh"
BROKERS=${BROKERS:-ringmq mosquitto nats rumqttd}
DURATION=${DURATION:-10}
PEERS=${PEERS:-../shared/peers}
RINGMQ_FLAGS=${RINGMQ_FLAGS-}
LOAD=${LOAD:-$ROOT/target/release/ringmq-load}
STAMP=$(date +%Y%m%d-%H%M%S)
OUT=$ROOT/perf/results/flow-$STAMP.md
WORK=$(mktemp -d /tmp/ringmq-flow.XXXXXX)
BROKER_PID=
RINGMQ_PORT0=19930
declare -A PORT=([ringmq]=$RINGMQ_PORT0 [mosquitto]=19883 [nats]=19884 [rumqttd]=19885)

log() { echo "flow: $*" >&2; }
cleanup() { stop_broker; rm -rf "$WORK"; }
trap cleanup EXIT

declare -A ARGS=(
    [funnel]="funnel --publishers 4 --qos 1"
    [fanin]="fanin --pairs 4 --qos 1 --inflight 64"
    [alone]="storm --clients 0 --qos 1 --rate 10000000"
    [stuck]="slowsub --qos 1 --rate 10000000"
)
SCENARIOS=(funnel fanin alone stuck)

# Samples the broker's RSS every 100 ms into $WORK/rss until the file $WORK/stop appears.
sample_rss() {
    local pid=$1 peak=0 r
    while [[ ! -e $WORK/stop ]]; do
        r=$(rss_kb "$pid" 2>/dev/null || echo 0)
        ((r > peak)) && peak=$r
        sleep 0.1
    done
    echo "$peak" >"$WORK/rss"
}

run_scenario() { # scenario broker
    local sc=$1 b=$2 json rc=0
    [[ $b == ringmq ]] && PORT[ringmq]=$(ringmq_port)
    local port=${PORT[$b]}
    start_broker "$b" || { echo '{"errors":["broker did not start"]}' >"$WORK/$sc-$b.json"; return; }
    rm -f "$WORK/stop" "$WORK/rss"
    sample_rss "$BROKER_PID" &
    local sampler=$!
    local extra=()
    [[ $sc == stuck || $sc == alone ]] && extra=(--broker-pid "$BROKER_PID" --settle 1)
    # shellcheck disable=SC2086
    json=$("$LOAD" ${ARGS[$sc]} --port "$port" --payload 64 --duration "$DURATION" --json --quiet \
        "${extra[@]}" 2>"$WORK/$sc-$b.err") || rc=$?
    touch "$WORK/stop"
    wait "$sampler"
    [[ -n $json ]] || json='{"errors":["ringmq-load failed"]}'
    kill -0 "$BROKER_PID" 2>/dev/null || json=$(jq -c '.errors = ((.errors // []) + ["broker exited"])' <<<"$json")
    json=$(jq -c --argjson r "$(cat "$WORK/rss")" --arg rc "$rc" '. + {rss_peak_sampled_kib: $r, exit: $rc}' <<<"$json")
    echo "$json" >"$WORK/$sc-$b.json"
    log "$sc $b: $json"
    stop_broker
}

prepare_race
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
for sc in "${SCENARIOS[@]}"; do
    for b in "${RACE[@]}"; do run_scenario "$sc" "$b"; done
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

v() { jq -r "$3 // \"n/a\"" "$WORK/$1-$2.json" 2>/dev/null || echo n/a; } # scenario broker expr
mib() { awk -v k="$1" 'BEGIN { if (k == "n/a") print k; else printf "%.1f", k / 1024 }'; }
row() { # scenario broker
    local sc=$1 b=$2 rate lost p99 errs
    if [[ $sc == stuck || $sc == alone ]]; then
        rate=$(awk -v n="$(v "$sc" "$b" .pair_received)" -v d="$(v "$sc" "$b" .duration_s)" \
            'BEGIN { if (d + 0 > 0) printf "%.0f", n / d; else print "n/a" }')
        lost=$(v "$sc" "$b" .pair_lost)
        p99=$(v "$sc" "$b" .pair_p99_ms)
    else
        rate=$(v "$sc" "$b" '.msgs_per_sec | floor')
        lost=$(v "$sc" "$b" .lost)
        p99=$(awk -v x="$(v "$sc" "$b" .latency_us.p99)" 'BEGIN { if (x == "n/a") print x; else printf "%.2f", x / 1000 }')
    fi
    errs=$(v "$sc" "$b" '(.errors // []) | join("; ")')
    echo "| $sc | $b | $rate | $lost | $(mib "$(v "$sc" "$b" .rss_peak_sampled_kib)") | $p99 | ${errs:-} |"
}

{
    echo "# Flow control: slow and stuck subscribers ($STAMP)"
    echo
    echo "Command: \`BROKERS=\"$BROKERS\"${RINGMQ_BIN:+ RINGMQ_BIN=<another build>} perf/flow.sh\` (DURATION=$DURATION s per run, 64 B payloads, loopback, 2 cores)."
    echo "ringmq at its default limits${RINGMQ_FLAGS:+ plus \`$RINGMQ_FLAGS\`}; the peers with \`../shared/peers/\`."
    echo "Load average before: $LOAD_BEFORE, after: $LOAD_AFTER."
    echo
    for b in "${RACE[@]}"; do echo "- $b: $(version_of "$b")"; done
    echo
    echo "- funnel: \`ringmq-load ${ARGS[funnel]}\` (4 publishers -> 1 subscriber of load/+)"
    echo "- fanin: \`ringmq-load ${ARGS[fanin]}\` (4 pairs, 64 QoS 1 messages in flight per publisher)"
    echo "- alone: \`ringmq-load ${ARGS[alone]}\` (the healthy pair of the stuck run, flat out, alone: its baseline)"
    echo "- stuck: \`ringmq-load ${ARGS[stuck]}\` (that pair flat out beside a QoS 1 subscriber of its topic that never reads)"
    echo
    echo "lost = acknowledged to its publisher and never delivered. RSS = broker's peak, sampled every 100 ms."
    echo
    echo "| scenario | broker | delivered msgs/s | lost | RSS peak MiB | p99 ms | errors |"
    echo "|---|---|---|---|---|---|---|"
    for sc in "${SCENARIOS[@]}"; do
        for b in "${RACE[@]}"; do row "$sc" "$b"; done
    done
} >"$OUT"
cat "$OUT"
log "wrote $OUT"
