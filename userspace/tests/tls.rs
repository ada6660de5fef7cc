//! HTTPS through the real `portier`: SNI picks exact, wildcard and default
//! certificates (generated at test time), only TLS 1.2/1.3 with
//! forward-secret AEAD suites negotiate (checked with `openssl s_client`),
//! resumption works (rustls client), certificates swap in without a restart,
//! HTTPS requests are forwarded with `X-Forwarded-Proto: https`, the server
//! picks the cipher suite, a flood of IP-address SNIs is counted rather than
//! logged, a non-WebSocket upgrade over TLS is not forwarded, and `portier
//! self-signed` certificates last 90 days at most.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme};
use support::proc::{Backend, Proxy, app, seen_header};

fn write_cert(dir: &Path, file: &str, names: &[&str]) {
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let pem = portier::tls::self_signed_pem(&names).expect("rcgen");
    // Write then rename: the watcher never sees half a file.
    let tmp = dir.join(format!(".{file}.tmp"));
    std::fs::write(&tmp, pem).expect("write cert");
    std::fs::rename(&tmp, dir.join(format!("{file}.pem"))).expect("rename cert");
}

struct TlsProxy {
    proxy: Proxy,
    certs: std::path::PathBuf,
    https_port: u16,
}

fn start(backend: &Backend) -> TlsProxy {
    start_with(backend, "")
}

/// `rest`: more config after the app (e.g. an `[admin]` section).
fn start_with(backend: &Backend, rest: &str) -> TlsProxy {
    let certs = std::env::temp_dir().join(format!(
        "portier-tls-it-{}-{}",
        std::process::id(),
        support::proc::free_port()
    ));
    std::fs::create_dir_all(&certs).expect("mkdir");
    write_cert(&certs, "default", &["default.localhost"]);
    write_cert(&certs, "www.example.test", &["www.example.test"]);
    write_cert(&certs, "_wildcard.example.test", &["*.example.test"]);
    let https_port = support::proc::free_port();
    let proxy = Proxy::start(
        &format!(
            "https = [\"127.0.0.1:{https_port}\"]\n[tls]\ncert_dir = \"{}\"\nreload_interval_ms = 100\n",
            certs.display()
        ),
        &format!(
            "{}\n{rest}",
            app(
                "demo",
                "www.example.test",
                &[backend],
                "force_https = true\n",
            )
        ),
    );
    TlsProxy {
        proxy,
        certs,
        https_port,
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.certs);
    }
}

/// `openssl s_client` output (stdout + stderr) for one handshake.
fn s_client(port: u16, args: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn subject_for(port: u16, sni: Option<&str>) -> String {
    let mut args = vec![];
    match sni {
        Some(name) => args.extend(["-servername", name]),
        None => args.push("-noservername"),
    }
    let out = s_client(port, &args);
    out.lines()
        .find(|l| l.starts_with("subject="))
        .map(str::to_string)
        .unwrap_or_else(|| panic!("no certificate for {sni:?}: {out}"))
}

#[test]
fn sni_picks_exact_then_wildcard_then_default() {
    let b = Backend::start("b");
    let p = start(&b);
    assert!(subject_for(p.https_port, Some("www.example.test")).contains("www.example.test"));
    assert!(subject_for(p.https_port, Some("api.example.test")).contains("*.example.test"));
    assert!(subject_for(p.https_port, Some("a.b.example.test")).contains("default.localhost"));
    assert!(subject_for(p.https_port, Some("other.test")).contains("default.localhost"));
    assert!(subject_for(p.https_port, None).contains("default.localhost"));
}

#[test]
fn only_tls12_and_tls13_with_forward_secret_aead_suites() {
    let b = Backend::start("b");
    let p = start(&b);
    let sni = ["-servername", "www.example.test"];
    for old in ["-tls1", "-tls1_1"] {
        let out = s_client(
            p.https_port,
            &[&sni[..], &[old, "-cipher", "DEFAULT:@SECLEVEL=0"]].concat(),
        );
        assert!(
            out.contains("Cipher is (NONE)") || out.contains("alert"),
            "{old} negotiated: {out}"
        );
    }
    // Non-forward-secret or non-AEAD TLS 1.2 suites are refused.
    for weak in [
        "AES128-SHA",
        "AES256-GCM-SHA384",
        "ECDHE-ECDSA-AES128-SHA",
        "ECDHE-ECDSA-AES256-SHA384",
    ] {
        let out = s_client(
            p.https_port,
            &[&sni[..], &["-tls1_2", "-cipher", weak]].concat(),
        );
        assert!(out.contains("Cipher is (NONE)"), "{weak} negotiated: {out}");
    }
    let ok12 = s_client(
        p.https_port,
        &[
            &sni[..],
            &["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"],
        ]
        .concat(),
    );
    assert!(
        ok12.contains("TLSv1.2, Cipher is ECDHE-ECDSA-AES128-GCM-SHA256"),
        "{ok12}"
    );
    let ok13 = s_client(p.https_port, &[&sni[..], &["-tls1_3"]].concat());
    assert!(ok13.contains("TLSv1.3, Cipher is TLS_"), "{ok13}");
    // ALPN offers http/1.1.
    let alpn = s_client(p.https_port, &[&sni[..], &["-alpn", "http/1.1"]].concat());
    assert!(alpn.contains("ALPN protocol: http/1.1"), "{alpn}");
}

#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn client_config(versions: &[&'static rustls::SupportedProtocolVersion]) -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
        .with_no_client_auth();
    Arc::new(cfg)
}

/// One GET over rustls; returns (resumed?, response text).
fn https_get(config: &Arc<ClientConfig>, port: u16, host: &str, path: &str) -> (bool, String) {
    let mut sock = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let name = ServerName::try_from(host.to_string()).expect("name");
    let mut conn = ClientConnection::new(config.clone(), name).expect("client");
    let mut tls = rustls::Stream::new(&mut conn, &mut sock);
    tls.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .expect("write");
    let mut out = Vec::new();
    let _ = tls.read_to_end(&mut out);
    let resumed = matches!(conn.handshake_kind(), Some(rustls::HandshakeKind::Resumed));
    (resumed, String::from_utf8_lossy(&out).into_owned())
}

#[test]
fn https_is_forwarded_as_https_and_sessions_resume() {
    let b = Backend::start("b");
    let p = start(&b);
    for versions in [
        &[&rustls::version::TLS13][..],
        &[&rustls::version::TLS12][..],
    ] {
        let cfg = client_config(versions);
        let (first, text) = https_get(&cfg, p.https_port, "www.example.test", "/secure");
        assert!(!first, "first handshake is full");
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(
            text.to_ascii_lowercase()
                .contains("\r\nstrict-transport-security: max-age=31536000\r\n"),
            "HSTS on HTTPS responses of a force_https app: {text}"
        );
        let body = &text[text.find("\r\n\r\n").map_or(0, |i| i + 4)..];
        let echo: serde_json::Value = serde_json::from_str(body).expect("echo json");
        assert_eq!(
            seen_header(&echo, "x-forwarded-proto").as_deref(),
            Some("https")
        );
        assert_eq!(
            seen_header(&echo, "x-forwarded-port"),
            Some(p.https_port.to_string())
        );
        let (resumed, text) = https_get(&cfg, p.https_port, "www.example.test", "/again");
        assert!(resumed, "second handshake resumed ({versions:?})");
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    }
}

#[test]
fn certificates_swap_in_without_a_restart() {
    let b = Backend::start("b");
    let p = start(&b);
    let cfg = client_config(&[&rustls::version::TLS13]);
    // A keep-alive connection opened before the swap.
    let mut sock = TcpStream::connect(("127.0.0.1", p.https_port)).expect("connect");
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut conn = ClientConnection::new(
        cfg.clone(),
        ServerName::try_from("www.example.test").expect("name"),
    )
    .expect("client");
    let req = b"GET /before HTTP/1.1\r\nHost: www.example.test\r\n\r\n";
    {
        let mut tls = rustls::Stream::new(&mut conn, &mut sock);
        tls.write_all(req).expect("write");
        let mut buf = [0u8; 4096];
        let n = tls.read(&mut buf).expect("read");
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    }
    // The renewed certificate's subject (CN) is its first name.
    write_cert(
        &p.certs,
        "www.example.test",
        &["renewed.example.test", "www.example.test"],
    );
    let mut swapped = false;
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(100));
        if subject_for(p.https_port, Some("www.example.test")).contains("renewed.example.test") {
            swapped = true;
            break;
        }
    }
    assert!(swapped, "new handshakes get the new certificate");
    // The old connection still works.
    let mut tls = rustls::Stream::new(&mut conn, &mut sock);
    tls.write_all(b"GET /after HTTP/1.1\r\nHost: www.example.test\r\n\r\n")
        .expect("write");
    let mut buf = [0u8; 4096];
    let n = tls.read(&mut buf).expect("read");
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    // A broken file is refused and the last good store keeps serving.
    std::fs::write(p.certs.join("broken.pem"), "garbage").expect("write");
    std::thread::sleep(Duration::from_millis(400));
    assert!(subject_for(p.https_port, Some("www.example.test")).contains("renewed.example.test"));
    let _ = &p.proxy;
}

/// The server's preference decides, whatever order the client offers.
#[test]
fn the_server_chooses_the_cipher_suite() {
    let b = Backend::start("b");
    let p = start(&b);
    let sni = ["-servername", "www.example.test"];
    // The client ranks the server's last choice first.
    let tls12 = s_client(
        p.https_port,
        &[
            &sni[..],
            &[
                "-tls1_2",
                "-cipher",
                "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-GCM-SHA256",
            ],
        ]
        .concat(),
    );
    assert!(
        tls12.contains("TLSv1.2, Cipher is ECDHE-ECDSA-AES128-GCM-SHA256"),
        "{tls12}"
    );
    let tls13 = s_client(
        p.https_port,
        &[
            &sni[..],
            &[
                "-tls1_3",
                "-ciphersuites",
                "TLS_CHACHA20_POLY1305_SHA256:TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256",
            ],
        ]
        .concat(),
    );
    assert!(
        tls13.contains("TLSv1.3, Cipher is TLS_AES_128_GCM_SHA256"),
        "{tls13}"
    );
    // Offered alone, a lower-ranked suite still negotiates.
    let only = s_client(
        p.https_port,
        &[
            &sni[..],
            &["-tls1_3", "-ciphersuites", "TLS_CHACHA20_POLY1305_SHA256"],
        ]
        .concat(),
    );
    assert!(
        only.contains("TLSv1.3, Cipher is TLS_CHACHA20_POLY1305_SHA256"),
        "{only}"
    );
}

/// 200 handshakes with an IP address as SNI (as some clients and scanners
/// send): the default certificate serves them, the log stays quiet, and the
/// metric counts every one.
#[test]
fn ip_address_sni_is_counted_not_logged() {
    let b = Backend::start("b");
    let admin = support::proc::free_port();
    let token_dir = std::env::temp_dir().join(format!("portier-tls-admin-{admin}"));
    std::fs::create_dir_all(&token_dir).expect("mkdir");
    let token_file = token_dir.join("admin.token");
    let token = "0123456789abcdef0123456789abcdef";
    std::fs::write(&token_file, token).expect("token");
    std::fs::set_permissions(
        &token_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .expect("chmod");
    let p = start_with(
        &b,
        &format!(
            "[admin]\nlisten = \"127.0.0.1:{admin}\"\ntoken_file = \"{}\"\n",
            token_file.display()
        ),
    );
    assert!(subject_for(p.https_port, Some("127.0.0.1")).contains("default.localhost"));
    while p.proxy.portier.lines.try_recv().is_ok() {}
    let port = p.https_port;
    let workers: Vec<_> = (0..8)
        .map(|_| {
            std::thread::spawn(move || {
                for _ in 0..25 {
                    let out = s_client(port, &["-servername", "127.0.0.1", "-tls1_3"]);
                    assert!(out.contains("TLSv1.3, Cipher is"), "{out}");
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("handshakes");
    }
    std::thread::sleep(Duration::from_millis(500));
    let lines: Vec<String> = p.proxy.portier.lines.try_iter().collect();
    assert!(lines.len() <= 3, "{} log lines: {lines:#?}", lines.len());
    let (code, metrics) = support::proc::curl(&[
        "-s",
        "-H",
        &format!("Authorization: Bearer {token}"),
        &format!("http://127.0.0.1:{admin}/metrics"),
    ]);
    assert_eq!(code, 0);
    assert!(
        metrics.contains("portier_tls_bad_sni_total{kind=\"ip_address\"} 201\n"),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("tls"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(metrics.contains("portier_tls_bad_sni_total{kind=\"invalid\"} 0\n"));
    let _ = std::fs::remove_dir_all(&token_dir);
}

/// `Upgrade: h2c` over TLS is not forwarded: the next request on the same
/// TLS connection is processed (its forged X-Forwarded-For replaced).
#[test]
fn h2c_upgrade_over_tls_is_not_forwarded() {
    let b = Backend::start("b");
    let p = start(&b);
    let cfg = client_config(&[&rustls::version::TLS13]);
    let mut sock = TcpStream::connect(("127.0.0.1", p.https_port)).expect("connect");
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut conn =
        ClientConnection::new(cfg, ServerName::try_from("www.example.test").expect("name"))
            .expect("client");
    let mut tls = rustls::Stream::new(&mut conn, &mut sock);
    tls.write_all(
        b"GET /one HTTP/1.1\r\nHost: www.example.test\r\nConnection: Upgrade, HTTP2-Settings\r\n\
          Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n\
          GET /two HTTP/1.1\r\nHost: www.example.test\r\nX-Forwarded-For: 6.6.6.6\r\n\
          Connection: close\r\n\r\n",
    )
    .expect("write");
    let mut out = Vec::new();
    let _ = tls.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    let bodies: Vec<serde_json::Value> = text
        .split("HTTP/1.1 ")
        .skip(1)
        .map(|r| {
            assert!(r.starts_with("200"), "{text}");
            let body = &r[r.find("\r\n\r\n").expect("head") + 4..];
            serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {text}"))
        })
        .collect();
    assert_eq!(bodies.len(), 2, "{text}");
    assert_eq!(seen_header(&bodies[0], "upgrade"), None);
    assert_eq!(seen_header(&bodies[0], "http2-settings"), None);
    assert_eq!(bodies[1]["target"], "/two");
    assert_eq!(
        seen_header(&bodies[1], "x-forwarded-for").as_deref(),
        Some("127.0.0.1")
    );
}

/// `portier self-signed`: valid from an hour ago for 90 days, or fewer
/// with `--days`, never more.
#[test]
fn self_signed_certificates_last_90_days_at_most() {
    let dir = std::env::temp_dir().join(format!(
        "portier-self-signed-{}",
        support::proc::free_port()
    ));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let validity = |extra: &[&str]| {
        let out = dir.join("c.pem");
        let status = Command::new(support::proc::bin())
            .args(["self-signed", "--names", "a.test", "--out"])
            .arg(&out)
            .args(extra)
            .output()
            .expect("portier self-signed");
        assert!(status.status.success(), "{status:?}");
        let pem = std::fs::read(&out).expect("pem");
        let der = rustls::pki_types::pem::PemObject::pem_slice_iter(&pem)
            .next()
            .map(|c: Result<CertificateDer<'static>, _>| c.expect("pem"))
            .expect("a certificate");
        let (_, cert) = x509_parser::parse_x509_certificate(&der).expect("x509");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs() as i64;
        (
            cert.validity().not_before.timestamp() - now,
            cert.validity().not_after.timestamp() - now,
        )
    };
    let day = 86_400;
    let (before, after) = validity(&[]);
    assert!((-3610..=-3590).contains(&before), "{before}");
    assert!((90 * day - 10..=90 * day).contains(&after), "{after}");
    let (_, after) = validity(&["--days", "7"]);
    assert!((7 * day - 10..=7 * day).contains(&after), "{after}");
    let (_, after) = validity(&["--days", "3650"]);
    assert!(
        (90 * day - 10..=90 * day).contains(&after),
        "capped: {after}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
