//! The ACME account: created once per CA directory, its credentials (key
//! included) kept in the state directory (0600, atomic) and reused across
//! restarts. The key is never logged: only the account URL is.

use std::path::{Path, PathBuf};

use instant_acme::{Account, AccountCredentials, ExternalAccountKey, NewAccount};
use serde::{Deserialize, Serialize};

use super::client::{CaClient, RefusalLog};
use crate::config::AcmeSettings;

#[derive(Serialize, Deserialize)]
struct Saved {
    directory: String,
    credentials: AccountCredentials,
}

/// A short tag for a directory URL (file name, region key).
pub fn directory_tag(directory: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, directory.as_bytes());
    digest.as_ref()[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// One account file per directory URL: moving from staging to production
/// creates a new account and keeps the old one.
pub fn account_file(state_dir: &Path, directory: &str) -> PathBuf {
    state_dir.join(format!("account-{}.json", directory_tag(directory)))
}

async fn restore(
    settings: &AcmeSettings,
    refusals: &RefusalLog,
    saved: Saved,
) -> Result<Account, String> {
    Account::builder_with_http(client(settings, refusals)?)
        .from_credentials(saved.credentials)
        .await
        .map_err(|e| format!("restoring the ACME account: {e}"))
}

/// In region mode every node uses one account: the region's if there is
/// one; else this node's (file or new), offered to the region — and if
/// another node offered its own first, that one.
pub async fn regional(
    settings: &AcmeSettings,
    refusals: &RefusalLog,
    region: &crate::mgmt::region::Region,
) -> Result<Account, String> {
    let tag = directory_tag(settings.directory_url());
    let shared = |bytes: Vec<u8>| -> Result<Saved, String> {
        serde_json::from_slice(&bytes).map_err(|e| format!("the region's ACME account: {e}"))
    };
    if let Some(found) = region.acme_account(&tag) {
        let account = restore(settings, refusals, shared(found?)?).await?;
        tracing::info!(account = account.id(), "ACME account of the region");
        return Ok(account);
    }
    // One node creates it; the others wait for it to arrive.
    let creating = region
        .try_lock(&format!("_account-{tag}"))
        .await
        .map_err(|e| format!("the region's ACME account: {e}"))?;
    let Some(creating) = creating else {
        for _ in 0..300 {
            if let Some(found) = region.acme_account(&tag) {
                return restore(settings, refusals, shared(found?)?).await;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        return Err(
            "another node is creating the region's ACME account; not there after 30 s".into(),
        );
    };
    let account = load_or_create(settings, refusals).await;
    let account = match account {
        Ok(a) => a,
        Err(e) => {
            creating.release().await;
            return Err(e);
        }
    };
    let path = account_file(&settings.state_dir, settings.directory_url());
    let mine = match std::fs::read(&path) {
        Ok(m) => m,
        Err(e) => {
            creating.release().await;
            return Err(format!("{}: {e}", path.display()));
        }
    };
    let shared_now = region.put_acme_account(&tag, &mine).await;
    // Released once the account is in etcd: waiters find it there.
    for _ in 0..50 {
        if region.acme_account(&tag).is_some() || shared_now.is_err() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    creating.release().await;
    match shared_now {
        Ok(true) => Ok(account),
        Ok(false) => {
            // Another node's account got there first: use it.
            for _ in 0..50 {
                if let Some(found) = region.acme_account(&tag) {
                    return restore(settings, refusals, shared(found?)?).await;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err("another node stored the region's ACME account but it never arrived here".into())
        }
        Err(e) => Err(format!("sharing the ACME account with the region: {e}")),
    }
}

fn client(settings: &AcmeSettings, refusals: &RefusalLog) -> Result<Box<CaClient>, String> {
    let roots = match &settings.ca_roots {
        Some(p) => {
            Some(std::fs::read(p).map_err(|e| format!("acme.ca_roots {}: {e}", p.display()))?)
        }
        None => None,
    };
    CaClient::new(roots.as_deref(), refusals.clone()).map(Box::new)
}

/// The account of `settings.directory`: restored from its file, else
/// created (with EAB when configured) and saved before use.
pub async fn load_or_create(
    settings: &AcmeSettings,
    refusals: &RefusalLog,
) -> Result<Account, String> {
    let directory = settings.directory_url().to_string();
    let path = account_file(&settings.state_dir, &directory);
    if let Ok(text) = std::fs::read(&path) {
        let saved: Saved = serde_json::from_slice(&text)
            .map_err(|e| format!("{}: not an account file: {e}", path.display()))?;
        let account = restore(settings, refusals, saved).await?;
        tracing::info!(account = account.id(), "ACME account restored");
        return Ok(account);
    }
    let contact: Vec<&str> = settings.contact.iter().map(String::as_str).collect();
    let eab = match (&settings.eab_kid, &settings.eab_hmac_file) {
        (Some(kid), Some(file)) => Some(external_account_key(kid, file)?),
        _ => None,
    };
    let (account, credentials) = Account::builder_with_http(client(settings, refusals)?)
        .create(
            &NewAccount {
                contact: &contact,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            directory.clone(),
            eab.as_ref(),
        )
        .await
        .map_err(|e| format!("creating the ACME account at {directory}: {e}"))?;
    let saved = serde_json::to_vec_pretty(&Saved {
        directory,
        credentials,
    })
    .map_err(|e| e.to_string())?;
    crate::fsutil::write_private(&path, &saved)
        .map_err(|e| format!("saving the ACME account to {}: {e}", path.display()))?;
    tracing::info!(account = account.id(), file = %path.display(), "ACME account created");
    Ok(account)
}

/// The EAB HMAC key: base64url (padding tolerated) in a file nobody else reads.
fn external_account_key(kid: &str, file: &Path) -> Result<ExternalAccountKey, String> {
    use base64::Engine;
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(file)
        .map_err(|e| format!("acme.eab_hmac_file {}: {e}", file.display()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(format!(
            "acme.eab_hmac_file {}: readable by group or others (chmod 600)",
            file.display()
        ));
    }
    let text = std::fs::read_to_string(file).map_err(|e| format!("acme.eab_hmac_file: {e}"))?;
    let key = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text.trim().trim_end_matches('='))
        .map_err(|e| format!("acme.eab_hmac_file {}: not base64url: {e}", file.display()))?;
    Ok(ExternalAccountKey::new(kid.to_string(), &key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_file_per_directory() {
        let d = Path::new("/s");
        let a = account_file(d, "https://a.test/dir");
        assert_eq!(a, account_file(d, "https://a.test/dir"));
        assert_ne!(a, account_file(d, "https://b.test/dir"));
        assert!(a.to_string_lossy().starts_with("/s/account-"));
    }

    #[test]
    fn eab_key_file_must_be_private_and_base64url() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("portier-eab-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let f = dir.join("hmac");
        std::fs::write(&f, "c2VjcmV0LWtleQ\n").expect("write");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        assert!(
            external_account_key("kid", &f)
                .err()
                .unwrap_or_default()
                .contains("chmod 600")
        );
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert!(external_account_key("kid", &f).is_ok());
        std::fs::write(&f, "not base64!").expect("write");
        assert!(external_account_key("kid", &f).is_err());
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
