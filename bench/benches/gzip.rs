//! CPU cost of on-the-fly gzip per MB of text (the compression Portier
//! applies to listed content types), at the default level 5 and at 1.
//! `cargo bench -p portier-bench --bench gzip`.

use criterion::{Criterion, Throughput, black_box, criterion_group, criterion_main};
use portier::compress::Gzip;

fn html_mb() -> Vec<u8> {
    let row = b"<tr><td class=\"name\">Portier</td><td class=\"qty\">42</td><td>edge load balancer for PaaS front nodes</td></tr>\n";
    row.iter().copied().cycle().take(1 << 20).collect()
}

fn bench(c: &mut Criterion) {
    let data = html_mb();
    let mut g = c.benchmark_group("gzip_1MiB_html");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.sample_size(20);
    for level in [1u32, 5] {
        g.bench_function(format!("level_{level}"), |b| {
            b.iter(|| {
                let mut gz = Gzip::new(level);
                let mut out = Vec::with_capacity(64 * 1024);
                for chunk in data.chunks(16 * 1024) {
                    gz.push(black_box(chunk), false, &mut out);
                }
                gz.finish(&mut out);
                out.len()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
