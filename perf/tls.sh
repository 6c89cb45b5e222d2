#!/usr/bin/env bash
# TLS race (issue 13): ringmq against Mosquitto, both with a plain and a TLS listener and the
# same certificate (made here with openssl), driven by ringmq-load --tls-ca. Rows:
#   fanin1     fan-in QoS 1 over TLS, 4 pairs, 64 B, flat out: delivered msgs/s, latency
#   connect    CLIENTS TLS connections opened flat out (handshake, CONNECT, CONNACK): conns/s
#   idle       CLIENTS TLS connections held open: the broker's RSS growth per connection
#   pair       a healthy plain QoS 1 pair at 2,000 msgs/s alone: latency percentiles
#   pair+storm the same pair while CLIENTS TLS connections are opened flat out beside it
# Writes perf/results/tls-<date>.md.
#
# Usage: perf/tls.sh          (needs jq, openssl; DURATION=8 CLIENTS=3000 SKIP_BUILD=1)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PEERS=${PEERS:-$ROOT/../shared/peers}
DURATION=${DURATION:-8}
CLIENTS=${CLIENTS:-3000}
WORK=$(mktemp -d /tmp/ringmq-tls.XXXXXX)
BROKER_PID=
log() { echo "tls.sh: $*" >&2; }
# shellcheck source=perf/lib.sh
source "$ROOT/perf/lib.sh"
trap 'stop_broker; rm -rf "$WORK"' EXIT

command -v jq >/dev/null || { log "needs jq"; exit 1; }
if [[ -z ${SKIP_BUILD:-} ]]; then
    log "building (release)"
    nice -n 10 cargo build --release -p ringmq -p ringmq-load
fi
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
LOAD=$ROOT/target/release/ringmq-load

# One CA, one server certificate for localhost / 127.0.0.1 (P-256, as rcgen and most CAs).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=perf-ca \
    -keyout "$WORK/ca.key" -out "$WORK/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
    -keyout "$WORK/server.key" -out "$WORK/server.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$WORK/san"
openssl x509 -req -in "$WORK/server.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca.key" \
    -CAcreateserial -days 2 -extfile "$WORK/san" -out "$WORK/server.pem" 2>/dev/null

# Mosquitto started as root reads its files as the mosquitto user.
chmod 755 "$WORK"
chmod 644 "$WORK"/server.*

PLAIN=19883
TLS=19884
{
    cat "$PEERS/mosquitto.conf"
    printf 'listener %s 127.0.0.1\ncertfile %s\nkeyfile %s\n' "$TLS" "$WORK/server.pem" "$WORK/server.key"
} >"$WORK/mosquitto.conf"

start() { # name
    case $1 in
        ringmq) exec "$ROOT/target/release/ringmq" --listen "mqtt://127.0.0.1:$PLAIN" \
            --listen "mqtts://127.0.0.1:$TLS" --certfile "$WORK/server.pem" --keyfile "$WORK/server.key" ;;
        mosquitto) exec /usr/sbin/mosquitto -c "$WORK/mosquitto.conf" ;;
    esac >"$WORK/$1.log" 2>&1 &
    BROKER_PID=$!
    wait_for_port "$1" "$TLS" || exit 1
}

# X25519 for both: Mosquitto 2.0 (OpenSSL 3.0) cannot offer the post-quantum hybrid that
# rustls prefers; ringmq's own default is measured in its own row.
tls_load() { "$LOAD" --tls-ca "$WORK/ca.pem" --tls-x25519-only "$1" -p "$TLS" "${@:2}" --json 2>/dev/null; }
pair() { "$LOAD" fanin -p "$PLAIN" --pairs 1 --qos 1 --rate 2000 -d "$DURATION" --prefix "pair$RANDOM" --json 2>/dev/null; }

# RSS growth per connection while CLIENTS TLS connections are held open.
idle_kb() {
    local rss0 rss1 load
    rss0=$(rss_kb "$BROKER_PID")
    rm -f "$WORK/ready"
    "$LOAD" --tls-ca "$WORK/ca.pem" --tls-x25519-only conn -p "$TLS" -c "$CLIENTS" --hold 3 \
        --prefix "i$RANDOM" --ready-file "$WORK/ready" --quiet >/dev/null 2>&1 &
    load=$!
    for _ in $(seq 600); do [[ -e $WORK/ready ]] && break; kill -0 $load 2>/dev/null || break; sleep 0.1; done
    sleep 1
    rss1=$(rss_kb "$BROKER_PID")
    wait $load || true
    jq -n --argjson a "$rss0" --argjson b "$rss1" --argjson n "$CLIENTS" '($b - $a) / $n * 100 | round / 100'
}

declare -A ROW
for broker in ringmq mosquitto; do
    log "$broker"
    start "$broker"
    # First, on a fresh broker: memory freed by earlier rows would be reused, not grown.
    ROW[$broker.idle]=$(idle_kb)
    ROW[$broker.fanin1]=$(tls_load fanin --pairs 4 --qos 1 -d "$DURATION")
    ROW[$broker.connect]=$(tls_load conn -c "$CLIENTS" --hold 0 --prefix "c$RANDOM")
    ROW[$broker.connect_pq]=$("$LOAD" --tls-ca "$WORK/ca.pem" conn -p "$TLS" -c "$CLIENTS" --hold 0 \
        --prefix "q$RANDOM" --json 2>/dev/null)
    ROW[$broker.pair]=$(pair)
    # The storm: TLS connections opened flat out, over and over, for the pair's whole run.
    pair >"$WORK/pair.json" &
    pair_pid=$!
    storms=0
    while kill -0 "$pair_pid" 2>/dev/null; do
        tls_load conn -c "$CLIENTS" --hold 0 --prefix "s$storms" >/dev/null || true
        storms=$((storms + 1))
    done
    wait "$pair_pid" || true
    ROW[$broker.storm]=$(cat "$WORK/pair.json")
    ROW[$broker.storms]=$storms
    stop_broker
done

stamp=$(date +%Y%m%d-%H%M%S)
out=$ROOT/perf/results/tls-$stamp.md
fanin() { jq -r '"\(.msgs_per_sec | floor) msgs/s, lost \(.lost), p50 \(.latency_us.p50 / 1000 * 100 | round / 100) ms, p99 \(.latency_us.p99 / 1000 * 100 | round / 100) ms"' <<<"${ROW[$1]}"; }
conn() { jq -r '"\(.conn_per_sec | floor) conns/s (\(.opened) opened, \(.failed) failed), CONNACK p99 \(.connack_p99_us / 1000 * 10 | round / 10) ms"' <<<"${ROW[$1]}"; }
lat() { jq -r '"p50 \(.latency_us.p50 / 1000 * 100 | round / 100) / p99 \(.latency_us.p99 / 1000 * 100 | round / 100) / p99.9 \(.latency_us.p999 / 1000 * 100 | round / 100) / max \(.latency_us.max / 1000 * 10 | round / 10) ms, lost \(.lost)"' <<<"${ROW[$1]}"; }
ratio() { jq -n --argjson a "$(jq "$2" <<<"${ROW[ringmq.$1]}")" --argjson b "$(jq "$2" <<<"${ROW[mosquitto.$1]}")" '$a / $b * 100 | round / 100'; }
{
    echo "# TLS race $stamp"
    echo
    echo "Command: \`DURATION=$DURATION CLIENTS=$CLIENTS perf/tls.sh\` on the shared 2-core VM (noisy: compare"
    echo "within this run). $(version_of ringmq) ($(nproc) shards), $(version_of mosquitto); one P-256"
    echo "server certificate for both, ringmq-load --tls-ca --tls-x25519-only as the client (rustls,"
    echo "TLS 1.3, X25519); the last row lets the client offer its default, the post-quantum hybrid"
    echo "X25519MLKEM768 first, which ringmq takes and Mosquitto 2.0 (OpenSSL 3.0) cannot."
    echo
    echo "| row | ringmq | mosquitto | ringmq / mosquitto |"
    echo "|---|---|---|---|"
    echo "| fan-in QoS 1 over TLS (4 pairs, 64 B) | $(fanin ringmq.fanin1) | $(fanin mosquitto.fanin1) | $(ratio fanin1 .msgs_per_sec) |"
    echo "| $CLIENTS TLS connects | $(conn ringmq.connect) | $(conn mosquitto.connect) | $(ratio connect .conn_per_sec) |"
    echo "| $CLIENTS TLS connects, client's default key exchange | $(conn ringmq.connect_pq) | $(conn mosquitto.connect_pq) | $(ratio connect_pq .conn_per_sec) |"
    echo "| $CLIENTS idle TLS connections: RSS KB / connection | ${ROW[ringmq.idle]} | ${ROW[mosquitto.idle]} | $(jq -n "${ROW[ringmq.idle]} / ${ROW[mosquitto.idle]} * 100 | round / 100") |"
    echo "| plain QoS 1 pair, 2,000 msgs/s, alone | $(lat ringmq.pair) | $(lat mosquitto.pair) | p99 $(ratio pair .latency_us.p99) |"
    echo "| the same pair during TLS connect storms | $(lat ringmq.storm) (${ROW[ringmq.storms]} storms) | $(lat mosquitto.storm) (${ROW[mosquitto.storms]} storms) | p99 $(ratio storm .latency_us.p99) |"
} >"$out"
cat "$out"
log "report: $out"
