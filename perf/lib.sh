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
        ringmq) echo "ringmq $(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet HEAD -- src 2>/dev/null || echo '+dirty src')" ;;
        mosquitto) /usr/sbin/mosquitto -h 2>/dev/null | head -1 | sed 's/ is an MQTT.*//' ;;
        nats) nats-server --version ;;
        rumqttd) echo "rumqttd $(rumqttd --version 2>/dev/null | awk '{print $2}')" ;;
    esac
}
