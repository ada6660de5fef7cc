//! The region's key layout in etcd, all under one prefix (`/portier` by
//! default), versioned:
//!
//! ```text
//!  <prefix>/v1/apps/<app>              one app (JSON: name, owner, domains, backends, settings)
//!  <prefix>/v1/meta/apps               touched by every apps write: the revision writes are conditioned on
//!  <prefix>/v1/certs/<file stem>       a certificate: chain PEM + private key sealed with the region key
//!  <prefix>/v1/acme/account/<tag>      the ACME account of a directory (sealed credentials)
//!  <prefix>/v1/acme/names/<name>       per-name ACME state (backoff shared by every node)
//!  <prefix>/v1/acme/tokens/<token>     an HTTP-01 challenge being validated (lease-bound)
//!  <prefix>/v1/locks/acme/<name>       who orders this name now (lease-bound)
//!  <prefix>/v1/nodes/<node>            a node: name, version, revision applied, health (lease-bound)
//! ```

/// What a key of the region is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item {
    App(String),
    AppsGuard,
    Cert(String),
    AcmeAccount(String),
    AcmeName(String),
    AcmeToken(String),
    Lock(String),
    Node(String),
}

#[derive(Clone, Debug)]
pub struct Keys {
    root: String,
}

impl Keys {
    /// `prefix`: `/portier` (validated: leading `/`, no trailing one).
    pub fn new(prefix: &str) -> Keys {
        Keys {
            root: format!("{prefix}/v1/"),
        }
    }

    /// Everything of the region (for the initial read and the watch).
    pub fn root(&self) -> &str {
        &self.root
    }

    pub fn apps(&self) -> String {
        format!("{}apps/", self.root)
    }

    pub fn app(&self, name: &str) -> String {
        format!("{}apps/{name}", self.root)
    }

    pub fn apps_guard(&self) -> String {
        format!("{}meta/apps", self.root)
    }

    pub fn certs(&self) -> String {
        format!("{}certs/", self.root)
    }

    pub fn cert(&self, stem: &str) -> String {
        format!("{}certs/{stem}", self.root)
    }

    pub fn acme_account(&self, tag: &str) -> String {
        format!("{}acme/account/{tag}", self.root)
    }

    pub fn acme_name(&self, name: &str) -> String {
        format!("{}acme/names/{name}", self.root)
    }

    pub fn acme_token(&self, token: &str) -> String {
        format!("{}acme/tokens/{token}", self.root)
    }

    pub fn lock(&self, name: &str) -> String {
        format!("{}locks/acme/{name}", self.root)
    }

    pub fn node(&self, node: &str) -> String {
        format!("{}nodes/{node}", self.root)
    }

    pub fn nodes(&self) -> String {
        format!("{}nodes/", self.root)
    }

    /// What `key` is, if it is one of ours.
    pub fn classify(&self, key: &str) -> Option<Item> {
        let rest = key.strip_prefix(&self.root)?;
        let (kind, name) = rest.split_once('/').unwrap_or((rest, ""));
        let name = name.to_string();
        let named = |f: fn(String) -> Item| {
            (!name.is_empty() && !name.contains('/')).then(|| f(name.clone()))
        };
        match kind {
            "apps" => named(Item::App),
            "meta" if name == "apps" => Some(Item::AppsGuard),
            "certs" => named(Item::Cert),
            "nodes" => named(Item::Node),
            "acme" => {
                let (sub, leaf) = name.split_once('/')?;
                if leaf.is_empty() || leaf.contains('/') {
                    return None;
                }
                let leaf = leaf.to_string();
                match sub {
                    "account" => Some(Item::AcmeAccount(leaf)),
                    "names" => Some(Item::AcmeName(leaf)),
                    "tokens" => Some(Item::AcmeToken(leaf)),
                    _ => None,
                }
            }
            "locks" => name
                .strip_prefix("acme/")
                .filter(|l| !l.is_empty())
                .map(|l| Item::Lock(l.to_string())),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_classifies_back() {
        let k = Keys::new("/portier");
        assert_eq!(k.root(), "/portier/v1/");
        let cases = [
            (k.app("shop"), Item::App("shop".into())),
            (k.apps_guard(), Item::AppsGuard),
            (
                k.cert("_wildcard.x.test"),
                Item::Cert("_wildcard.x.test".into()),
            ),
            (k.acme_account("ab12"), Item::AcmeAccount("ab12".into())),
            (k.acme_name("*.x.test"), Item::AcmeName("*.x.test".into())),
            (k.acme_token("tok"), Item::AcmeToken("tok".into())),
            (k.lock("a.test"), Item::Lock("a.test".into())),
            (k.node("n1"), Item::Node("n1".into())),
        ];
        for (key, item) in cases {
            assert_eq!(k.classify(&key), Some(item), "{key}");
        }
        for other in [
            "/portier/v2/apps/x",
            "/other/v1/apps/x",
            "/portier/v1/apps/",
            "/portier/v1/apps/a/b",
            "/portier/v1/zzz/a",
        ] {
            assert_eq!(k.classify(other), None, "{other}");
        }
    }
}
