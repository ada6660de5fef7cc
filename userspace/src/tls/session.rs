//! A client's TLS session: rustls' unbuffered `ServerConnection` driven
//! over any `Read + Write` (a socket in the reactor, a byte pipe in tests),
//! with buffers this session owns and frees as soon as they are empty.
//!
//! Owns: moving records between the socket and rustls, plaintext in and
//! out, close_notify, the alert after a failure, and noticing — once —
//! that the handshake completed (version, resumption, ALPN) so the reactor
//! counts it and picks the protocol. Must not: register sockets or read
//! the clock. Fed by: the reactor's reads, flushes and close; emits
//! plaintext into the caller's buffer and records into `io`.
//!
//! Why unbuffered: the buffered `ServerConnection` keeps its deframer
//! buffer (at least 4 KiB, grown before every read) and its chunk queues
//! for the connection's whole life. Here an idle connection holds no I/O
//! buffer at all:
//!
//! ```text
//!  io ──read──► scratch (the caller's) ──► rustls decrypts records in place
//!                 │ a partial record              │ plaintext
//!                 ▼                               ▼
//!             `incoming` ─(more bytes)─► rustls   caller's buf, up to `cap`
//!             (freed once consumed)               └─ rest of a record: `plain`
//!                                                    (freed once handed over)
//!  caller's wbuf ──encrypt──┐
//!  handshake records, ──────┴──► `outgoing` ──write──► io
//!  tickets, alerts                (freed once written)
//! ```
//!
//! rustls hands out one state at a time (`process_tls_records`); `drive`
//! answers each: plaintext (`ReadTraffic`) is taken, records to send
//! (`EncodeTlsData`) are appended to `outgoing`, and the caller's data is
//! encrypted once sending is allowed (`WriteTraffic`). What rustls has
//! consumed (`discard`) is dropped from the front of the input.
//!
//! Limits of the unbuffered API (rustls 0.23): close_notify can only be
//! sent once the handshake completed (`WriteTraffic`), so `close` during a
//! handshake just lets the socket close; rustls still keeps its own small
//! state (keys, handshake span list) per connection.

use std::io::{self, Read, Write};
use std::mem;
use std::sync::Arc;

use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError, InsufficientSizeError};

use super::hello::{self, HelloSni};

/// Outcome of draining a source into a buffer.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadOutcome {
    pub bytes: usize,
    pub eof: bool,
    /// Stopped because the buffer reached `cap`, not because the source was empty.
    pub paused: bool,
}

/// What the completed handshake settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handshake {
    pub tls13: bool,
    pub resumed: bool,
    /// ALPN chose `h2`.
    pub h2: bool,
}

/// Plaintext encrypted per step of a flush: at most this much (plus record
/// overhead) waits in `outgoing` for a socket that would block.
const BUFFER_LIMIT: usize = 64 * 1024;

/// Largest plaintext of one record (RFC 8446 §5.1, RFC 5246 §6.2.1).
const MAX_FRAGMENT: usize = 16 * 1024;

/// Bytes a record adds to its plaintext, at most: header 5, and for the
/// AEAD suites rustls offers an explicit nonce 8 (TLS 1.2 GCM) and a tag
/// 16, or content type 1 and tag 16 (TLS 1.3). A guess for sizing only:
/// rustls says when it needs more.
const RECORD_OVERHEAD: usize = 5 + 8 + 16;

/// Where the session is, as far as records flow.
#[derive(Debug)]
enum Flow {
    /// Records move both ways (the handshake included).
    Open,
    /// The client's close_notify arrived: nothing more to read; we may
    /// still send.
    PeerClosed,
    /// A protocol or encryption failure (the alert rustls queued went into
    /// `outgoing`): every later read or flush reports it again.
    Failed(rustls::Error),
}

/// Why `drive` stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// rustls consumed every complete record: it waits for bytes.
    NeedInput,
    /// The plaintext sink reached its cap; records may be left unread.
    Full,
}

/// What to send when rustls allows application data.
#[derive(Clone, Copy)]
enum Outbound<'a> {
    Nothing,
    Data(&'a [u8]),
    CloseNotify,
}

/// What one `drive` did.
struct Driven {
    /// Input bytes rustls is done with (drop them from its front).
    used: usize,
    /// Bytes of `Outbound::Data` encrypted into `outgoing`.
    sent: usize,
    stop: Result<Stop, rustls::Error>,
}

pub struct Session {
    conn: UnbufferedServerConnection,
    flow: Flow,
    /// Received bytes rustls has not consumed: a partial record (or, when
    /// reading paused at the cap, whole records). No capacity otherwise.
    incoming: Vec<u8>,
    /// Decrypted bytes not yet handed to the caller: the part of a record
    /// past the caller's cap, or records decrypted during a flush.
    plain: Vec<u8>,
    /// Records waiting for `io` to take them, in order.
    outgoing: Vec<u8>,
    handshake_seen: bool,
    /// The client's first bytes, kept until its ClientHello's SNI is
    /// classified (then freed); `None` afterwards.
    hello: Option<Vec<u8>>,
    /// The classification, until taken.
    sni: Option<HelloSni>,
}

impl Session {
    pub fn new(config: Arc<rustls::ServerConfig>) -> Result<Session, rustls::Error> {
        Ok(Session {
            conn: UnbufferedServerConnection::new(config)?,
            flow: Flow::Open,
            incoming: Vec::new(),
            plain: Vec::new(),
            outgoing: Vec::new(),
            handshake_seen: false,
            hello: Some(Vec::new()),
            sni: None,
        })
    }

    /// What the ClientHello's `server_name` held, once it has arrived:
    /// `Some` once (the reactor counts IP addresses and invalid names,
    /// which rustls would only log).
    pub fn take_hello_sni(&mut self) -> Option<HelloSni> {
        self.sni.take()
    }

    /// Look at the bytes just received while the ClientHello's SNI is
    /// still unclassified.
    fn look_at_hello(&mut self, bytes: &[u8]) {
        let Some(copy) = self.hello.as_mut() else {
            return;
        };
        copy.extend_from_slice(bytes);
        let verdict = hello::classify(copy).or_else(|| {
            // Records up to the largest hello and a header: past that, stop.
            (copy.len() > hello::MAX_HELLO + 2 * 5).then_some(HelloSni::Unknown)
        });
        if let Some(sni) = verdict {
            self.sni = Some(sni);
            self.hello = None;
        }
    }

    /// The handshake just completed: what it settled. `Some` once.
    pub fn take_handshake(&mut self) -> Option<Handshake> {
        if self.handshake_seen || self.conn.is_handshaking() {
            return None;
        }
        self.handshake_seen = true;
        Some(Handshake {
            tls13: self.conn.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3),
            resumed: matches!(
                self.conn.handshake_kind(),
                Some(rustls::HandshakeKind::Resumed)
            ),
            h2: self.conn.alpn_protocol() == Some(b"h2"),
        })
    }

    /// `TLSv1.3` / `TLSv1.2` for the access log.
    pub fn version_name(&self) -> Option<&'static str> {
        match self.conn.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => Some("TLSv1.3"),
            Some(rustls::ProtocolVersion::TLSv1_2) => Some("TLSv1.2"),
            _ => None,
        }
    }

    /// Records (handshake, tickets, alerts, data) are waiting to be sent.
    pub fn wants_write(&self) -> bool {
        !self.outgoing.is_empty() || self.conn.wants_write()
    }

    /// Read records from `io` and append the plaintext to `buf` until `io`
    /// would block, ends, or `buf` reaches `cap` (`paused`; what was
    /// received past it waits here for the next call). A protocol error
    /// sends the alert rustls queued, as far as `io` takes it, and is
    /// returned, now and on every later call.
    pub fn read_into(
        &mut self,
        io: &mut (impl Read + Write),
        buf: &mut Vec<u8>,
        cap: usize,
        scratch: &mut [u8],
    ) -> io::Result<ReadOutcome> {
        let before = buf.len();
        let outcome = |buf: &Vec<u8>, eof, paused| ReadOutcome {
            bytes: buf.len().saturating_sub(before),
            eof,
            paused,
        };
        if let Flow::Failed(e) = &self.flow {
            return Err(failure(e.clone()));
        }
        // Plaintext held over from the last call goes first.
        if !self.plain.is_empty() {
            let n = self.plain.len().min(cap.saturating_sub(buf.len()));
            buf.extend_from_slice(self.plain.get(..n).unwrap_or_default());
            self.plain.drain(..n);
            if !self.plain.is_empty() {
                return Ok(outcome(buf, false, true));
            }
            self.plain = Vec::new();
        }
        if buf.len() >= cap {
            return Ok(outcome(buf, false, true));
        }
        // Whole records left when the last call paused.
        let mut stop = if self.incoming.is_empty() {
            Stop::NeedInput
        } else {
            self.drive_incoming(io, buf, cap)?
        };
        loop {
            if matches!(self.flow, Flow::PeerClosed) && self.plain.is_empty() {
                return Ok(outcome(buf, true, false));
            }
            if stop == Stop::Full {
                return Ok(outcome(buf, false, true));
            }
            let n = match io.read(scratch) {
                // TCP closed without close_notify: an end all the same.
                Ok(0) => return Ok(outcome(buf, true, false)),
                Ok(n) => n.min(scratch.len()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Ok(outcome(buf, false, false));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            let Some(fresh) = scratch.get_mut(..n) else {
                continue;
            };
            self.look_at_hello(fresh);
            stop = self.take_fresh(io, fresh, buf, cap)?;
        }
    }

    /// Bytes just read (in the caller's scratch) to rustls, decrypted where
    /// they are when possible; what rustls cannot use yet goes to
    /// `incoming`.
    fn take_fresh(
        &mut self,
        io: &mut impl Write,
        mut fresh: &mut [u8],
        buf: &mut Vec<u8>,
        cap: usize,
    ) -> io::Result<Stop> {
        if !self.incoming.is_empty() {
            // First finish the record left unfinished, with only the bytes
            // it lacks.
            loop {
                let lack = record_shortfall(&self.incoming).min(fresh.len());
                if lack == 0 {
                    break;
                }
                let (head, tail) = mem::take(&mut fresh).split_at_mut(lack);
                self.incoming.extend_from_slice(head);
                fresh = tail;
            }
            let stop = self.drive_incoming(io, buf, cap)?;
            if fresh.is_empty() || matches!(self.flow, Flow::PeerClosed) {
                return Ok(stop);
            }
            if stop == Stop::Full || !self.incoming.is_empty() {
                // Paused, or rustls still counts on what `incoming` holds
                // (a handshake message spanning records): keep it all in
                // one buffer.
                self.incoming.extend_from_slice(fresh);
                return match stop {
                    Stop::Full => Ok(stop),
                    Stop::NeedInput => self.drive_incoming(io, buf, cap),
                };
            }
            // rustls consumed all it held: a new buffer may start here.
        }
        // The usual case: records decrypted where they were read; only an
        // unfinished one is kept.
        let driven = self.drive(fresh, buf, cap, Outbound::Nothing);
        self.incoming
            .extend_from_slice(fresh.get(driven.used..).unwrap_or_default());
        self.settle(io, driven)
    }

    /// `drive` over `incoming`, dropping what rustls consumed.
    fn drive_incoming(
        &mut self,
        io: &mut impl Write,
        sink: &mut Vec<u8>,
        cap: usize,
    ) -> io::Result<Stop> {
        let mut input = mem::take(&mut self.incoming);
        let driven = self.drive(&mut input, sink, cap, Outbound::Nothing);
        self.keep_incoming(input, driven.used);
        self.settle(io, driven)
    }

    /// Put back what is left of `input` past `used`: nothing held once
    /// rustls consumed it all.
    fn keep_incoming(&mut self, mut input: Vec<u8>, used: usize) {
        if used >= input.len() {
            input = Vec::new();
        } else {
            input.drain(..used);
        }
        self.incoming = input;
    }

    /// After a `drive`: a clean end drops unread input; a failure is sent
    /// (the alert) and kept.
    fn settle(&mut self, io: &mut impl Write, driven: Driven) -> io::Result<Stop> {
        if matches!(self.flow, Flow::PeerClosed) {
            // Nothing after close_notify is read (RFC 8446 §6.1).
            self.incoming = Vec::new();
        }
        match driven.stop {
            Ok(stop) => Ok(stop),
            Err(e) => Err(self.fail(io, e)),
        }
    }

    /// A failure: send what rustls queued (its alert), best effort; from
    /// now on the session only reports `e`.
    fn fail(&mut self, io: &mut impl Write, e: rustls::Error) -> io::Error {
        let _ = self.write_out(io);
        self.release_outgoing();
        self.incoming = Vec::new();
        self.plain = Vec::new();
        self.hello = None;
        self.flow = Flow::Failed(e.clone());
        failure(e)
    }

    /// Encrypt what `wbuf` holds and write records to `io` until it would
    /// block; returns the plaintext bytes taken from `wbuf`.
    pub fn flush(&mut self, io: &mut impl Write, wbuf: &mut Vec<u8>) -> io::Result<usize> {
        let mut taken = 0;
        let result = loop {
            // Records made earlier go first, in order.
            match self.write_out(io) {
                Ok(true) => {}
                Ok(false) => break Ok(()),
                Err(e) => break Err(e),
            }
            if let Flow::Failed(e) = &self.flow {
                break Err(failure(e.clone()));
            }
            let rest = wbuf.get(taken..).unwrap_or_default();
            if rest.is_empty() && !self.conn.wants_write() {
                break Ok(());
            }
            let chunk = rest.get(..rest.len().min(BUFFER_LIMIT)).unwrap_or_default();
            // Records received meanwhile are decrypted on the way (rustls
            // gets to sending only past them): their plaintext waits in
            // `plain` for the next read.
            let mut input = mem::take(&mut self.incoming);
            let mut held = mem::take(&mut self.plain);
            let driven = self.drive(&mut input, &mut held, usize::MAX, Outbound::Data(chunk));
            self.plain = held;
            self.keep_incoming(input, driven.used);
            taken += driven.sent;
            if let Err(e) = self.settle(io, driven) {
                break Err(e);
            }
            if self.outgoing.is_empty() {
                // Nothing to send yet (the handshake is not done).
                break Ok(());
            }
        };
        self.release_outgoing();
        wbuf.drain(..taken.min(wbuf.len()));
        result.map(|()| taken)
    }

    /// Say goodbye (close_notify), best effort.
    pub fn close(&mut self, io: &mut impl Write) {
        if !matches!(self.flow, Flow::Failed(_)) {
            let mut input = mem::take(&mut self.incoming);
            let mut held = mem::take(&mut self.plain);
            let driven = self.drive(&mut input, &mut held, usize::MAX, Outbound::CloseNotify);
            self.plain = held;
            self.keep_incoming(input, driven.used);
            if let Err(e) = driven.stop {
                self.flow = Flow::Failed(e);
            }
        }
        let _ = self.write_out(io);
        self.release_outgoing();
    }

    /// Free `outgoing` once everything in it is written.
    fn release_outgoing(&mut self) {
        if self.outgoing.is_empty() {
            self.outgoing = Vec::new();
        }
    }

    /// Write `outgoing` to `io`: `true` once all of it is written.
    fn write_out(&mut self, io: &mut impl Write) -> io::Result<bool> {
        let mut written = 0;
        let result = loop {
            let rest = self.outgoing.get(written..).unwrap_or_default();
            if rest.is_empty() {
                break Ok(true);
            }
            match io.write(rest) {
                Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        if written >= self.outgoing.len() {
            // Kept for the rest of a flush; `flush` frees it.
            self.outgoing.clear();
        } else {
            self.outgoing.drain(..written);
        }
        result
    }

    /// Let rustls process `input` (whole records, maybe an unfinished one
    /// at the end) until it waits for more: plaintext to `sink` up to
    /// `cap` (the rest of a record to `plain`), records to send to
    /// `outgoing`, and `out` encrypted once application data may be sent.
    fn drive(
        &mut self,
        input: &mut [u8],
        sink: &mut Vec<u8>,
        cap: usize,
        out: Outbound<'_>,
    ) -> Driven {
        let mut driven = Driven {
            used: 0,
            sent: 0,
            stop: Ok(Stop::NeedInput),
        };
        loop {
            if sink.len() >= cap {
                driven.stop = Ok(Stop::Full);
                return driven;
            }
            let rest = input.get_mut(driven.used..).unwrap_or_default();
            let status = self.conn.process_tls_records(rest);
            let mut discard = status.discard;
            let state = match status.state {
                Ok(state) => state,
                Err(e) => {
                    driven.used += discard;
                    self.encode_alerts(input.get_mut(driven.used..).unwrap_or_default());
                    driven.stop = Err(e);
                    return driven;
                }
            };
            match state {
                ConnectionState::ReadTraffic(mut records) => {
                    while let Some(record) = records.next_record() {
                        match record {
                            Ok(record) => {
                                discard += record.discard;
                                deliver(record.payload, sink, cap, &mut self.plain);
                            }
                            Err(e) => {
                                driven.stop = Err(e);
                                break;
                            }
                        }
                    }
                }
                // Never offered (`ServerConfig::max_early_data_size` is 0);
                // were it, it would be the client's data like any other.
                ConnectionState::ReadEarlyData(mut records) => {
                    while let Some(record) = records.next_record() {
                        match record {
                            Ok(record) => {
                                discard += record.discard;
                                deliver(record.payload, sink, cap, &mut self.plain);
                            }
                            Err(e) => {
                                driven.stop = Err(e);
                                break;
                            }
                        }
                    }
                }
                ConnectionState::EncodeTlsData(mut records) => {
                    if let Err(e) = append_records(&mut self.outgoing, 0, |dst| {
                        records.encode(dst).map_err(|e| match e {
                            EncodeError::InsufficientSize(InsufficientSizeError {
                                required_size,
                            }) => Some(required_size),
                            EncodeError::AlreadyEncoded => None,
                        })
                    }) {
                        driven.stop = Err(e);
                    }
                }
                // The records are in `outgoing`, which `flush` writes in
                // order; rustls only needs to know they are taken care of.
                ConnectionState::TransmitTlsData(records) => records.done(),
                ConnectionState::WriteTraffic(mut traffic) => {
                    let made = match out {
                        Outbound::Nothing => Ok(0),
                        Outbound::Data(data) => {
                            let guess =
                                data.len() + data.len().div_ceil(MAX_FRAGMENT) * RECORD_OVERHEAD;
                            append_records(&mut self.outgoing, guess, |dst| {
                                traffic.encrypt(data, dst).map_err(encrypt_error)
                            })
                            .map(|_| data.len())
                        }
                        Outbound::CloseNotify => append_records(&mut self.outgoing, 64, |dst| {
                            traffic.queue_close_notify(dst).map_err(encrypt_error)
                        })
                        .map(|_| 0),
                    };
                    match made {
                        Ok(sent) => driven.sent += sent,
                        Err(e) => driven.stop = Err(e),
                    }
                    if driven.stop.is_ok() {
                        driven.used += discard;
                        return driven;
                    }
                }
                ConnectionState::BlockedHandshake | ConnectionState::Closed => {
                    driven.used += discard;
                    return driven;
                }
                ConnectionState::PeerClosed => self.flow = Flow::PeerClosed,
                _ => {
                    driven.stop = Err(rustls::Error::General(
                        "unknown unbuffered connection state".into(),
                    ));
                }
            }
            driven.used += discard;
            if driven.stop.is_err() {
                self.encode_alerts(input.get_mut(driven.used..).unwrap_or_default());
                return driven;
            }
        }
    }

    /// After a failure: encode the records rustls queued (its alert).
    /// rustls hands queued records out before it looks at input again.
    fn encode_alerts(&mut self, input: &mut [u8]) {
        while self.conn.wants_write() {
            let status = self.conn.process_tls_records(input);
            let Ok(ConnectionState::EncodeTlsData(mut records)) = status.state else {
                return;
            };
            let encoded = append_records(&mut self.outgoing, 0, |dst| {
                records.encode(dst).map_err(|e| match e {
                    EncodeError::InsufficientSize(InsufficientSizeError { required_size }) => {
                        Some(required_size)
                    }
                    EncodeError::AlreadyEncoded => None,
                })
            });
            if encoded.is_err() {
                return;
            }
        }
    }
}

/// Bytes the record at the front of `incoming` still lacks: up to its
/// 5-byte header, then up to its announced length (RFC 8446 §5.1); 0 once
/// it is whole.
fn record_shortfall(incoming: &[u8]) -> usize {
    match *incoming {
        [_, _, _, hi, lo, ..] => {
            (5 + usize::from(u16::from_be_bytes([hi, lo]))).saturating_sub(incoming.len())
        }
        _ => 5usize.saturating_sub(incoming.len()),
    }
}

/// The `io::Error` a TLS failure is reported as.
fn failure(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// Plaintext to `sink` up to `cap`; the rest to `over`.
fn deliver(payload: &[u8], sink: &mut Vec<u8>, cap: usize, over: &mut Vec<u8>) {
    let room = cap.saturating_sub(sink.len()).min(payload.len());
    let (now, later) = payload.split_at(room);
    sink.extend_from_slice(now);
    over.extend_from_slice(later);
}

fn encrypt_error(e: EncryptError) -> Option<usize> {
    match e {
        EncryptError::InsufficientSize(InsufficientSizeError { required_size }) => {
            Some(required_size)
        }
        EncryptError::EncryptExhausted => None,
    }
}

/// Append what `encode` writes to `out`, first offering `guess` bytes of
/// room, then as many as rustls asks for (`Err(Some(size))`); `Err(None)`
/// is a failure. Returns the bytes appended.
fn append_records(
    out: &mut Vec<u8>,
    guess: usize,
    mut encode: impl FnMut(&mut [u8]) -> Result<usize, Option<usize>>,
) -> Result<usize, rustls::Error> {
    let start = out.len();
    let mut room = guess;
    loop {
        out.resize(start + room, 0);
        let dst = out.get_mut(start..).unwrap_or_default();
        match encode(dst) {
            Ok(n) => {
                out.truncate(start + n.min(room));
                return Ok(n);
            }
            Err(Some(required)) if required > room => room = required,
            Err(_) => {
                out.truncate(start);
                return Err(rustls::Error::EncryptError);
            }
        }
    }
}

#[cfg(test)]
mod tests;
