//! The SQLite database that holds contacts and call history.
//!
//! WAL mode and a busy timeout let two Dialtone processes use one file. The schema version is
//! `PRAGMA user_version`; [`MIGRATIONS`] brings an older file up to date in one transaction. A
//! file that is not a SQLite database, or fails SQLite's integrity check, is moved aside
//! (`dialtone.db.corrupt-<unix time>`, never overwritten) and a fresh database takes its place;
//! the open call returns a message saying so for the UI. A file from a newer Dialtone is an
//! error and is left alone.

use crate::store::files;
use rusqlite::{Connection, ErrorCode, OpenFlags, Transaction, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a write waits for another process's write to finish before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Schema steps: entry `i` takes the database from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: contacts (numbers in order, search keys kept with them) and call history.
    "CREATE TABLE contacts (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        name_key TEXT NOT NULL,
        favourite INTEGER NOT NULL DEFAULT 0,
        note TEXT NOT NULL DEFAULT '',
        search_text TEXT NOT NULL,
        search_digits TEXT NOT NULL
    );
    CREATE INDEX contacts_order ON contacts (favourite DESC, name_key, id);
    CREATE TABLE contact_numbers (
        contact_id INTEGER NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        label TEXT NOT NULL,
        uri TEXT NOT NULL,
        PRIMARY KEY (contact_id, position)
    );
    CREATE TABLE history (
        id INTEGER PRIMARY KEY,
        peer TEXT NOT NULL,
        name TEXT NOT NULL,
        direction TEXT NOT NULL,
        outcome TEXT NOT NULL,
        account TEXT,
        started_at INTEGER NOT NULL,
        duration_s REAL NOT NULL,
        seen INTEGER NOT NULL
    );
    CREATE INDEX history_newest ON history (started_at DESC, id DESC);
    CREATE INDEX history_unseen ON history (seen, outcome);",
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Everything that can go wrong with the database.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("cannot create the data directory {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open the database {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error(
        "the database {path} is from a newer Dialtone (schema {found}, this one knows up to \
         {SCHEMA_VERSION}); it was left untouched"
    )]
    TooNew { path: PathBuf, found: i64 },
    #[error("the database {path} is broken and could not be moved aside: {source}")]
    MoveAside {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("database error: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("no {what} with id {id}")]
    NotFound { what: &'static str, id: i64 },
    #[error("{0}")]
    Invalid(String),
}

/// An open database: contacts (`contacts.rs`) and history (`history.rs`) add their methods.
#[derive(Debug)]
pub struct Database {
    pub(crate) conn: Connection,
}

/// A database opened after the file was found broken and moved aside.
#[derive(Debug)]
pub struct Opened {
    pub db: Database,
    /// For the UI: what was wrong and where the old file went; `None` when all was well.
    pub recovered: Option<String>,
}

impl Database {
    /// Opens (creating if needed) the database at `path`, up to date with this build's schema.
    /// A broken file is moved aside and replaced by an empty database (see `Opened::recovered`).
    pub fn open(path: &Path) -> Result<Opened, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Dir {
                path: dir.into(),
                source,
            })?;
        }
        match Self::open_checked(path) {
            Ok(db) => Ok(Opened {
                db,
                recovered: None,
            }),
            Err(OpenFailure::Broken(why)) => {
                let aside = move_aside_with_wal(path)?;
                let db = Self::open_checked(path).map_err(|f| f.into_error(path))?;
                Ok(Opened {
                    db,
                    recovered: Some(format!(
                        "The contacts and history database {} could not be read ({why}). It was \
                         moved to {} and a new, empty database was started.",
                        path.display(),
                        aside.display()
                    )),
                })
            }
            Err(f) => Err(f.into_error(path)),
        }
    }

    /// A private database in memory (tests, or a session with nowhere to write).
    pub fn open_in_memory() -> Result<Database, StoreError> {
        let conn = Connection::open_in_memory()?;
        let mut db = Database { conn };
        db.configure().map_err(StoreError::Sql)?;
        db.migrate(Path::new(":memory:"))
            .map_err(|f| f.into_error(Path::new(":memory:")))?;
        Ok(db)
    }

    /// The schema version stored in the file.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        Ok(self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))?)
    }

    fn open_checked(path: &Path) -> Result<Database, OpenFailure> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(OpenFailure::classify)?;
        let mut db = Database { conn };
        db.configure().map_err(OpenFailure::classify)?;
        let check: String = db
            .conn
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .map_err(OpenFailure::classify)?;
        if check != "ok" {
            return Err(OpenFailure::Broken(format!("integrity check: {check}")));
        }
        db.migrate(path)?;
        Ok(db)
    }

    fn configure(&mut self) -> rusqlite::Result<()> {
        self.conn.busy_timeout(BUSY_TIMEOUT)?;
        // Reading the mode back also reads the file header: a non-database fails here.
        let mode: String = self
            .conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") && !mode.eq_ignore_ascii_case("memory") {
            tracing::warn!(mode, "SQLite did not switch to WAL mode");
        }
        self.conn.execute_batch(
            "PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL; PRAGMA secure_delete = ON;",
        )
    }

    /// Applies the missing migrations in one write transaction (a second process waits for it,
    /// then finds nothing left to do).
    fn migrate(&mut self, path: &Path) -> Result<(), OpenFailure> {
        let tx = Transaction::new(&mut self.conn, TransactionBehavior::Immediate)
            .map_err(OpenFailure::classify)?;
        let found: i64 = tx
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(OpenFailure::classify)?;
        if found > SCHEMA_VERSION {
            return Err(OpenFailure::Fatal(StoreError::TooNew {
                path: path.into(),
                found,
            }));
        }
        if found < 0 {
            return Err(OpenFailure::Broken(format!("schema version {found}")));
        }
        for step in &MIGRATIONS[found as usize..] {
            tx.execute_batch(step).map_err(OpenFailure::classify)?;
        }
        if found < SCHEMA_VERSION {
            tx.pragma_update(None, "user_version", SCHEMA_VERSION)
                .map_err(OpenFailure::classify)?;
        }
        tx.commit().map_err(OpenFailure::classify)
    }

    /// A write transaction that takes the write lock at once (no deadlock between two
    /// processes upgrading read locks; the busy timeout applies).
    pub(crate) fn write(&mut self) -> Result<Transaction<'_>, StoreError> {
        Ok(Transaction::new(
            &mut self.conn,
            TransactionBehavior::Immediate,
        )?)
    }
}

/// Why opening failed: a broken file (moved aside and replaced) or anything else (returned).
enum OpenFailure {
    Broken(String),
    Fatal(StoreError),
}

impl OpenFailure {
    fn classify(e: rusqlite::Error) -> OpenFailure {
        match e.sqlite_error_code() {
            Some(ErrorCode::NotADatabase) => OpenFailure::Broken("not a SQLite database".into()),
            Some(ErrorCode::DatabaseCorrupt) => OpenFailure::Broken(format!("corrupt: {e}")),
            _ => OpenFailure::Fatal(StoreError::Sql(e)),
        }
    }

    fn into_error(self, path: &Path) -> StoreError {
        match self {
            OpenFailure::Fatal(StoreError::Sql(source)) => StoreError::Open {
                path: path.into(),
                source,
            },
            OpenFailure::Fatal(e) => e,
            OpenFailure::Broken(why) => StoreError::Invalid(format!(
                "the database {} is broken even after starting afresh: {why}",
                path.display()
            )),
        }
    }
}

/// Moves the database and its WAL aside together (so the copy can still be examined); the
/// shared-memory index is only a cache and is removed.
fn move_aside_with_wal(path: &Path) -> Result<PathBuf, StoreError> {
    let err = |source| StoreError::MoveAside {
        path: path.into(),
        source,
    };
    let aside = files::move_aside(path, files::unix_now()).map_err(err)?;
    let wal = sibling(path, "-wal");
    if wal.exists() {
        std::fs::rename(&wal, sibling(&aside, "-wal")).map_err(err)?;
    }
    let shm = sibling(path, "-shm");
    if shm.exists() {
        std::fs::remove_file(&shm).map_err(err)?;
    }
    Ok(aside)
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files_in(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_new_database_is_created_at_the_current_schema_in_wal_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data/dialtone.db");
        let opened = Database::open(&path).unwrap();
        assert!(opened.recovered.is_none());
        assert_eq!(opened.db.schema_version().unwrap(), SCHEMA_VERSION);
        let mode: String = opened
            .db
            .conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }

    #[test]
    fn a_version_zero_database_with_other_tables_is_migrated_and_keeps_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dialtone.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("CREATE TABLE keep (x); INSERT INTO keep VALUES (7);")
            .unwrap();
        drop(conn);
        let db = Database::open(&path).unwrap().db;
        assert_eq!(db.schema_version().unwrap(), SCHEMA_VERSION);
        let x: i64 = db
            .conn
            .query_row("SELECT x FROM keep", [], |r| r.get(0))
            .unwrap();
        assert_eq!(x, 7);
        drop(db);
        // Opening again applies nothing twice.
        let again = Database::open(&path).unwrap();
        assert!(again.recovered.is_none());
    }

    #[test]
    fn a_text_file_is_moved_aside_and_a_fresh_database_started() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dialtone.db");
        std::fs::write(&path, "name,number\nBob,555\n").unwrap();
        let opened = Database::open(&path).unwrap();
        let msg = opened.recovered.expect("a message for the UI");
        assert!(msg.contains("not a SQLite database"), "{msg}");
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        let names = files_in(dir.path());
        let aside = names
            .iter()
            .find(|n| n.starts_with("dialtone.db.corrupt-"))
            .expect("moved aside");
        assert!(msg.contains(aside.as_str()), "{msg}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join(aside)).unwrap(),
            "name,number\nBob,555\n"
        );
        assert_eq!(opened.db.schema_version().unwrap(), SCHEMA_VERSION);
    }

    #[test]
    fn a_database_with_damaged_pages_is_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dialtone.db");
        {
            let mut db = Database::open(&path).unwrap().db;
            for i in 0..300 {
                db.save_contact(&crate::store::Contact {
                    name: format!("Contact {i} with a name long enough to fill pages"),
                    ..Default::default()
                })
                .unwrap();
            }
            db.conn
                .execute_batch("PRAGMA wal_checkpoint(TRUNCATE); PRAGMA journal_mode = DELETE;")
                .unwrap();
        }
        // Scribble over the middle of the file, leaving the header intact.
        let mut bytes = std::fs::read(&path).unwrap();
        assert!(bytes.len() > 8192, "{}", bytes.len());
        for b in &mut bytes[4096..8192] {
            *b = 0xA5;
        }
        std::fs::write(&path, &bytes).unwrap();
        let opened = Database::open(&path).unwrap();
        assert!(opened.recovered.is_some());
        assert_eq!(opened.db.list_contacts().unwrap().len(), 0);
        assert!(
            files_in(dir.path())
                .iter()
                .any(|n| n.starts_with("dialtone.db.corrupt-"))
        );
    }

    #[test]
    fn a_database_from_a_newer_version_is_an_error_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dialtone.db");
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        drop(conn);
        let err = Database::open(&path).unwrap_err();
        assert!(matches!(err, StoreError::TooNew { .. }), "{err}");
        assert!(err.to_string().contains("newer Dialtone"), "{err}");
        assert!(!files_in(dir.path()).iter().any(|n| n.contains("corrupt")));
    }

    #[cfg(unix)]
    #[test]
    fn an_unreadable_directory_is_an_error_not_a_recovery() {
        let err = Database::open(Path::new("/proc/dialtone-test/dialtone.db")).unwrap_err();
        assert!(matches!(err, StoreError::Dir { .. }), "{err}");
    }

    #[test]
    fn two_connections_to_one_file_see_each_others_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dialtone.db");
        let mut a = Database::open(&path).unwrap().db;
        let b = Database::open(&path).unwrap().db;
        let id = a
            .save_contact(&crate::store::Contact {
                name: "Shared".into(),
                ..Default::default()
            })
            .unwrap();
        let seen = b.list_contacts().unwrap();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].id, Some(id));
    }

    #[test]
    fn concurrent_writers_on_two_connections_both_succeed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dialtone.db");
        drop(Database::open(&path).unwrap());
        let writers: Vec<_> = (0..2)
            .map(|w| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let mut db = Database::open(&path).unwrap().db;
                    for i in 0..50 {
                        db.save_contact(&crate::store::Contact {
                            name: format!("w{w}-{i}"),
                            ..Default::default()
                        })
                        .unwrap();
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        let db = Database::open(&path).unwrap().db;
        assert_eq!(db.list_contacts().unwrap().len(), 100);
    }
}
