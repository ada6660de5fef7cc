//! The live-frame generator for real: two namespaces joined by a veth
//! (`load::xdp::Net`, deleted on drop even when the test fails), a bare
//! `XDP_DROP` program in native mode on the receiving end, the generator
//! (`BPF_PROG_TEST_RUN` with `BPF_F_TEST_XDP_LIVE_FRAMES`) on the other end
//! for about a second: frames must arrive. Needs root (namespaces, bpf);
//! without it the test says so and passes.

use portier_bench::load::bpf::{self, XdpAction};
use portier_bench::load::proc::TempDir;
use portier_bench::load::xdp::{self, Net};

#[test]
fn live_frames_reach_a_bare_xdp_drop_peer() {
    if !portier_bench::load::proc::is_root() {
        eprintln!("SKIPPED: needs root (network namespaces, bpf)");
        return;
    }
    let dir = TempDir::new("xdpgen").expect("temp dir");
    let net = Net::new(dir.path()).expect("namespaces and veth");
    let _link = bpf::attach_tiny(&net.ns_a, &net.if_a, XdpAction::Drop).expect("XDP_DROP attached");
    let before = xdp::rx_packets(&net.ns_a, &net.if_a).expect("rx counter");
    let frame = xdp::flood_frame();
    let sent = bpf::flood(&net.ns_b, &net.if_b, &frame, 1.0, &[0, 1]).expect("generator ran");
    let arrived = xdp::rx_packets(&net.ns_a, &net.if_a).expect("rx counter") - before;
    eprintln!(
        "sent {} frames in {:.2} s ({:.0}/s), {arrived} arrived ({:.0}/s)",
        sent.frames,
        sent.secs,
        sent.frames as f64 / sent.secs,
        arrived as f64 / sent.secs
    );
    assert!(sent.frames > 0, "the generator sent nothing");
    assert!(arrived > 0, "no frame reached the XDP_DROP peer");
    assert!(
        arrived <= sent.frames + 1000,
        "more arrived than sent: {arrived} > {}",
        sent.frames
    );
    assert!(
        sent.secs < 5.0,
        "the generator overran its second: {} s",
        sent.secs
    );
}
