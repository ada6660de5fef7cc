//! `GET /certificates` and `PUT /certificates/{name}`: the `<name>.pem`
//! files of `[tls] cert_dir`, their names and expiry, and uploads.
//!
//! Owns: reading `notAfter` and the DNS names out of each file's first
//! certificate (x509-parser), and the upload path: the PEM is written into
//! a private temporary directory inside `cert_dir`, loaded there with the
//! TLS store's own loader (`CertStore::load`: chain parses, key loads and
//! matches), checked to cover the name it is uploaded as, then renamed
//! into place (atomic on one filesystem). The certificate watcher
//! (`mgmt/certs.rs`) picks the new file up; nothing here touches the TLS
//! configuration directly.
//! Must not: leave a half-written or unvalidated `.pem` where the watcher
//! looks, or let a name escape `cert_dir`.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Value, json};

use super::Response;
use crate::tls::store::{DEFAULT_NAME, WILDCARD_PREFIX};
use crate::time_fmt::rfc3339_secs;
use crate::tls::{CertStore, StoreError, pem_files, provider};

/// Names and expiry of the first certificate in a PEM file.
struct CertInfo {
    not_after: i64,
    names: Vec<String>,
}

fn inspect(pem: &[u8]) -> Result<CertInfo, String> {
    for item in x509_parser::pem::Pem::iter_from_buffer(pem) {
        let item = item.map_err(|e| format!("bad PEM: {e}"))?;
        if item.label != "CERTIFICATE" {
            continue;
        }
        let cert = item
            .parse_x509()
            .map_err(|e| format!("bad certificate: {e}"))?;
        let mut names = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for n in &san.value.general_names {
                if let x509_parser::extensions::GeneralName::DNSName(d) = n {
                    names.push(d.to_ascii_lowercase());
                }
            }
        }
        if names.is_empty() {
            names.extend(
                cert.subject()
                    .iter_common_name()
                    .filter_map(|cn| cn.as_str().ok())
                    .map(str::to_ascii_lowercase),
            );
        }
        return Ok(CertInfo {
            not_after: cert.validity().not_after.timestamp(),
            names,
        });
    }
    Err("no certificate in the PEM".into())
}

/// `(file stem, notAfter as Unix seconds)` of every certificate file in
/// `dir` that parses (metrics).
pub fn expiries(dir: &Path) -> Vec<(String, i64)> {
    let mut out: Vec<(String, i64)> = pem_files(dir)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|f| {
            let pem = std::fs::read(&f.path).ok()?;
            Some((f.stem, inspect(&pem).ok()?.not_after))
        })
        .collect();
    out.sort();
    out
}

/// What a file stem serves: `_wildcard.x.y` → `*.x.y`.
fn serves(stem: &str) -> String {
    match stem.strip_prefix(WILDCARD_PREFIX) {
        Some(suffix) => format!("*.{suffix}"),
        None => stem.to_string(),
    }
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

pub fn list(dir: &Path) -> Response {
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
    let out: Vec<Value> = files
        .iter()
        .map(|f| {
            match std::fs::read(&f.path)
                .map_err(|e| e.to_string())
                .and_then(|pem| inspect(&pem))
            {
                Ok(info) => info_json(&f.stem, &info),
                Err(e) => json!({ "name": f.stem, "serves": serves(&f.stem), "error": e }),
            }
        })
        .collect();
    Response::json(200, &json!({ "certificates": out }))
}

/// A file stem the store understands and that stays inside the directory.
fn valid_name(name: &str) -> bool {
    let host = name.strip_prefix(WILDCARD_PREFIX).unwrap_or(name);
    !host.is_empty()
        && name.len() <= 253
        && !host.starts_with('.')
        && !host.ends_with('.')
        && !host.contains("..")
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
}

/// Does a certificate naming `names` cover what the file `stem` serves?
fn covers(names: &[String], stem: &str) -> bool {
    if stem == DEFAULT_NAME {
        return true;
    }
    let wanted = serves(stem);
    names.iter().any(|n| {
        *n == wanted
            || (!wanted.starts_with("*.")
                && n.strip_prefix("*.").is_some_and(|suffix| {
                    wanted
                        .split_once('.')
                        .is_some_and(|(_, parent)| parent == suffix)
                }))
    })
}

static UPLOADS: AtomicU64 = AtomicU64::new(0);

pub fn upload(dir: &Path, name: &str, body: &[u8]) -> Response {
    let name = name.to_ascii_lowercase();
    if !valid_name(&name) {
        return Response::error(
            400,
            "bad_name",
            format!(
                "`{name}` is not a certificate name: use the host name (www.example.com), _wildcard.<suffix> for *.<suffix>, or default"
            ),
        );
    }
    let info = match inspect(body) {
        Ok(i) => i,
        Err(e) => return Response::error(400, "bad_certificate", e),
    };
    if !covers(&info.names, &name) {
        return Response::error(
            400,
            "bad_certificate",
            format!(
                "the certificate does not cover {} (it names: {})",
                serves(&name),
                info.names.join(", ")
            ),
        );
    }
    if !dir.is_dir() {
        return Response::error(
            409,
            "no_cert_dir",
            format!("[tls] cert_dir {} is not a directory", dir.display()),
        );
    }
    let staging = dir.join(format!(
        ".upload-{}-{}",
        std::process::id(),
        UPLOADS.fetch_add(1, Ordering::Relaxed)
    ));
    let result = stage_and_install(&staging, dir, &name, body);
    let _ = std::fs::remove_dir_all(&staging);
    match result {
        Ok(()) => {
            tracing::info!(name, "admin API: certificate installed");
            Response::json(200, &info_json(&name, &info))
        }
        Err(r) => r,
    }
}

fn stage_and_install(staging: &Path, dir: &Path, name: &str, pem: &[u8]) -> Result<(), Response> {
    let internal =
        |what: &str, e: std::io::Error| Response::error(500, "io_error", format!("{what}: {e}"));
    std::fs::create_dir(staging).map_err(|e| internal("creating the staging directory", e))?;
    std::fs::set_permissions(staging, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| internal("chmod staging", e))?;
    let file_name = format!("{name}.pem");
    let staged = staging.join(&file_name);
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&staged)
            .map_err(|e| internal("writing the certificate", e))?;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(|e| internal("chmod", e))?;
        f.write_all(pem)
            .map_err(|e| internal("writing the certificate", e))?;
        f.sync_all().map_err(|e| internal("fsync", e))?;
    }
    // The exact loader the TLS store uses: what passes here will load there.
    CertStore::load(staging, &provider()).map_err(|e| match e {
        StoreError::File { reason, .. } => Response::error(400, "bad_certificate", reason),
        StoreError::Dir { .. } => Response::error(500, "io_error", e.to_string()),
    })?;
    std::fs::rename(&staged, dir.join(&file_name))
        .map_err(|e| internal("installing the certificate", e))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_stay_in_the_directory() {
        assert!(valid_name("www.example.com"));
        assert!(valid_name("_wildcard.example.com"));
        assert!(valid_name("default"));
        for bad in ["", "../x", "a/b", ".hidden", "a..b", "x y", "_wildcard."] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn coverage() {
        let n = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(covers(&n(&["a.test"]), "a.test"));
        assert!(covers(&n(&["*.x.test"]), "a.x.test"));
        assert!(covers(&n(&["*.x.test"]), "_wildcard.x.test"));
        assert!(!covers(&n(&["a.x.test"]), "_wildcard.x.test"));
        assert!(!covers(&n(&["b.test"]), "a.test"));
        assert!(covers(&n(&["b.test"]), "default"));
    }

    #[test]
    fn inspects_a_generated_certificate() {
        let pem = crate::tls::self_signed_pem(&["a.test".into(), "*.b.test".into()]).expect("pem");
        let info = inspect(pem.as_bytes()).expect("parse");
        assert_eq!(info.names, ["a.test", "*.b.test"]);
        assert!(info.not_after > 1_700_000_000);
        assert!(inspect(b"nope").is_err());
    }
}
