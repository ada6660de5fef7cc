//! What the old process hands the new one, as data: which descriptor is
//! which (the descriptors themselves travel beside it, by index), and the
//! runtime state that is in no file. Pure: serde types and the choice of
//! which reactor thread takes which passed listener.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Bumped when the message changes shape; a new binary refuses a handoff
/// of another version (the old process then keeps serving).
pub const VERSION: u32 = 1;

/// Old → new: everything, once.
#[derive(Debug, Serialize, Deserialize)]
pub struct Handoff {
    pub version: u32,
    pub old_pid: u32,
    /// Every listening socket of every reactor (one per thread per address).
    pub listeners: Vec<PassedListener>,
    pub admin: Vec<PassedAdmin>,
    pub admin_token: Option<String>,
    pub xdp: Option<PassedXdp>,
    /// Quarantine and drain state per backend.
    pub backends: Vec<BackendState>,
    /// The random sticky-cookie key (when no `sticky_secret` is set), so
    /// cookies issued before the upgrade still bind.
    pub sticky_key: Vec<u8>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PassedListener {
    pub addr: SocketAddr,
    pub secure: bool,
    /// Index into the descriptors that came with the message.
    pub fd: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum PassedAdmin {
    Tcp { addr: SocketAddr, fd: usize },
    Unix { path: PathBuf, fd: usize },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PassedXdp {
    /// Map name → descriptor index.
    pub maps: Vec<(String, usize)>,
    pub links: Vec<PassedLink>,
    pub pin_dir: Option<PathBuf>,
    /// The `[xdp]` the maps were last written from: the new process writes
    /// only the difference to its own, so live `xdp block` entries stay.
    pub settings: crate::config::XdpSettings,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PassedLink {
    pub interface: String,
    pub mode: String,
    pub fd: usize,
}

/// One backend's state, with times relative to the handoff (the two
/// processes' clocks start at different instants).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendState {
    pub app: String,
    pub addr: SocketAddr,
    pub draining: bool,
    /// Quarantined: the next probe is due in this many ms.
    pub probe_in_ms: Option<u64>,
    /// The backoff delay in force (flap damping continues from it).
    pub backoff_ms: u64,
    /// When a probe last brought it back, ms before the handoff.
    pub back_for_ms: Option<u64>,
}

/// New → old: the outcome.
#[derive(Debug, Serialize, Deserialize)]
pub enum Reply {
    /// Serving: the old process may stop accepting.
    Ready {
        pid: u32,
        xdp_program_id: Option<u32>,
    },
    /// Could not start; the old process keeps serving.
    Failed { reason: String },
}

/// Which passed listeners each of `threads` reactors registers, for one
/// address: with as many sockets as threads or more, each socket goes to
/// exactly one thread (round robin); with fewer, threads share sockets
/// (the extra ones get a duplicate: an accept wakes both, one wins) —
/// never a fresh bind, which would need the old process's uid and would
/// split the accept queue.
pub fn assign(sockets: usize, threads: usize) -> Vec<Vec<usize>> {
    let mut out = vec![Vec::new(); threads];
    if sockets == 0 || threads == 0 {
        return out;
    }
    for s in 0..sockets {
        out[s % threads].push(s);
    }
    for (t, list) in out.iter_mut().enumerate() {
        if list.is_empty() {
            list.push(t % sockets);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_socket_is_served_and_every_thread_accepts() {
        assert_eq!(assign(2, 2), vec![vec![0], vec![1]]);
        assert_eq!(assign(4, 2), vec![vec![0, 2], vec![1, 3]]);
        assert_eq!(assign(3, 2), vec![vec![0, 2], vec![1]]);
        assert_eq!(assign(1, 3), vec![vec![0], vec![0], vec![0]]);
        assert_eq!(assign(2, 4), vec![vec![0], vec![1], vec![0], vec![1]]);
        assert_eq!(assign(0, 2), vec![Vec::<usize>::new(), Vec::new()]);
        for sockets in 1..6 {
            for threads in 1..6 {
                let a = assign(sockets, threads);
                let mut seen: Vec<usize> = a.iter().flatten().copied().collect();
                seen.sort();
                seen.dedup();
                assert_eq!(
                    seen,
                    (0..sockets).collect::<Vec<_>>(),
                    "{sockets}/{threads}"
                );
                assert!(a.iter().all(|l| !l.is_empty()));
            }
        }
    }

    #[test]
    fn the_message_round_trips() {
        let h = Handoff {
            version: VERSION,
            old_pid: 7,
            listeners: vec![PassedListener {
                addr: "127.0.0.1:80".parse().expect("addr"),
                secure: false,
                fd: 0,
            }],
            admin: vec![PassedAdmin::Unix {
                path: "/run/portier/admin.sock".into(),
                fd: 1,
            }],
            admin_token: None,
            xdp: None,
            backends: vec![BackendState {
                app: "a".into(),
                addr: "10.0.0.1:8080".parse().expect("addr"),
                draining: true,
                probe_in_ms: Some(900),
                backoff_ms: 2000,
                back_for_ms: None,
            }],
            sticky_key: vec![1; 32],
        };
        let text = serde_json::to_vec(&h).expect("encode");
        let back: Handoff = serde_json::from_slice(&text).expect("decode");
        assert_eq!(back.backends, h.backends);
        assert_eq!(back.listeners[0].addr, h.listeners[0].addr);
    }
}
