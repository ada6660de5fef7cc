//! `portier-demo-backend`: a small blocking HTTP/1.1 backend for the demo,
//! the integration tests and the benchmarks. A binary of the `portier`
//! package, not part of the `portier` library: the proxy never links it.
//!
//! Owns: the command line, a `std::net` listener, one thread per connection
//! (or a fixed pool of `threads` workers that each serve one connection at
//! a time, so a backend's concurrency can be capped for queueing tests).
//! The connection loop is in `conn.rs`, the endpoints in `route.rs`,
//! `response.rs` and `websocket.rs`.
//! Must not: be used on the proxy's data path. It is test tooling, allowed
//! blocking sockets and sleeps.
//! Fed by: `cargo xtask run` and the integration tests
//! (`portier-demo-backend --listen ADDR --name NAME [--threads N]`), and
//! this binary's unit tests (`spawn`).
//! Emits: `demo-backend <name> listening on <addr>` on stderr once bound,
//! then HTTP responses, every one with `X-Backend: <name>`.
//!
//! | request                               | response |
//! |---------------------------------------|----------|
//! | any other path                        | `200` JSON echo: `backend`, `method`, `path` (before `?`), `target` (as received), `version`, `headers` (`[[name, value], ...]` in order, values lossily UTF-8), `body_bytes`, `body_fnv` (FNV-1a 64 of the payload, 16 hex digits) |
//! | `/bytes/<n>[?chunked=1]`              | `200 text/plain`, exactly `n` bytes of `abc...xyzabc...`; chunked in 16 KiB chunks with `chunked=1` |
//! | `/status/<code>`                      | that status (200..=599), body `<code> <reason>\n` (none for 204/304) |
//! | `/slow/<ms>`                          | the echo, after sleeping `ms` milliseconds |
//! | `/sse?events=<n>&interval_ms=<ms>[&type=text/plain]` | `text/event-stream` (or the given listed type), chunked, events `data: 0\n\n` .. `data: n-1\n\n`, one chunk each, `ms` apart (defaults 5 and 100) |
//! | `/ws`                                 | WebSocket echo (RFC 6455), messages up to 1 MiB |
//! | `/close`                              | the echo with `Connection: close`, then the connection closes |
//!
//! A malformed request gets the codec's error response (`X-Demo-Error:
//! <code>`) and the connection closes. An HTTP/1.0 client gets a
//! close-delimited body where others get chunked (RFC 9112 §7.1 is 1.1-only).
//!
//! ```text
//!  connection:  ReadingHead ──head──► ReadingBody ──done──► Responding ──keep-alive──► ReadingHead
//!                   │ EOF/error            │ error              │ close / upgrade
//!                   ▼                      ▼                    ▼
//!                 closed                 closed          closed / WebSocket ──close frame──► closed
//! ```

mod conn;
mod fnv;
mod response;
mod route;
mod websocket;

#[cfg(test)]
mod tests;

use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use portier::http::Limits;

use conn::Conn;

/// A connection silent (or not reading) for this long is closed.
const IO_TIMEOUT: Duration = Duration::from_secs(120);

/// The demo/test HTTP backend (echo, /bytes, /status, /slow, /sse, /ws).
#[derive(Parser)]
#[command(name = "portier-demo-backend", version)]
struct Cli {
    /// Address to listen on.
    #[arg(long)]
    listen: SocketAddr,
    /// Sent as `X-Backend` and in the echo (visible ASCII).
    #[arg(long)]
    name: String,
    /// Worker threads, each serving one connection at a time; 0 = a thread per connection.
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

fn main() -> ExitCode {
    portier::init_logging();
    let cli = Cli::parse();
    match run(cli.listen, cli.name, cli.threads) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("portier-demo-backend: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Bind `listen`, print the ready line, and serve on a background thread
/// (one thread per connection). Returns the bound address (useful with
/// port 0) and the accept thread, which never finishes.
#[cfg(test)]
fn spawn(listen: SocketAddr, name: String) -> io::Result<(SocketAddr, thread::JoinHandle<()>)> {
    let listener = bind(listen, &name)?;
    let addr = listener.local_addr()?;
    let name: Arc<str> = name.into();
    let handle = thread::Builder::new()
        .name(format!("demo-{name}"))
        .spawn(move || accept_loop(&listener, &name))?;
    Ok((addr, handle))
}

/// Bind `listen`, print the ready line, and serve forever on this thread.
/// `threads == 0`: one thread per connection; `threads == n`: `n` workers,
/// each serving one connection at a time (others wait in the backlog).
fn run(listen: SocketAddr, name: String, threads: usize) -> anyhow::Result<()> {
    let listener = bind(listen, &name).with_context(|| format!("demo-backend on {listen}"))?;
    let name: Arc<str> = name.into();
    if threads == 0 {
        accept_loop(&listener, &name);
        return Ok(());
    }
    let mut workers = Vec::with_capacity(threads);
    for i in 0..threads {
        let listener = listener.try_clone().context("cloning the listener")?;
        let name = Arc::clone(&name);
        let worker = thread::Builder::new()
            .name(format!("demo-{name}-{i}"))
            .spawn(move || worker_loop(&listener, &name))
            .context("starting a worker")?;
        workers.push(worker);
    }
    for worker in workers {
        if worker.join().is_err() {
            anyhow::bail!("a demo-backend worker panicked");
        }
    }
    Ok(())
}

fn bind(listen: SocketAddr, name: &str) -> io::Result<TcpListener> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "backend name must be non-empty visible ASCII",
        ));
    }
    let listener = TcpListener::bind(listen)?;
    eprintln!(
        "demo-backend {name} listening on {}",
        listener.local_addr()?
    );
    Ok(listener)
}

fn accept_loop(listener: &TcpListener, name: &Arc<str>) {
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                let name = Arc::clone(name);
                // A failed spawn (out of threads) drops the connection.
                let _ = thread::Builder::new()
                    .name(format!("demo-{name}-conn"))
                    .spawn(move || serve(stream, &name));
            }
            Err(e) => accept_failed(&e),
        }
    }
}

fn worker_loop(listener: &TcpListener, name: &str) {
    loop {
        match listener.accept() {
            Ok((stream, _)) => serve(stream, name),
            Err(e) => accept_failed(&e),
        }
    }
}

fn accept_failed(e: &io::Error) {
    // EMFILE and friends: back off instead of spinning.
    if e.kind() != io::ErrorKind::Interrupted {
        thread::sleep(Duration::from_millis(10));
    }
}

fn serve(stream: TcpStream, name: &str) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let limits = Limits {
        // The proxy enforces body limits; the backend takes anything.
        max_body: u64::MAX,
        ..Limits::default()
    };
    let mut conn = Conn::new(stream, name, limits);
    // An I/O error (reset, timeout) just ends the connection.
    let _ = conn.serve();
    let _ = conn.stream.shutdown(Shutdown::Both);
}
