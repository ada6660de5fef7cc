//! CIDR prefixes in configs and operator commands: `203.0.113.0/24`,
//! `2001:db8::/32`, or a bare address meaning a host prefix.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use portier_common::prefix::Prefix;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cidr {
    V4(Prefix<4>),
    V6(Prefix<16>),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CidrError {
    #[error("`{0}` is not an IP address")]
    BadAddress(String),
    #[error("`{0}` is not a prefix length")]
    BadLength(String),
    #[error("prefix length {len} is longer than the address ({max} bits)")]
    TooLong { len: u8, max: u8 },
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (addr, len) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let ip: IpAddr = addr
            .parse()
            .map_err(|_| CidrError::BadAddress(addr.to_string()))?;
        let len = match len {
            Some(l) => Some(
                l.parse::<u8>()
                    .map_err(|_| CidrError::BadLength(l.to_string()))?,
            ),
            None => None,
        };
        match ip {
            IpAddr::V4(a) => {
                let len = len.unwrap_or(32);
                Prefix::new(a.octets(), len)
                    .map(Cidr::V4)
                    .ok_or(CidrError::TooLong { len, max: 32 })
            }
            IpAddr::V6(a) => {
                let len = len.unwrap_or(128);
                Prefix::new(a.octets(), len)
                    .map(Cidr::V6)
                    .ok_or(CidrError::TooLong { len, max: 128 })
            }
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cidr::V4(p) => write!(f, "{}/{}", std::net::Ipv4Addr::from(p.addr), p.len),
            Cidr::V6(p) => write!(f, "{}/{}", std::net::Ipv6Addr::from(p.addr), p.len),
        }
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self, ip) {
            (Cidr::V4(p), IpAddr::V4(a)) => p.contains(&a.octets()),
            (Cidr::V6(p), IpAddr::V6(a)) => p.contains(&a.octets()),
            _ => false,
        }
    }
}

impl Serialize for Cidr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_masks() {
        let c: Cidr = "10.1.2.3/8".parse().unwrap();
        assert_eq!(c.to_string(), "10.0.0.0/8");
        let h: Cidr = "2001:db8::1".parse().unwrap();
        assert_eq!(h.to_string(), "2001:db8::1/128");
        assert!(c.contains("10.200.0.1".parse().unwrap()));
        assert!(!c.contains("::1".parse().unwrap()));
    }

    #[test]
    fn refuses_garbage_with_a_reason() {
        assert_eq!(
            "10.0.0.0/33".parse::<Cidr>(),
            Err(CidrError::TooLong { len: 33, max: 32 })
        );
        assert!(matches!(
            "nope/8".parse::<Cidr>(),
            Err(CidrError::BadAddress(_))
        ));
        assert!(matches!(
            "10.0.0.0/x".parse::<Cidr>(),
            Err(CidrError::BadLength(_))
        ));
    }
}
