//! Telling systemd how the service is doing (`sd_notify(3)`): `READY=1` once
//! Portier serves, `RELOADING=1` … `READY=1` around a SIGHUP reload,
//! `STOPPING=1` on the way out. This is what `Type=notify` in the unit waits
//! for; without `NOTIFY_SOCKET` (not under systemd) nothing is sent.
//!
//! The protocol is one datagram of `KEY=VALUE` lines to the unix socket named
//! by `NOTIFY_SOCKET`: a path, or an abstract address when it starts with `@`.
//! That is a dozen lines over std (`UnixDatagram`, and
//! `SocketAddrExt::from_abstract_name` for the `@` form), so no crate: the
//! `sd-notify`/`libsystemd` crates would add a dependency (and the latter a
//! tree of them) for what the standard library already does, and we send no
//! file descriptors, which is where a library would earn its keep.
//!
//! Must not block or fail the caller: a lost notification is logged by the
//! caller, never fatal. Fed by `main` (which owns the signal loop); emits
//! nothing but the datagrams.

use std::ffi::OsStr;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::PathBuf;

/// Where `NOTIFY_SOCKET` points.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Address {
    /// A socket file (systemd's is `/run/systemd/notify`).
    Path(PathBuf),
    /// An abstract-namespace name (the `@` dropped).
    Abstract(Vec<u8>),
}

impl Address {
    /// Parse a `NOTIFY_SOCKET` value: an absolute path, or `@name`. Anything
    /// else (empty, relative) is not an address systemd hands out.
    pub fn parse(value: &OsStr) -> Option<Address> {
        let bytes = value.as_bytes();
        match bytes.first() {
            Some(b'/') => Some(Address::Path(PathBuf::from(value))),
            Some(b'@') if bytes.len() > 1 => Some(Address::Abstract(bytes[1..].to_vec())),
            _ => None,
        }
    }

    fn socket_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Address::Path(p) => SocketAddr::from_pathname(p),
            Address::Abstract(name) => SocketAddr::from_abstract_name(name),
        }
    }
}

/// `READY=1`, with a status line for `systemctl status` (kept to one line:
/// a newline in it would start another assignment).
pub fn ready(status: &str) -> String {
    let status = status.replace(['\n', '\r'], " ");
    format!("READY=1\nSTATUS={status}\n")
}

/// `RELOADING=1` with the monotonic time the reload began (systemd 253+
/// wants it with `Type=notify-reload`; older ones ignore the key).
pub fn reloading(monotonic_usec: u64) -> String {
    format!("RELOADING=1\nMONOTONIC_USEC={monotonic_usec}\n")
}

/// The service's main process is now `pid` (a binary upgrade), which
/// serves: sent by the old process once the new one said so.
pub fn main_pid(pid: u32, status: &str) -> String {
    let status = status.replace(['\n', '\r'], " ");
    format!("MAINPID={pid}\nREADY=1\nSTATUS={status}\n")
}

/// `STOPPING=1`: shutdown began.
pub const STOPPING: &str = "STOPPING=1\n";

/// CLOCK_MONOTONIC in microseconds (the clock `MONOTONIC_USEC` is read on).
pub fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000 + (ts.tv_nsec as u64) / 1_000
}

/// A socket aimed at systemd's notification socket.
pub struct Notifier {
    socket: UnixDatagram,
    to: SocketAddr,
    /// `NOTIFY_SOCKET` as it was given (passed on by a binary upgrade).
    value: Option<std::ffi::OsString>,
}

impl Notifier {
    /// Send to `address` (an unbound datagram socket; opening it needs no
    /// privilege, so it keeps working after the drop to `[server] user`).
    pub fn new(address: &Address) -> io::Result<Notifier> {
        let socket = UnixDatagram::unbound()?;
        socket.set_nonblocking(true)?;
        Ok(Notifier {
            socket,
            to: address.socket_addr()?,
            value: None,
        })
    }

    /// The notifier for `NOTIFY_SOCKET`, if systemd set one, and the variable
    /// removed so the commands Portier runs (ACME hooks) do not inherit it.
    ///
    /// # Safety
    /// Changes the environment: call while the process has one thread.
    pub unsafe fn from_env() -> Option<io::Result<Notifier>> {
        let value = std::env::var_os("NOTIFY_SOCKET")?;
        // SAFETY: the caller guarantees no other thread reads the environment.
        unsafe { std::env::remove_var("NOTIFY_SOCKET") };
        match Address::parse(&value) {
            Some(a) => Some(Notifier::new(&a).map(|mut n| {
                n.value = Some(value);
                n
            })),
            None => Some(Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("NOTIFY_SOCKET={value:?} is neither a path nor @name"),
            ))),
        }
    }

    /// The `NOTIFY_SOCKET` value this notifier came from.
    pub fn env_value(&self) -> Option<&std::ffi::OsStr> {
        self.value.as_deref()
    }

    /// Send one message (never blocks: a full socket is an error).
    pub fn send(&self, message: &str) -> io::Result<()> {
        let n = self.socket.send_to_addr(message.as_bytes(), &self.to)?;
        if n != message.len() {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "short datagram"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn parses_paths_and_abstract_names_only() {
        assert_eq!(
            Address::parse(OsStr::new("/run/systemd/notify")),
            Some(Address::Path(PathBuf::from("/run/systemd/notify")))
        );
        assert_eq!(
            Address::parse(OsStr::new("@/org/freedesktop/systemd1/notify/42")),
            Some(Address::Abstract(
                b"/org/freedesktop/systemd1/notify/42".to_vec()
            ))
        );
        assert_eq!(Address::parse(OsStr::new("")), None);
        assert_eq!(Address::parse(OsStr::new("@")), None);
        assert_eq!(Address::parse(OsStr::new("run/notify")), None);
    }

    #[test]
    fn messages_are_newline_separated_assignments() {
        assert_eq!(ready("serving"), "READY=1\nSTATUS=serving\n");
        assert_eq!(
            ready("refused: line 3\nREADY=0"),
            "READY=1\nSTATUS=refused: line 3 READY=0\n"
        );
        assert_eq!(
            reloading(1_234_567),
            "RELOADING=1\nMONOTONIC_USEC=1234567\n"
        );
        assert_eq!(STOPPING, "STOPPING=1\n");
        let (a, b) = (monotonic_usec(), monotonic_usec());
        assert!(a > 0 && b >= a);
    }

    fn received(listener: &UnixDatagram) -> String {
        listener
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut buf = [0u8; 256];
        let n = listener.recv(&mut buf).expect("a datagram");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn sends_to_a_socket_file() {
        let dir = std::env::temp_dir().join(format!("portier-notify-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("mkdir");
        let path = dir.join("notify");
        let listener = UnixDatagram::bind(&path).expect("bind");
        let n = Notifier::new(&Address::parse(path.as_os_str()).expect("path")).expect("socket");
        n.send(&ready("serving")).expect("send");
        assert_eq!(received(&listener), "READY=1\nSTATUS=serving\n");
        n.send(STOPPING).expect("send");
        assert_eq!(received(&listener), "STOPPING=1\n");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn sends_to_an_abstract_name() {
        let name = format!("portier-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).expect("addr");
        let listener = UnixDatagram::bind_addr(&addr).expect("bind");
        let n = Notifier::new(&Address::parse(OsStr::new(&format!("@{name}"))).expect("@"))
            .expect("socket");
        n.send(&reloading(7)).expect("send");
        assert_eq!(received(&listener), "RELOADING=1\nMONOTONIC_USEC=7\n");
    }

    #[test]
    fn a_missing_socket_is_an_error_not_a_panic() {
        let n = Notifier::new(&Address::Path(PathBuf::from(
            "/nonexistent/portier-notify-socket",
        )))
        .expect("socket");
        assert!(n.send(STOPPING).is_err());
    }
}
