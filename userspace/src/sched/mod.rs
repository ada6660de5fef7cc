//! Scheduling state shared by every reactor: per-app round-robin, backend
//! concurrency, queue occupancy and quarantine — all atomics, no locks.

pub mod balance;
