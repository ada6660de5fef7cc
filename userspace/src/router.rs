//! Routing decisions, pure: host + target + scheme → proxy to an app,
//! redirect, or not found (SPEC §4).
//!
//! Canonical-domain and force-HTTPS redirects are decided here, once, for
//! HTTP/1.1 and HTTP/2 alike. `/.well-known/acme-challenge/` is never
//! redirected, so certificates can be obtained over plain HTTP.

use crate::snapshot::{App, Snapshot};

pub const ACME_CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";

#[derive(Debug)]
pub enum Decision<'a> {
    Proxy(&'a App),
    /// 301 to this absolute URL.
    Redirect(String),
    NotFound,
}

/// The origin-form part of a request target (`/path?query`), also for an
/// absolute-form target (`http://host/path`).
pub fn origin_form(target: &str) -> &str {
    if target.starts_with('/') {
        return target;
    }
    if let Some(rest) = target
        .strip_prefix("http://")
        .or_else(|| target.strip_prefix("https://"))
    {
        return rest.find('/').map_or("/", |i| &rest[i..]);
    }
    "/"
}

/// `host` is normalised (lowercase, no port, no trailing dot).
pub fn decide<'a>(
    snapshot: &'a Snapshot,
    host: Option<&str>,
    target: &str,
    https: bool,
) -> Decision<'a> {
    let Some(app) = host.and_then(|h| snapshot.route(h)) else {
        return Decision::NotFound;
    };
    let path = origin_form(target);
    if path.starts_with(ACME_CHALLENGE_PREFIX) {
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

    fn app_of(s: &Snapshot, host: &str) -> Option<String> {
        match decide(s, Some(host), "/", true) {
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
        match decide(&s, Some("a.test"), "/p?q=1", false) {
            Decision::Redirect(to) => assert_eq!(to, "http://www.a.test/p?q=1"),
            other => panic!("{other:?}"),
        }
        match decide(&s, Some("y.a.test"), "/p", true) {
            Decision::Redirect(to) => assert_eq!(to, "https://www.a.test/p"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            decide(&s, Some("www.a.test"), "/p", false),
            Decision::Proxy(_)
        ));
    }

    #[test]
    fn force_https_redirects_plain_http_once_and_spares_acme() {
        let s = snapshot("force_https = true\ncanonical_domain = \"www.a.test\"");
        match decide(&s, Some("a.test"), "/x?y", false) {
            Decision::Redirect(to) => assert_eq!(
                to, "https://www.a.test/x?y",
                "one hop to the canonical HTTPS URL"
            ),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            decide(&s, Some("a.test"), "/.well-known/acme-challenge/tok", false),
            Decision::Proxy(_)
        ));
        assert!(matches!(
            decide(&s, Some("www.a.test"), "/", true),
            Decision::Proxy(_)
        ));
        assert_eq!(origin_form("http://h/p?q"), "/p?q");
        assert_eq!(origin_form("http://h"), "/");
    }
}
