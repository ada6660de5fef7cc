//! Criterion micro-benchmarks live in `benches/`; the comparative load
//! harness (`portier-bench load`, run by `cargo xtask bench load`) lives in
//! [`load`]; the ACME benchmark (`portier-bench acme`, run by `cargo xtask
//! bench acme`) in [`acme`]; the region benchmark (`portier-bench region`,
//! run by `cargo xtask bench region`) in [`region`].

pub mod acme;
pub mod load;
pub mod region;
