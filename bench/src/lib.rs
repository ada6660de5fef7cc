//! Criterion micro-benchmarks live in `benches/`; the comparative load
//! harness (`portier-bench load`, run by `cargo xtask bench load`) lives in
//! [`load`]; the ACME benchmark (`portier-bench acme`, run by `cargo xtask
//! bench acme`) in [`acme`]; attacks vs a legitimate client's latency
//! (`portier-bench attacks`, run by `cargo xtask bench attacks`) in
//! [`attacks`]; the region benchmark (`portier-bench region`, run by `cargo
//! xtask bench region`) in [`region`].

pub mod acme;
pub mod attacks;
pub mod load;
pub mod region;
