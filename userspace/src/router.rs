//! Routing decisions, pure: host + target + scheme → proxy to an app,
//! redirect, or not found (SPEC §4).
//!
//! Canonical-domain and force-HTTPS redirects are decided here, once, for
//! HTTP/1.1 and HTTP/2 alike. `/.well-known/acme-challenge/` is never
//! redirected, so certificates can be obtained over plain HTTP; a token the
//! ACME service is validating is answered by Portier itself (plain HTTP
//! only, and only for the host it was issued for); other tokens reach the
//! app as any request would.

use crate::challenge::HttpChallenges;
use crate::snapshot::{App, Snapshot};

pub const ACME_CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";

#[derive(Debug)]
pub enum Decision<'a> {
    Proxy(&'a App),
    /// 301 to this absolute URL.
    Redirect(String),
    /// 200 with this key authorization (an HTTP-01 challenge being validated).
    AcmeChallenge(String),
    NotFound,
}

/// The origin-form part of a request target (`/path?query`), also for an
/// absolute-form target (`http://host/path`).
pub use crate::http::h1::request::origin_form;

/// `host` is normalised (lowercase, no port, no trailing dot).
/// `challenges` is read only for a challenge path over plain HTTP.
pub fn decide<'a>(
    snapshot: &'a Snapshot,
    challenges: impl FnOnce() -> Option<std::sync::Arc<HttpChallenges>>,
    host: Option<&str>,
    target: &str,
    https: bool,
) -> Decision<'a> {
    let path = origin_form(target);
    let path = path.as_ref();
    let challenge_path = path.strip_prefix(ACME_CHALLENGE_PREFIX);
    if let Some(token) = challenge_path.filter(|_| !https)
        && let Some(table) = challenges()
        && let Some(answer) = table.answer(token, host)
    {
        return Decision::AcmeChallenge(answer.to_string());
    }
    let Some(app) = host.and_then(|h| snapshot.route(h)) else {
        return Decision::NotFound;
    };
    if challenge_path.is_some() {
        return Decision::Proxy(app);
    }
    let host = host.unwrap_or_default();
    let wrong_host = app.canonical.as_deref().filter(|c| *c != host);
    let wrong_scheme = app.force_https && !https;
    if wrong_host.is_none() && !wrong_scheme {
        return Decision::Proxy(app);
    }
    let scheme = if https || app.force_https {
        "https"
    } else {
        "http"
    };
    let to = wrong_host.unwrap_or(host);
    Decision::Redirect(format!("{scheme}://{to}{path}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::path::Path;

    fn snapshot(extra: &str) -> Snapshot {
        let text = format!(
            "[[apps]]\nname = \"a\"\nowner = \"o\"\ndomains = [\"www.a.test\", \"a.test\", \"*.a.test\"]\nbackends = [\"127.0.0.1:1\"]\n{extra}\n\
             [[apps]]\nname = \"b\"\nowner = \"o\"\ndomains = [\"x.a.test\", \"*.sub.a.test\"]\nbackends = [\"127.0.0.1:2\"]\n"
        );
        Snapshot::build(&Config::parse(Path::new("t"), &text).expect("config"))
    }

    fn none() -> Option<std::sync::Arc<HttpChallenges>> {
        None
    }

    fn app_of(s: &Snapshot, host: &str) -> Option<String> {
        match decide(s, none, Some(host), "/", true) {
            Decision::Proxy(a) => Some(a.name.clone()),
            _ => None,
        }
    }

    #[test]
    fn exact_beats_wildcard_and_wildcards_cover_one_label() {
        let s = snapshot("");
        assert_eq!(
            app_of(&s, "x.a.test").as_deref(),
            Some("b"),
            "exact beats wildcard across apps"
        );
        assert_eq!(app_of(&s, "y.a.test").as_deref(), Some("a"));
        assert_eq!(
            app_of(&s, "q.sub.a.test").as_deref(),
            Some("b"),
            "the most specific wildcard"
        );
        assert_eq!(app_of(&s, "deep.q.a.test"), None, "one label only");
        assert_eq!(app_of(&s, "nothing.test"), None);
    }

    #[test]
    fn canonical_redirect_keeps_scheme_path_and_query() {
        let s = snapshot("canonical_domain = \"www.a.test\"");
        match decide(&s, none, Some("a.test"), "/p?q=1", false) {
            Decision::Redirect(to) => assert_eq!(to, "http://www.a.test/p?q=1"),
            other => panic!("{other:?}"),
        }
        match decide(&s, none, Some("y.a.test"), "/p", true) {
            Decision::Redirect(to) => assert_eq!(to, "https://www.a.test/p"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            decide(&s, none, Some("www.a.test"), "/p", false),
            Decision::Proxy(_)
        ));
    }

    #[test]
    fn force_https_redirects_plain_http_once_and_spares_acme() {
        let s = snapshot("force_https = true\ncanonical_domain = \"www.a.test\"");
        match decide(&s, none, Some("a.test"), "/x?y", false) {
            Decision::Redirect(to) => assert_eq!(
                to, "https://www.a.test/x?y",
                "one hop to the canonical HTTPS URL"
            ),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            decide(
                &s,
                none,
                Some("a.test"),
                "/.well-known/acme-challenge/tok",
                false
            ),
            Decision::Proxy(_)
        ));
        assert!(matches!(
            decide(&s, none, Some("www.a.test"), "/", true),
            Decision::Proxy(_)
        ));
        assert_eq!(origin_form("http://h/p?q"), "/p?q");
        assert_eq!(origin_form("http://h"), "/");
    }

    #[test]
    fn known_tokens_are_answered_over_plain_http_for_their_host_only() {
        let s = snapshot("force_https = true");
        let table = std::sync::Arc::new(HttpChallenges::default().with(
            "tok",
            crate::challenge::HttpChallenge {
                host: "a.test".into(),
                key_authorization: "tok.thumb".into(),
            },
        ));
        let with = || Some(table.clone());
        let path = "/.well-known/acme-challenge/tok";
        match decide(&s, with, Some("a.test"), path, false) {
            Decision::AcmeChallenge(body) => assert_eq!(body, "tok.thumb"),
            other => panic!("{other:?}"),
        }
        // Another host, another token, or HTTPS: the app as before.
        assert!(matches!(
            decide(&s, with, Some("www.a.test"), path, false),
            Decision::Proxy(_)
        ));
        assert!(matches!(
            decide(
                &s,
                with,
                Some("a.test"),
                "/.well-known/acme-challenge/nope",
                false
            ),
            Decision::Proxy(_)
        ));
        assert!(matches!(
            decide(&s, with, Some("a.test"), path, true),
            Decision::Proxy(_)
        ));
        // A name no app has yet (being ordered before it routes) still validates.
        let only = std::sync::Arc::new(HttpChallenges::default().with(
            "t2",
            crate::challenge::HttpChallenge {
                host: "new.test".into(),
                key_authorization: "t2.thumb".into(),
            },
        ));
        assert!(matches!(
            decide(
                &s,
                || Some(only.clone()),
                Some("new.test"),
                "/.well-known/acme-challenge/t2",
                false
            ),
            Decision::AcmeChallenge(_)
        ));
    }
}
