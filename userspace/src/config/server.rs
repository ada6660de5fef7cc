//! `[server]` and `[limits]`: listeners, threads, the error header, trusted
//! proxies, and every request limit and timeout (SPEC §3 defaults).

use serde::Deserialize;

use super::Cidr;
use super::listen::Listen;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// Plain-HTTP listeners (one SO_REUSEPORT socket per reactor thread
    /// each): addresses, or tables with options (`proxy_protocol`).
    pub http: Vec<Listen>,
    /// HTTPS listeners (TLS, then HTTP/1.1 or HTTP/2 by ALPN); need `[tls]`.
    pub https: Vec<Listen>,
    /// Reactor threads; 0 = one per CPU.
    pub threads: usize,
    /// Name of the header carrying the reason of every error Portier produces.
    pub error_header: String,
    /// Peers whose `X-Forwarded-For` is trusted (appended to, not replaced),
    /// and the only ones a `proxy_protocol` listener accepts.
    pub trusted_proxies: Vec<Cidr>,
    /// Port announced in `X-Forwarded-Port` for plain HTTP; 0 = the listener's.
    pub public_http_port: u16,
    /// Same for HTTPS.
    pub public_https_port: u16,
    /// Key (any string, ≥ 16 bytes) authenticating sticky-session cookies;
    /// set the same on every node of a region. Default: random per process
    /// (cookies are re-issued after a restart).
    pub sticky_secret: Option<String>,
    /// Responses with a known length below this are not compressed.
    pub gzip_min_size: u64,
    /// gzip level, 1 (fast) to 9 (small).
    pub gzip_level: u32,
    /// Run as this user once listeners are bound and XDP is attached
    /// (started as root), keeping only the capabilities still needed.
    pub user: Option<String>,
    /// Write the process id here once serving (and again after a binary
    /// upgrade, by the new process); `portier upgrade` finds it there.
    pub pid_file: Option<std::path::PathBuf>,
    /// A binary upgrade fails (the old process keeps serving) when the new
    /// one has not said it serves within this.
    pub upgrade_timeout_ms: u64,
    /// After an upgrade, the old process keeps its open connections
    /// (WebSocket/SSE tunnels, HTTP/2, slow responses) at most this long.
    pub upgrade_drain_ms: u64,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            http: Vec::new(),
            https: Vec::new(),
            threads: 0,
            error_header: "X-Portier-Error".into(),
            trusted_proxies: Vec::new(),
            public_http_port: 0,
            public_https_port: 0,
            sticky_secret: None,
            gzip_min_size: 1024,
            gzip_level: 5,
            user: None,
            pid_file: None,
            upgrade_timeout_ms: 30_000,
            upgrade_drain_ms: 600_000,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitSettings {
    /// Whole request header section, bytes (→ 431).
    pub max_header_section: usize,
    /// One header line (or the request line), bytes (→ 431 / 414).
    pub max_header_line: usize,
    /// Header lines per request (→ 431).
    pub max_headers: usize,
    /// Request body, bytes: Content-Length up front and chunked while streaming (→ 413).
    pub max_body: u64,
    /// A request head must arrive whole within this (→ 408).
    pub header_timeout_ms: u64,
    /// Idle keep-alive client connections are closed after this.
    pub keepalive_timeout_ms: u64,
    /// Idle keep-alive backend connections are closed after this; keep it
    /// below the apps' own keep-alive timeout so a pooled connection is not
    /// reused just as the app closes it.
    pub backend_keepalive_ms: u64,
    /// Backend connect (→ 504 and quarantine).
    pub connect_timeout_ms: u64,
    /// Backend silence while a response is awaited or streaming (→ 504, or close
    /// once the response has started).
    pub read_timeout_ms: u64,
    /// WebSocket / upgraded streams: closed after this long without traffic
    /// in either direction.
    pub tunnel_idle_timeout_ms: u64,
    /// A queued request waits at most this long for a backend (→ 503).
    pub queue_timeout_ms: u64,
    /// An HTTP/2 response stream whose send window (stream or connection)
    /// stays at zero this long is reset (CANCEL) and its buffers freed.
    pub h2_stall_timeout_ms: u64,
}

impl Default for LimitSettings {
    fn default() -> Self {
        LimitSettings {
            max_header_section: 32 * 1024,
            max_header_line: 8 * 1024,
            max_headers: 100,
            max_body: 75_000_000,
            header_timeout_ms: 10_000,
            keepalive_timeout_ms: 60_000,
            backend_keepalive_ms: 2_000,
            connect_timeout_ms: 60_000,
            read_timeout_ms: 60_000,
            tunnel_idle_timeout_ms: 60_000,
            queue_timeout_ms: 30_000,
            h2_stall_timeout_ms: 30_000,
        }
    }
}

impl LimitSettings {
    pub fn validate(&self) -> Result<(), String> {
        if self.max_header_line > self.max_header_section {
            return Err("limits.max_header_line is larger than limits.max_header_section".into());
        }
        for (name, v) in [
            ("header_timeout_ms", self.header_timeout_ms),
            ("keepalive_timeout_ms", self.keepalive_timeout_ms),
            ("backend_keepalive_ms", self.backend_keepalive_ms),
            ("connect_timeout_ms", self.connect_timeout_ms),
            ("read_timeout_ms", self.read_timeout_ms),
            ("tunnel_idle_timeout_ms", self.tunnel_idle_timeout_ms),
            ("queue_timeout_ms", self.queue_timeout_ms),
            ("h2_stall_timeout_ms", self.h2_stall_timeout_ms),
        ] {
            if v == 0 {
                return Err(format!("limits.{name} must be positive"));
            }
        }
        Ok(())
    }
}

/// `[tls]`: where certificates come from.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSettings {
    /// Directory of `<name>.pem` files (chain + key): `www.example.com.pem`,
    /// `_wildcard.example.com.pem` for `*.example.com`, `default.pem`.
    pub cert_dir: std::path::PathBuf,
    /// How often the directory is checked for changed certificates.
    pub reload_interval_ms: u64,
    /// Offer HTTP/2 in ALPN (else HTTP/1.1 only).
    pub http2: bool,
    /// Cipher suites to offer, by IANA name (e.g. `TLS13_AES_128_GCM_SHA256`,
    /// `TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256`); empty = all forward-secret
    /// AEAD suites. Only these can be chosen; others are refused.
    pub cipher_suites: Vec<String>,
    /// Key-exchange groups (`X25519`, `secp256r1`, `secp384r1`); empty = all.
    pub groups: Vec<String>,
    /// `["1.2", "1.3"]` by default.
    pub versions: Vec<String>,
    /// Session resumption (tickets and cache).
    pub resumption: bool,
}

impl Default for TlsSettings {
    fn default() -> Self {
        TlsSettings {
            cert_dir: std::path::PathBuf::from("/etc/portier/certs"),
            reload_interval_ms: 2_000,
            http2: true,
            cipher_suites: Vec::new(),
            groups: Vec::new(),
            versions: vec!["1.2".into(), "1.3".into()],
            resumption: true,
        }
    }
}
