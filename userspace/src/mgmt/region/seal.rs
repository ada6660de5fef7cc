//! Sealing secrets before they go to etcd: private keys of certificates
//! and the ACME account. ChaCha20-Poly1305 (ring) under the region key, a
//! random 96-bit nonce per value, and the etcd key the value is stored
//! under as associated data, so a sealed value copied under another key
//! does not open.
//!
//! The region key is 32 random bytes, base64, in a file only its owner
//! reads (`portier region keygen --out FILE`); every node has the same.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

pub struct RegionKey {
    key: LessSafeKey,
}

impl RegionKey {
    /// Read the key file: base64 of exactly 32 bytes, not readable by
    /// group or others.
    pub fn load(path: &Path) -> Result<RegionKey, String> {
        use std::os::unix::fs::PermissionsExt;
        let what = || format!("region key {}", path.display());
        let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", what()))?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(format!(
                "{}: readable by group or others (chmod 600)",
                what()
            ));
        }
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", what()))?;
        let bytes = STANDARD
            .decode(text.trim())
            .map_err(|e| format!("{}: not base64: {e}", what()))?;
        RegionKey::from_bytes(&bytes).map_err(|e| format!("{}: {e}", what()))
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<RegionKey, String> {
        if bytes.len() != 32 {
            return Err(format!("{} bytes, 32 expected", bytes.len()));
        }
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, bytes).map_err(|_| "unusable key")?;
        Ok(RegionKey {
            key: LessSafeKey::new(unbound),
        })
    }

    /// A new key file's content (base64 of 32 random bytes).
    pub fn generate() -> Result<String, String> {
        let mut b = [0u8; 32];
        SystemRandom::new()
            .fill(&mut b)
            .map_err(|_| "no randomness")?;
        Ok(STANDARD.encode(b))
    }

    /// `base64(nonce || ciphertext || tag)`, bound to `context` (the etcd key).
    pub fn seal(&self, context: &str, plain: &[u8]) -> Result<String, String> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| "no randomness")?;
        let mut buf = plain.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context.as_bytes()),
                &mut buf,
            )
            .map_err(|_| "sealing failed")?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        Ok(STANDARD.encode(out))
    }

    /// The plain bytes, or an error if the value was not sealed with this
    /// key for this `context` (or was altered).
    pub fn open(&self, context: &str, sealed: &str) -> Result<Vec<u8>, String> {
        let raw = STANDARD
            .decode(sealed.trim())
            .map_err(|e| format!("sealed value is not base64: {e}"))?;
        if raw.len() < NONCE_LEN + CHACHA20_POLY1305.tag_len() {
            return Err("sealed value too short".into());
        }
        let (nonce, rest) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| "bad nonce")?;
        let mut buf = rest.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(context.as_bytes()), &mut buf)
            .map_err(|_| {
                format!("{context}: does not open with this region key (another region's key, or altered)")
            })?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> RegionKey {
        let text = RegionKey::generate().expect("key");
        RegionKey::from_bytes(&STANDARD.decode(text).expect("b64")).expect("key")
    }

    #[test]
    fn seals_and_opens_bound_to_its_context() {
        let k = key();
        let sealed = k.seal("/p/v1/certs/a.test", b"secret key").expect("seal");
        assert!(!sealed.contains("secret"));
        assert_eq!(
            k.open("/p/v1/certs/a.test", &sealed).expect("open"),
            b"secret key"
        );
        assert!(
            k.open("/p/v1/certs/b.test", &sealed).is_err(),
            "other key name"
        );
        assert!(
            key().open("/p/v1/certs/a.test", &sealed).is_err(),
            "other region key"
        );
        let mut raw = STANDARD.decode(&sealed).expect("b64");
        let last = raw.len() - 1;
        raw[last] ^= 1;
        assert!(
            k.open("/p/v1/certs/a.test", &STANDARD.encode(raw)).is_err(),
            "altered"
        );
        assert_ne!(
            sealed,
            k.seal("/p/v1/certs/a.test", b"secret key").expect("seal"),
            "fresh nonce"
        );
    }

    #[test]
    fn key_files_must_be_private_and_32_bytes() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("portier-seal-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let f = dir.join("region.key");
        std::fs::write(&f, RegionKey::generate().expect("key")).expect("write");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        assert!(
            RegionKey::load(&f)
                .err()
                .unwrap_or_default()
                .contains("chmod 600")
        );
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        RegionKey::load(&f).expect("loads");
        std::fs::write(&f, STANDARD.encode([1u8; 16])).expect("write");
        assert!(
            RegionKey::load(&f)
                .err()
                .unwrap_or_default()
                .contains("16 bytes")
        );
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
