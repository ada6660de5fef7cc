//! Benchmarks live in `benches/`; the comparative load harness will live here.
