//! A client's TLS session: rustls' `ServerConnection` driven over any
//! `Read + Write` (a socket in the reactor, a byte pipe in tests).
//!
//! Owns: moving records between the socket and rustls, plaintext in and
//! out, close_notify, and noticing — once — that the handshake completed
//! (version, resumption, ALPN) so the reactor counts it and picks the
//! protocol. Must not: register sockets or read the clock.

use std::io::{self, Read, Write};
use std::sync::Arc;

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

pub struct Session {
    conn: rustls::ServerConnection,
    handshake_seen: bool,
    /// The client's first bytes, kept until its ClientHello's SNI is
    /// classified (then freed); `None` afterwards.
    hello: Option<Vec<u8>>,
    /// The classification, until taken.
    sni: Option<HelloSni>,
}

/// Copies what a read returns into `copy` (the ClientHello being looked at).
struct Tap<'a, R> {
    inner: &'a mut R,
    copy: &'a mut Vec<u8>,
}

impl<R: Read> Read for Tap<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.copy
            .extend_from_slice(buf.get(..n).unwrap_or_default());
        Ok(n)
    }
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

    /// Records from `io` into rustls, looking at the ClientHello on its way.
    fn read_tls(&mut self, io: &mut impl Read) -> io::Result<usize> {
        let Some(copy) = self.hello.as_mut() else {
            return self.conn.read_tls(io);
        };
        let n = self.conn.read_tls(&mut Tap { inner: io, copy })?;
        let verdict = hello::classify(copy).or_else(|| {
            // Records up to the largest hello and a header: past that, stop.
            (copy.len() > hello::MAX_HELLO + 2 * 5).then_some(HelloSni::Unknown)
        });
        if let Some(sni) = verdict {
            self.sni = Some(sni);
            self.hello = None;
        }
        Ok(n)
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
            match self.read_tls(io) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::pem::PemObject;
    use std::collections::VecDeque;

    /// One side of an in-memory byte pipe: reads `rx`, writes `tx`;
    /// an empty `rx` would block, as a non-blocking socket does.
    struct End<'a> {
        rx: &'a mut VecDeque<u8>,
        tx: &'a mut VecDeque<u8>,
    }

    impl Read for End<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.rx.is_empty() {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            self.rx.read(buf)
        }
    }

    impl Write for End<'_> {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.tx.extend(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn handshake_alpn_and_plaintext_both_ways_over_a_pipe() {
        let pem = crate::tls::self_signed_pem(&["session.test".to_string()]).expect("cert");
        let store = crate::tls::CertStore::from_pems(
            [("default", pem.as_bytes())],
            &crate::tls::provider(),
        )
        .expect("store");
        let tls = crate::tls::Tls::new(store, &[b"h2", b"http/1.1"]).expect("config");
        let mut server = Session::new(tls.config.clone()).expect("session");

        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes()) {
            roots.add(cert.expect("pem")).expect("root");
        }
        let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(crate::tls::provider()))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        cfg.alpn_protocols = vec![b"h2".to_vec()];
        let mut client =
            rustls::ClientConnection::new(Arc::new(cfg), "session.test".try_into().expect("name"))
                .expect("client");

        let (mut c2s, mut s2c) = (VecDeque::new(), VecDeque::new());
        let mut plain = Vec::new();
        let mut scratch = vec![0u8; 4096];
        let mut handshake = None;
        client.writer().write_all(b"hello server").expect("queue");
        for _ in 0..10 {
            while client.wants_write() {
                client.write_tls(&mut c2s).expect("client out");
            }
            {
                let mut end = End {
                    rx: &mut c2s,
                    tx: &mut s2c,
                };
                server
                    .read_into(&mut end, &mut plain, 1 << 20, &mut scratch)
                    .expect("server in");
                handshake = handshake.or_else(|| server.take_handshake());
                let mut reply = if plain.is_empty() {
                    Vec::new()
                } else {
                    b"hello client".to_vec()
                };
                server.flush(&mut end, &mut reply).expect("server out");
            }
            while !s2c.is_empty() {
                client.read_tls(&mut s2c).expect("client read");
                client.process_new_packets().expect("client process");
            }
            if !plain.is_empty() && handshake.is_some() {
                break;
            }
        }
        assert_eq!(plain, b"hello server");
        assert_eq!(
            handshake,
            Some(Handshake {
                tls13: true,
                resumed: false,
                h2: true
            })
        );
        assert_eq!(server.take_handshake(), None, "reported once");
        assert_eq!(server.version_name(), Some("TLSv1.3"));
        let mut got = Vec::new();
        let _ = client.reader().read_to_end(&mut got);
        assert_eq!(got, b"hello client");
    }
}
