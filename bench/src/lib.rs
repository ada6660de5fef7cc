//! Criterion micro-benchmarks live in `benches/`; the comparative load
//! harness (`portier-bench load`, run by `cargo xtask bench load`) lives in
//! [`load`].

pub mod load;
