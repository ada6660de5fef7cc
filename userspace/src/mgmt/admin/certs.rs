//! `GET /certificates`, `PUT /certificates/{name}` and
//! `POST /certificates/{name}/renew`: the `<name>.pem` files of
//! `[tls] cert_dir`, their names and expiry, uploads, and — with `[acme]` —
//! each name's ACME state (valid, pending, action_required with the TXT
//! record, failed with the last error and next attempt), expiry and
//! renewal point, and a forced renewal.
//!
//! Owns: the HTTP side only: listing the directory as JSON, and mapping an
//! upload onto [`crate::tls::install`] (the one validated, atomic install
//! path: name rules, chain and key checks, coverage, temp file + rename)
//! and its refusals onto statuses. The certificate watcher
//! (`mgmt/certs.rs`) picks an installed file up; nothing here touches the
//! TLS configuration directly.
//! Must not: write into `cert_dir` other than through `tls::install`.

use std::path::Path;

use serde_json::{Value, json};

use super::Response;
use crate::mgmt::acme::Acme;
use crate::mgmt::acme::plan::Phase;
use crate::time_fmt::rfc3339_secs;
use crate::tls::install::{self, CertInfo, InstallError, inspect, serves};
use crate::tls::{PemFile, pem_files};

/// What a certificate file says, parsed once per version of the file
/// (path, size, modification time): listing a thousand certificates on
/// every `GET /certificates` or scrape must not parse a thousand PEMs.
type Seen = std::collections::HashMap<std::path::PathBuf, (PemFile, Result<CertInfo, String>)>;
static SEEN: std::sync::Mutex<Option<Seen>> = std::sync::Mutex::new(None);

fn inspect_file(f: &PemFile) -> Result<CertInfo, String> {
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    let seen = seen.get_or_insert_with(Default::default);
    if let Some((file, info)) = seen.get(&f.path)
        && file == f
    {
        return info.clone();
    }
    let info = std::fs::read(&f.path)
        .map_err(|e| e.to_string())
        .and_then(|pem| inspect(&pem));
    seen.insert(f.path.clone(), (f.clone(), info.clone()));
    info
}

/// Forget files that are no longer listed.
fn keep_only(files: &[PemFile]) {
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(seen) = seen.as_mut() {
        seen.retain(|path, _| files.iter().any(|f| &f.path == path));
    }
}

/// `(file stem, notAfter as Unix seconds)` of every certificate file in
/// `dir` that parses (metrics).
pub fn expiries(dir: &Path) -> Vec<(String, i64)> {
    let files = pem_files(dir).unwrap_or_default();
    keep_only(&files);
    let mut out: Vec<(String, i64)> = files
        .iter()
        .filter_map(|f| Some((f.stem.clone(), inspect_file(f).ok()?.not_after)))
        .collect();
    out.sort();
    out
}

fn info_json(name: &str, info: &CertInfo) -> Value {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    json!({
        "name": name,
        "serves": serves(name),
        "names": info.names,
        "not_after": rfc3339_secs(info.not_after),
        "not_after_unix": info.not_after,
        "days_left": (info.not_after - now).div_euclid(86_400),
    })
}

/// Each ACME name as JSON (the admin API and `cargo xtask certs`).
pub fn acme_json(acme: &Acme) -> Value {
    let status = acme.status();
    let names: Vec<Value> = status
        .book
        .names
        .iter()
        .map(|(name, r)| {
            let mut v = json!({
                "name": name,
                "state": r.phase.name(),
                "ordering": status.running.contains(name),
                "failures": r.failures,
                "last_error": r.last_error,
            });
            let o = v.as_object_mut().expect("object");
            if let Phase::ActionRequired { record, value } = &r.phase {
                o.insert(
                    "action".into(),
                    json!({ "type": "TXT", "name": record, "value": value }),
                );
            }
            let next = rfc3339_secs(r.next_attempt);
            match &r.cert {
                Some(c) => {
                    o.insert("not_after".into(), json!(rfc3339_secs(c.not_after)));
                    o.insert("managed".into(), json!(c.managed));
                    o.insert("renew_at".into(), json!(next));
                }
                None => {
                    o.insert("next_attempt".into(), json!(next));
                }
            }
            if r.failures > 0 {
                o.insert("next_attempt".into(), json!(rfc3339_secs(r.next_attempt)));
            }
            if let Some((start, end)) = r.ari_window {
                o.insert(
                    "renewal_window".into(),
                    json!({ "start": rfc3339_secs(start), "end": rfc3339_secs(end) }),
                );
            }
            v
        })
        .collect();
    json!({
        "orders": { "issued": status.orders_issued, "failed": status.orders_failed },
        "paused_until": status.book.paused_until.map(rfc3339_secs),
        "names": names,
    })
}

pub fn renew(acme: Option<&Acme>, name: &str) -> Response {
    let Some(acme) = acme else {
        return Response::error(409, "acme_off", "ACME is not configured ([acme])");
    };
    // The file name of a wildcard works too.
    let name = name.to_ascii_lowercase();
    let name = serves(&name);
    if acme.renew(&name) {
        Response::json(202, &json!({ "renewing": name }))
    } else {
        Response::error(
            404,
            "unknown_name",
            format!("no app domain {name} is managed by ACME"),
        )
    }
}

pub fn list(dir: &Path, acme: Option<&Acme>) -> Response {
    let files = match pem_files(dir) {
        Ok(f) => f,
        Err(e) => {
            return Response::error(
                409,
                "no_cert_dir",
                format!("cannot read [tls] cert_dir {}: {e}", dir.display()),
            );
        }
    };
    keep_only(&files);
    let out: Vec<Value> = files
        .iter()
        .map(|f| match inspect_file(f) {
            Ok(info) => info_json(&f.stem, &info),
            Err(e) => json!({ "name": f.stem, "serves": serves(&f.stem), "error": e }),
        })
        .collect();
    let mut body = json!({ "certificates": out });
    if let Some(acme) = acme {
        body["acme"] = acme_json(acme);
    }
    Response::json(200, &body)
}

/// Region mode: an uploaded certificate (installed here already) goes to
/// etcd with its key sealed, for every node.
pub async fn share(
    region: &crate::mgmt::region::Region,
    name: &str,
    body: &[u8],
    installed: Response,
) -> Response {
    let stem = name.to_ascii_lowercase();
    let not_after = inspect(body).map_or(0, |i| i.not_after);
    match region.put_cert(&stem, body, not_after).await {
        Ok(()) => installed,
        Err(e) => Response::error(
            503,
            "region_unavailable",
            format!("installed on this node only, not shared with the region: {e}"),
        ),
    }
}

pub fn upload(dir: &Path, name: &str, body: &[u8]) -> Response {
    match install::install(dir, name, body) {
        Ok(done) => {
            tracing::info!(name = %done.name, "admin API: certificate installed");
            Response::json(200, &info_json(&done.name, &done.info))
        }
        Err(e @ InstallError::BadName(_)) => Response::error(400, "bad_name", e),
        Err(e @ InstallError::BadCertificate(_)) => Response::error(400, "bad_certificate", e),
        Err(e @ InstallError::NoDir(_)) => {
            Response::error(409, "no_cert_dir", format!("[tls] cert_dir {e}"))
        }
        Err(e @ InstallError::Io { .. }) => Response::error(500, "io_error", e),
    }
}
