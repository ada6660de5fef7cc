//! The operator scripts of `scripts/` against a real `portier`: the demo
//! traffic generator sends what it says (HTTP/1.1 and HTTP/2, redirects,
//! 404s, 431s) within its time bound, as the admin API's counters show.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::proc::{Backend, Proxy, admin_call, bin};

const TOKEN: &str = "scripts-token-0123456789";

#[test]
fn demo_traffic_is_bounded_and_mixed() {
    let backend = Backend::start("scripts-app");
    let dir = std::env::temp_dir().join(format!("portier-scripts-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("certs")).expect("mkdir");
    let out = Command::new(bin())
        .args(["self-signed", "--names", "demo.localhost", "--out"])
        .arg(dir.join("certs/default.pem"))
        .output()
        .expect("self-signed");
    assert!(out.status.success());
    let token = dir.join("admin.token");
    std::fs::write(&token, TOKEN).expect("token");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    let https = support::proc::free_port();
    let admin = support::proc::free_port();
    let proxy = Proxy::start(
        &format!("https = [\"127.0.0.1:{https}\"]"),
        &format!(
            "[tls]\ncert_dir = \"{certs}\"\n[admin]\nlisten = \"127.0.0.1:{admin}\"\ntoken_file = \"{token}\"\n\
             [[apps]]\nname = \"demo\"\ndomains = [\"demo.localhost\"]\nbackends = [\"{b}\"]\n\
             [[apps]]\nname = \"shop\"\ndomains = [\"www.shop.localhost\", \"shop.localhost\"]\n\
             canonical_domain = \"www.shop.localhost\"\nforce_https = true\nbackends = [\"{b}\"]\n",
            certs = dir.join("certs").display(),
            token = token.display(),
            b = backend.addr,
        ),
    );
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/demo-traffic");
    let t0 = Instant::now();
    let out = Command::new(script)
        .args(["2", &proxy.addr.to_string(), &format!("127.0.0.1:{https}")])
        .output()
        .expect("demo-traffic");
    let took = t0.elapsed();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.starts_with("demo-traffic: "), "{said}");
    assert!(took < Duration::from_secs(10), "bounded: took {took:?}");
    let (code, stats) = admin_call(admin, TOKEN, "GET", "/stats", None);
    assert_eq!(code, 200, "{stats}");
    let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
    assert!(n(&stats["requests"]["http1"]) >= 24, "{stats}");
    assert!(n(&stats["requests"]["http2"]) >= 4, "{stats}");
    assert!(n(&stats["responses"]["2xx"]) >= 12, "{stats}");
    assert!(n(&stats["responses"]["3xx"]) >= 4, "redirects: {stats}");
    assert!(n(&stats["responses"]["4xx"]) >= 8, "404s and 431s: {stats}");
    let _ = std::fs::remove_dir_all(&dir);
}
