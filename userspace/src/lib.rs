//! Portier as a library: the pieces the `portier` binary wires together, and
//! that integration tests and benches drive directly.

pub mod accesslog;
pub mod challenge;
pub mod compress;
pub mod config;
pub mod control;
pub mod exchange;
pub mod fsutil;
pub mod http;
pub mod metrics;
pub mod mgmt;
pub mod proxy_protocol;
pub mod reactor;
pub mod router;
pub mod sched;
pub mod snapshot;
pub mod sticky;
pub mod time_fmt;
pub mod timer;
pub mod tls;
pub mod upstream;

/// Log to stderr, filtered by `PORTIER_LOG` (default `info`): the same for
/// the `portier` binary and the demo backend. See [`log_filter`].
pub fn init_logging() {
    let spec = std::env::var("PORTIER_LOG").unwrap_or_default();
    tracing_subscriber::fmt()
        .with_env_filter(log_filter(&spec))
        .with_writer(std::io::stderr)
        .init();
}

/// The filter for a `PORTIER_LOG` value (`tracing_subscriber::EnvFilter`
/// syntax; empty or invalid: `info`). Libraries that log about single
/// connections are held to ERROR unless the value names them: rustls warns
/// once per ClientHello with an IP address as SNI (clients and scanners do
/// that by the thousand), which a remote peer can turn into a log flood;
/// Portier counts those hellos in `portier_tls_bad_sni_total` instead.
/// `PORTIER_LOG=info,rustls=warn` brings the lines back.
pub fn log_filter(spec: &str) -> tracing_subscriber::EnvFilter {
    const QUIET_LIBRARIES: &[&str] = &["rustls"];
    let spec = spec.trim();
    let base = if spec.is_empty() { "info" } else { spec };
    let mut filter = tracing_subscriber::EnvFilter::try_new(base)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    for lib in QUIET_LIBRARIES {
        if !base.contains(lib)
            && let Ok(directive) = format!("{lib}=error").parse()
        {
            filter = filter.add_directive(directive);
        }
    }
    filter
}

#[cfg(test)]
mod tests {
    #[test]
    fn library_warnings_are_held_to_error_unless_named() {
        use tracing::level_filters::LevelFilter;
        let f = super::log_filter("");
        assert_eq!(f.to_string(), "rustls=error,info");
        assert_eq!(f.max_level_hint(), Some(LevelFilter::INFO));
        assert_eq!(super::log_filter("debug").to_string(), "rustls=error,debug");
        assert_eq!(
            super::log_filter("info,rustls=warn").to_string(),
            "rustls=warn,info"
        );
        assert_eq!(super::log_filter("[[bad").to_string(), "rustls=error,info");
    }
}
