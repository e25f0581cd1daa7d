//! Account passwords: in the OS keyring (the freedesktop Secret Service over D-Bus, through
//! keyring-rs's pure-Rust zbus store), or, where no keyring service runs (a bare Linux session,
//! CI), in `passwords.toml` in the config directory, readable only by the user.
//!
//! Which one is in use is decided once, at [`Secrets::open`], and said in a sentence the UI
//! shows. The keyring is given [`KEYRING_PROBE_TIMEOUT`] to answer, so a missing or stuck
//! service never holds up start-up. Passwords left in the file by an earlier session without a
//! keyring move into the keyring when one appears. Nothing here logs a password or puts one in
//! an error message.

use crate::store::files;
use crate::store::paths::Paths;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

/// The Secret Service `service` attribute of Dialtone's items (`username` is the key).
pub const KEYRING_SERVICE: &str = "dialtone";
/// How long the keyring gets to answer at start-up before the file is used instead.
pub const KEYRING_PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one keyring read or write may take (an unlock prompt may be on screen).
pub const KEYRING_OP_TIMEOUT: Duration = Duration::from_secs(30);

/// Where passwords are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretBackend {
    /// The OS keyring (Secret Service).
    Keyring,
    /// A file readable only by the user.
    File(PathBuf),
}

impl SecretBackend {
    /// A sentence for the settings page.
    pub fn describe(&self) -> String {
        match self {
            SecretBackend::Keyring => "Passwords are stored in the system keyring.".into(),
            SecretBackend::File(path) => format!(
                "Passwords are stored in {} (readable only by you) because no keyring service \
                 is running.",
                path.display()
            ),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    #[error("the keyring did not answer within {} s", .0.as_secs())]
    Timeout(Duration),
    #[error("keyring: {0}")]
    Keyring(String),
    #[error("cannot read the password file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the password file {path} is broken ({why}); it was left untouched")]
    Broken { path: PathBuf, why: String },
    #[error("cannot write the password file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The password store of one Dialtone installation. Passwords are never cached in memory.
pub struct Secrets {
    keyring: Option<Keyring>,
    file: PathBuf,
    keyring_problem: Option<String>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets")
            .field("backend", &self.backend())
            .field("keyring_problem", &self.keyring_problem)
            .finish()
    }
}

impl Secrets {
    /// The keyring if a Secret Service answers within [`KEYRING_PROBE_TIMEOUT`], else the file
    /// `paths.passwords_file()`.
    pub fn open(paths: &Paths) -> Secrets {
        let file = paths.passwords_file();
        match Keyring::connect() {
            Ok(keyring) => {
                let secrets = Secrets {
                    keyring: Some(keyring),
                    file,
                    keyring_problem: None,
                };
                secrets.move_file_into_keyring();
                secrets
            }
            Err(problem) => {
                tracing::info!(%problem, file = %file.display(), "no keyring: passwords go to a private file");
                Secrets {
                    keyring: None,
                    file,
                    keyring_problem: Some(problem),
                }
            }
        }
    }

    /// Always the file at `path`, never the keyring (tests; a user who wants no keyring).
    pub fn file_only(path: PathBuf) -> Secrets {
        Secrets {
            keyring: None,
            file: path,
            keyring_problem: Some("the keyring was not asked".into()),
        }
    }

    pub fn backend(&self) -> SecretBackend {
        match self.keyring {
            Some(_) => SecretBackend::Keyring,
            None => SecretBackend::File(self.file.clone()),
        }
    }

    /// Why the keyring is not used, when it is not (for a details line or a log).
    pub fn keyring_problem(&self) -> Option<&str> {
        self.keyring_problem.as_deref()
    }

    /// The password stored under `key` (an account's address of record), if any.
    pub fn get(&self, key: &str) -> Result<Option<String>, SecretError> {
        if let Some(k) = &self.keyring
            && let Some(v) = k.get(key)?
        {
            return Ok(Some(v));
        }
        // With a keyring, the file only holds what could not be moved yet.
        Ok(read_file(&self.file)?.remove(key))
    }

    /// Stores (or replaces) the password under `key`.
    pub fn set(&self, key: &str, value: &str) -> Result<(), SecretError> {
        match &self.keyring {
            Some(k) => k.set(key, value),
            None => {
                let mut all = read_file(&self.file)?;
                all.insert(key.to_string(), value.to_string());
                write_file(&self.file, &all)
            }
        }
    }

    /// Removes the password under `key`; nothing stored is not an error.
    pub fn delete(&self, key: &str) -> Result<(), SecretError> {
        if let Some(k) = &self.keyring {
            k.delete(key)?;
        }
        let mut all = read_file(&self.file)?;
        if all.remove(key).is_some() {
            write_file(&self.file, &all)?;
        }
        Ok(())
    }

    /// Moves passwords from the file into the keyring; the file goes once all are in.
    fn move_file_into_keyring(&self) {
        let Some(k) = &self.keyring else { return };
        let all = match read_file(&self.file) {
            Ok(all) if all.is_empty() => return,
            Ok(all) => all,
            Err(e) => {
                tracing::warn!(error = %e, "passwords stay in the file");
                return;
            }
        };
        let mut left = BTreeMap::new();
        for (key, value) in all {
            if let Err(e) = k.set(&key, &value) {
                tracing::warn!(%key, error = %e, "password not moved into the keyring");
                left.insert(key, value);
            }
        }
        let result = if left.is_empty() {
            std::fs::remove_file(&self.file).map_err(|source| SecretError::Write {
                path: self.file.clone(),
                source,
            })
        } else {
            write_file(&self.file, &left)
        };
        match result {
            Ok(()) => tracing::info!(
                left = left.len(),
                "passwords moved from the file into the keyring"
            ),
            Err(e) => tracing::warn!(error = %e, "password file not updated"),
        }
    }
}

/// Runs `f` on its own thread and waits at most `limit` for it: a keyring call that hangs
/// (a D-Bus service that never answers) leaves its thread behind instead of the caller.
fn with_timeout<T: Send + 'static>(
    limit: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, SecretError> {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("keyring".into())
        .spawn(move || {
            let _ = tx.send(f());
        })
        .map_err(|e| SecretError::Keyring(format!("cannot start a thread: {e}")))?;
    rx.recv_timeout(limit)
        .map_err(|_| SecretError::Timeout(limit))
}

/// A connection to the Secret Service.
struct Keyring {
    store: Arc<keyring_core::CredentialStore>,
}

impl Keyring {
    #[cfg(target_os = "linux")]
    fn connect() -> Result<Keyring, String> {
        let store = with_timeout(KEYRING_PROBE_TIMEOUT, || {
            zbus_secret_service_keyring_store::Store::new()
        })
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("no Secret Service: {e}"))?;
        Ok(Keyring { store })
    }

    #[cfg(not(target_os = "linux"))]
    fn connect() -> Result<Keyring, String> {
        Err("this build has no keyring store for this platform".into())
    }

    fn entry(
        store: &Arc<keyring_core::CredentialStore>,
        key: &str,
    ) -> keyring_core::Result<keyring_core::Entry> {
        let label = format!("Dialtone password for {key}");
        let mods = std::collections::HashMap::from([("label", label.as_str())]);
        keyring_core::Entry::new_in_store_with_modifiers(store, KEYRING_SERVICE, key, &mods)
    }

    fn get(&self, key: &str) -> Result<Option<String>, SecretError> {
        let (store, key) = (self.store.clone(), key.to_string());
        with_timeout(KEYRING_OP_TIMEOUT, move || {
            match Self::entry(&store, &key)?.get_password() {
                Ok(v) => Ok(Some(v)),
                Err(keyring_core::Error::NoEntry) => Ok(None),
                Err(e) => Err(e),
            }
        })?
        .map_err(keyring_error)
    }

    fn set(&self, key: &str, value: &str) -> Result<(), SecretError> {
        let (store, key, value) = (self.store.clone(), key.to_string(), value.to_string());
        with_timeout(KEYRING_OP_TIMEOUT, move || {
            Self::entry(&store, &key)?.set_password(&value)
        })?
        .map_err(keyring_error)
    }

    fn delete(&self, key: &str) -> Result<(), SecretError> {
        let (store, key) = (self.store.clone(), key.to_string());
        with_timeout(KEYRING_OP_TIMEOUT, move || {
            match Self::entry(&store, &key)?.delete_credential() {
                Ok(()) | Err(keyring_core::Error::NoEntry) => Ok(()),
                Err(e) => Err(e),
            }
        })?
        .map_err(keyring_error)
    }
}

/// keyring-core's messages name no secret, except `Ambiguous`, which lists entries: kept short.
fn keyring_error(e: keyring_core::Error) -> SecretError {
    match e {
        keyring_core::Error::Ambiguous(items) => {
            SecretError::Keyring(format!("{} keyring items match one account", items.len()))
        }
        other => SecretError::Keyring(other.to_string()),
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct PasswordFile {
    #[serde(default)]
    passwords: BTreeMap<String, String>,
}

/// The file's passwords (none if it does not exist). A file others can read is made private.
fn read_file(path: &Path) -> Result<BTreeMap<String, String>, SecretError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(source) => {
            return Err(SecretError::Read {
                path: path.into(),
                source,
            });
        }
    };
    make_private(path).map_err(|source| SecretError::Read {
        path: path.into(),
        source,
    })?;
    let file: PasswordFile = toml::from_str(&text).map_err(|e| SecretError::Broken {
        path: path.into(),
        // toml quotes the offending line, which may hold a password: only the position.
        why: match e.span() {
            Some(span) => format!("not valid TOML at byte {}", span.start),
            None => "not valid TOML".into(),
        },
    })?;
    Ok(file.passwords)
}

fn write_file(path: &Path, passwords: &BTreeMap<String, String>) -> Result<(), SecretError> {
    let err = |source| SecretError::Write {
        path: path.into(),
        source,
    };
    let text = toml::to_string(&PasswordFile {
        passwords: passwords.clone(),
    })
    .map_err(|e| err(std::io::Error::other(e.to_string())))?;
    let mut out = String::from(
        "# Dialtone account passwords, kept here because no keyring service was running.\n",
    );
    out.push_str(&text);
    make_private(path)
        .or_else(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Ok(()),
            _ => Err(e),
        })
        .map_err(err)?;
    files::atomic_write(path, out.as_bytes(), 0o600).map_err(err)
}

#[cfg(unix)]
fn make_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)?.permissions().mode();
    if mode & 0o077 != 0 {
        tracing::warn!(file = %path.display(), "password file was readable by others: made private");
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

#[cfg(not(unix))]
fn make_private(_path: &Path) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::time::Instant;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn the_file_store_round_trips_passwords_in_a_private_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config/passwords.toml");
        let s = Secrets::file_only(path.clone());
        assert_eq!(s.backend(), SecretBackend::File(path.clone()));
        assert_eq!(s.get("sip:alice@example.com").unwrap(), None);
        s.set("sip:alice@example.com", "pä\"ss = word\n#1").unwrap();
        s.set("sip:bob@example.com", "bobpw").unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(
            s.get("sip:alice@example.com").unwrap().as_deref(),
            Some("pä\"ss = word\n#1")
        );
        s.set("sip:alice@example.com", "new").unwrap();
        assert_eq!(
            s.get("sip:alice@example.com").unwrap().as_deref(),
            Some("new")
        );
        s.delete("sip:alice@example.com").unwrap();
        s.delete("sip:nobody@example.com").unwrap();
        assert_eq!(s.get("sip:alice@example.com").unwrap(), None);
        // A second instance (another process) reads the same file.
        let again = Secrets::file_only(path.clone());
        assert_eq!(
            again.get("sip:bob@example.com").unwrap().as_deref(),
            Some("bobpw")
        );
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["passwords.toml"]);
    }

    #[test]
    fn a_password_file_others_can_read_is_made_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("passwords.toml");
        std::fs::write(&path, "[passwords]\n\"sip:a@b\" = \"pw\"\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let s = Secrets::file_only(path.clone());
        assert_eq!(s.get("sip:a@b").unwrap().as_deref(), Some("pw"));
        assert_eq!(mode(&path), 0o600);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        s.set("sip:c@d", "x").unwrap();
        assert_eq!(mode(&path), 0o600);
    }

    #[test]
    fn a_broken_password_file_is_an_error_that_shows_no_password_and_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("passwords.toml");
        let text = "[passwords]\n\"sip:a@b\" = \"hunter2\n";
        std::fs::write(&path, text).unwrap();
        let s = Secrets::file_only(path.clone());
        let err = s.get("sip:a@b").unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert!(err.to_string().contains("passwords.toml"), "{err}");
        assert!(s.set("sip:c@d", "x").is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    }

    #[test]
    fn the_file_backend_sentence_names_the_file() {
        let b = SecretBackend::File(PathBuf::from("/home/u/.config/dialtone/passwords.toml"));
        assert_eq!(
            b.describe(),
            "Passwords are stored in /home/u/.config/dialtone/passwords.toml (readable only by \
             you) because no keyring service is running."
        );
        assert!(SecretBackend::Keyring.describe().contains("keyring"));
    }

    #[test]
    fn a_call_that_hangs_times_out_without_holding_up_the_caller() {
        let start = Instant::now();
        let r = with_timeout(Duration::from_millis(100), || {
            std::thread::sleep(Duration::from_secs(5));
        });
        assert!(matches!(r, Err(SecretError::Timeout(_))));
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(with_timeout(Duration::from_secs(5), || 7).unwrap(), 7);
    }

    #[test]
    fn secrets_debug_shows_no_password() {
        let dir = tempfile::tempdir().unwrap();
        let s = Secrets::file_only(dir.path().join("p.toml"));
        s.set("k", "topsecret").unwrap();
        assert!(!format!("{s:?}").contains("topsecret"));
    }
}
