//! `portier`: parse arguments, load the config, start the parts, wait for a
//! signal, stop cleanly.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use portier::config::{Cidr, Config};
use portier::mgmt::bpf::{self, MapSet};
use portier::mgmt::manager::Manager;

#[derive(Parser)]
#[command(
    name = "portier",
    version,
    about = "Edge load balancer for PaaS front nodes"
)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    /// Configuration file.
    #[arg(long, short, default_value = "/etc/portier/portier.toml")]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a configuration file and exit (0 = valid).
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Write a self-signed certificate + key (one PEM) for the given names,
    /// valid from an hour ago for 90 days at most.
    SelfSigned {
        /// Names the certificate covers (`*.example.com` allowed).
        #[arg(long, required = true, value_delimiter = ',')]
        names: Vec<String>,
        #[arg(long)]
        out: PathBuf,
        /// Validity in days (1 to 90; more is capped at 90).
        #[arg(long, default_value_t = portier::tls::SELF_SIGNED_MAX_DAYS,
              value_parser = clap::value_parser!(u32).range(1..))]
        days: u32,
    },
    /// Operate on the XDP program of a running portier (through its pinned maps).
    Xdp {
        #[command(subcommand)]
        command: XdpCommand,
    },
    /// Upgrade the running portier to the binary on disk without closing a
    /// listener or a connection (asks its admin API, else signals the pid
    /// in `[server] pid_file`).
    Upgrade {
        #[arg(long, short, default_value = "/etc/portier/portier.toml")]
        config: PathBuf,
    },
    /// Region mode: seed the region's apps, read them back, make a region key.
    Region {
        #[command(subcommand)]
        command: RegionCommand,
    },
}

#[derive(Subcommand)]
enum RegionCommand {
    /// Make the region's apps exactly the `[[apps]]` of FILE (which also has `[region]`).
    Import {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Print the region's apps as `[[apps]]` TOML (FILE has `[region]`).
    Export {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Write a new region key (32 random bytes, base64, mode 0600).
    Keygen {
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum XdpCommand {
    /// Packets and bytes per verdict reason.
    Stats {
        #[arg(long, default_value = "/sys/fs/bpf/portier")]
        pin_dir: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Drop all traffic from a prefix, live.
    Block {
        cidr: Cidr,
        #[arg(long, default_value = "/sys/fs/bpf/portier")]
        pin_dir: PathBuf,
    },
    /// Remove a prefix from the blocklist, live.
    Unblock {
        cidr: Cidr,
        #[arg(long, default_value = "/sys/fs/bpf/portier")]
        pin_dir: PathBuf,
    },
    /// List the blocked prefixes.
    Blocklist {
        #[arg(long, default_value = "/sys/fs/bpf/portier")]
        pin_dir: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    portier::init_logging();
    let cli = Cli::parse();
    let result = match cli.command {
        None => run(cli.config),
        Some(Command::Check { config }) => check(config),
        Some(Command::Upgrade { config }) => upgrade(config),
        Some(Command::Xdp { command }) => xdp(command),
        Some(Command::Region { command }) => region_command(command),
        Some(Command::SelfSigned { names, out, days }) => self_signed(&names, &out, days),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("portier: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn region_command(command: RegionCommand) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match command {
        RegionCommand::Import { config } => {
            let text = std::fs::read_to_string(&config)
                .with_context(|| format!("reading {}", config.display()))?;
            let seed = Config::parse_seed(&config, &text)?;
            let settings = seed
                .region
                .as_ref()
                .context("the file has no [region] section (endpoints, prefix)")?;
            let revision = runtime.block_on(portier::mgmt::region::import(settings, &seed.apps))?;
            println!(
                "imported {} app(s) into {} at revision {revision}",
                seed.apps.len(),
                settings.prefix
            );
        }
        RegionCommand::Export { config } => {
            let node = Config::load(&config)?;
            let settings = node
                .region
                .as_ref()
                .context("the file has no [region] section (endpoints, prefix)")?;
            let apps = runtime.block_on(portier::mgmt::region::export(settings))?;
            #[derive(serde::Serialize)]
            struct Apps {
                apps: Vec<portier::config::AppSettings>,
            }
            print!("{}", toml::to_string(&Apps { apps })?);
        }
        RegionCommand::Keygen { out } => {
            let key = portier::mgmt::region::seal::RegionKey::generate()
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            portier::fsutil::write_private(&out, format!("{key}\n").as_bytes())
                .with_context(|| format!("writing {}", out.display()))?;
            println!(
                "wrote {} (mode 0600): copy it to every node of the region",
                out.display()
            );
        }
    }
    Ok(())
}

/// `portier upgrade`: through the admin API when it is on (the answer says
/// whether the new process serves), else SIGUSR2 to the pid file's process
/// and wait for the pid file to name the new one.
fn upgrade(path: PathBuf) -> anyhow::Result<()> {
    let config = Config::load(&path)?;
    if let Some(admin) = config.admin.as_ref().filter(|a| a.is_enabled()) {
        let token = portier::mgmt::admin::read_token(&admin.token_file)?;
        let request = format!(
            "POST /upgrade HTTP/1.1\r\nHost: portier\r\nAuthorization: Bearer {token}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        let timeout = std::time::Duration::from_millis(config.server.upgrade_timeout_ms + 10_000);
        let answer = match (&admin.unix_socket, admin.listen.first()) {
            (Some(sock), _) => {
                let s = std::os::unix::net::UnixStream::connect(sock)
                    .with_context(|| format!("connecting to {}", sock.display()))?;
                s.set_read_timeout(Some(timeout))?;
                exchange(s, &request)?
            }
            (None, Some(addr)) => {
                let mut addr = *addr;
                if addr.ip().is_unspecified() {
                    addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
                }
                let s = std::net::TcpStream::connect(addr)
                    .with_context(|| format!("connecting to the admin API on {addr}"))?;
                s.set_read_timeout(Some(timeout))?;
                exchange(s, &request)?
            }
            (None, None) => anyhow::bail!("[admin] has neither listen nor unix_socket"),
        };
        let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
        let ok = head.starts_with("HTTP/1.1 200");
        println!("{}", body.trim());
        if !ok {
            anyhow::bail!(
                "upgrade failed: {}",
                head.lines().next().unwrap_or("no answer")
            );
        }
        return Ok(());
    }
    let pid_file = config.server.pid_file.as_ref().context(
        "portier upgrade needs the admin API ([admin]) or a pid file ([server] pid_file)",
    )?;
    let read_pid = || -> Option<i32> {
        std::fs::read_to_string(pid_file)
            .ok()
            .and_then(|t| t.trim().parse().ok())
    };
    let old = read_pid().with_context(|| format!("no pid in {}", pid_file.display()))?;
    // SAFETY: kill with a pid and a signal number.
    if unsafe { libc::kill(old, libc::SIGUSR2) } != 0 {
        anyhow::bail!("signalling pid {old}: {}", std::io::Error::last_os_error());
    }
    let deadline = std::time::Instant::now()
        + std::time::Duration::from_millis(config.server.upgrade_timeout_ms + 5_000);
    while std::time::Instant::now() < deadline {
        if let Some(new) = read_pid().filter(|&p| p != old) {
            println!("{{\"old_pid\": {old}, \"new_pid\": {new}}}");
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    anyhow::bail!("pid {old} is still the one serving: the upgrade failed (its log says why)")
}

/// One request on a fresh connection, the whole answer back.
fn exchange<S: std::io::Read + std::io::Write>(mut s: S, request: &str) -> anyhow::Result<String> {
    s.write_all(request.as_bytes())?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)
        .context("reading the admin API's answer")?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

fn check(path: PathBuf) -> anyhow::Result<()> {
    Config::load(&path)?;
    println!("{}: ok", path.display());
    Ok(())
}

fn run(path: PathBuf) -> anyhow::Result<()> {
    // SAFETY: nothing else runs yet (no thread has been started).
    let mut takeover = match unsafe { portier::mgmt::upgrade::Takeover::from_env() } {
        Some(Ok(t)) => {
            eprintln!(
                "portier: binary upgrade: taking over from pid {}",
                t.old_pid
            );
            Some(t)
        }
        Some(Err(e)) => return Err(e.context("taking over from the old process")),
        None => None,
    };
    let result = serve(path, &mut takeover);
    if let (Err(e), Some(t)) = (&result, takeover.take()) {
        // The old process keeps serving; it logs this reason too.
        t.fail(&format!("{e:#}"));
    }
    result
}

fn serve(
    path: PathBuf,
    takeover: &mut Option<portier::mgmt::upgrade::Takeover>,
) -> anyhow::Result<()> {
    let binary = portier::mgmt::upgrade::own_binary()?;
    // SAFETY: nothing else runs yet (no thread has been started).
    let notify = match unsafe { portier::mgmt::notify::Notifier::from_env() } {
        Some(Ok(n)) => Some(n),
        Some(Err(e)) => {
            eprintln!("portier: not notifying systemd: {e}");
            None
        }
        None => None,
    };
    let tell_systemd = |message: &str| {
        if let Some(n) = &notify
            && let Err(e) = n.send(message)
        {
            tracing::warn!("sd_notify {:?}: {e}", message.lines().next().unwrap_or(""));
        }
    };
    let mut config = Config::load(&path)?;
    // Region mode: the apps of the last good state until etcd answers.
    let region = match config.region.clone() {
        Some(settings) => {
            let region = portier::mgmt::region::Region::open(&settings)?;
            let cached = region.apps();
            let count = cached.len();
            match config.with_apps(cached) {
                Ok(c) => config = c,
                Err(e) => eprintln!(
                    "portier: the last good region state does not validate ({e}): starting without apps"
                ),
            }
            eprintln!(
                "portier: region mode, node {}, {} app(s) from the last good state, etcd {}",
                region.node(),
                count,
                settings.endpoints.join(",")
            );
            Some(region)
        }
        None => None,
    };
    // Token and listeners first: a bad token file stops us before anything runs.
    let mut no_admin = portier::mgmt::admin::Passed::default();
    let admin = portier::mgmt::admin::Admin::bind(
        config.admin.as_ref(),
        takeover.as_mut().map_or(&mut no_admin, |t| &mut t.admin),
    )?;
    let admin_shared = match &admin {
        Some(a) => a.share().context("duplicating the admin listeners")?,
        None => portier::mgmt::admin::Passed::default(),
    };
    // An upgrade takes the running program over instead of loading one.
    let mut xdp = match takeover.as_mut() {
        Some(t) => match t.xdp.take() {
            Some(passed) => bpf::XdpRuntime::adopt(&config.xdp, passed, &mut |i| t.take_fd(i))?,
            None => bpf::start(&config.xdp)?,
        },
        None => bpf::start(&config.xdp)?,
    };
    match &xdp {
        Some(rt) => {
            for (iface, mode) in rt.attached() {
                eprintln!("portier: XDP attached to {iface} ({mode} mode)");
            }
            if let Some(dir) = rt.pin_dir() {
                eprintln!("portier: XDP maps pinned in {}", dir.display());
            }
        }
        None => eprintln!("portier: running without XDP"),
    }
    let access_log = match config.log.target() {
        Some(t) => Some(
            portier::accesslog::AccessLog::start(t.clone())
                .with_context(|| format!("opening the access log {t:?}"))?,
        ),
        None => None,
    };
    if let Some(key) = takeover.as_ref().and_then(|t| t.sticky_key) {
        // Cookies issued by the old process keep binding.
        portier::sticky::adopt_process_key(key);
    }
    let control = portier::control::Control::new(
        portier::snapshot::Snapshot::build(&config),
        portier::reactor::effective_threads(config.server.threads),
        access_log,
    );
    if let Some(t) = takeover.as_ref() {
        t.carry_backends(&control);
    }
    let tls = if config.server.https.is_empty() {
        None
    } else {
        if config.acme.is_some() {
            // ACME installs into it; nothing to serve yet is fine.
            portier::fsutil::private_dir(&config.tls.cert_dir).with_context(|| {
                format!("creating [tls] cert_dir {}", config.tls.cert_dir.display())
            })?;
        }
        let store = portier::tls::CertStore::load(&config.tls.cert_dir, &portier::tls::provider())?;
        if store.is_empty() && config.acme.is_some() {
            eprintln!(
                "portier: no certificate yet in {}: HTTPS handshakes fail until ACME installs one (add a default.pem to serve meanwhile)",
                config.tls.cert_dir.display()
            );
        } else if store.is_empty() {
            anyhow::bail!(
                "{}: no certificate (*.pem) to serve HTTPS with",
                config.tls.cert_dir.display()
            );
        }
        let alpn: &[&[u8]] = if config.tls.http2 {
            &[b"h2", b"http/1.1"]
        } else {
            &[b"http/1.1"]
        };
        let (provider, versions) =
            portier::tls::tuned(&config.tls).map_err(|e| anyhow::anyhow!("{e}"))?;
        Some(Arc::new(
            portier::tls::Tls::with(store, alpn, provider, &versions, config.tls.resumption)
                .context("building the TLS configuration")?,
        ))
    };
    // Root was needed for XDP, the pins and privileged ports; from here on
    // (reactors, runtime) the process runs as [server] user, if set.
    let mut ambient = Vec::new();
    if let Some(name) = &config.server.user {
        let user = portier::mgmt::privileges::lookup(name)?;
        let keep = portier::mgmt::privileges::kept(xdp.is_some());
        ambient = keep.clone();
        // SAFETY: geteuid cannot fail.
        if user.uid != 0 && unsafe { libc::geteuid() } == user.uid {
            // Started by an upgrade as that user, with the capabilities
            // ambient: keep them, pass none further.
            portier::mgmt::privileges::settle(&keep)
                .with_context(|| format!("settling as {name}"))?;
            eprintln!("portier: running as {name} (uid {})", user.uid);
        } else {
            let mut mine: Vec<&std::path::Path> = vec![&config.tls.cert_dir];
            if let Some(a) = &config.acme {
                portier::fsutil::private_dir(&a.state_dir)?;
                mine.push(&a.state_dir);
            }
            if let Some(r) = &config.region {
                mine.push(&r.cache_dir);
            }
            // The access log file itself (its directory must let the user
            // create the next one when SIGUSR1 reopens it after a rotation).
            let log_file = match config.log.target() {
                Some(portier::accesslog::Target::File(path)) => Some(path),
                _ => None,
            };
            if let Some(f) = &log_file {
                mine.push(f);
            }
            portier::mgmt::privileges::give(&user, &mine)?;
            portier::mgmt::privileges::drop_to(&user, &keep)
                .with_context(|| format!("dropping privileges to {name}"))?;
            eprintln!(
                "portier: running as {name} (uid {}), capabilities kept: {}",
                user.uid,
                if xdp.is_some() {
                    "net_bind_service, net_admin, bpf"
                } else {
                    "net_bind_service"
                }
            );
        }
    }
    let no_listeners = portier::reactor::Inherited::default();
    let inherited = takeover.as_ref().map_or(&no_listeners, |t| &t.listeners);
    let reactors = if config.server.http.is_empty() && config.server.https.is_empty() {
        Vec::new()
    } else {
        let r = portier::reactor::spawn(
            control.clone(),
            &config.server.http,
            &config.server.https,
            tls.as_ref().map(|t| t.config.clone()),
            inherited,
        )
        .context("starting the reactors")?;
        for (scheme, list) in [
            ("http", &config.server.http),
            ("https", &config.server.https),
        ] {
            for l in list {
                let proxy = if l.proxy_protocol {
                    ", PROXY protocol first"
                } else {
                    ""
                };
                eprintln!(
                    "portier: listening on {scheme}://{}{proxy} ({} reactor threads)",
                    l.addr,
                    r.len()
                );
            }
        }
        r
    };
    let configured = config
        .server
        .http
        .iter()
        .map(|l| (l.addr, false))
        .chain(config.server.https.iter().map(|l| (l.addr, true)));
    for addr in inherited.unused(configured) {
        eprintln!("portier: {addr} is no longer configured: closed with the upgrade");
    }
    let upgrader = portier::mgmt::upgrade::Upgrader {
        binary,
        args: std::env::args_os().skip(1).collect(),
        admin: admin_shared,
        notify_socket: notify
            .as_ref()
            .and_then(|n| n.env_value())
            .map(|v| v.to_os_string()),
        ambient,
        timeout: std::time::Duration::from_millis(config.server.upgrade_timeout_ms.max(1)),
        pid_file: config.server.pid_file.clone(),
    };
    let mut reactors = Some(reactors);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the management runtime")?;
    runtime.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let probes = tokio::spawn(portier::mgmt::probe::run(control.clone()));
        let certs_changed = Arc::new(tokio::sync::Notify::new());
        let certs = tls.clone().map(|t| {
            tokio::spawn(portier::mgmt::certs::watch(
                t,
                config.tls.cert_dir.clone(),
                std::time::Duration::from_millis(config.tls.reload_interval_ms.max(100)),
                certs_changed.clone(),
            ))
        });
        let mut hup = signal(SignalKind::hangup())?;
        let mut usr1 = signal(SignalKind::user_defined1())?;
        let mut usr2 = signal(SignalKind::user_defined2())?;
        let (upgrade_door, mut upgrade_requests) = tokio::sync::mpsc::unbounded_channel();
        let manager = Arc::new(tokio::sync::Mutex::new(Manager::new(
            path.clone(),
            config.clone(),
            control.clone(),
            xdp.take(),
        )));
        manager.lock().await.upgrades = Some(upgrade_door);
        if let Some(region) = &region {
            manager.lock().await.region = Some(region.clone());
            region.start(portier::mgmt::region::Sink {
                manager: manager.clone(),
                control: control.clone(),
                cert_dir: config.tls.cert_dir.clone(),
                certs_changed: certs_changed.clone(),
            });
        }
        if let Some(settings) = &config.acme {
            let acme = portier::mgmt::acme::Acme::start(
                settings.clone(),
                control.clone(),
                config.tls.cert_dir.clone(),
                certs_changed.clone(),
                region.clone(),
            )
            .context("starting ACME")?;
            eprintln!(
                "portier: ACME on, directory {} (state in {})",
                settings.directory_url(),
                settings.state_dir.display()
            );
            manager.lock().await.acme = Some(acme);
        }
        let admin = admin.map(|a| {
            for endpoint in a.endpoints() {
                eprintln!("portier: admin API on {endpoint}");
            }
            tokio::spawn(a.serve(manager.clone()))
        });
        let program_id = {
            let mut m = manager.lock().await;
            if takeover.is_some()
                && let Some(x) = m.xdp.as_mut()
            {
                // The old process's policy is in the maps: write ours now.
                x.update_policy(&config.xdp)
                    .context("writing the XDP policy")?;
            }
            m.xdp.as_ref().and_then(|x| x.program_id())
        };
        // The pid file first: whoever hears the upgrade succeeded finds us
        // there (a failed start has the old process write its own back).
        if let Some(p) = &config.server.pid_file {
            portier::mgmt::upgrade::write_pid_file(p);
        }
        match takeover.take() {
            // The old process tells systemd (MAINPID) once we said so.
            Some(t) => t.ready(program_id)?,
            None => tell_systemd(&portier::mgmt::notify::ready("serving")),
        }
        eprintln!("portier: ready");
        let mut handed_over = false;
        loop {
            let mut request: Option<portier::mgmt::upgrade::Request> = None;
            tokio::select! {
                _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); break }
                _ = int.recv() => { tracing::info!("SIGINT: shutting down"); break }
                _ = usr2.recv() => {
                    tracing::info!("SIGUSR2: binary upgrade");
                    request = Some(None);
                }
                Some(r) = upgrade_requests.recv() => request = Some(r),
                _ = usr1.recv() => {
                    if let Some(log) = &control.access_log {
                        log.reopen();
                        tracing::info!("SIGUSR1: access log reopened");
                    }
                }
                _ = hup.recv() => {
                    tell_systemd(&portier::mgmt::notify::reloading(
                        portier::mgmt::notify::monotonic_usec(),
                    ));
                    let status = match manager.lock().await.reload() {
                        Ok(()) => {
                            eprintln!("portier: configuration reloaded");
                            "serving".to_string()
                        }
                        Err(e) => {
                            tracing::error!("configuration NOT reloaded, the previous one keeps serving: {e:#}");
                            eprintln!("portier: reload refused: {e:#}");
                            format!("serving; last reload refused: {e:#}")
                        }
                    };
                    tell_systemd(&portier::mgmt::notify::ready(&status));
                }
            }
            let Some(reply) = request else { continue };
            match upgrader.upgrade(&manager).await {
                Ok(done) => {
                    eprintln!(
                        "portier: upgraded: pid {} serves now; pid {} stops accepting and drains",
                        done.new_pid, done.old_pid
                    );
                    tell_systemd(&portier::mgmt::notify::main_pid(
                        done.new_pid,
                        "serving (upgraded)",
                    ));
                    if let Some(r) = reply {
                        let _ = r.send(Ok(done));
                    }
                    handed_over = true;
                    break;
                }
                Err(reason) => {
                    tracing::error!("upgrade failed, this process keeps serving: {reason}");
                    eprintln!("portier: upgrade failed, still serving: {reason}");
                    if let Some(r) = reply {
                        let _ = r.send(Err(reason));
                    }
                }
            }
        }
        probes.abort();
        if let Some(a) = admin {
            // Stops accepting; requests already in (the POST /upgrade
            // being answered) finish while the reactors drain below.
            a.abort();
        }
        if handed_over {
            let mut m = manager.lock().await;
            m.upgrades = None;
            // The new process holds the links: nothing is detached.
            if let Some(x) = m.xdp.take() {
                x.hand_over();
            }
            // The new process registers the node and follows etcd now.
            if let Some(r) = &m.region {
                r.stop();
            }
            drop(m);
            control.begin_handover(std::time::Duration::from_millis(
                config.server.upgrade_drain_ms.max(1),
            ));
        } else {
            tell_systemd(portier::mgmt::notify::STOPPING);
            // Detach XDP (and remove its pins) on the way out; ACME results
            // of the last second saved.
            manager.lock().await.xdp.take();
            if let Some(acme) = &manager.lock().await.acme {
                acme.save();
            }
            if let Some(c) = certs {
                c.abort();
            }
        }
        // The runtime keeps running while the reactors drain (admin
        // answers in flight, the certificate watcher after an upgrade).
        if let Some(r) = reactors.take() {
            let c = control.clone();
            let mut join = tokio::task::spawn_blocking(move || portier::reactor::shutdown(&c, r));
            loop {
                tokio::select! {
                    _ = &mut join => break,
                    // After an upgrade the drain may be long: a stop cuts it.
                    _ = term.recv() => {
                        tracing::info!("SIGTERM while draining: closing what is left");
                        control.cut_drain();
                    }
                    _ = int.recv() => control.cut_drain(),
                }
            }
        }
        anyhow::Ok(())
    })?;
    if let Some(p) = &config.server.pid_file {
        remove_pid_file(p);
    }
    drop(xdp);
    eprintln!("portier: stopped");
    Ok(())
}

/// Remove the pid file if it is still ours (after an upgrade it names the
/// new process).
fn remove_pid_file(path: &std::path::Path) {
    let ours = std::fs::read_to_string(path)
        .ok()
        .and_then(|t| t.trim().parse::<u32>().ok())
        == Some(std::process::id());
    if ours {
        let _ = std::fs::remove_file(path);
    }
}

fn xdp(command: XdpCommand) -> anyhow::Result<()> {
    match command {
        XdpCommand::Stats { pin_dir, json } => {
            let stats = MapSet::open_pinned(&pin_dir)?.stats()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&stats)?);
            } else {
                println!(
                    "{:<24} {:<6} {:>14} {:>16}",
                    "reason", "action", "packets", "bytes"
                );
                for r in &stats.reasons {
                    println!(
                        "{:<24} {:<6} {:>14} {:>16}",
                        r.reason, r.action, r.packets, r.bytes
                    );
                }
                println!(
                    "total: {} passed, {} dropped",
                    stats.total(false),
                    stats.total(true)
                );
            }
        }
        XdpCommand::Block { cidr, pin_dir } => {
            MapSet::open_pinned(&pin_dir)?.block(cidr)?;
            println!("blocked {cidr}");
        }
        XdpCommand::Unblock { cidr, pin_dir } => {
            if MapSet::open_pinned(&pin_dir)?.unblock(cidr)? {
                println!("unblocked {cidr}");
            } else {
                anyhow::bail!("{cidr} was not blocked");
            }
        }
        XdpCommand::Blocklist { pin_dir, json } => {
            let list: Vec<String> = MapSet::open_pinned(&pin_dir)?
                .blocklist()?
                .iter()
                .map(|c| c.to_string())
                .collect();
            if json {
                println!("{}", serde_json::to_string(&list)?);
            } else {
                for c in list {
                    println!("{c}");
                }
            }
        }
    }
    Ok(())
}

/// `portier self-signed`: a certificate valid from an hour ago for `days`
/// (capped at 90).
fn self_signed(names: &[String], out: &std::path::Path, days: u32) -> anyhow::Result<()> {
    let max = portier::tls::SELF_SIGNED_MAX_DAYS;
    if days > max {
        eprintln!("portier: --days {days} capped at {max}");
    }
    let pem = portier::tls::self_signed_pem_at(names, std::time::SystemTime::now(), days)?;
    std::fs::write(out, pem).with_context(|| format!("writing {}", out.display()))?;
    println!("wrote {} (valid for {} days)", out.display(), days.min(max));
    Ok(())
}
