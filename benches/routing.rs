//! One whole in-process routing step of the broker core: a QoS 0 PUBLISH (64 B) in from one
//! client -> matched -> encoded into the write buffer of each of 1 or 100 subscribers -> taken
//! out as the shell would write it. No sockets, one shard. Run: `cargo bench --bench routing`.

use std::time::Duration;

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use ringmq::core::Limits;
use ringmq::harness::{connect_packet, Cluster};
use ringmq::protocol::{Packet, ProtocolVersion::V3_1_1, Publish, QoS};

const TOPIC: &str = "telemetry/site-3/device-17/temperature";

fn routing_step(c: &mut Criterion) {
    let mut g = c.benchmark_group("route_publish_qos0_64B");
    g.sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for subscribers in [1usize, 100] {
        let mut cluster = Cluster::new(1, Limits::default());
        let publisher = cluster.connect(connect_packet("pub", V3_1_1, true));
        for i in 0..subscribers {
            let sub = cluster.connect(connect_packet(&format!("sub-{i}"), V3_1_1, true));
            cluster.subscribe(sub, "telemetry/+/+/temperature", QoS::AtMostOnce);
        }
        cluster.flush(0); // CONNACKs and SUBACKs
        let publish = Publish::new(TOPIC, &[0x5a; 64]);
        // Sanity: every subscriber gets one delivery per publish.
        cluster.send(publisher, Packet::Publish(publish.clone()));
        let bytes = cluster.flush(0);
        assert!(
            bytes >= subscribers * 64,
            "{bytes} bytes for {subscribers} subscribers"
        );

        g.throughput(Throughput::Elements(subscribers as u64));
        g.bench_function(format!("{subscribers}_subscribers"), |bench| {
            bench.iter(|| {
                cluster.send(publisher, Packet::Publish(publish.clone()));
                black_box(cluster.flush(0))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, routing_step);
criterion_main!(benches);
