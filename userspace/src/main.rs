//! `portier`: parse arguments, load the config, start the parts, wait for a
//! signal, stop cleanly.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use portier::config::{Cidr, Config};
use portier::mgmt::bpf::{self, MapSet};

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
    /// Run the demo/test HTTP backend (echo, /bytes, /status, /slow, /sse, /ws).
    DemoBackend {
        #[arg(long)]
        listen: std::net::SocketAddr,
        #[arg(long)]
        name: String,
        /// Worker threads, each serving one connection at a time; 0 = a thread per connection.
        #[arg(long, default_value_t = 0)]
        threads: usize,
    },
    /// Operate on the XDP program of a running portier (through its pinned maps).
    Xdp {
        #[command(subcommand)]
        command: XdpCommand,
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
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PORTIER_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        None => run(cli.config),
        Some(Command::Check { config }) => check(config),
        Some(Command::Xdp { command }) => xdp(command),
        Some(Command::DemoBackend {
            listen,
            name,
            threads,
        }) => portier::demo::run(listen, name, threads),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("portier: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn check(path: PathBuf) -> anyhow::Result<()> {
    Config::load(&path)?;
    println!("{}: ok", path.display());
    Ok(())
}

fn run(path: PathBuf) -> anyhow::Result<()> {
    let config = Config::load(&path)?;
    let xdp = bpf::start(&config.xdp)?;
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
    let shared = portier::reactor::Shared::new(portier::snapshot::Snapshot::build(&config));
    let reactors = if config.server.http.is_empty() {
        Vec::new()
    } else {
        let r = portier::reactor::spawn(shared.clone(), &config.server.http, config.server.threads)
            .context("starting the reactors")?;
        for addr in &config.server.http {
            eprintln!(
                "portier: listening on http://{addr} ({} reactor threads)",
                r.len()
            );
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
        let probes = tokio::spawn(portier::mgmt::probe::run(shared.clone()));
        eprintln!("portier: ready");
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = int.recv() => tracing::info!("SIGINT: shutting down"),
        }
        probes.abort();
        anyhow::Ok(())
    })?;
    portier::reactor::shutdown(&shared, reactors);
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
