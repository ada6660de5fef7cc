//! Host classifier cost per packet kind (the same code the XDP program runs).
//! `cargo xtask bench` (or `cargo bench -p portier-bench --bench classifier`).

use criterion::{Criterion, Throughput, black_box, criterion_group, criterion_main};
use portier_common::classify::{IPPROTO_TCP, IPPROTO_UDP, TCP_ACK, TCP_PSH, TCP_SYN, classify};
use portier_common::cursor::SliceCursor;
use portier_common::fixtures::{PEER_V4, PEER_V6, standard_policy, tcp, udp, v4_frame, v6_frame};

fn bench(c: &mut Criterion) {
    let mut off = standard_policy();
    if let Some(cfg) = off.config.as_mut() {
        cfg.syn_interval_ns = 0; // steady state: no limiter-map growth in the loop
    }
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "ipv4_tcp_ack_service",
            v4_frame(PEER_V4, IPPROTO_TCP, &tcp(40001, 443, TCP_ACK | TCP_PSH, 5)),
        ),
        (
            "ipv4_tcp_syn_service",
            v4_frame(PEER_V4, IPPROTO_TCP, &tcp(40001, 80, TCP_SYN, 5)),
        ),
        (
            "ipv4_tcp_xmas_drop",
            v4_frame(PEER_V4, IPPROTO_TCP, &tcp(40001, 80, 0x29, 5)),
        ),
        (
            "ipv4_udp_closed_drop",
            v4_frame(PEER_V4, IPPROTO_UDP, &udp(40001, 9999, &[0; 32])),
        ),
        (
            "ipv4_blocked_drop",
            v4_frame([192, 168, 77, 5], IPPROTO_TCP, &tcp(40001, 80, TCP_SYN, 5)),
        ),
        (
            "ipv6_tcp_ack_service",
            v6_frame(PEER_V6, IPPROTO_TCP, &tcp(40001, 443, TCP_ACK, 5)),
        ),
        ("truncated_drop", v4_frame(PEER_V4, IPPROTO_TCP, &[0; 8])),
    ];
    let mut group = c.benchmark_group("classify");
    group.throughput(Throughput::Elements(1));
    for (name, frame) in &cases {
        group.bench_function(*name, |b| {
            b.iter(|| classify(&SliceCursor(black_box(frame)), &mut off))
        });
    }
    let mut limited = standard_policy();
    group.bench_function("ipv4_tcp_syn_limiter", |b| {
        let frame = v4_frame(PEER_V4, IPPROTO_TCP, &tcp(40001, 80, TCP_SYN, 5));
        b.iter(|| {
            limited.now_ns += 1_000;
            classify(&SliceCursor(black_box(&frame)), &mut limited)
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
