//! `[acme.dns]`: how DNS-01 TXT records for wildcard certificates get
//! written and checked. A default provider, and per-zone overrides in
//! `[[acme.dns.zones]]` (the longest matching `suffix` wins).
//!
//! Providers: `manual` (the default: Portier shows the record to create and
//! waits until every authoritative server serves it), `rfc2136` (dynamic
//! update with TSIG to the zone's primary), `exec` (a hook command).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

#[derive(Clone, Copy, Debug, Default, Deserialize, serde::Serialize, PartialEq, Eq)]
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

/// TSIG algorithms accepted for rfc2136 (RFC 8945 section 6); the first
/// is the default.
pub const TSIG_ALGORITHMS: [&str; 3] = ["hmac-sha256", "hmac-sha384", "hmac-sha512"];

/// Seconds a hook may run when `command_timeout_secs` is not set.
pub const DEFAULT_COMMAND_TIMEOUT_SECS: u64 = 60;

impl ProviderSettings {
    /// The TSIG algorithm, `hmac-sha256` when not set.
    pub fn tsig_algorithm(&self) -> &str {
        self.tsig_algorithm.as_deref().unwrap_or(TSIG_ALGORITHMS[0])
    }

    /// How long an exec hook may run.
    pub fn command_timeout(&self) -> Duration {
        Duration::from_secs(
            self.command_timeout_secs
                .unwrap_or(DEFAULT_COMMAND_TIMEOUT_SECS),
        )
    }

    /// Does this provider have what its kind needs? `table` names it in
    /// the message (`acme.dns`, `acme.dns.zones[example.com]`).
    fn validate(&self, table: &str) -> Result<(), String> {
        if let Some(alg) = &self.tsig_algorithm
            && !TSIG_ALGORITHMS.contains(&alg.as_str())
        {
            return Err(format!(
                "{table}.tsig_algorithm: `{alg}` is not one of {}",
                TSIG_ALGORITHMS.join(", ")
            ));
        }
        if self.command_timeout_secs == Some(0) {
            return Err(format!("{table}.command_timeout_secs: at least 1"));
        }
        match self.provider {
            DnsProviderKind::Manual => {}
            DnsProviderKind::Rfc2136 => {
                let missing: Vec<&str> = [
                    ("server", self.server.is_none()),
                    ("tsig_key_name", self.tsig_key_name.is_none()),
                    ("tsig_key_file", self.tsig_key_file.is_none()),
                ]
                .into_iter()
                .filter_map(|(key, absent)| absent.then_some(key))
                .collect();
                if !missing.is_empty() {
                    return Err(format!(
                        "{table}: provider rfc2136 needs {}",
                        missing.join(", ")
                    ));
                }
                if self.tsig_key_name.as_deref().is_some_and(str::is_empty) {
                    return Err(format!("{table}.tsig_key_name: empty"));
                }
            }
            DnsProviderKind::Exec => match &self.command {
                None => return Err(format!("{table}: provider exec needs command")),
                Some(c) if c.as_os_str().is_empty() => {
                    return Err(format!("{table}.command: empty"));
                }
                Some(_) => {}
            },
        }
        Ok(())
    }
}

impl ZoneSettings {
    /// This zone's provider, on its own: nothing is inherited from the
    /// default provider.
    pub fn provider_settings(&self) -> ProviderSettings {
        ProviderSettings {
            provider: self.provider,
            server: self.server,
            tsig_key_name: self.tsig_key_name.clone(),
            tsig_algorithm: self.tsig_algorithm.clone(),
            tsig_key_file: self.tsig_key_file.clone(),
            command: self.command.clone(),
            command_timeout_secs: self.command_timeout_secs,
        }
    }

    /// Is `name` (lowercase, no `*.`) this zone's suffix or under it?
    pub fn covers(&self, name: &str) -> bool {
        name == self.suffix
            || name
                .strip_suffix(self.suffix.as_str())
                .is_some_and(|head| head.ends_with('.'))
    }
}

impl DnsSettings {
    /// The default provider (`[acme.dns]` itself).
    pub fn default_provider(&self) -> ProviderSettings {
        ProviderSettings {
            provider: self.provider,
            server: self.server,
            tsig_key_name: self.tsig_key_name.clone(),
            tsig_algorithm: self.tsig_algorithm.clone(),
            tsig_key_file: self.tsig_key_file.clone(),
            command: self.command.clone(),
            command_timeout_secs: self.command_timeout_secs,
        }
    }

    /// The zone whose suffix is the longest one covering `identifier`
    /// (`*.example.com` or `example.com`, any case); None = the default.
    pub fn zone_for(&self, identifier: &str) -> Option<&ZoneSettings> {
        let name = identifier.strip_prefix("*.").unwrap_or(identifier);
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        self.zones
            .iter()
            .filter(|z| z.covers(&name))
            .max_by_key(|z| z.suffix.len())
    }

    /// The provider for `identifier`: its zone's, else the default.
    pub fn provider_for(&self, identifier: &str) -> ProviderSettings {
        match self.zone_for(identifier) {
            Some(zone) => zone.provider_settings(),
            None => self.default_provider(),
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        self.default_provider().validate("acme.dns")?;
        let mut seen: Vec<&str> = Vec::new();
        for zone in &self.zones {
            let suffix = zone.suffix.as_str();
            if suffix.is_empty()
                || suffix != suffix.to_ascii_lowercase()
                || suffix.starts_with('.')
                || suffix.ends_with('.')
                || suffix.contains("..")
                || suffix.contains('*')
            {
                return Err(format!(
                    "acme.dns.zones: suffix `{suffix}` is not a lowercase domain name (like example.com)"
                ));
            }
            if seen.contains(&suffix) {
                return Err(format!("acme.dns.zones: suffix `{suffix}` appears twice"));
            }
            seen.push(suffix);
            zone.provider_settings()
                .validate(&format!("acme.dns.zones[{suffix}]"))?;
        }
        if self.authoritative_port == 0 {
            return Err("acme.dns.authoritative_port: 0 is not a port".into());
        }
        for (key, secs) in [
            ("check_interval_secs", self.check_interval_secs),
            ("propagation_timeout_secs", self.propagation_timeout_secs),
            ("manual_timeout_secs", self.manual_timeout_secs),
        ] {
            if secs == 0 {
                return Err(format!("acme.dns.{key}: at least 1"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rfc2136() -> DnsSettings {
        DnsSettings {
            provider: DnsProviderKind::Rfc2136,
            server: Some("127.0.0.1:53".parse().expect("addr")),
            tsig_key_name: Some("portier".into()),
            tsig_key_file: Some("/etc/portier/tsig.key".into()),
            ..Default::default()
        }
    }

    fn zone(suffix: &str, provider: DnsProviderKind) -> ZoneSettings {
        ZoneSettings {
            suffix: suffix.into(),
            provider,
            command: Some("/usr/local/bin/hook".into()),
            ..Default::default()
        }
    }

    fn refused(f: &dyn Fn(&mut DnsSettings)) -> String {
        let mut s = rfc2136();
        f(&mut s);
        s.validate().expect_err("refused")
    }

    #[test]
    fn defaults_and_a_full_rfc2136_are_valid() {
        DnsSettings::default().validate().expect("manual default");
        rfc2136().validate().expect("rfc2136");
        assert_eq!(rfc2136().default_provider().tsig_algorithm(), "hmac-sha256");
        assert_eq!(
            rfc2136().default_provider().command_timeout(),
            Duration::from_secs(60)
        );
    }

    #[test]
    fn rfc2136_needs_server_key_name_and_key_file() {
        let err = refused(&|s| {
            s.server = None;
            s.tsig_key_file = None;
        });
        assert!(err.contains("rfc2136 needs server, tsig_key_file"), "{err}");
        assert!(refused(&|s| s.tsig_key_name = None).contains("tsig_key_name"));
    }

    #[test]
    fn refuses_unknown_tsig_algorithms() {
        let err = refused(&|s| s.tsig_algorithm = Some("hmac-md5".into()));
        assert!(
            err.contains("hmac-md5") && err.contains("hmac-sha512"),
            "{err}"
        );
        let mut ok = rfc2136();
        ok.tsig_algorithm = Some("hmac-sha512".into());
        ok.validate().expect("sha512");
    }

    #[test]
    fn exec_needs_a_command_and_a_positive_timeout() {
        let err = refused(&|s| s.provider = DnsProviderKind::Exec);
        assert!(err.contains("exec needs command"), "{err}");
        let err = refused(&|s| {
            s.provider = DnsProviderKind::Exec;
            s.command = Some("/bin/true".into());
            s.command_timeout_secs = Some(0);
        });
        assert!(err.contains("command_timeout_secs"), "{err}");
    }

    #[test]
    fn zone_suffixes_are_lowercase_names_without_duplicates() {
        for bad in [
            "",
            "Example.com",
            ".example.com",
            "example.com.",
            "*.example.com",
        ] {
            let err = refused(&|s| s.zones = vec![zone(bad, DnsProviderKind::Manual)]);
            assert!(err.contains("not a lowercase domain name"), "{bad}: {err}");
        }
        let err = refused(&|s| {
            s.zones = vec![
                zone("example.com", DnsProviderKind::Manual),
                zone("example.com", DnsProviderKind::Exec),
            ]
        });
        assert!(err.contains("appears twice"), "{err}");
        let err = refused(&|s| s.zones = vec![zone("example.com", DnsProviderKind::Rfc2136)]);
        assert!(err.contains("acme.dns.zones[example.com]"), "{err}");
    }

    #[test]
    fn intervals_are_at_least_one_second() {
        assert!(refused(&|s| s.check_interval_secs = 0).contains("check_interval_secs"));
        assert!(refused(&|s| s.propagation_timeout_secs = 0).contains("propagation_timeout"));
        assert!(refused(&|s| s.manual_timeout_secs = 0).contains("manual_timeout_secs"));
        assert!(refused(&|s| s.authoritative_port = 0).contains("authoritative_port"));
    }

    #[test]
    fn longest_zone_suffix_wins_else_the_default() {
        let s = DnsSettings {
            zones: vec![
                zone("example.com", DnsProviderKind::Exec),
                zone("dev.example.com", DnsProviderKind::Manual),
                zone("other.test", DnsProviderKind::Exec),
            ],
            ..rfc2136()
        };
        s.validate().expect("valid");
        let kind = |id: &str| s.provider_for(id).provider;
        assert_eq!(kind("*.example.com"), DnsProviderKind::Exec);
        assert_eq!(kind("a.b.example.com"), DnsProviderKind::Exec);
        assert_eq!(kind("*.dev.example.com"), DnsProviderKind::Manual);
        assert_eq!(kind("X.Dev.Example.COM"), DnsProviderKind::Manual);
        assert_eq!(kind("*.notexample.com"), DnsProviderKind::Rfc2136);
        assert_eq!(kind("com"), DnsProviderKind::Rfc2136);
        assert_eq!(
            s.zone_for("*.dev.example.com").map(|z| z.suffix.as_str()),
            Some("dev.example.com")
        );
    }

    #[test]
    fn parses_zones_from_toml() {
        let s: DnsSettings = toml::from_str(
            r#"
            provider = "rfc2136"
            server = "192.0.2.1:53"
            tsig_key_name = "portier."
            tsig_key_file = "/etc/portier/tsig.key"
            [[zones]]
            suffix = "example.net"
            provider = "exec"
            command = "/usr/lib/portier/acme-dns/cloudflare"
            command_timeout_secs = 30
            "#,
        )
        .expect("toml");
        s.validate().expect("valid");
        let zone = s.provider_for("*.example.net");
        assert_eq!(zone.command_timeout(), Duration::from_secs(30));
        assert_eq!(zone.server, None, "nothing is inherited");
    }
}
