#!/usr/bin/env bash
# Race ringmq against Mosquitto with ringmq-load fanin (QoS 0 and QoS 1, 4 pairs, 64 B, 10 s).
# Usage: perf/race.sh            (from anywhere; writes perf/results/race-<date>.md)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
PAIRS=${PAIRS:-4}
PAYLOAD=${PAYLOAD:-64}
DURATION=${DURATION:-10}
RINGMQ_PORT=19890
MOSQ_PORT=19883
# Extra ringmq flags. The default lifts the per-session queue limits as the peers' config lifts
# Mosquitto's (max_queued_messages 0 = unlimited), so neither broker drops to win a race.
RINGMQ_EXTRA=${RINGMQ_EXTRA:---max-queued-messages 100000000 --max-queued-bytes 8000000000}
MOSQ_CONF_SRC=/work/shared/peers/mosquitto.conf
MOSQUITTO=/usr/sbin/mosquitto
LOAD=$ROOT/target/release/ringmq-load
CLK_TCK=$(getconf CLK_TCK)
STAMP=$(date +%Y%m%d-%H%M%S)
OUT=$ROOT/perf/results/race-$STAMP.md
WORK=$(mktemp -d /tmp/ringmq-race.XXXXXX)
BROKER_PID=

cleanup() {
    if [[ -n $BROKER_PID ]] && kill -0 "$BROKER_PID" 2>/dev/null; then
        kill "$BROKER_PID" 2>/dev/null || true
        wait "$BROKER_PID" 2>/dev/null || true
    fi
}
trap cleanup EXIT

log() { echo "race: $*" >&2; }

if [[ ! -x $MOSQUITTO ]]; then
    log "installing mosquitto"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >/dev/null
fi

log "building"
cargo build --release -p ringmq -p ringmq-load

# utime+stime of a process, in clock ticks.
cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }

wait_port() { # port pid
    local deadline=$((SECONDS + 10))
    until (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; do
        kill -0 "$2" 2>/dev/null || { log "broker exited before listening on $1"; return 1; }
        ((SECONDS < deadline)) || { log "port $1 not open after 10 s"; return 1; }
        sleep 0.1
    done
}

stop_broker() {
    kill "$BROKER_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$BROKER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$BROKER_PID" 2>/dev/null || true
    wait "$BROKER_PID" 2>/dev/null || true
    BROKER_PID=
}

RESULTS=$WORK/results.tsv
: >"$RESULTS"

run_broker() { # name port cmd...
    local name=$1 port=$2; shift 2
    log "starting $name: $*"
    "$@" >"$WORK/$name.log" 2>&1 &
    BROKER_PID=$!
    wait_port "$port" "$BROKER_PID"
    for qos in 0 1; do
        local before after json rc=0
        before=$(cpu_ticks "$BROKER_PID")
        json=$("$LOAD" fanin --host 127.0.0.1 --port "$port" --pairs "$PAIRS" --qos "$qos" \
            --payload "$PAYLOAD" --duration "$DURATION" --json 2>"$WORK/$name-q$qos.err") || rc=$?
        after=$(cpu_ticks "$BROKER_PID")
        cat "$WORK/$name-q$qos.err" >&2
        if [[ -z $json ]]; then
            log "$name qos $qos: ringmq-load failed (exit $rc)"
            json='{"msgs_per_sec":0,"received":0,"sent":0,"lost":0,"duplicates":0,"latency_us":{"p50":0,"p99":0},"errors":["run failed"]}'
        fi
        echo "$json" >"$WORK/$name-q$qos.json"
        log "$name qos $qos: $json"
        printf '%s\t%s\t%s\t%s\n' "$name" "$qos" "$(( (after - before) ))" "$WORK/$name-q$qos.json" >>"$RESULTS"
    done
    stop_broker
}

ulimit -n 65536 2>/dev/null || true
# shellcheck disable=SC2086
run_broker ringmq "$RINGMQ_PORT" "$ROOT/target/release/ringmq" --bind 127.0.0.1 -p "$RINGMQ_PORT" $RINGMQ_EXTRA
cp "$MOSQ_CONF_SRC" "$WORK/mosquitto.conf"
run_broker mosquitto "$MOSQ_PORT" "$MOSQUITTO" -c "$WORK/mosquitto.conf"

# field <name> <qos> <jq expr>
field() { jq -r "$3" "$WORK/$1-q$2.json"; }
cpu_us_per_msg() { # name qos
    local ticks received
    ticks=$(awk -F'\t' -v n="$1" -v q="$2" '$1==n && $2==q {print $3}' "$RESULTS")
    received=$(field "$1" "$2" .received)
    awk -v t="$ticks" -v hz="$CLK_TCK" -v r="$received" 'BEGIN { if (r > 0) printf "%.3f", t / hz * 1e6 / r; else print "n/a" }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 > 0 && a != "n/a") printf "%.2f", a / b; else print "n/a" }'; }

{
    echo "# ringmq vs Mosquitto: fanin race ($STAMP)"
    echo
    echo "Command: \`perf/race.sh\` (PAIRS=$PAIRS PAYLOAD=$PAYLOAD DURATION=$DURATION), i.e. per broker and QoS:"
    echo
    echo '```'
    echo "target/release/ringmq-load fanin --host 127.0.0.1 --port <19890|19883> --pairs $PAIRS --qos <0|1> --payload $PAYLOAD --duration $DURATION --json"
    echo '```'
    echo
    echo "Brokers: \`target/release/ringmq --bind 127.0.0.1 -p $RINGMQ_PORT${RINGMQ_EXTRA:+ $RINGMQ_EXTRA}\` and"
    echo "\`$MOSQUITTO -c <copy of $MOSQ_CONF_SRC>\` ($($MOSQUITTO -h 2>/dev/null | head -1 | sed 's/ is an MQTT.*//'))."
    echo
    if [[ -z $RINGMQ_EXTRA ]]; then
        echo "Config asymmetry: ringmq runs with its defaults (at most 10000 messages / 64 MiB queued per"
        echo "session, further ones dropped, QoS 1 included), while the Mosquitto config disables every"
        echo "queue and in-flight limit. Under this open-loop flood, ringmq's \"lost\" column is its drop policy."
        echo
    fi
    echo "Machine: nproc=$(nproc), kernel $(uname -r), git $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src 2>/dev/null || echo ' (src/ dirty)')."
    echo "**This is a shared 2-core VM: the load generator (8 client threads) and the broker compete"
    echo "for the same two cores, and other work may be running. The ringmq/mosquitto ratios matter"
    echo "more than the absolute numbers.**"
    echo
    echo "Delivered msgs/s = messages received by subscribers / publish duration. Lost = sent − distinct"
    echo "received per publisher. Broker CPU = utime+stime of the broker process during the scenario"
    echo "(/proc/PID/stat), divided by messages delivered."
    echo
    echo "| scenario | broker | delivered msgs/s | sent | lost | dup | p50 µs | p99 µs | broker CPU µs/msg |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|---:|"
    for qos in 0 1; do
        for b in ringmq mosquitto; do
            printf '| QoS %s | %s | %.0f | %s | %s | %s | %s | %s | %s |\n' "$qos" "$b" \
                "$(field $b $qos .msgs_per_sec)" "$(field $b $qos .sent)" "$(field $b $qos .lost)" \
                "$(field $b $qos .duplicates)" "$(field $b $qos .latency_us.p50)" \
                "$(field $b $qos .latency_us.p99)" "$(cpu_us_per_msg $b $qos)"
        done
        printf '| QoS %s | **ringmq / mosquitto** | %s | | | | %s | %s | %s |\n' "$qos" \
            "$(ratio "$(field ringmq $qos .msgs_per_sec)" "$(field mosquitto $qos .msgs_per_sec)")" \
            "$(ratio "$(field ringmq $qos .latency_us.p50)" "$(field mosquitto $qos .latency_us.p50)")" \
            "$(ratio "$(field ringmq $qos .latency_us.p99)" "$(field mosquitto $qos .latency_us.p99)")" \
            "$(ratio "$(cpu_us_per_msg ringmq $qos)" "$(cpu_us_per_msg mosquitto $qos)")"
    done
    echo
    echo "Throughput ratio > 1 favours ringmq; latency and CPU ratios < 1 favour ringmq."
    echo
    warn=
    for qos in 0 1; do
        for b in ringmq mosquitto; do
            lost=$(field $b $qos .lost); errs=$(field $b $qos '.errors | join("; ")')
            if [[ $qos == 1 && $lost != 0 ]]; then
                echo "**WARNING: $b lost $lost messages at QoS 1 — at-least-once delivery violated (broker bug or drop policy).**"
                warn=1
            fi
            [[ -n $errs ]] && { echo "- $b QoS $qos errors: $errs"; warn=1; }
        done
    done
    [[ -z $warn ]] && echo "No QoS 1 loss and no client errors."
    echo
    echo "## Raw JSON"
    echo
    for b in ringmq mosquitto; do for qos in 0 1; do
        echo "- $b QoS $qos: \`$(cat "$WORK/$b-q$qos.json")\`"
    done; done
} >"$OUT"

log "wrote $OUT"
cat "$OUT"
rm -rf "$WORK"
