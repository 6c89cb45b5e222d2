#!/usr/bin/env python3
"""MQTT 5.0 with a real client library (paho-mqtt 2.x, MQTTv5) against a broker on 127.0.0.1.

usage: paho_v5.py PORT

Checks, each bounded in time:
1. Session expiry: a subscriber with Session Expiry Interval 60 subscribes at QoS 1 and leaves;
   two messages published meanwhile arrive when it reconnects with clean start 0 (session
   present), with their user properties in order, response topic and correlation data.
2. Shared subscription: two members of $share/g/... get 20 messages between them, each once.
3. Topic alias: a publisher using a topic alias is understood (the subscriber gets the topic).
4. Subscription identifier: the subscriber's identifier comes back on the messages.
Prints OK and exits 0 on success; prints FAIL: ... and exits 1 otherwise.
"""

import sys
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

HOST = "127.0.0.1"
TIMEOUT = 15.0


def fail(msg):
    print(f"FAIL: {msg}", flush=True)
    sys.exit(1)


def wait_for(pred, what):
    deadline = time.time() + TIMEOUT
    while time.time() < deadline:
        if pred():
            return
        time.sleep(0.02)
    fail(f"timed out waiting for {what}")


class Client:
    def __init__(self, port, client_id, clean_start=True, expiry=None):
        self.lock = threading.Lock()
        self.messages = []
        self.connack = None
        self.subacks = 0
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5,
        )
        self.client.on_connect = self.on_connect
        self.client.on_message = self.on_message
        self.client.on_subscribe = self.on_subscribe
        props = None
        if expiry is not None:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = expiry
        self.client.connect(HOST, port, keepalive=30, clean_start=clean_start, properties=props)
        self.client.loop_start()
        wait_for(lambda: self.connack is not None, f"CONNACK for {client_id}")

    def on_connect(self, client, userdata, flags, reason_code, properties):
        self.connack = (flags.session_present, reason_code.value)

    def on_subscribe(self, client, userdata, mid, reason_codes, properties):
        with self.lock:
            self.subacks += 1

    def on_message(self, client, userdata, msg):
        with self.lock:
            self.messages.append(msg)

    def subscribe(self, topic, qos=1, sub_id=None):
        before = self.subacks
        props = None
        if sub_id is not None:
            props = Properties(PacketTypes.SUBSCRIBE)
            props.SubscriptionIdentifier = sub_id
        self.client.subscribe(topic, qos=qos, properties=props)
        wait_for(lambda: self.subacks > before, f"SUBACK for {topic}")

    def stop(self):
        self.client.disconnect()
        self.client.loop_stop()


def main():
    port = int(sys.argv[1])

    # 1 + 4: session expiry, properties passed through, subscription identifier.
    sub = Client(port, "paho5-sub", clean_start=True, expiry=60)
    sub.subscribe("paho5/req", qos=1, sub_id=7)
    sub.stop()
    pub = Client(port, "paho5-pub")
    for i in range(2):
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = "paho5/reply"
        props.CorrelationData = f"corr-{i}".encode()
        props.UserProperty = [("k", "1"), ("k", "2")]
        pub.client.publish("paho5/req", f"m{i}", qos=1, properties=props).wait_for_publish(TIMEOUT)
    sub = Client(port, "paho5-sub", clean_start=False, expiry=60)
    if sub.connack != (True, 0):
        fail(f"expected session present on resume, got {sub.connack}")
    wait_for(lambda: len(sub.messages) >= 2, "the two queued messages")
    for i, msg in enumerate(sub.messages[:2]):
        p = msg.properties
        if msg.payload != f"m{i}".encode():
            fail(f"payload {msg.payload!r}")
        if getattr(p, "ResponseTopic", None) != "paho5/reply":
            fail(f"response topic {getattr(p, 'ResponseTopic', None)!r}")
        if getattr(p, "CorrelationData", None) != f"corr-{i}".encode():
            fail("correlation data lost")
        if getattr(p, "UserProperty", None) != [("k", "1"), ("k", "2")]:
            fail(f"user properties {getattr(p, 'UserProperty', None)!r}")
        if 7 not in (getattr(p, "SubscriptionIdentifier", None) or []):
            fail(f"subscription identifier {getattr(p, 'SubscriptionIdentifier', None)!r}")
    sub.stop()

    # 2: shared subscription.
    a = Client(port, "paho5-a")
    b = Client(port, "paho5-b")
    a.subscribe("$share/g/paho5/shared", qos=1)
    b.subscribe("$share/g/paho5/shared", qos=1)
    for i in range(20):
        pub.client.publish("paho5/shared", f"s{i}", qos=1).wait_for_publish(TIMEOUT)
    wait_for(lambda: len(a.messages) + len(b.messages) >= 20, "20 shared messages")
    time.sleep(0.3)
    got = sorted(m.payload for m in a.messages + b.messages)
    if got != sorted(f"s{i}".encode() for i in range(20)):
        fail(f"shared group got {len(got)} messages, duplicates or gaps")
    a.stop()
    b.stop()

    # 3: topic alias from the publisher.
    watcher = Client(port, "paho5-watch")
    watcher.subscribe("paho5/alias", qos=1)
    props = Properties(PacketTypes.PUBLISH)
    props.TopicAlias = 1
    pub.client.publish("paho5/alias", "first", qos=1, properties=props).wait_for_publish(TIMEOUT)
    pub.client.publish("", "second", qos=1, properties=props).wait_for_publish(TIMEOUT)
    wait_for(lambda: len(watcher.messages) >= 2, "two aliased messages")
    topics = [m.topic for m in watcher.messages]
    if topics != ["paho5/alias", "paho5/alias"]:
        fail(f"aliased topics arrived as {topics}")
    watcher.stop()
    pub.stop()
    print("OK", flush=True)


if __name__ == "__main__":
    main()
