//! The real XDP program, embedded in the real `portier` binary, attached in
//! native mode to a veth inside network namespaces this test creates; crafted
//! frames and real TCP connections from the peer namespace; verdicts read
//! from the pinned counters. Needs root: run by `cargo xtask test`.
//!
//! Addresses exist only inside the test's namespaces (10.200.0.0/24).

mod support;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use portier::config::Config;
use portier::mgmt::bpf::{MapSet, Stats};
use portier_common::Reason;
use portier_common::classify::classify;
use portier_common::cursor::SliceCursor;
use portier_common::fixtures::{self, NODE_MAC, PEER_MAC, table};
use support::netns::{BpfFs, PacketSocket, Portier, VethPair, in_netns, sh_output};

const NODE: &str = "10.200.0.1";
const CLIENT: &str = "10.200.0.2";

fn config_toml(iface: &str, pin_dir: &Path) -> String {
    // Must compile to `fixtures::standard_policy()` (checked below and by a
    // unit test in config::xdp).
    format!(
        r#"
[xdp]
interfaces = ["{iface}"]
mode = "native"
pin_dir = "{pin}"
service_ports = [80, 443]
allow_tcp_ports = [22]
allow_udp_ports = [5353]
drop_closed_ports = true
ephemeral_ports = [32768, 60999]
syn_rate = {rate}
syn_burst = {burst}
blocklist = ["192.168.77.0/24", "fd77::/16"]
"#,
        pin = pin_dir.join("portier").display(),
        rate = fixtures::SYN_RATE,
        burst = fixtures::SYN_BURST,
    )
}

/// Wait until the counters have seen `n` more packets than `before`.
fn wait_for_packets(maps: &MapSet, before: &Stats, n: u64) -> Stats {
    let want = before.total(false) + before.total(true) + n;
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let now = maps.stats().expect("read counters");
        if now.total(false) + now.total(true) >= want || Instant::now() > deadline {
            return now;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Reasons whose counters moved, with (packets, bytes) deltas.
fn moved(before: &Stats, after: &Stats) -> Vec<(Reason, u64, u64)> {
    Reason::ALL
        .iter()
        .filter_map(|&r| {
            let (p0, b0) = before.get(r);
            let (p1, b1) = after.get(r);
            (p1 != p0 || b1 != b0).then_some((r, p1 - p0, b1 - b0))
        })
        .collect()
}

/// The frame as a packet socket shows it: the kernel moves an 802.1Q tag
/// into metadata (PACKET_AUXDATA), out of the bytes.
fn untagged(frame: &[u8]) -> Vec<u8> {
    if frame.len() >= 18 && frame[12..14] == [0x81, 0x00] {
        [&frame[..12], &frame[16..]].concat()
    } else {
        frame.to_vec()
    }
}

fn connects(ns: &str, to: &str, port: u16) -> bool {
    let addr: SocketAddr = format!("{to}:{port}").parse().expect("addr");
    in_netns(ns, move || {
        TcpStream::connect_timeout(&addr, Duration::from_millis(700)).is_ok()
    })
}

#[test]
#[ignore = "needs root: attaches XDP in network namespaces (cargo xtask test runs it)"]
fn xdp_program_in_the_kernel_matches_the_host_classifier() {
    let net = VethPair::new("x", NODE_MAC, PEER_MAC);
    net.addr_a(&format!("{NODE}/24"));
    net.addr_b(&format!("{CLIENT}/24"));
    // Replies to the crafted frames' sources go to B's MAC and die there.
    for ip in [CLIENT, "10.200.0.9", "10.200.0.77"] {
        net.neigh(&net.ns_a, &net.if_a, ip, PEER_MAC);
    }
    net.neigh(&net.ns_b, &net.if_b, NODE, NODE_MAC);

    let bpffs = BpfFs::new("xdp");
    let config_path = bpffs.root.join("portier.toml");
    let toml = config_toml(&net.if_a, &bpffs.dir);
    std::fs::write(&config_path, &toml).expect("write config");
    let config = Config::parse(&config_path, &toml).expect("valid test config");
    let pin_dir = config.xdp.pin_dir.clone();

    let mut portier = Portier::start(Some(&net.ns_a), &config_path);
    let prog_id = net
        .xdp_prog_id_a()
        .expect("an XDP program is attached to the veth");
    let maps = MapSet::open_pinned(&pin_dir).expect("pinned maps");

    // Sockets: a sender on B, a tap on A that sees what got past XDP.
    let if_a = net.if_a.clone();
    let tap = in_netns(&net.ns_a, move || PacketSocket::open(&if_a));
    let if_b = net.if_b.clone();
    let wire = in_netns(&net.ns_b, move || PacketSocket::open(&if_b));
    tap.drain();

    // 1. Every fixture: exactly its reason moves by one packet and its
    //    length in bytes; dropped frames never reach the tap; the host
    //    classifier, fed the same config, agrees.
    let mut host = config.xdp.policy();
    let mut failures = Vec::new();
    for f in table() {
        let host_reason = classify(&SliceCursor(&f.frame), &mut host);
        if f.frame.len() < 14 {
            // A veth cannot carry a frame shorter than an Ethernet header
            // (the kernel refuses to send it): host check only.
            if host_reason != f.expect {
                failures.push(format!("{}: host {:?}", f.name, host_reason));
            }
            continue;
        }
        let before = maps.stats().expect("counters");
        tap.drain();
        wire.send(&f.frame);
        let after = wait_for_packets(&maps, &before, 1);
        let delta = moved(&before, &after);
        let kernel_reason = match delta.as_slice() {
            [(r, 1, bytes)] if *bytes == f.frame.len() as u64 => Some(*r),
            _ => None,
        };
        let reached_stack = tap.received_within(
            Duration::from_millis(if f.expect.is_drop() { 150 } else { 1000 }),
            |got| got == f.frame.as_slice() || got == untagged(&f.frame).as_slice(),
        );
        if kernel_reason != Some(f.expect)
            || host_reason != f.expect
            || reached_stack == f.expect.is_drop()
        {
            failures.push(format!(
                "{}: expected {:?}; kernel counters moved {:?}; host {:?}; reached the stack: {}",
                f.name, f.expect, delta, host_reason, reached_stack
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "kernel/host disagreement:\n{}",
        failures.join("\n")
    );

    // 2. Real TCP through the program: port 80 passes, a closed port does not
    //    (even with a listener behind it).
    let listeners = in_netns(&net.ns_a, || {
        let l80 = TcpListener::bind((NODE, 80)).expect("bind :80");
        let l9999 = TcpListener::bind((NODE, 9999)).expect("bind :9999");
        (l80, l9999)
    });
    assert!(
        connects(&net.ns_b, NODE, 80),
        "TCP to the service port must pass"
    );
    let before = maps.stats().expect("counters");
    assert!(
        !connects(&net.ns_b, NODE, 9999),
        "TCP to a closed port must be dropped"
    );
    let after = maps.stats().expect("counters");
    assert!(after.get(Reason::DropClosedPort).0 > before.get(Reason::DropClosedPort).0);

    // 3. Block the client's prefix live with the operator command; its
    //    connections die; unblock; they pass. The program is never detached.
    let bin = env!("CARGO_BIN_EXE_portier");
    let pin = pin_dir.to_str().expect("utf-8");
    sh_output(&[bin, "xdp", "block", "10.200.0.0/29", "--pin-dir", pin]);
    let listed = sh_output(&[bin, "xdp", "blocklist", "--json", "--pin-dir", pin]);
    assert!(listed.contains("10.200.0.0/29"), "{listed}");
    let before = maps.stats().expect("counters");
    assert!(
        !connects(&net.ns_b, NODE, 80),
        "a blocked source must not connect"
    );
    let after = maps.stats().expect("counters");
    assert!(after.get(Reason::DropBlocked).0 > before.get(Reason::DropBlocked).0);
    sh_output(&[bin, "xdp", "unblock", "10.200.0.0/29", "--pin-dir", pin]);
    assert!(
        connects(&net.ns_b, NODE, 80),
        "an unblocked source connects again"
    );
    assert_eq!(
        net.xdp_prog_id_a(),
        Some(prog_id),
        "the program stayed attached"
    );

    // 3b. The same through a config reload (SIGHUP): the blocklist in the
    //     file is pushed to the maps, still without detaching.
    let reload = |portier: &mut Portier, text: &str| {
        std::fs::write(&config_path, text).expect("write config");
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(portier.child.id() as i32, libc::SIGHUP) };
        portier.wait_for_line("configuration reloaded", Duration::from_secs(10));
    };
    let blocked_toml = toml.replace(
        "blocklist = [\"192.168.77.0/24\", \"fd77::/16\"]",
        "blocklist = [\"192.168.77.0/24\", \"fd77::/16\", \"10.200.0.0/29\"]",
    );
    assert_ne!(blocked_toml, toml, "the test edits the blocklist line");
    reload(&mut portier, &blocked_toml);
    assert!(
        !connects(&net.ns_b, NODE, 80),
        "blocked by the reloaded config"
    );
    reload(&mut portier, &toml);
    assert!(
        connects(&net.ns_b, NODE, 80),
        "unblocked by the next reload"
    );
    assert_eq!(
        net.xdp_prog_id_a(),
        Some(prog_id),
        "reloads never detach the program"
    );

    // 4. SYN flood from one source: the limiter drops past the burst while
    //    another source still connects.
    let flooder = [10, 200, 0, 77];
    let before = maps.stats().expect("counters");
    let syns = 400u16;
    for i in 0..syns {
        wire.send(&fixtures::syn_v4(flooder, 10_000 + i, 80));
    }
    let after = wait_for_packets(&maps, &before, syns as u64);
    let dropped = after.get(Reason::DropSynFlood).0 - before.get(Reason::DropSynFlood).0;
    let passed = after.get(Reason::PassServicePort).0 - before.get(Reason::PassServicePort).0;
    assert!(
        dropped >= (syns as u64) / 2 && passed >= fixtures::SYN_BURST as u64,
        "flood: {dropped} dropped, {passed} passed of {syns}"
    );
    assert!(
        connects(&net.ns_b, NODE, 80),
        "another source is not limited"
    );

    // 5. The operator's view: `portier xdp stats --json` agrees with the maps.
    let json = sh_output(&[bin, "xdp", "stats", "--json", "--pin-dir", pin]);
    let v: serde_json::Value = serde_json::from_str(&json).expect("stats JSON");
    let flood = v["reasons"]
        .as_array()
        .and_then(|a| a.iter().find(|r| r["reason"] == "drop_syn_flood"))
        .and_then(|r| r["packets"].as_u64())
        .expect("drop_syn_flood in stats");
    assert!(flood >= dropped);
    drop(listeners);

    // 6. Clean exit detaches the program and removes the pins.
    let status = portier.stop().expect("portier exited");
    assert!(status.success(), "portier exit status {status}");
    assert_eq!(
        net.xdp_prog_id_a(),
        None,
        "no stale program left on the interface"
    );
    assert!(!pin_dir.join("PORTIER_COUNTERS").exists(), "pins removed");
}
