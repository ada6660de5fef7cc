//! The region as this node last saw it, pure: built from the initial read
//! of the prefix, changed by watch events, compared after a resync.
//! Values that do not parse are refused one by one (the previous value of
//! that key stays, the error is kept for the admin API and the log): a bad
//! write to etcd never takes a node's routes down.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::keys::{Item, Keys};
use crate::challenge::HttpChallenge;
use crate::config::AppSettings;

/// A certificate as stored in etcd: the chain in clear, the key sealed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertRecord {
    pub chain: String,
    pub sealed_key: String,
    pub not_after: i64,
}

/// An HTTP-01 token as stored in etcd.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub host: String,
    pub key_authorization: String,
}

/// A node's registration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub node: String,
    pub version: String,
    /// The etcd revision the node has applied.
    pub revision: i64,
    pub healthy: bool,
    /// Unix seconds.
    pub started: i64,
    pub updated: i64,
}

/// One key's change, as the watch or a read delivers it.
pub enum Change<'a> {
    Put {
        key: &'a str,
        value: &'a [u8],
        mod_revision: i64,
    },
    Delete {
        key: &'a str,
    },
}

/// Which parts of the state a batch of changes touched.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Touched {
    pub apps: bool,
    pub certs: bool,
    pub tokens: bool,
    pub acme: bool,
    pub nodes: bool,
}

impl Touched {
    pub fn any(&self) -> bool {
        self.apps || self.certs || self.tokens || self.acme || self.nodes
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct RegionState {
    /// The etcd revision this state reflects.
    pub revision: i64,
    /// The revision of the last change that mattered to this node (not a
    /// node registration): what a node reports it has applied, so nodes
    /// reporting their progress do not make each other report again.
    pub applied: i64,
    pub apps: BTreeMap<String, AppSettings>,
    /// `mod_revision` of the apps guard key (0: never written): app
    /// writes are conditioned on it.
    pub apps_guard: i64,
    pub certs: BTreeMap<String, CertRecord>,
    pub acme_accounts: BTreeMap<String, String>,
    pub acme_names: BTreeMap<String, String>,
    pub tokens: BTreeMap<String, TokenRecord>,
    pub nodes: BTreeMap<String, NodeRecord>,
    /// Values refused, by key (shown by the admin API).
    pub refused: BTreeMap<String, String>,
}

impl RegionState {
    /// Apply one change; says what it touched.
    pub fn apply(&mut self, keys: &Keys, change: Change<'_>) -> Touched {
        let mut t = Touched::default();
        let key = match &change {
            Change::Put { key, .. } | Change::Delete { key } => *key,
        };
        let Some(item) = keys.classify(key) else {
            return t;
        };
        self.refused.remove(key);
        match change {
            Change::Put {
                value,
                mod_revision,
                ..
            } => match item {
                Item::App(name) => match serde_json::from_slice::<AppSettings>(value) {
                    Ok(app) if app.name == name => {
                        t.apps = self.apps.get(&name) != Some(&app);
                        self.apps.insert(name, app);
                    }
                    Ok(app) => self.refuse(
                        key,
                        format!("names app {} under the key of {name}", app.name),
                    ),
                    Err(e) => self.refuse(key, format!("not an app: {e}")),
                },
                Item::AppsGuard => {
                    self.apps_guard = mod_revision;
                }
                Item::Cert(stem) => match serde_json::from_slice::<CertRecord>(value) {
                    Ok(c) => {
                        t.certs = self.certs.get(&stem) != Some(&c);
                        self.certs.insert(stem, c);
                    }
                    Err(e) => self.refuse(key, format!("not a certificate record: {e}")),
                },
                Item::AcmeAccount(tag) => {
                    t.acme = true;
                    self.acme_accounts
                        .insert(tag, String::from_utf8_lossy(value).into_owned());
                }
                Item::AcmeName(name) => {
                    t.acme = true;
                    self.acme_names
                        .insert(name, String::from_utf8_lossy(value).into_owned());
                }
                Item::AcmeToken(token) => match serde_json::from_slice::<TokenRecord>(value) {
                    Ok(r) => {
                        t.tokens = true;
                        self.tokens.insert(token, r);
                    }
                    Err(e) => self.refuse(key, format!("not a token record: {e}")),
                },
                Item::Node(node) => match serde_json::from_slice::<NodeRecord>(value) {
                    Ok(r) => {
                        t.nodes = true;
                        self.nodes.insert(node, r);
                    }
                    Err(e) => self.refuse(key, format!("not a node record: {e}")),
                },
                Item::Lock(_) => {}
            },
            Change::Delete { .. } => match item {
                Item::App(name) => t.apps = self.apps.remove(&name).is_some(),
                Item::AppsGuard => self.apps_guard = 0,
                Item::Cert(stem) => t.certs = self.certs.remove(&stem).is_some(),
                Item::AcmeAccount(tag) => t.acme = self.acme_accounts.remove(&tag).is_some(),
                Item::AcmeName(name) => t.acme = self.acme_names.remove(&name).is_some(),
                Item::AcmeToken(token) => t.tokens = self.tokens.remove(&token).is_some(),
                Item::Node(node) => t.nodes = self.nodes.remove(&node).is_some(),
                Item::Lock(_) => {}
            },
        }
        t
    }

    fn refuse(&mut self, key: &str, why: String) {
        tracing::error!(key, "region: value refused, the previous one stays: {why}");
        self.refused.insert(key.to_string(), why);
    }

    /// What differs between `self` and a freshly read `next` (a resync
    /// after compaction, a reconnect, an etcd restored from backup).
    pub fn diff(&self, next: &RegionState) -> Touched {
        Touched {
            apps: self.apps != next.apps,
            certs: self.certs != next.certs,
            tokens: self.tokens != next.tokens,
            acme: self.acme_names != next.acme_names || self.acme_accounts != next.acme_accounts,
            nodes: self.nodes != next.nodes,
        }
    }

    /// The apps, in name order.
    pub fn app_list(&self) -> Vec<AppSettings> {
        self.apps.values().cloned().collect()
    }

    /// The HTTP-01 table the reactors answer from.
    pub fn challenges(&self) -> crate::challenge::HttpChallenges {
        let mut t = crate::challenge::HttpChallenges::default();
        for (token, r) in &self.tokens {
            t = t.with(
                token,
                HttpChallenge {
                    host: r.host.clone(),
                    key_authorization: r.key_authorization.clone(),
                },
            );
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app_json(name: &str, domain: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "name": name, "domains": [domain], "backends": ["127.0.0.1:1"]
        }))
        .expect("json")
    }

    #[test]
    fn puts_and_deletes_touch_what_they_change() {
        let k = Keys::new("/p");
        let mut s = RegionState::default();
        let key = k.app("shop");
        let v = app_json("shop", "shop.test");
        let put = |s: &mut RegionState, value: &[u8]| {
            s.apply(
                &k,
                Change::Put {
                    key: &key,
                    value,
                    mod_revision: 5,
                },
            )
        };
        assert!(put(&mut s, &v).apps);
        assert!(!put(&mut s, &v).apps, "same value: nothing changed");
        assert_eq!(s.app_list()[0].domains, ["shop.test"]);
        // A broken value is refused; the previous one stays.
        assert!(!put(&mut s, b"{not json").apps);
        assert_eq!(s.apps["shop"].domains, ["shop.test"]);
        assert!(s.refused.contains_key(&key));
        // An app stored under another app's key is refused too.
        assert!(!put(&mut s, &app_json("other", "x.test")).apps);
        assert!(s.apply(&k, Change::Delete { key: &key }).apps);
        assert!(s.apps.is_empty());
        let guard = k.apps_guard();
        s.apply(
            &k,
            Change::Put {
                key: &guard,
                value: b"1",
                mod_revision: 42,
            },
        );
        assert_eq!(s.apps_guard, 42);
        let unrelated = s.apply(
            &k,
            Change::Put {
                key: "/p/v1/zzz/a",
                value: b"",
                mod_revision: 1,
            },
        );
        assert!(!unrelated.any());
    }

    #[test]
    fn tokens_become_the_challenge_table_and_diffs_see_changes() {
        let k = Keys::new("/p");
        let mut a = RegionState::default();
        let tok = k.acme_token("t1");
        let v = serde_json::to_vec(&TokenRecord {
            host: "a.test".into(),
            key_authorization: "t1.x".into(),
        })
        .expect("json");
        assert!(
            a.apply(
                &k,
                Change::Put {
                    key: &tok,
                    value: &v,
                    mod_revision: 3
                }
            )
            .tokens
        );
        assert_eq!(a.challenges().answer("t1", Some("a.test")), Some("t1.x"));
        let b = RegionState::default();
        let d = a.diff(&b);
        assert!(d.tokens && !d.apps && !d.certs);
    }
}
