//! The configuration file: serde model, validation, and errors that name the
//! file, the line and the reason.
//!
//! Loaded by `main` at start (and by the management thread on reload); the
//! rest of the program only ever sees a validated [`Config`]. Unknown keys are
//! errors, not warnings: a typo must not silently fall back to a default.

pub mod acme;
pub mod acme_dns;
pub mod admin;
pub mod app;
pub mod cidr;
pub mod edit;
pub mod listen;
pub mod region;
pub mod server;
pub mod xdp;

use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use acme::AcmeSettings;
pub use admin::AdminSettings;
pub use app::AppSettings;
pub use cidr::Cidr;
pub use listen::Listen;
pub use region::RegionSettings;
pub use server::{LimitSettings, ServerSettings, TlsSettings};
pub use xdp::{XdpMode, XdpSettings};

/// The whole file. Each section has its own defaults.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerSettings,
    #[serde(default)]
    pub tls: TlsSettings,
    #[serde(default)]
    pub limits: LimitSettings,
    #[serde(default)]
    pub apps: Vec<AppSettings>,
    #[serde(default)]
    pub xdp: XdpSettings,
    /// The admin API; absent = off.
    #[serde(default)]
    pub admin: Option<AdminSettings>,
    #[serde(default)]
    pub log: LogSettings,
    /// Automatic certificates; absent = off.
    #[serde(default)]
    pub acme: Option<AcmeSettings>,
    /// Apps, domains and certificates shared with other nodes through
    /// etcd; absent = this file is the whole truth.
    #[serde(default)]
    pub region: Option<RegionSettings>,
}

/// `[log]`: the structured access log.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// `"off"`, `"stdout"`, or a file path (appended to; reopened on SIGUSR1).
    pub access: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            access: "off".into(),
        }
    }
}

impl LogSettings {
    pub fn target(&self) -> Option<crate::accesslog::Target> {
        match self.access.as_str() {
            "" | "off" => None,
            "stdout" => Some(crate::accesslog::Target::Stdout),
            path => Some(crate::accesslog::Target::File(PathBuf::from(path))),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{path}: {message}")]
    Semantic { path: PathBuf, message: String },
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_path_buf(),
            error,
        })?;
        Config::parse(path, &text)
    }

    /// Parse and validate `text`; `path` only names the source in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| toml_error(path, text, &e))?;
        if config.region.is_some() && !config.apps.is_empty() {
            return Err(ConfigError::Semantic {
                path: path.to_path_buf(),
                message: "[[apps]] with [region]: in region mode the apps live in etcd \
                          (seed them with `portier region import --config FILE`)"
                    .into(),
            });
        }
        listen::check(
            &config.server.http,
            &config.server.https,
            config.server.trusted_proxies.len(),
        )
        .map_err(|e| match e.span {
            Some(span) => {
                let (line, column) = line_column(text, span.start);
                ConfigError::Invalid {
                    path: path.to_path_buf(),
                    line,
                    column,
                    message: e.message,
                }
            }
            None => ConfigError::Semantic {
                path: path.to_path_buf(),
                message: e.message,
            },
        })?;
        config.validate().map_err(|message| ConfigError::Semantic {
            path: path.to_path_buf(),
            message,
        })?;
        Ok(config)
    }

    /// A region seed file (`portier region import`): `[region]` and
    /// `[[apps]]` together, validated as a whole.
    pub fn parse_seed(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let mut without_apps: Config =
            toml::from_str(text).map_err(|e| toml_error(path, text, &e))?;
        let apps = std::mem::take(&mut without_apps.apps);
        without_apps
            .with_apps(apps)
            .map_err(|message| ConfigError::Semantic {
                path: path.to_path_buf(),
                message,
            })
    }

    /// This node's file with the region's apps in place of its own,
    /// validated as a whole (wildcard ownership, one app per domain, ...).
    pub fn with_apps(&self, apps: Vec<AppSettings>) -> Result<Config, String> {
        let mut next = self.clone();
        next.apps = apps;
        next.validate()?;
        Ok(next)
    }

    fn validate(&self) -> Result<(), String> {
        self.xdp.validate()?;
        crate::tls::tuned(&self.tls)?;
        self.limits.validate()?;
        if let Some(acme) = &self.acme {
            acme.validate()?;
        }
        if let Some(region) = &self.region {
            region.validate()?;
        }
        let header = &self.server.error_header;
        if header.is_empty()
            || !header
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(format!(
                "server.error_header: `{header}` is not a header name"
            ));
        }
        for app in &self.apps {
            app.validate()?;
        }
        // Wildcard ownership: once `*.y.z` belongs to an owner, nobody else
        // attaches `*.y.z` or any name under it.
        let mut wildcard_owner = std::collections::HashMap::new();
        for app in &self.apps {
            for d in &app.domains {
                let host = app::normalize_host(d).unwrap_or_default();
                if let Some(suffix) = app::wildcard_suffix(&host) {
                    wildcard_owner.insert(suffix.to_string(), (app.owner(), app.name.as_str()));
                }
            }
        }
        for app in &self.apps {
            for d in &app.domains {
                let host = app::normalize_host(d).unwrap_or_default();
                // Every suffix after a dot: `x.a.y.z` → `a.y.z`, `y.z`, `z`;
                // `*.y.z` → `y.z` (the same wildcard).
                let mut rest = host.as_str();
                while let Some((_, parent)) = rest.split_once('.') {
                    if let Some((owner, owner_app)) = wildcard_owner.get(parent)
                        && *owner != app.owner()
                    {
                        return Err(format!(
                            "app {}: {host} is under *.{parent}, which belongs to another owner (app {owner_app})",
                            app.name
                        ));
                    }
                    rest = parent;
                }
            }
        }
        let mut names = std::collections::HashSet::new();
        let mut domains = std::collections::HashMap::new();
        for app in &self.apps {
            if !names.insert(app.name.as_str()) {
                return Err(format!("apps: two apps are named {}", app.name));
            }
            for d in &app.domains {
                let host = app::normalize_host(d).unwrap_or_default();
                if let Some(other) = domains.insert(host.clone(), app.name.as_str())
                    && other != app.name
                {
                    return Err(format!(
                        "domain {host} belongs to both {other} and {}",
                        app.name
                    ));
                }
            }
        }
        Ok(())
    }
}

/// A TOML error as `file:line:column: reason`.
fn toml_error(path: &Path, text: &str, e: &toml::de::Error) -> ConfigError {
    let (line, column) = e
        .span()
        .map(|s| line_column(text, s.start))
        .unwrap_or((0, 0));
    ConfigError::Invalid {
        path: path.to_path_buf(),
        line,
        column,
        message: e.message().trim().to_string(),
    }
}

/// 1-based line and column of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rfind('\n')
        .map_or(before.len(), |nl| before.len() - nl - 1)
        + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("test.toml"), text)
    }

    #[test]
    fn empty_file_is_all_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.xdp.service_ports, vec![80, 443]);
        assert_eq!(c.xdp.mode, XdpMode::Auto);
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let err = parse("[xdp]\nservice_ports = [80]\nsyn_rat = 5\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("test.toml:3:1: "), "{err}");
        assert!(err.contains("syn_rat"), "{err}");
    }

    #[test]
    fn bad_cidr_names_its_line() {
        let err = parse("[xdp]\nblocklist = [\n  \"10.0.0.0/8\",\n  \"10.0.0.0/40\",\n]\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("test.toml:2:"), "{err}");
        assert!(err.contains("prefix length 40"), "{err}");
    }

    fn apps(spec: &[(&str, &str, &[&str])]) -> String {
        spec.iter()
            .map(|(name, owner, domains)| {
                let d: Vec<String> = domains.iter().map(|d| format!("\"{d}\"")).collect();
                format!(
                    "[[apps]]\nname = \"{name}\"\nowner = \"{owner}\"\ndomains = [{}]\nbackends = [\"127.0.0.1:1\"]\n",
                    d.join(", ")
                )
            })
            .collect()
    }

    #[test]
    fn wildcard_ownership_is_enforced() {
        // Same owner may nest names under its wildcard.
        assert!(
            parse(&apps(&[
                ("a", "o1", &["*.y.z"]),
                ("b", "o1", &["a.y.z", "*.b.y.z"])
            ]))
            .is_ok()
        );
        for other in [&["*.y.z"][..], &["a.y.z"], &["x.a.y.z"], &["*.a.y.z"]] {
            let err = parse(&apps(&[("a", "o1", &["*.y.z"]), ("b", "o2", other)]))
                .expect_err("refused")
                .to_string();
            assert!(err.contains("another owner"), "{other:?}: {err}");
        }
        // Unrelated names are fine.
        assert!(
            parse(&apps(&[
                ("a", "o1", &["*.y.z"]),
                ("b", "o2", &["y.z", "q.z"])
            ]))
            .is_ok()
        );
    }

    #[test]
    fn canonical_domain_rules() {
        let base = "[[apps]]\nname = \"a\"\ndomains = [\"a.test\", \"*.a.test\"]\nbackends = [\"127.0.0.1:1\"]\n";
        assert!(parse(&format!("{base}canonical_domain = \"a.test\"\n")).is_ok());
        let err = parse(&format!("{base}canonical_domain = \"*.a.test\"\n")).expect_err("wildcard");
        assert!(
            err.to_string().contains("wildcard cannot be the canonical"),
            "{err}"
        );
        let err = parse(&format!("{base}canonical_domain = \"b.test\"\n")).expect_err("foreign");
        assert!(err.to_string().contains("not one of its domains"), "{err}");
    }

    #[test]
    fn app_and_limit_errors_are_refused() {
        let err = parse("[[apps]]\nname = \"a\"\ndomains = [\"a.test\"]\nbackends = []\n")
            .expect_err("no backends");
        assert!(err.to_string().contains("no backends"), "{err}");
        let err = parse("[limits]\nmax_header_line = 99999\n").expect_err("limits");
        assert!(err.to_string().contains("max_header_line"), "{err}");
        let two = "[[apps]]\nname = \"a\"\ndomains = [\"x.test\"]\nbackends = [\"127.0.0.1:1\"]\n[[apps]]\nname = \"b\"\ndomains = [\"X.test\"]\nbackends = [\"127.0.0.1:1\"]\n";
        assert!(
            parse(two)
                .expect_err("dup")
                .to_string()
                .contains("belongs to both")
        );
    }

    #[test]
    fn listeners_are_addresses_or_tables_in_one_list() {
        let c = parse(
            "[server]\ntrusted_proxies = [\"10.0.0.0/8\"]\nhttp = [\"127.0.0.1:80\", { addr = \"127.0.0.1:81\", proxy_protocol = true }]\n[[server.https]]\naddr = \"[::1]:443\"\nproxy_protocol = true\n",
        )
        .unwrap();
        let http: Vec<_> = c
            .server
            .http
            .iter()
            .map(|l| (l.addr.to_string(), l.proxy_protocol))
            .collect();
        assert_eq!(
            http,
            [
                ("127.0.0.1:80".into(), false),
                ("127.0.0.1:81".into(), true)
            ]
        );
        assert_eq!(c.server.https.len(), 1);
        assert!(c.server.https[0].proxy_protocol);
        // A table without options is a plain listener.
        let c = parse("[server]\nhttp = [{ addr = \"127.0.0.1:80\" }]\n").unwrap();
        assert_eq!(
            c.server.http,
            [Listen::new("127.0.0.1:80".parse().unwrap())]
        );
    }

    #[test]
    fn listener_errors_name_file_line_and_reason() {
        let err = |text: &str| parse(text).unwrap_err().to_string();
        let e = err(
            "[server]\nhttp = [\n  \"127.0.0.1:80\",\n  { addr = \"127.0.0.1:81\", proxy_protcol = true },\n]\n",
        );
        assert!(e.starts_with("test.toml:4:"), "{e}");
        assert!(e.contains("proxy_protcol"), "{e}");
        let e = err("[server]\nhttp = [\"127.0.0.1\"]\n");
        assert!(e.starts_with("test.toml:2:"), "{e}");
        assert!(e.contains("not an ip:port"), "{e}");
        let e = err("[server]\nhttp = [{ proxy_protocol = true }]\n");
        assert!(e.starts_with("test.toml:2:"), "{e}");
        assert!(e.contains("addr"), "{e}");
        let e = err("[server]\nhttp = [{ addr = \"127.0.0.1:80\", proxy_protocol = \"yes\" }]\n");
        assert!(e.starts_with("test.toml:2:"), "{e}");
        // Cross-checks point at the entry too.
        let e =
            err("[server]\nhttp = [\n  { addr = \"127.0.0.1:80\", proxy_protocol = true },\n]\n");
        assert!(e.starts_with("test.toml:3:3: "), "{e}");
        assert!(e.contains("trusted_proxies is empty"), "{e}");
        let e = err("[server]\nhttp = [\"127.0.0.1:80\"]\nhttps = [\n\n  \"127.0.0.1:80\"]\n");
        assert!(e.starts_with("test.toml:5:3: "), "{e}");
        assert!(e.contains("listed twice"), "{e}");
    }

    #[test]
    fn semantic_errors_are_refused() {
        let err = parse("[xdp]\nephemeral_ports = [60000, 1000]\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("ephemeral_ports"), "{err}");
    }
}
