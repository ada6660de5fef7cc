//! One entry of `[server] http` / `https`: a listen address, written as a
//! plain string (`"0.0.0.0:80"`, as always) or as a table when it has
//! options (`{ addr = "10.0.0.5:80", proxy_protocol = true }`, or a
//! `[[server.http]]` section). Both forms mix in one list.
//!
//! Owns: parsing an entry (errors carry the entry's place in the file) and
//! the listener checks that look at several entries or keys (an address
//! listed twice; `proxy_protocol` with nobody trusted to send it).

use std::net::SocketAddr;
use std::ops::Range;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};

/// A listener and its options.
#[derive(Clone, Debug)]
pub struct Listen {
    pub addr: SocketAddr,
    /// Every connection starts with a PROXY protocol header (v1 or v2) from
    /// a peer in `server.trusted_proxies`; its address is the client's.
    pub proxy_protocol: bool,
    /// Where the entry is written (byte range), for errors found later.
    pub span: Option<Range<usize>>,
}

impl Listen {
    pub fn new(addr: SocketAddr) -> Listen {
        Listen {
            addr,
            proxy_protocol: false,
            span: None,
        }
    }
}

/// Same listener, same options (where it is written does not matter).
impl PartialEq for Listen {
    fn eq(&self, other: &Listen) -> bool {
        self.addr == other.addr && self.proxy_protocol == other.proxy_protocol
    }
}

impl Eq for Listen {}

/// The table form.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Table {
    addr: SocketAddr,
    #[serde(default)]
    proxy_protocol: bool,
}

/// Either form, before its span is attached.
struct Form(Listen);

impl<'de> Deserialize<'de> for Form {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Form, D::Error> {
        struct FormVisitor;
        impl<'de> Visitor<'de> for FormVisitor {
            type Value = Form;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an address like \"0.0.0.0:80\" or a table { addr = \"0.0.0.0:80\", proxy_protocol = true }")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Form, E> {
                s.parse()
                    .map(|addr| Form(Listen::new(addr)))
                    .map_err(|_| E::custom(format!("`{s}` is not an ip:port address")))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Form, A::Error> {
                let t = Table::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(Form(Listen {
                    addr: t.addr,
                    proxy_protocol: t.proxy_protocol,
                    span: None,
                }))
            }
        }
        d.deserialize_any(FormVisitor)
    }
}

impl<'de> Deserialize<'de> for Listen {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Listen, D::Error> {
        let spanned = toml::Spanned::<Form>::deserialize(d)?;
        let span = spanned.span();
        let Form(mut listen) = spanned.into_inner();
        listen.span = Some(span);
        Ok(listen)
    }
}

/// A listener check that failed, and where (when known).
#[derive(Debug)]
pub struct ListenError {
    pub message: String,
    pub span: Option<Range<usize>>,
}

/// The checks across entries: no address twice (the same socket bound
/// twice would split its connections between two listeners), and no
/// `proxy_protocol` listener when no peer is trusted to send the header
/// (it would refuse every connection).
pub fn check(http: &[Listen], https: &[Listen], trusted: usize) -> Result<(), ListenError> {
    let all = http
        .iter()
        .map(|l| ("http", l))
        .chain(https.iter().map(|l| ("https", l)));
    let mut seen = Vec::new();
    for (key, l) in all {
        if seen.contains(&l.addr) {
            return Err(ListenError {
                message: format!("server.{key}: {} is listed twice", l.addr),
                span: l.span.clone(),
            });
        }
        seen.push(l.addr);
        if l.proxy_protocol && trusted == 0 {
            return Err(ListenError {
                message: format!(
                    "server.{key}: {} has proxy_protocol = true but server.trusted_proxies is empty (every connection would be refused)",
                    l.addr
                ),
                span: l.span.clone(),
            });
        }
    }
    Ok(())
}
