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
/// the `portier` binary and the demo backend.
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PORTIER_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
}
