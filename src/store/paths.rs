//! Where Dialtone keeps its files: the XDG config, data and runtime directories.

use std::path::{Path, PathBuf};

/// The directories of one Dialtone installation (the user's, or a test's temporary one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// Settings and the password file fallback (`$XDG_CONFIG_HOME/dialtone`).
    pub config_dir: PathBuf,
    /// Contacts and history (`$XDG_DATA_HOME/dialtone`).
    pub data_dir: PathBuf,
    /// Sockets and other per-session files (`$XDG_RUNTIME_DIR/dialtone`), when the session has one.
    pub runtime_dir: Option<PathBuf>,
}

impl Paths {
    /// The user's directories; `None` when no home directory is known (no `HOME`).
    pub fn from_env() -> Option<Paths> {
        let dirs = directories::ProjectDirs::from("org", "dialtone", "dialtone")?;
        Some(Paths {
            config_dir: dirs.config_dir().to_path_buf(),
            data_dir: dirs.data_dir().to_path_buf(),
            runtime_dir: dirs.runtime_dir().map(Path::to_path_buf),
        })
    }

    /// Everything under one directory (`config/`, `data/`, `run/`): for tests and portable installs.
    pub fn at(dir: &Path) -> Paths {
        Paths {
            config_dir: dir.join("config"),
            data_dir: dir.join("data"),
            runtime_dir: Some(dir.join("run")),
        }
    }

    /// `settings.toml` in the config directory (the same file as `Settings::default_path`).
    pub fn settings_file(&self) -> PathBuf {
        self.config_dir.join("settings.toml")
    }

    /// The contacts and history database.
    pub fn database_file(&self) -> PathBuf {
        self.data_dir.join("dialtone.db")
    }

    /// Passwords, where no keyring service runs.
    pub fn passwords_file(&self) -> PathBuf {
        self.config_dir.join("passwords.toml")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_at_a_directory_keep_everything_under_it() {
        let p = Paths::at(Path::new("/tmp/x"));
        assert_eq!(p.settings_file(), Path::new("/tmp/x/config/settings.toml"));
        assert_eq!(p.database_file(), Path::new("/tmp/x/data/dialtone.db"));
        assert_eq!(
            p.passwords_file(),
            Path::new("/tmp/x/config/passwords.toml")
        );
        assert_eq!(p.runtime_dir.as_deref(), Some(Path::new("/tmp/x/run")));
    }

    #[test]
    fn settings_file_from_env_is_the_settings_default_path() {
        if let Some(p) = Paths::from_env() {
            assert_eq!(
                Some(p.settings_file()),
                crate::store::settings::Settings::default_path()
            );
            assert!(p.data_dir.ends_with("dialtone"), "{:?}", p.data_dir);
        }
    }
}
