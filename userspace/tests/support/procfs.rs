//! What the tests read of a running process and of the user it runs as:
//! `/proc/PID/status` fields and the ids of `nobody`.
#![allow(dead_code)]

use std::process::Command;

/// A field of `/proc/PID/status` (e.g. `"CapEff:"`), trimmed; empty when
/// the process or the field is gone.
pub fn status_field(pid: impl std::fmt::Display, field: &str) -> String {
    status_text(&format!("/proc/{pid}/status"), field)
}

/// The same for one thread of the process.
pub fn task_status_field(pid: &str, task: &str, field: &str) -> String {
    status_text(&format!("/proc/{pid}/task/{task}/status"), field)
}

fn status_text(path: &str, field: &str) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .map(|v| v.trim().to_string())
        .unwrap_or_default()
}

/// `nobody`'s uid and gid.
pub fn nobody() -> (u32, u32) {
    (id_of("-u"), id_of("-g"))
}

fn id_of(flag: &str) -> u32 {
    let out = Command::new("id")
        .args([flag, "nobody"])
        .output()
        .expect("id");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("id")
}
