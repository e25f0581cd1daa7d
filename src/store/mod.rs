//! Persistent data: settings (TOML). Contacts and history come with the desktop app.

pub mod settings;
