//! HTTP-01 challenge tokens the reactors answer (RFC 8555 §8.3).
//!
//! Owns: the table `token → (host, key authorization)` the ACME service
//! publishes through `Control::challenges` (swapped whole, read lock-free,
//! like the snapshot) and the lookup the router makes for
//! `/.well-known/acme-challenge/<token>` over plain HTTP.
//! Must not: talk to a CA, or answer a token for a host it was not issued
//! for (a token is proof for one identifier only).

use std::collections::HashMap;

/// One pending HTTP-01 challenge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpChallenge {
    /// The identifier being validated (lowercase, no port).
    pub host: String,
    /// `token.thumbprint`: the exact body the CA expects.
    pub key_authorization: String,
}

/// Every HTTP-01 challenge currently being validated, by token.
#[derive(Clone, Debug, Default)]
pub struct HttpChallenges {
    by_token: HashMap<String, HttpChallenge>,
}

impl HttpChallenges {
    pub fn is_empty(&self) -> bool {
        self.by_token.is_empty()
    }

    pub fn len(&self) -> usize {
        self.by_token.len()
    }

    /// A copy with `token` answering for `host` (the table is published
    /// whole, so changes make a new one).
    pub fn with(&self, token: &str, challenge: HttpChallenge) -> HttpChallenges {
        let mut next = self.clone();
        next.by_token.insert(token.to_string(), challenge);
        next
    }

    /// A copy without `token`.
    pub fn without(&self, token: &str) -> HttpChallenges {
        let mut next = self.clone();
        next.by_token.remove(token);
        next
    }

    /// The key authorization to answer for `token` requested with `host`
    /// (normalised: lowercase, no port, no trailing dot).
    pub fn answer(&self, token: &str, host: Option<&str>) -> Option<&str> {
        let c = self.by_token.get(token)?;
        (Some(c.host.as_str()) == host).then_some(c.key_authorization.as_str())
    }

    pub fn tokens(&self) -> impl Iterator<Item = (&str, &HttpChallenge)> {
        self.by_token.iter().map(|(t, c)| (t.as_str(), c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_only_the_token_for_its_host() {
        let t = HttpChallenges::default().with(
            "tok",
            HttpChallenge {
                host: "a.test".into(),
                key_authorization: "tok.thumb".into(),
            },
        );
        assert_eq!(t.answer("tok", Some("a.test")), Some("tok.thumb"));
        assert_eq!(t.answer("tok", Some("b.test")), None, "other host");
        assert_eq!(t.answer("tok", None), None, "no host");
        assert_eq!(t.answer("other", Some("a.test")), None);
        assert!(t.without("tok").is_empty());
        assert_eq!(t.len(), 1, "published tables are never changed in place");
    }
}
