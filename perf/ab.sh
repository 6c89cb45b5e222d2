#!/usr/bin/env bash
# A/B of one ringmq build against another on one scenario: starts BIN with the race's lifted
# queue limits on PORT, runs ringmq-load with the given arguments for 8 s, prints msgs/s and the
# broker's CPU µs per delivered message (CPU ticks at 100 Hz). Needs jq.
# Usage: perf/ab.sh BIN PORT fanin --pairs 4 --qos 1
#   BROKER_FLAGS="--data-dir /tmp/d --fsync always"  more broker flags (the data dir is emptied)
set -euo pipefail
BIN=$1 PORT=$2
shift 2
LOAD=${LOAD:-$(dirname "$0")/../target/release/ringmq-load}
read -r -a extra <<<"${BROKER_FLAGS:-}"
for ((i = 0; i < ${#extra[@]}; i++)); do
    [[ ${extra[i]} == --data-dir ]] && rm -rf "${extra[i + 1]}"
done
"$BIN" --bind 127.0.0.1 -p "$PORT" --max-queued-messages 100000000 --max-queued-bytes 8000000000 \
    "${extra[@]}" >/dev/null 2>&1 &
PID=$!
sleep 0.7
ticks() { sed 's/^.*) //' "/proc/$PID/stat" | awk '{print $12 + $13}'; }
t0=$(ticks)
json=$("$LOAD" "$@" --port "$PORT" --payload 64 --duration 8 --json --quiet 2>/dev/null)
t1=$(ticks)
kill "$PID"
wait "$PID" 2>/dev/null || true
jq -r --argjson t $((t1 - t0)) '"\(.msgs_per_sec | floor) msgs/s  cpu_us/msg=\(($t / 100 * 1e6 / .distinct) * 1000 | floor / 1000)"' <<<"$json"
