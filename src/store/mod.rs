//! Persistent data: settings (TOML), contacts and call history (SQLite).

pub mod contacts;
pub mod db;
pub mod files;
pub mod history;
pub mod paths;
pub mod settings;

pub use contacts::{Contact, ContactNumber};
pub use db::{Database, Opened, StoreError};
pub use history::{Direction, HistoryEntry, Outcome};
pub use paths::Paths;
