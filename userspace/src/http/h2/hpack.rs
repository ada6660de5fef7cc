//! HPACK (RFC 7541): the request-side decoder and the response-side
//! encoder. Huffman code tables come from the `httlib-huffman` crate; the
//! rest is here because the crates on offer do not bound their work (see
//! the `h2` module doc, "HPACK").
//!
//! Owns: the static table, the decoder's dynamic table, integer and string
//! primitives. Must not: judge header fields (see `request.rs`) or
//! allocate more than the input justifies: decoded fields are handed to a
//! callback as borrowed slices, so a block of one-octet references to a
//! 4 KiB dynamic entry costs a counter bump each, never a copy, and table
//! names are shared (`Arc`) so an indexed-name literal never copies a name.
//! Fed by: complete header blocks. Emits: `(name, value)` slices; encoded
//! header blocks.
//!
//! The encoder never uses the dynamic table: it starts its first block with
//! a size update to 0 (RFC 7541 §6.3), so no later SETTINGS_HEADER_TABLE_SIZE
//! from the client can leave it over the limit (RFC 7541 §4.2), and it uses
//! static-table indices plus literals without indexing, Huffman-coded when
//! shorter (RFC 7541 §5.2).

use std::collections::VecDeque;
use std::sync::Arc;

use thiserror::Error;

/// Why a header block could not be decoded: always a connection error of
/// type COMPRESSION_ERROR (RFC 9113 §4.3).
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum HpackError {
    /// Integer longer than 5 continuation octets or over `u32` (RFC 7541 §5.1).
    #[error("hpack integer overflow")]
    PeerIntegerOverflow,
    /// Block ends inside a representation.
    #[error("hpack block truncated")]
    PeerTruncated,
    /// Index 0 or past the end of the tables (RFC 7541 §2.3.3).
    #[error("hpack index out of range")]
    PeerBadIndex,
    /// Invalid Huffman code, EOS, or bad padding (RFC 7541 §5.2).
    #[error("hpack invalid huffman string")]
    PeerHuffman,
    /// Size update above SETTINGS_HEADER_TABLE_SIZE, or after the first
    /// field of a block (RFC 7541 §4.2, §6.3).
    #[error("hpack invalid dynamic table size update")]
    PeerTableSizeUpdate,
}

/// RFC 7541 Appendix A.
pub(crate) const STATIC_TABLE: [(&str, &str); 61] = [
    (":authority", ""),
    (":method", "GET"),
    (":method", "POST"),
    (":path", "/"),
    (":path", "/index.html"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "200"),
    (":status", "204"),
    (":status", "206"),
    (":status", "304"),
    (":status", "400"),
    (":status", "404"),
    (":status", "500"),
    ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"),
    ("accept-language", ""),
    ("accept-ranges", ""),
    ("accept", ""),
    ("access-control-allow-origin", ""),
    ("age", ""),
    ("allow", ""),
    ("authorization", ""),
    ("cache-control", ""),
    ("content-disposition", ""),
    ("content-encoding", ""),
    ("content-language", ""),
    ("content-length", ""),
    ("content-location", ""),
    ("content-range", ""),
    ("content-type", ""),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("expect", ""),
    ("expires", ""),
    ("from", ""),
    ("host", ""),
    ("if-match", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("if-range", ""),
    ("if-unmodified-since", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("max-forwards", ""),
    ("proxy-authenticate", ""),
    ("proxy-authorization", ""),
    ("range", ""),
    ("referer", ""),
    ("refresh", ""),
    ("retry-after", ""),
    ("server", ""),
    ("set-cookie", ""),
    ("strict-transport-security", ""),
    ("transfer-encoding", ""),
    ("user-agent", ""),
    ("vary", ""),
    ("via", ""),
    ("www-authenticate", ""),
];

/// Each static table name and the position of its first entry, sorted by
/// name: the encoder finds a name in ~6 comparisons instead of a walk
/// over all 61 entries (a test checks it against `STATIC_TABLE`).
const STATIC_BY_NAME: [(&str, usize); 52] = [
    (":authority", 0),
    (":method", 1),
    (":path", 3),
    (":scheme", 5),
    (":status", 7),
    ("accept", 18),
    ("accept-charset", 14),
    ("accept-encoding", 15),
    ("accept-language", 16),
    ("accept-ranges", 17),
    ("access-control-allow-origin", 19),
    ("age", 20),
    ("allow", 21),
    ("authorization", 22),
    ("cache-control", 23),
    ("content-disposition", 24),
    ("content-encoding", 25),
    ("content-language", 26),
    ("content-length", 27),
    ("content-location", 28),
    ("content-range", 29),
    ("content-type", 30),
    ("cookie", 31),
    ("date", 32),
    ("etag", 33),
    ("expect", 34),
    ("expires", 35),
    ("from", 36),
    ("host", 37),
    ("if-match", 38),
    ("if-modified-since", 39),
    ("if-none-match", 40),
    ("if-range", 41),
    ("if-unmodified-since", 42),
    ("last-modified", 43),
    ("link", 44),
    ("location", 45),
    ("max-forwards", 46),
    ("proxy-authenticate", 47),
    ("proxy-authorization", 48),
    ("range", 49),
    ("referer", 50),
    ("refresh", 51),
    ("retry-after", 52),
    ("server", 53),
    ("set-cookie", 54),
    ("strict-transport-security", 55),
    ("transfer-encoding", 56),
    ("user-agent", 57),
    ("vary", 58),
    ("via", 59),
    ("www-authenticate", 60),
];

/// (index of the first entry named `name`, index of an entry with both
/// `name` and `value`), 1-based, 0 for none.
fn static_index(name: &[u8], value: &[u8]) -> (usize, usize) {
    let Ok(at) = STATIC_BY_NAME.binary_search_by(|(n, _)| n.as_bytes().cmp(name)) else {
        return (0, 0);
    };
    let first = STATIC_BY_NAME.get(at).map_or(0, |(_, i)| *i);
    let full = STATIC_TABLE
        .iter()
        .enumerate()
        .skip(first)
        .take_while(|(_, (n, _))| n.as_bytes() == name)
        .find(|(_, (_, v))| v.as_bytes() == value)
        .map_or(0, |(i, _)| i + 1);
    (first + 1, full)
}

/// Per-entry overhead in the table size (RFC 7541 §4.1).
const ENTRY_OVERHEAD: usize = 32;

/// A byte string decoded from a block: borrowed from the input, from the
/// table, or freshly Huffman-decoded.
enum Str<'a> {
    Borrowed(&'a [u8]),
    Owned(Vec<u8>),
    Shared(Arc<[u8]>),
}

impl Str<'_> {
    fn as_slice(&self) -> &[u8] {
        match self {
            Str::Borrowed(b) => b,
            Str::Owned(v) => v,
            Str::Shared(a) => a,
        }
    }
    fn into_shared(self) -> Arc<[u8]> {
        match self {
            Str::Borrowed(b) => Arc::from(b),
            Str::Owned(v) => Arc::from(v),
            Str::Shared(a) => a,
        }
    }
}

/// A dynamic table entry: (name, value), shared so that indexed-name
/// literals never copy.
type Entry = (Arc<[u8]>, Arc<[u8]>);

/// The HPACK decoder of one connection (RFC 7541 §3).
#[derive(Debug)]
pub struct Decoder {
    /// Newest entry first (RFC 7541 §2.3.3).
    table: VecDeque<Entry>,
    /// Sum of entry sizes (RFC 7541 §4.1).
    size: usize,
    /// Current maximum, set by size updates.
    max_size: usize,
    /// SETTINGS_HEADER_TABLE_SIZE we advertised: the ceiling for updates.
    limit: usize,
}

impl Decoder {
    /// A decoder whose table may grow to `limit` octets (the
    /// SETTINGS_HEADER_TABLE_SIZE the server advertises).
    pub fn new(limit: usize) -> Self {
        Decoder {
            table: VecDeque::new(),
            size: 0,
            max_size: limit,
            limit,
        }
    }

    /// Current dynamic table size in octets.
    pub fn table_size(&self) -> usize {
        self.size
    }

    /// Decode one complete header block, calling `field(name, value)` for
    /// each field in order. On error the table may have been partly
    /// updated; the caller must treat it as a connection error.
    pub fn decode(
        &mut self,
        block: &[u8],
        mut field: impl FnMut(&[u8], &[u8]),
    ) -> Result<(), HpackError> {
        let mut pos = 0;
        let mut seen_field = false;
        while let Some(&first) = block.get(pos) {
            let rest = block.get(pos..).unwrap_or_default();
            if first & 0x80 != 0 {
                // Indexed field (RFC 7541 §6.1).
                let (index, n) = decode_int(rest, 7)?;
                pos += n;
                seen_field = true;
                let (name, value) = self.get(index)?;
                field(name, value);
            } else if first & 0xe0 == 0x20 {
                // Dynamic table size update (RFC 7541 §6.3): only before
                // the first field (RFC 7541 §4.2).
                let (size, n) = decode_int(rest, 5)?;
                pos += n;
                if seen_field || size > self.limit {
                    return Err(HpackError::PeerTableSizeUpdate);
                }
                self.max_size = size;
                self.evict(0);
            } else {
                // Literal (RFC 7541 §6.2): with incremental indexing
                // (01xxxxxx, 6-bit prefix), without indexing (0000xxxx) or
                // never indexed (0001xxxx), both 4-bit prefix.
                let indexing = first & 0x40 != 0;
                let prefix = if indexing { 6 } else { 4 };
                let (index, n) = decode_int(rest, prefix)?;
                pos += n;
                seen_field = true;
                let name = if index == 0 {
                    let (s, n) = decode_str(block.get(pos..).unwrap_or_default())?;
                    pos += n;
                    s
                } else {
                    self.name(index)?
                };
                let (value, n) = decode_str(block.get(pos..).unwrap_or_default())?;
                pos += n;
                field(name.as_slice(), value.as_slice());
                if indexing {
                    self.insert(name.into_shared(), value.into_shared());
                }
            }
        }
        Ok(())
    }

    fn get(&self, index: usize) -> Result<(&[u8], &[u8]), HpackError> {
        if index == 0 {
            return Err(HpackError::PeerBadIndex);
        }
        if let Some((n, v)) = STATIC_TABLE.get(index - 1) {
            return Ok((n.as_bytes(), v.as_bytes()));
        }
        self.table
            .get(index - 1 - STATIC_TABLE.len())
            .map(|(n, v)| (&n[..], &v[..]))
            .ok_or(HpackError::PeerBadIndex)
    }

    fn name(&self, index: usize) -> Result<Str<'static>, HpackError> {
        if index == 0 {
            return Err(HpackError::PeerBadIndex);
        }
        if let Some((n, _)) = STATIC_TABLE.get(index - 1) {
            return Ok(Str::Borrowed(n.as_bytes()));
        }
        self.table
            .get(index - 1 - STATIC_TABLE.len())
            .map(|(n, _)| Str::Shared(Arc::clone(n)))
            .ok_or(HpackError::PeerBadIndex)
    }

    /// Add an entry, evicting as needed; an entry larger than the table
    /// empties it and is not added (RFC 7541 §4.4).
    fn insert(&mut self, name: Arc<[u8]>, value: Arc<[u8]>) {
        let entry = name.len() + value.len() + ENTRY_OVERHEAD;
        if entry > self.max_size {
            self.table.clear();
            self.size = 0;
            return;
        }
        self.evict(entry);
        self.size += entry;
        self.table.push_front((name, value));
    }

    /// Evict oldest entries until `room` more octets fit (RFC 7541 §4.3).
    fn evict(&mut self, room: usize) {
        while self.size + room > self.max_size {
            match self.table.pop_back() {
                Some((n, v)) => self.size -= n.len() + v.len() + ENTRY_OVERHEAD,
                None => {
                    self.size = 0;
                    break;
                }
            }
        }
    }
}

/// Decode a prefixed integer (RFC 7541 §5.1); returns (value, octets).
/// Values above `u32::MAX` are refused.
fn decode_int(buf: &[u8], prefix: u8) -> Result<(usize, usize), HpackError> {
    let mask = u8::MAX >> (8 - prefix);
    let first = *buf.first().ok_or(HpackError::PeerTruncated)? & mask;
    if first < mask {
        return Ok((usize::from(first), 1));
    }
    let mut value = u64::from(mask);
    let mut shift = 0u32;
    for (i, &b) in buf.iter().enumerate().skip(1) {
        value += u64::from(b & 0x7f) << shift;
        if value > u64::from(u32::MAX) {
            return Err(HpackError::PeerIntegerOverflow);
        }
        if b & 0x80 == 0 {
            let v = usize::try_from(value).map_err(|_| HpackError::PeerIntegerOverflow)?;
            return Ok((v, i + 1));
        }
        shift += 7;
        if shift > 28 {
            return Err(HpackError::PeerIntegerOverflow);
        }
    }
    Err(HpackError::PeerTruncated)
}

/// Decode a string literal (RFC 7541 §5.2); returns (string, octets).
fn decode_str(buf: &[u8]) -> Result<(Str<'_>, usize), HpackError> {
    let huffman = buf.first().ok_or(HpackError::PeerTruncated)? & 0x80 != 0;
    let (len, n) = decode_int(buf, 7)?;
    let end = n.checked_add(len).ok_or(HpackError::PeerTruncated)?;
    let raw = buf.get(n..end).ok_or(HpackError::PeerTruncated)?;
    if !huffman {
        return Ok((Str::Borrowed(raw), end));
    }
    let mut out = Vec::with_capacity(raw.len() * 8 / 5 + 1);
    httlib_huffman::decode(raw, &mut out, httlib_huffman::DecoderSpeed::FiveBits)
        .map_err(|_| HpackError::PeerHuffman)?;
    check_huffman_padding(raw, &out)?;
    Ok((Str::Owned(out), end))
}

/// RFC 7541 §5.2: the padding after the last code is shorter than 8 bits
/// and is the most significant bits of EOS (all ones); anything else is a
/// decoding error. `httlib-huffman` lets zero bits through as padding, so
/// the padding is measured here: the octets decoded determine how many
/// bits their codes took, and what is left of `raw` is the padding.
fn check_huffman_padding(raw: &[u8], decoded: &[u8]) -> Result<(), HpackError> {
    let table = &httlib_huffman::encoder::table::ENCODE_TABLE;
    let code_bits: usize = decoded
        .iter()
        .map(|&b| {
            table
                .get(usize::from(b))
                .map_or(0, |&(len, _)| usize::from(len))
        })
        .sum();
    let pad = (raw.len() * 8)
        .checked_sub(code_bits)
        .ok_or(HpackError::PeerHuffman)?;
    if pad >= 8 {
        return Err(HpackError::PeerHuffman);
    }
    let mask = (1u16 << pad) as u8 - 1;
    match raw.last() {
        _ if pad == 0 => Ok(()),
        Some(&last) if last & mask == mask => Ok(()),
        _ => Err(HpackError::PeerHuffman),
    }
}

/// Append a prefixed integer (RFC 7541 §5.1); `high` holds the
/// representation bits above the prefix.
pub(crate) fn encode_int(out: &mut Vec<u8>, value: usize, prefix: u8, high: u8) {
    let mask = u8::MAX >> (8 - prefix);
    if value < usize::from(mask) {
        out.push(high | value as u8);
        return;
    }
    out.push(high | mask);
    let mut rest = value - usize::from(mask);
    while rest >= 0x80 {
        out.push((rest & 0x7f) as u8 | 0x80);
        rest >>= 7;
    }
    out.push(rest as u8);
}

/// Append a string literal, Huffman-coded when that is shorter.
#[cfg(test)]
pub(crate) fn encode_str(out: &mut Vec<u8>, s: &[u8]) {
    encode_str_with(out, s, &mut Vec::new());
}

/// [`encode_str`] with the Huffman code built in `scratch` (kept by the
/// caller: no allocation per string).
fn encode_str_with(out: &mut Vec<u8>, s: &[u8], scratch: &mut Vec<u8>) {
    scratch.clear();
    if httlib_huffman::encode(s, scratch).is_ok() && scratch.len() < s.len() {
        encode_int(out, scratch.len(), 7, 0x80);
        out.extend_from_slice(scratch);
    } else {
        encode_int(out, s.len(), 7, 0);
        out.extend_from_slice(s);
    }
}

/// Scratch space kept between blocks: above this it is given back, so a
/// connection that once sent a large header does not keep the memory.
const SCRATCH_KEPT: usize = 4096;

/// The HPACK encoder of one connection: static table + literals without
/// indexing, dynamic table pinned to size 0.
#[derive(Debug, Default)]
pub struct Encoder {
    /// The size update to 0 has been sent.
    announced: bool,
    /// A field name lowercased (when it had upper case).
    name: Vec<u8>,
    /// A Huffman-coded string before it is known to be shorter.
    huff: Vec<u8>,
}

impl Encoder {
    pub fn new() -> Self {
        Encoder::default()
    }

    /// Append the block for `fields` (names lowercased on the way).
    pub fn encode<'a>(
        &mut self,
        fields: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
        out: &mut Vec<u8>,
    ) {
        self.begin(out);
        for (name, value) in fields {
            self.field(name, value, out);
        }
        self.end();
    }

    /// Start a block: the first one opens with the table size update.
    pub fn begin(&mut self, out: &mut Vec<u8>) {
        if !self.announced {
            encode_int(out, 0, 5, 0x20);
            self.announced = true;
        }
    }

    /// Append one field; the name is lowercased on the way (HTTP/2 field
    /// names are lowercase, RFC 9113 §8.2.1).
    pub fn field(&mut self, name: &[u8], value: &[u8], out: &mut Vec<u8>) {
        let mut lower = std::mem::take(&mut self.name);
        let name = if name.iter().any(u8::is_ascii_uppercase) {
            lower.clear();
            lower.extend(name.iter().map(u8::to_ascii_lowercase));
            &lower[..]
        } else {
            name
        };
        let (name_index, full) = static_index(name, value);
        if full != 0 {
            encode_int(out, full, 7, 0x80);
        } else {
            // Literal without indexing (RFC 7541 §6.2.2); never-indexed for
            // credentials (RFC 7541 §7.1.3).
            let high = if matches!(name, b"set-cookie" | b"authorization") {
                0x10
            } else {
                0
            };
            encode_int(out, name_index, 4, high);
            if name_index == 0 {
                encode_str_with(out, name, &mut self.huff);
            }
            encode_str_with(out, value, &mut self.huff);
        }
        self.name = lower;
    }

    /// The block is done: oversized scratch space is given back.
    pub fn end(&mut self) {
        for v in [&mut self.name, &mut self.huff] {
            if v.capacity() > SCRATCH_KEPT {
                *v = Vec::new();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_index_agrees_with_a_walk_over_the_table() {
        let walk = |name: &[u8], value: &[u8]| {
            let first = STATIC_TABLE.iter().position(|(n, _)| n.as_bytes() == name);
            let full = STATIC_TABLE
                .iter()
                .position(|(n, v)| n.as_bytes() == name && v.as_bytes() == value);
            (first.map_or(0, |i| i + 1), full.map_or(0, |i| i + 1))
        };
        let mut names: Vec<&str> = STATIC_TABLE.iter().map(|(n, _)| *n).collect();
        names.extend(["", "x-unknown", "accept-", "zzz", ":status2"]);
        let mut values: Vec<&str> = STATIC_TABLE.iter().map(|(_, v)| *v).collect();
        values.push("other");
        for n in &names {
            for v in &values {
                assert_eq!(
                    static_index(n.as_bytes(), v.as_bytes()),
                    walk(n.as_bytes(), v.as_bytes()),
                    "{n}: {v}"
                );
            }
        }
        assert!(STATIC_BY_NAME.windows(2).all(|w| w[0].0 < w[1].0));
    }

    type Fields = Vec<(Vec<u8>, Vec<u8>)>;

    fn decode_all(d: &mut Decoder, block: &[u8]) -> Result<Fields, HpackError> {
        let mut v = Vec::new();
        d.decode(block, |n, val| v.push((n.to_vec(), val.to_vec())))?;
        Ok(v)
    }

    fn pair(n: &str, v: &str) -> (Vec<u8>, Vec<u8>) {
        (n.as_bytes().to_vec(), v.as_bytes().to_vec())
    }

    #[test]
    fn rfc7541_c3_requests_without_huffman() {
        let mut d = Decoder::new(4096);
        let b1 = b"\x82\x86\x84\x41\x0fwww.example.com";
        assert_eq!(
            decode_all(&mut d, b1).unwrap(),
            vec![
                pair(":method", "GET"),
                pair(":scheme", "http"),
                pair(":path", "/"),
                pair(":authority", "www.example.com")
            ]
        );
        assert_eq!(d.table_size(), 57);
        let b2 = b"\x82\x86\x84\xbe\x58\x08no-cache";
        let got = decode_all(&mut d, b2).unwrap();
        assert_eq!(got[3], pair(":authority", "www.example.com"));
        assert_eq!(got[4], pair("cache-control", "no-cache"));
        assert_eq!(d.table_size(), 110);
    }

    #[test]
    fn rfc7541_c4_request_with_huffman() {
        let mut d = Decoder::new(4096);
        let b1 = [
            0x82, 0x86, 0x84, 0x41, 0x8c, 0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab,
            0x90, 0xf4, 0xff,
        ];
        let got = decode_all(&mut d, &b1).unwrap();
        assert_eq!(got[3], pair(":authority", "www.example.com"));
    }

    #[test]
    fn integers_round_trip_and_overflow_is_refused() {
        for v in [0usize, 1, 30, 31, 127, 128, 1337, 65535, u32::MAX as usize] {
            let mut out = Vec::new();
            encode_int(&mut out, v, 5, 0);
            assert_eq!(decode_int(&out, 5), Ok((v, out.len())), "{v}");
        }
        assert_eq!(
            decode_int(&[0x1f, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01], 5),
            Err(HpackError::PeerIntegerOverflow)
        );
        assert_eq!(decode_int(&[0x1f, 0xff], 5), Err(HpackError::PeerTruncated));
    }

    #[test]
    fn size_update_rules() {
        let mut d = Decoder::new(4096);
        // Over the advertised limit.
        assert_eq!(
            decode_all(&mut d, &[0x3f, 0xe2, 0x1f]),
            Err(HpackError::PeerTableSizeUpdate)
        );
        // After a field.
        let mut d = Decoder::new(4096);
        assert_eq!(
            decode_all(&mut d, &[0x82, 0x20]),
            Err(HpackError::PeerTableSizeUpdate)
        );
        // At the start: evicts.
        let mut d = Decoder::new(4096);
        decode_all(&mut d, b"\x41\x03abc").unwrap();
        assert!(d.table_size() > 0);
        decode_all(&mut d, &[0x20, 0x82]).unwrap();
        assert_eq!(d.table_size(), 0);
        assert_eq!(decode_all(&mut d, &[0xbe]), Err(HpackError::PeerBadIndex));
    }

    #[test]
    fn bad_index_and_truncation() {
        let mut d = Decoder::new(4096);
        assert_eq!(decode_all(&mut d, &[0x80]), Err(HpackError::PeerBadIndex));
        assert_eq!(decode_all(&mut d, &[0xbe]), Err(HpackError::PeerBadIndex));
        assert_eq!(
            decode_all(&mut d, &[0x00, 0x05, b'a']),
            Err(HpackError::PeerTruncated)
        );
        // Huffman string that is all padding past 7 bits.
        assert_eq!(
            decode_all(&mut d, &[0x00, 0x81, 0xff, 0x00]),
            Err(HpackError::PeerHuffman)
        );
    }

    /// A literal without indexing, new name "a", Huffman value `value`.
    fn huffman_value(value: &[u8]) -> Vec<u8> {
        let mut b = vec![0x00, 0x01, b'a'];
        encode_int(&mut b, value.len(), 7, 0x80);
        b.extend_from_slice(value);
        b
    }

    #[test]
    fn huffman_padding_must_be_short_and_eos_prefix() {
        // "a" = 00011 (5 bits): valid with 3 one-bits of padding.
        let mut d = Decoder::new(4096);
        assert_eq!(
            decode_all(&mut d, &huffman_value(&[0b0001_1111])).unwrap(),
            vec![pair("a", "a")]
        );
        // Padding of zeros is not the EOS prefix (RFC 7541 §5.2).
        assert_eq!(
            decode_all(&mut d, &huffman_value(&[0b0001_1000])),
            Err(HpackError::PeerHuffman)
        );
        // Mixed padding.
        assert_eq!(
            decode_all(&mut d, &huffman_value(&[0b0001_1101])),
            Err(HpackError::PeerHuffman)
        );
        // "a" then 11 bits of ones: padding longer than 7 bits.
        assert_eq!(
            decode_all(&mut d, &huffman_value(&[0b0001_1111, 0xff])),
            Err(HpackError::PeerHuffman)
        );
        // A whole octet of ones alone.
        assert_eq!(
            decode_all(&mut d, &huffman_value(&[0xff])),
            Err(HpackError::PeerHuffman)
        );
        // Whatever our encoder pads (0 to 7 ones) decodes.
        for s in [
            &b"www.example.com"[..],
            b"no-cache",
            b"custom-value",
            b"\xff\x00~",
        ] {
            let mut enc = Vec::new();
            httlib_huffman::encode(s, &mut enc).unwrap();
            let got = decode_all(&mut d, &huffman_value(&enc)).unwrap();
            assert_eq!(got[0].1, s.to_vec());
        }
    }

    #[test]
    fn oversized_entry_empties_table() {
        let mut d = Decoder::new(64);
        decode_all(&mut d, b"\x41\x03abc").unwrap();
        let mut block = vec![0x40, 0x02, b'n', b'm', 0x7f, 0x00];
        block.extend(std::iter::repeat_n(b'x', 127));
        decode_all(&mut d, &block).unwrap();
        assert_eq!(d.table_size(), 0);
    }

    #[test]
    fn encoder_output_decodes() {
        let mut e = Encoder::new();
        let mut out = Vec::new();
        let fields: Vec<(&[u8], &[u8])> = vec![
            (b":status", b"200"),
            (b"content-type", b"text/html; charset=utf-8"),
            (b"x-custom", b"some value"),
            (b"set-cookie", b"a=b"),
        ];
        e.encode(fields.iter().copied(), &mut out);
        let mut d = Decoder::new(4096);
        let got = decode_all(&mut d, &out).unwrap();
        let want: Vec<_> = fields
            .iter()
            .map(|(n, v)| (n.to_vec(), v.to_vec()))
            .collect();
        assert_eq!(got, want);
        assert_eq!(out[0], 0x20, "first block announces table size 0");
        let mut out2 = Vec::new();
        e.encode(fields.iter().copied(), &mut out2);
        assert_ne!(out2[0], 0x20);
        assert_eq!(decode_all(&mut d, &out2).unwrap(), want);
    }

    #[test]
    fn names_are_lowercased_and_static_entries_still_found() {
        let mut e = Encoder::new();
        let mut out = Vec::new();
        e.encode(
            [
                (&b"Content-Type"[..], &b"text/plain"[..]),
                (b"X-Request-ID", b"Ab"),
                (b":status", b"200"),
            ],
            &mut out,
        );
        // `:status: 200` is static entry 8: one octet after the size update.
        assert!(out.ends_with(&[0x80 | 8]), "{out:?}");
        let got = decode_all(&mut Decoder::new(4096), &out).unwrap();
        assert_eq!(
            got,
            vec![
                (b"content-type".to_vec(), b"text/plain".to_vec()),
                (b"x-request-id".to_vec(), b"Ab".to_vec()),
                (b":status".to_vec(), b"200".to_vec()),
            ]
        );
    }
}
