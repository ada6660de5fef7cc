//! Criterion micro-benchmarks live in `benches/`; the comparative load
//! harness (`portier-bench load`, run by `cargo xtask bench load`) lives in
//! [`load`]; the ACME benchmark (`portier-bench acme`, run by `cargo xtask
//! bench acme`) in [`acme`].

pub mod acme;
pub mod load;
