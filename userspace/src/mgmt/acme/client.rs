//! The HTTP client instant-acme talks to the CA through: hyper + rustls
//! with our ring provider, the system roots plus `[acme] ca_roots`, plain
//! `http://` allowed (a CA stand-in on loopback), and the one thing
//! instant-acme drops: `Retry-After` on a 429 or 503, captured here so the
//! backoff can honour it.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use instant_acme::{BodyWrapper, BytesResponse, HttpClient};
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

type Hyper = Client<hyper_rustls::HttpsConnector<HttpConnector>, BodyWrapper<Bytes>>;

/// A refusal the CA asked us to wait after.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    /// Unix seconds.
    pub retry_after: Option<i64>,
}

/// The last 429/503 seen, shared with whoever reads it after a failure.
#[derive(Clone, Default)]
pub struct RefusalLog(Arc<Mutex<Option<Refusal>>>);

impl RefusalLog {
    /// The refusal seen since the last call, if any.
    pub fn take(&self) -> Option<Refusal> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    fn record(&self, r: Refusal) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
    }
}

pub struct CaClient {
    hyper: Hyper,
    refusals: RefusalLog,
}

impl CaClient {
    /// `extra_roots`: PEM certificates trusted besides the system's.
    pub fn new(extra_roots: Option<&[u8]>, refusals: RefusalLog) -> Result<CaClient, String> {
        let mut roots = RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(native.certs);
        if let Some(pem) = extra_roots {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
                .collect::<Result<_, _>>()
                .map_err(|e| format!("acme.ca_roots: bad PEM: {e}"))?;
            if certs.is_empty() {
                return Err("acme.ca_roots: no certificate in the file".into());
            }
            for c in certs {
                roots
                    .add(c)
                    .map_err(|e| format!("acme.ca_roots: unusable certificate: {e}"))?;
            }
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(Duration::from_secs(10)));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        Ok(CaClient {
            hyper: Client::builder(TokioExecutor::new()).build(connector),
            refusals,
        })
    }
}

/// Whole requests are bounded: a CA that accepts the connection and then
/// says nothing must not hang an order forever.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

impl HttpClient for CaClient {
    fn request(
        &self,
        req: Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let fut = HttpClient::request(&self.hyper, req);
        let refusals = self.refusals.clone();
        Box::pin(async move {
            let rsp = tokio::time::timeout(REQUEST_TIMEOUT, fut)
                .await
                .map_err(|_| instant_acme::Error::Str("the CA did not answer within 30 s"))??;
            let status = rsp.parts.status;
            if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE
            {
                refusals.record(Refusal {
                    status: status.as_u16(),
                    retry_after: rsp
                        .parts
                        .headers
                        .get(http::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| retry_after(v, SystemTime::now())),
                });
            }
            Ok(rsp)
        })
    }
}

/// `Retry-After` as Unix seconds: delta-seconds or an HTTP date.
pub fn retry_after(value: &str, now: SystemTime) -> Option<i64> {
    let value = value.trim();
    let at = match value.parse::<u64>() {
        Ok(secs) => now + Duration::from_secs(secs),
        Err(_) => httpdate::parse_http_date(value).ok()?,
    };
    at.duration_since(SystemTime::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        assert_eq!(retry_after("120", now), Some(1_120));
        assert_eq!(
            retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now),
            Some(784_111_777)
        );
        assert_eq!(retry_after("soon", now), None);
    }

    #[test]
    fn extra_roots_must_be_certificates() {
        assert!(CaClient::new(Some(b"nope"), RefusalLog::default()).is_err());
        let pem = crate::tls::self_signed_pem(&["ca.test".into()]).expect("pem");
        CaClient::new(Some(pem.as_bytes()), RefusalLog::default()).expect("usable");
    }
}
