#!/usr/bin/env bash
# Runs the whole ringmq test suite: unit tests, the codec and core property tests, the
# end-to-end tests (one binary, tests/e2e/, one module a feature; they start the real broker
# on loopback ports), interop tests with paho-mqtt and mosquitto_pub/sub (the e2e module
# `interop`), TLS, WebSockets (MQTT.js, Chromium) and HAProxy, the soak (its own binary, tests/soak.rs) and the benches in test mode.
#
# Meant for a fresh Debian machine, as root (or with sudo): installs what the interop tests need
# (mosquitto-clients, the mosquitto broker for the bridge test, haproxy, paho-mqtt)
# when it is missing, and is quiet and quick when everything is already there. Idempotent.
#
# Environment knobs passed through to the tests:
#   RINGMQ_SOAK_QOS1_MSGS, RINGMQ_SOAK_QOS2_MSGS, RINGMQ_SOAK_SECS  (see tests/soak.rs)
#   RINGMQ_TEST_ECHO=1  print every broker's stderr live
# Extra arguments go to `cargo test`: e.g. `scripts/test.sh --test e2e sessions::` runs one
# feature's end-to-end tests, `scripts/test.sh --test e2e hostile::` all hostile-client ones,
# `scripts/test.sh --test soak` the soak alone.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

# --- Debian packages ------------------------------------------------------------------------
apt_missing=()
command -v mosquitto_pub >/dev/null 2>&1 && command -v mosquitto_sub >/dev/null 2>&1 \
    || apt_missing+=(mosquitto-clients)
# The Mosquitto broker, as the bridge in tests/e2e/bridge.rs (its service is not wanted).
[ -x /usr/sbin/mosquitto ] || apt_missing+=(mosquitto)
# HAProxy in front of the broker with the PROXY protocol (tests/e2e/proxy_protocol.rs).
[ -x /usr/sbin/haproxy ] || apt_missing+=(haproxy)
# MQTT.js under Node and in headless Chromium (tests/e2e/websockets.rs).
command -v node >/dev/null 2>&1 || apt_missing+=(nodejs)
command -v npm >/dev/null 2>&1 || apt_missing+=(npm)
command -v chromium >/dev/null 2>&1 || apt_missing+=(chromium)
command -v python3 >/dev/null 2>&1 || apt_missing+=(python3)
if ! python3 -m pip --version >/dev/null 2>&1; then
    apt_missing+=(python3-pip)
fi

if [ "${#apt_missing[@]}" -gt 0 ]; then
    echo "test.sh: installing ${apt_missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    # Update the package lists only if installing from the current ones fails.
    if ! $SUDO apt-get install -y -qq --no-install-recommends "${apt_missing[@]}" >/dev/null 2>&1; then
        $SUDO apt-get update -qq >/dev/null
        $SUDO apt-get install -y -qq --no-install-recommends "${apt_missing[@]}" >/dev/null
    fi
    if command -v systemctl >/dev/null 2>&1; then
        $SUDO systemctl disable --now mosquitto haproxy >/dev/null 2>&1 || true
    fi
fi

# --- Python packages ------------------------------------------------------------------------
paho_ok() {
    python3 -c 'import sys, paho.mqtt; sys.exit(0 if paho.mqtt.__version__.split(".")[0] == "2" else 1)' \
        >/dev/null 2>&1
}
if ! paho_ok; then
    echo "test.sh: installing tests/interop/requirements.txt" >&2
    export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
    req=tests/interop/requirements.txt
    # Debian's own python3 refuses system-wide pip installs (PEP 668) unless told otherwise.
    if ! python3 -m pip install -q -r "$req" 2>/dev/null; then
        python3 -m pip install -q --break-system-packages -r "$req"
    fi
    paho_ok || { echo "test.sh: paho-mqtt 2.x still not importable by python3" >&2; exit 1; }
fi

# --- Node packages (MQTT.js, pinned by tests/interop/node/package-lock.json) -----------------
node_dir=tests/interop/node
mqttjs_ok() {
    (cd "$node_dir" && node -e 'const want = require("./package.json").dependencies.mqtt;
        process.exit(require("./node_modules/mqtt/package.json").version === want ? 0 : 1)') \
        >/dev/null 2>&1
}
if ! mqttjs_ok; then
    echo "test.sh: installing $node_dir (npm ci)" >&2
    (cd "$node_dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi

# --- Lints ------------------------------------------------------------------------------------
# NOT RUN HERE: `cargo fmt --check` and `cargo clippy` are part of .ci/run, not of this script.
# ---------------------------------------------------------------------------------------------

# --- Tests ------------------------------------------------------------------------------------
export RUST_BACKTRACE="${RUST_BACKTRACE:-1}"
cargo test --workspace --all-targets "$@"
