//! Arbitrary bytes through the HTTP/1.1 codec: the request and response head
//! parsers (both `HEAD` flags) and, when the first byte says so, the request
//! body decoder (chunked or Content-Length) fed in arbitrary pieces.
//!
//! Checked: no panic; `consumed` never exceeds the input; payload ranges lie
//! inside the consumed bytes; a complete head parses the same from exactly
//! its own bytes; the body decoder's outcome (payload, done, error) does not
//! depend on how the input was split.
//!
//! First byte: bit 0 = decode a chunked body, bit 1 = decode a
//! Content-Length body (length from the next byte); bits 2..7 seed the split
//! points.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portier::http::h1::{BodyDecoder, BodyKind, parse_request_head, parse_response_head};
use portier::http::{HttpError, Limits};

fuzz_target!(|data: &[u8]| {
    let Some((&knobs, input)) = data.split_first() else {
        return;
    };
    let limits = Limits::default();
    heads(input, &limits);
    if knobs & 1 != 0 {
        body(BodyKind::Chunked, input, knobs >> 2, &limits);
    }
    if knobs & 2 != 0 {
        if let Some((&len, rest)) = input.split_first() {
            body(BodyKind::Length(u64::from(len)), rest, knobs >> 2, &limits);
        }
    }
});

fn heads(input: &[u8], limits: &Limits) {
    if let Ok(Some((head, n))) = parse_request_head(input, limits) {
        assert!(n <= input.len());
        let again = parse_request_head(&input[..n], limits);
        assert_eq!(again, Ok(Some((head, n))), "request head not prefix-stable");
    }
    for is_head in [false, true] {
        if let Ok(Some((head, n))) = parse_response_head(input, limits, is_head) {
            assert!(n <= input.len());
            let again = parse_response_head(&input[..n], limits, is_head);
            assert_eq!(
                again,
                Ok(Some((head, n))),
                "response head not prefix-stable"
            );
        }
    }
}

/// What decoding a body amounted to.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    payload: Vec<u8>,
    /// Input bytes consumed when the body completed.
    used: Option<usize>,
    error: Option<HttpError>,
}

fn body(kind: BodyKind, input: &[u8], seed: u8, limits: &Limits) {
    let whole = decode(kind, input, &[input.len()], limits);
    // Split sizes from a tiny LCG: 1..=16 bytes, repeated over the input.
    let mut state = u32::from(seed) | 1;
    let splits: Vec<usize> = (0..32)
        .map(|_| {
            state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            ((state >> 16) % 16) as usize + 1
        })
        .collect();
    let split = decode(kind, input, &splits, limits);
    assert_eq!(whole, split, "body decoding depends on the split points");
}

/// Feed `input` to a request body decoder the way a reactor would: append a
/// piece (sizes cycling through `pieces`), decode what is pending, drop what
/// was consumed.
fn decode(kind: BodyKind, input: &[u8], pieces: &[usize], limits: &Limits) -> Outcome {
    let mut decoder = BodyDecoder::for_request(kind, limits);
    let mut pending: Vec<u8> = Vec::new();
    let mut fed = 0usize;
    let mut used = 0usize;
    let mut payload = Vec::new();
    let mut sizes = pieces.iter().cycle();
    loop {
        let step = match decoder.decode(&pending) {
            Ok(step) => step,
            Err(e) => {
                // Errors stick.
                assert_eq!(decoder.decode(b"x"), Err(e));
                return Outcome {
                    payload,
                    used: None,
                    error: Some(e),
                };
            }
        };
        assert!(step.consumed <= pending.len(), "consumed past the input");
        if let Some(r) = &step.data {
            assert!(
                r.start < r.end && r.end <= step.consumed,
                "bad payload range"
            );
            payload.extend_from_slice(&pending[r.clone()]);
        }
        pending.drain(..step.consumed);
        used += step.consumed;
        // Chunked: `payload_len` counts a chunk as soon as its size line is
        // read (to refuse an oversized chunk early), so it may run ahead.
        assert!(decoder.payload_len() >= payload.len() as u64);
        if step.done {
            assert!(decoder.is_done());
            assert_eq!(decoder.payload_len(), payload.len() as u64);
            if let BodyKind::Length(n) = kind {
                assert_eq!(payload.len() as u64, n);
            }
            return Outcome {
                payload,
                used: Some(used),
                error: None,
            };
        }
        if step.consumed == 0 {
            if fed == input.len() {
                let error = decoder.handle_eof().err();
                assert!(error.is_some(), "EOF accepted mid-body");
                return Outcome {
                    payload,
                    used: None,
                    error,
                };
            }
            let n = (*sizes.next().unwrap_or(&1)).min(input.len() - fed);
            pending.extend_from_slice(&input[fed..fed + n]);
            fed += n;
        }
    }
}
