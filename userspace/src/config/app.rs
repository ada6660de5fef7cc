//! `[[apps]]`: an app's domains, backends and per-app settings.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AppSettings {
    pub name: String,
    /// Who the app belongs to (wildcard ownership); default: the app's name.
    #[serde(default)]
    pub owner: Option<String>,
    /// Host names: exact (`www.example.com`) or wildcards covering one label
    /// (`*.example.com`). Case, port and a trailing dot are ignored.
    pub domains: Vec<String>,
    /// Requests for the app's other domains get a 301 to this one.
    #[serde(default)]
    pub canonical_domain: Option<String>,
    /// Plain-HTTP requests get a 301 to https://; HTTPS responses carry HSTS.
    #[serde(default)]
    pub force_https: bool,
    /// Gzip text responses for clients that accept it (SPEC §3 Compression).
    #[serde(default = "default_true")]
    pub compress: bool,
    /// Bind each client to a backend with a cookie (off by default).
    #[serde(default)]
    pub sticky_sessions: bool,
    #[serde(default = "default_sticky_cookie")]
    pub sticky_cookie: String,
    /// `Strict-Transport-Security: max-age=<this>` when `force_https`.
    #[serde(default = "default_hsts")]
    pub hsts_max_age: u64,
    /// The app's containers, tried in strict round-robin.
    pub backends: Vec<SocketAddr>,
    /// Requests one backend serves at once; more wait in the queue.
    #[serde(default = "default_max_conns")]
    pub max_conns_per_backend: u32,
    /// Queue length per backend (the app's queue holds this × backends).
    #[serde(default = "default_queue")]
    pub queue_per_backend: u32,
    /// First quarantine probe delay; doubles per failed probe up to the cap.
    #[serde(default = "default_quarantine_initial")]
    pub quarantine_initial_ms: u64,
    #[serde(default = "default_quarantine_max")]
    pub quarantine_max_ms: u64,
    /// A backend back in rotation at least this long (and at least its
    /// last probe delay) starts its next quarantine at the initial delay;
    /// quarantined sooner, its backoff goes on doubling (flap damping).
    #[serde(default = "default_quarantine_stable")]
    pub quarantine_stable_ms: u64,
    /// Path (and query) a quarantine probe asks with `GET`.
    #[serde(default = "default_health_path")]
    pub health_path: String,
    /// A probe that has not received a complete response head by then
    /// (connect included) fails.
    #[serde(default = "default_health_timeout")]
    pub health_timeout_ms: u64,
}

fn default_true() -> bool {
    true
}
fn default_sticky_cookie() -> String {
    "portier_sticky".into()
}
fn default_hsts() -> u64 {
    31_536_000
}
fn default_max_conns() -> u32 {
    20
}
fn default_queue() -> u32 {
    50
}
fn default_quarantine_initial() -> u64 {
    1_000
}
fn default_quarantine_max() -> u64 {
    30_000
}
fn default_quarantine_stable() -> u64 {
    10_000
}
fn default_health_path() -> String {
    "/".into()
}
fn default_health_timeout() -> u64 {
    2_000
}

/// Longest `health_path` accepted.
const MAX_HEALTH_PATH: usize = 2048;

impl AppSettings {
    pub fn validate(&self) -> Result<(), String> {
        let n = &self.name;
        if n.is_empty() {
            return Err("apps: an app needs a name".into());
        }
        if self.backends.is_empty() {
            return Err(format!("app {n}: no backends"));
        }
        if self.max_conns_per_backend == 0 {
            return Err(format!("app {n}: max_conns_per_backend must be at least 1"));
        }
        if self.quarantine_initial_ms == 0 || self.quarantine_max_ms < self.quarantine_initial_ms {
            return Err(format!(
                "app {n}: quarantine_initial_ms must be positive and at most quarantine_max_ms"
            ));
        }
        if self.health_timeout_ms == 0 {
            return Err(format!("app {n}: health_timeout_ms must be positive"));
        }
        if !is_origin_form(&self.health_path) {
            return Err(format!(
                "app {n}: health_path `{}` must start with `/` and hold only visible ASCII (no spaces, no `#`), at most {MAX_HEALTH_PATH} bytes",
                self.health_path
            ));
        }
        for d in &self.domains {
            let Some(host) = normalize_host(d) else {
                return Err(format!("app {n}: `{d}` is not a host name"));
            };
            if host.contains('*') && wildcard_suffix(&host).is_none() {
                return Err(format!(
                    "app {n}: `{d}`: a wildcard is `*.` followed by at least two labels"
                ));
            }
        }
        if self.sticky_cookie.is_empty()
            || !self
                .sticky_cookie
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
        {
            return Err(format!(
                "app {n}: sticky_cookie must be letters, digits, _ or -"
            ));
        }
        if let Some(c) = &self.canonical_domain {
            let Some(host) = normalize_host(c) else {
                return Err(format!(
                    "app {n}: canonical_domain `{c}` is not a host name"
                ));
            };
            if host.contains('*') {
                return Err(format!(
                    "app {n}: a wildcard cannot be the canonical domain"
                ));
            }
            if !self
                .domains
                .iter()
                .any(|d| normalize_host(d).as_deref() == Some(&host))
            {
                return Err(format!(
                    "app {n}: canonical_domain {host} is not one of its domains"
                ));
            }
        }
        Ok(())
    }

    pub fn owner(&self) -> &str {
        self.owner.as_deref().unwrap_or(&self.name)
    }
}

/// A request target in origin form (RFC 9112 §3.2.1) that can go on a
/// request line as is: `/`, then visible ASCII without `#`.
fn is_origin_form(path: &str) -> bool {
    path.starts_with('/')
        && path.len() <= MAX_HEALTH_PATH
        && path.bytes().all(|b| b.is_ascii_graphic() && b != b'#')
}

/// `*.example.com` → `example.com`; `None` for anything else (including
/// `*.com`: a wildcard needs two labels under it, and only one `*`, first).
pub fn wildcard_suffix(host: &str) -> Option<&str> {
    let suffix = host.strip_prefix("*.")?;
    (suffix.contains('.') && !suffix.contains('*') && !suffix.starts_with('.')).then_some(suffix)
}

/// Lowercase, without port and one trailing dot; `None` if it cannot be a
/// host name (empty, spaces, control characters).
pub fn normalize_host(raw: &str) -> Option<String> {
    let raw = raw.trim();
    // [v6]:port or host:port
    let host = if let Some(rest) = raw.strip_prefix('[') {
        rest.split(']').next()?
    } else {
        match raw.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => raw,
        }
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty()
        || host.len() > 253
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'*' | b':'))
    {
        return None;
    }
    Some(host.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_matching_ignores_case_port_and_trailing_dot() {
        assert_eq!(
            normalize_host("WWW.Example.COM.:8080").as_deref(),
            Some("www.example.com")
        );
        assert_eq!(normalize_host("[::1]:80").as_deref(), Some("::1"));
        assert_eq!(normalize_host("a b"), None);
        assert_eq!(normalize_host(""), None);
    }

    #[test]
    fn health_path_must_fit_on_a_request_line() {
        for ok in ["/", "/healthz", "/status?full=1&x=%20"] {
            assert!(is_origin_form(ok), "{ok}");
        }
        for bad in ["", "healthz", "/a b", "/a\r\nX: y", "/a#frag", "/\u{e9}"] {
            assert!(!is_origin_form(bad), "{bad:?}");
        }
        assert!(!is_origin_form(&format!(
            "/{}",
            "a".repeat(MAX_HEALTH_PATH)
        )));
    }
}
