//! Persistent data: settings (TOML). Contacts and history come with the desktop app.

pub mod files;
pub mod paths;
pub mod settings;

pub use paths::Paths;
