#!/usr/bin/env python3
"""The classic at-least-once scenario against a broker on 127.0.0.1, with paho-mqtt 2.x.

usage: paho_at_least_once.py PORT [--restart]

1. A QoS 1 subscriber with clean_session=False subscribes, then disconnects.
2. Another client publishes five messages at QoS 1 (each one acknowledged by the broker).
   With --restart the script then prints RESTART and reads a line from stdin: the port of the
   broker restarted meanwhile (the caller kills it, with SIGTERM or SIGKILL, and starts it
   again on the same data).
3. The subscriber reconnects (same client id, clean_session=False): the broker must report
   session present and deliver all five. Duplicates are tolerated and counted.

Prints one result line; exits 0 on success, 1 on failure. Every wait is bounded.
"""

import os
import sys
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

HOST = "127.0.0.1"
TOPIC = "interop/paho/at-least-once"
COUNT = 5
TIMEOUT = 15.0


def fail(msg):
    print(f"FAIL: {msg}", flush=True)
    sys.exit(1)


class Sub:
    """A subscriber whose callbacks record what happened."""

    def __init__(self, port, client_id):
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.disconnected = threading.Event()
        self.session_present = None
        self.connect_rc = None
        self.granted = None
        self.lock = threading.Lock()
        self.messages = []  # (payload, qos, dup)
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=False,
            protocol=mqtt.MQTTv311,
        )
        self.client.on_connect = self.on_connect
        self.client.on_subscribe = self.on_subscribe
        self.client.on_message = self.on_message
        self.client.on_disconnect = self.on_disconnect
        self.client.connect(HOST, port, keepalive=30)
        self.client.loop_start()

    def on_connect(self, client, userdata, connect_flags, reason_code, properties):
        self.connect_rc = reason_code
        self.session_present = connect_flags.session_present
        self.connected.set()

    def on_subscribe(self, client, userdata, mid, reason_code_list, properties):
        self.granted = [int(rc.value) for rc in reason_code_list]
        self.subscribed.set()

    def on_message(self, client, userdata, message):
        with self.lock:
            self.messages.append((message.payload.decode(), message.qos, bool(message.dup)))

    def on_disconnect(self, client, userdata, disconnect_flags, reason_code, properties):
        self.disconnected.set()

    def wait(self, event, what):
        if not event.wait(TIMEOUT):
            fail(f"timed out after {TIMEOUT}s waiting for {what}")

    def close(self):
        self.client.disconnect()
        self.wait(self.disconnected, "disconnect")
        self.client.loop_stop()


def main():
    if len(sys.argv) not in (2, 3) or sys.argv[2:] not in ([], ["--restart"]):
        print(__doc__)
        sys.exit(2)
    port = int(sys.argv[1])
    restart = sys.argv[2:] == ["--restart"]
    sub_id = f"paho-alo-sub-{os.getpid()}"

    # 1. subscribe with a persistent session, then go away
    sub = Sub(port, sub_id)
    sub.wait(sub.connected, "CONNACK")
    if sub.connect_rc != 0:
        fail(f"subscriber refused: {sub.connect_rc}")
    if sub.session_present:
        fail("first connect of a new client id reported session present")
    sub.client.subscribe(TOPIC, qos=1)
    sub.wait(sub.subscribed, "SUBACK")
    if sub.granted != [1]:
        fail(f"SUBACK granted {sub.granted}, expected [1]")
    sub.close()

    # 2. publish five QoS 1 messages while the subscriber is offline
    pub = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=f"paho-alo-pub-{os.getpid()}",
        clean_session=True,
        protocol=mqtt.MQTTv311,
    )
    pub_connected = threading.Event()
    pub.on_connect = lambda c, u, f, rc, p: pub_connected.set()
    pub.connect(HOST, port, keepalive=30)
    pub.loop_start()
    if not pub_connected.wait(TIMEOUT):
        fail("publisher: no CONNACK")
    expected = [f"alo-{i}" for i in range(COUNT)]
    for payload in expected:
        info = pub.publish(TOPIC, payload, qos=1)
        info.wait_for_publish(timeout=TIMEOUT)
        if not info.is_published():
            fail(f"publish of {payload} not acknowledged within {TIMEOUT}s")
    pub.disconnect()
    pub.loop_stop()
    if restart:
        print("RESTART", flush=True)
        line = sys.stdin.readline()
        if not line.strip():
            fail("no port for the restarted broker on stdin")
        port = int(line)

    # 3. come back and collect
    sub = Sub(port, sub_id)
    sub.wait(sub.connected, "CONNACK on reconnect")
    if sub.connect_rc != 0:
        fail(f"reconnect refused: {sub.connect_rc}")
    if not sub.session_present:
        fail("reconnect with clean_session=False: session present must be set")
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        with sub.lock:
            seen = {m[0] for m in sub.messages}
        if seen >= set(expected):
            break
        time.sleep(0.05)
    sub.close()

    with sub.lock:
        got = list(sub.messages)
    payloads = [m[0] for m in got]
    distinct = set(payloads)
    duplicates = len(payloads) - len(distinct)
    missing = [p for p in expected if p not in distinct]
    unexpected = sorted(distinct - set(expected))
    wrong_qos = [m for m in got if m[1] != 1]
    print(
        f"received={len(payloads)} distinct={len(distinct)} duplicates={duplicates} "
        f"missing={missing} unexpected={unexpected} wrong_qos={wrong_qos} order={payloads}",
        flush=True,
    )
    if missing:
        fail(f"messages lost: {missing}")
    if unexpected:
        fail(f"unexpected messages: {unexpected}")
    if wrong_qos:
        fail(f"delivered at the wrong QoS: {wrong_qos}")
    first_seen = sorted(set(payloads), key=payloads.index)
    if first_seen != expected:
        fail(f"first deliveries out of order: {first_seen}")
    print("OK", flush=True)


if __name__ == "__main__":
    main()
