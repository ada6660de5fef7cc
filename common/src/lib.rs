//! Types shared by the XDP program (`xdp-ebpf`) and userspace (`portier`), and
//! the packet classifier itself.
//!
//! The classifier is written once, over the [`cursor::PacketCursor`] and
//! [`classify::Policy`] traits: the eBPF program implements them with the XDP
//! context and BPF maps, host tests and the fuzzer with byte slices and plain
//! collections. Nothing here allocates or panics on input; everything the
//! kernel runs is `#[inline(always)]` so the verifier sees one function.
#![no_std]

#[cfg(feature = "host")]
extern crate alloc;

pub mod classify;
pub mod cursor;
pub mod gcra;
pub mod maps;
pub mod prefix;
pub mod reason;

#[cfg(feature = "host")]
pub mod fixtures;
#[cfg(feature = "host")]
pub mod host;

pub use classify::{Policy, SourceAddr, classify};
pub use cursor::PacketCursor;
pub use reason::Reason;
