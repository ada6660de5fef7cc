//! Arbitrary bytes through the HTTP/2 server connection (after a valid
//! client preface) and through the HPACK decoder.
//!
//! Checked: no panic; `consumed` never exceeds the input; the events and
//! the output do not depend on how the input was split; a failed
//! connection stays failed and discards further input; the proxy side
//! (answering every request, releasing every body chunk) never panics.
//!
//! First byte: seeds the split points; bit 0 also switches on the proxy
//! side.
#![no_main]

use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use portier::http::Limits;
use portier::http::h2::frame::PREFACE;
use portier::http::h2::hpack::Decoder;
use portier::http::h2::{Event, H2Settings, ServerConn};

fuzz_target!(|data: &[u8]| {
    let Some((&knobs, input)) = data.split_first() else {
        return;
    };
    let mut stream = PREFACE.to_vec();
    stream.extend_from_slice(input);
    let now = Instant::now();
    let whole = run(&stream, &[stream.len()], now, false);
    let mut state = u32::from(knobs) | 1;
    let splits: Vec<usize> = (0..32)
        .map(|_| {
            state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            ((state >> 16) % 64) as usize + 1
        })
        .collect();
    let split = run(&stream, &splits, now, false);
    assert_eq!(whole, split, "outcome depends on the split points");
    if knobs & 1 != 0 {
        run(&stream, &splits, now, true);
    }
    let mut decoder = Decoder::new(4096);
    let _ = decoder.decode(input, |_, _| {});
    assert!(decoder.table_size() <= 4096);
});

/// Feed `input` in pieces cycling through `pieces`; return every event and
/// the output (polled once at the end unless `proxy`).
fn run(input: &[u8], pieces: &[usize], now: Instant, proxy: bool) -> (Vec<Event>, Vec<u8>) {
    let mut conn = ServerConn::new(H2Settings::default(), Limits::default());
    let mut pending: Vec<u8> = Vec::new();
    let mut events = Vec::new();
    let mut out = Vec::new();
    let mut sizes = pieces.iter().cycle();
    let mut fed = 0;
    while fed < input.len() {
        let n = (*sizes.next().unwrap_or(&1)).min(input.len() - fed);
        pending.extend_from_slice(&input[fed..fed + n]);
        fed += n;
        let used = conn.handle_input(&pending, now);
        assert!(used <= pending.len(), "consumed past the input");
        pending.drain(..used);
        while let Some(ev) = conn.poll_event() {
            if proxy {
                answer(&mut conn, &ev);
            }
            events.push(ev);
        }
        if proxy {
            conn.poll_output(&mut out);
        }
    }
    if conn.error().is_some() {
        assert!(conn.is_closed());
        assert_eq!(conn.handle_input(b"x", now), 1);
    }
    conn.poll_output(&mut out);
    (events, out)
}

fn answer(conn: &mut ServerConn, ev: &Event) {
    match ev {
        Event::Request { stream, .. } => {
            let _ = conn.send_headers(*stream, 200, &[("content-type", b"text/plain")], false);
            let _ = conn.send_data(*stream, b"hello", true);
        }
        Event::Data { stream, data, .. } => conn.release_capacity(*stream, data.len()),
        Event::Rejected { stream, error } => {
            let answer = portier::http::answer::Answer::error(*error, "fuzz");
            let _ = answer.send_h2(conn, *stream, "x-portier-error", false);
        }
        _ => {}
    }
}
