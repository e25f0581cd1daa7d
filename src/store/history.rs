//! Call history: who called whom, when, for how long, and which missed calls are still unseen.

use crate::store::db::{Database, StoreError};
use rusqlite::{Row, params};

/// Which side placed the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    Incoming,
    Outgoing,
}

/// How a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Talked (either direction).
    Answered,
    /// Incoming, not answered here: the caller gave up, or it rang out.
    Missed,
    /// Declined: by us (incoming) or by the far end, busy included (outgoing).
    Rejected,
    /// Could not be set up: network, server or authentication error.
    Failed,
    /// Outgoing, hung up by us before the far end answered.
    Cancelled,
}

/// One call in the history.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryEntry {
    /// `None` until stored.
    pub id: Option<i64>,
    /// The other party's URI (what "call back" dials).
    pub peer: String,
    /// The name shown: from the contacts or the caller's display name; may be empty.
    pub name: String,
    pub direction: Direction,
    pub outcome: Outcome,
    /// The account's address of record, if the call went through one.
    pub account: Option<String>,
    /// When the call started ringing or was placed (Unix time, milliseconds).
    pub started_at: i64,
    /// Talk time in seconds (0 for calls never answered).
    pub duration_s: f64,
    /// A missed call counts as new until the user has seen it.
    pub seen: bool,
}

impl Direction {
    fn token(self) -> &'static str {
        match self {
            Direction::Incoming => "incoming",
            Direction::Outgoing => "outgoing",
        }
    }

    fn parse(s: &str) -> Option<Direction> {
        [Direction::Incoming, Direction::Outgoing]
            .into_iter()
            .find(|d| d.token() == s)
    }
}

impl Outcome {
    const ALL: [Outcome; 5] = [
        Outcome::Answered,
        Outcome::Missed,
        Outcome::Rejected,
        Outcome::Failed,
        Outcome::Cancelled,
    ];

    fn token(self) -> &'static str {
        match self {
            Outcome::Answered => "answered",
            Outcome::Missed => "missed",
            Outcome::Rejected => "rejected",
            Outcome::Failed => "failed",
            Outcome::Cancelled => "cancelled",
        }
    }

    fn parse(s: &str) -> Option<Outcome> {
        Outcome::ALL.into_iter().find(|o| o.token() == s)
    }
}

impl Database {
    /// Records a call; returns its id.
    pub fn add_call(&mut self, e: &HistoryEntry) -> Result<i64, StoreError> {
        let tx = self.write()?;
        tx.execute(
            "INSERT INTO history (peer, name, direction, outcome, account, started_at, duration_s, seen)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                e.peer,
                e.name,
                e.direction.token(),
                e.outcome.token(),
                e.account,
                e.started_at,
                e.duration_s,
                e.seen
            ],
        )?;
        let id = tx.last_insert_rowid();
        tx.commit()?;
        Ok(id)
    }

    /// Rewrites a recorded call (its outcome and duration at hang-up, say).
    pub fn update_call(&mut self, e: &HistoryEntry) -> Result<(), StoreError> {
        let id = e.id.ok_or_else(|| {
            StoreError::Invalid("a history entry without id cannot be updated".into())
        })?;
        let tx = self.write()?;
        let n = tx.execute(
            "UPDATE history SET peer = ?2, name = ?3, direction = ?4, outcome = ?5, account = ?6,
             started_at = ?7, duration_s = ?8, seen = ?9 WHERE id = ?1",
            params![
                id,
                e.peer,
                e.name,
                e.direction.token(),
                e.outcome.token(),
                e.account,
                e.started_at,
                e.duration_s,
                e.seen
            ],
        )?;
        if n == 0 {
            return Err(StoreError::NotFound { what: "call", id });
        }
        tx.commit()?;
        Ok(())
    }

    /// The `limit` most recent calls, newest first.
    pub fn list_history(&self, limit: usize) -> Result<Vec<HistoryEntry>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, peer, name, direction, outcome, account, started_at, duration_s, seen
             FROM history ORDER BY started_at DESC, id DESC LIMIT ?1",
        )?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt.query_map([limit], read_entry)?;
        rows.map(|r| r?.map_err(StoreError::Invalid)).collect()
    }

    /// Missed calls the user has not seen yet (the badge on the history tab).
    pub fn unseen_missed_calls(&self) -> Result<u64, StoreError> {
        let n: i64 = self.conn.query_row(
            "SELECT count(*) FROM history WHERE seen = 0 AND outcome = 'missed'",
            [],
            |r| r.get(0),
        )?;
        Ok(n as u64)
    }

    /// Marks every call seen (the user opened the history).
    pub fn mark_history_seen(&mut self) -> Result<(), StoreError> {
        let tx = self.write()?;
        tx.execute("UPDATE history SET seen = 1 WHERE seen = 0", [])?;
        tx.commit()?;
        Ok(())
    }

    /// Removes one call; `Ok(false)` if there was none with that id.
    pub fn delete_call(&mut self, id: i64) -> Result<bool, StoreError> {
        let tx = self.write()?;
        let n = tx.execute("DELETE FROM history WHERE id = ?1", [id])?;
        tx.commit()?;
        Ok(n > 0)
    }

    /// Removes every call.
    pub fn clear_history(&mut self) -> Result<(), StoreError> {
        let tx = self.write()?;
        tx.execute("DELETE FROM history", [])?;
        tx.commit()?;
        Ok(())
    }
}

/// A row, or a message naming a value this build does not know (a newer Dialtone wrote it).
fn read_entry(r: &Row<'_>) -> rusqlite::Result<Result<HistoryEntry, String>> {
    let id: i64 = r.get(0)?;
    let direction: String = r.get(3)?;
    let outcome: String = r.get(4)?;
    let (Some(direction), Some(outcome)) = (Direction::parse(&direction), Outcome::parse(&outcome))
    else {
        return Ok(Err(format!(
            "history entry {id} has an unknown direction {direction:?} or outcome {outcome:?}"
        )));
    };
    Ok(Ok(HistoryEntry {
        id: Some(id),
        peer: r.get(1)?,
        name: r.get(2)?,
        direction,
        outcome,
        account: r.get(5)?,
        started_at: r.get(6)?,
        duration_s: r.get(7)?,
        seen: r.get(8)?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(peer: &str, direction: Direction, outcome: Outcome, started_at: i64) -> HistoryEntry {
        HistoryEntry {
            id: None,
            peer: peer.into(),
            name: String::new(),
            direction,
            outcome,
            account: Some("sip:me@example.com".into()),
            started_at,
            duration_s: 0.0,
            seen: outcome != Outcome::Missed,
        }
    }

    #[test]
    fn calls_list_newest_first_up_to_the_limit() {
        let mut db = Database::open_in_memory().unwrap();
        let a = db
            .add_call(&call(
                "sip:a@x",
                Direction::Outgoing,
                Outcome::Answered,
                1_000,
            ))
            .unwrap();
        let b = db
            .add_call(&call(
                "sip:b@x",
                Direction::Incoming,
                Outcome::Missed,
                3_000,
            ))
            .unwrap();
        let c = db
            .add_call(&call(
                "sip:c@x",
                Direction::Outgoing,
                Outcome::Cancelled,
                2_000,
            ))
            .unwrap();
        let ids = |l: Vec<HistoryEntry>| l.into_iter().map(|e| e.id.unwrap()).collect::<Vec<_>>();
        assert_eq!(ids(db.list_history(10).unwrap()), [b, c, a]);
        assert_eq!(ids(db.list_history(2).unwrap()), [b, c]);
        assert!(db.list_history(0).unwrap().is_empty());
    }

    #[test]
    fn every_field_round_trips() {
        let mut db = Database::open_in_memory().unwrap();
        for (i, outcome) in Outcome::ALL.into_iter().enumerate() {
            for direction in [Direction::Incoming, Direction::Outgoing] {
                let mut e = HistoryEntry {
                    name: "Bob «the builder»".into(),
                    account: None,
                    duration_s: 12.345,
                    ..call(
                        "\"Bob\" <sip:bob@host>",
                        direction,
                        outcome,
                        1_700_000_000_123 + i as i64,
                    )
                };
                e.id = Some(db.add_call(&e).unwrap());
                let back = db.list_history(1).unwrap().pop().unwrap();
                assert_eq!(back, e);
            }
        }
    }

    #[test]
    fn hang_up_sets_the_outcome_and_duration_of_a_call() {
        let mut db = Database::open_in_memory().unwrap();
        let mut e = call("sip:bob@x", Direction::Outgoing, Outcome::Cancelled, 5);
        e.id = Some(db.add_call(&e).unwrap());
        e.outcome = Outcome::Answered;
        e.duration_s = 61.5;
        db.update_call(&e).unwrap();
        assert_eq!(db.list_history(5).unwrap(), vec![e.clone()]);
        e.id = Some(9999);
        assert!(matches!(
            db.update_call(&e),
            Err(StoreError::NotFound { id: 9999, .. })
        ));
        e.id = None;
        assert!(db.update_call(&e).is_err());
    }

    #[test]
    fn only_unseen_missed_calls_are_counted_until_marked_seen() {
        let mut db = Database::open_in_memory().unwrap();
        db.add_call(&call("sip:a@x", Direction::Incoming, Outcome::Missed, 1))
            .unwrap();
        db.add_call(&call("sip:b@x", Direction::Incoming, Outcome::Missed, 2))
            .unwrap();
        let mut answered = call("sip:c@x", Direction::Incoming, Outcome::Answered, 3);
        answered.seen = false;
        db.add_call(&answered).unwrap();
        let mut old = call("sip:d@x", Direction::Incoming, Outcome::Missed, 0);
        old.seen = true;
        db.add_call(&old).unwrap();
        assert_eq!(db.unseen_missed_calls().unwrap(), 2);
        db.mark_history_seen().unwrap();
        assert_eq!(db.unseen_missed_calls().unwrap(), 0);
        assert!(db.list_history(10).unwrap().iter().all(|e| e.seen));
        db.add_call(&call("sip:e@x", Direction::Incoming, Outcome::Missed, 4))
            .unwrap();
        assert_eq!(db.unseen_missed_calls().unwrap(), 1);
    }

    #[test]
    fn delete_removes_one_call_and_clear_removes_all() {
        let mut db = Database::open_in_memory().unwrap();
        let a = db
            .add_call(&call("sip:a@x", Direction::Outgoing, Outcome::Failed, 1))
            .unwrap();
        db.add_call(&call("sip:b@x", Direction::Incoming, Outcome::Rejected, 2))
            .unwrap();
        assert!(db.delete_call(a).unwrap());
        assert!(!db.delete_call(a).unwrap());
        let left = db.list_history(10).unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].peer, "sip:b@x");
        db.clear_history().unwrap();
        assert!(db.list_history(10).unwrap().is_empty());
    }

    #[test]
    fn an_unknown_outcome_written_by_a_newer_version_is_an_error_not_a_panic() {
        let mut db = Database::open_in_memory().unwrap();
        db.add_call(&call("sip:a@x", Direction::Outgoing, Outcome::Answered, 1))
            .unwrap();
        db.conn
            .execute("UPDATE history SET outcome = 'transferred'", [])
            .unwrap();
        let err = db.list_history(10).unwrap_err();
        assert!(err.to_string().contains("transferred"), "{err}");
    }
}
