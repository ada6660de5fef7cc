//! Arbitrary bytes through the PROXY protocol header parser (v1 and v2).
//!
//! Checked: no panic; a complete header used no more than the input and
//! parses the same from exactly its own bytes (nothing after it matters);
//! every strict prefix of it asks for more bytes than it has, never fails;
//! `Incomplete` always asks for more than it was given and no more than the
//! longest header; a v1 header is at most 107 bytes, a v2 one at least 16.
//!
//! The first byte steers the input towards a signature (0: as is, 1: v2
//! signature, 2: `PROXY `) so both grammars are reached at once.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portier::proxy_protocol::{MAX_HEADER, Parsed, V1_MAX, V2_SIGNATURE, Version, parse};

fuzz_target!(|data: &[u8]| {
    let Some((&knob, rest)) = data.split_first() else {
        return;
    };
    let mut input = match knob % 3 {
        1 => V2_SIGNATURE.to_vec(),
        2 => b"PROXY ".to_vec(),
        _ => Vec::new(),
    };
    input.extend_from_slice(rest);
    check(&input);
});

fn check(input: &[u8]) {
    match parse(input) {
        Ok(Parsed::Complete { header, used }) => {
            assert!(used <= input.len());
            match header.version {
                Version::V1 => assert!(used <= V1_MAX),
                Version::V2 => assert!(used >= 16),
            }
            assert_eq!(
                parse(&input[..used]),
                Ok(Parsed::Complete { header, used }),
                "not prefix-stable"
            );
            // Every strict prefix (a sample of them for long headers).
            let step = (used / 256).max(1);
            for n in (0..used).step_by(step) {
                match parse(&input[..n]) {
                    Ok(Parsed::Incomplete { want }) => assert!(want > n),
                    other => panic!("prefix of {n}/{used} bytes: {other:?}"),
                }
            }
        }
        Ok(Parsed::Incomplete { want }) => {
            assert!(want > input.len() && want <= MAX_HEADER);
        }
        Err(_) => {}
    }
}
