//! Codec throughput: decode and encode of PUBLISH (64 B and 1 KiB, MQTT 3.1.1 and 5.0 with a few
//! properties) and decoding a buffer of 1,000 pipelined PUBLISH packets.
//! Run: `cargo bench --bench codec`.

use bytes::BytesMut;
use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
// The broker's allocator, so allocation costs are the ones the broker pays.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use ringmq::protocol::{
    encode, Decoder, Packet, Properties, PropertyValues, ProtocolVersion, Publish, QoS,
    MAX_PACKET_SIZE,
};

fn publish(payload_len: usize, version: ProtocolVersion) -> Publish {
    let properties = if version.is_v5() {
        PropertyValues {
            message_expiry_interval: Some(60),
            content_type: Some("application/json".into()),
            user_properties: vec![("device".into(), "sensor-17".into())],
            ..Default::default()
        }
        .into()
    } else {
        Properties::default()
    };
    let mut publish = Publish::new(
        "telemetry/site-3/device-17/temperature",
        &vec![0x5a; payload_len],
    )
    .with_qos(QoS::AtLeastOnce, 42);
    publish.properties = properties;
    publish
}

fn wire(p: &Publish, version: ProtocolVersion, copies: usize) -> BytesMut {
    let mut out = BytesMut::new();
    for _ in 0..copies {
        p.write(version, &mut out).unwrap();
    }
    out
}

fn cases() -> [(&'static str, usize, ProtocolVersion); 4] {
    [
        ("v311_64B", 64, ProtocolVersion::V3_1_1),
        ("v311_1KiB", 1024, ProtocolVersion::V3_1_1),
        ("v5_64B", 64, ProtocolVersion::V5),
        ("v5_1KiB", 1024, ProtocolVersion::V5),
    ]
}

fn decode_publish(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode_publish");
    for (name, len, version) in cases() {
        let bytes = wire(&publish(len, version), version, 1);
        let decoder = Decoder::new(version, MAX_PACKET_SIZE);
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_function(name, |b| {
            b.iter_batched_ref(
                || bytes.clone(),
                |buf| black_box(decoder.decode(buf).unwrap()),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

fn encode_publish(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode_publish");
    for (name, len, version) in cases() {
        let p = Packet::Publish(publish(len, version));
        let mut out = BytesMut::with_capacity(4096);
        group.throughput(Throughput::Bytes(
            wire(&publish(len, version), version, 1).len() as u64,
        ));
        group.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                encode(black_box(&p), version, &mut out).unwrap();
            })
        });
    }
    group.finish();
}

fn decode_pipelined(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode_1000_pipelined");
    for (name, len, version) in cases() {
        let bytes = wire(&publish(len, version), version, 1000);
        let decoder = Decoder::new(version, MAX_PACKET_SIZE);
        // Elements = packets; criterion reports packets/s (the bytes/s figure is elements x size).
        group.throughput(Throughput::Elements(1000));
        group.bench_function(name, |b| {
            b.iter_batched_ref(
                || bytes.clone(),
                |buf| {
                    let mut n = 0;
                    while let Some(p) = decoder.decode(buf).unwrap() {
                        black_box(p);
                        n += 1;
                    }
                    assert_eq!(n, 1000);
                },
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, decode_publish, encode_publish, decode_pipelined);
criterion_main!(benches);
