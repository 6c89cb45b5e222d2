#!/usr/bin/env bash
# Races ringmq against Mosquitto, NATS (MQTT listener) and rumqttd on loopback with ringmq-load:
# same load, same scenarios, each broker freshly started for each scenario, brokers back to back
# within a scenario. Writes perf/results/race-<stamp>.md and race-<stamp>-latency.svg.
#
# Usage: perf/race.sh                      (from anywhere; needs jq)
#   BROKERS="ringmq mosquitto"  subset      DURATION=10  seconds per load scenario
#   CONNS=10000  idle connections           SKIP_BUILD=1 use the existing release binaries
#   SCENARIOS="latency conn"  subset of fanin0 fanin1 fanout latency conn
#   LATENCY_RATE=20000  msgs/s of the paced latency run (4 pairs, QoS 1)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
# shellcheck source=perf/lib.sh
source "$ROOT/perf/lib.sh"
BROKERS=${BROKERS:-ringmq mosquitto nats rumqttd}
DURATION=${DURATION:-10}
CONNS=${CONNS:-10000}
PEERS=${PEERS:-../shared/peers}
# ringmq's per-session queue limits lifted as the Mosquitto config lifts its own
# (max_queued_messages 0), so that no broker wins a flood by dropping; and its window towards
# each subscriber as Mosquitto's (max_inflight_messages 0: unlimited).
RINGMQ_FLAGS=${RINGMQ_FLAGS---max-queued-messages 100000000 --max-queued-bytes 8000000000 --max-inflight 65535}
LATENCY_RATE=${LATENCY_RATE:-20000}
LATENCY_LABEL="$((LATENCY_RATE / 1000))k msgs/s"
LOAD=$ROOT/target/release/ringmq-load
CLK_TCK=$(getconf CLK_TCK)
STAMP=$(date +%Y%m%d-%H%M%S)
RESULTS=$ROOT/perf/results
OUT=$RESULTS/race-$STAMP.md
SVG=$RESULTS/race-$STAMP-latency.svg
WORK=$(mktemp -d /tmp/ringmq-race.XXXXXX)
BROKER_PID=

log() { echo "race: $*" >&2; }
cleanup() { stop_broker; rm -rf "$WORK"; }
trap cleanup EXIT

# --- brokers -----------------------------------------------------------------------------------
RINGMQ_PORT0=19890
declare -A PORT=([ringmq]=$RINGMQ_PORT0 [mosquitto]=19883 [nats]=19884 [rumqttd]=19885)

# --- scenarios ---------------------------------------------------------------------------------
COMMON=(--payload 64 --duration "$DURATION" --json --quiet)
declare -A ARGS=(
    [fanin0]="fanin --pairs 4 --qos 0"
    [fanin1]="fanin --pairs 4 --qos 1"
    [fanout]="fanout --subscribers 100 --qos 0"
    [latency]="fanin --pairs 4 --qos 1 --rate $LATENCY_RATE"
)
read -r -a SCENARIOS <<< "${SCENARIOS:-fanin0 fanin1 fanout latency conn}"

run_scenario() { # scenario broker
    local sc=$1 b=$2 json rc=0 before after
    # ringmq cannot bind a port with TIME_WAIT connections left by its previous run (no
    # SO_REUSEADDR, see the report): a port of its own per scenario.
    [[ $b == ringmq ]] && PORT[ringmq]=$(ringmq_port)
    local port=${PORT[$b]}
    start_broker "$b" || { echo '{"errors":["broker did not start"]}' >"$WORK/$sc-$b.json"; return; }
    before=$(cpu_ticks "$BROKER_PID")
    local rss0; rss0=$(rss_kb "$BROKER_PID")
    if [[ $sc == conn ]]; then
        rm -f "$WORK/ready"
        "$LOAD" conn --port "$port" --clients "$CONNS" --hold 3 --ready-file "$WORK/ready" \
            --json --quiet >"$WORK/$sc-$b.out" 2>"$WORK/$sc-$b.err" &
        local lp=$! rss1=
        for _ in $(seq 600); do [[ -e $WORK/ready ]] && break; kill -0 $lp 2>/dev/null || break; sleep 0.1; done
        sleep 1
        rss1=$(rss_kb "$BROKER_PID")
        wait $lp || rc=$?
        json=$(cat "$WORK/$sc-$b.out")
        [[ -n $json ]] || json='{"opened":0}'
        json=$(jq -c --argjson r0 "$rss0" --argjson r1 "${rss1:-0}" '. + {rss0_kb: $r0, rss1_kb: $r1}' <<<"$json")
    else
        local hdr=(); [[ $sc == latency ]] && hdr=(--hdr "$WORK/$b.hdr")
        # shellcheck disable=SC2086
        json=$("$LOAD" ${ARGS[$sc]} --port "$port" "${COMMON[@]}" "${hdr[@]}" 2>"$WORK/$sc-$b.err") || rc=$?
        [[ -n $json ]] || json='{"errors":["ringmq-load failed"]}'
    fi
    if ! after=$(cpu_ticks "$BROKER_PID" 2>/dev/null); then
        log "$b exited during $sc:"; tail -5 "$WORK/$b.log" >&2
        after=$before
        json=$(jq -c '.errors = ((.errors // []) + ["broker exited during the run"])' <<<"$json")
    fi
    json=$(jq -c --argjson t "$((after - before))" --arg rc "$rc" '. + {cpu_ticks: $t, exit: $rc}' <<<"$json")
    echo "$json" >"$WORK/$sc-$b.json"
    log "$sc $b: $json"
    stop_broker
}

# --- setup -------------------------------------------------------------------------------------
prepare_race
for port in "${PORT[@]}"; do
    [[ $port == "$RINGMQ_PORT0" ]] && continue # ringmq picks a free one per run
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        log "port $port is already taken: stop whatever listens there first"; exit 1
    fi
done
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
T0=$SECONDS
for sc in "${SCENARIOS[@]}"; do
    for b in "${RACE[@]}"; do run_scenario "$sc" "$b"; done
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# --- report ------------------------------------------------------------------------------------
v() { jq -r "$3 // \"n/a\"" "$WORK/$1-$2.json" 2>/dev/null || echo n/a; } # scenario broker expr
cpu_us() { # scenario broker: broker CPU µs per delivered message
    awk -v t="$(v "$1" "$2" .cpu_ticks)" -v hz="$CLK_TCK" -v d="$(v "$1" "$2" .distinct)" \
        'BEGIN { if (d + 0 > 0) printf "%.3f", t / hz * 1e6 / d; else print "n/a" }'
}
rss_per_conn() {
    awk -v a="$(v conn "$1" .rss0_kb)" -v b="$(v conn "$1" .rss1_kb)" -v n="$(v conn "$1" .opened)" \
        'BEGIN { if (n + 0 > 0) printf "%.2f", (b - a) * 1.024 / n; else print "n/a" }'
}
fmt() { awk -v x="$1" -v p="$2" 'BEGIN { if (x == "n/a" || x == "") print "n/a"; else printf("%." p "f", x) }'; }

# figure <label> <better: hi|lo> <digits> <command producing the value for broker $1>
ROWS=()
figure() {
    local label=$1 better=$2 digits=$3; shift 3
    local row="| $label |" vals=() b x
    for b in "${RACE[@]}"; do
        x=$("$@" "$b"); vals+=("$x")
        row+=" $(fmt "$x" "$digits") |"
    done
    # ratio ringmq / best peer, and whether ringmq is ahead (ties count)
    local verdict
    verdict=$(printf '%s\n' "${vals[@]}" | awk -v better="$better" '
        NR == 1 { r = $1; next }
        $1 != "n/a" && $1 != "" { if (!seen || (better == "hi" ? $1 > best : $1 < best)) best = $1; seen = 1 }
        END {
            if (r == "n/a" || !seen) { print "n/a | n/a"; exit }
            ratio = (best == 0) ? (r == 0 ? "1.00" : "∞") : sprintf("%.2f", r / best)
            ahead = (better == "hi") ? (r >= best) : (r <= best)
            print ratio " | " (ahead ? "yes" : "**no**")
        }')
    ROWS+=("$row $verdict |")
}
sc_v() { v "$1" "$3" "$2"; } # scenario expr broker
ms() { awk -v x="$(v latency "$2" ".latency_us.$1")" 'BEGIN { if (x == "n/a") print x; else printf "%.3f", x / 1000 }'; }

figure "fan-in QoS 0: delivered msgs/s" hi 0 sc_v fanin0 .msgs_per_sec
figure "fan-in QoS 0: not delivered" lo 0 sc_v fanin0 .lost
figure "fan-in QoS 0: broker CPU µs / msg" lo 3 cpu_us fanin0
figure "fan-in QoS 1: delivered msgs/s" hi 0 sc_v fanin1 .msgs_per_sec
figure "fan-in QoS 1: not delivered" lo 0 sc_v fanin1 .lost
figure "fan-in QoS 1: broker CPU µs / msg" lo 3 cpu_us fanin1
figure "fan-out 1→100 QoS 0: deliveries/s" hi 0 sc_v fanout .msgs_per_sec
figure "fan-out 1→100 QoS 0: not delivered" lo 0 sc_v fanout .lost
figure "fan-out 1→100 QoS 0: broker CPU µs / delivery" lo 3 cpu_us fanout
figure "$LATENCY_LABEL QoS 1: p50 ms" lo 3 ms p50
figure "$LATENCY_LABEL QoS 1: p99 ms" lo 3 ms p99
figure "$LATENCY_LABEL QoS 1: p99.9 ms" lo 3 ms p999
figure "$LATENCY_LABEL QoS 1: not delivered" lo 0 sc_v latency .lost
figure "$CONNS idle connections: RSS KB / connection" lo 2 rss_per_conn
figure "$CONNS idle connections: seconds to open" lo 3 sc_v conn .open_secs

hdrs=()
for b in "${RACE[@]}"; do [[ -s $WORK/$b.hdr ]] && hdrs+=("$b=$WORK/$b.hdr"); done
((${#hdrs[@]})) && "$LOAD" plot --out "$SVG" --title "End-to-end latency, fan-in 4 pairs, QoS 1 at $LATENCY_RATE msgs/s" "${hdrs[@]}"

{
    echo "# ringmq race: $(IFS=,; echo "${RACE[*]}" | sed 's/,/, /g') ($STAMP)"
    echo
    echo "Made by \`perf/race.sh\` (DURATION=$DURATION CONNS=$CONNS BROKERS=\"${RACE[*]}\"), $(((SECONDS - T0) / 60)) min."
    echo "Machine: $(nproc) CPUs, kernel $(uname -r); load average before $LOAD_BEFORE, after $LOAD_AFTER."
    echo "**A shared 2-core VM: load generator and broker compete for the same two cores, and other"
    echo "builds may run. Compare within a row (same run, back to back), not across reports.**"
    echo
    echo "| figure | $(IFS='|'; echo "${RACE[*]}" | sed 's/|/ | /g') | ringmq / best peer | ringmq ahead |"
    echo "|---|$(for _ in "${RACE[@]}"; do printf -- '---:|'; done)---:|---|"
    printf '%s\n' "${ROWS[@]}"
    echo
    [[ -e $SVG ]] && echo "Latency percentiles at $LATENCY_RATE msgs/s QoS 1: [$(basename "$SVG")]($(basename "$SVG"))" && echo
    echo "## What was run"
    echo
    echo "Every scenario starts each broker afresh, then runs \`target/release/ringmq-load\` against it:"
    echo
    for sc in fanin0 fanin1 fanout latency; do echo "- $sc: \`ringmq-load ${ARGS[$sc]} ${COMMON[*]}\`"; done
    echo "- conn: \`ringmq-load conn --clients $CONNS --hold 3\` (4 connecting threads); broker VmRSS sampled before and 1 s after all are open"
    echo
    echo "Clients: MQTT 3.1.1, clean sessions, TCP_NODELAY, one thread per client, 64 B payloads"
    echo "carrying publisher id, sequence and send time. QoS 1 publishers keep up to 256 PUBLISH in flight."
    echo "Flat-out runs publish as fast as TCP takes them. The latency run is paced at $LATENCY_RATE msgs/s in"
    echo "total and stamps each message with its *intended* send time (no coordinated omission)."
    echo
    echo "- delivered msgs/s: distinct messages received / time from first publish to last delivery."
    echo "- not delivered: messages sent (written to the socket; QoS 1: also PUBACKed) minus distinct received, after a drain of up to 5 s (ends early after 2 s without a delivery)."
    echo "- broker CPU: utime+stime of the broker process over the scenario (/proc/PID/stat, ${CLK_TCK} Hz ticks) / distinct deliveries."
    echo "- RSS / connection: (VmRSS with $CONNS connections − VmRSS of the fresh broker) / connections."
    echo
    echo "Broker settings (none throttled: queues and in-flight windows unlimited or large, Nagle off, little logging):"
    echo
    for b in "${RACE[@]}"; do
        case $b in
            ringmq) echo "- $(version_of ringmq): \`ringmq --bind 127.0.0.1 -p <free port from $RINGMQ_PORT0> $RINGMQ_FLAGS\` (one shard per CPU)" ;;
            mosquitto) echo "- $(version_of mosquitto): \`$PEERS/mosquitto.conf\` (max_inflight_messages 0, max_queued_messages 0, set_tcp_nodelay, persistence off)" ;;
            nats) echo "- $(version_of nats): \`$PEERS/nats-server.conf\` (MQTT listener, JetStream memory/file store, max_ack_pending 1024)" ;;
            rumqttd) echo "- $(version_of rumqttd): \`$PEERS/rumqttd.toml\` (v4 listener, max_inflight_count 1000, next_connection_delay_ms 0)" ;;
        esac
    done
    echo
    echo "## Client errors"
    echo
    errs=0
    for sc in "${SCENARIOS[@]}"; do for b in "${RACE[@]}"; do
        e=$(jq -r '[(.errors // [])[]] + (if (.first_error // "") != "" then [.first_error] else [] end) | unique | .[:3] | join("; ")' "$WORK/$sc-$b.json" 2>/dev/null || echo "no result")
        f=$(jq -r '.failed // 0' "$WORK/$sc-$b.json" 2>/dev/null || echo 0)
        [[ $f != 0 ]] && e="$f connections failed; $e"
        [[ -n $e ]] && { echo "- $sc / $b: $e"; errs=1; }
    done; done
    ((errs)) || echo "None."
    echo
    echo "## Raw results"
    echo
    for sc in "${SCENARIOS[@]}"; do for b in "${RACE[@]}"; do
        echo "- $sc / $b: \`$(cat "$WORK/$sc-$b.json" 2>/dev/null)\`"
    done; done
} >"$OUT"

log "wrote $OUT"
cat "$OUT"
