//! Listening sockets: SO_REUSEPORT so each reactor thread accepts on its own
//! socket and the kernel balances new connections between them; and the
//! reactor's table of them (tokens count down from below the waker's).

use std::io;
use std::net::SocketAddr;

use mio::net::TcpListener;
use mio::{Interest, Registry, Token};
use socket2::{Domain, Protocol, Socket, Type};

/// Bind one non-blocking SO_REUSEPORT listener (also `control::Binder`).
pub fn bind_reuseport(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket
        .bind(&addr.into())
        .map_err(|e| io::Error::new(e.kind(), format!("binding {addr}: {e}")))?;
    socket.listen(4096)?;
    Ok(socket.into())
}

/// Tokens at or below this are listeners (counting down).
const BASE: usize = usize::MAX - 1;

pub struct Listener {
    pub sock: TcpListener,
    /// Local port (X-Forwarded-Port when no public port is configured).
    pub port: u16,
    pub secure: bool,
}

/// A reactor's listeners by index (token `BASE - index`); a removed one
/// leaves `None` so other tokens stay valid.
#[derive(Default)]
pub struct Listeners {
    slots: Vec<Option<Listener>>,
}

impl Listeners {
    pub fn add(
        &mut self,
        registry: &Registry,
        listener: std::net::TcpListener,
        secure: bool,
    ) -> io::Result<()> {
        let mut sock = TcpListener::from_std(listener);
        let index = self.slots.len();
        registry.register(&mut sock, Token(BASE - index), Interest::READABLE)?;
        let port = sock.local_addr().map_or(80, |a| a.port());
        self.slots.push(Some(Listener { sock, port, secure }));
        Ok(())
    }

    pub fn remove(&mut self, registry: &Registry, addr: SocketAddr) {
        for slot in self.slots.iter_mut() {
            if slot
                .as_ref()
                .and_then(|l| l.sock.local_addr().ok())
                .is_some_and(|a| a == addr)
                && let Some(mut l) = slot.take()
            {
                let _ = registry.deregister(&mut l.sock);
            }
        }
    }

    /// Stop accepting everywhere (shutdown).
    pub fn close_all(&mut self, registry: &Registry) {
        for mut l in self.slots.drain(..).flatten() {
            let _ = registry.deregister(&mut l.sock);
        }
    }

    /// The listener a token names, if it names one.
    pub fn index_of(&self, token: Token) -> Option<usize> {
        let i = BASE.checked_sub(token.0)?;
        (i < self.slots.len()).then_some(i)
    }

    pub fn get(&self, index: usize) -> Option<&Listener> {
        self.slots.get(index).and_then(Option::as_ref)
    }
}
