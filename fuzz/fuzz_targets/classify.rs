//! Arbitrary bytes as a frame through the classifier the XDP program runs.
//! The first byte picks the policy variant and the clock step, so the
//! limiter, the open policy and a failed config lookup are explored too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portier_common::classify::classify;
use portier_common::cursor::SliceCursor;
use portier_common::fixtures::standard_policy;
use portier_common::maps::CFG_DROP_CLOSED_PORTS;

fuzz_target!(|data: &[u8]| {
    let Some((&knobs, frame)) = data.split_first() else {
        return;
    };
    let mut policy = standard_policy();
    if knobs & 1 != 0 {
        if let Some(c) = policy.config.as_mut() {
            c.flags &= !CFG_DROP_CLOSED_PORTS;
        }
    }
    if knobs & 2 != 0 {
        policy.config = None;
    }
    // Classify the frame a few times with the clock moving, so the limiter
    // state is exercised, and check the verdict is a function of the input
    // for everything but the limiter.
    let first = classify(&SliceCursor(frame), &mut policy);
    for i in 0..4u64 {
        policy.now_ns = policy
            .now_ns
            .wrapping_add(u64::from(knobs >> 2) * 1_000_000 * i);
        let again = classify(&SliceCursor(frame), &mut policy);
        assert!(
            again == first || again == portier_common::Reason::DropSynFlood,
            "verdict changed from {first:?} to {again:?}"
        );
    }
});
