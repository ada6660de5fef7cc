//! `[[apps]]`: an app's domains, backends and per-app settings.

use std::net::SocketAddr;

use serde::Deserialize;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppSettings {
    pub name: String,
    /// Exact host names (case, port and a trailing dot are ignored).
    pub domains: Vec<String>,
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
        for d in &self.domains {
            if normalize_host(d).is_none() {
                return Err(format!("app {n}: `{d}` is not a host name"));
            }
        }
        Ok(())
    }
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
}
