//! One DNS exchange with one server, on tokio sockets: UDP with a
//! retransmission and a TCP retry when the reply is truncated (RFC 1035
//! section 4.2, RFC 7766 section 5), or TCP only (our dynamic updates).
//!
//! Owns: the sockets of one exchange, the deadline, matching a reply to
//! its question (id, QR bit, question section; RFC 5452 section 9.1).
//! Must not: interpret rcodes or records (the callers do) or block.
//! Fed by: an encoded `Message`. Emits: the reply, parsed and as bytes
//! (TSIG verification needs the bytes).

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, ResponseCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::{Instant, timeout_at};

use super::DnsError;

/// How long one exchange (all its tries) may take.
pub const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(3);

/// UDP tries before giving up (each gets an equal share of the timeout).
const UDP_TRIES: u32 = 2;

/// Largest UDP reply we accept (we send no EDNS, so 512 is what servers
/// send; some send more anyway).
const UDP_BUF: usize = 4096;

/// A reply matched to its question.
#[derive(Debug)]
pub struct Reply {
    pub message: Message,
    pub bytes: Vec<u8>,
}

/// How to talk to the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// UDP, TCP when the reply has TC set.
    Udp,
    /// TCP only (updates: no retransmission, no size limit).
    Tcp,
}

/// Send `request` (already signed if it is to be) to `server` and wait
/// for its reply until `timeout` has passed.
pub async fn exchange(
    server: SocketAddr,
    request: &Message,
    transport: Transport,
    timeout: Duration,
) -> Result<Reply, DnsError> {
    let bytes = request
        .to_vec()
        .map_err(|e| DnsError::Internal(format!("encoding a DNS message: {e}")))?;
    let deadline = Instant::now() + timeout;
    let io_err = |e: io::Error| DnsError::Exchange {
        server,
        reason: e.to_string(),
        unreachable: is_unreachable(&e),
    };
    let timed_out = || DnsError::Timeout { server, timeout };
    if transport == Transport::Udp {
        let reply = udp(server, &bytes, request, deadline)
            .await
            .map_err(io_err)?
            .ok_or_else(timed_out)?;
        if !reply.message.truncation {
            return Ok(reply);
        }
        tracing::debug!("DNS: truncated reply from {server}, retrying over TCP");
    }
    timeout_at(deadline, tcp(server, &bytes, request))
        .await
        .map_err(|_| timed_out())?
        .map_err(io_err)
}

/// UDP: None when nothing matching came back before the deadline.
async fn udp(
    server: SocketAddr,
    bytes: &[u8],
    request: &Message,
    deadline: Instant,
) -> io::Result<Option<Reply>> {
    let local: SocketAddr = match server {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(server).await?;
    let total = deadline.saturating_duration_since(Instant::now());
    let mut buf = vec![0u8; UDP_BUF];
    for try_no in 1..=UDP_TRIES {
        socket.send(bytes).await?;
        let try_deadline = if try_no == UDP_TRIES {
            deadline
        } else {
            Instant::now() + total / UDP_TRIES
        };
        loop {
            let n = match timeout_at(try_deadline, socket.recv(&mut buf)).await {
                Err(_) => break,
                Ok(r) => r?,
            };
            // Anything else on this socket (late replies, spoofing
            // attempts) is dropped; we keep waiting for ours.
            let received = buf.get(..n).unwrap_or_default();
            if let Some(message) = matches(request, received) {
                return Ok(Some(Reply {
                    message,
                    bytes: received.to_vec(),
                }));
            }
        }
    }
    Ok(None)
}

/// TCP: two-byte length prefix each way (RFC 1035 section 4.2.2).
async fn tcp(server: SocketAddr, bytes: &[u8], request: &Message) -> io::Result<Reply> {
    let mut stream = TcpStream::connect(server).await?;
    let len = u16::try_from(bytes.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "DNS message over 64 KiB"))?;
    let mut out = Vec::with_capacity(bytes.len() + 2);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
    stream.write_all(&out).await?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await?;
    let mut received = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut received).await?;
    match matches(request, &received) {
        Some(message) => Ok(Reply {
            message,
            bytes: received,
        }),
        None => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the TCP reply does not match the question (id or question section)",
        )),
    }
}

/// `received` parsed, if it is the reply to `request`: a response, same
/// id, same question (names compared case-insensitively). An error reply
/// may come without a question section (FORMERR, NOTIMP).
pub fn matches(request: &Message, received: &[u8]) -> Option<Message> {
    let reply = Message::from_vec(received).ok()?;
    let same_question = reply.queries == request.queries
        || (reply.queries.is_empty() && reply.response_code != ResponseCode::NoError);
    (reply.message_type == MessageType::Response && reply.id == request.id && same_question)
        .then_some(reply)
}

/// This host cannot send to that address family at all (no IPv6 route):
/// not the server's fault.
fn is_unreachable(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENETUNREACH | libc::EAFNOSUPPORT | libc::EADDRNOTAVAIL)
    ) || e.kind() == io::ErrorKind::NetworkUnreachable
}

/// Rcode mnemonics as operators and `dig` spell them (RFC 6895 section 2.3).
pub fn rcode_name(rcode: ResponseCode) -> String {
    let name = match rcode {
        ResponseCode::NoError => "NOERROR",
        ResponseCode::FormErr => "FORMERR",
        ResponseCode::ServFail => "SERVFAIL",
        ResponseCode::NXDomain => "NXDOMAIN",
        ResponseCode::NotImp => "NOTIMP",
        ResponseCode::Refused => "REFUSED",
        ResponseCode::YXDomain => "YXDOMAIN",
        ResponseCode::YXRRSet => "YXRRSET",
        ResponseCode::NXRRSet => "NXRRSET",
        ResponseCode::NotAuth => "NOTAUTH",
        ResponseCode::NotZone => "NOTZONE",
        other => return format!("rcode {}", u16::from(other)),
    };
    name.to_string()
}

#[cfg(test)]
mod tests {
    use hickory_proto::op::{OpCode, Query};
    use hickory_proto::rr::{Name, RecordType};

    use super::*;

    fn question() -> Message {
        let mut m = Message::query();
        m.add_query(Query::query(
            Name::from_ascii("_acme-challenge.example.com.").expect("name"),
            RecordType::TXT,
        ));
        m
    }

    fn bytes(m: &Message) -> Vec<u8> {
        m.to_vec().expect("encode")
    }

    #[test]
    fn accepts_only_the_reply_to_our_question() {
        let q = question();
        let mut reply = Message::response(q.id, OpCode::Query);
        reply.add_queries(q.queries.clone());
        assert!(matches(&q, &bytes(&reply)).is_some());

        let mut upper = Message::response(q.id, OpCode::Query);
        upper.add_query(Query::query(
            Name::from_ascii("_ACME-challenge.EXAMPLE.com.").expect("name"),
            RecordType::TXT,
        ));
        assert!(matches(&q, &bytes(&upper)).is_some(), "0x20 case is fine");

        let mut other_id = reply.clone();
        other_id.metadata.id = q.id.wrapping_add(1);
        assert!(matches(&q, &bytes(&other_id)).is_none());

        let mut other_name = Message::response(q.id, OpCode::Query);
        other_name.add_query(Query::query(
            Name::from_ascii("example.com.").expect("name"),
            RecordType::TXT,
        ));
        assert!(matches(&q, &bytes(&other_name)).is_none());

        assert!(matches(&q, &bytes(&q)).is_none(), "a query is no reply");
        assert!(matches(&q, b"\x00\x01garbage").is_none());
    }

    #[test]
    fn an_error_reply_may_omit_the_question() {
        let q = question();
        let formerr = Message::error_msg(q.id, OpCode::Query, ResponseCode::FormErr);
        assert!(matches(&q, &bytes(&formerr)).is_some());
        let empty_ok = Message::response(q.id, OpCode::Query);
        assert!(matches(&q, &bytes(&empty_ok)).is_none());
    }

    #[test]
    fn rcodes_are_spelled_like_dig() {
        assert_eq!(rcode_name(ResponseCode::Refused), "REFUSED");
        assert_eq!(rcode_name(ResponseCode::NotAuth), "NOTAUTH");
        assert_eq!(rcode_name(ResponseCode::BADVERS), "rcode 16");
    }

    #[tokio::test]
    async fn a_silent_server_times_out() {
        // A bound socket that never answers.
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let addr = silent.local_addr().expect("addr");
        let err = exchange(
            addr,
            &question(),
            Transport::Udp,
            Duration::from_millis(200),
        )
        .await
        .expect_err("no reply");
        assert!(err.to_string().contains("did not answer within"), "{err}");
    }
}
