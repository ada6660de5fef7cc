//! Portier's admin API as the harness sees it: one blocking HTTP/1.1 GET
//! with the bearer token (no client library: `Connection: close`, the
//! server sends Content-Length), and what `GET /certificates` says of the
//! ACME names, counted by state.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;

/// One answer: status, body, how long it took end to end.
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
    pub took: Duration,
}

/// `GET path` on the admin API.
pub fn get(addr: SocketAddr, token: &str, path: &str) -> anyhow::Result<Answer> {
    let started = Instant::now();
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .with_context(|| format!("connect to the admin API {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .with_context(|| format!("reading GET {path}"))?;
    let took = started.elapsed();
    let (status, body) = split_response(&raw).with_context(|| format!("GET {path}"))?;
    Ok(Answer {
        status,
        body: body.to_vec(),
        took,
    })
}

/// Status code and body of a whole `Connection: close` response.
fn split_response(raw: &[u8]) -> anyhow::Result<(u16, &[u8])> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no end of head")?;
    let head = std::str::from_utf8(&raw[..end]).context("head not UTF-8")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no status in {:?}", head.lines().next()))?;
    Ok((status, &raw[end + 4..]))
}

/// The ACME part of `GET /certificates`, counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AcmeCounts {
    pub names: usize,
    pub valid: usize,
    pub pending: usize,
    pub failed: usize,
    pub action_required: usize,
    /// Names with an order running now.
    pub ordering: usize,
    /// `acme.orders.issued`, `acme.orders.failed`.
    pub orders_issued: u64,
    pub orders_failed: u64,
    /// Distinct `last_error`s, at most a few.
    pub errors: Vec<String>,
}

pub fn acme_counts(body: &[u8]) -> anyhow::Result<AcmeCounts> {
    let v: Value = serde_json::from_slice(body).context("GET /certificates: not JSON")?;
    let acme = &v["acme"];
    let Some(names) = acme["names"].as_array() else {
        bail!("GET /certificates: no acme.names (is [acme] on?)");
    };
    let mut c = AcmeCounts {
        names: names.len(),
        orders_issued: acme["orders"]["issued"].as_u64().unwrap_or(0),
        orders_failed: acme["orders"]["failed"].as_u64().unwrap_or(0),
        ..AcmeCounts::default()
    };
    for n in names {
        match n["state"].as_str() {
            Some("valid") => c.valid += 1,
            Some("pending") => c.pending += 1,
            Some("failed") => c.failed += 1,
            Some("action_required") => c.action_required += 1,
            _ => {}
        }
        if n["ordering"].as_bool() == Some(true) {
            c.ordering += 1;
        }
        if let Some(e) = n["last_error"].as_str()
            && c.errors.len() < 5
            && !c.errors.iter().any(|x| x == e)
        {
            c.errors.push(e.to_string());
        }
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_a_response() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
        let (status, body) = split_response(raw).expect("parses");
        assert_eq!((status, body), (200, &b"{}"[..]));
        assert!(split_response(b"HTTP/1.1 200 OK\r\n").is_err());
    }

    #[test]
    fn counts_names_by_state() {
        let body = br#"{"certificates": [], "acme": {"orders": {"issued": 3, "failed": 1},
          "names": [
            {"name": "a", "state": "valid", "ordering": false, "last_error": null},
            {"name": "b", "state": "pending", "ordering": true, "last_error": null},
            {"name": "c", "state": "failed", "ordering": false, "last_error": "boom"},
            {"name": "d", "state": "failed", "ordering": false, "last_error": "boom"}
          ]}}"#;
        let c = acme_counts(body).expect("parses");
        assert_eq!(
            (c.names, c.valid, c.pending, c.failed, c.ordering),
            (4, 1, 1, 2, 1)
        );
        assert_eq!((c.orders_issued, c.orders_failed), (3, 1));
        assert_eq!(c.errors, vec!["boom".to_string()]);
        assert!(acme_counts(br#"{"certificates": []}"#).is_err());
    }
}
