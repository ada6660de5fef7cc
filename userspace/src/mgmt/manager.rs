//! The management side's owner of the running configuration: reload from
//! the file (SIGHUP, admin API), apply an edited configuration (admin API:
//! validated, written back atomically, then swapped in), and the XDP
//! runtime whose maps follow the configuration. `swap_in` is the one place
//! a new snapshot is published; runtime state that is not in the file
//! (backends drained through the admin API) is carried over there.
//!
//! Only the management runtime touches it (behind a tokio mutex); reactors
//! see its effects through the snapshot `ArcSwap`, never through a lock.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;

use crate::config::Config;
use crate::control::Control;
use crate::mgmt::bpf::XdpRuntime;
use crate::snapshot::Snapshot;

pub struct Manager {
    pub path: PathBuf,
    pub config: Config,
    pub control: Arc<Control>,
    pub xdp: Option<XdpRuntime>,
    /// The ACME service, when `[acme]` is on (set at start).
    pub acme: Option<crate::mgmt::acme::Acme>,
    /// In region mode, where the apps come from and go to (set at start).
    pub region: Option<crate::mgmt::region::Region>,
    pub reloads_ok: AtomicU64,
    pub reloads_failed: AtomicU64,
    /// Where `POST /upgrade` asks for a binary upgrade (set at start).
    pub upgrades: Option<crate::mgmt::upgrade::Door>,
}

impl Manager {
    pub fn new(
        path: PathBuf,
        config: Config,
        control: Arc<Control>,
        xdp: Option<XdpRuntime>,
    ) -> Manager {
        Manager {
            path,
            config,
            control,
            xdp,
            acme: None,
            region: None,
            reloads_ok: AtomicU64::new(0),
            reloads_failed: AtomicU64::new(0),
            upgrades: None,
        }
    }

    /// Load the file again and swap it in (in region mode, with the
    /// region's apps). On error nothing changes.
    pub fn reload(&mut self) -> anyhow::Result<()> {
        let region_apps = self.region.as_ref().map(|r| r.apps());
        let result = Config::load(&self.path)
            .map_err(anyhow::Error::from)
            .and_then(|new| match region_apps {
                Some(apps) => new.with_apps(apps).map_err(|e| anyhow::anyhow!("{e}")),
                None => Ok(new),
            })
            .and_then(|new| self.swap_in(new));
        self.count(&result);
        result
    }

    /// Validate `new`, write it to the file (temp + fsync + rename, mode
    /// kept), then swap it in: a restart keeps what the admin API changed.
    pub fn apply(&mut self, new: Config, text: &str) -> anyhow::Result<()> {
        let result = Config::parse(&self.path, text)
            .map_err(anyhow::Error::from)
            .and_then(|_| write_atomically(&self.path, text.as_bytes()))
            .and_then(|()| self.swap_in(new));
        self.count(&result);
        result
    }

    /// The region's apps changed (or were read again): validated with this
    /// node's file, swapped in like a reload. On error nothing changes.
    pub fn region_apps(&mut self, apps: Vec<crate::config::AppSettings>) -> anyhow::Result<()> {
        if apps == self.config.apps {
            return Ok(());
        }
        let new = self
            .config
            .with_apps(apps)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        self.swap_in(new)
    }

    fn count(&self, result: &anyhow::Result<()>) {
        match result {
            Ok(()) => self.reloads_ok.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.reloads_failed.fetch_add(1, Ordering::Relaxed),
        };
    }

    /// Apps, domains, backends, limits, listeners and the XDP policy change
    /// live; thread count and TLS settings need a restart (said in the log).
    fn swap_in(&mut self, new: Config) -> anyhow::Result<()> {
        if new.server.threads != self.config.server.threads {
            tracing::warn!("a new thread count takes effect at the next restart");
        }
        if new.acme != self.config.acme {
            tracing::warn!(
                "[acme] changes take effect at the next restart (domains are followed live)"
            );
        }
        // New listeners open on every reactor (all bound first: a busy port
        // refuses the whole reload); removed ones close; the others stay.
        self.control
            .change_listeners(
                (&self.config.server.http, &self.config.server.https),
                (&new.server.http, &new.server.https),
            )
            .context("changing listeners")?;
        if let Some(rt) = self.xdp.as_mut() {
            rt.update_policy(&new.xdp)
                .context("updating the XDP maps")?;
        }
        let previous = self.control.snapshot.load_full();
        let snapshot = Snapshot::rebuild(&new, Some(&previous));
        carry_over_draining(&previous, &snapshot);
        self.control.snapshot.store(Arc::new(snapshot));
        self.config = new;
        Ok(())
    }
}

/// Draining is runtime state, not in the file, and a rebuilt balancer
/// starts with every backend in rotation: drain again in `next` every
/// backend that was draining in `previous` and still exists (same app
/// name, same address). Done before `next` is published, so no reactor
/// ever sees a drained backend back in rotation. The one place snapshots
/// are swapped in calls it: SIGHUP, admin reload and admin edits alike.
fn carry_over_draining(previous: &Snapshot, next: &Snapshot) {
    let by_name: std::collections::HashMap<&str, &crate::snapshot::App> =
        previous.apps.iter().map(|o| (o.name.as_str(), o)).collect();
    for app in &next.apps {
        let Some(old) = by_name.get(app.name.as_str()) else {
            continue;
        };
        if Arc::ptr_eq(&old.balancer, &app.balancer) {
            continue; // kept as is, drain state included
        }
        for b in old.balancer.backends().iter().filter(|b| b.is_draining()) {
            if app.balancer.set_draining(b.addr, true) {
                tracing::info!(app = app.name, backend = %b.addr, "still draining after the reload");
            }
        }
    }
}

/// Replace `path` with `bytes` so that a reader sees the old or the new file,
/// never half of one, even across a crash.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("config");
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let mode = std::fs::metadata(path)
        .map(|m| m.permissions().mode())
        .unwrap_or(0o600);
    {
        let mut f =
            std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(apps: &[(&str, &[&str])], previous: Option<&Snapshot>) -> Snapshot {
        let mut text = String::new();
        for (i, (name, backends)) in apps.iter().enumerate() {
            let list: Vec<String> = backends.iter().map(|b| format!("\"{b}\"")).collect();
            text.push_str(&format!(
                "[[apps]]\nname = \"{name}\"\ndomains = [\"{name}{i}.test\"]\nbackends = [{}]\n",
                list.join(", ")
            ));
        }
        let config = Config::parse(Path::new("t.toml"), &text).expect("config");
        Snapshot::rebuild(&config, previous)
    }

    fn draining(s: &Snapshot, app: &str) -> Vec<String> {
        let a = s.apps.iter().find(|a| a.name == app).expect("app");
        a.balancer
            .backends()
            .iter()
            .filter(|b| b.is_draining())
            .map(|b| b.addr.to_string())
            .collect()
    }

    #[test]
    fn draining_is_carried_over_to_rebuilt_balancers() {
        let (b1, b2, b3) = ("127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3");
        let old = snapshot(&[("a", &[b1, b2]), ("b", &[b1, b2]), ("c", &[b1])], None);
        for app in &old.apps {
            app.balancer.set_draining(b1.parse().expect("addr"), true);
        }
        // a: rebuilt with a new backend; b: kept; c: rebuilt without the
        // drained backend; d: new (same address, other app).
        let new = snapshot(
            &[
                ("a", &[b1, b2, b3]),
                ("b", &[b1, b2]),
                ("c", &[b2]),
                ("d", &[b1]),
            ],
            Some(&old),
        );
        assert!(
            draining(&new, "a").is_empty(),
            "a new balancer starts undrained"
        );
        carry_over_draining(&old, &new);
        assert_eq!(draining(&new, "a"), [b1]);
        assert_eq!(draining(&new, "b"), [b1]);
        assert!(draining(&new, "c").is_empty());
        assert!(draining(&new, "d").is_empty());
    }

    #[test]
    fn atomic_write_replaces_and_keeps_the_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("portier-aw-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("c.toml");
        std::fs::write(&p, "old").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        write_atomically(&p, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "new");
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o640
        );
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            1,
            "no temp file left"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
