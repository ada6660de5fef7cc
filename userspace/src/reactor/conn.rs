//! Connection records and their socket I/O: a client connection, a backend
//! connection, the request exchange between them, and buffered read/flush.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use mio::Token;
use mio::net::TcpStream;

use crate::http::h1::{BodyDecoder, BodyKind};
use crate::sched::balance::{BackendId, Balancer};

/// Bytes read per `read` call.
pub const READ_CHUNK: usize = 16 * 1024;
/// Stop reading a side when the other side's output buffer exceeds this.
pub const HIGH_WATER: usize = 256 * 1024;

/// A slab slot. Backend connections are boxed so every slot — most of them
/// idle client connections — is only as large as a `Client`.
pub enum Conn {
    Client(Client),
    Upstream(Box<Upstream>),
}

/// One request on its way: from parsed head to the end of its response.
/// Lives in the reactor's exchange slab; a client holds its id (one for
/// HTTP/1.x, one per stream for HTTP/2), and so does the backend connection
/// serving it.
pub struct Exchange {
    /// The app's counters (requests by method and status class).
    pub app_stats: Arc<crate::snapshot::AppStats>,
    /// Method class for the counters: the method as received.
    pub method: Box<str>,
    pub client: Token,
    /// When the request's first byte arrived (latency metrics, access log).
    pub started: Instant,
    /// Status of the response sent (0 until its head is sent).
    pub status: u16,
    /// HTTP/2 stream id; 0 for HTTP/1.x.
    pub sid: u32,
    pub balancer: Arc<Balancer>,
    /// Encoded request head, waiting for a backend connection.
    pub head: Vec<u8>,
    /// Request body still to come from the client.
    pub body: RequestBody,
    pub is_head: bool,
    /// Safe to send again after a backend cut it before answering (RFC 9110
    /// §9.2.2 idempotent method, no body).
    pub idempotent: bool,
    pub upgrade: bool,
    pub client_version: u8,
    /// The client connection stays open after this exchange (HTTP/1.x).
    pub keep_alive: bool,
    pub request_id: String,
    /// `Strict-Transport-Security` value added to the response (HTTPS, forced).
    pub hsts: Option<String>,
    /// Sticky sessions of the app, and the backend the client's cookie names.
    pub sticky: Option<Arc<crate::sticky::Sticky>>,
    pub preferred: Option<BackendId>,
    pub secure: bool,
    /// The client accepts gzip and the app compresses.
    pub gzip_ok: bool,
    pub upstream: Option<Token>,
    pub backend: Option<BackendId>,
    /// Backends that failed this request (not tried again for it).
    pub tried: Vec<BackendId>,
    pub attempts: u32,
    pub queued: bool,
    pub response_started: bool,
    /// How response payload reaches the client.
    pub out: OutMode,
    /// HTTP/2: response bytes ready for DATA frames but over the stream's
    /// send window (sent first when capacity comes back).
    pub h2_stash: Vec<u8>,
    /// HTTP/2: request payload received but not yet credited back to the
    /// client (WINDOW_UPDATE follows forwarding: request backpressure).
    pub h2_unreleased: usize,
    /// What the access log needs (only when it is on).
    pub log: Option<Box<LogInfo>>,
}

/// Access-log facts gathered along an exchange.
pub struct LogInfo {
    pub app: String,
    pub host: String,
    pub method: String,
    pub path: String,
    pub tls: Option<&'static str>,
    /// When a backend was picked (end of queueing).
    pub picked: Option<Instant>,
    /// When the backend connection was ready (connected, or taken from the pool).
    pub connected: Option<Instant>,
    /// When the response head arrived.
    pub head: Option<Instant>,
    /// Response body bytes handed to the client.
    pub bytes: u64,
}

impl Exchange {
    /// The final response head arrived: mark the exchange started and choose
    /// how its body reaches the client — gzip when eligible, re-framed for
    /// an HTTP/1.0 client, raw otherwise; HTTP/2 always takes the payload.
    /// For HTTP/1.x the head's framing is rewritten to match. Returns the
    /// backend's own framing (what the body decoder must follow).
    pub fn begin_response(
        &mut self,
        head: &mut crate::http::h1::ResponseHead,
        now: Instant,
        gzip_min_size: u64,
        gzip_level: u32,
    ) -> BodyKind {
        use crate::compress::{Gzip, rewrite_head, should_compress};
        self.response_started = true;
        self.status = head.status;
        if let Some(l) = self.log.as_mut() {
            l.head = Some(now);
        }
        let backend_kind = head.body;
        let h1 = self.sid == 0;
        let chunked = h1 && self.client_version >= 1;
        if self.gzip_ok && should_compress(head, self.is_head, gzip_min_size) {
            rewrite_head(head);
            if h1 {
                head.body = if chunked {
                    BodyKind::Chunked
                } else {
                    BodyKind::CloseDelimited
                };
            }
            self.out = OutMode::Gzip {
                gz: Box::new(Gzip::new(gzip_level)),
                chunked,
            };
        } else if !h1 {
            self.out = OutMode::Payload { chunked: false };
        } else if self.client_version == 0 && backend_kind == BodyKind::Chunked {
            head.body = BodyKind::CloseDelimited;
            self.out = OutMode::Payload { chunked: false };
        } else {
            self.out = OutMode::Raw;
        }
        backend_kind
    }

    /// Fields Portier adds to every response it forwards, whatever the
    /// protocol: the request id, HSTS when forced, and the sticky cookie
    /// when the client is not already bound to the backend that answered.
    pub fn response_extras(&self) -> Vec<(&'static str, Vec<u8>)> {
        let mut extra = vec![("X-Request-ID", self.request_id.clone().into_bytes())];
        if let Some(h) = &self.hsts {
            extra.push(("Strict-Transport-Security", h.clone().into_bytes()));
        }
        if let (Some(st), Some(b)) = (&self.sticky, self.backend)
            && self.preferred != Some(b)
            && let Some(c) = st.set_cookie(b, self.secure)
        {
            extra.push(("Set-Cookie", c.into_bytes()));
        }
        extra
    }
}

/// Where the request body comes from.
pub enum RequestBody {
    None,
    /// HTTP/1.x: raw bytes from the client's read buffer, validated by the decoder.
    H1(BodyDecoder),
    /// HTTP/2: DATA payload, already framed for the backend (raw for a known
    /// length, chunk-encoded otherwise); `ended` once END_STREAM arrived.
    H2 {
        pending: Vec<u8>,
        chunked: bool,
        ended: bool,
    },
}

impl RequestBody {
    pub fn is_done(&self) -> bool {
        match self {
            RequestBody::None => true,
            RequestBody::H1(_) => false,
            RequestBody::H2 { pending, ended, .. } => *ended && pending.is_empty(),
        }
    }
}

/// How response body bytes are written to the client.
pub enum OutMode {
    /// HTTP/1.1 as received (sized or chunked framing passed through).
    Raw,
    /// Payload only: `chunked` re-frames it, else it is close-delimited
    /// (HTTP/1.0) or DATA (HTTP/2).
    Payload { chunked: bool },
    /// Payload gzipped, then framed as for `Payload`.
    Gzip {
        gz: Box<crate::compress::Gzip>,
        chunked: bool,
    },
}

pub enum ClientState {
    /// Waiting for (the rest of) a request head.
    Idle,
    /// A request is being served (queued, connecting, or streaming): its exchange id.
    Busy(usize),
    /// Upgraded (WebSocket): bytes flow both ways untouched.
    Tunnel(Token),
    /// HTTP/2: the connection machine and its streams' exchanges.
    H2(Box<H2Client>),
}

pub struct H2Client {
    pub conn: crate::http::h2::ServerConn,
    /// Stream id → exchange id.
    pub streams: std::collections::HashMap<u32, usize>,
}

pub struct Client {
    pub sock: TcpStream,
    /// TLS session on HTTPS listeners (plaintext in `rbuf`/`wbuf`).
    pub tls: Option<Box<rustls::ServerConnection>>,
    pub scheme: crate::http::forward::Scheme,
    pub peer: SocketAddr,
    pub port: u16,
    pub rbuf: Vec<u8>,
    pub wbuf: Vec<u8>,
    pub state: ClientState,
    /// The client closed its sending side.
    pub eof: bool,
    /// Reading stopped at a buffer limit; must be resumed explicitly.
    pub read_paused: bool,
    pub close_after_flush: bool,
    /// The TLS handshake was seen complete (counted, protocol chosen).
    pub handshake_seen: bool,
    /// When the first byte of the current head arrived (monotonic, wall).
    pub head_started: Option<(Instant, SystemTime)>,
    pub deadline: super::timers::Deadline,
}

pub enum ResponseState {
    Head,
    Body(BodyDecoder),
    Tunnel,
}

pub struct Upstream {
    pub sock: TcpStream,
    pub addr: SocketAddr,
    pub balancer: Arc<Balancer>,
    pub backend: BackendId,
    /// The exchange being served (`None`: idle in the pool, or a tunnel).
    pub exchange: Option<usize>,
    /// The client of an upgraded (tunnel) connection.
    pub tunnel_client: Option<Token>,
    pub connecting: bool,
    /// Taken from the idle pool (a failure may just be a stale connection).
    pub reused: bool,
    pub wbuf: Vec<u8>,
    pub rbuf: Vec<u8>,
    pub resp: ResponseState,
    pub resp_keep_alive: bool,
    /// Request bytes written to the socket for the current exchange.
    pub written: u64,
    pub eof: bool,
    pub read_paused: bool,
    pub deadline: super::timers::Deadline,
}

/// Outcome of draining a socket into a buffer.
pub struct ReadOutcome {
    pub bytes: usize,
    pub eof: bool,
    /// Stopped because the buffer reached `cap`, not because the socket was empty.
    pub paused: bool,
}

/// Read into `buf` until the socket would block, hits EOF, or `buf` reaches
/// `cap`. Reads go through the reactor's `scratch` buffer, so a connection
/// holds only the bytes it has (nothing while idle). With `drain == false` a
/// short read ends the loop: the receive queue was empty at that moment, and
/// new data raises a new edge — one `read` per event instead of two. When
/// the peer may have closed (`EPOLLRDHUP`), pass `drain` to see the EOF.
pub fn read_into(
    sock: &mut TcpStream,
    buf: &mut Vec<u8>,
    cap: usize,
    scratch: &mut [u8],
    drain: bool,
) -> io::Result<ReadOutcome> {
    let mut total = 0;
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
            return Ok(ReadOutcome {
                bytes: total,
                eof: false,
                paused: false,
            });
        };
        match sock.read(dst) {
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
                if n < want && !drain {
                    return Ok(ReadOutcome {
                        bytes: total,
                        eof: false,
                        paused: false,
                    });
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return Ok(ReadOutcome {
                    bytes: total,
                    eof: false,
                    paused: false,
                });
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Write as much of `buf` as the socket takes; returns bytes written.
pub fn flush(sock: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<usize> {
    let mut written = 0;
    while written < buf.len() {
        match sock.write(&buf[written..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                buf.drain(..written);
                return Err(e);
            }
        }
    }
    buf.drain(..written);
    Ok(written)
}

/// Read plaintext from a client, through TLS when it has a session.
pub fn client_read_into(
    c: &mut Client,
    cap: usize,
    scratch: &mut [u8],
    drain: bool,
) -> io::Result<ReadOutcome> {
    match c.tls.as_deref_mut() {
        None => read_into(&mut c.sock, &mut c.rbuf, cap, scratch, drain),
        Some(tls) => tls_read(tls, &mut c.sock, &mut c.rbuf, cap, scratch),
    }
}

/// Write a client's pending plaintext (and TLS records); bytes of `wbuf` taken.
pub fn client_flush(c: &mut Client) -> io::Result<usize> {
    match c.tls.as_deref_mut() {
        None => flush(&mut c.sock, &mut c.wbuf),
        Some(tls) => tls_flush(tls, &mut c.sock, &mut c.wbuf),
    }
}

/// Nothing left to send to the client, at any layer.
pub fn client_output_empty(c: &Client) -> bool {
    c.wbuf.is_empty() && c.tls.as_ref().is_none_or(|t| !t.wants_write())
}

fn tls_read(
    tls: &mut rustls::ServerConnection,
    sock: &mut TcpStream,
    buf: &mut Vec<u8>,
    cap: usize,
    scratch: &mut [u8],
) -> io::Result<ReadOutcome> {
    let mut total = 0;
    let mut socket_eof = false;
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
            match tls.reader().read(dst) {
                Ok(0) => {
                    // close_notify: a clean end of the stream.
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
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    // TCP closed without close_notify: an end all the same.
                    return Ok(ReadOutcome {
                        bytes: total,
                        eof: true,
                        paused: false,
                    });
                }
                Err(e) => return Err(e),
            }
        }
        if socket_eof {
            return Ok(ReadOutcome {
                bytes: total,
                eof: true,
                paused: false,
            });
        }
        // More records from the socket.
        match tls.read_tls(sock) {
            Ok(0) => socket_eof = true,
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
        if let Err(e) = tls.process_new_packets() {
            // Tell the peer why (the alert is queued), then give up.
            let _ = tls.write_tls(sock);
            return Err(io::Error::new(io::ErrorKind::InvalidData, e));
        }
    }
}

fn tls_flush(
    tls: &mut rustls::ServerConnection,
    sock: &mut TcpStream,
    wbuf: &mut Vec<u8>,
) -> io::Result<usize> {
    let mut taken = 0;
    loop {
        let mut moved = 0;
        if !wbuf.is_empty() {
            moved = tls.writer().write(wbuf)?;
            wbuf.drain(..moved);
            taken += moved;
        }
        let mut wrote = false;
        while tls.wants_write() {
            match tls.write_tls(sock) {
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

#[cfg(test)]
mod size_tests {
    /// Idle keep-alive connections cost a slab slot each: keep it small.
    #[test]
    fn a_connection_slot_stays_small() {
        assert!(
            std::mem::size_of::<super::Conn>() <= 200,
            "{}",
            std::mem::size_of::<super::Conn>()
        );
    }
}
