//! Unit tests of the HTTP/1.1 body decoder (`body.rs`): every framing fed
//! whole and split at every point, chunked strictness and smuggling shapes,
//! trailers, limits, and errors that stick.

use super::*;

/// Feed `input` in pieces of the given sizes (then the rest), following
/// the decode contract; returns (payload, bytes consumed in total).
fn run(
    dec: &mut BodyDecoder,
    input: &[u8],
    cuts: &[usize],
) -> Result<(Vec<u8>, usize, bool), HttpError> {
    let mut payload = Vec::new();
    let mut pos = 0usize; // consumed so far
    let mut avail_end = 0usize; // bytes "received" so far
    let mut cuts = cuts.iter();
    loop {
        let d = dec.decode(&input[pos..avail_end])?;
        if let Some(r) = &d.data {
            assert!(r.end <= d.consumed);
            payload.extend_from_slice(&input[pos + r.start..pos + r.end]);
        }
        pos += d.consumed;
        if d.done {
            return Ok((payload, pos, true));
        }
        if d.consumed == 0 {
            if avail_end == input.len() {
                return Ok((payload, pos, false));
            }
            avail_end = match cuts.next() {
                Some(c) => (avail_end + c).min(input.len()),
                None => input.len(),
            };
        }
    }
}

fn chunked(input: &[u8]) -> Result<(Vec<u8>, usize, bool), HttpError> {
    run(
        &mut BodyDecoder::for_request(BodyKind::Chunked, &Limits::default()),
        input,
        &[],
    )
}

fn chunked_err(input: &[u8]) -> HttpError {
    match chunked(input) {
        Err(e) => e,
        Ok(r) => panic!("{:?} decoded as {r:?}", input.escape_ascii()),
    }
}

const SAMPLES: &[(&[u8], &[u8])] = &[
    (b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", b"hello world"),
    (
        b"A;name=val;x=\"q s\"\r\n0123456789\r\n0;last\r\n\r\n",
        b"0123456789",
    ),
    (b"1\r\nx\r\n0\r\nTrailer-One: v\r\nT2:\r\n\r\n", b"x"),
    (b"000003\r\nabc\r\n00\r\n\r\n", b"abc"),
    (b"0\r\n\r\n", b""),
    (
        b"f \t;ext\r\n0123456789abcde\r\n0\r\n\r\n",
        b"0123456789abcde",
    ),
];

#[test]
fn decodes_chunked_samples() {
    for (enc, want) in SAMPLES {
        let (got, consumed, done) = chunked(enc).unwrap();
        assert!(done);
        assert_eq!(consumed, enc.len());
        assert_eq!(&got, want);
    }
}

#[test]
fn decodes_chunked_byte_at_a_time() {
    for (enc, want) in SAMPLES {
        let mut dec = BodyDecoder::for_request(BodyKind::Chunked, &Limits::default());
        let (got, consumed, done) = run(&mut dec, enc, &vec![1; enc.len()]).unwrap();
        assert!(done);
        assert_eq!(consumed, enc.len());
        assert_eq!(&got, want);
    }
}

#[test]
fn decodes_chunked_at_every_split_point() {
    for (enc, want) in SAMPLES {
        for a in 0..=enc.len() {
            for b in 0..=(enc.len() - a) {
                let mut dec = BodyDecoder::for_request(BodyKind::Chunked, &Limits::default());
                let (got, consumed, done) = run(&mut dec, enc, &[a, b]).unwrap();
                assert!(done, "split {a},{b}");
                assert_eq!(consumed, enc.len());
                assert_eq!(&got, want, "split {a},{b}");
            }
        }
    }
}

#[test]
fn stops_at_end_of_chunked_body_for_pipelining() {
    let input = b"3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\n";
    let (got, consumed, done) = chunked(input).unwrap();
    assert!(done);
    assert_eq!(got, b"abc");
    assert_eq!(&input[consumed..], b"GET / HTTP/1.1\r\n");
}

#[test]
fn decodes_length_body_and_leaves_the_rest() {
    let mut dec = BodyDecoder::for_request(BodyKind::Length(5), &Limits::default());
    let d = dec.decode(b"hel").unwrap();
    assert_eq!(
        d,
        Decoded {
            consumed: 3,
            data: Some(0..3),
            done: false
        }
    );
    let d = dec.decode(b"loNEXT").unwrap();
    assert_eq!(
        d,
        Decoded {
            consumed: 2,
            data: Some(0..2),
            done: true
        }
    );
    assert!(dec.is_done());
    assert_eq!(dec.payload_len(), 5);
    assert_eq!(
        dec.decode(b"NEXT").unwrap(),
        Decoded {
            consumed: 0,
            data: None,
            done: true
        }
    );
}

#[test]
fn empty_bodies_are_done_at_once() {
    for kind in [BodyKind::None, BodyKind::Length(0)] {
        let mut dec = BodyDecoder::for_request(kind, &Limits::default());
        assert_eq!(
            dec.decode(b"xyz").unwrap(),
            Decoded {
                consumed: 0,
                data: None,
                done: true
            }
        );
        assert_eq!(dec.handle_eof(), Ok(()));
    }
}

#[test]
fn close_delimited_body_ends_at_eof() {
    let mut dec = BodyDecoder::for_response(BodyKind::CloseDelimited, &Limits::default());
    assert_eq!(
        dec.decode(b"").unwrap(),
        Decoded {
            consumed: 0,
            data: None,
            done: false
        }
    );
    assert_eq!(
        dec.decode(b"abc").unwrap(),
        Decoded {
            consumed: 3,
            data: Some(0..3),
            done: false
        }
    );
    assert_eq!(dec.handle_eof(), Ok(()));
    assert!(dec.is_done());
}

#[test]
fn eof_mid_body_is_incomplete_and_blamed_on_sender() {
    let mut dec = BodyDecoder::for_request(BodyKind::Length(5), &Limits::default());
    dec.decode(b"ab").unwrap();
    assert_eq!(dec.handle_eof(), Err(HttpError::PeerIncompleteBody));
    let mut dec = BodyDecoder::for_response(BodyKind::Chunked, &Limits::default());
    dec.decode(b"5\r\nab").unwrap();
    assert_eq!(dec.handle_eof(), Err(HttpError::UpstreamIncompleteBody));
}

#[test]
fn accepts_sixteen_hex_digits_and_refuses_seventeen() {
    let mut dec = BodyDecoder::for_response(BodyKind::Chunked, &Limits::default());
    let d = dec.decode(b"000000000000000F\r\nabc").unwrap();
    assert_eq!(d.data, Some(18..21));
    let mut dec = BodyDecoder::for_response(BodyKind::Chunked, &Limits::default());
    assert!(dec.decode(b"FFFFFFFFFFFFFFFF\r\n").is_ok());
    assert_eq!(
        chunked_err(b"00000000000000001\r\nx\r\n0\r\n\r\n"),
        HttpError::PeerInvalidChunkSize
    );
    assert_eq!(
        chunked_err(b"10000000000000000\r\n"),
        HttpError::PeerInvalidChunkSize
    );
}

#[test]
fn rejects_invalid_chunk_sizes() {
    for bad in [
        &b"\r\n"[..],
        b";ext\r\n",
        b"g\r\n",
        b"-1\r\n",
        b"+1\r\n",
        b"0x5\r\nhello\r\n",
        b"5 \r\nhello\r\n",
        b" 5\r\nhello\r\n",
        b"5 5\r\n",
    ] {
        assert_eq!(
            chunked_err(bad),
            HttpError::PeerInvalidChunkSize,
            "{:?}",
            bad.escape_ascii()
        );
    }
}

#[test]
fn rejects_bare_lf_and_missing_crlf_in_chunk_framing() {
    for bad in [
        &b"5\nhello\r\n0\r\n\r\n"[..],
        b"5\r\nhello\n0\r\n\r\n",
        b"5\r\nhello0\r\n\r\n",
        b"5\r\nhelloXX\r\n",
        b"5\r\nhello\rX",
        b"5\rX",
        b"5;a\nhello",
        b"5;a\x00b\r\nhello\r\n",
        b"0\r\n\n",
        b"0\r\n\rX",
        b"0\r\nA: b\nB: c\r\n\r\n",
    ] {
        assert_eq!(
            chunked_err(bad),
            HttpError::PeerInvalidChunkFraming,
            "{:?}",
            bad.escape_ascii()
        );
    }
}

#[test]
fn bounds_chunk_extensions() {
    let mut ok = b"1;".to_vec();
    ok.extend(std::iter::repeat_n(b'e', MAX_CHUNK_EXT - 1));
    ok.extend_from_slice(b"\r\nx\r\n0\r\n\r\n");
    assert_eq!(chunked(&ok).unwrap().0, b"x");
    let mut bad = b"1;".to_vec();
    bad.extend(std::iter::repeat_n(b'e', MAX_CHUNK_EXT));
    bad.extend_from_slice(b"\r\nx\r\n0\r\n\r\n");
    assert_eq!(chunked_err(&bad), HttpError::LimitChunkExtension);
}

#[test]
fn validates_trailers_like_headers() {
    assert_eq!(
        chunked_err(b"0\r\nA: b\r\n c\r\n\r\n"),
        HttpError::PeerObsFold
    );
    assert_eq!(
        chunked_err(b"0\r\nA b: c\r\n\r\n"),
        HttpError::PeerInvalidHeaderName
    );
    assert_eq!(
        chunked_err(b"0\r\n: c\r\n\r\n"),
        HttpError::PeerInvalidHeaderName
    );
    assert_eq!(
        chunked_err(b"0\r\nAb\r\n\r\n"),
        HttpError::PeerInvalidHeaderName
    );
    assert_eq!(
        chunked_err(b"0\r\nA: b\x00c\r\n\r\n"),
        HttpError::PeerInvalidHeaderValue
    );
    assert_eq!(
        chunked_err(b"0\r\nA: b\rc\r\n\r\n"),
        HttpError::PeerInvalidHeaderValue
    );
    assert_eq!(
        chunked_err(b"0\r\nA: b\x7f\r\n\r\n"),
        HttpError::PeerInvalidHeaderValue
    );
}

#[test]
fn bounds_trailer_section() {
    let limits = Limits {
        max_header_section: 20,
        max_header_line: 6,
        max_body: 100,
        max_headers: 2,
    };
    let dec = || BodyDecoder::for_request(BodyKind::Chunked, &limits);
    // Line of exactly 6 bytes passes; 7 does not.
    assert!(run(&mut dec(), b"0\r\nAb: cd\r\n\r\n", &[]).unwrap().2);
    assert_eq!(
        run(&mut dec(), b"0\r\nAb: cde\r\n\r\n", &[]),
        Err(HttpError::LimitHeaderLine)
    );
    assert_eq!(
        run(&mut dec(), b"0\r\nA:1\r\nB:2\r\nC:3\r\n\r\n", &[]),
        Err(HttpError::LimitTooManyHeaders)
    );
    // Section: 6+2 + 6+2 = 16 bytes of fields, +2 final CRLF = 18 <= 20.
    assert!(
        run(&mut dec(), b"0\r\nA:1234\r\nB:1234\r\n\r\n", &[])
            .unwrap()
            .2
    );
    let mut big = Limits {
        max_headers: 10,
        ..limits
    };
    big.max_header_section = 17;
    assert_eq!(
        run(
            &mut BodyDecoder::for_request(BodyKind::Chunked, &big),
            b"0\r\nA:1234\r\nB:1234\r\n\r\n",
            &[]
        ),
        Err(HttpError::LimitHeaderSection)
    );
}

#[test]
fn limits_chunked_body_mid_stream() {
    let limits = Limits {
        max_body: 10,
        ..Limits::default()
    };
    let mut dec = BodyDecoder::for_request(BodyKind::Chunked, &limits);
    assert_eq!(
        run(&mut dec, b"5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n", &[])
            .unwrap()
            .0,
        b"helloworld"
    );
    let mut dec = BodyDecoder::for_request(BodyKind::Chunked, &limits);
    // The oversize chunk is refused on its size line, before its data.
    let d = dec.decode(b"5\r\nhello\r\n").unwrap();
    assert_eq!(d.data, Some(3..8));
    assert_eq!(dec.decode(b"\r\n6\r\n"), Err(HttpError::LimitBody));
    assert_eq!(HttpError::LimitBody.status(), 413);
}

#[test]
fn limits_length_body_up_front() {
    let limits = Limits {
        max_body: 10,
        ..Limits::default()
    };
    let mut dec = BodyDecoder::for_request(BodyKind::Length(10), &limits);
    assert!(dec.decode(&[0; 10]).unwrap().done);
    let mut dec = BodyDecoder::for_request(BodyKind::Length(11), &limits);
    assert_eq!(dec.decode(b"a"), Err(HttpError::LimitBody));
}

#[test]
fn response_bodies_have_no_size_limit() {
    let limits = Limits {
        max_body: 1,
        ..Limits::default()
    };
    let mut dec = BodyDecoder::for_response(BodyKind::Length(3), &limits);
    assert!(dec.decode(b"abc").unwrap().done);
    let mut dec = BodyDecoder::for_response(BodyKind::CloseDelimited, &limits);
    assert!(dec.decode(b"abc").is_ok());
}

#[test]
fn errors_stick() {
    let mut dec = BodyDecoder::for_request(BodyKind::Chunked, &Limits::default());
    assert_eq!(dec.decode(b"z"), Err(HttpError::PeerInvalidChunkSize));
    assert_eq!(
        dec.decode(b"0\r\n\r\n"),
        Err(HttpError::PeerInvalidChunkSize)
    );
    assert_eq!(dec.handle_eof(), Err(HttpError::PeerInvalidChunkSize));
}

#[test]
fn response_chunk_errors_blame_upstream() {
    let mut dec = BodyDecoder::for_response(BodyKind::Chunked, &Limits::default());
    assert_eq!(
        dec.decode(b"5\nhello"),
        Err(HttpError::UpstreamInvalidChunk)
    );
    let mut dec = BodyDecoder::for_response(BodyKind::Chunked, &Limits::default());
    assert_eq!(
        dec.decode(b"0\r\nA b\r\n"),
        Err(HttpError::UpstreamInvalidResponse)
    );
}
