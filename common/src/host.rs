//! The classifier's [`Policy`] on the host: plain collections instead of BPF
//! maps. Used by unit tests, the fuzzer, `portier xdp classify`, and the
//! kernel test's differential check.

use alloc::collections::BTreeMap;
use alloc::vec;
use alloc::vec::Vec;

use crate::classify::Policy;
use crate::gcra::SynBucket;
use crate::maps::{PORTS_LEN, XdpConfig};
use crate::prefix::Prefix;

#[derive(Clone, Debug)]
pub struct HostPolicy {
    /// `None` simulates a failed config lookup.
    pub config: Option<XdpConfig>,
    /// `PORT_*` flags per port (65536 entries).
    pub ports: Vec<u8>,
    pub bogon_v4: Vec<Prefix<4>>,
    pub bogon_v6: Vec<Prefix<16>>,
    pub block_v4: Vec<Prefix<4>>,
    pub block_v6: Vec<Prefix<16>>,
    pub syn: BTreeMap<[u8; 16], SynBucket>,
    /// The clock the limiter sees, in ns.
    pub now_ns: u64,
}

impl HostPolicy {
    pub fn new(config: XdpConfig) -> Self {
        HostPolicy {
            config: Some(config),
            ports: vec![0; PORTS_LEN as usize],
            bogon_v4: Vec::new(),
            bogon_v6: Vec::new(),
            block_v4: Vec::new(),
            block_v6: Vec::new(),
            syn: BTreeMap::new(),
            now_ns: 0,
        }
    }
}

impl Policy for HostPolicy {
    fn config(&self) -> Option<XdpConfig> {
        self.config
    }

    fn port_flags(&self, port: u16) -> Option<u8> {
        self.ports.get(port as usize).copied()
    }

    fn is_bogon_v4(&self, src: [u8; 4]) -> bool {
        self.bogon_v4.iter().any(|p| p.contains(&src))
    }

    fn is_bogon_v6(&self, src: [u8; 16]) -> bool {
        self.bogon_v6.iter().any(|p| p.contains(&src))
    }

    fn is_blocked_v4(&self, src: [u8; 4]) -> bool {
        self.block_v4.iter().any(|p| p.contains(&src))
    }

    fn is_blocked_v6(&self, src: [u8; 16]) -> bool {
        self.block_v6.iter().any(|p| p.contains(&src))
    }

    fn admit_syn(&mut self, source: [u8; 16], config: &XdpConfig) -> bool {
        let now = self.now_ns;
        match self.syn.get_mut(&source) {
            Some(bucket) => bucket.admit(now, config.syn_interval_ns, config.syn_tolerance_ns),
            None => {
                self.syn
                    .insert(source, SynBucket::first(now, config.syn_interval_ns));
                true
            }
        }
    }
}
