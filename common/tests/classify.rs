//! The classifier against the shared fixture table, and the verdicts that
//! need state or a different policy.

use portier_common::classify::{IPPROTO_TCP, TCP_ACK, TCP_SYN, classify};
use portier_common::cursor::SliceCursor;
use portier_common::fixtures::{
    self, PEER_V4, PEER_V6, standard_policy, syn_v4, table, tcp, udp, v4_frame, v6_frame,
};
use portier_common::maps::CFG_DROP_CLOSED_PORTS;
use portier_common::{Reason, classify::IPPROTO_UDP};

fn verdict(policy: &mut portier_common::host::HostPolicy, frame: &[u8]) -> Reason {
    classify(&SliceCursor(frame), policy)
}

#[test]
fn every_fixture_gets_its_verdict() {
    let mut policy = standard_policy();
    let mut wrong = Vec::new();
    for f in table() {
        let got = verdict(&mut policy, &f.frame);
        if got != f.expect {
            wrong.push(format!(
                "{}: expected {:?}, got {:?}",
                f.name, f.expect, got
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn table_and_state_tests_cover_every_reason() {
    let mut covered: Vec<Reason> = table().iter().map(|f| f.expect).collect();
    // Covered by the tests below.
    covered.extend([
        Reason::DropSynFlood,
        Reason::PassOpenPolicy,
        Reason::PassInternal,
    ]);
    for r in Reason::ALL {
        assert!(covered.contains(&r), "no test frame reaches {r:?}");
    }
}

#[test]
fn syn_flood_from_one_source_is_limited_others_pass() {
    let mut policy = standard_policy();
    let flooder = [10, 200, 0, 77];
    let mut dropped = 0;
    for i in 0..200u16 {
        match verdict(&mut policy, &syn_v4(flooder, 1024 + i, 80)) {
            Reason::DropSynFlood => dropped += 1,
            Reason::PassServicePort => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(dropped, 200 - fixtures::SYN_BURST as usize);
    // Another source is untouched, and the flooder's established traffic passes.
    assert_eq!(
        verdict(&mut policy, &syn_v4(PEER_V4, 40000, 80)),
        Reason::PassServicePort
    );
    let ack = v4_frame(flooder, IPPROTO_TCP, &tcp(1024, 80, TCP_ACK, 5));
    assert_eq!(verdict(&mut policy, &ack), Reason::PassServicePort);
    // One interval later, one more SYN conforms.
    policy.now_ns += 10_000_000;
    assert_eq!(
        verdict(&mut policy, &syn_v4(flooder, 5000, 80)),
        Reason::PassServicePort
    );
    assert_eq!(
        verdict(&mut policy, &syn_v4(flooder, 5001, 80)),
        Reason::DropSynFlood
    );
}

#[test]
fn ipv6_sources_share_a_bucket_per_64() {
    let mut policy = standard_policy();
    let mut dropped = 0;
    for i in 0..100u8 {
        let mut src = PEER_V6;
        src[15] = 100 + i; // rotating the interface id does not escape the limiter
        let f = v6_frame(src, IPPROTO_TCP, &tcp(40000, 443, TCP_SYN, 5));
        if verdict(&mut policy, &f) == Reason::DropSynFlood {
            dropped += 1;
        }
    }
    assert_eq!(dropped, 50);
}

#[test]
fn open_policy_counts_instead_of_dropping() {
    let mut policy = standard_policy();
    if let Some(c) = policy.config.as_mut() {
        c.flags &= !CFG_DROP_CLOSED_PORTS;
    }
    let syn = v4_frame(PEER_V4, IPPROTO_TCP, &tcp(40001, 9999, TCP_SYN, 5));
    assert_eq!(verdict(&mut policy, &syn), Reason::PassOpenPolicy);
    let dgram = v4_frame(PEER_V4, IPPROTO_UDP, &udp(40001, 9999, &[1]));
    assert_eq!(verdict(&mut policy, &dgram), Reason::PassOpenPolicy);
    let redirect = v4_frame(PEER_V4, 1, &fixtures::icmp(5, 0));
    assert_eq!(verdict(&mut policy, &redirect), Reason::PassIcmp);
}

#[test]
fn missing_config_fails_open_and_is_counted() {
    let mut policy = standard_policy();
    policy.config = None;
    let syn = v4_frame(PEER_V4, IPPROTO_TCP, &tcp(40001, 9999, TCP_SYN, 5));
    assert_eq!(verdict(&mut policy, &syn), Reason::PassInternal);
    // Malformed frames are still dropped: their checks need no map.
    let bad = v4_frame(PEER_V4, IPPROTO_TCP, &tcp(40001, 80, 0, 5));
    assert_eq!(verdict(&mut policy, &bad), Reason::DropTcpNullFlags);
    let runt = &syn[..20];
    assert_eq!(verdict(&mut policy, runt), Reason::DropTruncated);
}

#[test]
fn limiter_off_when_rate_is_zero() {
    let mut policy = standard_policy();
    if let Some(c) = policy.config.as_mut() {
        c.syn_interval_ns = 0;
    }
    for i in 0..500u16 {
        assert_eq!(
            verdict(&mut policy, &syn_v4([10, 200, 0, 77], i + 1, 80)),
            Reason::PassServicePort
        );
    }
    assert!(policy.syn.is_empty());
}

#[test]
fn every_prefix_of_every_fixture_classifies_without_panic() {
    // Truncating a valid frame anywhere must give a verdict, never a panic.
    let mut policy = standard_policy();
    for f in table() {
        for cut in 0..f.frame.len() {
            let _ = verdict(&mut policy, &f.frame[..cut]);
        }
    }
}

/// The standard policy, counting its source-list lookups (trie lookups in
/// the kernel, the expensive part of a verdict).
struct CountingLists {
    inner: portier_common::host::HostPolicy,
    lookups: std::cell::Cell<usize>,
}

impl portier_common::classify::Policy for CountingLists {
    fn config(&self) -> Option<portier_common::maps::XdpConfig> {
        self.inner.config()
    }
    fn port_flags(&self, port: u16) -> Option<u8> {
        self.inner.port_flags(port)
    }
    fn is_bogon_v4(&self, src: [u8; 4]) -> bool {
        self.lookups.set(self.lookups.get() + 1);
        self.inner.is_bogon_v4(src)
    }
    fn is_bogon_v6(&self, src: [u8; 16]) -> bool {
        self.lookups.set(self.lookups.get() + 1);
        self.inner.is_bogon_v6(src)
    }
    fn is_blocked_v4(&self, src: [u8; 4]) -> bool {
        self.lookups.set(self.lookups.get() + 1);
        self.inner.is_blocked_v4(src)
    }
    fn is_blocked_v6(&self, src: [u8; 16]) -> bool {
        self.lookups.set(self.lookups.get() + 1);
        self.inner.is_blocked_v6(src)
    }
    fn admit_syn(&mut self, source: [u8; 16], config: &portier_common::maps::XdpConfig) -> bool {
        self.inner.admit_syn(source, config)
    }
}

#[test]
fn a_malformed_tcp_header_is_dropped_before_any_list_lookup() {
    use portier_common::classify::{TCP_FIN, TCP_PSH, TCP_URG};
    let mut p = CountingLists {
        inner: standard_policy(),
        lookups: std::cell::Cell::new(0),
    };
    let xmas = v4_frame(
        PEER_V4,
        IPPROTO_TCP,
        &tcp(40001, 80, TCP_FIN | TCP_PSH | TCP_URG, 5),
    );
    assert_eq!(classify(&SliceCursor(&xmas), &mut p), Reason::DropTcpXmas);
    assert_eq!(p.lookups.get(), 0, "a flood frame paid for the lists");
    let xmas6 = v6_frame(
        PEER_V6,
        IPPROTO_TCP,
        &tcp(40001, 80, TCP_FIN | TCP_PSH | TCP_URG, 5),
    );
    assert_eq!(classify(&SliceCursor(&xmas6), &mut p), Reason::DropTcpXmas);
    assert_eq!(p.lookups.get(), 0, "an IPv6 flood frame paid for the lists");
    // A sane header still meets both lists (the counter counts).
    let syn = syn_v4(PEER_V4, 40002, 80);
    assert_eq!(
        classify(&SliceCursor(&syn), &mut p),
        Reason::PassServicePort
    );
    assert_eq!(p.lookups.get(), 2);
}
