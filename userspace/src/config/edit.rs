//! Config mutations for the admin API: small, typed edits applied to the
//! text of the configuration file with `toml_edit`, so the operator's
//! comments, ordering and formatting survive a write-back.
//!
//! Owns: finding an app in `[[apps]]` (array of tables, or an inline
//! `apps = [{…}]`), and adding/removing its domains and backends, setting
//! its per-app settings, and editing `[xdp] blocklist`.
//! Must not: validate the result (the caller runs `Config::parse` on the
//! edited text, which is the only judge), touch files or the running state.
//! Fed by: the file's text and one [`Edit`]. Emits: the new text, or an
//! [`EditError`] saying whose fault it is.

use std::net::SocketAddr;

use toml_edit::{Array, DocumentMut, Item, TableLike, Value};

use super::Cidr;
use super::app::normalize_host;

/// One per-app setting the admin API may change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Setting {
    ForceHttps(bool),
    /// `None` removes the key (no canonical domain).
    CanonicalDomain(Option<String>),
    StickySessions(bool),
    Compress(bool),
    MaxConnsPerBackend(u32),
    QueuePerBackend(u32),
    HstsMaxAge(u64),
}

impl Setting {
    /// The TOML key of the setting.
    pub fn key(&self) -> &'static str {
        match self {
            Setting::ForceHttps(_) => "force_https",
            Setting::CanonicalDomain(_) => "canonical_domain",
            Setting::StickySessions(_) => "sticky_sessions",
            Setting::Compress(_) => "compress",
            Setting::MaxConnsPerBackend(_) => "max_conns_per_backend",
            Setting::QueuePerBackend(_) => "queue_per_backend",
            Setting::HstsMaxAge(_) => "hsts_max_age",
        }
    }

    fn value(&self) -> Option<Value> {
        Some(match self {
            Setting::ForceHttps(b) | Setting::StickySessions(b) | Setting::Compress(b) => {
                Value::from(*b)
            }
            Setting::CanonicalDomain(d) => Value::from(d.clone()?),
            Setting::MaxConnsPerBackend(n) | Setting::QueuePerBackend(n) => Value::from(*n as i64),
            Setting::HstsMaxAge(n) => Value::from(i64::try_from(*n).unwrap_or(i64::MAX)),
        })
    }
}

/// A change to the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Edit {
    AddDomain { app: String, domain: String },
    RemoveDomain { app: String, domain: String },
    AddBackend { app: String, backend: SocketAddr },
    RemoveBackend { app: String, backend: SocketAddr },
    Settings { app: String, settings: Vec<Setting> },
    Block(Cidr),
    Unblock(Cidr),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    /// The file on disk is not TOML any more (edited by hand, not reloaded).
    #[error("the configuration file does not parse: {0}")]
    FileInvalid(String),
    #[error("no app named {0}")]
    PeerNoSuchApp(String),
    #[error("{0}")]
    PeerNotFound(String),
    #[error("{0}")]
    PeerAlreadyPresent(String),
    #[error("{0}")]
    PeerInvalid(String),
}

impl Edit {
    /// The app the edit changes (`None`: the blocklist).
    pub fn app(&self) -> Option<&str> {
        match self {
            Edit::AddDomain { app, .. }
            | Edit::RemoveDomain { app, .. }
            | Edit::AddBackend { app, .. }
            | Edit::RemoveBackend { app, .. }
            | Edit::Settings { app, .. } => Some(app),
            Edit::Block(_) | Edit::Unblock(_) => None,
        }
    }
}

/// Apply an app `edit` to a list of apps (the region's): only the app it
/// names goes through TOML and [`apply`], the others are kept as they are
/// (a region of 10,000 apps made a whole-list round trip cost seconds).
/// Same apps, same order; the result still has to be validated as a whole.
pub fn apply_to_apps(
    apps: &[crate::config::AppSettings],
    edit: &Edit,
) -> Result<Vec<crate::config::AppSettings>, EditError> {
    #[derive(serde::Serialize, serde::Deserialize)]
    struct Apps {
        #[serde(default)]
        apps: Vec<crate::config::AppSettings>,
    }
    let name = edit
        .app()
        .ok_or_else(|| EditError::PeerInvalid("not an app edit".into()))?;
    let i = apps
        .iter()
        .position(|a| a.name == name)
        .ok_or_else(|| EditError::PeerNoSuchApp(name.to_string()))?;
    let text = toml::to_string(&Apps {
        apps: vec![apps[i].clone()],
    })
    .map_err(|e| EditError::FileInvalid(e.to_string()))?;
    let edited: Apps = toml::from_str(&apply(&text, edit)?)
        .map_err(|e| EditError::PeerInvalid(e.message().to_string()))?;
    let [app]: [crate::config::AppSettings; 1] = edited
        .apps
        .try_into()
        .map_err(|_| EditError::FileInvalid(format!("editing app {name} did not give one app")))?;
    let mut next = apps.to_vec();
    next[i] = app;
    Ok(next)
}

/// Apply `edit` to `text`; the result still has to pass `Config::parse`.
pub fn apply(text: &str, edit: &Edit) -> Result<String, EditError> {
    let mut doc: DocumentMut = text
        .parse()
        .map_err(|e: toml_edit::TomlError| EditError::FileInvalid(e.message().to_string()))?;
    match edit {
        Edit::AddDomain { app, domain } => {
            let host = normalize_host(domain)
                .ok_or_else(|| EditError::PeerInvalid(format!("`{domain}` is not a host name")))?;
            let list = list_of(find_app(&mut doc, app)?, "domains")?;
            if position(list, |s| normalize_host(s).as_deref() == Some(&host)).is_some() {
                return Err(EditError::PeerAlreadyPresent(format!(
                    "app {app} already has domain {host}"
                )));
            }
            list.push(host);
        }
        Edit::RemoveDomain { app, domain } => {
            let host = normalize_host(domain)
                .ok_or_else(|| EditError::PeerInvalid(format!("`{domain}` is not a host name")))?;
            let list = list_of(find_app(&mut doc, app)?, "domains")?;
            let i = position(list, |s| normalize_host(s).as_deref() == Some(&host)).ok_or_else(
                || EditError::PeerNotFound(format!("app {app} has no domain {host}")),
            )?;
            list.remove(i);
        }
        Edit::AddBackend { app, backend } => {
            let list = list_of(find_app(&mut doc, app)?, "backends")?;
            if position(list, |s| s.parse::<SocketAddr>().ok() == Some(*backend)).is_some() {
                return Err(EditError::PeerAlreadyPresent(format!(
                    "app {app} already has backend {backend}"
                )));
            }
            list.push(backend.to_string());
        }
        Edit::RemoveBackend { app, backend } => {
            let list = list_of(find_app(&mut doc, app)?, "backends")?;
            let i = position(list, |s| s.parse::<SocketAddr>().ok() == Some(*backend)).ok_or_else(
                || EditError::PeerNotFound(format!("app {app} has no backend {backend}")),
            )?;
            list.remove(i);
        }
        Edit::Settings { app, settings } => {
            let table = find_app(&mut doc, app)?;
            for s in settings {
                match s.value() {
                    Some(v) => {
                        table.insert(s.key(), Item::Value(v));
                    }
                    None => {
                        table.remove(s.key());
                    }
                }
            }
        }
        Edit::Block(cidr) => {
            let list = blocklist(&mut doc)?;
            if position(list, |s| s.parse::<Cidr>().ok() == Some(*cidr)).is_some() {
                return Err(EditError::PeerAlreadyPresent(format!(
                    "{cidr} is already in the blocklist"
                )));
            }
            list.push(cidr.to_string());
        }
        Edit::Unblock(cidr) => {
            let list = blocklist(&mut doc)?;
            let i = position(list, |s| s.parse::<Cidr>().ok() == Some(*cidr)).ok_or_else(|| {
                EditError::PeerNotFound(format!("{cidr} is not in the configured blocklist"))
            })?;
            list.remove(i);
        }
    }
    Ok(doc.to_string())
}

/// The table of app `name`, wherever and however `apps` is written.
fn find_app<'a>(doc: &'a mut DocumentMut, name: &str) -> Result<&'a mut dyn TableLike, EditError> {
    let not_found = || EditError::PeerNoSuchApp(name.to_string());
    let is_named = |t: &dyn TableLike| t.get("name").and_then(Item::as_str) == Some(name);
    match doc.get_mut("apps").ok_or_else(not_found)? {
        Item::ArrayOfTables(apps) => apps
            .iter_mut()
            .find(|t| is_named(*t))
            .map(|t| t as &mut dyn TableLike)
            .ok_or_else(not_found),
        Item::Value(Value::Array(apps)) => apps
            .iter_mut()
            .filter_map(Value::as_inline_table_mut)
            .find(|t| is_named(*t))
            .map(|t| t as &mut dyn TableLike)
            .ok_or_else(not_found),
        _ => Err(not_found()),
    }
}

/// The array under `key` of `table`, created empty when missing.
fn list_of<'a>(table: &'a mut dyn TableLike, key: &str) -> Result<&'a mut Array, EditError> {
    if table.get(key).is_none() {
        table.insert(key, Item::Value(Value::Array(Array::new())));
    }
    table
        .get_mut(key)
        .and_then(Item::as_array_mut)
        .ok_or_else(|| EditError::FileInvalid(format!("`{key}` is not a list")))
}

fn blocklist(doc: &mut DocumentMut) -> Result<&mut Array, EditError> {
    let xdp = doc
        .entry("xdp")
        .or_insert_with(toml_edit::table)
        .as_table_like_mut()
        .ok_or_else(|| EditError::FileInvalid("`xdp` is not a table".into()))?;
    list_of(xdp, "blocklist")
}

/// Index of the first string element matching `pred`.
fn position(list: &Array, pred: impl Fn(&str) -> bool) -> Option<usize> {
    list.iter().position(|v| v.as_str().is_some_and(&pred))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::path::Path;

    const BASE: &str = "# the operator's comment\n[server]\nhttp = [\"127.0.0.1:80\"]\n\n[[apps]]\nname = \"shop\"   # keep me\ndomains = [\"shop.test\"]\nbackends = [\"127.0.0.1:1\"]\n\n[[apps]]\nname = \"blog\"\ndomains = [\"blog.test\"]\nbackends = [\"127.0.0.1:2\", \"127.0.0.1:3\"]\n";

    #[test]
    fn app_edits_of_a_list_change_only_that_app_in_place() {
        let apps = Config::parse(Path::new("t.toml"), BASE)
            .expect("valid")
            .apps;
        let more: Vec<_> = apps
            .iter()
            .cloned()
            .chain((0..3).map(|i| {
                let mut a = apps[0].clone();
                a.name = format!("app{i}");
                a.domains = vec![format!("app{i}.test")];
                a
            }))
            .collect();
        let next = apply_to_apps(
            &more,
            &Edit::AddDomain {
                app: "blog".into(),
                domain: "News.Blog.test".into(),
            },
        )
        .expect("edit");
        assert_eq!(next.len(), more.len());
        assert_eq!(next[1].name, "blog");
        assert_eq!(next[1].domains, ["blog.test", "news.blog.test"]);
        assert_eq!(next[1].backends, more[1].backends);
        for i in [0, 2, 3, 4] {
            assert_eq!(next[i], more[i], "app {i} untouched");
        }
        let missing = Edit::AddDomain {
            app: "nope".into(),
            domain: "x.test".into(),
        };
        assert!(matches!(
            apply_to_apps(&more, &missing),
            Err(EditError::PeerNoSuchApp(_))
        ));
        let again = Edit::AddDomain {
            app: "blog".into(),
            domain: "blog.test".into(),
        };
        assert!(matches!(
            apply_to_apps(&next, &again),
            Err(EditError::PeerAlreadyPresent(_))
        ));
        assert_eq!(Edit::Block("10.0.0.0/8".parse().expect("cidr")).app(), None);
    }

    fn edited(edit: Edit) -> Config {
        let text = apply(BASE, &edit).expect("edit");
        assert!(text.contains("# the operator's comment"), "{text}");
        assert!(text.contains("# keep me"), "{text}");
        Config::parse(Path::new("t.toml"), &text).expect("valid")
    }

    #[test]
    fn adds_and_removes_domains_keeping_comments() {
        let c = edited(Edit::AddDomain {
            app: "blog".into(),
            domain: "WWW.Blog.test.".into(),
        });
        assert_eq!(c.apps[1].domains, ["blog.test", "www.blog.test"]);
        let c = edited(Edit::RemoveDomain {
            app: "shop".into(),
            domain: "shop.TEST".into(),
        });
        assert!(c.apps[0].domains.is_empty());
    }

    #[test]
    fn adds_and_removes_backends() {
        let c = edited(Edit::AddBackend {
            app: "shop".into(),
            backend: "127.0.0.1:9".parse().expect("addr"),
        });
        assert_eq!(c.apps[0].backends.len(), 2);
        let c = edited(Edit::RemoveBackend {
            app: "blog".into(),
            backend: "127.0.0.1:2".parse().expect("addr"),
        });
        assert_eq!(c.apps[1].backends, ["127.0.0.1:3".parse().expect("addr")]);
    }

    #[test]
    fn refuses_unknown_apps_duplicates_and_missing_entries() {
        let add = |app: &str, d: &str| {
            apply(
                BASE,
                &Edit::AddDomain {
                    app: app.into(),
                    domain: d.into(),
                },
            )
        };
        assert_eq!(
            add("nope", "x.test"),
            Err(EditError::PeerNoSuchApp("nope".into()))
        );
        assert!(matches!(
            add("shop", "Shop.test"),
            Err(EditError::PeerAlreadyPresent(_))
        ));
        assert!(matches!(add("shop", "a b"), Err(EditError::PeerInvalid(_))));
        assert!(matches!(
            apply(
                BASE,
                &Edit::RemoveBackend {
                    app: "shop".into(),
                    backend: "127.0.0.1:7".parse().expect("addr")
                }
            ),
            Err(EditError::PeerNotFound(_))
        ));
        assert!(matches!(
            apply(
                "apps = 3\n[[x]\n",
                &Edit::Block("10.0.0.0/8".parse().expect("cidr"))
            ),
            Err(EditError::FileInvalid(_))
        ));
    }

    #[test]
    fn sets_and_unsets_settings() {
        let c = edited(Edit::Settings {
            app: "shop".into(),
            settings: vec![
                Setting::ForceHttps(true),
                Setting::CanonicalDomain(Some("shop.test".into())),
                Setting::MaxConnsPerBackend(7),
                Setting::HstsMaxAge(60),
            ],
        });
        assert!(c.apps[0].force_https);
        assert_eq!(c.apps[0].canonical_domain.as_deref(), Some("shop.test"));
        assert_eq!(c.apps[0].max_conns_per_backend, 7);
        assert_eq!(c.apps[0].hsts_max_age, 60);
        let text = apply(
            &apply(
                BASE,
                &Edit::Settings {
                    app: "shop".into(),
                    settings: vec![Setting::CanonicalDomain(Some("shop.test".into()))],
                },
            )
            .expect("set"),
            &Edit::Settings {
                app: "shop".into(),
                settings: vec![Setting::CanonicalDomain(None)],
            },
        )
        .expect("unset");
        assert!(!text.contains("canonical_domain"), "{text}");
    }

    #[test]
    fn inline_apps_are_edited_too() {
        let text =
            "apps = [{ name = \"a\", domains = [\"a.test\"], backends = [\"127.0.0.1:1\"] }]\n";
        let out = apply(
            text,
            &Edit::AddDomain {
                app: "a".into(),
                domain: "b.test".into(),
            },
        )
        .expect("edit");
        let c = Config::parse(Path::new("t.toml"), &out).expect("valid");
        assert_eq!(c.apps[0].domains, ["a.test", "b.test"]);
    }

    #[test]
    fn blocklist_is_created_added_to_and_removed_from() {
        let cidr: Cidr = "192.0.2.0/24".parse().expect("cidr");
        let text = apply(BASE, &Edit::Block(cidr)).expect("block");
        let c = Config::parse(Path::new("t.toml"), &text).expect("valid");
        assert_eq!(c.xdp.blocklist, [cidr]);
        assert!(matches!(
            apply(&text, &Edit::Block(cidr)),
            Err(EditError::PeerAlreadyPresent(_))
        ));
        let text = apply(&text, &Edit::Unblock(cidr)).expect("unblock");
        let c = Config::parse(Path::new("t.toml"), &text).expect("valid");
        assert!(c.xdp.blocklist.is_empty());
    }
}
