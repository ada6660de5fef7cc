//! 100 reloads (two valid configurations alternating, invalid ones mixed in)
//! while HTTP/1.1 keep-alive clients and an HTTP/2 load run: not one request
//! may fail (SPEC §5: reload swaps a snapshot, connections are untouched).

mod support;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use support::proc::{Backend, Conn, Proxy, app, free_port};

const HOST: &str = "live.test";

#[test]
fn a_hundred_reloads_under_load_lose_no_request() {
    let b1 = Backend::start("b1");
    let b2 = Backend::start("b2");
    let b3 = Backend::start("b3");
    let certs = std::env::temp_dir().join(format!(
        "portier-reload-{}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::create_dir_all(&certs).expect("mkdir");
    std::fs::write(
        certs.join("default.pem"),
        portier::tls::self_signed_pem(&[HOST.to_string()]).expect("cert"),
    )
    .expect("cert");
    let https = free_port();
    let server = format!(
        "https = [\"127.0.0.1:{https}\"]\n[tls]\ncert_dir = \"{}\"\n",
        certs.display()
    );
    let config_a = app("live", HOST, &[&b1, &b2], "max_conns_per_backend = 100\n");
    let config_b = format!(
        "{}{}",
        app(
            "live",
            HOST,
            &[&b1, &b2, &b3],
            "max_conns_per_backend = 100\ncompress = false\n"
        ),
        app("other", "other.test", &[&b3], "")
    );
    let mut p = Proxy::start(&server, &config_a);

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (addr, stop, ok, failed) = (p.addr, stop.clone(), ok.clone(), failed.clone());
        clients.push(std::thread::spawn(move || {
            let mut c = Conn::open(addr);
            while !stop.load(Ordering::Relaxed) {
                c.send(format!("GET /x HTTP/1.1\r\nHost: {HOST}\r\n\r\n").as_bytes());
                let sent = std::time::Instant::now();
                match c.try_response() {
                    Some(r) if r.status == 200 => ok.fetch_add(1, Ordering::Relaxed),
                    other => {
                        // What the next person needs to find the cause.
                        eprintln!(
                            "HTTP/1.1 request failed after {:?}: {:?}",
                            sent.elapsed(),
                            other
                                .map(|r| (r.status, String::from_utf8_lossy(&r.body).into_owned()))
                        );
                        failed.fetch_add(1, Ordering::Relaxed);
                        c = Conn::open(addr);
                        0
                    }
                };
            }
        }));
    }
    let h2 = std::thread::spawn(move || {
        Command::new("h2load")
            .args([
                "-D",
                "6",
                "-c",
                "2",
                "-m",
                "10",
                "-H",
                &format!(":authority: {HOST}"),
            ])
            .arg(format!("https://127.0.0.1:{https}/y"))
            .output()
            .expect("h2load")
    });

    let mut reloaded = 0;
    let mut refused = 0;
    for i in 0..100 {
        let answer = match i % 10 {
            9 => p.reload(&server, "[[apps]]\nname = \"broken\"\nbackends = 12\n"),
            n if n % 2 == 0 => p.reload(&server, &config_b),
            _ => p.reload(&server, &config_a),
        };
        if answer.contains("reloaded") {
            reloaded += 1;
        } else {
            refused += 1;
        }
        std::thread::sleep(std::time::Duration::from_millis(30));
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().expect("client");
    }
    let out = h2.join().expect("h2load thread");
    let text = String::from_utf8_lossy(&out.stdout);
    let _ = std::fs::remove_dir_all(&certs);

    assert_eq!(
        (reloaded, refused),
        (90, 10),
        "every valid file applied, every broken one refused"
    );
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "HTTP/1.1 requests failed during reloads"
    );
    assert!(
        ok.load(Ordering::Relaxed) > 200,
        "the HTTP/1.1 load ran: {}",
        ok.load(Ordering::Relaxed)
    );
    let line = text
        .lines()
        .find(|l| l.starts_with("requests:"))
        .unwrap_or_default();
    assert!(
        line.contains(" 0 failed, 0 errored, 0 timeout"),
        "HTTP/2 load during reloads: {text}"
    );
    let succeeded: u64 = line
        .split(',')
        .find(|f| f.contains("succeeded"))
        .and_then(|f| f.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(succeeded > 200, "the HTTP/2 load ran: {line}");
}
