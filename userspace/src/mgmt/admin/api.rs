//! The admin API's resources: routing of `(method, path)` to a handler, and
//! the handlers over the `Manager`.
//!
//! Owns: the route table (404 unknown path, 405 + `Allow` for a known path
//! with another method), JSON request bodies (400 with the reason), and the
//! one path every configuration change takes: read the file, apply an
//! [`Edit`], validate with `Config::parse` (409 `invalid_config` with the
//! validator's message, nothing changed), then `Manager::apply` (atomic
//! write-back + snapshot swap, so a restart keeps the change).
//! Must not: hold the Manager lock across anything but its own short,
//! local work (file reads/writes, map syscalls). Draining is runtime state
//! (not in the file); `Manager` carries it over when a change rebuilds an
//! app's balancer, as for any reload.
//! Fed by: `admin.rs` with an authenticated [`Request`]. Emits: a
//! [`Response`].

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use serde_json::{Value, json};
use tokio::sync::Mutex;

use super::{Request, Response, certs};
use crate::config::edit::{self, Edit, EditError, Setting};
use crate::config::{AppSettings, Cidr, Config, ConfigError};
use crate::mgmt::manager::Manager;

/// What a path names.
enum Route {
    Apps,
    App(String),
    Domains(String),
    Domain(String, String),
    Backends(String),
    Backend(String, String),
    Drain(String, String, bool),
    Settings(String),
    Certificates,
    Certificate(String),
    Stats,
    Metrics,
    Reload,
    XdpStats,
    XdpBlocklist,
    XdpBlocked(String),
    /// Force an ACME order for a name.
    Renew(String),
    /// Region mode: etcd connection, revision, nodes.
    Region,
    /// Start the binary on disk and hand everything over to it.
    Upgrade,
}

impl Route {
    fn parse(segments: &[String]) -> Option<Route> {
        let s: Vec<&str> = segments.iter().map(String::as_str).collect();
        let o = |x: &str| x.to_string();
        Some(match s.as_slice() {
            ["apps"] => Route::Apps,
            ["apps", a] => Route::App(o(a)),
            ["apps", a, "domains"] => Route::Domains(o(a)),
            ["apps", a, "domains", d] => Route::Domain(o(a), o(d)),
            ["apps", a, "backends"] => Route::Backends(o(a)),
            ["apps", a, "backends", b] => Route::Backend(o(a), o(b)),
            ["apps", a, "backends", b, "drain"] => Route::Drain(o(a), o(b), true),
            ["apps", a, "backends", b, "undrain"] => Route::Drain(o(a), o(b), false),
            ["apps", a, "settings"] => Route::Settings(o(a)),
            ["certificates"] => Route::Certificates,
            ["certificates", n] => Route::Certificate(o(n)),
            ["certificates", n, "renew"] => Route::Renew(o(n)),
            ["stats"] => Route::Stats,
            ["region"] => Route::Region,
            ["metrics"] => Route::Metrics,
            ["reload"] => Route::Reload,
            ["upgrade"] => Route::Upgrade,
            ["xdp", "stats"] => Route::XdpStats,
            ["xdp", "blocklist"] => Route::XdpBlocklist,
            // `10.0.0.0/8` may come unencoded: the rest of the path is the CIDR.
            ["xdp", "blocklist", rest @ ..] => Route::XdpBlocked(rest.join("/")),
            _ => return None,
        })
    }

    fn methods(&self) -> &'static [&'static str] {
        match self {
            Route::Apps
            | Route::App(_)
            | Route::Certificates
            | Route::Stats
            | Route::Region
            | Route::Metrics
            | Route::XdpStats => &["GET"],
            Route::Domains(_)
            | Route::Backends(_)
            | Route::Drain(..)
            | Route::Reload
            | Route::Upgrade => &["POST"],
            Route::Domain(..) | Route::Backend(..) | Route::XdpBlocked(_) => &["DELETE"],
            Route::Settings(_) => &["PATCH"],
            Route::Certificate(_) => &["PUT"],
            Route::Renew(_) => &["POST"],
            Route::XdpBlocklist => &["GET", "POST"],
        }
    }
}

pub async fn handle(manager: &Mutex<Manager>, request: Request) -> Response {
    let Some(route) = Route::parse(&request.segments) else {
        return Response::error(
            404,
            "not_found",
            format!("no resource /{}", request.segments.join("/")),
        );
    };
    let method = request.method.as_str();
    if !route.methods().contains(&method) {
        let allow = route.methods().join(", ");
        let mut r = Response::error(
            405,
            "method_not_allowed",
            format!("{method} is not allowed here; allowed: {allow}"),
        );
        r.headers.push(("Allow", allow));
        return r;
    }
    if let Route::Upgrade = route {
        // Not under the manager lock: the upgrade itself takes it.
        let door = manager.lock().await.upgrades.clone();
        return upgrade(door).await;
    }
    let body = &request.body;
    let mut m = manager.lock().await;
    let m = &mut *m;
    match (route, method) {
        (Route::Apps, _) => {
            let apps: Vec<Value> = m.config.apps.iter().map(|a| app_json(m, a)).collect();
            Response::json(200, &json!({ "apps": apps }))
        }
        (Route::App(name), _) => match m.config.apps.iter().find(|a| a.name == name) {
            Some(a) => Response::json(200, &app_json(m, a)),
            None => no_such_app(&name),
        },
        (Route::Domains(app), _) => match field(body, "domain") {
            Ok(domain) => {
                change(
                    m,
                    Edit::AddDomain {
                        app: app.clone(),
                        domain,
                    },
                    201,
                    &app,
                )
                .await
            }
            Err(r) => r,
        },
        (Route::Domain(app, domain), _) => {
            change(
                m,
                Edit::RemoveDomain {
                    app: app.clone(),
                    domain,
                },
                200,
                &app,
            )
            .await
        }
        (Route::Backends(app), _) => match field(body, "address").and_then(|a| address(&a)) {
            Ok(backend) => {
                change(
                    m,
                    Edit::AddBackend {
                        app: app.clone(),
                        backend,
                    },
                    201,
                    &app,
                )
                .await
            }
            Err(r) => r,
        },
        (Route::Backend(app, addr), _) => match address(&addr) {
            Ok(backend) => {
                change(
                    m,
                    Edit::RemoveBackend {
                        app: app.clone(),
                        backend,
                    },
                    200,
                    &app,
                )
                .await
            }
            Err(r) => r,
        },
        (Route::Drain(app, addr, draining), _) => match address(&addr) {
            Ok(backend) => drain(m, &app, backend, draining),
            Err(r) => r,
        },
        (Route::Settings(app), _) => match settings(body) {
            Ok(settings) => {
                change(
                    m,
                    Edit::Settings {
                        app: app.clone(),
                        settings,
                    },
                    200,
                    &app,
                )
                .await
            }
            Err(r) => r,
        },
        (Route::Certificates, _) => certs::list(&m.config.tls.cert_dir, m.acme.as_ref()),
        (Route::Renew(name), _) => certs::renew(m.acme.as_ref(), &name),
        (Route::Certificate(name), _) => {
            let r = certs::upload(&m.config.tls.cert_dir, &name, body);
            match (&m.region, r.status) {
                // Every node installs it from the region.
                (Some(region), 200) => certs::share(region, &name, body, r).await,
                _ => r,
            }
        }
        (Route::Stats, _) => Response::json(200, &stats(m)),
        // Answered above, without the lock.
        (Route::Upgrade, _) => Response::error(500, "internal", "unreachable"),
        (Route::Region, _) => match &m.region {
            None => Response::error(409, "region_off", "this node runs without [region]"),
            Some(r) => Response::json(
                200,
                &json!({
                    "status": r.status(),
                    "nodes": r.nodes(),
                    "refused": r.refused().into_iter().map(|(k, why)| json!({"key": k, "reason": why})).collect::<Vec<_>>(),
                }),
            ),
        },
        (Route::Metrics, _) => Response::text(
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            crate::mgmt::metrics::render(m),
        ),
        (Route::Reload, _) => match m.reload() {
            Ok(()) => Response::json(200, &json!({ "reloaded": true })),
            Err(e) => Response::error(409, "invalid_config", format!("{e:#}")),
        },
        (Route::XdpStats, _) => match &m.xdp {
            None => xdp_off(),
            Some(rt) => match rt.maps().stats() {
                Ok(stats) => Response::json(
                    200,
                    &json!({
                        "attached": rt.attached().iter()
                            .map(|(i, mode)| json!({ "interface": i, "mode": mode }))
                            .collect::<Vec<_>>(),
                        "reasons": stats.reasons,
                        "passed": stats.total(false),
                        "dropped": stats.total(true),
                    }),
                ),
                Err(e) => Response::error(500, "xdp_error", format!("{e:#}")),
            },
        },
        (Route::XdpBlocklist, "GET") => match &m.xdp {
            None => xdp_off(),
            Some(rt) => match rt.maps().blocklist() {
                Ok(list) => {
                    let entries: Vec<Value> = list
                        .iter()
                        .map(|c| {
                            json!({ "cidr": c.to_string(), "configured": m.config.xdp.blocklist.contains(c) })
                        })
                        .collect();
                    Response::json(200, &json!({ "blocklist": entries }))
                }
                Err(e) => Response::error(500, "xdp_error", format!("{e:#}")),
            },
        },
        (Route::XdpBlocklist, _) => {
            if m.xdp.is_none() {
                return xdp_off();
            }
            match field(body, "cidr").and_then(|c| cidr(&c)) {
                Ok(c) => match commit(m, Edit::Block(c)).await {
                    Ok(()) => Response::json(201, &json!({ "blocked": c.to_string() })),
                    Err(r) => r,
                },
                Err(r) => r,
            }
        }
        (Route::XdpBlocked(raw), _) => unblock(m, &raw).await,
    }
}

fn no_such_app(name: &str) -> Response {
    Response::error(404, "no_such_app", format!("no app named {name}"))
}

fn xdp_off() -> Response {
    Response::error(
        409,
        "xdp_not_running",
        "XDP is not running on this node ([xdp] interfaces empty, mode = \"off\", or attaching failed at start)",
    )
}

/// The JSON object body of a request.
fn object(body: &[u8]) -> Result<serde_json::Map<String, Value>, Response> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(Response::error(
            400,
            "bad_request",
            "the body must be a JSON object",
        )),
        Err(e) => Err(Response::error(
            400,
            "bad_request",
            format!("the body is not JSON: {e}"),
        )),
    }
}

/// A required string member of the JSON body.
fn field(body: &[u8], name: &str) -> Result<String, Response> {
    match object(body)?.get(name) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(Response::error(
            400,
            "bad_request",
            format!("`{name}` must be a string"),
        )),
        None => Err(Response::error(
            400,
            "bad_request",
            format!("missing `{name}`"),
        )),
    }
}

fn address(raw: &str) -> Result<SocketAddr, Response> {
    raw.trim().parse().map_err(|_| {
        Response::error(
            400,
            "bad_request",
            format!("`{raw}` is not an ip:port address (e.g. 10.0.3.17:8080 or [fd00::1]:8080)"),
        )
    })
}

fn cidr(raw: &str) -> Result<Cidr, Response> {
    raw.trim()
        .parse()
        .map_err(|e| Response::error(400, "bad_request", format!("`{raw}`: {e}")))
}

/// `PATCH /apps/{name}/settings` body → typed settings.
fn settings(body: &[u8]) -> Result<Vec<Setting>, Response> {
    let map = object(body)?;
    if map.is_empty() {
        return Err(Response::error(400, "bad_request", "no setting given"));
    }
    let bad =
        |k: &str, what: &str| Response::error(400, "bad_request", format!("`{k}` must be {what}"));
    let boolean = |k: &str, v: &Value| v.as_bool().ok_or_else(|| bad(k, "true or false"));
    let count = |k: &str, v: &Value| {
        v.as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| bad(k, "a non-negative integer below 2^32"))
    };
    let mut out = Vec::new();
    for (k, v) in &map {
        out.push(match k.as_str() {
            "force_https" => Setting::ForceHttps(boolean(k, v)?),
            "sticky_sessions" => Setting::StickySessions(boolean(k, v)?),
            "compress" => Setting::Compress(boolean(k, v)?),
            "max_conns_per_backend" => Setting::MaxConnsPerBackend(count(k, v)?),
            "queue_per_backend" => Setting::QueuePerBackend(count(k, v)?),
            "hsts_max_age" => Setting::HstsMaxAge(
                v.as_u64()
                    .filter(|n| i64::try_from(*n).is_ok())
                    .ok_or_else(|| bad(k, "a non-negative integer (seconds)"))?,
            ),
            "canonical_domain" => Setting::CanonicalDomain(match v {
                Value::Null => None,
                Value::String(s) => Some(s.clone()),
                _ => return Err(bad(k, "a domain of the app, or null")),
            }),
            other => {
                return Err(Response::error(
                    400,
                    "bad_request",
                    format!(
                        "unknown setting `{other}`; settable: force_https, canonical_domain, sticky_sessions, compress, max_conns_per_backend, queue_per_backend, hsts_max_age"
                    ),
                ));
            }
        });
    }
    Ok(out)
}

/// Apply `edit` and answer with the app as it now is.
async fn change(m: &mut Manager, edit: Edit, status: u16, app: &str) -> Response {
    if let Err(r) = commit(m, edit).await {
        return r;
    }
    match m.config.apps.iter().find(|a| a.name == app) {
        Some(a) => Response::json(status, &app_json(m, a)),
        None => no_such_app(app),
    }
}

/// Read the file, edit, validate, write back atomically and swap in (in
/// region mode, app edits go to the region instead: [`commit_region`]).
/// On any refusal nothing changes (file and running state).
async fn commit(m: &mut Manager, edit: Edit) -> Result<(), Response> {
    if let Some(region) = m.region.clone()
        && !matches!(edit, Edit::Block(_) | Edit::Unblock(_))
    {
        return commit_region(m, &region, &edit).await;
    }
    let text = std::fs::read_to_string(&m.path).map_err(|e| {
        Response::error(
            500,
            "config_unreadable",
            format!("{}: {e}", m.path.display()),
        )
    })?;
    let new_text = edit::apply(&text, &edit).map_err(|e| match e {
        EditError::PeerNoSuchApp(_) | EditError::PeerNotFound(_) => {
            Response::error(404, "not_found", e)
        }
        EditError::PeerAlreadyPresent(_) => Response::error(409, "already_present", e),
        EditError::PeerInvalid(_) => Response::error(400, "bad_request", e),
        EditError::FileInvalid(_) => Response::error(409, "invalid_config", e),
    })?;
    let new = Config::parse(&m.path, &new_text)
        .map_err(|e| Response::error(409, "invalid_config", reason(&e)))?;
    m.apply(new, &new_text)
        .map_err(|e| Response::error(500, "apply_failed", format!("{e:#}")))
}

/// An app edit in region mode: applied to the region's apps as read at
/// some revision, validated with this node's file against the whole
/// region, then written in one transaction that only succeeds if no app
/// write happened since that revision. A lost race is retried on the
/// fresher state (where it may now be refused, e.g. the wildcard belongs
/// to the winner); the node applies the result at once, the others
/// through their watch.
async fn commit_region(
    m: &mut Manager,
    region: &crate::mgmt::region::Region,
    edit: &Edit,
) -> Result<(), Response> {
    use crate::mgmt::region::WriteError;
    for _ in 0..5 {
        let (guard, before) = region.apps_seen();
        let apps = edit::apply_to_apps(&before, edit).map_err(|e| match e {
            EditError::PeerNoSuchApp(_) | EditError::PeerNotFound(_) => {
                Response::error(404, "not_found", e)
            }
            EditError::PeerAlreadyPresent(_) => Response::error(409, "already_present", e),
            EditError::PeerInvalid(_) => Response::error(400, "bad_request", e),
            EditError::FileInvalid(_) => Response::error(500, "region_state", e),
        })?;
        let new = m
            .config
            .with_apps(apps)
            .map_err(|e| Response::error(409, "invalid_config", e))?;
        match region.commit_apps(guard, &before, &new.apps).await {
            Ok(revision) => {
                tracing::info!(revision, "admin API: region apps written");
                return m
                    .region_apps(new.apps)
                    .map_err(|e| Response::error(500, "apply_failed", format!("{e:#}")));
            }
            Err(WriteError::Conflict) => {
                // Another write won; the watch brings it within moments.
                tokio::time::sleep(std::time::Duration::from_millis(150)).await;
            }
            Err(e @ WriteError::Unavailable(_)) => {
                return Err(Response::error(503, "region_unavailable", e));
            }
            Err(WriteError::Refused(e)) => return Err(Response::error(400, "bad_request", e)),
        }
    }
    Err(Response::error(
        409,
        "region_conflict",
        "the region kept changing under this write; try again",
    ))
}

/// The validator's message without the file name in front.
fn reason(e: &ConfigError) -> String {
    match e {
        ConfigError::Semantic { message, .. } => message.clone(),
        ConfigError::Invalid {
            line,
            column,
            message,
            ..
        } => format!("line {line}, column {column}: {message}"),
        ConfigError::Read { .. } => e.to_string(),
    }
}

fn drain(m: &Manager, app: &str, backend: SocketAddr, draining: bool) -> Response {
    let snapshot = m.control.snapshot.load_full();
    let Some(a) = snapshot.apps.iter().find(|a| a.name == app) else {
        return no_such_app(app);
    };
    if !a.balancer.set_draining(backend, draining) {
        return Response::error(
            404,
            "not_found",
            format!("app {app} has no backend {backend}"),
        );
    }
    if !draining {
        // The backend takes requests again: queued ones first.
        m.control.deliver(a.balancer.serve_queue(), None);
    }
    tracing::info!(app, %backend, draining, "admin API: backend drain state changed");
    match m.config.apps.iter().find(|c| c.name == app) {
        Some(c) => Response::json(200, &app_json(m, c)),
        None => no_such_app(app),
    }
}

async fn unblock(m: &mut Manager, raw: &str) -> Response {
    let Some(rt) = &m.xdp else {
        return xdp_off();
    };
    let c = match cidr(raw) {
        Ok(c) => c,
        Err(r) => return r,
    };
    if m.config.xdp.blocklist.contains(&c) {
        return match commit(m, Edit::Unblock(c)).await {
            Ok(()) => Response::json(
                200,
                &json!({ "unblocked": c.to_string(), "configured": true }),
            ),
            Err(r) => r,
        };
    }
    // Blocked live (`portier xdp block`), not in the file: remove it from
    // the map through the pins.
    let live = rt
        .maps()
        .blocklist()
        .map(|l| l.contains(&c))
        .unwrap_or(false);
    match (live, rt.pin_dir()) {
        (true, Some(dir)) => {
            match crate::mgmt::bpf::MapSet::open_pinned(dir).and_then(|mut s| s.unblock(c)) {
                Ok(_) => Response::json(
                    200,
                    &json!({ "unblocked": c.to_string(), "configured": false }),
                ),
                Err(e) => Response::error(500, "xdp_error", format!("{e:#}")),
            }
        }
        (true, None) => Response::error(
            409,
            "not_pinned",
            format!("{c} was blocked live and the maps are not pinned; it cannot be removed here"),
        ),
        (false, _) => Response::error(404, "not_found", format!("{c} is not in the blocklist")),
    }
}

fn app_json(m: &Manager, a: &AppSettings) -> Value {
    let snapshot = m.control.snapshot.load_full();
    let running = snapshot.apps.iter().find(|s| s.name == a.name);
    let backends: Vec<Value> = a
        .backends
        .iter()
        .map(|addr| {
            let b = running.and_then(|r| r.balancer.backends().iter().find(|b| b.addr == *addr));
            match b {
                Some(b) => json!({
                    "address": addr.to_string(),
                    "state": if b.is_draining() { "draining" } else if b.is_quarantined() { "quarantined" } else { "up" },
                    "in_flight": b.in_flight(),
                    "probes": b.probes.load(Ordering::Relaxed),
                }),
                None => json!({ "address": addr.to_string(), "state": "unknown", "in_flight": 0, "probes": 0 }),
            }
        })
        .collect();
    json!({
        "name": a.name,
        "owner": a.owner(),
        "domains": a.domains,
        "backends": backends,
        "queue_depth": running.map_or(0, |r| r.balancer.queue_depth()),
        "settings": {
            "force_https": a.force_https,
            "canonical_domain": a.canonical_domain,
            "sticky_sessions": a.sticky_sessions,
            "sticky_cookie": a.sticky_cookie,
            "compress": a.compress,
            "max_conns_per_backend": a.max_conns_per_backend,
            "queue_per_backend": a.queue_per_backend,
            "hsts_max_age": a.hsts_max_age,
            "quarantine_initial_ms": a.quarantine_initial_ms,
            "quarantine_max_ms": a.quarantine_max_ms,
            "quarantine_stable_ms": a.quarantine_stable_ms,
            "health_path": a.health_path,
            "health_timeout_ms": a.health_timeout_ms,
        },
    })
}

fn stats(m: &Manager) -> Value {
    let snapshot = m.control.snapshot.load_full();
    let apps: Vec<Value> = snapshot
        .apps
        .iter()
        .map(|a| {
            let backends: Vec<Value> = a
                .balancer
                .backends()
                .iter()
                .map(|b| {
                    json!({
                        "address": b.addr.to_string(),
                        "up": !b.is_quarantined(),
                        "draining": b.is_draining(),
                        "in_flight": b.in_flight(),
                        "probes": b.probes.load(Ordering::Relaxed),
                    })
                })
                .collect();
            json!({
                "name": a.name,
                "queue_depth": a.balancer.queue_depth(),
                "queue_capacity": a.balancer.queue_capacity(),
                "in_flight": a.balancer.backends().iter().map(|b| u64::from(b.in_flight())).sum::<u64>(),
                "backends": backends,
            })
        })
        .collect();
    let sum = |f: &dyn Fn(&crate::metrics::ReactorCounters) -> u64| -> u64 {
        m.control.counters.iter().map(f).sum()
    };
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let mut responses = serde_json::Map::new();
    for (i, class) in ["other", "1xx", "2xx", "3xx", "4xx", "5xx"]
        .iter()
        .enumerate()
    {
        responses.insert(
            class.to_string(),
            json!(sum(&|c| c.responses.get(i).map_or(0, load))),
        );
    }
    json!({
        "apps": apps,
        "reloads": {
            "ok": m.reloads_ok.load(Ordering::Relaxed),
            "failed": m.reloads_failed.load(Ordering::Relaxed),
        },
        "requests": {
            "http1": sum(&|c| load(&c.http1_requests)),
            "http2": sum(&|c| load(&c.http2_requests)),
        },
        "responses": responses,
        "connections_accepted": sum(&|c| load(&c.connections_accepted)),
        "xdp": m.xdp.is_some(),
    })
}

/// `POST /upgrade`: 200 with both pids once the new process serves (this
/// one then drains and exits), 500 with the reason when it did not start
/// (this one keeps serving), 409 when upgrades are not possible here.
async fn upgrade(door: Option<crate::mgmt::upgrade::Door>) -> Response {
    let Some(door) = door else {
        return Response::error(
            409,
            "upgrade_unavailable",
            "this process cannot upgrade (it is already handing over, or is not serving)",
        );
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    if door.send(Some(tx)).is_err() {
        return Response::error(409, "upgrade_unavailable", "the process is stopping");
    }
    match rx.await {
        Ok(Ok(done)) => Response::json(
            200,
            &json!({"old_pid": done.old_pid, "new_pid": done.new_pid, "xdp_program_id": done.xdp_program_id}),
        ),
        Ok(Err(reason)) => Response::error(500, "upgrade_failed", reason),
        Err(_) => Response::error(500, "upgrade_failed", "the upgrade was abandoned"),
    }
}
