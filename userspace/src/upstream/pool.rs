//! Idle keep-alive backend connections of one reactor, per backend address.
//!
//! Owns: the registry only (connection ids, last in first out: the most
//! recently used connection is the least likely to have been closed by the
//! backend). Each id goes with the connection's serial number: a slot
//! reused by another connection has another serial, so an entry that
//! outlived its connection is recognised, never taken for the new one.
//! Must not: touch sockets — the reactor checks that a connection it takes
//! is still usable, and removes the ones it closes.

use std::collections::HashMap;
use std::net::SocketAddr;

use crate::exchange::ConnId;

#[derive(Default)]
pub struct Pool {
    idle: HashMap<SocketAddr, Vec<(ConnId, u64)>>,
}

impl Pool {
    /// The connection finished a response and may serve another.
    pub fn put(&mut self, addr: SocketAddr, conn: ConnId, serial: u64) {
        self.idle.entry(addr).or_default().push((conn, serial));
    }

    /// The most recently idle connection to `addr`, with its serial.
    pub fn take(&mut self, addr: SocketAddr) -> Option<(ConnId, u64)> {
        let list = self.idle.get_mut(&addr)?;
        let conn = list.pop();
        if list.is_empty() {
            self.idle.remove(&addr);
        }
        conn
    }

    /// The connection closed (or timed out) while idle.
    pub fn remove(&mut self, addr: SocketAddr, conn: ConnId) {
        if let Some(list) = self.idle.get_mut(&addr) {
            list.retain(|(c, _)| *c != conn);
            if list.is_empty() {
                self.idle.remove(&addr);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.idle.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.idle.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_in_first_out_per_backend() {
        let a: SocketAddr = "127.0.0.1:1".parse().expect("addr");
        let b: SocketAddr = "127.0.0.1:2".parse().expect("addr");
        let mut p = Pool::default();
        p.put(a, ConnId(1), 10);
        p.put(a, ConnId(2), 11);
        p.put(b, ConnId(3), 12);
        assert_eq!(p.take(a), Some((ConnId(2), 11)));
        p.remove(a, ConnId(1));
        assert_eq!(p.take(a), None);
        assert_eq!(p.len(), 1);
        assert_eq!(p.take(b), Some((ConnId(3), 12)));
        assert!(p.is_empty());
    }
}
