//! The immutable view of the configuration the reactors serve from.
//!
//! Built by the management side from a validated [`Config`], shipped to the
//! reactors as an `Arc` through an `ArcSwap`: a reactor loads it once per
//! request and never takes a lock. Per-backend runtime state (in-flight
//! counts, quarantine) lives in the `Balancer`s, which a rebuild carries over
//! for apps whose backends did not change.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::config::app::{normalize_host, wildcard_suffix};
use crate::config::{Cidr, Config};
use crate::http::Limits;
use crate::sched::balance::{Backoff, Balancer};

#[derive(Debug)]
pub struct App {
    pub name: String,
    pub balancer: Arc<Balancer>,
    /// Other domains redirect here (301).
    pub canonical: Option<String>,
    pub force_https: bool,
    /// `Strict-Transport-Security` value for HTTPS responses, when forced.
    pub hsts: Option<String>,
    pub sticky: Option<Arc<crate::sticky::Sticky>>,
    /// Gzip eligible responses for clients that accept it.
    pub compress: bool,
    /// How quarantined backends are probed (`mgmt/probe.rs`).
    pub health: Health,
    /// What the balancer was built from: a reload keeps the balancer (and
    /// its in-flight counts and quarantine state) when this is unchanged.
    balancer_key: String,
    /// Requests answered for this app (kept across reloads by app name).
    pub stats: Arc<AppStats>,
}

/// The request a quarantine probe sends, and how long it waits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Health {
    /// `Host` of the probe: the canonical domain, else the first exact
    /// domain; `None` (only wildcards) → the backend's own address.
    pub host: Option<String>,
    /// Origin-form target (validated by the config).
    pub path: String,
    pub timeout: Duration,
}

/// Method classes of the per-app counters.
pub const METHOD_CLASSES: [&str; 3] = ["read", "write", "other"];
/// Status classes of the per-app counters (index = status / 100, 0 = other).
pub const STATUS_CLASSES: [&str; 6] = ["other", "1xx", "2xx", "3xx", "4xx", "5xx"];

/// Per-app response counters by method class and status class: relaxed
/// atomics, lock-free; summed by the scrape.
#[derive(Debug, Default)]
pub struct AppStats {
    pub responses: [[std::sync::atomic::AtomicU64; 6]; 3],
}

impl AppStats {
    pub fn count(&self, method: &str, status: u16) {
        let m = match method {
            "GET" | "HEAD" | "OPTIONS" => 0,
            "POST" | "PUT" | "PATCH" | "DELETE" => 1,
            _ => 2,
        };
        let s = match status {
            100..=599 => (status / 100) as usize,
            _ => 0,
        };
        self.responses[m][s].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    pub header: Duration,
    pub keepalive: Duration,
    pub backend_keepalive: Duration,
    pub connect: Duration,
    pub read: Duration,
    pub tunnel_idle: Duration,
    pub queue: Duration,
    /// HTTP/2 response stream stalled on a zero send window.
    pub h2_stall: Duration,
}

/// An app's place in `Snapshot::apps` (valid for that snapshot only).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AppId(pub usize);

#[derive(Debug)]
pub struct Snapshot {
    /// Normalised exact host → index in `apps`.
    routes: HashMap<String, AppId>,
    /// `*.example.com` as `example.com` → index in `apps`.
    wildcards: HashMap<String, AppId>,
    pub apps: Vec<App>,
    pub limits: Limits,
    pub timeouts: Timeouts,
    pub error_header: String,
    pub trusted_proxies: Vec<Cidr>,
    pub public_http_port: u16,
    pub public_https_port: u16,
    pub gzip_min_size: u64,
    pub gzip_level: u32,
}

impl Snapshot {
    pub fn build(config: &Config) -> Snapshot {
        Snapshot::rebuild(config, None)
    }

    /// Build from `config`, keeping the balancers of `previous` for apps
    /// whose backends and balancing settings did not change.
    pub fn rebuild(config: &Config, previous: Option<&Snapshot>) -> Snapshot {
        let mut routes = HashMap::new();
        let mut wildcards = HashMap::new();
        let mut apps = Vec::with_capacity(config.apps.len());
        // The previous apps by name (names are unique): one lookup per app,
        // not a scan of every previous app (10,000 apps made that 10^8
        // comparisons per rebuild).
        let old: HashMap<&str, &App> = previous
            .map(|p| p.apps.iter().map(|o| (o.name.as_str(), o)).collect())
            .unwrap_or_default();
        for (i, a) in config.apps.iter().enumerate() {
            for d in &a.domains {
                if let Some(host) = normalize_host(d) {
                    match wildcard_suffix(&host) {
                        Some(suffix) => wildcards.insert(suffix.to_string(), AppId(i)),
                        None => routes.insert(host, AppId(i)),
                    };
                }
            }
            let backoff = Backoff {
                initial_ms: a.quarantine_initial_ms,
                max_ms: a.quarantine_max_ms,
                stable_ms: a.quarantine_stable_ms,
            };
            let balancer_key = format!(
                "{:?}/{}/{}/{:?}",
                a.backends, a.max_conns_per_backend, a.queue_per_backend, backoff
            );
            let before = old.get(a.name.as_str());
            let kept = before
                .filter(|o| o.balancer_key == balancer_key)
                .map(|o| o.balancer.clone());
            let balancer = kept.unwrap_or_else(|| {
                Arc::new(Balancer::new(
                    &a.backends,
                    a.max_conns_per_backend,
                    a.queue_per_backend,
                    backoff,
                ))
            });
            let stats = before.map(|o| o.stats.clone()).unwrap_or_default();
            apps.push(App {
                name: a.name.clone(),
                stats,
                balancer,
                canonical: a.canonical_domain.as_deref().and_then(normalize_host),
                force_https: a.force_https,
                hsts: a.force_https.then(|| format!("max-age={}", a.hsts_max_age)),
                compress: a.compress,
                health: Health {
                    host: a
                        .canonical_domain
                        .iter()
                        .chain(&a.domains)
                        .filter_map(|d| normalize_host(d))
                        .find(|h| !h.contains('*')),
                    path: a.health_path.clone(),
                    timeout: Duration::from_millis(a.health_timeout_ms),
                },
                sticky: a.sticky_sessions.then(|| {
                    Arc::new(crate::sticky::Sticky::new(
                        &a.name,
                        &a.sticky_cookie,
                        &a.backends,
                        config.server.sticky_secret.as_deref(),
                    ))
                }),
                balancer_key,
            });
        }
        let l = &config.limits;
        Snapshot {
            routes,
            wildcards,
            apps,
            limits: Limits {
                max_header_section: l.max_header_section,
                max_header_line: l.max_header_line,
                max_body: l.max_body,
                max_headers: l.max_headers,
            },
            timeouts: Timeouts {
                header: Duration::from_millis(l.header_timeout_ms),
                keepalive: Duration::from_millis(l.keepalive_timeout_ms),
                backend_keepalive: Duration::from_millis(l.backend_keepalive_ms),
                connect: Duration::from_millis(l.connect_timeout_ms),
                read: Duration::from_millis(l.read_timeout_ms),
                tunnel_idle: Duration::from_millis(l.tunnel_idle_timeout_ms),
                queue: Duration::from_millis(l.queue_timeout_ms),
                h2_stall: Duration::from_millis(l.h2_stall_timeout_ms),
            },
            error_header: config.server.error_header.clone(),
            trusted_proxies: config.server.trusted_proxies.clone(),
            public_http_port: config.server.public_http_port,
            public_https_port: config.server.public_https_port,
            gzip_min_size: config.server.gzip_min_size,
            gzip_level: config.server.gzip_level,
        }
    }

    /// Every name an app serves: exact hosts, and wildcards as `*.suffix`
    /// (what certificates are ordered for).
    pub fn domains(&self) -> impl Iterator<Item = String> + '_ {
        self.routes
            .keys()
            .cloned()
            .chain(self.wildcards.keys().map(|s| format!("*.{s}")))
    }

    /// The app serving `host` (already normalised: lowercase, no port, no
    /// trailing dot).
    /// Exact names beat wildcards (across all apps); a wildcard covers one
    /// label, so only the immediate parent can match: O(1) per lookup.
    pub fn route(&self, host: &str) -> Option<&App> {
        let id = self.routes.get(host).or_else(|| {
            host.split_once('.')
                .and_then(|(_, parent)| self.wildcards.get(parent))
        })?;
        self.apps.get(id.0)
    }

    pub fn is_trusted(&self, ip: std::net::IpAddr) -> bool {
        self.trusted_proxies.iter().any(|c| c.contains(ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn routes_exact_domains_case_insensitively() {
        let c = Config::parse(
            Path::new("t.toml"),
            "[[apps]]\nname = \"a\"\ndomains = [\"Www.Example.com\"]\nbackends = [\"127.0.0.1:1\"]\n",
        )
        .unwrap();
        let s = Snapshot::build(&c);
        assert_eq!(
            s.route("www.example.com").map(|a| a.name.as_str()),
            Some("a")
        );
        assert!(s.route("example.com").is_none());
    }

    fn apps_config(apps: &[(&str, &str)]) -> Config {
        let mut text = String::new();
        for (name, backend) in apps {
            text.push_str(&format!(
                "[[apps]]\nname = \"{name}\"\ndomains = [\"{name}.test\"]\nbackends = [\"{backend}\"]\n"
            ));
        }
        Config::parse(Path::new("t.toml"), &text).unwrap()
    }

    #[test]
    fn rebuild_keeps_balancers_and_stats_by_app_name_whatever_the_order() {
        let names: Vec<String> = (0..50).map(|i| format!("app{i}")).collect();
        let first: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "127.0.0.1:1")).collect();
        let a = Snapshot::build(&apps_config(&first));
        // Reversed, app7 moved to another backend, app3 gone, one new app.
        let mut next: Vec<(&str, &str)> = first
            .iter()
            .rev()
            .filter(|(n, _)| *n != "app3")
            .map(|&(n, b)| {
                if n == "app7" {
                    (n, "127.0.0.1:2")
                } else {
                    (n, b)
                }
            })
            .collect();
        next.push(("new", "127.0.0.1:1"));
        let b = Snapshot::rebuild(&apps_config(&next), Some(&a));
        let find = |s: &Snapshot, n: &str| {
            s.apps
                .iter()
                .find(|x| x.name == n)
                .map(|x| (x.balancer.clone(), x.stats.clone()))
        };
        for app in &b.apps {
            let (bal, stats) = find(&b, &app.name).unwrap();
            match (app.name.as_str(), find(&a, &app.name)) {
                ("new", old) => assert!(old.is_none()),
                ("app7", Some((old_bal, old_stats))) => {
                    assert!(
                        !Arc::ptr_eq(&bal, &old_bal),
                        "backends changed: new balancer"
                    );
                    assert!(Arc::ptr_eq(&stats, &old_stats), "stats follow the name");
                }
                (_, Some((old_bal, old_stats))) => {
                    assert!(
                        Arc::ptr_eq(&bal, &old_bal),
                        "{} kept its balancer",
                        app.name
                    );
                    assert!(Arc::ptr_eq(&stats, &old_stats));
                }
                (n, None) => panic!("{n} was in the first snapshot"),
            }
        }
        assert_eq!(b.apps.len(), 50);
        assert_eq!(b.route("app9.test").map(|x| x.name.as_str()), Some("app9"));
    }
}
