//! The management side: everything that is not on the request path.
//! (tokio-driven; reaches reactors only through control messages.)

pub mod acme;
pub mod admin;
pub mod bpf;
pub mod certs;
pub mod manager;
pub mod metrics;
pub mod notify;
pub mod privileges;
pub mod probe;
pub mod region;
pub mod upgrade;
