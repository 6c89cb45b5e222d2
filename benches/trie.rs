//! Topic matching against 100,000 filters: the local subscription trie (`Trie<Vec<u32>>`, a
//! subscriber list per filter) and the replicated route table (`Trie<u64>`, a shard mask per
//! filter). Filters look like telemetry: `site/S/dev/D/METRIC`, 10% with `+` at a random
//! level, 2% ending in `#`. Run: `cargo bench --bench trie`.

use std::time::Duration;

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use ringmq::core::trie::Trie;

const FILTERS: u64 = 100_000;
const TOPICS: usize = 4096;
const METRICS: [&str; 8] = ["temp", "hum", "volt", "amp", "rssi", "lat", "lon", "state"];

/// Deterministic xorshift: the same filters on every run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn filter(rng: &mut Rng, i: u64) -> String {
    let mut levels = vec![
        "site".to_string(),
        (i % 100).to_string(),
        "dev".to_string(),
        (i / 100 % 1000).to_string(),
        METRICS[(i % 8) as usize].to_string(),
    ];
    match rng.below(100) {
        0..=9 => levels[1 + 2 * rng.below(2) as usize] = "+".into(),
        10..=11 => {
            levels.truncate(1 + rng.below(4) as usize);
            levels.push("#".into());
        }
        _ => {}
    }
    levels.join("/")
}

fn topics(rng: &mut Rng) -> Vec<String> {
    (0..TOPICS)
        .map(|_| {
            format!(
                "site/{}/dev/{}/{}",
                rng.below(100),
                rng.below(1000),
                METRICS[rng.below(8) as usize]
            )
        })
        .collect()
}

fn build<T>(make: impl Fn(u64) -> T, update: impl Fn(&mut T, u64)) -> Trie<T> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut trie = Trie::default();
    for i in 0..FILTERS {
        update(trie.get_or_insert_with(&filter(&mut rng, i), || make(i)), i);
    }
    trie
}

fn bench_match<T>(
    c: &mut Criterion,
    group: &str,
    trie: &Trie<T>,
    mut weigh: impl FnMut(&T) -> usize,
) {
    let names = topics(&mut Rng(42));
    let mut g = c.benchmark_group(group);
    g.sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    g.throughput(Throughput::Elements(1));
    let mut i = 0;
    g.bench_function("match_1_topic", |b| {
        b.iter(|| {
            i = (i + 1) % names.len();
            let mut n = 0;
            trie.for_each_match(black_box(&names[i]), |v| n += weigh(v));
            n
        })
    });
    g.finish();
}

fn subscription_trie(c: &mut Criterion) {
    let trie = build(|_| Vec::new(), |v: &mut Vec<u32>, i| v.push(i as u32));
    bench_match(c, "trie_100k_filters", &trie, |v| v.len());
}

fn route_table(c: &mut Criterion) {
    // 2 shards: a filter's mask has the bit of each shard with a subscriber.
    let trie = build(|_| 0u64, |m: &mut u64, i| *m |= 1 << (i % 2));
    let mut mask = 0u64;
    bench_match(c, "route_table_100k_filters", &trie, |m| {
        mask |= *m;
        1
    });
    black_box(mask);
}

criterion_group!(benches, subscription_trie, route_table);
criterion_main!(benches);
