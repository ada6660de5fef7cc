//! Sticky sessions (SPEC §3): an opaque, authenticated cookie binds a client
//! to a backend.
//!
//! The cookie value is a truncated HMAC-SHA256 over the app name and the
//! backend address under a secret key: it reveals neither the address nor
//! the index, cannot be forged without the key, and simply stops matching
//! when the backend leaves the app (a stale or forged value is ignored and a
//! new cookie is issued). Pure: no clock, no I/O.

use std::net::SocketAddr;
use std::sync::OnceLock;

use base64::Engine;
use ring::hmac;

use crate::sched::balance::BackendId;

/// Bytes of MAC kept in the cookie (128 bits).
const TAG_BYTES: usize = 16;

#[derive(Debug)]
pub struct Sticky {
    pub cookie: String,
    /// Cookie value per backend, in backend order.
    tags: Vec<String>,
}

static KEY: OnceLock<[u8; 32]> = OnceLock::new();

/// The process-wide random key, for a binary upgrade to hand over.
pub fn process_key() -> [u8; 32] {
    *random_key()
}

/// Use the key of the process this one took over from (before any app is
/// built); `false` if a key was already in use.
pub fn adopt_process_key(key: [u8; 32]) -> bool {
    KEY.set(key).is_ok()
}

/// The process-wide random key used when no `sticky_secret` is configured.
fn random_key() -> &'static [u8; 32] {
    KEY.get_or_init(|| {
        let mut k = [0u8; 32];
        let rng = ring::rand::SystemRandom::new();
        // A failing system RNG leaves zeros: cookies then bind, but are
        // forgeable; say so loudly.
        if ring::rand::SecureRandom::fill(&rng, &mut k).is_err() {
            tracing::error!("no system randomness: sticky cookies are not authenticated");
        }
        k
    })
}

impl Sticky {
    pub fn new(app: &str, cookie: &str, backends: &[SocketAddr], secret: Option<&str>) -> Sticky {
        let key = match secret {
            Some(s) => hmac::Key::new(hmac::HMAC_SHA256, s.as_bytes()),
            None => hmac::Key::new(hmac::HMAC_SHA256, random_key()),
        };
        let tags = backends
            .iter()
            .map(|addr| {
                let mac = hmac::sign(&key, format!("{app}\0{addr}").as_bytes());
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&mac.as_ref()[..TAG_BYTES])
            })
            .collect();
        Sticky {
            cookie: cookie.to_string(),
            tags,
        }
    }

    /// The backend a request's `Cookie` header values point to, if valid.
    pub fn backend_for<'a>(
        &self,
        cookie_headers: impl Iterator<Item = &'a [u8]>,
    ) -> Option<BackendId> {
        for header in cookie_headers {
            for pair in header.split(|&b| b == b';') {
                let pair = pair.trim_ascii();
                let Some(eq) = pair.iter().position(|&b| b == b'=') else {
                    continue;
                };
                if &pair[..eq] != self.cookie.as_bytes() {
                    continue;
                }
                let value = &pair[eq + 1..];
                if let Some(i) = self.tags.iter().position(|t| t.as_bytes() == value) {
                    return Some(BackendId(i));
                }
            }
        }
        None
    }

    /// `Set-Cookie` value binding the client to `backend`.
    pub fn set_cookie(&self, backend: BackendId, secure: bool) -> Option<String> {
        let tag = self.tags.get(backend.0)?;
        Some(format!(
            "{}={tag}; Path=/; HttpOnly; SameSite=Lax{}",
            self.cookie,
            if secure { "; Secure" } else { "" }
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs() -> Vec<SocketAddr> {
        vec![
            "10.0.0.1:8080".parse().unwrap(),
            "10.0.0.2:8080".parse().unwrap(),
        ]
    }

    #[test]
    fn cookie_round_trips_and_hides_the_backend() {
        let s = Sticky::new("shop", "sid", &addrs(), Some("0123456789abcdef"));
        let c = s.set_cookie(BackendId(1), true).unwrap();
        assert!(c.ends_with("; Path=/; HttpOnly; SameSite=Lax; Secure"));
        assert!(!c.contains("10.0.0") && !c.contains("8080"));
        let value = c.split(';').next().unwrap().to_string();
        let header = format!("a=1; {value}; b=2");
        assert_eq!(
            s.backend_for([header.as_bytes()].into_iter()),
            Some(BackendId(1))
        );
        assert!(
            !s.set_cookie(BackendId(0), false)
                .unwrap()
                .contains("Secure")
        );
    }

    #[test]
    fn forged_stale_or_foreign_values_are_ignored() {
        let s = Sticky::new("shop", "sid", &addrs(), Some("0123456789abcdef"));
        assert_eq!(
            s.backend_for([&b"sid=AAAAAAAAAAAAAAAAAAAAAA"[..]].into_iter()),
            None
        );
        assert_eq!(
            s.backend_for([&b"sid="[..], &b"other=x"[..]].into_iter()),
            None
        );
        // Another key (another region, or a restart without a secret) does not match.
        let other = Sticky::new("shop", "sid", &addrs(), Some("fedcba9876543210"));
        let c = other.set_cookie(BackendId(0), false).unwrap();
        let v = c.split(';').next().unwrap();
        assert_eq!(s.backend_for([v.as_bytes()].into_iter()), None);
        // The same backend in another app gets another value.
        let app2 = Sticky::new("blog", "sid", &addrs(), Some("0123456789abcdef"));
        assert_ne!(
            app2.set_cookie(BackendId(0), false),
            s.set_cookie(BackendId(0), false)
        );
    }
}
