//! Shared helpers for the integration tests.
pub mod bind;
pub mod etcd;
pub mod mini_acme;
pub mod netns;
pub mod pebble;
pub mod proc;
pub mod procfs;
