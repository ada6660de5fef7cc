//! Dropping root (`[server] user`): Portier starts as root to attach XDP,
//! pin its maps and bind privileged ports, then runs as an unprivileged
//! user with only the capabilities it still needs:
//! `CAP_NET_BIND_SERVICE` (listeners opened by a reload), and with XDP
//! `CAP_BPF` (blocklist updates through the maps) and `CAP_NET_ADMIN`
//! (detaching the program on exit). Everything else leaves the bounding
//! set, and `no_new_privs` is set.
//!
//! Must run while the process has one thread (capabilities are per
//! thread): after the root-only steps, before reactors and the runtime.
//! The directories Portier writes to (certificates, ACME state, region
//! cache) and the access log are given to that user first.

use std::ffi::CString;
use std::path::Path;

use anyhow::{Context, bail};

pub const CAP_NET_BIND_SERVICE: u32 = 10;
pub const CAP_NET_ADMIN: u32 = 12;
pub const CAP_BPF: u32 = 39;
/// The highest capability number this code knows of (CAP_CHECKPOINT_RESTORE).
const CAP_LAST: u32 = 40;

/// A user to run as.
pub struct RunAs {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

/// Look a user up in the system's user database.
pub fn lookup(name: &str) -> anyhow::Result<RunAs> {
    let c = CString::new(name).context("server.user: a NUL in the name")?;
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut out: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; `buf` outlives `pw`'s use.
    let rc =
        unsafe { libc::getpwnam_r(c.as_ptr(), &mut pw, buf.as_mut_ptr(), buf.len(), &mut out) };
    if rc != 0 || out.is_null() {
        bail!("server.user: no user named {name}");
    }
    Ok(RunAs {
        name: name.to_string(),
        uid: pw.pw_uid,
        gid: pw.pw_gid,
    })
}

/// The capabilities kept: bind, and with XDP the map and detach ones.
pub fn kept(xdp: bool) -> Vec<u32> {
    let mut caps = vec![CAP_NET_BIND_SERVICE];
    if xdp {
        caps.extend([CAP_NET_ADMIN, CAP_BPF]);
    }
    caps
}

/// Give `paths` (recursively for directories) to the user. Only a path
/// that is already the user's, or is empty (a directory just made, a log
/// file just opened), is taken over: the config file is writable by that
/// user, so an edited `cert_dir` must not make the next start (as root)
/// hand out someone else's files. Symbolic links are changed, never
/// followed.
pub fn give(user: &RunAs, paths: &[&Path]) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    fn walk(p: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
        let meta = std::fs::symlink_metadata(p)?;
        std::os::unix::fs::lchown(p, Some(uid), Some(gid))?;
        if meta.is_dir() {
            for e in std::fs::read_dir(p)? {
                walk(&e?.path(), uid, gid)?;
            }
        }
        Ok(())
    }
    for p in paths {
        let Ok(meta) = std::fs::symlink_metadata(p) else {
            continue;
        };
        let empty = if meta.is_dir() {
            std::fs::read_dir(p)
                .map(|mut d| d.next().is_none())
                .unwrap_or(false)
        } else {
            meta.is_file() && meta.len() == 0
        };
        if meta.uid() != user.uid && !empty {
            bail!(
                "{} belongs to uid {} and is not empty: give it to {} first (chown -R); \
                 Portier takes over only empty paths or its own",
                p.display(),
                meta.uid(),
                user.name
            );
        }
        walk(p, user.uid, user.gid)
            .with_context(|| format!("giving {} to {}", p.display(), user.name))?;
    }
    Ok(())
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

fn mask(caps: &[u32]) -> [CapData; 2] {
    let mut d = [CapData::default(); 2];
    for &c in caps {
        let (i, bit) = ((c / 32) as usize, 1u32 << (c % 32));
        d[i].effective |= bit;
        d[i].permitted |= bit;
    }
    d
}

fn check(rc: libc::c_int, what: &str) -> anyhow::Result<()> {
    if rc != 0 {
        bail!("{what}: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// Become `user` keeping `keep`. The calling thread must be the only one
/// that matters (threads started later inherit the result).
pub fn drop_to(user: &RunAs, keep: &[u32]) -> anyhow::Result<()> {
    // SAFETY: plain syscalls with valid arguments; failures are checked.
    unsafe {
        let mut bounding_kept = false;
        for cap in 0..=CAP_LAST {
            if !keep.contains(&cap)
                && libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) != 0
            {
                // EINVAL for a capability this kernel does not know: fine.
                // EPERM: no CAP_SETPCAP (a unit's CapabilityBoundingSet
                // without it); the set stays as the unit made it.
                bounding_kept |=
                    std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
            }
        }
        if bounding_kept {
            eprintln!(
                "portier: WARNING: the capability bounding set could not be reduced (no CAP_SETPCAP); it stays as the service manager set it"
            );
        }
        check(
            libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0),
            "keeping capabilities",
        )?;
        let groups = [user.gid];
        check(libc::setgroups(1, groups.as_ptr()), "setgroups")?;
        check(libc::setgid(user.gid), "setgid")?;
        check(libc::setuid(user.uid), "setuid")?;
        set_caps(keep)?;
        check(
            libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0),
            "keepcaps off",
        )?;
        check(
            libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0),
            "no_new_privs",
        )?;
    }
    if unsafe { libc::geteuid() } == 0 {
        bail!("still root after dropping to {}", user.name);
    }
    Ok(())
}

/// Make `caps` ambient, so the binary an upgrade starts (as this same
/// unprivileged user) still has them. Runs between fork and exec: only
/// async-signal-safe calls.
pub fn raise_ambient(caps: &[u32]) -> std::io::Result<()> {
    if caps.is_empty() {
        return Ok(());
    }
    let mut header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: header and data are valid for capget/capset (version 3: two words).
    unsafe {
        if libc::syscall(
            libc::SYS_capget,
            &mut header as *mut CapHeader,
            data.as_mut_ptr(),
        ) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
        for &c in caps {
            data[(c / 32) as usize].inheritable |= 1 << (c % 32);
        }
        if libc::syscall(
            libc::SYS_capset,
            &mut header as *mut CapHeader,
            data.as_ptr(),
        ) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
        for &c in caps {
            if libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                c as libc::c_ulong,
                0,
                0,
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
        }
    }
    Ok(())
}

/// Started by an upgrade, already as the user with ambient capabilities:
/// keep exactly `keep` (effective and permitted), none inheritable or
/// ambient, so nothing this process runs (ACME hooks) inherits them.
pub fn settle(keep: &[u32]) -> anyhow::Result<()> {
    // SAFETY: plain syscalls with valid arguments; failures are checked.
    unsafe {
        check(
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
                0,
                0,
                0,
            ),
            "clearing ambient capabilities",
        )?;
    }
    set_caps(keep)
}

/// Permitted = effective = `keep`, nothing inheritable.
fn set_caps(keep: &[u32]) -> anyhow::Result<()> {
    let mut header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = mask(keep);
    // SAFETY: header and data are valid for capset (version 3: two words).
    let rc = unsafe {
        libc::syscall(
            libc::SYS_capset,
            &mut header as *mut CapHeader,
            data.as_ptr(),
        ) as libc::c_int
    };
    check(rc, "capset")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_split_across_the_two_words() {
        let d = mask(&kept(true));
        assert_eq!(d[0].effective, (1 << 10) | (1 << 12));
        assert_eq!(d[1].effective, 1 << (39 - 32));
        assert_eq!(d[0].permitted, d[0].effective);
        assert_eq!(d[0].inheritable, 0);
        assert_eq!(kept(false), [CAP_NET_BIND_SERVICE]);
    }

    #[test]
    fn only_empty_or_own_paths_are_taken_over() {
        let dir = std::env::temp_dir().join(format!("portier-give-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("full")).expect("mkdir");
        std::fs::create_dir_all(dir.join("empty")).expect("mkdir");
        std::fs::write(dir.join("full/secret"), "x").expect("write");
        let me = RunAs {
            name: "me".into(),
            uid: unsafe { libc::geteuid() },
            gid: unsafe { libc::getegid() },
        };
        // Our own (or empty) paths: taken over.
        give(&me, &[&dir.join("full"), &dir.join("empty")]).expect("own paths");
        if me.uid == 0 {
            let other = RunAs {
                name: "nobody".into(),
                uid: 65534,
                gid: 65534,
            };
            let err = give(&other, &[&dir.join("full")]).expect_err("not empty, not theirs");
            assert!(err.to_string().contains("not empty"), "{err}");
            give(&other, &[&dir.join("empty")]).expect("empty");
        }
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn users_are_looked_up() {
        let root = lookup("root").expect("root exists");
        assert_eq!((root.uid, root.gid), (0, 0));
        assert!(lookup("no-such-user-portier").is_err());
    }
}
