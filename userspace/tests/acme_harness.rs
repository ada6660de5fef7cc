//! The ACME test harness itself, before Portier uses it: a real Pebble per
//! test (directory, management roots, its HTTPS verifying against the root
//! we generate, challtestsrv resolving any name to 127.0.0.1, a full
//! http-01 order with instant-acme) and `mini_acme.py` (RFC 8555 orders
//! with instant-acme 0.8.5, profiles, ARI renewal info, `replaces` and
//! `alreadyReplaced`, 429 + Retry-After).
//!
//! The http-01 answers come from a tiny std listener in this file; in the
//! Portier tests, Portier's plain-HTTP listener takes its place.

mod support;

use std::collections::HashMap;
use std::future::Future;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::pin::Pin;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use base64::Engine;
use bytes::Bytes;
use instant_acme::{
    Account, AuthorizationStatus, BodyWrapper, BytesResponse, CertificateIdentifier, ChallengeType,
    Error, ExternalAccountKey, HttpClient, Identifier, NewAccount, NewOrder, OrderStatus,
    RetryPolicy,
};
use rustls::pki_types::CertificateDer;
use support::mini_acme::MiniAcme;
use support::pebble::{Pebble, PebbleOpts};

const TEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Serves `/.well-known/acme-challenge/<token>` from a map; records the
/// Host header of each fetch. Stops on drop.
struct Http01Responder {
    port: u16,
    answers: Arc<Mutex<HashMap<String, String>>>,
    hosts: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl Http01Responder {
    fn start() -> Http01Responder {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind responder");
        let port = listener.local_addr().expect("addr").port();
        let answers = Arc::new(Mutex::new(HashMap::<String, String>::new()));
        let hosts = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (a, h, s) = (answers.clone(), hosts.clone(), stop.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = stream {
                    let _ = answer_http01(stream, &a, &h);
                }
            }
        });
        Http01Responder {
            port,
            answers,
            hosts,
            stop,
        }
    }

    fn set(&self, token: &str, key_authorization: &str) {
        self.answers
            .lock()
            .expect("lock")
            .insert(token.to_string(), key_authorization.to_string());
    }

    fn hosts(&self) -> Vec<String> {
        self.hosts.lock().expect("lock").clone()
    }
}

impl Drop for Http01Responder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so the thread sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn answer_http01(
    stream: TcpStream,
    answers: &Mutex<HashMap<String, String>>,
    hosts: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut host = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("host")
        {
            host = value.trim().to_string();
        }
    }
    hosts.lock().expect("lock").push(host);
    let path = request_line.split(' ').nth(1).unwrap_or("");
    let token = path.strip_prefix("/.well-known/acme-challenge/");
    let body = token.and_then(|t| answers.lock().expect("lock").get(t).cloned());
    let (status, body) = match body {
        Some(b) => ("200 OK", b),
        None => ("404 Not Found", String::new()),
    };
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
}

/// One exchange as instant-acme saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    uri: String,
    status: u16,
    retry_after: Option<String>,
}

/// instant-acme's HTTP client: plain-HTTP hyper, recording every response
/// so the test can read headers instant-acme does not surface
/// (Retry-After of a 429 problem).
struct RecordingClient {
    inner: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        BodyWrapper<Bytes>,
    >,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl HttpClient for RecordingClient {
    fn request(
        &self,
        req: http::Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, Error>> + Send>> {
        let method = req.method().to_string();
        let uri = req.uri().to_string();
        let fut = self.inner.request(req);
        let seen = self.seen.clone();
        Box::pin(async move {
            let rsp = fut.await.map_err(|e| Error::Other(Box::new(e)))?;
            let rsp = BytesResponse::from(rsp);
            seen.lock().expect("lock").push(Seen {
                method,
                uri,
                status: rsp.parts.status.as_u16(),
                retry_after: rsp
                    .parts
                    .headers
                    .get(http::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string),
            });
            Ok(rsp)
        })
    }
}

fn recording_client() -> (Box<dyn HttpClient>, Arc<Mutex<Vec<Seen>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let inner = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    (
        Box::new(RecordingClient {
            inner,
            seen: seen.clone(),
        }),
        seen,
    )
}

fn new_account() -> NewAccount<'static> {
    NewAccount {
        contact: &[],
        terms_of_service_agreed: true,
        only_return_existing: false,
    }
}

fn retry() -> RetryPolicy {
    RetryPolicy::new()
        .initial_delay(Duration::from_millis(50))
        .backoff(1.5)
        .timeout(Duration::from_secs(15))
}

/// A CSR (DER) for `names` with a fresh key, the way Portier will make it.
fn csr(names: &[&str]) -> Vec<u8> {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .expect("params");
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.serialize_request(&key).expect("csr").der().to_vec()
}

/// newOrder -> http-01 for every pending authorization -> ready ->
/// finalize -> the PEM chain.
async fn issue(
    account: &Account,
    responder: &Http01Responder,
    order: NewOrder<'_>,
    names: &[&str],
) -> Result<String, Error> {
    let mut order = account.new_order(&order).await?;
    let mut authzs = order.authorizations();
    while let Some(authz) = authzs.next().await {
        let mut authz = authz?;
        if authz.status == AuthorizationStatus::Valid {
            continue;
        }
        let mut challenge = authz
            .challenge(ChallengeType::Http01)
            .ok_or(Error::Str("no http-01 challenge"))?;
        responder.set(&challenge.token, challenge.key_authorization().as_str());
        challenge.set_ready().await?;
    }
    let status = order.poll_ready(&retry()).await?;
    assert_eq!(status, OrderStatus::Ready, "order {:?}", order.state());
    order.finalize_csr(&csr(names)).await?;
    order.poll_certificate(&retry()).await
}

/// The DER certificates of a PEM chain, in order.
fn pem_certs(pem: &str) -> Vec<CertificateDer<'static>> {
    pem.split("-----BEGIN CERTIFICATE-----")
        .skip(1)
        .map(|block| {
            let b64: String = block
                .split("-----END CERTIFICATE-----")
                .next()
                .unwrap_or("")
                .split_whitespace()
                .collect();
            let der = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .expect("PEM base64");
            CertificateDer::from(der)
        })
        .collect()
}

/// (not_before, not_after) in unix seconds.
fn validity(der: &[u8]) -> (i64, i64) {
    let (_, cert) = x509_parser::parse_x509_certificate(der).expect("parse cert");
    (
        cert.validity().not_before.timestamp(),
        cert.validity().not_after.timestamp(),
    )
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

/// `openssl verify` of a chain's leaf, intermediates untrusted, `roots`
/// trusted; returns openssl's output when it fails.
fn openssl_verify(dir: &Path, chain: &str, roots: &str) -> Result<(), String> {
    let leaf_end = chain.find("-----END CERTIFICATE-----").expect("a cert") + 25;
    std::fs::write(dir.join("leaf.pem"), &chain[..leaf_end]).expect("write");
    std::fs::write(dir.join("chain.pem"), chain).expect("write");
    std::fs::write(dir.join("roots.pem"), roots).expect("write");
    let out = Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(dir.join("roots.pem"))
        .arg("-untrusted")
        .arg(dir.join("chain.pem"))
        .arg(dir.join("leaf.pem"))
        .output()
        .expect("openssl");
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn scratch_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "portier-acme-{tag}-{}-{}",
        std::process::id(),
        support::proc::free_port()
    ));
    std::fs::create_dir_all(&dir).expect("mkdir");
    dir
}

fn api_problem(e: &Error) -> Option<&instant_acme::Problem> {
    match e {
        Error::Api(p) => Some(p),
        _ => None,
    }
}

#[test]
fn pebble_serves_directory_roots_and_resolves_any_name() {
    let pebble = Pebble::start(PebbleOpts::default());

    // The directory over HTTPS verifies against the root we generated, and
    // only against it.
    let root = pebble.tls_root_pem_path();
    let (code, dir) = support::proc::curl(&[
        "--cacert",
        root.to_str().expect("utf-8 path"),
        &pebble.directory_url(),
    ]);
    assert_eq!(code, 0, "curl --cacert tls root: {dir}\n{}", pebble.log());
    let dir: serde_json::Value = serde_json::from_str(&dir).expect("directory JSON");
    for field in [
        "newNonce",
        "newAccount",
        "newOrder",
        "revokeCert",
        "keyChange",
    ] {
        assert!(
            dir[field].as_str().is_some(),
            "directory lacks {field}: {dir}"
        );
    }
    // What Pebble 2.4 lacks, so mini_acme.py exists.
    assert!(dir.get("renewalInfo").is_none(), "{dir}");
    assert!(dir["meta"].get("profiles").is_none(), "{dir}");
    let (code, _) = support::proc::curl(&["--cacert", "/dev/null", &pebble.directory_url()]);
    assert_ne!(code, 0, "Pebble's HTTPS must not verify without our root");

    // The issuing root and intermediate from the management interface.
    let roots = pebble.issuing_roots_pem();
    assert!(roots.contains("-----BEGIN CERTIFICATE-----"), "{roots}");
    let inter = pebble.intermediates_pem();
    assert!(inter.contains("-----BEGIN CERTIFICATE-----"), "{inter}");
    assert!(pebble.management_url().starts_with("https://127.0.0.1:"));

    // challtestsrv answers A for any name with 127.0.0.1.
    let dns = pebble.dns_server();
    let out = Command::new("dig")
        .args(["+short", "+time=2", "+tries=2"])
        .arg(format!("@{}", dns.ip()))
        .args(["-p", &dns.port().to_string(), "anything.test", "A"])
        .output()
        .expect("dig (apt-get install bind9-dnsutils)");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "127.0.0.1",
        "dig: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The knobs reached Pebble.
    let log = pebble.log();
    assert!(log.contains("Disabling random VA sleeps"), "{log}");
    assert!(log.contains("reject 0% of good nonces"), "{log}");
    assert!(log.contains("authz reuse for each identifier 0%"), "{log}");
}

#[test]
fn pebble_stops_and_cleans_up_on_drop() {
    let pebble = Pebble::start(PebbleOpts {
        cert_validity_secs: Some(3600),
        ..Default::default()
    });
    let root = pebble.tls_root_pem_path();
    let dir = root.parent().expect("dir").to_path_buf();
    let url = pebble.directory_url();
    assert!(
        pebble
            .log()
            .contains("Using certificate validity period of 3600 seconds")
    );
    drop(pebble);
    assert!(!dir.exists(), "{} left behind", dir.display());
    let (code, _) = support::proc::curl(&["-k", "--max-time", "2", &url]);
    assert_ne!(code, 0, "Pebble still answers after drop");
}

#[tokio::test]
async fn pebble_issues_over_http01_with_instant_acme() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let responder = Http01Responder::start();
        let pebble = Pebble::start(PebbleOpts {
            http_port: responder.port,
            cert_validity_secs: Some(7 * 86400),
            ..Default::default()
        });
        let (account, _) = Account::builder_with_root(pebble.tls_root_pem_path())
            .expect("client")
            .create(&new_account(), pebble.directory_url(), None)
            .await
            .expect("account");

        let ids = [Identifier::Dns("a.test".into())];
        let chain = issue(&account, &responder, NewOrder::new(&ids), &["a.test"])
            .await
            .unwrap_or_else(|e| panic!("order: {e}\n{}", pebble.log()));
        // Pebble's VA really fetched, from our port. Its Host is
        // `a.test:<http_port>` (Go adds a non-default port; a real CA dials
        // port 80 and sends `a.test`).
        let hosts = responder.hosts();
        assert!(
            hosts.contains(&format!("a.test:{}", responder.port)),
            "{hosts:?}"
        );

        let certs = pem_certs(&chain);
        assert_eq!(certs.len(), 2, "leaf + intermediate: {chain}");
        let (nb, na) = validity(&certs[0]);
        assert!((na - nb - 7 * 86400).abs() <= 1, "validity {}", na - nb);
        let dir = scratch_dir("pebble");
        let verified = openssl_verify(&dir, &chain, &pebble.issuing_roots_pem());
        let _ = std::fs::remove_dir_all(&dir);
        verified.expect("chain verifies against /roots/0");

        // Pebble 2.4 has no ARI: instant-acme refuses before asking.
        let id = CertificateIdentifier::try_from(&certs[0]).expect("certid");
        let ari = account.renewal_info(&id).await;
        assert!(matches!(ari, Err(Error::Unsupported(_))), "{ari:?}");
        // Nor profiles: it accepts an order naming one and ignores it (and
        // instant-acme sends it without looking at `meta.profiles`).
        let mut order = account
            .new_order(&NewOrder::new(&ids).profile("shortlived"))
            .await
            .expect("Pebble ignores `profile`");
        assert_eq!(order.state().profile, None);
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn pebble_requires_external_account_binding_when_configured() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let key = [7u8; 48];
        let pebble = Pebble::start(PebbleOpts {
            eab: Some(vec![(
                "kid-1".to_string(),
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key),
            )]),
            ..Default::default()
        });
        let builder = || Account::builder_with_root(pebble.tls_root_pem_path()).expect("client");
        let err = builder()
            .create(&new_account(), pebble.directory_url(), None)
            .await
            .map(|_| ())
            .expect_err("an account without EAB");
        assert_eq!(
            api_problem(&err).and_then(|p| p.r#type.as_deref()),
            Some("urn:ietf:params:acme:error:externalAccountRequired"),
            "{err}"
        );
        let eab = ExternalAccountKey::new("kid-1".to_string(), &key);
        let (_account, _credentials) = builder()
            .create(&new_account(), pebble.directory_url(), Some(&eab))
            .await
            .expect("an account with EAB");
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn mini_acme_orders_profiles_ari_replaces_and_rate_limits() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let responder = Http01Responder::start();
        let mini = MiniAcme::start(responder.port);
        let (http, seen) = recording_client();
        let (account, _) = Account::builder_with_http(http)
            .create(&new_account(), mini.directory_url(), None)
            .await
            .expect("account");
        let profiles: Vec<String> = account.profiles().map(|p| p.name.to_string()).collect();
        assert!(profiles.contains(&"shortlived".to_string()), "{profiles:?}");

        // 1. A shortlived certificate for a.test, validated over http-01.
        let ids = [Identifier::Dns("a.test".into())];
        let chain = issue(
            &account,
            &responder,
            NewOrder::new(&ids).profile("shortlived"),
            &["a.test"],
        )
        .await
        .expect("first order");
        assert_eq!(responder.hosts(), ["a.test"]);
        let certs = pem_certs(&chain);
        assert_eq!(certs.len(), 2, "leaf + intermediate: {chain}");
        let (nb, na) = validity(&certs[0]);
        assert!((na - nb - 6 * 86400 - 60).abs() <= 2, "shortlived = 6 days");
        let dir = scratch_dir("mini");
        let verified = openssl_verify(&dir, &chain, &mini.ca_pem());
        let _ = std::fs::remove_dir_all(&dir);
        verified.expect("chain verifies against /_ca");

        // The stand-in's CertID is instant-acme's (RFC 9773 section 4.1).
        let id = CertificateIdentifier::try_from(&certs[0]).expect("certid");
        let finalized = mini.events("finalize");
        assert_eq!(finalized[0]["certid"], id.to_string());
        assert_eq!(finalized[0]["profile"], "shortlived");

        // 2. Renewal info: the default window lies ahead; "renew now" puts
        // its start in the past. Retry-After comes through.
        mini.control(serde_json::json!({"ari_retry_after_secs": 600}));
        let (info, retry_after) = account.renewal_info(&id).await.expect("ARI");
        let now = unix_now();
        assert!(info.suggested_window.start.unix_timestamp() > now);
        assert!(info.suggested_window.end > info.suggested_window.start);
        assert!(
            (590..=600).contains(&retry_after.as_secs()),
            "{retry_after:?}"
        );
        mini.control(serde_json::json!({
            "window": {"start_offset_secs": -3600, "end_offset_secs": -60}
        }));
        let (info, _) = account.renewal_info(&id).await.expect("ARI");
        assert!(info.suggested_window.start.unix_timestamp() < now);
        let ari = mini.events("renewalInfo");
        assert_eq!(ari.len(), 2);
        assert_eq!(ari[0]["certid"], id.to_string());

        // 3. A replacing order is accepted and echoes `replaces`
        // (instant-acme checks); once finalized, the old certificate is
        // replaced and a second replacing order gets 409 alreadyReplaced.
        issue(
            &account,
            &responder,
            NewOrder::new(&ids)
                .profile("shortlived")
                .replaces(id.clone()),
            &["a.test"],
        )
        .await
        .expect("replacing order");
        let err = account
            .new_order(&NewOrder::new(&ids).replaces(id.clone()))
            .await
            .map(|_| ())
            .expect_err("second replacement");
        let problem = api_problem(&err).expect("problem");
        assert_eq!(
            problem.r#type.as_deref(),
            Some("urn:ietf:params:acme:error:alreadyReplaced"),
            "{err}"
        );
        let orders = mini.events("newOrder");
        let statuses: Vec<_> = orders
            .iter()
            .map(|o| o["answered_status"].clone())
            .collect();
        assert_eq!(statuses, [201, 201, 409]);
        assert_eq!(orders[1]["replaces"], id.to_string());

        // 4. Unknown profile: invalidProfile.
        let err = account
            .new_order(&NewOrder::new(&ids).profile("nope"))
            .await
            .map(|_| ())
            .expect_err("unknown profile");
        assert_eq!(
            api_problem(&err).and_then(|p| p.r#type.as_deref()),
            Some("urn:ietf:params:acme:error:invalidProfile"),
            "{err}"
        );

        // 5. Rate limited: the next newOrder gets 429 + Retry-After: 7,
        // the one after is served again.
        mini.control(serde_json::json!({"rate_limit": {"count": 1, "retry_after": 7}}));
        let err = account
            .new_order(&NewOrder::new(&ids))
            .await
            .map(|_| ())
            .expect_err("rate limited");
        assert_eq!(
            api_problem(&err).and_then(|p| p.r#type.as_deref()),
            Some("urn:ietf:params:acme:error:rateLimited"),
            "{err}"
        );
        let last = seen.lock().expect("lock").last().cloned().expect("seen");
        assert_eq!(last.method, "POST");
        assert!(last.uri.ends_with("/new-order"), "{last:?}");
        assert_eq!(last.status, 429);
        assert_eq!(last.retry_after.as_deref(), Some("7"));
        let limited = mini.events("newOrder").pop().expect("newOrder event");
        assert_eq!(limited["answered_status"], 429);
        assert_eq!(limited["retry_after"], 7);
        account
            .new_order(&NewOrder::new(&ids))
            .await
            .expect("limit used up");
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn mini_acme_fails_http01_with_a_wrong_answer() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let responder = Http01Responder::start();
        let mini = MiniAcme::start(responder.port);
        let (http, _) = recording_client();
        let (account, _) = Account::builder_with_http(http)
            .create(&new_account(), mini.directory_url(), None)
            .await
            .expect("account");
        let ids = [Identifier::Dns("b.test".into())];
        let mut order = account
            .new_order(&NewOrder::new(&ids))
            .await
            .expect("order");
        let mut authzs = order.authorizations();
        let mut authz = authzs.next().await.expect("one authz").expect("authz");
        let mut challenge = authz.challenge(ChallengeType::Http01).expect("http-01");
        responder.set(&challenge.token, "not-the-key-authorization");
        // The stand-in validates in the background: the refusal comes back
        // either in the answer to the challenge itself (validation already
        // done) or when the order is polled.
        match challenge.set_ready().await {
            Ok(()) => {
                let status = order.poll_ready(&retry()).await;
                assert!(
                    matches!(status, Ok(OrderStatus::Invalid) | Err(Error::Api(_))),
                    "{status:?}"
                );
            }
            Err(Error::Api(p)) => assert_eq!(
                p.r#type.as_deref(),
                Some("urn:ietf:params:acme:error:unauthorized"),
                "{p:?}"
            ),
            Err(e) => panic!("{e}"),
        }
        let challenges = mini.events("challenge");
        assert_eq!(challenges[0]["result"], "invalid", "{challenges:?}");
        assert_eq!(challenges[0]["identifier"], "b.test");
    })
    .await
    .expect("test timed out");
}
