//! Unit tests of the TLS session (`session.rs`) against a rustls client
//! over an in-memory pipe: handshakes (TLS 1.3 and 1.2, ALPN, resumption),
//! plaintext both ways, records split across reads, the read cap, a socket
//! that would block, close_notify both ways, alerts on failure, and that
//! nothing is held once an exchange is done.

use std::collections::VecDeque;

use rustls::pki_types::pem::PemObject;

use super::*;

/// One side of an in-memory byte pipe: reads `rx`, writes `tx` (at most
/// `room` bytes, then it would block); an empty `rx` would block, as a
/// non-blocking socket does.
struct End<'a> {
    rx: &'a mut VecDeque<u8>,
    tx: &'a mut VecDeque<u8>,
    room: usize,
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
        let n = buf.len().min(self.room);
        if n == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.tx.extend(&buf[..n]);
        self.room -= n;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The server's configuration (a self-signed `session.test`, ALPN h2 then
/// http/1.1, resumption on) and a root store that trusts it.
fn server_config() -> (Arc<rustls::ServerConfig>, rustls::RootCertStore) {
    let pem = crate::tls::self_signed_pem(&["session.test".to_string()]).expect("cert");
    let store =
        crate::tls::CertStore::from_pems([("default", pem.as_bytes())], &crate::tls::provider())
            .expect("store");
    let tls = crate::tls::Tls::new(store, &[b"h2", b"http/1.1"]).expect("config");
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes()) {
        roots.add(cert.expect("pem")).expect("root");
    }
    (tls.config, roots)
}

fn client_config(
    roots: &rustls::RootCertStore,
    versions: &[&'static rustls::SupportedProtocolVersion],
    alpn: &[&[u8]],
) -> Arc<rustls::ClientConfig> {
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(crate::tls::provider()))
        .with_protocol_versions(versions)
        .expect("versions")
        .with_root_certificates(roots.clone())
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(cfg)
}

/// A server session and a rustls client joined by two byte queues.
struct Pair {
    server: Session,
    client: rustls::ClientConnection,
    c2s: VecDeque<u8>,
    s2c: VecDeque<u8>,
    /// Plaintext the server read.
    got: Vec<u8>,
    scratch: Vec<u8>,
}

impl Pair {
    fn new(server: &Arc<rustls::ServerConfig>, client: &Arc<rustls::ClientConfig>) -> Pair {
        Pair {
            server: Session::new(server.clone()).expect("session"),
            client: rustls::ClientConnection::new(
                client.clone(),
                "session.test".try_into().expect("name"),
            )
            .expect("client"),
            c2s: VecDeque::new(),
            s2c: VecDeque::new(),
            got: Vec::new(),
            // The reactor's scratch size.
            scratch: vec![0u8; 64 * 1024],
        }
    }

    /// The client's records into the pipe.
    fn client_out(&mut self) {
        while self.client.wants_write() {
            self.client.write_tls(&mut self.c2s).expect("client out");
        }
    }

    fn server_read(&mut self, cap: usize) -> io::Result<ReadOutcome> {
        let mut end = End {
            rx: &mut self.c2s,
            tx: &mut self.s2c,
            room: usize::MAX,
        };
        self.server
            .read_into(&mut end, &mut self.got, cap, &mut self.scratch)
    }

    fn server_flush(&mut self, wbuf: &mut Vec<u8>, room: usize) -> io::Result<usize> {
        let mut end = End {
            rx: &mut self.c2s,
            tx: &mut self.s2c,
            room,
        };
        self.server.flush(&mut end, wbuf)
    }

    fn server_close(&mut self) {
        let mut end = End {
            rx: &mut self.c2s,
            tx: &mut self.s2c,
            room: usize::MAX,
        };
        self.server.close(&mut end);
    }

    /// The client takes what the server sent: the plaintext, and whether
    /// close_notify came.
    fn client_in(&mut self) -> Result<(Vec<u8>, bool), rustls::Error> {
        let mut closed = false;
        let mut plain = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            loop {
                match self.client.reader().read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => plain.extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => panic!("client reader: {e}"),
                }
            }
            if self.s2c.is_empty() {
                return Ok((plain, closed));
            }
            self.client.read_tls(&mut self.s2c).expect("client read");
            closed |= self.client.process_new_packets()?.peer_has_closed();
        }
    }

    /// Run the handshake to its end on both sides: what the server settled.
    fn handshake(&mut self) -> Handshake {
        for _ in 0..10 {
            self.client_out();
            self.server_read(usize::MAX).expect("server in");
            let done = self.server.take_handshake();
            self.server_flush(&mut Vec::new(), usize::MAX)
                .expect("server out");
            self.client_in().expect("client in");
            if let Some(hs) = done {
                assert!(!self.client.is_handshaking());
                return hs;
            }
        }
        panic!("no handshake");
    }

    /// The client sends `data`; the server reads it whole.
    fn client_sends(&mut self, data: &[u8]) {
        let mut rest = data;
        while !rest.is_empty() {
            // The client buffers only so much.
            let n = self.client.writer().write(rest).expect("queue");
            rest = &rest[n..];
            self.client_out();
            let read = self.server_read(usize::MAX).expect("server in");
            assert!(!read.eof && !read.paused);
        }
        assert_eq!(self.got, data);
        self.got.clear();
    }

    /// The server sends `data`; the client reads it whole.
    fn server_sends(&mut self, data: &[u8]) {
        let mut wbuf = data.to_vec();
        assert_eq!(
            self.server_flush(&mut wbuf, usize::MAX)
                .expect("server out"),
            data.len()
        );
        assert!(wbuf.is_empty());
        assert!(!self.server.wants_write());
        let (plain, closed) = self.client_in().expect("client in");
        assert!(!closed);
        assert_eq!(plain, data);
    }

    /// Nothing held: no bytes in or out, no plaintext, no hello copy.
    fn assert_server_holds_nothing(&self) {
        let s = &self.server;
        assert_eq!(s.incoming.capacity(), 0, "incoming");
        assert_eq!(s.plain.capacity(), 0, "plain");
        assert_eq!(s.outgoing.capacity(), 0, "outgoing");
        assert!(s.hello.is_none(), "hello copy");
        assert!(!s.wants_write());
    }
}

/// `n` bytes of a recognisable pattern.
fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

#[test]
fn handshake_alpn_and_plaintext_both_ways_over_a_pipe() {
    let (server_cfg, roots) = server_config();
    let client_cfg = client_config(&roots, &[&rustls::version::TLS13], &[b"h2"]);
    let mut pair = Pair::new(&server_cfg, &client_cfg);
    pair.client
        .writer()
        .write_all(b"hello server")
        .expect("queue");
    let hs = pair.handshake();
    assert_eq!(
        hs,
        Handshake {
            tls13: true,
            resumed: false,
            h2: true
        }
    );
    assert_eq!(pair.server.take_handshake(), None, "reported once");
    assert_eq!(pair.server.take_hello_sni(), Some(HelloSni::DnsName));
    assert_eq!(pair.server.take_hello_sni(), None, "reported once");
    assert_eq!(pair.server.version_name(), Some("TLSv1.3"));
    // Sent with the client's Finished.
    assert_eq!(pair.got, b"hello server");
    pair.got.clear();
    pair.server_sends(b"hello client");
}

#[test]
fn an_exchange_leaves_no_buffer_behind() {
    let (server_cfg, roots) = server_config();
    let client_cfg = client_config(&roots, &[&rustls::version::TLS13], &[b"http/1.1"]);
    let mut pair = Pair::new(&server_cfg, &client_cfg);
    let hs = pair.handshake();
    assert!(!hs.h2);
    pair.assert_server_holds_nothing();
    pair.client_sends(b"GET / HTTP/1.1\r\nHost: session.test\r\n\r\n");
    pair.assert_server_holds_nothing();
    // Several records, more than one flush step.
    pair.server_sends(&pattern(200 * 1024));
    pair.assert_server_holds_nothing();
    pair.client_sends(&pattern(100 * 1024));
    pair.assert_server_holds_nothing();
}

#[test]
fn a_record_split_across_reads_still_decrypts() {
    let (server_cfg, roots) = server_config();
    let client_cfg = client_config(&roots, &[&rustls::version::TLS13], &[b"http/1.1"]);
    let mut pair = Pair::new(&server_cfg, &client_cfg);
    pair.handshake();
    for piece in [1, 5, 13, 100, 1000, 16 * 1024 + 7] {
        let data = pattern(40 * 1024 + piece);
        pair.client.writer().write_all(&data).expect("queue");
        let mut wire = VecDeque::new();
        while pair.client.wants_write() {
            pair.client.write_tls(&mut wire).expect("client out");
        }
        let mut held_partial = false;
        while !wire.is_empty() {
            let n = piece.min(wire.len());
            pair.c2s.extend(wire.drain(..n));
            let read = pair.server_read(usize::MAX).expect("server in");
            assert!(!read.eof && !read.paused);
            held_partial |= pair.server.incoming.capacity() > 0;
            // Never more than the one unfinished record (RFC 8446 §5.2:
            // 2^14 + 256 bytes of ciphertext at most, and the header).
            assert!(pair.server.incoming.len() < 5 + MAX_FRAGMENT + 256);
        }
        assert!(held_partial, "piece {piece}: no record was ever split");
        assert_eq!(pair.got, data, "piece {piece}");
        pair.got.clear();
        pair.assert_server_holds_nothing();
    }
}

#[test]
fn a_scratch_smaller_than_a_record_still_decrypts() {
    let (server_cfg, roots) = server_config();
    let client_cfg = client_config(&roots, &[&rustls::version::TLS13], &[b"http/1.1"]);
    let mut pair = Pair::new(&server_cfg, &client_cfg);
    pair.scratch = vec![0u8; 1000];
    pair.handshake();
    let data = pattern(50 * 1024);
    pair.client_sends(&data);
    pair.assert_server_holds_nothing();
}

#[test]
fn reading_pauses_at_the_cap_and_resumes_in_order() {
    let (server_cfg, roots) = server_config();
    let client_cfg = client_config(&roots, &[&rustls::version::TLS13], &[b"http/1.1"]);
    let mut pair = Pair::new(&server_cfg, &client_cfg);
    pair.handshake();
    let data = pattern(50 * 1024);
    pair.client.writer().write_all(&data).expect("queue");
    pair.client_out();
    let cap = 7000;
    let mut all = Vec::new();
    let mut pauses = 0;
    loop {
        let read = pair.server_read(cap).expect("server in");
        assert!(!read.eof);
        assert!(pair.got.len() <= cap, "never past the cap");
        assert_eq!(read.bytes, pair.got.len());
        all.append(&mut pair.got);
        if !read.paused {
            break;
        }
        pauses += 1;
        // Paused: the socket has nothing new, the session the rest.
        assert!(pair.c2s.is_empty());
    }
    assert!(pauses >= 7, "{pauses}");
    assert_eq!(all, data);
    pair.assert_server_holds_nothing();
}

#[test]
fn a_flush_during_a_pause_keeps_the_plaintext_in_order() {
    let (server_cfg, roots) = server_config();
    let client_cfg = client_config(&roots, &[&rustls::version::TLS13], &[b"http/1.1"]);
    let mut pair = Pair::new(&server_cfg, &client_cfg);
    pair.handshake();
    let data = pattern(40 * 1024);
    pair.client.writer().write_all(&data).expect("queue");
    pair.client_out();
    assert!(pair.server_read(100).expect("server in").paused);
    // A response goes out while the rest of the request waits.
    pair.server_sends(b"early answer");
    let mut all = std::mem::take(&mut pair.got);
    let read = pair.server_read(usize::MAX).expect("server in");
    assert!(!read.paused);
    all.append(&mut pair.got);
    assert_eq!(all, data);
    pair.assert_server_holds_nothing();
}

#[test]
fn records_wait_for_a_socket_that_would_block() {
    let (server_cfg, roots) = server_config();
    let client_cfg = client_config(&roots, &[&rustls::version::TLS13], &[b"http/1.1"]);
    let mut pair = Pair::new(&server_cfg, &client_cfg);
    pair.handshake();
    let data = pattern(300 * 1024);
    let mut wbuf = data.clone();
    let mut received = Vec::new();
    let mut rounds = 0;
    while !wbuf.is_empty() || pair.server.wants_write() {
        rounds += 1;
        assert!(rounds < 1000);
        pair.server_flush(&mut wbuf, 10_000).expect("server out");
        // Never more than one step's worth waits here.
        assert!(pair.server.outgoing.len() <= BUFFER_LIMIT + 8 * RECORD_OVERHEAD);
        let (plain, _) = pair.client_in().expect("client in");
        received.extend_from_slice(&plain);
    }
    assert!(rounds > 30, "{rounds}");
    assert_eq!(received, data);
    pair.assert_server_holds_nothing();
}

#[test]
fn close_notify_both_ways() {
    let (server_cfg, roots) = server_config();
    let client_cfg = client_config(&roots, &[&rustls::version::TLS13], &[b"http/1.1"]);

    // The client first: its last data, then the end.
    let mut pair = Pair::new(&server_cfg, &client_cfg);
    pair.handshake();
    pair.client.writer().write_all(b"bye").expect("queue");
    pair.client.send_close_notify();
    pair.client_out();
    let read = pair.server_read(usize::MAX).expect("server in");
    assert!(read.eof);
    assert_eq!(pair.got, b"bye");
    assert!(
        pair.server_read(usize::MAX).expect("again").eof,
        "stays ended"
    );
    // We may still answer, then close in turn.
    pair.server_sends(b"ok");
    pair.server_close();
    let (plain, closed) = pair.client_in().expect("client in");
    assert!(plain.is_empty() && closed);
    pair.assert_server_holds_nothing();

    // The server first.
    let mut pair = Pair::new(&server_cfg, &client_cfg);
    pair.handshake();
    let mut wbuf = b"last words".to_vec();
    pair.server_flush(&mut wbuf, usize::MAX)
        .expect("server out");
    pair.server_close();
    let (plain, closed) = pair.client_in().expect("client in");
    assert_eq!(plain, b"last words");
    assert!(closed);
}

#[test]
fn tls12_clients_handshake_and_exchange() {
    let (server_cfg, roots) = server_config();
    let client_cfg = client_config(&roots, &[&rustls::version::TLS12], &[b"h2"]);
    let mut pair = Pair::new(&server_cfg, &client_cfg);
    let hs = pair.handshake();
    assert_eq!(
        hs,
        Handshake {
            tls13: false,
            resumed: false,
            h2: true
        }
    );
    assert_eq!(pair.server.version_name(), Some("TLSv1.2"));
    pair.client_sends(&pattern(40 * 1024));
    pair.server_sends(&pattern(90 * 1024));
    pair.assert_server_holds_nothing();
    pair.client.send_close_notify();
    pair.client_out();
    assert!(pair.server_read(usize::MAX).expect("server in").eof);
    pair.server_close();
    assert!(pair.client_in().expect("client in").1);
}

#[test]
fn sessions_resume_over_tls13_and_tls12() {
    let (server_cfg, roots) = server_config();
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let client_cfg = client_config(&roots, &[version], &[b"http/1.1"]);
        let mut first = Pair::new(&server_cfg, &client_cfg);
        assert!(!first.handshake().resumed);
        // TLS 1.3 tickets come after the handshake.
        first.server_sends(b"x");
        let mut second = Pair::new(&server_cfg, &client_cfg);
        let hs = second.handshake();
        assert!(hs.resumed, "{version:?}");
        second.client_sends(b"again");
        second.server_sends(b"welcome back");
        second.assert_server_holds_nothing();
    }
}

#[test]
fn a_bad_record_is_answered_with_an_alert_and_the_error_sticks() {
    let (server_cfg, roots) = server_config();
    let client_cfg = client_config(&roots, &[&rustls::version::TLS13], &[b"http/1.1"]);
    let mut pair = Pair::new(&server_cfg, &client_cfg);
    pair.handshake();
    // Application data that does not decrypt.
    pair.c2s.extend([23, 3, 3, 0, 32]);
    pair.c2s.extend([0x5a; 32]);
    let err = pair.server_read(usize::MAX).expect_err("bad record");
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    assert_eq!(
        pair.client_in().expect_err("alert"),
        rustls::Error::AlertReceived(rustls::AlertDescription::BadRecordMac)
    );
    let again = pair.server_read(usize::MAX).expect_err("sticks");
    assert_eq!(again.to_string(), err.to_string());
    assert!(
        pair.server_flush(&mut b"late".to_vec(), usize::MAX)
            .is_err()
    );
    assert!(pair.s2c.is_empty(), "nothing after the alert");
}

#[test]
fn a_client_that_does_not_speak_tls_gets_an_alert() {
    let (server_cfg, _) = server_config();
    let mut server = Session::new(server_cfg).expect("session");
    let (mut rx, mut tx) = (VecDeque::new(), VecDeque::new());
    rx.extend(b"GET / HTTP/1.1\r\nHost: session.test\r\n\r\n");
    let mut end = End {
        rx: &mut rx,
        tx: &mut tx,
        room: usize::MAX,
    };
    let err = server
        .read_into(&mut end, &mut Vec::new(), usize::MAX, &mut [0u8; 4096])
        .expect_err("not TLS");
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    assert_eq!(server.take_hello_sni(), Some(HelloSni::Unknown));
    // A plaintext fatal alert record (RFC 8446 §6).
    let alert: Vec<u8> = tx.iter().copied().collect();
    assert_eq!(alert.first(), Some(&21), "{alert:?}");
    assert_eq!(alert.get(5), Some(&2), "fatal: {alert:?}");
}

#[test]
fn a_client_key_update_is_answered() {
    let (server_cfg, roots) = server_config();
    let client_cfg = client_config(&roots, &[&rustls::version::TLS13], &[b"http/1.1"]);
    let mut pair = Pair::new(&server_cfg, &client_cfg);
    pair.handshake();
    // KeyUpdate with update_requested (RFC 8446 §4.6.3): the server must
    // switch its own sending keys too.
    pair.client.refresh_traffic_keys().expect("key update");
    pair.client_sends(b"after the update");
    // rustls sends its own KeyUpdate ahead of the next data it encrypts.
    pair.server_sends(b"new keys both ways");
    pair.client_sends(b"and again");
    pair.assert_server_holds_nothing();
}
