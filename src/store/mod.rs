//! Persistent data: settings (TOML), contacts and call history (SQLite), passwords (the OS
//! keyring, or a private file where none runs), vCard import and export.

pub mod contacts;
pub mod db;
pub mod files;
pub mod history;
pub mod paths;
pub mod secrets;
pub mod settings;
pub mod vcard;

pub use contacts::{Contact, ContactNumber, find_contact};
pub use db::{Database, Opened, StoreError};
pub use history::{Direction, HistoryEntry, Outcome};
pub use paths::Paths;
pub use secrets::{SecretBackend, SecretError, Secrets};
pub use vcard::{VcardError, VcardImport, parse_vcard_bytes, parse_vcards, write_vcards};

#[cfg(test)]
mod tests {
    /// The UI keeps these on a background thread (the database) or shares them (secrets).
    #[test]
    fn store_handles_can_move_to_a_background_thread() {
        fn send<T: Send>() {}
        fn send_sync<T: Send + Sync>() {}
        send::<super::Database>();
        send_sync::<super::Secrets>();
    }
}
