//! DNS-01: writing, checking and removing `_acme-challenge` TXT records
//! for wildcard certificates (`[acme.dns]`). TEMPORARY STUB of the
//! interface (the real module lands from the acme-dns branch).
#![allow(dead_code, unused_variables)]

use std::path::Path;
use std::time::Duration;

pub use crate::config::acme_dns::DnsProviderKind;
use crate::config::acme_dns::DnsSettings;

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TxtRecord {
    pub identifier: String,
    pub fqdn: String,
    pub value: String,
}

impl TxtRecord {
    pub fn new(identifier: &str, value: String) -> TxtRecord {
        let base = identifier.strip_prefix("*.").unwrap_or(identifier);
        TxtRecord {
            identifier: identifier.to_string(),
            fqdn: format!("_acme-challenge.{base}"),
            value,
        }
    }
}

pub enum Written {
    Done,
    ActionRequired,
}

pub struct Dns {
    settings: DnsSettings,
}

#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("{0}")]
    Other(String),
}

pub struct Propagation {
    pub zone: String,
    pub servers: Vec<ServerSeen>,
}

pub struct ServerSeen {
    pub name: String,
    pub addr: std::net::SocketAddr,
    pub serves: bool,
    pub error: Option<String>,
}

impl Propagation {
    pub fn everywhere(&self) -> bool {
        !self.servers.is_empty() && self.servers.iter().all(|s| s.serves)
    }
}

impl Dns {
    pub fn new(settings: &DnsSettings) -> Result<Dns, DnsError> {
        Ok(Dns {
            settings: settings.clone(),
        })
    }
    pub fn provider_kind(&self, identifier: &str) -> DnsProviderKind {
        self.settings.provider.clone()
    }
    pub async fn present(&self, rec: &TxtRecord) -> Result<Written, DnsError> {
        Err(DnsError::Other("stub".into()))
    }
    pub async fn cleanup(&self, rec: &TxtRecord) -> Result<(), DnsError> {
        Err(DnsError::Other("stub".into()))
    }
    pub async fn check(&self, rec: &TxtRecord) -> Result<Propagation, DnsError> {
        Err(DnsError::Other("stub".into()))
    }
    pub fn settings(&self) -> &DnsSettings {
        &self.settings
    }
}

pub async fn run_hook(
    command: &Path,
    args: &[&str],
    env: &[(&str, String)],
    timeout: Duration,
) -> Result<String, DnsError> {
    Err(DnsError::Other("stub".into()))
}
