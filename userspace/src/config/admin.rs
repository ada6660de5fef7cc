//! `[admin]`: where the admin API listens and which file holds its token.
//!
//! The section's presence turns the API on; inside it `listen` defaults to
//! `127.0.0.1:9090`. `listen = ""` or `listen = []` means no TCP listener
//! (then `unix_socket` is the only way in; with neither, the API is off).
//! Only the shape is checked here; the token file (existence, mode) is
//! checked when the API starts (`mgmt::admin`), so `portier check` works
//! on a machine without the token.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer};

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct AdminSettings {
    /// TCP listeners of the API (keep them on loopback or a management network).
    #[serde(deserialize_with = "one_or_many")]
    pub listen: Vec<SocketAddr>,
    /// Unix socket of the API (mode 0600), in addition to or instead of TCP.
    pub unix_socket: Option<PathBuf>,
    /// File holding the bearer token; must not be readable by group or others.
    pub token_file: PathBuf,
}

impl Default for AdminSettings {
    fn default() -> Self {
        AdminSettings {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 9090))],
            unix_socket: None,
            token_file: PathBuf::from("/etc/portier/admin.token"),
        }
    }
}

impl AdminSettings {
    /// Whether anything listens at all.
    pub fn is_enabled(&self) -> bool {
        !self.listen.is_empty() || self.unix_socket.is_some()
    }
}

/// `"ip:port"`, `""` (none) or `["ip:port", …]`.
fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<SocketAddr>, D::Error> {
    struct Visitor;
    impl<'de> serde::de::Visitor<'de> for Visitor {
        type Value = Vec<SocketAddr>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an \"ip:port\" string or a list of them")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            if v.trim().is_empty() {
                return Ok(Vec::new());
            }
            v.parse()
                .map(|a| vec![a])
                .map_err(|_| E::custom(format!("`{v}` is not an ip:port address")))
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(s) = seq.next_element::<String>()? {
                out.push(s.parse().map_err(|_| {
                    serde::de::Error::custom(format!("`{s}` is not an ip:port address"))
                })?);
            }
            Ok(out)
        }
    }
    d.deserialize_any(Visitor)
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use std::path::Path;

    fn parse(text: &str) -> Result<Config, crate::config::ConfigError> {
        Config::parse(Path::new("t.toml"), text)
    }

    #[test]
    fn absent_section_means_off_and_present_section_defaults_to_loopback_9090() {
        assert!(parse("").expect("empty").admin.is_none());
        let a = parse("[admin]\n").expect("admin").admin.expect("some");
        assert_eq!(a.listen, vec!["127.0.0.1:9090".parse().expect("addr")]);
        assert_eq!(a.token_file, Path::new("/etc/portier/admin.token"));
        assert!(a.is_enabled());
    }

    #[test]
    fn listen_takes_a_string_a_list_or_nothing() {
        let a = parse("[admin]\nlisten = [\"127.0.0.1:1\", \"[::1]:2\"]\n")
            .expect("list")
            .admin
            .expect("some");
        assert_eq!(a.listen.len(), 2);
        let a = parse("[admin]\nlisten = \"\"\n")
            .expect("empty")
            .admin
            .expect("some");
        assert!(!a.is_enabled());
        let a = parse("[admin]\nlisten = []\nunix_socket = \"/tmp/a.sock\"\n")
            .expect("unix")
            .admin
            .expect("some");
        assert!(a.is_enabled());
    }

    #[test]
    fn bad_listen_address_names_its_line() {
        let err = parse("[admin]\nlisten = \"nope\"\n")
            .expect_err("bad")
            .to_string();
        assert!(err.starts_with("t.toml:2:"), "{err}");
        assert!(err.contains("not an ip:port"), "{err}");
    }
}
