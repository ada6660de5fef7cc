//! Domains, redirects and HSTS, and configuration reload, through the real
//! `portier` with real backends.

mod support;

use std::time::Duration;

use support::proc::{Backend, Conn, Proxy, app, get};

#[test]
fn wildcard_domains_route_one_label_and_exact_names_win() {
    let a = Backend::start("a");
    let b = Backend::start("b");
    let p = Proxy::start(
        "",
        &format!(
            "{}owner = \"o\"\n{}owner = \"o\"\n",
            app("a", "*.apps.test", &[&a], ""),
            app("b", "special.apps.test", &[&b], "")
        ),
    );
    assert_eq!(get(p.addr, "x.apps.test", "/").json()["backend"], "a");
    assert_eq!(
        get(p.addr, "Special.Apps.Test.", "/").json()["backend"],
        "b"
    );
    let deep = get(p.addr, "a.b.apps.test", "/");
    assert_eq!(deep.status, 404);
    assert_eq!(deep.header("x-portier-error"), Some("unknown_host"));
}

#[test]
fn canonical_domain_and_force_https_redirect_with_request_id() {
    let b = Backend::start("b");
    let p = Proxy::start(
        "",
        &app(
            "shop",
            "shop.test",
            &[&b],
            "domains = [\"shop.test\", \"www.shop.test\"]\ncanonical_domain = \"www.shop.test\"\n",
        )
        .replace("domains = [\"shop.test\"]\n", ""),
    );
    let r = get(p.addr, "shop.test", "/cart?id=7");
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("http://www.shop.test/cart?id=7"));
    assert!(r.header("x-request-id").is_some());
    assert_eq!(get(p.addr, "www.shop.test", "/cart").status, 200);

    let forced = Proxy::start("", &app("sec", "sec.test", &[&b], "force_https = true\n"));
    let r = get(forced.addr, "sec.test", "/login?next=/");
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("https://sec.test/login?next=/"));
    assert!(r.header("x-request-id").is_some());
    // ACME HTTP-01 challenges stay reachable over plain HTTP.
    let acme = get(
        forced.addr,
        "sec.test",
        "/.well-known/acme-challenge/token123",
    );
    assert_eq!(acme.status, 200);
    assert_eq!(acme.json()["path"], "/.well-known/acme-challenge/token123");
    // Keep-alive survives a redirect.
    let mut c = Conn::open(forced.addr);
    c.send(b"GET /a HTTP/1.1\r\nHost: sec.test\r\n\r\nGET /.well-known/acme-challenge/x HTTP/1.1\r\nHost: sec.test\r\n\r\n");
    assert_eq!(c.response().status, 301);
    assert_eq!(c.response().status, 200);
}

#[test]
fn reload_swaps_apps_in_and_refuses_bad_files_while_connections_stay() {
    let b1 = Backend::start("b1");
    let b2 = Backend::start("b2");
    let mut p = Proxy::start("", &app("one", "one.test", &[&b1], ""));
    let mut keep = Conn::open(p.addr);
    keep.send(b"GET /1 HTTP/1.1\r\nHost: one.test\r\n\r\n");
    assert_eq!(keep.response().status, 200);
    assert_eq!(get(p.addr, "two.test", "/").status, 404);

    let answer = p.reload(
        "",
        &format!(
            "{}{}",
            app("one", "one.test", &[&b1], ""),
            app("two", "two.test", &[&b2], "")
        ),
    );
    assert!(answer.contains("reloaded"), "{answer}");
    assert_eq!(get(p.addr, "two.test", "/").json()["backend"], "b2");

    // A bad file is refused with its line; the running config keeps serving.
    let answer = p.reload("", "[[apps]]\nname = \"x\"\ndomainz = [\"x.test\"]\n");
    assert!(
        answer.contains("refused")
            && answer.contains("portier.toml:7:1")
            && answer.contains("domainz"),
        "{answer}"
    );
    assert_eq!(get(p.addr, "two.test", "/").json()["backend"], "b2");

    // The keep-alive connection opened before both reloads still works.
    keep.send(b"GET /2 HTTP/1.1\r\nHost: one.test\r\n\r\n");
    let r = keep.response();
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["backend"], "b1");
    std::thread::sleep(Duration::from_millis(10));
}
