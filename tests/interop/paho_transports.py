#!/usr/bin/env python3
"""paho-mqtt 2.x over each transport ringmq serves besides plain TCP.

usage: paho_transports.py WS_PORT WSS_PORT TLS_PORT CAFILE

Over ws://127.0.0.1:WS_PORT, wss://localhost:WSS_PORT and mqtts://localhost:TLS_PORT, with
MQTT 3.1.1 and 5.0: a client subscribes at QoS 1 to its own topic and publishes to it at QoS 0,
1 and 2, one message 200 KB long (it spans WebSocket frames and TLS records); every message
must come back intact and in order. A subscriber on one transport also gets what a publisher on
another sends. Prints OK and exits 0 on success; prints FAIL: ... and exits 1 otherwise.
"""

import sys
import threading
import time
import uuid

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

TIMEOUT = 15.0


def fail(msg):
    print(f"FAIL: {msg}", flush=True)
    sys.exit(1)


def client(transport, port, cafile, version):
    c = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"paho-{transport}-{uuid.uuid4().hex[:8]}",
        transport="websockets" if transport in ("ws", "wss") else "tcp",
        protocol=version,
    )
    if transport in ("wss", "tls"):
        c.tls_set(ca_certs=cafile)
    host = "127.0.0.1" if transport == "ws" else "localhost"
    c.received = []
    c.lock = threading.Condition()

    def on_message(_c, _u, m):
        with c.lock:
            c.received.append((m.topic, m.payload))
            c.lock.notify_all()

    c.on_message = on_message
    c.connect(host, port, keepalive=30)
    c.loop_start()
    return c


def wait(c, n, what):
    deadline = time.time() + TIMEOUT
    with c.lock:
        while len(c.received) < n:
            left = deadline - time.time()
            if left <= 0:
                fail(f"{what}: {len(c.received)} of {n} messages")
            c.lock.wait(left)


def subscribe(c, topic):
    done = threading.Event()
    c.on_subscribe = lambda *_: done.set()
    c.subscribe(topic, qos=1)
    if not done.wait(TIMEOUT):
        fail(f"no SUBACK for {topic}")


def main():
    ws_port, wss_port, tls_port, cafile = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    ports = {"ws": ws_port, "wss": wss_port, "tls": tls_port}
    big = bytes(range(256)) * 800
    for version in (mqtt.MQTTv311, mqtt.MQTTv5):
        for transport, port in ports.items():
            what = f"{transport} v{version}"
            c = client(transport, port, cafile, version)
            topic = f"paho/{uuid.uuid4().hex}"
            subscribe(c, topic)
            sent = [(b"qos0", 0), (b"qos1", 1), (b"qos2", 2), (big, 1)]
            for payload, qos in sent:
                c.publish(topic, payload, qos=qos).wait_for_publish(TIMEOUT)
            wait(c, len(sent), what)
            got = [p for _, p in c.received]
            if got != [p for p, _ in sent]:
                fail(f"{what}: got {[len(p) for p in got]} bytes")
            c.disconnect()
            c.loop_stop()
    # Across transports: a ws subscriber, a wss and a TLS publisher.
    sub = client("ws", ws_port, cafile, mqtt.MQTTv5)
    topic = f"paho/{uuid.uuid4().hex}"
    subscribe(sub, topic)
    for transport in ("wss", "tls"):
        pub = client(transport, ports[transport], cafile, mqtt.MQTTv311)
        pub.publish(topic, transport.encode(), qos=1).wait_for_publish(TIMEOUT)
        pub.disconnect()
        pub.loop_stop()
    wait(sub, 2, "across transports")
    if sorted(p for _, p in sub.received) != [b"tls", b"wss"]:
        fail(f"across transports: {sub.received}")
    print("OK", flush=True)


if __name__ == "__main__":
    main()
