//! One whole in-process routing step of the broker core: a QoS 0 PUBLISH (64 B) in from one
//! client -> matched -> encoded into the write buffer of each of 1 or 100 subscribers -> taken
//! out as the shell would write it. No sockets, one shard. Run: `cargo bench --bench routing`.

use std::time::{Duration, Instant};

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use ringmq::core::{Broker, ConnId, Limits};
use ringmq::protocol::{
    Connect, Packet, ProtocolVersion, Publish, QoS, Subscribe, SubscribeFilter, SubscriptionOptions,
};

const TOPIC: &str = "telemetry/site-3/device-17/temperature";

fn connect(b: &mut Broker, client_id: &str, now: Instant) -> ConnId {
    let id = b.open(now);
    let connect = Connect {
        version: ProtocolVersion::V3_1_1,
        clean_start: true,
        keep_alive: 0,
        client_id: client_id.into(),
        will: None,
        username: None,
        password: None,
        properties: Default::default(),
    };
    b.handle(id, Packet::Connect(Box::new(connect)), now);
    id
}

/// Writes out everything pending, as the shell does after a read batch; returns the bytes.
fn flush(b: &mut Broker, queue: &mut Vec<ConnId>, now: Instant) -> usize {
    b.drain_flush_queue(queue);
    let mut total = 0;
    for id in queue.drain(..) {
        if let Some(out) = b.take_output(id) {
            let n = out.bytes.len();
            black_box(&out.bytes);
            b.output_written(id, n, now);
            total += n;
        }
    }
    total
}

fn routing_step(c: &mut Criterion) {
    let mut g = c.benchmark_group("route_publish_qos0_64B");
    g.sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for subscribers in [1usize, 100] {
        let now = Instant::now();
        let mut b = Broker::new(0, 1, Limits::default(), now);
        let publisher = connect(&mut b, "pub", now);
        for i in 0..subscribers {
            let id = connect(&mut b, &format!("sub-{i}"), now);
            let sub = Subscribe {
                packet_id: 1,
                filters: vec![SubscribeFilter {
                    filter: "telemetry/+/+/temperature".into(),
                    options: SubscriptionOptions {
                        qos: QoS::AtMostOnce,
                        ..Default::default()
                    },
                }],
                ..Default::default()
            };
            b.handle(id, Packet::Subscribe(sub), now);
        }
        let mut queue = Vec::new();
        flush(&mut b, &mut queue, now); // CONNACKs and SUBACKs
        let publish = Publish::new(TOPIC, &[0x5a; 64]);
        // Sanity: every subscriber gets one delivery per publish.
        b.handle(publisher, Packet::Publish(publish.clone()), now);
        let bytes = flush(&mut b, &mut queue, now);
        assert!(
            bytes >= subscribers * 64,
            "{bytes} bytes for {subscribers} subscribers"
        );

        g.throughput(Throughput::Elements(subscribers as u64));
        g.bench_function(format!("{subscribers}_subscribers"), |bench| {
            bench.iter(|| {
                b.handle(publisher, Packet::Publish(publish.clone()), now);
                flush(&mut b, &mut queue, now)
            })
        });
    }
    g.finish();
}

criterion_group!(benches, routing_step);
criterion_main!(benches);
