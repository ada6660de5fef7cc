//! DNS-01 against a real BIND: `portier::mgmt::acme::dns` writes, checks
//! and removes `_acme-challenge` TXT records with each provider (rfc2136,
//! exec with the shipped nsupdate hook, manual), and the propagation check
//! asks every authoritative server (one lagging server is caught).
//!
//! Needs named, nsupdate and dig (bind9, bind9-dnsutils); each test starts
//! its own servers on free loopback ports and bounds its time.

mod support;

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use portier::config::acme_dns::{DnsProviderKind, DnsSettings};
use portier::mgmt::acme::dns::{Dns, DnsError, TxtRecord, Written};
use support::bind::{Bind, BindOptions, ZoneSpec, free_dns_port};

const APEX: &str = "acme.test";
const FQDN: &str = "_acme-challenge.acme.test";
/// Shaped like a real one: base64url of a SHA-256, 43 characters.
const VALUE: &str = "LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0";
const OTHER: &str = "0Rz7Xb1oH9bDz2mPq8x3nVkT5uWc6YaE4fGh1JiKlMn";

/// Run one test body on a current-thread runtime (like the management
/// thread's), failing it after `secs`.
fn run<F: Future>(secs: u64, body: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(async {
            tokio::time::timeout(Duration::from_secs(secs), body)
                .await
                .expect("test took too long")
        })
}

fn zone() -> ZoneSpec {
    ZoneSpec::new(APEX).record("www", "A", "192.0.2.1")
}

/// Resolvers and authoritative port pointing at `bind`.
fn base(bind: &Bind) -> DnsSettings {
    DnsSettings {
        resolvers: vec![bind.addr()],
        authoritative_port: bind.port(),
        ttl: 60,
        ..Default::default()
    }
}

fn rfc2136(bind: &Bind, key_name: &str, key_file: &Path) -> DnsSettings {
    DnsSettings {
        provider: DnsProviderKind::Rfc2136,
        server: Some(bind.addr()),
        tsig_key_name: Some(key_name.into()),
        tsig_key_file: Some(key_file.into()),
        ..base(bind)
    }
}

fn executable(path: &Path, script: &str) {
    std::fs::write(path, script).expect("write script");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

fn shipped_nsupdate_hook() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/acme-dns/nsupdate")
}

#[test]
fn rfc2136_writes_checks_and_removes_exactly_its_record() {
    let bind = Bind::start(&[zone()]);
    let key = bind.dir().join("tsig.key");
    bind.write_key_file(&key);
    let dns = Dns::new(&rfc2136(&bind, bind.tsig_key_name(), &key)).expect("dns");
    let wildcard = TxtRecord::new("*.acme.test", VALUE.into());
    // The base name is validated at the same fqdn with its own value.
    let base_name = TxtRecord::new("acme.test", OTHER.into());
    assert_eq!(wildcard.fqdn, FQDN);
    run(10, async {
        assert_eq!(dns.present(&wildcard).await.expect("add"), Written::Done);
        assert_eq!(dns.present(&base_name).await.expect("add"), Written::Done);
        let seen = dns.check(&wildcard).await.expect("check");
        assert_eq!(seen.zone, APEX);
        assert_eq!(seen.servers.len(), 1, "{seen:?}");
        assert_eq!(seen.servers[0].name, "ns1.acme.test");
        assert_eq!(seen.servers[0].addr, bind.addr());
        assert!(seen.everywhere(), "{seen:?}");

        let mut txt = bind.dig_txt(FQDN);
        txt.sort();
        assert_eq!(txt, vec![OTHER.to_string(), VALUE.to_string()]);

        dns.cleanup(&wildcard).await.expect("remove");
        assert_eq!(
            bind.dig_txt(FQDN),
            vec![OTHER.to_string()],
            "only ours went"
        );
        assert!(!dns.check(&wildcard).await.expect("check").everywhere());
        assert!(dns.check(&base_name).await.expect("check").everywhere());
        dns.cleanup(&base_name).await.expect("remove");
        assert!(bind.dig_txt(FQDN).is_empty());
    });
}

#[test]
fn a_wrong_tsig_key_is_refused_and_writes_nothing() {
    let bind = Bind::start(&[zone()]);
    let wrong_secret = bind.dir().join("wrong.key");
    std::fs::write(
        &wrong_secret,
        "c2VjcmV0IHRoYXQgbmFtZWQgZG9lcyBub3Qga25vdw==\n",
    )
    .expect("key");
    std::fs::set_permissions(&wrong_secret, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let rec = TxtRecord::new("*.acme.test", VALUE.into());
    run(10, async {
        let dns = Dns::new(&rfc2136(&bind, bind.tsig_key_name(), &wrong_secret)).expect("dns");
        let err = dns.present(&rec).await.expect_err("bad signature");
        assert!(matches!(err, DnsError::TsigRefused { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!("TSIG refused by {}: BADSIG", bind.addr())
        );

        let right = bind.dir().join("right.key");
        bind.write_key_file(&right);
        let dns = Dns::new(&rfc2136(&bind, "nobody-knows-this-key", &right)).expect("dns");
        let err = dns.present(&rec).await.expect_err("unknown key");
        assert_eq!(
            err.to_string(),
            format!("TSIG refused by {}: BADKEY", bind.addr())
        );
    });
    assert!(bind.dig_txt(FQDN).is_empty(), "nothing was written");

    // And a key file others can read is refused before anything is sent.
    let loose = bind.dir().join("loose.key");
    bind.write_key_file(&loose);
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let err = Dns::new(&rfc2136(&bind, bind.tsig_key_name(), &loose)).expect_err("0644");
    assert!(
        err.to_string().contains("readable by group/others"),
        "{err}"
    );
}

#[test]
fn the_shipped_nsupdate_hook_adds_and_removes() {
    let bind = Bind::start(&[zone()]);
    // The operator's side: credentials in the environment, then the hook.
    let hook = bind.dir().join("hook");
    executable(
        &hook,
        &format!(
            "#!/bin/sh\nDNS_RFC2136_NAMESERVER={ip} DNS_RFC2136_PORT={port} \
             DNS_RFC2136_TSIG_KEY={key} DNS_RFC2136_TSIG_SECRET={secret} \
             exec {shipped} \"$@\"\n",
            ip = bind.addr().ip(),
            port = bind.port(),
            key = bind.tsig_key_name(),
            secret = bind.tsig_secret(),
            shipped = shipped_nsupdate_hook().display(),
        ),
    );
    let dns = Dns::new(&DnsSettings {
        provider: DnsProviderKind::Exec,
        command: Some(hook),
        command_timeout_secs: Some(10),
        ..base(&bind)
    })
    .expect("dns");
    let rec = TxtRecord::new("*.acme.test", VALUE.into());
    run(15, async {
        assert_eq!(dns.present(&rec).await.expect("hook add"), Written::Done);
        assert_eq!(bind.dig_txt(FQDN), vec![VALUE.to_string()]);
        assert!(dns.check(&rec).await.expect("check").everywhere());
        dns.cleanup(&rec).await.expect("hook remove");
        assert!(bind.dig_txt(FQDN).is_empty());
    });
}

#[test]
fn a_failing_hook_reports_its_stderr() {
    let bind = Bind::start(&[zone()]);
    // The shipped hook without its credentials.
    let dns = Dns::new(&DnsSettings {
        provider: DnsProviderKind::Exec,
        command: Some(shipped_nsupdate_hook()),
        ..base(&bind)
    })
    .expect("dns");
    let rec = TxtRecord::new("*.acme.test", VALUE.into());
    let err = run(10, dns.present(&rec)).expect_err("no credentials");
    assert!(
        err.to_string()
            .ends_with("nsupdate hook: DNS_RFC2136_NAMESERVER is not set"),
        "{err}"
    );
}

#[test]
fn a_hook_that_hangs_fails_within_its_timeout() {
    let bind = Bind::start(&[zone()]);
    let hook = bind.dir().join("hang");
    executable(&hook, "#!/bin/sh\nsleep 30\n");
    let dns = Dns::new(&DnsSettings {
        provider: DnsProviderKind::Exec,
        command: Some(hook.clone()),
        command_timeout_secs: Some(1),
        ..base(&bind)
    })
    .expect("dns");
    let rec = TxtRecord::new("*.acme.test", VALUE.into());
    let started = Instant::now();
    let err = run(10, dns.present(&rec)).expect_err("hangs");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        err.to_string(),
        format!("hook {} timed out after 1 s", hook.display())
    );
}

#[test]
fn manual_waits_until_the_operator_serves_the_record() {
    let bind = Bind::start(&[zone()]);
    let dns = Dns::new(&base(&bind)).expect("dns");
    assert_eq!(dns.provider_kind("*.acme.test"), DnsProviderKind::Manual);
    let rec = TxtRecord::new("*.acme.test", VALUE.into());
    run(10, async {
        assert_eq!(
            dns.present(&rec).await.expect("manual"),
            Written::ActionRequired
        );
        assert!(bind.dig_txt(FQDN).is_empty(), "manual writes nothing");
        assert!(!dns.check(&rec).await.expect("check").everywhere());
        // A wrong value is not the record.
        bind.nsupdate_add(FQDN, OTHER);
        assert!(!dns.check(&rec).await.expect("check").everywhere());
        bind.nsupdate_add(FQDN, VALUE);
        assert!(dns.check(&rec).await.expect("check").everywhere());
        dns.cleanup(&rec).await.expect("manual cleanup is a no-op");
        assert_eq!(bind.dig_txt(FQDN).len(), 2, "manual removes nothing");
    });
}

#[test]
fn one_lagging_authoritative_server_is_named() {
    // Two servers of acme.test on one port: ns1 on 127.0.0.1, ns2 on ::1.
    let v4 = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
    let port = free_dns_port(&[v4, v6]);
    let spec = zone().nameserver("ns1", v4).nameserver("ns2", v6);
    let ns1 = Bind::start_with(
        BindOptions {
            ip: v4,
            port: Some(port),
            tsig: None,
        },
        std::slice::from_ref(&spec),
    );
    let ns2 = Bind::start_with(
        BindOptions {
            ip: v6,
            port: Some(port),
            tsig: Some(ns1.tsig()),
        },
        std::slice::from_ref(&spec),
    );
    let key = ns1.dir().join("tsig.key");
    ns1.write_key_file(&key);
    let dns = Dns::new(&rfc2136(&ns1, ns1.tsig_key_name(), &key)).expect("dns");
    let rec = TxtRecord::new("*.acme.test", VALUE.into());
    run(15, async {
        // Written to ns1 only; ns2 is a separate primary that never hears
        // of it, like a secondary whose transfer is late.
        dns.present(&rec).await.expect("add");
        let seen = dns.check(&rec).await.expect("check");
        assert_eq!(seen.servers.len(), 2, "{seen:?}");
        assert!(!seen.everywhere());
        let lagging: Vec<_> = seen.lagging().collect();
        assert_eq!(lagging.len(), 1, "{seen:?}");
        assert_eq!(lagging[0].name, "ns2.acme.test");
        assert_eq!(lagging[0].addr, ns2.addr());
        assert_eq!(lagging[0].error, None, "it answered, without the value");

        ns2.nsupdate_add(FQDN, VALUE);
        assert!(dns.check(&rec).await.expect("check").everywhere());

        // A server that stops answering is a lagging one, with the reason.
        drop(ns2);
        let seen = dns.check(&rec).await.expect("check");
        assert!(!seen.everywhere());
        let down = seen.lagging().next().expect("ns2");
        assert_eq!(down.name, "ns2.acme.test");
        assert!(down.error.is_some(), "{down:?}");
    });
}

#[test]
fn a_name_outside_every_zone_has_no_authoritative_server() {
    let bind = Bind::start(&[zone()]);
    let dns = Dns::new(&base(&bind)).expect("dns");
    let rec = TxtRecord::new("*.elsewhere.test", VALUE.into());
    let err = run(15, dns.check(&rec)).expect_err("no zone");
    assert!(
        err.to_string()
            .starts_with("no DNS zone found for _acme-challenge.elsewhere.test"),
        "{err}"
    );
}

#[test]
fn a_truncated_answer_is_asked_again_over_tcp() {
    // Twenty 43-character values do not fit the 512 bytes of a UDP answer
    // without EDNS: the server sets TC, the check must retry over TCP.
    let mut spec = zone();
    for i in 0..20 {
        spec = spec.record(
            "_acme-challenge",
            "TXT",
            &format!("\"{i:02}{}\"", &OTHER[2..]),
        );
    }
    let spec = spec.record("_acme-challenge", "TXT", &format!("\"{VALUE}\""));
    let bind = Bind::start(&[spec]);
    assert_eq!(bind.dig_txt(FQDN).len(), 21);
    let dns = Dns::new(&base(&bind)).expect("dns");
    let seen = run(10, dns.check(&TxtRecord::new("*.acme.test", VALUE.into()))).expect("check");
    assert!(seen.everywhere(), "{seen:?}");
}
