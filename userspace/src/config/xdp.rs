//! `[xdp]`: where the XDP program attaches and the packet policy it enforces.
//!
//! [`XdpSettings::policy`] compiles the section into the exact contents of the
//! BPF maps, as a `HostPolicy`: the loader writes that into the kernel, and
//! the host classifier can run on the very same value (differential tests,
//! `portier xdp classify`).

use std::path::PathBuf;

use portier_common::gcra::gcra_params;
use portier_common::host::HostPolicy;
use portier_common::maps::{
    CFG_DROP_CLOSED_PORTS, PORT_TCP_ALLOW, PORT_TCP_SERVICE, PORT_UDP_ALLOW, XdpConfig,
};
use portier_common::prefix::{DEFAULT_BOGONS_V4, DEFAULT_BOGONS_V6, Prefix};
use serde::{Deserialize, Serialize};

use super::Cidr;

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum XdpMode {
    /// Native (driver) mode, else generic, else run without XDP with a warning.
    #[default]
    Auto,
    /// Native only: failing to attach is an error.
    Native,
    /// Generic (skb) mode only, e.g. on `lo`.
    Generic,
    /// Do not load XDP at all.
    Off,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct XdpSettings {
    /// Interfaces to attach to; empty = no XDP.
    pub interfaces: Vec<String>,
    pub mode: XdpMode,
    /// Where the maps are pinned for `portier xdp …` (must be on a bpffs).
    pub pin_dir: PathBuf,
    /// TCP ports of the HTTP/HTTPS listeners.
    pub service_ports: Vec<u16>,
    /// Other TCP ports that stay reachable (SSH, admin API, ...).
    pub allow_tcp_ports: Vec<u16>,
    pub allow_udp_ports: Vec<u16>,
    /// Drop TCP/UDP to ports that are neither service nor allowed (and ICMP
    /// types the node does not need). Off = count them only.
    pub drop_closed_ports: bool,
    /// `[low, high]`, inclusive: where replies to the node's own connections
    /// arrive (match `net.ipv4.ip_local_port_range`).
    pub ephemeral_ports: [u16; 2],
    /// New TCP connections (bare SYNs) per second per source (IPv4 address or
    /// IPv6 /64); 0 disables the limiter.
    pub syn_rate: u32,
    /// SYNs a source may send back to back before the rate applies.
    pub syn_burst: u32,
    /// Source prefixes dropped as bogons/martians; default: the special-purpose
    /// blocks that are never valid sources (loopback, multicast, ...).
    pub bogons: Option<Vec<Cidr>>,
    /// Source prefixes dropped at start; `portier xdp block` adds more live.
    pub blocklist: Vec<Cidr>,
}

impl Default for XdpSettings {
    fn default() -> Self {
        XdpSettings {
            interfaces: Vec::new(),
            mode: XdpMode::Auto,
            pin_dir: PathBuf::from("/sys/fs/bpf/portier"),
            service_ports: vec![80, 443],
            allow_tcp_ports: vec![22],
            allow_udp_ports: Vec::new(),
            drop_closed_ports: true,
            ephemeral_ports: [32768, 60999],
            syn_rate: 200,
            syn_burst: 400,
            bogons: None,
            blocklist: Vec::new(),
        }
    }
}

impl XdpSettings {
    pub fn validate(&self) -> Result<(), String> {
        let [lo, hi] = self.ephemeral_ports;
        if lo > hi {
            return Err(format!(
                "xdp.ephemeral_ports: low port {lo} is above high port {hi}"
            ));
        }
        for (name, ports) in [
            ("service_ports", &self.service_ports),
            ("allow_tcp_ports", &self.allow_tcp_ports),
            ("allow_udp_ports", &self.allow_udp_ports),
        ] {
            if ports.contains(&0) {
                return Err(format!("xdp.{name}: port 0 is not a port"));
            }
        }
        if self.syn_rate > 1_000_000_000 {
            return Err("xdp.syn_rate: at most 1e9 per second".into());
        }
        for name in &self.interfaces {
            if name.is_empty() || name.len() >= 16 || name.contains('/') {
                return Err(format!("xdp.interfaces: `{name}` is not an interface name"));
            }
        }
        Ok(())
    }

    /// The bogon list in effect (configured, or the defaults).
    pub fn bogon_list(&self) -> Vec<Cidr> {
        match &self.bogons {
            Some(list) => list.clone(),
            None => DEFAULT_BOGONS_V4
                .iter()
                .filter_map(|&(a, l)| Prefix::new(a, l).map(Cidr::V4))
                .chain(
                    DEFAULT_BOGONS_V6
                        .iter()
                        .filter_map(|&(a, l)| Prefix::new(a, l).map(Cidr::V6)),
                )
                .collect(),
        }
    }

    /// Compile into the contents of the BPF maps.
    pub fn policy(&self) -> HostPolicy {
        let (interval, tolerance) = gcra_params(self.syn_rate, self.syn_burst);
        let mut p = HostPolicy::new(XdpConfig {
            flags: if self.drop_closed_ports {
                CFG_DROP_CLOSED_PORTS
            } else {
                0
            },
            ephemeral_lo: self.ephemeral_ports[0],
            ephemeral_hi: self.ephemeral_ports[1],
            syn_interval_ns: interval,
            syn_tolerance_ns: tolerance,
        });
        for (ports, flag) in [
            (&self.service_ports, PORT_TCP_SERVICE),
            (&self.allow_tcp_ports, PORT_TCP_ALLOW),
            (&self.allow_udp_ports, PORT_UDP_ALLOW),
        ] {
            for &port in ports {
                if let Some(slot) = p.ports.get_mut(port as usize) {
                    *slot |= flag;
                }
            }
        }
        for cidr in self.bogon_list() {
            match cidr {
                Cidr::V4(x) => p.bogon_v4.push(x),
                Cidr::V6(x) => p.bogon_v6.push(x),
            }
        }
        for cidr in &self.blocklist {
            match *cidr {
                Cidr::V4(x) => p.block_v4.push(x),
                Cidr::V6(x) => p.block_v6.push(x),
            }
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portier_common::classify::classify;
    use portier_common::cursor::SliceCursor;
    use portier_common::fixtures;

    #[test]
    fn fixture_settings_compile_to_the_fixture_policy() {
        // The settings the kernel test writes must mean what the fixtures assume.
        let s = XdpSettings {
            service_ports: fixtures::SERVICE_PORTS.to_vec(),
            allow_tcp_ports: fixtures::ALLOW_TCP.to_vec(),
            allow_udp_ports: fixtures::ALLOW_UDP.to_vec(),
            ephemeral_ports: [fixtures::EPHEMERAL.0, fixtures::EPHEMERAL.1],
            syn_rate: fixtures::SYN_RATE,
            syn_burst: fixtures::SYN_BURST,
            blocklist: vec![
                "192.168.77.0/24".parse().unwrap(),
                "fd77::/16".parse().unwrap(),
            ],
            ..XdpSettings::default()
        };
        let mut compiled = s.policy();
        let expected = fixtures::standard_policy();
        assert_eq!(compiled.config, expected.config);
        assert_eq!(compiled.ports, expected.ports);
        assert_eq!(compiled.bogon_v4, expected.bogon_v4);
        assert_eq!(compiled.bogon_v6, expected.bogon_v6);
        assert_eq!(compiled.block_v4, expected.block_v4);
        assert_eq!(compiled.block_v6, expected.block_v6);
        for f in fixtures::table() {
            assert_eq!(
                classify(&SliceCursor(&f.frame), &mut compiled),
                f.expect,
                "{}",
                f.name
            );
        }
    }
}
