//! Careful file writes: atomic replacement and moving a broken file aside without overwriting.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Replaces `path` with `bytes` atomically: a fresh temporary file in the same directory is
/// written and fsynced, then renamed over `path`, then the directory is fsynced. A crash leaves
/// either the old file or the new one, never a mix. The new file keeps the permissions of the
/// file it replaces; a file that did not exist yet gets `new_mode` (Unix permission bits).
pub fn atomic_write(path: &Path, bytes: &[u8], new_mode: u32) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    fs::create_dir_all(dir)?;
    let mode = existing_mode(path)?.unwrap_or(new_mode);
    let (tmp, mut file) = create_temp(dir, path, mode)?;
    let written = file
        .write_all(bytes)
        .and_then(|()| file.sync_all())
        .and_then(|()| fs::rename(&tmp, path));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    // The rename is durable once the directory entry is.
    File::open(dir)?.sync_all()
}

#[cfg(unix)]
fn existing_mode(path: &Path) -> io::Result<Option<u32>> {
    use std::os::unix::fs::PermissionsExt;
    match fs::metadata(path) {
        Ok(m) => Ok(Some(m.permissions().mode() & 0o7777)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(not(unix))]
fn existing_mode(_path: &Path) -> io::Result<Option<u32>> {
    Ok(None)
}

/// A new, exclusively created `.NAME.tmp-PID-N` next to `path`, with `mode` from the start (so
/// a secret is never readable by others, not even for a moment).
fn create_temp(dir: &Path, path: &Path, mode: u32) -> io::Result<(PathBuf, File)> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    for n in 0..1000 {
        let tmp = dir.join(format!(".{name}.tmp-{}-{n}", std::process::id()));
        let mut opts = OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(mode);
        }
        match opts.open(&tmp) {
            Ok(file) => {
                set_mode(&tmp, mode)?; // the umask may have taken bits away
                return Ok((tmp, file));
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("no free temporary file name next to {}", path.display()),
    ))
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) -> io::Result<()> {
    Ok(())
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Renames `path` to `PATH.corrupt-<unix time>` (or `…-2`, `…-3` when that name is taken) and
/// returns the new name. Never replaces an existing file.
pub fn move_aside(path: &Path, unix_time: u64) -> io::Result<PathBuf> {
    let base = format!("{}.corrupt-{unix_time}", path.display());
    for n in 1..1000 {
        let target = if n == 1 {
            PathBuf::from(&base)
        } else {
            PathBuf::from(format!("{base}-{n}"))
        };
        if rename_no_replace(path, &target)? {
            return Ok(target);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("no free name to move {} aside", path.display()),
    ))
}

/// Renames `from` to `to` unless `to` exists (then `Ok(false)`). A hard link followed by an
/// unlink refuses to replace atomically; where links are not supported, an existence check
/// before the rename does.
fn rename_no_replace(from: &Path, to: &Path) -> io::Result<bool> {
    match fs::hard_link(from, to) {
        Ok(()) => fs::remove_file(from).map(|()| true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(e),
        Err(_) if fs::symlink_metadata(to).is_ok() => Ok(false),
        Err(_) => fs::rename(from, to).map(|()| true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn atomic_write_replaces_the_file_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/a.toml");
        atomic_write(&path, b"one", 0o600).unwrap();
        atomic_write(&path, b"two", 0o600).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(names(&dir.path().join("sub")), ["a.toml"]);
    }

    #[cfg(unix)]
    #[test]
    fn atomic_write_gives_a_new_file_its_mode_and_keeps_an_old_files_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a");
        atomic_write(&path, b"x", 0o600).unwrap();
        assert_eq!(mode(&path), 0o600);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        atomic_write(&path, b"y", 0o600).unwrap();
        assert_eq!(mode(&path), 0o640);
    }

    #[test]
    fn move_aside_never_replaces_an_earlier_copy() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.toml");
        fs::write(&path, "first").unwrap();
        let a = move_aside(&path, 1700000000).unwrap();
        fs::write(&path, "second").unwrap();
        let b = move_aside(&path, 1700000000).unwrap();
        assert_eq!(a, dir.path().join("s.toml.corrupt-1700000000"));
        assert_eq!(b, dir.path().join("s.toml.corrupt-1700000000-2"));
        assert_eq!(fs::read_to_string(a).unwrap(), "first");
        assert_eq!(fs::read_to_string(b).unwrap(), "second");
        assert!(!path.exists());
    }

    #[test]
    fn move_aside_of_a_missing_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(move_aside(&dir.path().join("nope"), 1).is_err());
    }
}
