//! Portier as a library: the pieces the `portier` binary wires together, and
//! that integration tests and benches drive directly.

pub mod accesslog;
pub mod compress;
pub mod config;
pub mod control;
pub mod exchange;
pub mod http;
pub mod metrics;
pub mod mgmt;
pub mod reactor;
pub mod router;
pub mod sched;
pub mod snapshot;
pub mod sticky;
pub mod time_fmt;
pub mod timer;
pub mod tls;
pub mod upstream;
