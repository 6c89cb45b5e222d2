// MQTT.js round trip against ringmq over ws:// or wss://.
// Usage: node mqttjs_roundtrip.js URL [CAFILE]
// For each of MQTT v5 and v3.1.1: a subscriber (QoS 1) and a publisher send
// QoS 0/1/2 messages, two of ~100 KB, and check they arrive intact and in order.
// Prints OK and exits 0, or prints the reason and exits 1.
'use strict';

const fs = require('fs');
const crypto = require('crypto');
const mqtt = require('mqtt');

const [url, caFile] = process.argv.slice(2);
if (!url) {
  console.error('usage: node mqttjs_roundtrip.js URL [CAFILE]');
  process.exit(2);
}

function fail(reason) {
  console.log(`FAIL: ${reason}`);
  process.exit(1);
}

setTimeout(() => fail('timeout after 15 s'), 15000).unref();
process.on('uncaughtException', (e) => fail(`uncaught: ${e && e.message}`));

function connect(protocolVersion, role) {
  const opts = {
    protocolVersion,
    clientId: `mqttjs-${role}-v${protocolVersion}-${crypto.randomBytes(4).toString('hex')}`,
    clean: true,
    reconnectPeriod: 0,
    connectTimeout: 5000,
  };
  if (caFile) opts.ca = fs.readFileSync(caFile);
  return new Promise((resolve, reject) => {
    const client = mqtt.connect(url, opts);
    let lastError = null;
    client.once('connect', () => resolve(client));
    client.on('error', (e) => { lastError = e; });
    client.on('close', () => {
      const why = lastError ? lastError.message : 'connection closed';
      const err = new Error(`${role} v${protocolVersion}: ${why}`);
      if (!client.disconnecting) fail(err.message); // not our own end()
      reject(err);
    });
  });
}

async function pass(protocolVersion) {
  const topic = `interop/mqttjs/${protocolVersion}/${crypto.randomBytes(6).toString('hex')}`;
  const messages = [
    { qos: 0, payload: Buffer.from('hello qos0') },
    { qos: 1, payload: Buffer.from('hello qos1') },
    { qos: 1, payload: crypto.randomBytes(100 * 1024) },
    { qos: 2, payload: Buffer.from('hello qos2') },
    { qos: 2, payload: crypto.randomBytes(100 * 1024 + 7) },
  ];

  const sub = await connect(protocolVersion, 'sub');
  const received = [];
  const done = new Promise((resolve, reject) => {
    sub.on('message', (t, payload, packet) => {
      const i = received.length;
      received.push(payload);
      const want = messages[i];
      if (t !== topic) return reject(new Error(`message ${i}: topic ${t}`));
      if (!want) return reject(new Error(`unexpected extra message ${i}`));
      if (!payload.equals(want.payload)) {
        return reject(new Error(`message ${i}: payload mismatch (${payload.length} bytes, want ${want.payload.length})`));
      }
      if (packet.qos !== Math.min(want.qos, 1)) {
        return reject(new Error(`message ${i}: qos ${packet.qos}, want ${Math.min(want.qos, 1)}`));
      }
      if (received.length === messages.length) resolve();
    });
  });
  const granted = await sub.subscribeAsync(topic, { qos: 1 });
  if (granted[0].qos !== 1) throw new Error(`v${protocolVersion}: granted qos ${granted[0].qos}`);

  const pub = await connect(protocolVersion, 'pub');
  for (const m of messages) await pub.publishAsync(topic, m.payload, { qos: m.qos });
  await done;
  await pub.endAsync();
  await sub.endAsync();
}

(async () => {
  try {
    await pass(5);
    await pass(4);
  } catch (e) {
    fail(e && e.message ? e.message : String(e));
  }
  console.log('OK');
  process.exit(0);
})();
