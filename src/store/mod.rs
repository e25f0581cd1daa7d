//! Persistent data: settings (TOML), contacts and call history (SQLite), vCard import and export.

pub mod contacts;
pub mod db;
pub mod files;
pub mod history;
pub mod paths;
pub mod settings;
pub mod vcard;

pub use contacts::{Contact, ContactNumber};
pub use db::{Database, Opened, StoreError};
pub use history::{Direction, HistoryEntry, Outcome};
pub use paths::Paths;
pub use vcard::{VcardError, VcardImport, parse_vcard_bytes, parse_vcards, write_vcards};
