//! Host lookup with a region's worth of domains (100k exact + 10k wildcard):
//! hash probes, not a scan. `cargo bench -p portier-bench --bench routing`.

use std::path::Path;

use criterion::{Criterion, black_box, criterion_group, criterion_main};
use portier::config::Config;
use portier::router::{Decision, decide};
use portier::snapshot::Snapshot;

fn region(apps: usize) -> Snapshot {
    let mut text = String::with_capacity(apps * 120);
    for i in 0..apps {
        text.push_str(&format!(
            "[[apps]]\nname = \"app{i}\"\ndomains = [\"www.app{i}.example.com\", \"app{i}.example.com\"{}]\nbackends = [\"10.0.{}.{}:8080\"]\n",
            if i % 10 == 0 { format!(", \"*.app{i}.example.net\"") } else { String::new() },
            (i / 250) % 250,
            i % 250 + 1
        ));
    }
    match Config::parse(Path::new("bench.toml"), &text) {
        Ok(c) => Snapshot::build(&c),
        Err(e) => panic!("bench config: {e}"),
    }
}

/// Requests outside `/.well-known/acme-challenge/` never read the table.
fn no_challenges() -> Option<std::sync::Arc<portier::challenge::HttpChallenges>> {
    None
}

fn bench(c: &mut Criterion) {
    let snap = region(50_000); // 100k exact names, 5k wildcards
    let mut g = c.benchmark_group("route_100k_domains");
    g.bench_function("exact_hit", |b| {
        b.iter(|| {
            matches!(
                decide(
                    &snap,
                    no_challenges,
                    Some(black_box("www.app31337.example.com")),
                    "/",
                    true
                ),
                Decision::Proxy(_)
            )
        })
    });
    g.bench_function("wildcard_hit", |b| {
        b.iter(|| {
            matches!(
                decide(
                    &snap,
                    no_challenges,
                    Some(black_box("shop.app31330.example.net")),
                    "/",
                    true
                ),
                Decision::Proxy(_)
            )
        })
    });
    g.bench_function("miss", |b| {
        b.iter(|| {
            matches!(
                decide(
                    &snap,
                    no_challenges,
                    Some(black_box("nobody.example.org")),
                    "/",
                    true
                ),
                Decision::NotFound
            )
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
