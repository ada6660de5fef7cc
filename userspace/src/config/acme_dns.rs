//! `[acme.dns]`: how DNS-01 TXT records for wildcard certificates get
//! written and checked. A default provider, and per-zone overrides in
//! `[[acme.dns.zones]]` (the longest matching `suffix` wins).
//!
//! Providers: `manual` (the default: Portier shows the record to create and
//! waits until every authoritative server serves it), `rfc2136` (dynamic
//! update with TSIG to the zone's primary), `exec` (a hook command).

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DnsProviderKind {
    #[default]
    Manual,
    Rfc2136,
    Exec,
}

/// One provider's settings: the default one (`[acme.dns]` itself), or a
/// zone's (`[[acme.dns.zones]]`). Written out in both tables rather than
/// flattened, because serde cannot deny unknown keys through a flatten.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProviderSettings {
    pub provider: DnsProviderKind,
    pub server: Option<SocketAddr>,
    pub tsig_key_name: Option<String>,
    pub tsig_algorithm: Option<String>,
    pub tsig_key_file: Option<PathBuf>,
    pub command: Option<PathBuf>,
    pub command_timeout_secs: Option<u64>,
}

/// `[[acme.dns.zones]]`: a provider for the names under `suffix`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ZoneSettings {
    pub suffix: String,
    #[serde(default)]
    pub provider: DnsProviderKind,
    pub server: Option<SocketAddr>,
    pub tsig_key_name: Option<String>,
    pub tsig_algorithm: Option<String>,
    pub tsig_key_file: Option<PathBuf>,
    pub command: Option<PathBuf>,
    pub command_timeout_secs: Option<u64>,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct DnsSettings {
    /// The default provider, for names no zone below matches.
    pub provider: DnsProviderKind,
    /// rfc2136: the primary to send updates to (`ip:port`).
    pub server: Option<SocketAddr>,
    /// rfc2136: TSIG key name, algorithm (`hmac-sha256`, ...), and a file
    /// holding the base64 secret (or a BIND `key { ... };` block).
    pub tsig_key_name: Option<String>,
    pub tsig_algorithm: Option<String>,
    pub tsig_key_file: Option<PathBuf>,
    /// exec: the hook, called `HOOK add|remove <fqdn> <value>`.
    pub command: Option<PathBuf>,
    /// exec: seconds before a hook that hangs is killed.
    pub command_timeout_secs: Option<u64>,
    /// Per-zone providers; the longest matching suffix wins.
    pub zones: Vec<ZoneSettings>,
    /// Recursive resolvers used to find a zone's authoritative servers;
    /// empty = the nameservers of /etc/resolv.conf.
    pub resolvers: Vec<SocketAddr>,
    /// Port the authoritative servers are asked on (53; tests use others).
    pub authoritative_port: u16,
    /// TTL of the TXT records written.
    pub ttl: u32,
    /// Seconds between two propagation checks.
    pub check_interval_secs: u64,
    /// rfc2136/exec: give up when the record is not served everywhere after this.
    pub propagation_timeout_secs: u64,
    /// manual: how long Portier waits for the operator's record.
    pub manual_timeout_secs: u64,
}

impl Default for DnsSettings {
    fn default() -> Self {
        DnsSettings {
            provider: DnsProviderKind::Manual,
            server: None,
            tsig_key_name: None,
            tsig_algorithm: None,
            tsig_key_file: None,
            command: None,
            command_timeout_secs: None,
            zones: Vec::new(),
            resolvers: Vec::new(),
            authoritative_port: 53,
            ttl: 120,
            check_interval_secs: 5,
            propagation_timeout_secs: 300,
            manual_timeout_secs: 7 * 86_400,
        }
    }
}

impl DnsSettings {
    pub fn validate(&self) -> Result<(), String> {
        Ok(())
    }
}
