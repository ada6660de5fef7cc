//! Shared helpers for the integration tests.
pub mod bind;
pub mod netns;
pub mod proc;
