//! Propagation: does every authoritative server of the zone serve the TXT
//! value? The CA may ask any of them, so one lagging secondary fails the
//! challenge (RFC 8555 section 8.4).
//!
//! Owns: finding the zone apex (SOA, walking up from the record's name),
//! its NS set and their addresses through the configured resolvers, then
//! asking each address directly (RD=0, AA required). Must not: cache (a
//! resolver's cache is exactly what we must not trust for the TXT itself)
//! or write anything. Fed by: resolvers, the authoritative port, a name
//! and value. Emits: `Propagation`, one `ServerSeen` per address.
//!
//! ```text
//!   fqdn --SOA?--> resolver   (answer SOA at name, or SOA in authority
//!                              of NXDOMAIN/NODATA = the apex; else walk up)
//!   apex --NS?---> resolver   -> ns1, ns2, ...
//!   nsN  --A/AAAA?-> resolver -> addresses
//!   addr:port --TXT fqdn, RD=0--> must answer AA with the value
//! ```

use std::net::{IpAddr, SocketAddr};

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};

use super::wire::{self, Transport, rcode_name};
use super::{DnsError, Propagation, ServerSeen, plain};

/// Ask the resolvers in order; the first that gives an answer we can use
/// (NOERROR or NXDOMAIN) wins. Other rcodes and timeouts move on; the
/// last failure is returned when none answers.
pub async fn resolve(
    resolvers: &[SocketAddr],
    name: &Name,
    rtype: RecordType,
) -> Result<Message, DnsError> {
    let mut last = DnsError::NoResolvers;
    for &resolver in resolvers {
        let mut request = Message::query();
        request.metadata.recursion_desired = true;
        request.add_query(Query::query(name.clone(), rtype));
        match wire::exchange(resolver, &request, Transport::Udp, wire::EXCHANGE_TIMEOUT).await {
            Ok(reply) => match reply.message.response_code {
                ResponseCode::NoError | ResponseCode::NXDomain => return Ok(reply.message),
                rcode => {
                    last = DnsError::Lookup {
                        name: plain(name),
                        rtype: rtype.to_string(),
                        server: resolver,
                        reason: rcode_name(rcode),
                    }
                }
            },
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// The apex of the zone holding `fqdn`.
pub async fn find_zone(resolvers: &[SocketAddr], fqdn: &Name) -> Result<Name, DnsError> {
    let mut name = fqdn.clone();
    let mut last_error = None;
    loop {
        match resolve(resolvers, &name, RecordType::SOA).await {
            Ok(reply) => {
                if let Some(apex) = apex_in(&reply, &name) {
                    return Ok(apex);
                }
            }
            // An authoritative-only server refuses names outside its
            // zones: keep walking up.
            Err(e) => last_error = Some(e.to_string()),
        }
        if name.is_root() {
            return Err(DnsError::NoZone {
                name: plain(fqdn),
                reason: last_error.unwrap_or_else(|| "no SOA up to the root".into()),
            });
        }
        name = name.base_name();
    }
}

/// The zone apex a reply to `SOA name?` reveals: an SOA owned by `name`
/// in the answer, or the SOA of a negative answer's authority section
/// (RFC 2308 section 3) when it is an ancestor of `name`.
pub fn apex_in(reply: &Message, name: &Name) -> Option<Name> {
    let is_soa = |r: &&hickory_proto::rr::Record| matches!(r.data, RData::SOA(_));
    if let Some(r) = reply
        .answers
        .iter()
        .filter(is_soa)
        .find(|r| &r.name == name)
    {
        return Some(r.name.clone());
    }
    if reply.answers.is_empty() {
        return reply
            .authorities
            .iter()
            .filter(is_soa)
            .find(|r| r.name.zone_of(name))
            .map(|r| r.name.clone());
    }
    None
}

/// The zone's nameservers (NS at the apex), sorted, deduplicated.
pub async fn nameservers(resolvers: &[SocketAddr], zone: &Name) -> Result<Vec<Name>, DnsError> {
    let reply = resolve(resolvers, zone, RecordType::NS).await?;
    let mut names: Vec<Name> = reply
        .answers
        .iter()
        .filter(|r| &r.name == zone)
        .filter_map(|r| match &r.data {
            RData::NS(ns) => Some(ns.0.clone()),
            _ => None,
        })
        .collect();
    names.sort();
    names.dedup();
    Ok(names)
}

/// A and AAAA of a nameserver; a failed lookup of one family is no error
/// as long as the other gives something.
pub async fn addresses(resolvers: &[SocketAddr], host: &Name) -> Result<Vec<IpAddr>, DnsError> {
    let mut out = Vec::new();
    let mut last_error = None;
    for rtype in [RecordType::A, RecordType::AAAA] {
        match resolve(resolvers, host, rtype).await {
            Ok(reply) => out.extend(reply.answers.iter().filter_map(|r| match &r.data {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                _ => None,
            })),
            Err(e) => last_error = Some(e),
        }
    }
    match (out.is_empty(), last_error) {
        (true, Some(e)) => Err(e),
        _ => Ok(out),
    }
}

/// Ask one authoritative server for `TXT fqdn`: does it serve `value`?
pub async fn ask(server: SocketAddr, fqdn: &Name, value: &str) -> Result<bool, DnsError> {
    let mut request = Message::query();
    request.metadata.recursion_desired = false;
    request.add_query(Query::query(fqdn.clone(), RecordType::TXT));
    let reply = wire::exchange(server, &request, Transport::Udp, wire::EXCHANGE_TIMEOUT).await?;
    serves(server, &reply.message, fqdn, value)
}

/// Judge an authoritative answer: it must be authoritative (AA) and
/// NOERROR/NXDOMAIN; then, is the value among the TXT records of `fqdn`?
pub fn serves(
    server: SocketAddr,
    reply: &Message,
    fqdn: &Name,
    value: &str,
) -> Result<bool, DnsError> {
    let rcode = reply.response_code;
    if !matches!(rcode, ResponseCode::NoError | ResponseCode::NXDomain) {
        return Err(DnsError::Lookup {
            name: plain(fqdn),
            rtype: "TXT".into(),
            server,
            reason: rcode_name(rcode),
        });
    }
    if reply.truncation {
        // Part of the RRset is missing; wire.rs retries those over TCP.
        return Err(DnsError::Lookup {
            name: plain(fqdn),
            rtype: "TXT".into(),
            server,
            reason: "answer truncated (TC=1)".into(),
        });
    }
    if !reply.authoritative {
        return Err(DnsError::Lookup {
            name: plain(fqdn),
            rtype: "TXT".into(),
            server,
            reason: "answer is not authoritative (AA=0): that server does not host the zone".into(),
        });
    }
    Ok(reply
        .answers
        .iter()
        .filter(|r| &r.name == fqdn)
        .any(|r| match &r.data {
            // Several strings of one TXT record are one value (RFC 7208
            // section 3.3 does the same; ACME values are one string).
            RData::TXT(txt) => txt.txt_data.concat() == value.as_bytes(),
            _ => false,
        }))
}

/// The whole check (see the module doc).
pub async fn propagation(
    resolvers: &[SocketAddr],
    port: u16,
    fqdn: &Name,
    value: &str,
) -> Result<Propagation, DnsError> {
    let zone = find_zone(resolvers, fqdn).await?;
    let nameservers = nameservers(resolvers, &zone).await?;
    let mut servers = Vec::new();
    let mut skipped = Vec::new();
    let mut failed_lookups = Vec::new();
    for ns in &nameservers {
        let ips = match addresses(resolvers, ns).await {
            Ok(ips) => ips,
            Err(e) => {
                failed_lookups.push(format!("{}: {e}", plain(ns)));
                continue;
            }
        };
        for ip in ips {
            let addr = SocketAddr::new(ip, port);
            let (serves, error) = match ask(addr, fqdn, value).await {
                Ok(serves) => (serves, None),
                Err(DnsError::Exchange {
                    unreachable: true,
                    reason,
                    ..
                }) if ip.is_ipv6() => {
                    skipped.push(seen(ns, addr, false, Some(reason)));
                    continue;
                }
                Err(e) => (false, Some(e.to_string())),
            };
            servers.push(seen(ns, addr, serves, error));
        }
    }
    if servers.is_empty() {
        let mut why = format!("zone {}", plain(&zone));
        if nameservers.is_empty() {
            why.push_str(" has no NS records");
        } else if !failed_lookups.is_empty() {
            why.push_str(&format!(": {}", failed_lookups.join("; ")));
        } else if !skipped.is_empty() {
            why.push_str(": only IPv6 servers, and this host has no IPv6 route");
        }
        return Err(DnsError::NoAuthoritative {
            name: plain(fqdn),
            reason: why,
        });
    }
    Ok(Propagation {
        zone: plain(&zone),
        servers,
        skipped,
    })
}

fn seen(ns: &Name, addr: SocketAddr, serves: bool, error: Option<String>) -> ServerSeen {
    ServerSeen {
        name: plain(ns),
        addr,
        serves,
        error,
    }
}

#[cfg(test)]
mod tests {
    use hickory_proto::op::OpCode;
    use hickory_proto::rr::rdata::{SOA, TXT};
    use hickory_proto::rr::{Record, rdata::A};

    use super::*;

    fn name(s: &str) -> Name {
        super::super::rfc2136::fqdn(s).expect("name")
    }

    fn soa(owner: &str) -> Record {
        Record::from_rdata(
            name(owner),
            60,
            RData::SOA(SOA::new(
                name(&format!("ns1.{owner}")),
                name(&format!("hostmaster.{owner}")),
                1,
                60,
                60,
                60,
                60,
            )),
        )
    }

    fn answer(rcode: ResponseCode, aa: bool) -> Message {
        let mut m = Message::error_msg(1, OpCode::Query, rcode);
        m.metadata.authoritative = aa;
        m
    }

    #[test]
    fn finds_the_apex_in_answers_and_negative_replies() {
        let fqdn = name("_acme-challenge.example.com");
        let mut at_apex = answer(ResponseCode::NoError, true);
        at_apex.add_answer(soa("example.com"));
        assert_eq!(
            apex_in(&at_apex, &name("example.com")),
            Some(name("example.com"))
        );
        assert_eq!(
            apex_in(&at_apex, &fqdn),
            None,
            "an SOA owned by another name"
        );

        let mut nxdomain = answer(ResponseCode::NXDomain, true);
        nxdomain.add_authority(soa("example.com"));
        assert_eq!(apex_in(&nxdomain, &fqdn), Some(name("example.com")));

        let mut unrelated = answer(ResponseCode::NXDomain, true);
        unrelated.add_authority(soa("example.net"));
        assert_eq!(apex_in(&unrelated, &fqdn), None);
    }

    #[test]
    fn serves_needs_aa_and_the_exact_value() {
        let server: SocketAddr = "127.0.0.1:53".parse().expect("addr");
        let fqdn = name("_acme-challenge.example.com");
        let txt = |v: &[&str]| {
            Record::from_rdata(
                fqdn.clone(),
                60,
                RData::TXT(TXT::new(v.iter().map(|s| s.to_string()).collect())),
            )
        };
        let mut ok = answer(ResponseCode::NoError, true);
        ok.add_answer(txt(&["other"]));
        ok.add_answer(txt(&["val", "ue"]));
        assert!(serves(server, &ok, &fqdn, "value").expect("aa"));
        assert!(!serves(server, &ok, &fqdn, "valu").expect("aa"));

        let mut wrong_owner = answer(ResponseCode::NoError, true);
        wrong_owner.add_answer(Record::from_rdata(
            name("x.example.com"),
            60,
            RData::TXT(TXT::new(vec!["value".into()])),
        ));
        wrong_owner.add_answer(Record::from_rdata(
            fqdn.clone(),
            60,
            RData::A(A::new(1, 2, 3, 4)),
        ));
        assert!(!serves(server, &wrong_owner, &fqdn, "value").expect("aa"));

        let nx = answer(ResponseCode::NXDomain, true);
        assert!(!serves(server, &nx, &fqdn, "value").expect("nxdomain is an answer"));

        let mut cached = answer(ResponseCode::NoError, false);
        cached.add_answer(txt(&["value"]));
        let err = serves(server, &cached, &fqdn, "value").expect_err("AA=0");
        assert!(err.to_string().contains("not authoritative"), "{err}");

        let servfail = answer(ResponseCode::ServFail, true);
        let err = serves(server, &servfail, &fqdn, "value").expect_err("servfail");
        assert!(err.to_string().contains("SERVFAIL"), "{err}");
    }
}
