//! Scheduling state shared by every reactor: per-app round-robin, backend
//! concurrency and quarantine (atomics), the app-wide FIFO queue (one short
//! lock, taken only when requests wait), and the retry rules (pure).

pub mod balance;
pub mod queue;
pub mod retry;
