//! `[region]`: front nodes sharing apps, domains and certificates through
//! etcd (SPEC §6). The section's presence turns region mode on; without it
//! the node runs on its local file alone.
//!
//! In region mode the apps live in etcd, not in this file: `[[apps]]` here
//! is refused (seed a region with `portier region import`). Everything
//! else in the file (listeners, TLS, limits, XDP, admin, ACME settings)
//! stays node-local. Files named here are read when the node starts.

use std::path::PathBuf;

use serde::Deserialize;

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RegionSettings {
    /// etcd client URLs (`http://10.0.0.1:2379`, `https://…`).
    pub endpoints: Vec<String>,
    /// Every key of the region lives under this prefix.
    pub prefix: String,
    /// This node's name in the region (default: the host name).
    pub node: Option<String>,
    /// The region key (32 random bytes, base64, mode 0600): private keys
    /// are sealed with it (ChaCha20-Poly1305) before they go to etcd.
    /// Every node of a region has the same file.
    pub key_file: PathBuf,
    /// The last good state (apps, revision), so a node restarted while
    /// etcd is down still serves. Created 0700.
    pub cache_dir: PathBuf,
    /// TLS to etcd: CA, and a client certificate + key.
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub cert_key_file: Option<PathBuf>,
    /// etcd authentication: user, and a file (0600) holding the password.
    pub user: Option<String>,
    pub password_file: Option<PathBuf>,
    /// Lease of this node's registration and of the ACME ordering lock:
    /// another node takes over this long after a holder dies.
    pub lease_ttl_secs: i64,
}

impl Default for RegionSettings {
    fn default() -> Self {
        RegionSettings {
            endpoints: vec!["http://127.0.0.1:2379".into()],
            prefix: "/portier".into(),
            node: None,
            key_file: PathBuf::from("/etc/portier/region.key"),
            cache_dir: PathBuf::from("/var/lib/portier/region"),
            ca_file: None,
            cert_file: None,
            cert_key_file: None,
            user: None,
            password_file: None,
            lease_ttl_secs: 10,
        }
    }
}

impl RegionSettings {
    pub fn validate(&self) -> Result<(), String> {
        if self.endpoints.is_empty() {
            return Err("region.endpoints: at least one etcd URL".into());
        }
        for e in &self.endpoints {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                return Err(format!("region.endpoints: `{e}` is not an http(s) URL"));
            }
        }
        if !self.prefix.starts_with('/') || self.prefix.ends_with('/') || self.prefix.len() < 2 {
            return Err(format!(
                "region.prefix: `{}` must start with / and not end with one",
                self.prefix
            ));
        }
        if let Some(n) = &self.node
            && (n.is_empty()
                || !n
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')))
        {
            return Err(format!("region.node: `{n}` (letters, digits, - _ . only)"));
        }
        if self.cert_file.is_some() != self.cert_key_file.is_some() {
            return Err("region: cert_file and cert_key_file go together".into());
        }
        if self.user.is_some() != self.password_file.is_some() {
            return Err("region: user and password_file go together".into());
        }
        if !(2..=300).contains(&self.lease_ttl_secs) {
            return Err("region.lease_ttl_secs: 2 to 300".into());
        }
        Ok(())
    }

    /// The node name: configured, else the host name.
    pub fn node_name(&self) -> String {
        self.node.clone().unwrap_or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .ok()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "node".into())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_mistakes_are_named() {
        RegionSettings::default().validate().expect("valid");
        let bad = |f: &dyn Fn(&mut RegionSettings)| {
            let mut s = RegionSettings::default();
            f(&mut s);
            s.validate().expect_err("refused")
        };
        assert!(bad(&|s| s.endpoints.clear()).contains("endpoints"));
        assert!(bad(&|s| s.endpoints = vec!["10.0.0.1:2379".into()]).contains("URL"));
        assert!(bad(&|s| s.prefix = "portier".into()).contains("prefix"));
        assert!(bad(&|s| s.prefix = "/portier/".into()).contains("prefix"));
        assert!(bad(&|s| s.node = Some("a b".into())).contains("node"));
        assert!(bad(&|s| s.user = Some("u".into())).contains("password_file"));
        assert!(bad(&|s| s.lease_ttl_secs = 1).contains("lease_ttl_secs"));
        assert!(!RegionSettings::default().node_name().is_empty());
    }
}
