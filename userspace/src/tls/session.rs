//! A client's TLS session: rustls' `ServerConnection` driven over any
//! `Read + Write` (a socket in the reactor, a byte pipe in tests).
//!
//! Owns: moving records between the socket and rustls, plaintext in and
//! out, close_notify, and noticing — once — that the handshake completed
//! (version, resumption, ALPN) so the reactor counts it and picks the
//! protocol. Must not: register sockets or read the clock.

use std::io::{self, Read, Write};
use std::sync::Arc;

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

pub struct Session {
    conn: rustls::ServerConnection,
    handshake_seen: bool,
}

/// Plaintext rustls may buffer per direction.
const BUFFER_LIMIT: usize = 64 * 1024;

impl Session {
    pub fn new(config: Arc<rustls::ServerConfig>) -> Result<Session, rustls::Error> {
        let mut conn = rustls::ServerConnection::new(config)?;
        conn.set_buffer_limit(Some(BUFFER_LIMIT));
        Ok(Session {
            conn,
            handshake_seen: false,
        })
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
        self.conn.wants_write()
    }

    /// Read records from `io` and append the plaintext to `buf` until `io`
    /// would block, ends, or `buf` reaches `cap`. A protocol error queues
    /// an alert, tries to send it, and is returned.
    pub fn read_into(
        &mut self,
        io: &mut (impl Read + Write),
        buf: &mut Vec<u8>,
        cap: usize,
        scratch: &mut [u8],
    ) -> io::Result<ReadOutcome> {
        let mut total = 0;
        let mut source_eof = false;
        loop {
            // Plaintext rustls already decrypted.
            loop {
                if buf.len() >= cap {
                    return Ok(ReadOutcome {
                        bytes: total,
                        eof: false,
                        paused: true,
                    });
                }
                let want = scratch.len().min(cap - buf.len()).max(1);
                let Some(dst) = scratch.get_mut(..want) else {
                    break;
                };
                match self.conn.reader().read(dst) {
                    // close_notify: a clean end of the stream.
                    Ok(0) => {
                        return Ok(ReadOutcome {
                            bytes: total,
                            eof: true,
                            paused: false,
                        });
                    }
                    Ok(n) => {
                        buf.extend_from_slice(&dst[..n]);
                        total += n;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    // TCP closed without close_notify: an end all the same.
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                        return Ok(ReadOutcome {
                            bytes: total,
                            eof: true,
                            paused: false,
                        });
                    }
                    Err(e) => return Err(e),
                }
            }
            if source_eof {
                return Ok(ReadOutcome {
                    bytes: total,
                    eof: true,
                    paused: false,
                });
            }
            match self.conn.read_tls(io) {
                Ok(0) => source_eof = true,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Ok(ReadOutcome {
                        bytes: total,
                        eof: false,
                        paused: false,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            if let Err(e) = self.conn.process_new_packets() {
                // Tell the peer why (the alert is queued), then give up.
                let _ = self.conn.write_tls(io);
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
        }
    }

    /// Encrypt what `wbuf` holds and write records to `io` until it would
    /// block; returns the plaintext bytes taken from `wbuf`.
    pub fn flush(&mut self, io: &mut impl Write, wbuf: &mut Vec<u8>) -> io::Result<usize> {
        let mut taken = 0;
        loop {
            let mut moved = 0;
            if !wbuf.is_empty() {
                moved = self.conn.writer().write(wbuf)?;
                wbuf.drain(..moved);
                taken += moved;
            }
            let mut wrote = false;
            while self.conn.wants_write() {
                match self.conn.write_tls(io) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(_) => wrote = true,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(taken),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            if wbuf.is_empty() || (moved == 0 && !wrote) {
                return Ok(taken);
            }
        }
    }

    /// Say goodbye (close_notify), best effort.
    pub fn close(&mut self, io: &mut impl Write) {
        self.conn.send_close_notify();
        let _ = self.conn.write_tls(io);
    }
}
