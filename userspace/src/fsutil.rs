//! Writing secrets to disk: the one atomic, private write (temp file in
//! the same directory, mode 0600 whatever the umask, fsync, rename, fsync
//! the directory). Certificates, the ACME account key and ACME state use it.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

static TEMP_FILES: AtomicU64 = AtomicU64::new(0);

/// Replace `path` with `bytes`, mode 0600: a reader sees the old file or
/// the new one, never half of one, even across a crash. The temporary
/// file is named `.<name>.tmp-<pid>-<n>` (no `.pem` ending, so a directory
/// watcher never lists it) and is removed on failure.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(
        ".{file_name}.tmp-{}-{}",
        std::process::id(),
        TEMP_FILES.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Create `dir` (and parents) with mode 0700, and make an existing one
/// 0700 too: it holds keys.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// A secret from a file only its owner may read (mode without group or
/// other bits), trimmed; `what` names the setting in errors.
pub fn read_secret(path: &Path, what: &str) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{what} {}: {e}", path.display()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(format!(
            "{what} {}: readable by group or others (chmod 600)",
            path.display()
        ));
    }
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("{what} {}: {e}", path.display()))?;
    Ok(text.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_writes_and_dirs() {
        let dir = std::env::temp_dir().join(format!("portier-fsutil-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        private_dir(&dir.join("state")).expect("mkdir");
        let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode(&dir.join("state")), 0o700);
        let f = dir.join("state/key.json");
        write_private(&f, b"one").expect("write");
        write_private(&f, b"two").expect("replace");
        assert_eq!(std::fs::read(&f).expect("read"), b"two");
        assert_eq!(mode(&f), 0o600);
        assert_eq!(std::fs::read_dir(dir.join("state")).expect("ls").count(), 1);
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
