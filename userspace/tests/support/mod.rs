//! Shared helpers for the integration tests.
pub mod netns;
pub mod proc;
