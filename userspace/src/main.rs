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

fn check(path: PathBuf) -> anyhow::Result<()> {
    Config::load(&path)?;
    println!("{}: ok", path.display());
    Ok(())
}

fn run(path: PathBuf) -> anyhow::Result<()> {
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
    let admin = portier::mgmt::admin::Admin::bind(config.admin.as_ref())?;
    let mut xdp = bpf::start(&config.xdp)?;
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
    let control = portier::control::Control::new(
        portier::snapshot::Snapshot::build(&config),
        portier::reactor::effective_threads(config.server.threads),
        access_log,
    );
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
    if let Some(name) = &config.server.user {
        let user = portier::mgmt::privileges::lookup(name)?;
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
        let keep = portier::mgmt::privileges::kept(xdp.is_some());
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
    let reactors = if config.server.http.is_empty() && config.server.https.is_empty() {
        Vec::new()
    } else {
        let r = portier::reactor::spawn(
            control.clone(),
            &config.server.http,
            &config.server.https,
            tls.as_ref().map(|t| t.config.clone()),
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
        let manager = Arc::new(tokio::sync::Mutex::new(Manager::new(
            path.clone(),
            config.clone(),
            control.clone(),
            xdp.take(),
        )));
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
        eprintln!("portier: ready");
        tell_systemd(&portier::mgmt::notify::ready("serving"));
        loop {
            tokio::select! {
                _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); break }
                _ = int.recv() => { tracing::info!("SIGINT: shutting down"); break }
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
        }
        tell_systemd(portier::mgmt::notify::STOPPING);
        // Detach XDP (and remove its pins) on the way out; ACME results
        // of the last second saved.
        manager.lock().await.xdp.take();
        if let Some(acme) = &manager.lock().await.acme {
            acme.save();
        }
        probes.abort();
        if let Some(a) = admin {
            a.abort();
        }
        if let Some(c) = certs {
            c.abort();
        }
        anyhow::Ok(())
    })?;
    portier::reactor::shutdown(&control, reactors);
    drop(xdp);
    eprintln!("portier: stopped");
    Ok(())
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
