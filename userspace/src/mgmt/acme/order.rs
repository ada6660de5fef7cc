//! One certificate order, start to install: new order (profile, `replaces`)
//! → each pending authorization answered (HTTP-01 through the reactors'
//! token table, DNS-01 through `dns`, checked on every authoritative
//! server first) → ready → finalize with a fresh ECDSA P-256 key →
//! download → validated atomic install into `cert_dir` (`tls::install`).
//! Challenge material is removed afterwards whatever happened.
//!
//! Owns: the order's steps and turning every failure into one line an
//! operator understands. Must not: decide when to order (that is the
//! service's plan) or install anything that did not validate.

use std::path::Path;
use std::time::{Duration, Instant};

use instant_acme::{
    Account, AuthorizationStatus, CertificateIdentifier, ChallengeType, Identifier, NewOrder,
    OrderStatus, RetryPolicy,
};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use super::dns::{Dns, DnsProviderKind, TxtRecord, Written};
use super::plan::CertFacts;
use crate::challenge::HttpChallenge;
use crate::control::Control;

/// What an order needs from the service.
pub struct OrderEnv<'a> {
    pub account: &'a Account,
    pub dns: &'a Dns,
    pub control: &'a Control,
    pub cert_dir: &'a Path,
    /// Challenge validation and polling give up after this.
    pub timeout: Duration,
    /// Manual DNS-01: the record the operator must create (shown, notified).
    pub on_action_required: &'a (dyn Fn(&TxtRecord) + Sync),
    /// Region mode: HTTP-01 tokens go through etcd, so whichever node the
    /// CA reaches answers.
    pub region: Option<&'a crate::mgmt::region::Region>,
}

/// What to order.
#[derive(Clone, Debug)]
pub struct OrderJob {
    /// `a.example.com` or `*.example.com`.
    pub name: String,
    /// ARI CertID of the certificate this one replaces.
    pub replaces: Option<String>,
    /// A profile the directory lists.
    pub profile: Option<String>,
}

#[derive(Debug)]
pub struct OrderFailure {
    pub message: String,
    /// The CA refused `replaces` (the certificate was already replaced).
    pub already_replaced: bool,
}

impl OrderFailure {
    fn new(message: impl Into<String>) -> OrderFailure {
        OrderFailure {
            message: message.into(),
            already_replaced: false,
        }
    }
}

fn acme_error(step: &str, e: instant_acme::Error) -> OrderFailure {
    let already_replaced = matches!(&e, instant_acme::Error::Api(p)
        if p.r#type.as_deref().is_some_and(|t| t.ends_with(":alreadyReplaced")));
    OrderFailure {
        message: format!("{step}: {e}"),
        already_replaced,
    }
}

/// The certificate file stem for a name: `*.x` → `_wildcard.x`.
pub fn file_stem(name: &str) -> String {
    match name.strip_prefix("*.") {
        Some(suffix) => format!("{}{suffix}", crate::tls::store::WILDCARD_PREFIX),
        None => name.to_string(),
    }
}

/// Order, validate, install. On success the new certificate is in
/// `cert_dir` and its facts are returned; the caller kicks the watcher.
pub async fn issue(env: &OrderEnv<'_>, job: &OrderJob) -> Result<CertFacts, OrderFailure> {
    let mut cleanup = Cleanup::default();
    let result = run(env, job, &mut cleanup).await;
    cleanup.run(env).await;
    result
}

/// Challenge material published during an order, removed after it.
#[derive(Default)]
struct Cleanup {
    tokens: Vec<String>,
    records: Vec<TxtRecord>,
}

impl Cleanup {
    async fn run(self, env: &OrderEnv<'_>) {
        for token in &self.tokens {
            match env.region {
                Some(region) => region.delete_token(token).await,
                None => {
                    env.control.challenges.rcu(|t| t.without(token));
                }
            }
        }
        for rec in &self.records {
            if let Err(e) = env.dns.cleanup(rec).await {
                tracing::warn!(record = rec.fqdn, "ACME: TXT record not removed: {e}");
            }
        }
    }
}

async fn run(
    env: &OrderEnv<'_>,
    job: &OrderJob,
    cleanup: &mut Cleanup,
) -> Result<CertFacts, OrderFailure> {
    let deadline = Instant::now() + env.timeout;
    let ids = [Identifier::Dns(job.name.clone())];
    let mut new = NewOrder::new(&ids);
    if let Some(p) = &job.profile {
        new = new.profile(p);
    }
    let replaces = job.replaces.as_deref().and_then(cert_identifier);
    if let Some(r) = replaces {
        new = new.replaces(r);
    }
    let mut order = env
        .account
        .new_order(&new)
        .await
        .map_err(|e| acme_error("new order", e))?;
    {
        let mut authorizations = order.authorizations();
        while let Some(authz) = authorizations.next().await {
            let mut authz = authz.map_err(|e| acme_error("authorization", e))?;
            match authz.status {
                AuthorizationStatus::Valid => continue,
                AuthorizationStatus::Pending => {}
                other => {
                    return Err(OrderFailure::new(format!(
                        "authorization for {} is {other:?}",
                        job.name
                    )));
                }
            }
            let wildcard = job.name.starts_with("*.");
            let kind = if wildcard {
                ChallengeType::Dns01
            } else {
                ChallengeType::Http01
            };
            let mut challenge = authz.challenge(kind.clone()).ok_or_else(|| {
                OrderFailure::new(format!(
                    "the CA offers no {kind:?} challenge for {}",
                    job.name
                ))
            })?;
            let key_authorization = challenge.key_authorization();
            if wildcard {
                let rec = TxtRecord::new(&job.name, key_authorization.dns_value());
                dns01(env, &rec, deadline, cleanup).await?;
            } else {
                let token = challenge.token.clone();
                let answer = HttpChallenge {
                    host: job.name.clone(),
                    key_authorization: key_authorization.as_str().to_string(),
                };
                cleanup.tokens.push(token.clone());
                publish_token(env, &token, answer).await?;
            }
            challenge
                .set_ready()
                .await
                .map_err(|e| acme_error("challenge", e))?;
        }
    }
    let retries = RetryPolicy::new()
        .initial_delay(Duration::from_millis(250))
        .backoff(1.5)
        .timeout(deadline.saturating_duration_since(Instant::now()));
    let status = order
        .poll_ready(&retries)
        .await
        .map_err(|e| acme_error("validation", e))?;
    if status != OrderStatus::Ready {
        let mut reasons = Vec::new();
        let mut authorizations = order.authorizations();
        while let Some(Ok(mut authz)) = authorizations.next().await {
            if let Ok(state) = authz.refresh().await {
                for c in &state.challenges {
                    if let Some(p) = &c.error {
                        reasons.push(format!("{:?}: {p}", c.r#type));
                    }
                }
            }
        }
        return Err(OrderFailure::new(format!(
            "validation of {} failed: {}",
            job.name,
            if reasons.is_empty() {
                format!("order {status:?}")
            } else {
                reasons.join("; ")
            }
        )));
    }
    let key = rcgen::KeyPair::generate().map_err(|e| OrderFailure::new(format!("key: {e}")))?;
    let mut params = rcgen::CertificateParams::new(vec![job.name.clone()])
        .map_err(|e| OrderFailure::new(format!("CSR: {e}")))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr = params
        .serialize_request(&key)
        .map_err(|e| OrderFailure::new(format!("CSR: {e}")))?;
    order
        .finalize_csr(csr.der())
        .await
        .map_err(|e| acme_error("finalize", e))?;
    let retries = RetryPolicy::new()
        .initial_delay(Duration::from_millis(250))
        .backoff(1.5)
        .timeout(
            deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_secs(5)),
        );
    let chain = order
        .poll_certificate(&retries)
        .await
        .map_err(|e| acme_error("certificate", e))?;
    let pem = format!("{}\n{}", chain.trim_end(), key.serialize_pem());
    let installed =
        crate::tls::install::install(env.cert_dir, &file_stem(&job.name), pem.as_bytes()).map_err(
            |e| OrderFailure::new(format!("the issued certificate was not installed: {e}")),
        )?;
    tracing::info!(name = job.name, file = %installed.path.display(), not_after = installed.info.not_after, "ACME: certificate installed");
    Ok(facts(pem.as_bytes(), true).unwrap_or(CertFacts {
        not_before: installed.info.not_before,
        not_after: installed.info.not_after,
        cert_id: None,
        managed: true,
    }))
}

/// Make `token` answerable: in this node's table, or in the region's (then
/// wait until this node's watch serves it, and a little more for the
/// others', before the CA is told to look).
async fn publish_token(
    env: &OrderEnv<'_>,
    token: &str,
    answer: HttpChallenge,
) -> Result<(), OrderFailure> {
    let Some(region) = env.region else {
        env.control
            .challenges
            .rcu(|t| t.with(token, answer.clone()));
        return Ok(());
    };
    let record = crate::mgmt::region::state::TokenRecord {
        host: answer.host.clone(),
        key_authorization: answer.key_authorization.clone(),
    };
    region
        .put_token(token, &record)
        .await
        .map_err(|e| OrderFailure::new(format!("HTTP-01 token not shared with the region: {e}")))?;
    let until = Instant::now() + Duration::from_secs(5);
    while env
        .control
        .challenges
        .load()
        .answer(token, Some(&answer.host))
        .is_none()
    {
        if Instant::now() > until {
            return Err(OrderFailure::new(
                "the HTTP-01 token written to etcd did not come back through the watch within 5 s",
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The other nodes apply the same watch event within their 100 ms batch.
    tokio::time::sleep(Duration::from_millis(300)).await;
    Ok(())
}

/// Write the TXT record, wait until every authoritative server serves it
/// (manual mode: until the operator created it), or fail at `deadline`
/// (manual: after `manual_timeout_secs`).
async fn dns01(
    env: &OrderEnv<'_>,
    rec: &TxtRecord,
    deadline: Instant,
    cleanup: &mut Cleanup,
) -> Result<(), OrderFailure> {
    let settings = env.dns.settings();
    let manual = env.dns.provider_kind(&rec.identifier) == DnsProviderKind::Manual;
    match env.dns.present(rec).await {
        Ok(Written::Done) => cleanup.records.push(rec.clone()),
        Ok(Written::ActionRequired) => (env.on_action_required)(rec),
        Err(e) => {
            return Err(OrderFailure::new(format!(
                "DNS-01 for {}: {e}",
                rec.identifier
            )));
        }
    }
    let limit = if manual {
        Duration::from_secs(settings.manual_timeout_secs)
    } else {
        Duration::from_secs(settings.propagation_timeout_secs)
            .min(deadline.saturating_duration_since(Instant::now()))
    };
    let until = Instant::now() + limit;
    let interval = Duration::from_secs(settings.check_interval_secs.max(1));
    loop {
        let last = match env.dns.check(rec).await {
            Ok(p) if p.everywhere() => {
                tracing::info!(
                    record = rec.fqdn,
                    zone = p.zone,
                    servers = p.servers.len(),
                    "ACME: TXT record served by every authoritative server"
                );
                return Ok(());
            }
            Ok(p) => {
                let lagging: Vec<String> = p
                    .servers
                    .iter()
                    .filter(|s| !s.serves)
                    .map(|s| match &s.error {
                        Some(e) => format!("{} ({}): {e}", s.name, s.addr),
                        None => format!("{} ({})", s.name, s.addr),
                    })
                    .collect();
                if p.servers.is_empty() {
                    format!("no authoritative server found for zone {}", p.zone)
                } else {
                    format!("not yet served by {}", lagging.join(", "))
                }
            }
            Err(e) => e.to_string(),
        };
        if Instant::now() + interval > until {
            return Err(OrderFailure::new(format!(
                "DNS-01 for {}: TXT {} not served by every authoritative server after {} s: {last}",
                rec.identifier,
                rec.fqdn,
                limit.as_secs()
            )));
        }
        tokio::time::sleep(interval).await;
    }
}

/// A CertID string back into instant-acme's type.
fn cert_identifier(id: &str) -> Option<CertificateIdentifier<'static>> {
    let (aki, serial) = id.split_once('.')?;
    Some(CertificateIdentifier {
        authority_key_identifier: aki.to_string().into(),
        serial: serial.to_string().into(),
    })
}

/// Validity and ARI CertID of the first certificate of a PEM.
pub fn facts(pem: &[u8], managed: bool) -> Option<CertFacts> {
    let info = crate::tls::install::inspect(pem).ok()?;
    let leaf = CertificateDer::pem_slice_iter(pem).next()?.ok()?;
    let cert_id = CertificateIdentifier::try_from(&leaf)
        .ok()
        .map(|id| id.to_string());
    Some(CertFacts {
        not_before: info.not_before,
        not_after: info.not_after,
        cert_id,
        managed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stems_and_cert_ids() {
        assert_eq!(file_stem("a.test"), "a.test");
        assert_eq!(file_stem("*.x.test"), "_wildcard.x.test");
        let id = cert_identifier("aGVsbG8.AQI").expect("id");
        assert_eq!(id.to_string(), "aGVsbG8.AQI");
        assert!(cert_identifier("nodot").is_none());
    }

    #[test]
    fn facts_of_a_self_signed_certificate() {
        let pem = crate::tls::self_signed_pem(&["a.test".into()]).expect("pem");
        let f = facts(pem.as_bytes(), false).expect("facts");
        assert!(f.not_after > f.not_before);
        assert!(!f.managed);
        assert!(facts(b"nope", true).is_none());
    }
}
