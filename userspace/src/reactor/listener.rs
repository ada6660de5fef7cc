//! Listening sockets: SO_REUSEPORT so each reactor thread accepts on its own
//! socket and the kernel balances new connections between them; and the
//! reactor's table of them (tokens count down from below the waker's).

use std::io;
use std::net::SocketAddr;

use mio::net::TcpListener;
use mio::{Interest, Registry, Token};
use socket2::{Domain, Protocol, Socket, Type};

use crate::control::ListenerKind;

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
    /// Local address; its port is X-Forwarded-Port when no public port is
    /// configured (nor given by a PROXY protocol header).
    pub addr: SocketAddr,
    pub kind: ListenerKind,
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
        kind: ListenerKind,
    ) -> io::Result<()> {
        let mut sock = TcpListener::from_std(listener);
        let addr = sock.local_addr()?;
        let index = self.slots.len();
        registry.register(&mut sock, Token(BASE - index), Interest::READABLE)?;
        self.slots.push(Some(Listener { sock, addr, kind }));
        Ok(())
    }

    /// Stop accepting on the listener of this address and kind.
    pub fn remove(&mut self, registry: &Registry, addr: SocketAddr, secure: bool) {
        for slot in self.slots.iter_mut() {
            if slot
                .as_ref()
                .is_some_and(|l| l.addr == addr && l.kind.secure == secure)
                && let Some(mut l) = slot.take()
            {
                let _ = registry.deregister(&mut l.sock);
            }
        }
    }

    /// New connections on this listener are served as `kind` says (those
    /// already accepted keep what they started with).
    pub fn update(&mut self, addr: SocketAddr, kind: ListenerKind) {
        for l in self.slots.iter_mut().flatten() {
            if l.addr == addr && l.kind.secure == kind.secure {
                l.kind = kind;
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
