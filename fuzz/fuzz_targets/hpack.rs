//! Arbitrary bytes through the HPACK decoder alone (RFC 7541), as a
//! sequence of header blocks sharing one dynamic table.
//!
//! Input: the first byte picks the table limit (SETTINGS_HEADER_TABLE_SIZE:
//! 0, 64, 4096 or 65536); then blocks, each a length octet and that many
//! octets (the last one takes what is left).
//!
//! Checked: no panic; the dynamic table never exceeds the limit; a block
//! of n octets yields at most n fields, each no longer than a table entry
//! or a Huffman expansion of the block can make it (so no field comes from
//! nowhere); a block that decodes re-encodes (the response encoder) to a
//! block a fresh decoder reads as the same fields, names lowercased.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portier::http::h2::hpack::{Decoder, Encoder};

const LIMITS: [usize; 4] = [0, 64, 4096, 65536];

fuzz_target!(|data: &[u8]| {
    let Some((&knob, mut rest)) = data.split_first() else {
        return;
    };
    let limit = LIMITS[usize::from(knob & 3)];
    let mut decoder = Decoder::new(limit);
    while let Some((&len, tail)) = rest.split_first() {
        let n = usize::from(len).min(tail.len());
        let (block, next) = tail.split_at(n);
        rest = next;
        let mut fields: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let result = decoder.decode(block, |name, value| {
            fields.push((name.to_vec(), value.to_vec()));
        });
        assert!(decoder.table_size() <= limit, "table over its limit");
        assert!(fields.len() <= block.len(), "more fields than octets");
        for (name, value) in &fields {
            // A field is a table entry (name + value <= entry size - 32 <=
            // limit), a static one (< 64 octets), or literal strings, which
            // Huffman (codes of at least 5 bits) expands by at most 8/5.
            assert!(
                name.len() + value.len() <= limit + 64 + 2 * block.len(),
                "field larger than its source"
            );
        }
        if result.is_ok() {
            round_trip(&fields);
        }
    }
});

fn round_trip(fields: &[(Vec<u8>, Vec<u8>)]) {
    let mut out = Vec::new();
    Encoder::new().encode(
        fields.iter().map(|(n, v)| (n.as_slice(), v.as_slice())),
        &mut out,
    );
    let mut again = Vec::new();
    let result = Decoder::new(4096).decode(&out, |name, value| {
        again.push((name.to_vec(), value.to_vec()));
    });
    assert_eq!(result, Ok(()), "the encoder's block does not decode");
    // The encoder lowercases names (HTTP/2 field names are lowercase, RFC
    // 9113 §8.2.1); everything else comes back as it was.
    let expected: Vec<(Vec<u8>, Vec<u8>)> = fields
        .iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
        .collect();
    assert_eq!(again, expected, "round trip changed the fields");
}
