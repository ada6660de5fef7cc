//! The structured access log of the real `portier`: one JSON line per
//! request with the documented fields, written off the reactors, reopened on
//! SIGUSR1 for rotation.

mod support;

use std::time::{Duration, Instant};

use support::proc::{Backend, Conn, Proxy, app, get};

const HOST: &str = "log.test";

fn lines(path: &std::path::Path, at_least: usize) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let v: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect();
        if v.len() >= at_least || Instant::now() > deadline {
            return v;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn one_json_line_per_request_and_reopen_on_sigusr1() {
    let b = Backend::start("b");
    let dir = std::env::temp_dir().join(format!(
        "portier-log-{}-{}",
        std::process::id(),
        support::proc::free_port()
    ));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let path = dir.join("access.log");
    let p = Proxy::start(
        "",
        &format!(
            "[log]\naccess = \"{}\"\n{}",
            path.display(),
            app("logged", HOST, &[&b], "")
        ),
    );
    let r = get(p.addr, HOST, "/hello?x=1");
    assert_eq!(r.status, 200);
    let id = r.header("x-request-id").expect("id").to_string();
    let mut c = Conn::open(p.addr);
    c.send(
        format!("POST /up HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 5\r\n\r\nhello").as_bytes(),
    );
    assert_eq!(c.response().status, 200);
    c.send(format!("GET /status/503 HTTP/1.1\r\nHost: {HOST}\r\n\r\n").as_bytes());
    assert_eq!(c.response().status, 503);

    let v = lines(&path, 3);
    assert_eq!(v.len(), 3, "{v:?}");
    let first = &v[0];
    assert_eq!(first["app"], "logged");
    assert_eq!(first["host"], HOST);
    assert_eq!(first["method"], "GET");
    assert_eq!(first["path"], "/hello?x=1");
    assert_eq!(first["status"], 200);
    assert_eq!(first["request_id"], id.as_str());
    assert_eq!(first["protocol"], "HTTP/1.1");
    assert_eq!(first["backend"], b.addr.to_string().as_str());
    assert_eq!(first["client"], "127.0.0.1");
    assert!(first["bytes"].as_u64() > Some(0));
    for k in ["queue_ms", "connect_ms", "backend_ms", "total_ms"] {
        assert!(first[k].as_f64().is_some_and(|x| x >= 0.0), "{k}: {first}");
    }
    assert!(
        first["time"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z') && t.len() == 24),
        "{first}"
    );
    assert_eq!(v[1]["method"], "POST");
    assert_eq!(v[2]["status"], 503);

    // Rotation: move the file away, SIGUSR1, the next line goes to a new file.
    std::fs::rename(&path, dir.join("access.log.1")).expect("rotate");
    // SAFETY: signalling our own child by pid.
    unsafe { libc::kill(p.portier.child.id() as i32, libc::SIGUSR1) };
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(get(p.addr, HOST, "/after").status, 200);
    let v = lines(&path, 1);
    assert_eq!(v.len(), 1);
    assert_eq!(v[0]["path"], "/after");
    assert_eq!(
        lines(&dir.join("access.log.1"), 3).len(),
        3,
        "the rotated file keeps its lines"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
