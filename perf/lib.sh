# Shared by the perf scripts (sourced): stopping the broker a script started, and naming the
# version of each broker in reports. Expects BROKER_PID and ROOT.

stop_broker() {
    [[ -n $BROKER_PID ]] || return 0
    kill "$BROKER_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$BROKER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$BROKER_PID" 2>/dev/null || true
    wait "$BROKER_PID" 2>/dev/null || true
    BROKER_PID=
}

version_of() {
    case $1 in
        ringmq) echo "${RINGMQ_VERSION:-ringmq $(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet HEAD -- src 2>/dev/null || echo '+dirty src')}" ;;
        mosquitto) /usr/sbin/mosquitto -h 2>/dev/null | head -1 | sed 's/ is an MQTT.*//' ;;
        nats) nats-server --version ;;
        rumqttd) echo "rumqttd $(rumqttd --version 2>/dev/null | awk '{print $2}')" ;;
    esac
}

# --- brokers side by side (race.sh, flow.sh) ------------------------------------------------------
# Expect ROOT, WORK (with the peers' configs copied in), the PORT map, RINGMQ_PORT0, RINGMQ_FLAGS.

have() {
    case $1 in
        ringmq) true ;;
        mosquitto) [[ -x /usr/sbin/mosquitto ]] ;;
        nats) command -v nats-server >/dev/null ;;
        rumqttd) command -v rumqttd >/dev/null ;;
    esac
}


start_broker() { # name
    local name=$1 port=${PORT[$1]}
    # `exec`: the background job is the broker itself, so $! is its pid (CPU, RSS, kill).
    # shellcheck disable=SC2086
    case $name in
        ringmq) exec "${RINGMQ_BIN:-$ROOT/target/release/ringmq}" --bind 127.0.0.1 -p "$port" $RINGMQ_FLAGS ;;
        mosquitto) exec /usr/sbin/mosquitto -c "$WORK/mosquitto.conf" ;;
        nats) rm -rf "$WORK/nats-js"; exec nats-server -c "$WORK/nats-server.conf" ;;
        rumqttd) exec rumqttd -c "$WORK/rumqttd.toml" ;;
    esac >"$WORK/$name.log" 2>&1 &
    BROKER_PID=$!
    sleep 0.2
    [[ $(readlink "/proc/$BROKER_PID/exe" 2>/dev/null) != */bash ]] || { log "$name: not exec'd"; return 1; }
    wait_for_port "$name" "$port" || return 1
    sleep 0.5 # NATS enables its MQTT streams just after listening
}

# Waits (at most 20 s) until broker NAME (BROKER_PID, its log in WORK) listens on PORT;
# fails, with the log, if it exits first.
wait_for_port() { # name port
    local name=$1 port=$2 deadline=$((SECONDS + 20))
    until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
        kill -0 "$BROKER_PID" 2>/dev/null || { log "$name exited:"; cat "$WORK/$name.log" >&2; return 1; }
        ((SECONDS < deadline)) || { log "$name: port $port not open after 20 s"; return 1; }
        sleep 0.1
    done
}


# A port in RINGMQ_PORT0..+19 with neither a listener nor TIME_WAIT connections on it.
ringmq_port() {
    local p
    for p in $(seq "$RINGMQ_PORT0" $((RINGMQ_PORT0 + 19))); do
        (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && continue
        [[ -z $(ss -Htan state time-wait "( sport = :$p )") ]] && { echo "$p"; return; }
    done
    log "no free ringmq port in $RINGMQ_PORT0..$((RINGMQ_PORT0 + 19))"; return 1
}

cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

# Builds (unless SKIP_BUILD), copies the peers' configs from PEERS into WORK, raises the open
# files limit, and sets RACE to the brokers of BROKERS that are installed.
prepare_race() {
    command -v jq >/dev/null || { log "needs jq"; exit 1; }
    if [[ -z ${SKIP_BUILD:-} ]]; then
        log "building (release)"
        nice -n 10 cargo build --release -p ringmq -p ringmq-load
    fi
    cp "$PEERS/mosquitto.conf" "$WORK/mosquitto.conf"
    sed "s#/tmp/peers/nats-js#$WORK/nats-js#" "$PEERS/nats-server.conf" >"$WORK/nats-server.conf"
    cp "$PEERS/rumqttd.toml" "$WORK/rumqttd.toml"
    ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
    RACE=()
    local b
    for b in $BROKERS; do
        if have "$b"; then RACE+=("$b"); else log "skipping $b: not installed"; fi
    done
}
