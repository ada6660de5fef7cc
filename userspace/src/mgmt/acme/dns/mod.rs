//! DNS-01 (RFC 8555 section 8.4): writing, checking and removing the
//! `_acme-challenge` TXT records of wildcard certificates (`[acme.dns]`).
//!
//! Owns: the providers built from the settings (TSIG keys read once, hook
//! paths checked), the choice of provider per identifier (longest zone
//! suffix), and the propagation check. Must not: talk to the CA, decide
//! when to check again or give up (the ACME order flow does, with
//! `check_interval_secs` and the timeouts), or block the runtime.
//! Fed by: `DnsSettings` and `TxtRecord`s. Emits: `Written`,
//! `Propagation`, `DnsError`s worded for operators.
//!
//! ```text
//!   present(rec) --rfc2136--> signed UPDATE add   (rfc2136.rs, wire.rs)
//!                --exec-----> HOOK add fqdn value (exec.rs)
//!                --manual---> ActionRequired (the operator writes it)
//!   check(rec)   ----------> every NS address serves it? (check.rs)
//!   cleanup(rec) --rfc2136--> signed UPDATE delete that RR
//!                --exec-----> HOOK remove fqdn value
//! ```

mod check;
mod exec;
mod rfc2136;
mod wire;

use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hickory_proto::rr::Name;

pub use self::exec::run_hook;
use self::rfc2136::{Change, Rfc2136};
pub use crate::config::acme_dns::DnsProviderKind;
use crate::config::acme_dns::{DnsSettings, ProviderSettings};

/// One TXT record to serve for a DNS-01 challenge.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TxtRecord {
    /// The identifier being validated, as ordered: `*.example.com` (or
    /// `example.com`).
    pub identifier: String,
    /// `_acme-challenge.example.com` (no trailing dot).
    pub fqdn: String,
    /// The TXT value (base64url SHA-256 key-authorization digest, 43 chars).
    pub value: String,
}

impl TxtRecord {
    /// The record for `identifier`: a wildcard is validated at its base
    /// name (RFC 8555 section 8.4: `_acme-challenge.` + the domain without
    /// `*.`). DNS names are case-insensitive; the fqdn is lowercased.
    pub fn new(identifier: &str, value: String) -> TxtRecord {
        let base = identifier.strip_prefix("*.").unwrap_or(identifier);
        let base = base.trim_end_matches('.').to_ascii_lowercase();
        TxtRecord {
            identifier: identifier.to_string(),
            fqdn: format!("_acme-challenge.{base}"),
            value,
        }
    }
}

/// What `present` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Written {
    /// The record was written (rfc2136, exec).
    Done,
    /// manual: nothing written; the operator must create it.
    ActionRequired,
}

/// One propagation check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Propagation {
    /// The zone apex (no trailing dot).
    pub zone: String,
    /// One entry per address of each nameserver of the zone.
    pub servers: Vec<ServerSeen>,
    /// IPv6 addresses this host cannot reach at all (no IPv6 route); not
    /// counted either way, listed so the operator can see them.
    pub skipped: Vec<ServerSeen>,
}

impl Propagation {
    /// Every server asked serves the value (and there was one).
    pub fn everywhere(&self) -> bool {
        !self.servers.is_empty() && self.servers.iter().all(|s| s.serves)
    }

    /// The servers that do not serve it yet, for logs and the admin API.
    pub fn lagging(&self) -> impl Iterator<Item = &ServerSeen> {
        self.servers.iter().filter(|s| !s.serves)
    }
}

/// What one authoritative server answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerSeen {
    /// The nameserver's name (no trailing dot).
    pub name: String,
    pub addr: SocketAddr,
    pub serves: bool,
    /// Why it could not be asked, or what was wrong with its answer.
    pub error: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// The settings cannot work (validate() refused them, or a file they
    /// name is wrong).
    #[error("acme.dns: {0}")]
    Settings(String),
    #[error("TSIG key file {path}: {reason}")]
    KeyFile { path: String, reason: String },
    #[error(
        "no DNS resolvers: acme.dns.resolvers is empty and /etc/resolv.conf names no usable nameserver"
    )]
    NoResolvers,
    #[error("DNS server {server} did not answer within {} s", secs(*.timeout))]
    Timeout {
        server: SocketAddr,
        timeout: Duration,
    },
    #[error("DNS exchange with {server} failed: {reason}")]
    Exchange {
        server: SocketAddr,
        reason: String,
        /// This host has no route to that address family.
        unreachable: bool,
    },
    #[error("{name} {rtype} at {server}: {reason}")]
    Lookup {
        name: String,
        rtype: String,
        server: SocketAddr,
        reason: String,
    },
    #[error("no DNS zone found for {name}: {reason}")]
    NoZone { name: String, reason: String },
    #[error("no authoritative server found for {name} ({reason})")]
    NoAuthoritative { name: String, reason: String },
    /// The primary did not accept our key or signature.
    #[error("TSIG refused by {server}: {error}")]
    TsigRefused { server: SocketAddr, error: String },
    /// The reply to a signed update is not signed by our key.
    #[error("reply from {server} fails TSIG verification: {reason}")]
    TsigUnverified { server: SocketAddr, reason: String },
    #[error("update refused: {rcode} (zone {zone} at {server})")]
    UpdateRefused {
        server: SocketAddr,
        zone: String,
        rcode: String,
    },
    #[error("hook {command}: {reason}")]
    HookSpawn { command: String, reason: String },
    #[error("hook {command} timed out after {} s", secs(*.timeout))]
    HookTimeout { command: String, timeout: Duration },
    #[error("hook {command} failed ({status}): {message}")]
    HookFailed {
        command: String,
        status: String,
        message: String,
    },
    #[error("internal error: {0}")]
    Internal(String),
}

/// `5` for 5 s, `0.3` for 300 ms.
fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// How one provider writes records.
#[derive(Debug)]
enum Provider {
    Manual,
    Rfc2136(Rfc2136),
    Exec { command: PathBuf, timeout: Duration },
}

impl Provider {
    fn new(settings: &ProviderSettings) -> Result<Provider, DnsError> {
        Ok(match settings.provider {
            DnsProviderKind::Manual => Provider::Manual,
            DnsProviderKind::Rfc2136 => Provider::Rfc2136(Rfc2136::new(settings)?),
            DnsProviderKind::Exec => {
                let command = settings
                    .command
                    .clone()
                    .ok_or_else(|| DnsError::Settings("exec needs command".into()))?;
                check_executable(&command)?;
                Provider::Exec {
                    command,
                    timeout: settings.command_timeout(),
                }
            }
        })
    }

    fn kind(&self) -> DnsProviderKind {
        match self {
            Provider::Manual => DnsProviderKind::Manual,
            Provider::Rfc2136(_) => DnsProviderKind::Rfc2136,
            Provider::Exec { .. } => DnsProviderKind::Exec,
        }
    }
}

/// The DNS-01 side of the ACME service, built once from the settings.
#[derive(Debug)]
pub struct Dns {
    settings: DnsSettings,
    resolvers: Vec<SocketAddr>,
    default: Provider,
    /// One per `settings.zones`, same order.
    zones: Vec<Provider>,
}

impl Dns {
    /// Reads TSIG key files (refusing one readable by group/others),
    /// /etc/resolv.conf when `resolvers` is empty, and checks that hooks
    /// exist and are executable.
    pub fn new(settings: &DnsSettings) -> Result<Dns, DnsError> {
        settings.validate().map_err(DnsError::Settings)?;
        let resolvers = if settings.resolvers.is_empty() {
            let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
            resolv_conf_nameservers(&text)
        } else {
            settings.resolvers.clone()
        };
        if resolvers.is_empty() {
            return Err(DnsError::NoResolvers);
        }
        let default = Provider::new(&settings.default_provider())?;
        let zones = settings
            .zones
            .iter()
            .map(|z| {
                Provider::new(&z.provider_settings()).map_err(|e| match e {
                    DnsError::Settings(m) => {
                        DnsError::Settings(format!("zones[{}]: {m}", z.suffix))
                    }
                    other => other,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Dns {
            settings: settings.clone(),
            resolvers,
            default,
            zones,
        })
    }

    pub fn settings(&self) -> &DnsSettings {
        &self.settings
    }

    /// The resolvers in use (configured, or from /etc/resolv.conf).
    pub fn resolvers(&self) -> &[SocketAddr] {
        &self.resolvers
    }

    /// The provider that handles this identifier (longest
    /// `[[acme.dns.zones]] suffix` match, else the default).
    pub fn provider_kind(&self, identifier: &str) -> DnsProviderKind {
        self.provider(identifier).kind()
    }

    fn provider(&self, identifier: &str) -> &Provider {
        self.settings
            .zone_for(identifier)
            .and_then(|zone| {
                let i = self
                    .settings
                    .zones
                    .iter()
                    .position(|z| std::ptr::eq(z, zone))?;
                self.zones.get(i)
            })
            .unwrap_or(&self.default)
    }

    /// Write the record (rfc2136, exec), or say the operator must (manual).
    pub async fn present(&self, rec: &TxtRecord) -> Result<Written, DnsError> {
        match self.provider(&rec.identifier) {
            Provider::Manual => return Ok(Written::ActionRequired),
            Provider::Rfc2136(primary) => self.update(primary, Change::Add, rec).await?,
            Provider::Exec { command, timeout } => self.hook(command, *timeout, "add", rec).await?,
        }
        tracing::info!(
            "ACME DNS-01: {} TXT {} written for {}",
            rec.fqdn,
            rec.value,
            rec.identifier
        );
        Ok(Written::Done)
    }

    /// Remove exactly that record (other TXT values at the name stay: a
    /// wildcard and its base name are validated with two values at once).
    pub async fn cleanup(&self, rec: &TxtRecord) -> Result<(), DnsError> {
        match self.provider(&rec.identifier) {
            Provider::Manual => return Ok(()),
            Provider::Rfc2136(primary) => self.update(primary, Change::Delete, rec).await?,
            Provider::Exec { command, timeout } => {
                self.hook(command, *timeout, "remove", rec).await?
            }
        }
        tracing::info!("ACME DNS-01: {} TXT {} removed", rec.fqdn, rec.value);
        Ok(())
    }

    /// One propagation check over every authoritative server of the zone.
    pub async fn check(&self, rec: &TxtRecord) -> Result<Propagation, DnsError> {
        let fqdn = self.name(&rec.fqdn)?;
        check::propagation(
            &self.resolvers,
            self.settings.authoritative_port,
            &fqdn,
            &rec.value,
        )
        .await
    }

    async fn update(
        &self,
        primary: &Rfc2136,
        change: Change,
        rec: &TxtRecord,
    ) -> Result<(), DnsError> {
        let fqdn = self.name(&rec.fqdn)?;
        // The resolvers first; the primary itself knows its zones too
        // (a hidden primary's zone may not be visible from here).
        let mut servers = self.resolvers.clone();
        servers.push(primary.server());
        let zone = check::find_zone(&servers, &fqdn).await?;
        primary
            .update(change, &zone, &fqdn, &rec.value, self.settings.ttl)
            .await
    }

    async fn hook(
        &self,
        command: &Path,
        timeout: Duration,
        action: &str,
        rec: &TxtRecord,
    ) -> Result<(), DnsError> {
        let fqdn = self.name(&rec.fqdn)?;
        let zone = check::find_zone(&self.resolvers, &fqdn).await?;
        let zone = plain(&zone);
        let env = [
            ("PORTIER_ACME_ACTION", action.to_string()),
            ("PORTIER_ACME_FQDN", rec.fqdn.clone()),
            ("PORTIER_ACME_VALUE", rec.value.clone()),
            ("PORTIER_ACME_ZONE", zone),
            ("PORTIER_ACME_IDENTIFIER", rec.identifier.clone()),
            ("PORTIER_ACME_TTL", self.settings.ttl.to_string()),
        ];
        run_hook(command, &[action, &rec.fqdn, &rec.value], &env, timeout)
            .await
            .map(|_| ())
    }

    fn name(&self, fqdn: &str) -> Result<Name, DnsError> {
        rfc2136::fqdn(fqdn).map_err(|e| DnsError::Internal(format!("`{fqdn}`: {e}")))
    }
}

/// A name as operators write it: no trailing dot.
fn plain(name: &Name) -> String {
    name.to_ascii().trim_end_matches('.').to_string()
}

/// `nameserver` lines of resolv.conf(5), port 53. Link-local IPv6 with a
/// zone index (`fe80::1%eth0`) cannot be written as a SocketAddr; skipped.
fn resolv_conf_nameservers(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some("nameserver")).then(|| words.next())?
        })
        .filter_map(|ip| ip.parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

fn check_executable(command: &Path) -> Result<(), DnsError> {
    let bad = |reason: String| DnsError::HookSpawn {
        command: command.display().to_string(),
        reason,
    };
    let meta = std::fs::metadata(command).map_err(|e| bad(e.to_string()))?;
    if !meta.is_file() {
        return Err(bad("not a file".into()));
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(bad(format!(
            "not executable (mode {:o}); run `chmod +x {}`",
            meta.permissions().mode() & 0o777,
            command.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::acme_dns::ZoneSettings;

    #[test]
    fn txt_record_strips_the_wildcard() {
        let r = TxtRecord::new("*.Example.com", "v".into());
        assert_eq!(r.fqdn, "_acme-challenge.example.com");
        assert_eq!(r.identifier, "*.Example.com");
        assert_eq!(
            TxtRecord::new("example.com.", "v".into()).fqdn,
            "_acme-challenge.example.com"
        );
        assert_eq!(
            TxtRecord::new("a.b.example.com", "v".into()).fqdn,
            "_acme-challenge.a.b.example.com"
        );
    }

    #[test]
    fn reads_nameservers_from_resolv_conf() {
        let text = "# comment\nsearch x\nnameserver 192.0.2.53\nnameserver  2001:db8::53\nnameserver fe80::1%eth0\nnameserver\n";
        assert_eq!(
            resolv_conf_nameservers(text),
            vec![
                "192.0.2.53:53".parse::<SocketAddr>().expect("v4"),
                "[2001:db8::53]:53".parse().expect("v6"),
            ]
        );
    }

    fn settings() -> DnsSettings {
        DnsSettings {
            resolvers: vec!["127.0.0.1:53".parse().expect("addr")],
            zones: vec![
                ZoneSettings {
                    suffix: "example.com".into(),
                    provider: DnsProviderKind::Exec,
                    command: Some("/bin/true".into()),
                    ..Default::default()
                },
                ZoneSettings {
                    suffix: "dev.example.com".into(),
                    provider: DnsProviderKind::Manual,
                    ..Default::default()
                },
            ],
            ..Default::default()
        }
    }

    #[test]
    fn longest_suffix_picks_the_provider() {
        let dns = Dns::new(&settings()).expect("dns");
        assert_eq!(dns.provider_kind("*.example.com"), DnsProviderKind::Exec);
        assert_eq!(
            dns.provider_kind("*.x.dev.example.com"),
            DnsProviderKind::Manual
        );
        assert_eq!(dns.provider_kind("*.example.org"), DnsProviderKind::Manual);
    }

    #[test]
    fn refuses_a_hook_that_cannot_run() {
        let mut s = settings();
        s.zones[0].command = Some("/nonexistent/hook".into());
        let err = Dns::new(&s).expect_err("missing hook");
        assert!(err.to_string().contains("/nonexistent/hook"), "{err}");
        let plain = std::env::temp_dir().join(format!("portier-hook-{}", std::process::id()));
        std::fs::write(&plain, "#!/bin/sh\n").expect("write");
        std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        s.zones[0].command = Some(plain.clone());
        let err = Dns::new(&s).expect_err("not executable");
        let _ = std::fs::remove_file(&plain);
        assert!(err.to_string().contains("not executable"), "{err}");
    }

    #[test]
    fn everywhere_needs_every_server() {
        let seen = |serves| ServerSeen {
            name: "ns1.example.com".into(),
            addr: "127.0.0.1:53".parse().expect("addr"),
            serves,
            error: None,
        };
        let p = |servers| Propagation {
            zone: "example.com".into(),
            servers,
            skipped: Vec::new(),
        };
        assert!(!p(vec![]).everywhere());
        assert!(p(vec![seen(true), seen(true)]).everywhere());
        let lagging = p(vec![seen(true), seen(false)]);
        assert!(!lagging.everywhere());
        assert_eq!(lagging.lagging().count(), 1);
    }

    #[tokio::test]
    async fn manual_writes_nothing() {
        let dns = Dns::new(&DnsSettings {
            resolvers: vec!["127.0.0.1:53".parse().expect("addr")],
            ..Default::default()
        })
        .expect("dns");
        let rec = TxtRecord::new("*.example.org", "v".into());
        assert_eq!(
            dns.present(&rec).await.expect("manual"),
            Written::ActionRequired
        );
        dns.cleanup(&rec).await.expect("manual cleanup");
    }
}
