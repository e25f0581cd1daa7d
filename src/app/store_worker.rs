//! Disk work off the UI thread: the contacts/history database, vCard files and the settings file
//! are touched only by one worker thread. The UI sends `StoreOp`s and gets `StoreUpdate`s back
//! (fresh contact and history lists after every change), so a slow disk never freezes a frame.
//!
//! Tests use `StoreWorker::inline`, which runs each operation at once on the caller's thread, so a
//! kittest harness sees the result in the same frame.

use crate::engine::Waker;
use crate::store::settings::Settings;
use crate::store::{
    Contact, Database, HistoryEntry, Secrets, StoreError, parse_vcard_bytes, write_vcards,
};
use std::cell::RefCell;
use std::path::PathBuf;
use std::sync::mpsc;

/// How many history rows the Recents page shows.
pub const HISTORY_LIMIT: usize = 500;

#[derive(Debug, Clone)]
pub enum StoreOp {
    SaveContact(Contact),
    DeleteContact(i64),
    ImportVcf(PathBuf),
    ExportVcf(PathBuf),
    AddCall(HistoryEntry),
    MarkHistorySeen,
    DeleteCall(i64),
    ClearHistory,
    /// Save settings (passwords are stripped) and the passwords given, keyed by account URI.
    SaveSettings {
        settings: Box<Settings>,
        passwords: Vec<(String, String)>,
    },
}

#[derive(Debug, Clone)]
pub enum StoreUpdate {
    Contacts(Vec<Contact>),
    History {
        entries: Vec<HistoryEntry>,
        unseen_missed: u64,
    },
    /// Something the user should read (an import result, an error).
    Notice(String),
    Error(String),
}

struct Core {
    db: Option<Database>,
    settings_path: Option<PathBuf>,
    secrets: Option<Secrets>,
}

impl Core {
    fn contacts(&self) -> Option<StoreUpdate> {
        let db = self.db.as_ref()?;
        Some(match db.list_contacts() {
            Ok(c) => StoreUpdate::Contacts(c),
            Err(e) => StoreUpdate::Error(format!("cannot read contacts: {e}")),
        })
    }

    fn history(&self) -> Option<StoreUpdate> {
        let db = self.db.as_ref()?;
        Some(
            match (db.list_history(HISTORY_LIMIT), db.unseen_missed_calls()) {
                (Ok(entries), Ok(unseen_missed)) => StoreUpdate::History {
                    entries,
                    unseen_missed,
                },
                (Err(e), _) | (_, Err(e)) => {
                    StoreUpdate::Error(format!("cannot read the call history: {e}"))
                }
            },
        )
    }

    fn run(&mut self, op: StoreOp, out: &mut Vec<StoreUpdate>) {
        let r = self.apply(op, out);
        if let Err(e) = r {
            tracing::warn!("store: {e}");
            out.push(StoreUpdate::Error(e));
        }
    }

    fn apply(&mut self, op: StoreOp, out: &mut Vec<StoreUpdate>) -> Result<(), String> {
        let no_db = || "contacts and history are unavailable (the database could not be opened)";
        let err = |what: &str, e: StoreError| format!("cannot {what}: {e}");
        match op {
            StoreOp::SaveContact(c) => {
                let db = self.db.as_mut().ok_or_else(no_db)?;
                db.save_contact(&c)
                    .map_err(|e| err("save the contact", e))?;
                out.extend(self.contacts());
            }
            StoreOp::DeleteContact(id) => {
                let db = self.db.as_mut().ok_or_else(no_db)?;
                db.delete_contact(id)
                    .map_err(|e| err("delete the contact", e))?;
                out.extend(self.contacts());
            }
            StoreOp::ImportVcf(path) => {
                let db = self.db.as_mut().ok_or_else(no_db)?;
                let bytes =
                    std::fs::read(&path).map_err(|e| format!("cannot read {path:?}: {e}"))?;
                let import = parse_vcard_bytes(&bytes)
                    .map_err(|e| format!("{path:?} is not a vCard file: {e}"))?;
                db.save_contacts(&import.contacts)
                    .map_err(|e| err("save the imported contacts", e))?;
                let mut msg = format!(
                    "Imported {} contact(s) from {}",
                    import.contacts.len(),
                    path.display()
                );
                if !import.skipped.is_empty() {
                    msg.push_str(&format!(
                        "; skipped {}: {}",
                        import.skipped.len(),
                        import.skipped.join("; ")
                    ));
                }
                out.push(StoreUpdate::Notice(msg));
                out.extend(self.contacts());
            }
            StoreOp::ExportVcf(path) => {
                let db = self.db.as_ref().ok_or_else(no_db)?;
                let contacts = db
                    .list_contacts()
                    .map_err(|e| err("read the contacts", e))?;
                crate::store::files::atomic_write(&path, write_vcards(&contacts).as_bytes(), 0o644)
                    .map_err(|e| format!("cannot write {path:?}: {e}"))?;
                out.push(StoreUpdate::Notice(format!(
                    "Exported {} contact(s) to {}",
                    contacts.len(),
                    path.display()
                )));
            }
            StoreOp::AddCall(entry) => {
                let db = self.db.as_mut().ok_or_else(no_db)?;
                db.add_call(&entry).map_err(|e| err("record the call", e))?;
                out.extend(self.history());
            }
            StoreOp::MarkHistorySeen => {
                let db = self.db.as_mut().ok_or_else(no_db)?;
                db.mark_history_seen()
                    .map_err(|e| err("update the history", e))?;
                out.extend(self.history());
            }
            StoreOp::DeleteCall(id) => {
                let db = self.db.as_mut().ok_or_else(no_db)?;
                db.delete_call(id)
                    .map_err(|e| err("delete the history entry", e))?;
                out.extend(self.history());
            }
            StoreOp::ClearHistory => {
                let db = self.db.as_mut().ok_or_else(no_db)?;
                db.clear_history()
                    .map_err(|e| err("clear the history", e))?;
                out.extend(self.history());
            }
            StoreOp::SaveSettings {
                settings,
                passwords,
            } => {
                if let Some(secrets) = &self.secrets {
                    for (key, value) in passwords {
                        let r = if value.is_empty() {
                            secrets.delete(&key)
                        } else {
                            secrets.set(&key, &value)
                        };
                        r.map_err(|e| format!("cannot store the password of {key}: {e}"))?;
                    }
                }
                let Some(path) = &self.settings_path else {
                    out.push(StoreUpdate::Notice(
                        "Settings applied for this session (they came from the command line and are not saved)"
                            .into(),
                    ));
                    return Ok(());
                };
                let to_save = if self.secrets.is_some() {
                    settings.without_passwords()
                } else {
                    *settings
                };
                to_save
                    .save(path)
                    .map_err(|e| format!("cannot save the settings: {e}"))?;
                out.push(StoreUpdate::Notice(format!(
                    "Settings saved to {}",
                    path.display()
                )));
            }
        }
        Ok(())
    }
}

enum Mode {
    Thread(mpsc::Sender<StoreOp>),
    Inline(Box<RefCell<Core>>, RefCell<Vec<StoreUpdate>>),
}

pub struct StoreWorker {
    mode: Mode,
    updates: Option<mpsc::Receiver<StoreUpdate>>,
}

impl StoreWorker {
    /// Starts the worker thread; it sends the contact and history lists at once.
    pub fn spawn(
        db: Option<Database>,
        settings_path: Option<PathBuf>,
        secrets: Option<Secrets>,
        waker: Waker,
    ) -> StoreWorker {
        let (ops_tx, ops_rx) = mpsc::channel::<StoreOp>();
        let (up_tx, up_rx) = mpsc::channel();
        let mut core = Core {
            db,
            settings_path,
            secrets,
        };
        let spawned = std::thread::Builder::new()
            .name("store".into())
            .spawn(move || {
                let send = |u: StoreUpdate| {
                    let _ = up_tx.send(u);
                };
                core.contacts().into_iter().for_each(send);
                core.history().into_iter().for_each(send);
                waker();
                while let Ok(op) = ops_rx.recv() {
                    let mut out = Vec::new();
                    core.run(op, &mut out);
                    out.into_iter().for_each(send);
                    waker();
                }
            });
        if let Err(e) = spawned {
            tracing::error!("cannot start the store thread: {e}");
        }
        StoreWorker {
            mode: Mode::Thread(ops_tx),
            updates: Some(up_rx),
        }
    }

    /// Runs every operation at once on the caller's thread (tests).
    pub fn inline(db: Option<Database>, settings_path: Option<PathBuf>) -> StoreWorker {
        let core = Core {
            db,
            settings_path,
            secrets: None,
        };
        let mut first = Vec::new();
        first.extend(core.contacts());
        first.extend(core.history());
        StoreWorker {
            mode: Mode::Inline(Box::new(RefCell::new(core)), RefCell::new(first)),
            updates: None,
        }
    }

    pub fn send(&self, op: StoreOp) {
        match &self.mode {
            Mode::Thread(tx) => {
                if tx.send(op).is_err() {
                    tracing::warn!("store thread gone; operation dropped");
                }
            }
            Mode::Inline(core, out) => core.borrow_mut().run(op, &mut out.borrow_mut()),
        }
    }

    /// Updates ready now.
    pub fn drain(&self) -> Vec<StoreUpdate> {
        match (&self.mode, &self.updates) {
            (Mode::Inline(_, out), _) => std::mem::take(&mut out.borrow_mut()),
            (_, Some(rx)) => rx.try_iter().collect(),
            _ => Vec::new(),
        }
    }
}
