//! Hook commands: the `exec` DNS provider (`HOOK add|remove <fqdn>
//! <value>`) and the ACME service's `notify_command`.
//!
//! Owns: one child process at a time per call, in its own process group,
//! killed (the whole group) when it overruns its timeout, and always
//! reaped. Must not: block the runtime (tokio::process only) or leave a
//! process behind. Fed by: a command, args and extra environment (the
//! hook inherits Portier's environment too, where provider credentials
//! live). Emits: the hook's stdout, or an error with stderr's last line.

use std::io;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

use super::DnsError;

/// Run `command args...` with `env` added, for at most `timeout`.
pub async fn run_hook(
    command: &Path,
    args: &[&str],
    env: &[(&str, String)],
    timeout: Duration,
) -> Result<String, DnsError> {
    let spawn_err = |e: io::Error| DnsError::HookSpawn {
        command: command.display().to_string(),
        reason: e.to_string(),
    };
    let mut child = Command::new(command)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own group, so a timeout reaches what the hook started too.
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(spawn_err)?;
    let pid = child.id();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let run = async {
        let (out, err, status) = tokio::join!(read_all(stdout), read_all(stderr), child.wait());
        (out, err, status)
    };
    let (out, err, status) = match tokio::time::timeout(timeout, run).await {
        Ok(done) => done,
        Err(_) => {
            kill_group(pid);
            // Reap it; SIGKILL cannot be ignored, so this returns.
            let _ = child.wait().await;
            return Err(DnsError::HookTimeout {
                command: command.display().to_string(),
                timeout,
            });
        }
    };
    let status = status.map_err(spawn_err)?;
    if status.success() {
        return Ok(out);
    }
    Err(DnsError::HookFailed {
        command: command.display().to_string(),
        status: describe(status),
        message: last_line(&err)
            .or_else(|| last_line(&out))
            .unwrap_or("(no output)")
            .to_string(),
    })
}

/// SIGKILL to the hook's process group (its pgid is its pid).
fn kill_group(pid: Option<u32>) {
    let Some(pgid) = pid.and_then(|p| libc::pid_t::try_from(p).ok()) else {
        return;
    };
    // SAFETY: kill(2) with a negative pid signals that process group; no
    // memory is involved. The group is the child's own (process_group(0)),
    // and the child is not reaped yet, so the id cannot have been reused.
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
}

async fn read_all(pipe: Option<impl AsyncRead + Unpin>) -> String {
    let mut buf = Vec::new();
    if let Some(mut pipe) = pipe {
        // A read error only shortens what we report.
        let _ = pipe.read_to_end(&mut buf).await;
    }
    String::from_utf8_lossy(&buf).into_owned()
}

fn last_line(text: &str) -> Option<&str> {
    text.lines().map(str::trim).rfind(|l| !l.is_empty())
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        (None, None) => status.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Instant;

    use super::*;

    fn sh() -> PathBuf {
        PathBuf::from("/bin/sh")
    }

    #[tokio::test]
    async fn returns_stdout_and_passes_args_and_env() {
        let out = run_hook(
            &sh(),
            &["-c", "echo \"$1 $PORTIER_ACME_FQDN\"", "hook", "add"],
            &[("PORTIER_ACME_FQDN", "_acme-challenge.x.test".into())],
            Duration::from_secs(5),
        )
        .await
        .expect("runs");
        assert_eq!(out, "add _acme-challenge.x.test\n");
    }

    #[tokio::test]
    async fn a_failure_carries_the_last_line_of_stderr() {
        let err = run_hook(
            &sh(),
            &["-c", "echo first >&2; echo 'zone not found' >&2; exit 3"],
            &[],
            Duration::from_secs(5),
        )
        .await
        .expect_err("fails");
        let text = err.to_string();
        assert!(text.contains("exit status 3"), "{text}");
        assert!(text.ends_with("zone not found"), "{text}");
    }

    #[tokio::test]
    async fn a_hook_that_hangs_is_killed_with_its_children() {
        let marker = std::env::temp_dir().join(format!("portier-hook-test-{}", std::process::id()));
        let script = format!("sleep 30 & echo $! > {}; wait", marker.display());
        let started = Instant::now();
        let err = run_hook(&sh(), &["-c", &script], &[], Duration::from_millis(300))
            .await
            .expect_err("times out");
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(err.to_string().contains("timed out after 0.3 s"), "{err}");
        // The background sleep was in the group: it is gone as well.
        let pid = std::fs::read_to_string(&marker).expect("marker");
        let _ = std::fs::remove_file(&marker);
        let proc_dir = PathBuf::from(format!("/proc/{}", pid.trim()));
        let deadline = Instant::now() + Duration::from_secs(2);
        while proc_dir.exists() && !is_zombie(&proc_dir) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            !proc_dir.exists() || is_zombie(&proc_dir),
            "sleep {pid} survived"
        );
    }

    fn is_zombie(proc_dir: &Path) -> bool {
        std::fs::read_to_string(proc_dir.join("stat"))
            .map(|s| s.contains(") Z "))
            .unwrap_or(true)
    }

    #[tokio::test]
    async fn a_missing_command_says_so() {
        let err = run_hook(
            Path::new("/nonexistent/hook"),
            &[],
            &[],
            Duration::from_secs(1),
        )
        .await
        .expect_err("missing");
        assert!(err.to_string().contains("/nonexistent/hook"), "{err}");
    }
}
