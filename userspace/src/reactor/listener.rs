//! Listening sockets: SO_REUSEPORT so each reactor thread accepts on its own
//! socket and the kernel balances new connections between them; and the
//! reactor's table of them (tokens count down from below the waker's).

use std::io;
use std::net::SocketAddr;

use mio::net::TcpListener;
use mio::{Interest, Registry, Token};
use socket2::{Domain, Protocol, Socket, Type};

use crate::control::{ListenerKind, SharedListener};

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

/// Listening sockets passed by the process this one took over from (binary
/// upgrade), by address and kind: reactors register these instead of
/// binding, so no listener is ever closed across an upgrade.
#[derive(Default)]
pub struct Inherited {
    groups: std::collections::HashMap<(SocketAddr, bool), Vec<std::os::fd::OwnedFd>>,
}

impl Inherited {
    pub fn add(&mut self, addr: SocketAddr, secure: bool, fd: std::os::fd::OwnedFd) {
        self.groups.entry((addr, secure)).or_default().push(fd);
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// The sockets thread `thread` of `threads` registers for this address
    /// (see `handoff::assign`); `None` when none was passed.
    pub fn for_thread(
        &self,
        addr: SocketAddr,
        secure: bool,
        thread: usize,
        threads: usize,
    ) -> Option<io::Result<Vec<std::net::TcpListener>>> {
        let fds = self.groups.get(&(addr, secure))?;
        let mine = crate::mgmt::upgrade::handoff::assign(fds.len(), threads);
        let picked = mine.get(thread)?.iter().map(|&i| {
            let l = std::net::TcpListener::from(fds[i].try_clone()?);
            l.set_nonblocking(true)?;
            Ok(l)
        });
        Some(picked.collect())
    }

    /// Passed addresses the configuration no longer has (closed here; the
    /// old process closes its copies).
    pub fn unused<'a>(
        &self,
        configured: impl Iterator<Item = (SocketAddr, bool)> + 'a,
    ) -> Vec<SocketAddr> {
        let configured: std::collections::HashSet<_> = configured.collect();
        self.groups
            .keys()
            .filter(|k| !configured.contains(k))
            .map(|(a, _)| *a)
            .collect()
    }
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

    /// Duplicates of every listening socket (binary upgrade).
    pub fn share(&self) -> Vec<SharedListener> {
        use std::os::fd::AsFd;
        self.slots
            .iter()
            .flatten()
            .filter_map(|l| {
                let fd = l.sock.as_fd().try_clone_to_owned().ok()?;
                Some(SharedListener {
                    addr: l.addr,
                    secure: l.kind.secure,
                    fd,
                })
            })
            .collect()
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
