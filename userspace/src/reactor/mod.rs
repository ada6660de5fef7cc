//! Reactor threads: one mio loop per thread, each with its own SO_REUSEPORT
//! listeners, connections, exchanges, backend pool and timer wheel. The only
//! code that touches sockets and the clock on the request path.
//!
//! Fed by: the kernel (accepts, readiness), the `control::Control` door
//! (snapshot, commands, queue grants). Emits: bytes on sockets, counters.
//!
//! Files: `core.rs` the loop, events, timers and teardown; `client.rs` the
//! HTTP/1.x client side; `h2.rs` HTTP/2 clients; `dispatch.rs` a request's
//! way to a backend (routing, queue, pool, body, end); `upstream.rs` the
//! backend side; `conn.rs` the records; `timers.rs` the wheel;
//! `listener.rs` the listening sockets; `proxy.rs` the PROXY protocol
//! header a listener may require before anything else.

mod client;
mod conn;
mod core;
mod dispatch;
mod h2;
mod listener;
mod proxy;
mod timers;
mod upstream;

use std::io;
use std::sync::Arc;
use std::thread::JoinHandle;

use mio::{Token, Waker};

use crate::config::Listen;
use crate::control::{Control, ListenerKind, Wake};
pub use listener::{Inherited, bind_reuseport};

const WAKER: Token = Token(usize::MAX);

struct MioWaker(Waker);

impl Wake for MioWaker {
    fn wake(&self) {
        let _ = self.0.wake();
    }
}

/// Reactor threads for a `threads` setting (0 = one per CPU).
pub fn effective_threads(threads: usize) -> usize {
    if threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        threads
    }
}

/// A running reactor thread.
pub struct ReactorHandle {
    thread: Option<JoinHandle<()>>,
}

impl ReactorHandle {
    pub fn join(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Bind every listener once per thread (SO_REUSEPORT: the kernel spreads
/// connections) and start the threads. Binding happens here, so a busy port
/// is an error at start, not a silent thread death.
pub fn spawn(
    control: Arc<Control>,
    http: &[Listen],
    https: &[Listen],
    tls: Option<Arc<rustls::ServerConfig>>,
    inherited: &Inherited,
) -> io::Result<Vec<ReactorHandle>> {
    if !https.is_empty() && tls.is_none() {
        return Err(io::Error::other("HTTPS listeners need a TLS configuration"));
    }
    let threads = control.reactors();
    let mut handles = Vec::with_capacity(threads);
    let mut wakers: Vec<Arc<dyn Wake>> = Vec::with_capacity(threads);
    let mut started = Vec::with_capacity(threads);
    for i in 0..threads {
        let mut listeners = Vec::with_capacity(http.len() + https.len());
        for (list, secure) in [(http, false), (https, true)] {
            for l in list {
                let kind = ListenerKind {
                    secure,
                    proxy_protocol: l.proxy_protocol,
                };
                match inherited.for_thread(l.addr, secure, i, threads) {
                    Some(passed) => {
                        for sock in passed? {
                            listeners.push((sock, kind));
                        }
                    }
                    None => listeners.push((bind_reuseport(l.addr)?, kind)),
                }
            }
        }
        let poll = mio::Poll::new()?;
        wakers.push(Arc::new(MioWaker(Waker::new(poll.registry(), WAKER)?)));
        started.push((i, poll, listeners));
    }
    control.attach_reactors(wakers, bind_reuseport, tls.is_some());
    for (i, poll, listeners) in started {
        let tls = tls.clone();
        let control = control.clone();
        let thread = std::thread::Builder::new()
            .name(format!("portier-reactor-{i}"))
            .spawn(move || {
                let mut r = match core::Reactor::new(i, poll, control, listeners, tls) {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::error!("reactor {i} cannot start: {e}");
                        return;
                    }
                };
                if let Err(e) = r.run() {
                    tracing::error!("reactor {i} stopped: {e}");
                }
            })?;
        handles.push(ReactorHandle {
            thread: Some(thread),
        });
    }
    Ok(handles)
}

/// Ask every reactor to stop and wait for them.
pub fn shutdown(control: &Control, handles: Vec<ReactorHandle>) {
    control.begin_shutdown();
    for h in handles {
        h.join();
    }
}
