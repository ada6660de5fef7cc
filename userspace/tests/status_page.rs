//! The status page (`/ui/` on the admin API) in a real browser: headless
//! Chromium (Debian's `chromium`) loads it against a running `portier`
//! and the test reads the DOM it rendered from the live JSON endpoints —
//! the app, a quarantined backend, XDP counters. Everything runs in a
//! network namespace made by the test (its own `lo`, XDP attached there in
//! generic mode), removed even on failure. Root only, like the XDP tests.
//! The same node checks the Grafana dashboard (scripts/grafana/portier.json):
//! every metric it queries exists in `/metrics`.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::netns::{BpfFs, KillOnDrop, Netns, Portier};
use support::proc::demo_backend_bin;

const TOKEN: &str = "status-page-token-0123456789";

#[test]
#[ignore = "needs root: network namespace, XDP"]
fn the_status_page_renders_apps_a_quarantined_backend_and_xdp_counters() {
    let ns = Netns::new(&format!("pst{}", std::process::id()));
    let fs = BpfFs::new("status-page");
    let backend = KillOnDrop(
        Command::new("ip")
            .args(["netns", "exec", &ns.0, demo_backend_bin()])
            .args(["--listen", "127.0.0.1:9101", "--name", "good"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("backend"),
    );
    let token = fs.root.join("admin.token");
    std::fs::write(&token, TOKEN).expect("token");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    let certs = fs.root.join("certs");
    std::fs::create_dir_all(&certs).expect("certs");
    let out = Command::new(support::proc::bin())
        .args(["self-signed", "--names", "shop.status.test", "--out"])
        .arg(certs.join("default.pem"))
        .output()
        .expect("self-signed");
    assert!(out.status.success());
    let config = fs.root.join("portier.toml");
    std::fs::write(
        &config,
        format!(
            r#"[server]
http = ["127.0.0.1:8080"]
https = ["127.0.0.1:8443"]
threads = 1
[tls]
cert_dir = "{certs}"
# A CA that is not there: the ACME metrics exist, its orders fail.
[acme]
directory = "http://127.0.0.1:9/directory"
state_dir = "{acme}"
[admin]
listen = "127.0.0.1:9090"
token_file = "{token}"
[[apps]]
name = "storefront"
domains = ["shop.status.test"]
# 9102: nothing listens there, so it is quarantined at the first request.
backends = ["127.0.0.1:9101", "127.0.0.1:9102"]
quarantine_initial_ms = 60000
quarantine_max_ms = 60000
[xdp]
interfaces = ["lo"]
mode = "generic"
pin_dir = "{pins}"
service_ports = [8080, 8443]
allow_tcp_ports = [9090, 9101, 9102]
drop_closed_ports = false
bogons = ["0.0.0.0/8"]
"#,
            token = token.display(),
            pins = fs.dir.join("portier").display(),
            certs = certs.display(),
            acme = fs.root.join("acme").display(),
        ),
    )
    .expect("config");
    let _portier = Portier::start(Some(&ns.0), &config);
    // Traffic: through XDP, and onto the dead backend (quarantined).
    for _ in 0..6 {
        ns.run(&[
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-m",
            "3",
            "-H",
            "Host: shop.status.test",
            "http://127.0.0.1:8080/",
        ]);
    }
    let apps = ns.run(&[
        "curl",
        "-s",
        "-H",
        &format!("Authorization: Bearer {TOKEN}"),
        "http://127.0.0.1:9090/apps",
    ]);
    let apps = String::from_utf8_lossy(&apps.stdout);
    assert!(apps.contains("\"quarantined\""), "{apps}");
    // The page needs no token to load (it holds no data) but shows nothing
    // without one; the data endpoints still refuse requests without it.
    let page = ns.run(&["curl", "-s", "-i", "http://127.0.0.1:9090/ui/"]);
    let page = String::from_utf8_lossy(&page.stdout);
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(
        page.to_ascii_lowercase()
            .contains("content-security-policy: default-src 'none'"),
        "{page}"
    );
    let refused = ns.run(&[
        "curl",
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "http://127.0.0.1:9090/apps",
    ]);
    assert_eq!(String::from_utf8_lossy(&refused.stdout), "401");

    let profile = fs.root.join("chromium-profile");
    let deadline = Instant::now() + Duration::from_secs(60);
    let dom = loop {
        let out = ns.run(&[
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            &format!("--user-data-dir={}", profile.display()),
            "--virtual-time-budget=6000",
            "--dump-dom",
            &format!("http://127.0.0.1:9090/ui/#token={TOKEN}"),
        ]);
        let dom = String::from_utf8_lossy(&out.stdout).into_owned();
        if dom.contains("storefront") || Instant::now() > deadline {
            break dom;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    drop(backend);
    assert!(dom.contains("<td>storefront</td>"), "the app: {dom}");
    assert!(dom.contains("shop.status.test"), "its domain: {dom}");
    assert!(
        dom.contains(r#"<td class="quarantined">quarantined</td>"#),
        "the dead backend shows quarantined: {dom}"
    );
    assert!(
        dom.contains(r#"<td class="up">up</td>"#),
        "the live one up: {dom}"
    );
    // XDP counters: the pass_service_port row counted our requests.
    let row = dom
        .split("<tr>")
        .find(|r| r.contains("<td>pass_service_port</td>"))
        .unwrap_or_else(|| panic!("no XDP row for pass_service_port: {dom}"));
    let packets: u64 = row
        .split(r#"<td class="num">"#)
        .nth(1)
        .and_then(|s| s.split('<').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    assert!(packets > 0, "XDP packets counted: {row}");
    assert!(dom.contains("live, "), "refreshed from the API: {dom}");

    // Every metric the Grafana dashboard queries exists.
    ns.run(&[
        "curl",
        "-sk",
        "-o",
        "/dev/null",
        "--resolve",
        "shop.status.test:8443:127.0.0.1",
        "https://shop.status.test:8443/",
    ]);
    let metrics = ns.run(&[
        "curl",
        "-s",
        "-H",
        &format!("Authorization: Bearer {TOKEN}"),
        "http://127.0.0.1:9090/metrics",
    ]);
    let metrics = String::from_utf8_lossy(&metrics.stdout).into_owned();
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../scripts/grafana/portier.json"
        ))
        .expect("dashboard"),
    )
    .expect("the dashboard is JSON");
    let mut queried = std::collections::BTreeSet::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            for (i, _) in expr.match_indices("portier_") {
                let name: String = expr[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                queried.insert(name);
            }
        }
    }
    assert!(queried.len() >= 15, "{queried:?}");
    let missing: Vec<&String> = queried
        .iter()
        .filter(|name| {
            !metrics.lines().any(|l| {
                !l.starts_with('#')
                    && (l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
            })
        })
        .collect();
    assert!(
        missing.is_empty(),
        "the dashboard queries metrics /metrics does not have: {missing:?}\n{metrics}"
    );
}
