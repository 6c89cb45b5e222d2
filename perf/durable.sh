#!/usr/bin/env bash
# Durability side by side: fan-in QoS 1 (4 pairs, 64 B, 64 in flight per publisher, persistent
# sessions) through ringmq in memory, with `--fsync always` and with `--fsync interval=10`,
# beside Mosquitto with `persistence true` and NATS (its MQTT sessions and messages live in
# JetStream's file store). For each: delivered msgs/s, lost, p99; for ringmq also the store's
# syncs (from $SYS) and messages per sync. Writes perf/results/durable-<stamp>.md.
#
# Usage: perf/durable.sh      (needs jq, mosquitto_sub)
#   DURATION=10   SKIP_BUILD=1   INFLIGHT=64   BROKERS="ringmq-memory ringmq-always ringmq-interval mosquitto nats"
#   RINGMQ_MAX_INFLIGHT=4096   ringmq's window towards each subscriber (`--max-inflight`), as
#   the peers' Mosquitto has it unlimited (`max_inflight_messages 0`): at the default 256 a
#   durable subscriber's window, not the store, sets the pace (each delivery waits for a commit)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
# shellcheck source=perf/lib.sh
source "$ROOT/perf/lib.sh"
DURATION=${DURATION:-10}
PEERS=${PEERS:-../shared/peers}
LOAD=${LOAD:-$ROOT/target/release/ringmq-load}
CONTENDERS=${BROKERS:-ringmq-memory ringmq-always ringmq-interval mosquitto nats}
BROKERS="ringmq mosquitto nats"
STAMP=$(date +%Y%m%d-%H%M%S)
OUT=$ROOT/perf/results/durable-$STAMP.md
WORK=$(mktemp -d /tmp/ringmq-durable.XXXXXX)
BROKER_PID=
RINGMQ_PORT0=19960
declare -A PORT=([ringmq]=$RINGMQ_PORT0 [mosquitto]=19883 [nats]=19884 [rumqttd]=19885)
INFLIGHT=${INFLIGHT:-64}
RINGMQ_MAX_INFLIGHT=${RINGMQ_MAX_INFLIGHT:-4096}
LOAD_ARGS="fanin --pairs 4 --qos 1 --inflight $INFLIGHT --persistent --payload 64"

log() { echo "durable: $*" >&2; }
cleanup() { stop_broker; rm -rf "$WORK"; }
trap cleanup EXIT

# The figure $SYS/broker/store/$1 of the ringmq on $2 (retained; published every second).
store_figure() {
    timeout 5 mosquitto_sub -p "$2" -C 1 -t "\$SYS/broker/store/$1" 2>/dev/null || echo n/a
}

run() { # contender
    local c=$1 b=${1%%-*} json rc=0 syncs=n/a
    RINGMQ_FLAGS="--sys-interval 1 --max-inflight $RINGMQ_MAX_INFLIGHT"
    case $c in
        ringmq-always) RINGMQ_FLAGS+=" --data-dir $WORK/data --fsync always" ;;
        ringmq-interval) RINGMQ_FLAGS+=" --data-dir $WORK/data --fsync interval=10" ;;
    esac
    rm -rf "$WORK/data" "$WORK/mosq"
    mkdir -p "$WORK/mosq"
    [[ $b == ringmq ]] && PORT[ringmq]=$(ringmq_port)
    start_broker "$b" || { echo '{"errors":["broker did not start"]}' >"$WORK/$c.json"; return; }
    # shellcheck disable=SC2086
    json=$("$LOAD" $LOAD_ARGS --port "${PORT[$b]}" --duration "$DURATION" --json --quiet \
        2>"$WORK/$c.err") || rc=$?
    [[ -n $json ]] || json='{"errors":["ringmq-load failed"]}'
    kill -0 "$BROKER_PID" 2>/dev/null || json=$(jq -c '.errors = ((.errors // []) + ["broker exited"])' <<<"$json")
    if [[ $c == ringmq-always || $c == ringmq-interval ]]; then
        sleep 1.5
        syncs=$(store_figure syncs "${PORT[$b]}")
    fi
    json=$(jq -c --arg s "$syncs" --arg rc "$rc" '. + {store_syncs: $s, exit: $rc}' <<<"$json")
    echo "$json" >"$WORK/$c.json"
    log "$c: $json"
    stop_broker
}

prepare_race
# Mosquitto with its persistence on, in this run's directory.
sed -e 's/^persistence false/persistence true/' "$PEERS/mosquitto.conf" >"$WORK/mosquitto.conf"
echo "persistence_location $WORK/mosq/" >>"$WORK/mosquitto.conf"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
for c in $CONTENDERS; do
    have "${c%%-*}" && run "$c" || log "skipping $c: not installed"
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

v() { jq -r "$2 // \"n/a\"" "$WORK/$1.json" 2>/dev/null || echo n/a; }
{
    echo "# Durability: fan-in QoS 1 through the store ($STAMP)"
    echo
    echo "Command: \`perf/durable.sh\` (DURATION=$DURATION s per run, loopback, 2 cores)."
    echo "Load: \`ringmq-load $LOAD_ARGS\`. Load average before: $LOAD_BEFORE, after: $LOAD_AFTER."
    echo
    for b in ringmq mosquitto nats; do echo "- $b: $(version_of "$b")"; done
    echo "- every ringmq: \`--max-inflight $RINGMQ_MAX_INFLIGHT\` (its window towards each subscriber; Mosquitto's is unlimited in the peers' settings)."
    echo "- ringmq-memory: no --data-dir; ringmq-always: \`--data-dir DIR\` (\`--fsync always\`: a PUBACK leaves once its records are on disk);"
    echo "  ringmq-interval: \`--fsync interval=10\`; mosquitto: \`../shared/peers/mosquitto.conf\` with \`persistence true\`"
    echo "  (it saves its database every autosave_interval, 1800 s, and at exit: a PUBACK does not mean on disk);"
    echo "  nats: \`../shared/peers/nats-server.conf\` (JetStream file store, synced every 2 min by default)."
    echo
    echo "| broker | delivered msgs/s | vs ringmq-memory | lost | p99 ms | store syncs/s | msgs per sync | errors |"
    echo "|---|---|---|---|---|---|---|---|"
    base=$(v ringmq-memory '.msgs_per_sec')
    for c in $CONTENDERS; do
        [[ -e $WORK/$c.json ]] || continue
        rate=$(v "$c" '.msgs_per_sec | floor')
        syncs=$(v "$c" .store_syncs)
        dur=$(v "$c" .duration_s)
        awk -v c="$c" -v r="$rate" -v b="$base" -v l="$(v "$c" .lost)" \
            -v p="$(v "$c" .latency_us.p99)" -v s="$syncs" -v d="$dur" -v e="$(v "$c" '(.errors // []) | join("; ")')" \
            'BEGIN {
                ratio = (b + 0 > 0 && r != "n/a") ? sprintf("%.2f", r / b) : "n/a";
                p99 = (p == "n/a") ? p : sprintf("%.2f", p / 1000);
                sps = (s != "n/a" && d + 0 > 0) ? sprintf("%.0f", s / d) : "n/a";
                mps = (s != "n/a" && s + 0 > 0) ? sprintf("%.0f", r * d / s) : "n/a";
                printf "| %s | %s | %s | %s | %s | %s | %s | %s |\n", c, r, ratio, l, p99, sps, mps, e
            }'
    done
    echo
    echo "Syncs are counted by ringmq (\`\$SYS/broker/store/syncs\`, every shard): with \`always\`, one O_DSYNC write per group commit."
} >"$OUT"
cat "$OUT"
log "wrote $OUT"
