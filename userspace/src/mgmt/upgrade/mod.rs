//! Zero-downtime binary upgrade: the running process starts the binary on
//! disk and hands it, over a unix socket pair (`SCM_RIGHTS`), every
//! listening socket (HTTP, HTTPS, admin), the XDP maps and links (taken
//! over, never detached: the program id stays), and the state that is in
//! no file (quarantines, drains, the random sticky-cookie key). The ACME
//! state is saved first and the old process stops ordering.
//!
//! ```text
//!  old: SIGUSR2 / POST /upgrade
//!   ├─ share listeners (reactor mailboxes), admin, XDP; save ACME and hold it
//!   ├─ spawn <binary> with PORTIER_UPGRADE_FD, ambient capabilities
//!   ├─ send Handoff + descriptors ──────────────► new: load config, take the
//!   │                                                  sockets instead of binding,
//!   │                                                  adopt XDP, carry the state,
//!   │                                                  start reactors, admin
//!   │  ◄──────────────────────────── Ready{pid} ──┘  (or Failed{reason} / exit)
//!   ├─ Ready: MAINPID=new to systemd; stop accepting; HTTP/1.1 connections
//!   │  close after their next response, HTTP/2 get GOAWAY, tunnels stay
//!   │  until they end or `[server] upgrade_drain_ms`; then exit
//!   └─ Failed / timeout: kill the new one, release ACME, keep serving
//! ```
//!
//! Nothing is closed before the new process said it serves, so a binary
//! that does not start (bad config, missing library, crash) costs nothing.

pub mod fdpass;
pub mod handoff;

use std::ffi::OsString;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::control::Control;
use crate::mgmt::admin::Passed as AdminPassed;
use crate::mgmt::manager::Manager;
use crate::reactor::Inherited;
use crate::snapshot::Snapshot;
use handoff::{BackendState, Handoff, PassedAdmin, PassedListener, PassedXdp, Reply};

/// Names the descriptor of the handoff socket in the new process.
pub const ENV_FD: &str = "PORTIER_UPGRADE_FD";

/// A finished upgrade, as `POST /upgrade` reports it.
#[derive(Debug, Clone)]
pub struct Upgraded {
    pub old_pid: u32,
    pub new_pid: u32,
    pub xdp_program_id: Option<u32>,
}

/// Who asked: the admin API waits for the outcome, a signal does not.
pub type Request = Option<oneshot::Sender<Result<Upgraded, String>>>;

/// Where upgrade requests go (the main loop holds the other end).
pub type Door = mpsc::UnboundedSender<Request>;

/// The binary to start: the one this process runs, by the path it was
/// started from. After a package upgrade that path names the new file
/// (the kernel calls the old one "… (deleted)").
pub fn own_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("finding this binary")?;
    let text = exe.to_string_lossy();
    Ok(match text.strip_suffix(" (deleted)") {
        Some(p) => PathBuf::from(p),
        None => exe,
    })
}

/// The old side's fixed facts, gathered at start.
pub struct Upgrader {
    pub binary: PathBuf,
    pub args: Vec<OsString>,
    pub admin: AdminPassed,
    /// `NOTIFY_SOCKET` as systemd gave it (the new process notifies once main).
    pub notify_socket: Option<OsString>,
    /// Capabilities the new process needs as ambient ones (running as
    /// `[server] user`); empty when running as root.
    pub ambient: Vec<u32>,
    /// How long the new process may take to say it serves.
    pub timeout: Duration,
    /// `[server] pid_file`: ours again when the new process did not make it.
    pub pid_file: Option<PathBuf>,
}

impl Upgrader {
    /// Start the new binary and hand everything over. `Ok`: the new process
    /// serves and this one must stop accepting now. `Err`: this one keeps
    /// serving, nothing changed (the reason is for the operator).
    pub async fn upgrade(&self, manager: &Arc<Mutex<Manager>>) -> Result<Upgraded, String> {
        let control = manager.lock().await.control.clone();
        // Each reactor answers on its next turn; wait off the runtime.
        let shared = {
            let control = control.clone();
            tokio::task::spawn_blocking(move || control.share_listeners(Duration::from_secs(5)))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?
        };
        let mut fds: Vec<OwnedFd> = Vec::new();
        let mut listeners = Vec::new();
        for l in shared {
            listeners.push(PassedListener {
                addr: l.addr,
                secure: l.secure,
                fd: fds.len(),
            });
            fds.push(l.fd);
        }
        let mut admin = Vec::new();
        for (addr, fd) in &self.admin.tcp {
            admin.push(PassedAdmin::Tcp {
                addr: *addr,
                fd: fds.len(),
            });
            fds.push(fd.try_clone().map_err(|e| e.to_string())?);
        }
        for (path, fd) in &self.admin.unix {
            admin.push(PassedAdmin::Unix {
                path: path.clone(),
                fd: fds.len(),
            });
            fds.push(fd.try_clone().map_err(|e| e.to_string())?);
        }
        let (xdp, acme) = {
            let m = manager.lock().await;
            let xdp = match &m.xdp {
                Some(x) => Some(x.handoff(&mut fds).map_err(|e| format!("{e:#}"))?),
                None => None,
            };
            (xdp, m.acme.clone())
        };
        let message = Handoff {
            version: handoff::VERSION,
            old_pid: std::process::id(),
            listeners,
            admin,
            admin_token: self.admin.token.clone(),
            xdp,
            backends: carried(&control.snapshot.load(), control.now_ms(Instant::now())),
            sticky_key: crate::sticky::process_key().to_vec(),
        };
        let bytes = serde_json::to_vec(&message).map_err(|e| e.to_string())?;
        // From here until the outcome, this process orders no certificate
        // (the new one reads the saved state and carries on).
        if let Some(a) = &acme {
            a.save();
            a.hold(true);
        }
        let outcome = self.run_child(bytes, fds).await;
        if outcome.is_err() {
            if let Some(a) = &acme {
                a.hold(false);
            }
            if let Some(p) = &self.pid_file {
                write_pid_file(p);
            }
        }
        let (new_pid, program_id) = outcome?;
        Ok(Upgraded {
            old_pid: std::process::id(),
            new_pid,
            xdp_program_id: program_id,
        })
    }

    /// Spawn, send, wait for the reply; on any failure the child is killed.
    async fn run_child(
        &self,
        message: Vec<u8>,
        fds: Vec<OwnedFd>,
    ) -> Result<(u32, Option<u32>), String> {
        let (ours, theirs) = UnixStream::pair().map_err(|e| e.to_string())?;
        let mut command = std::process::Command::new(&self.binary);
        command
            .args(&self.args)
            .env(ENV_FD, theirs.as_raw_fd().to_string());
        match &self.notify_socket {
            Some(v) => command.env("NOTIFY_SOCKET", v),
            None => command.env_remove("NOTIFY_SOCKET"),
        };
        let child_fd = theirs.as_raw_fd();
        let ambient = self.ambient.clone();
        // SAFETY: only async-signal-safe calls (fcntl, capget/capset, prctl)
        // between fork and exec.
        unsafe {
            command.pre_exec(move || {
                inherit_fd(child_fd)?;
                crate::mgmt::privileges::raise_ambient(&ambient)
            });
        }
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.binary.display()))?;
        drop(theirs); // so the child's exit reads as EOF here
        let pid = child.id();
        tracing::info!(pid, binary = %self.binary.display(), "upgrade: new process started");
        let timeout = self.timeout;
        let result = tokio::task::spawn_blocking(move || -> Result<Reply, String> {
            let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
            fdpass::send(&ours, &message, &raw)
                .map_err(|e| format!("handing over to the new process: {e}"))?;
            drop(fds);
            ours.set_read_timeout(Some(timeout))
                .map_err(|e| e.to_string())?;
            let (reply, _) = fdpass::recv(&ours).map_err(|e| match e.kind() {
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                    format!("the new process did not report ready within {timeout:?}")
                }
                _ => format!("the new process exited before it served ({e})"),
            })?;
            serde_json::from_slice(&reply).map_err(|e| format!("a garbled reply: {e}"))
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r);
        match result {
            Ok(Reply::Ready {
                pid: ready,
                xdp_program_id,
            }) if ready == pid => {
                // Never waited for: it outlives us (reparented on our exit).
                std::mem::forget(child);
                Ok((pid, xdp_program_id))
            }
            Ok(Reply::Ready { pid: other, .. }) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(format!("ready reported by pid {other}, not {pid}"))
            }
            Ok(Reply::Failed { reason }) => {
                let _ = child.wait();
                Err(format!("the new process refused to start: {reason}"))
            }
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(e)
            }
        }
    }
}

/// Write our pid (atomically: a reader never sees half of it).
pub fn write_pid_file(path: &std::path::Path) {
    let tmp = path.with_extension("pid.tmp");
    let result = std::fs::write(&tmp, format!("{}\n", std::process::id()))
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = result {
        eprintln!("portier: cannot write the pid file {}: {e}", path.display());
    }
}

/// Clear close-on-exec on the handoff descriptor (between fork and exec).
fn inherit_fd(fd: RawFd) -> std::io::Result<()> {
    // SAFETY: fcntl on a descriptor we own; async-signal-safe.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Every app's backend health, as of `now_ms`.
fn carried(snapshot: &Snapshot, now_ms: u64) -> Vec<BackendState> {
    let mut out = Vec::new();
    for app in &snapshot.apps {
        for (addr, c) in app.balancer.carried(now_ms) {
            out.push(BackendState {
                app: app.name.clone(),
                addr,
                draining: c.draining,
                probe_in_ms: c.probe_in_ms,
                backoff_ms: c.backoff_ms,
                back_for_ms: c.back_for_ms,
            });
        }
    }
    out
}

/// The new side: what the old process handed over, taken piece by piece
/// while this one starts, then answered with `ready` or `fail`.
pub struct Takeover {
    channel: UnixStream,
    pub old_pid: u32,
    pub listeners: Inherited,
    pub admin: AdminPassed,
    pub xdp: Option<PassedXdp>,
    pub backends: Vec<BackendState>,
    fds: Vec<Option<OwnedFd>>,
    pub sticky_key: Option<[u8; 32]>,
}

impl Takeover {
    /// The handoff, when this process was started by an upgrade
    /// (`PORTIER_UPGRADE_FD` set; the variable is removed).
    ///
    /// # Safety
    /// Changes the environment: call while the process has one thread.
    pub unsafe fn from_env() -> Option<anyhow::Result<Takeover>> {
        let value = std::env::var(ENV_FD).ok()?;
        // SAFETY: the caller guarantees no other thread reads the environment.
        unsafe { std::env::remove_var(ENV_FD) };
        Some(Self::receive(&value))
    }

    fn receive(value: &str) -> anyhow::Result<Takeover> {
        use std::os::fd::FromRawFd;
        let fd: RawFd = value
            .parse()
            .map_err(|_| anyhow!("{ENV_FD}={value:?} is not a descriptor"))?;
        // SAFETY: the old process left this descriptor open for us; the
        // check below makes sure it is a socket before we own it.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
            bail!("{ENV_FD}={fd}: no such descriptor");
        }
        let channel = unsafe { UnixStream::from_raw_fd(fd) };
        // Close-on-exec again: the commands this process runs must not get it.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        channel.set_read_timeout(Some(Duration::from_secs(30)))?;
        let (bytes, fds) = fdpass::recv(&channel).context("reading the handoff")?;
        let message: Handoff = match serde_json::from_slice(&bytes) {
            Ok(m) => m,
            Err(e) => {
                let t = Takeover::empty(channel);
                t.fail(&format!("cannot read the handoff: {e}"));
                bail!("cannot read the handoff: {e}");
            }
        };
        if message.version != handoff::VERSION {
            let reason = format!(
                "handoff version {} from the old process, this binary speaks {}",
                message.version,
                handoff::VERSION
            );
            Takeover::empty(channel).fail(&reason);
            bail!("{reason}");
        }
        let mut fds: Vec<Option<OwnedFd>> = fds.into_iter().map(Some).collect();
        let mut take = |i: usize| -> anyhow::Result<OwnedFd> {
            fds.get_mut(i)
                .and_then(Option::take)
                .ok_or_else(|| anyhow!("the handoff names descriptor {i}, which did not come"))
        };
        let mut listeners = Inherited::default();
        for l in &message.listeners {
            listeners.add(l.addr, l.secure, take(l.fd)?);
        }
        let mut admin = AdminPassed {
            token: message.admin_token.clone(),
            ..AdminPassed::default()
        };
        for a in &message.admin {
            match a {
                PassedAdmin::Tcp { addr, fd } => admin.tcp.push((*addr, take(*fd)?)),
                PassedAdmin::Unix { path, fd } => admin.unix.push((path.clone(), take(*fd)?)),
            }
        }
        let sticky_key = <[u8; 32]>::try_from(message.sticky_key.as_slice()).ok();
        Ok(Takeover {
            channel,
            old_pid: message.old_pid,
            listeners,
            admin,
            xdp: message.xdp,
            backends: message.backends,
            fds,
            sticky_key,
        })
    }

    fn empty(channel: UnixStream) -> Takeover {
        Takeover {
            channel,
            old_pid: 0,
            listeners: Inherited::default(),
            admin: AdminPassed::default(),
            xdp: None,
            backends: Vec::new(),
            fds: Vec::new(),
            sticky_key: None,
        }
    }

    /// A descriptor that came with the handoff (each once).
    pub fn take_fd(&mut self, index: usize) -> anyhow::Result<OwnedFd> {
        self.fds
            .get_mut(index)
            .and_then(Option::take)
            .ok_or_else(|| anyhow!("the handoff names descriptor {index}, which did not come"))
    }

    /// Put the backends' health into the freshly built snapshot.
    pub fn carry_backends(&self, control: &Control) {
        let snapshot = control.snapshot.load();
        let now_ms = control.now_ms(Instant::now());
        for b in &self.backends {
            let Some(app) = snapshot.apps.iter().find(|a| a.name == b.app) else {
                continue;
            };
            let c = crate::sched::balance::Carried {
                draining: b.draining,
                probe_in_ms: b.probe_in_ms,
                backoff_ms: b.backoff_ms,
                back_for_ms: b.back_for_ms,
            };
            app.balancer.carry(b.addr, &c, now_ms);
        }
    }

    /// Tell the old process this one serves (it stops accepting).
    pub fn ready(self, xdp_program_id: Option<u32>) -> anyhow::Result<()> {
        let reply = Reply::Ready {
            pid: std::process::id(),
            xdp_program_id,
        };
        fdpass::send(&self.channel, &serde_json::to_vec(&reply)?, &[])
            .context("telling the old process we serve")
    }

    /// Tell the old process this one cannot start (it keeps serving).
    pub fn fail(self, reason: &str) {
        let reply = Reply::Failed {
            reason: reason.to_string(),
        };
        if let Ok(bytes) = serde_json::to_vec(&reply) {
            let _ = fdpass::send(&self.channel, &bytes, &[]);
        }
    }
}
