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

#[test]
fn sticky_sessions_bind_a_client_and_rebind_when_its_backend_dies() {
    let mut backends = vec![
        Backend::start("b1"),
        Backend::start("b2"),
        Backend::start("b3"),
    ];
    let refs: Vec<&Backend> = backends.iter().collect();
    let p = Proxy::start("", &app("s", "s.test", &refs, "sticky_sessions = true\n"));
    let first = get(p.addr, "s.test", "/");
    let set = first
        .header("set-cookie")
        .expect("a cookie for a new client")
        .to_string();
    assert!(set.starts_with("portier_sticky="), "{set}");
    assert!(
        set.contains("; Path=/") && set.contains("; HttpOnly") && set.contains("; SameSite=Lax"),
        "{set}"
    );
    assert!(!set.contains("Secure"), "no Secure over plain HTTP: {set}");
    for b in &backends {
        assert!(!set.contains(&b.addr.port().to_string()), "opaque: {set}");
    }
    let cookie = set.split(';').next().expect("pair").to_string();
    let bound = first.json()["backend"]
        .as_str()
        .expect("backend")
        .to_string();
    let with_cookie = |path: &str| {
        let mut c = Conn::open(p.addr);
        c.send(
            format!("GET {path} HTTP/1.1\r\nHost: s.test\r\nCookie: theme=dark; {cookie}\r\n\r\n")
                .as_bytes(),
        );
        c.response()
    };
    for i in 0..6 {
        let r = with_cookie(&format!("/{i}"));
        assert_eq!(r.json()["backend"], bound.as_str(), "bound client stays");
        assert!(
            r.header("set-cookie").is_none(),
            "no new cookie while bound"
        );
    }
    // A forged value is ignored, not an error.
    let mut c = Conn::open(p.addr);
    c.send(b"GET / HTTP/1.1\r\nHost: s.test\r\nCookie: portier_sticky=forged\r\n\r\n");
    let r = c.response();
    assert_eq!(r.status, 200);
    assert!(r.header("set-cookie").is_some());
    // Without a cookie, round-robin goes on.
    let mut names: Vec<String> = (0..3)
        .map(|_| {
            get(p.addr, "s.test", "/").json()["backend"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 3, "round-robin over all three: {names:?}");
    // Kill the bound backend: the client lands elsewhere with a new cookie.
    for b in backends.iter_mut().filter(|b| b.name == bound) {
        b.stop();
    }
    let r = with_cookie("/after");
    assert_eq!(r.status, 200);
    assert_ne!(r.json()["backend"], bound.as_str());
    let renewed = r.header("set-cookie").expect("re-issued").to_string();
    assert_ne!(renewed.split(';').next(), Some(cookie.as_str()));
}

#[test]
fn reload_opens_and_closes_listeners_without_touching_the_others() {
    let b = Backend::start("b");
    let mut p = Proxy::start("", &app("one", "one.test", &[&b], ""));
    let mut keep = Conn::open(p.addr);
    keep.send(b"GET /1 HTTP/1.1\r\nHost: one.test\r\n\r\n");
    assert_eq!(keep.response().status, 200);
    // Add a second plain-HTTP listener.
    let extra = support::proc::free_port();
    let both = format!("http = [\"{}\", \"127.0.0.1:{extra}\"]", p.addr);
    let answer = p.reload_with_http(&both, "", &app("one", "one.test", &[&b], ""));
    assert!(answer.contains("reloaded"), "{answer}");
    let second: std::net::SocketAddr = format!("127.0.0.1:{extra}").parse().expect("addr");
    let mut ok = false;
    for _ in 0..50 {
        if std::net::TcpStream::connect(second).is_ok() {
            ok = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(ok, "the new listener accepts");
    assert_eq!(get(second, "one.test", "/").status, 200);
    // The first listener and its open connection were not touched.
    keep.send(b"GET /2 HTTP/1.1\r\nHost: one.test\r\n\r\n");
    assert_eq!(keep.response().status, 200);
    assert_eq!(get(p.addr, "one.test", "/").status, 200);
    // Remove it again.
    let answer = p.reload("", &app("one", "one.test", &[&b], ""));
    assert!(answer.contains("reloaded"), "{answer}");
    let mut closed = false;
    for _ in 0..50 {
        if std::net::TcpStream::connect(second).is_err() {
            closed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(closed, "the removed listener is closed");
    assert_eq!(get(p.addr, "one.test", "/").status, 200);
}
