//! Contacts: people with their numbers and SIP addresses, search as you type, and finding the
//! contact behind the caller of a call.

use crate::engine::sip::uri::{NameAddr, Scheme, Uri};
use crate::store::db::{Database, StoreError};
use rusqlite::params;

/// One way to reach a contact.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ContactNumber {
    /// What the number is (`mobile`, `work`, `home fax`, or the user's own words); may be empty.
    pub label: String,
    /// A phone number as the user wrote it (`+1 (555) 123-4567`), a SIP URI (`sip:bob@host`)
    /// or a plain user name.
    pub uri: String,
}

/// A person in the address book.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Contact {
    /// `None` until stored.
    pub id: Option<i64>,
    pub name: String,
    /// Favourites come first in the list.
    pub favourite: bool,
    /// In the order the user gave them; the first is the default one to call.
    pub numbers: Vec<ContactNumber>,
    pub note: String,
}

impl ContactNumber {
    pub fn new(label: &str, uri: &str) -> ContactNumber {
        ContactNumber {
            label: label.into(),
            uri: uri.into(),
        }
    }
}

impl Contact {
    /// A new contact (not saved yet) with `(label, uri)` numbers in order.
    pub fn new(name: &str, numbers: &[(&str, &str)]) -> Contact {
        Contact {
            name: name.into(),
            numbers: numbers
                .iter()
                .map(|(label, uri)| ContactNumber::new(label, uri))
                .collect(),
            ..Contact::default()
        }
    }

    /// The same test as [`Database::search_contacts`], on a contact already in memory (the UI
    /// filters its list as the user types without a query per key).
    pub fn matches(&self, query: &str) -> bool {
        let text = query.trim().to_lowercase();
        if text.is_empty() {
            return true;
        }
        let (haystack, digits) = search_keys(self);
        let want_digits = phone_digits(query);
        haystack.contains(&text) || (!want_digits.is_empty() && digits.contains(&want_digits))
    }
}

/// The contact a call's peer belongs to, among contacts in memory: the same rules as
/// [`Database::lookup_contact`].
pub fn find_contact<'a>(contacts: &'a [Contact], peer: &str) -> Option<&'a Contact> {
    let want = MatchKey::of(peer);
    if want.is_empty() {
        return None;
    }
    let mut best: Option<(u8, &Contact)> = None;
    for c in contacts {
        for n in &c.numbers {
            if let Some(score) = want.score(&MatchKey::of(&n.uri))
                && best.is_none_or(|(s, _)| score > s)
            {
                best = Some((score, c));
            }
        }
    }
    best.map(|(_, c)| c)
}

impl Database {
    /// Every contact: favourites first, then by name (case-insensitive).
    pub fn list_contacts(&self) -> Result<Vec<Contact>, StoreError> {
        self.query_contacts("1", &[])
    }

    /// Contacts whose name, number or address contains `query` (case-insensitive). A query of
    /// digits and phone punctuation also matches numbers by their digits alone, so `555 12`
    /// finds `+1 (555) 123`. An empty query lists everything.
    pub fn search_contacts(&self, query: &str) -> Result<Vec<Contact>, StoreError> {
        let text = query.trim().to_lowercase();
        if text.is_empty() {
            return self.list_contacts();
        }
        let digits = if is_phone_like(query) {
            phone_digits(query)
        } else {
            String::new()
        };
        self.query_contacts(
            "instr(c.search_text, ?1) > 0 OR (?2 <> '' AND instr(c.search_digits, ?2) > 0)",
            &[&text, &digits],
        )
    }

    /// One contact by id.
    pub fn contact(&self, id: i64) -> Result<Option<Contact>, StoreError> {
        Ok(self.query_contacts("c.id = ?1", &[&id])?.pop())
    }

    /// Stores a new contact (`id: None`) or replaces a stored one; returns its id.
    pub fn save_contact(&mut self, contact: &Contact) -> Result<i64, StoreError> {
        let tx = self.write()?;
        let id = save_in(&tx, contact)?;
        tx.commit()?;
        Ok(id)
    }

    /// Stores many contacts in one transaction (a vCard import): all or none. Returns their ids.
    pub fn save_contacts(&mut self, contacts: &[Contact]) -> Result<Vec<i64>, StoreError> {
        let tx = self.write()?;
        let ids = contacts
            .iter()
            .map(|c| save_in(&tx, c))
            .collect::<Result<Vec<_>, _>>()?;
        tx.commit()?;
        Ok(ids)
    }

    /// Removes a contact and its numbers; `Ok(false)` if there was none with that id.
    pub fn delete_contact(&mut self, id: i64) -> Result<bool, StoreError> {
        let tx = self.write()?;
        let n = tx.execute("DELETE FROM contacts WHERE id = ?1", [id])?;
        tx.commit()?;
        Ok(n > 0)
    }

    /// The contact a call's peer belongs to. `peer` is a From/To value or a URI
    /// (`"Bob" <sip:bob@host>`, `sip:+15551234@host;user=phone`, `tel:+1-555-1234`). A stored
    /// `user@host` that matches exactly wins over a phone number that matches by its digits
    /// (`+1 555 1234` and `0015551234` are the same number), which wins over a matching user
    /// name at another host.
    pub fn lookup_contact(&self, peer: &str) -> Result<Option<Contact>, StoreError> {
        let want = MatchKey::of(peer);
        if want.is_empty() {
            return Ok(None);
        }
        let mut stmt = self.conn.prepare_cached(
            "SELECT n.contact_id, n.uri FROM contact_numbers n JOIN contacts c ON c.id = n.contact_id
             ORDER BY c.favourite DESC, c.name_key, c.id, n.position",
        )?;
        let mut best: Option<(u8, i64)> = None;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let uri: String = row.get(1)?;
            let Some(score) = want.score(&MatchKey::of(&uri)) else {
                continue;
            };
            if best.is_none_or(|(s, _)| score > s) {
                best = Some((score, row.get(0)?));
            }
        }
        match best {
            Some((_, id)) => self.contact(id),
            None => Ok(None),
        }
    }

    fn query_contacts(
        &self,
        filter: &str,
        args: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<Contact>, StoreError> {
        let sql = format!(
            "SELECT c.id, c.name, c.favourite, c.note, n.label, n.uri
             FROM contacts c LEFT JOIN contact_numbers n ON n.contact_id = c.id
             WHERE {filter}
             ORDER BY c.favourite DESC, c.name_key, c.id, n.position"
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let mut rows = stmt.query(args)?;
        let mut out: Vec<Contact> = Vec::new();
        while let Some(row) = rows.next()? {
            let id: i64 = row.get(0)?;
            if out.last().is_none_or(|c| c.id != Some(id)) {
                out.push(Contact {
                    id: Some(id),
                    name: row.get(1)?,
                    favourite: row.get(2)?,
                    note: row.get(3)?,
                    numbers: Vec::new(),
                });
            }
            let label: Option<String> = row.get(4)?;
            let uri: Option<String> = row.get(5)?;
            if let (Some(label), Some(uri), Some(c)) = (label, uri, out.last_mut()) {
                c.numbers.push(ContactNumber { label, uri });
            }
        }
        Ok(out)
    }
}

fn save_in(tx: &rusqlite::Transaction<'_>, c: &Contact) -> Result<i64, StoreError> {
    let (text, digits) = search_keys(c);
    let name_key = c.name.to_lowercase();
    let id = match c.id {
        Some(id) => {
            let n = tx.execute(
                "UPDATE contacts SET name = ?2, name_key = ?3, favourite = ?4, note = ?5,
                 search_text = ?6, search_digits = ?7 WHERE id = ?1",
                params![id, c.name, name_key, c.favourite, c.note, text, digits],
            )?;
            if n == 0 {
                return Err(StoreError::NotFound {
                    what: "contact",
                    id,
                });
            }
            tx.execute("DELETE FROM contact_numbers WHERE contact_id = ?1", [id])?;
            id
        }
        None => {
            tx.execute(
                "INSERT INTO contacts (name, name_key, favourite, note, search_text, search_digits)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![c.name, name_key, c.favourite, c.note, text, digits],
            )?;
            tx.last_insert_rowid()
        }
    };
    let mut stmt = tx.prepare_cached(
        "INSERT INTO contact_numbers (contact_id, position, label, uri) VALUES (?1, ?2, ?3, ?4)",
    )?;
    for (pos, n) in c.numbers.iter().enumerate() {
        stmt.execute(params![id, pos as i64, n.label, n.uri])?;
    }
    Ok(id)
}

/// What search looks in: the lower-cased name and addresses, and the digits of each phone
/// number. Fields are separated by a newline so a match never spans two of them.
fn search_keys(c: &Contact) -> (String, String) {
    let mut text = c.name.to_lowercase();
    let mut digits = String::new();
    for n in &c.numbers {
        text.push('\n');
        text.push_str(&n.uri.to_lowercase());
        let d = phone_digits(&n.uri);
        if !d.is_empty() {
            digits.push('\n');
            digits.push_str(&d);
        }
    }
    (text, digits)
}

/// True for text made of digits and the punctuation people put in phone numbers, with at
/// least one digit: `+1 (555) 123-4567`, `555 12`, `*21#`.
pub fn is_phone_like(s: &str) -> bool {
    let s = s.trim();
    s.chars().any(|c| c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_digit() || " +-().,/*#".contains(c))
}

/// The digits of a phone number (`+1 (555) 123` → `1555123`); empty if `s` is not phone-like.
pub fn phone_digits(s: &str) -> String {
    if !is_phone_like(s) {
        return String::new();
    }
    s.chars().filter(char::is_ascii_digit).collect()
}

/// What a peer or a stored number is matched on.
#[derive(Debug, Default, PartialEq, Eq)]
struct MatchKey {
    /// Lower-cased user part of a SIP address (or a plain user name), unless it is a number.
    user: String,
    /// Lower-cased host, if the address had one.
    host: String,
    /// The digits of a phone number, leading zeros dropped (international and national
    /// prefixes: `0044 20…` and `+44 20…` end alike).
    digits: String,
}

impl MatchKey {
    fn of(s: &str) -> MatchKey {
        let s = s.trim();
        let uri = if s.contains('<') {
            NameAddr::parse(s).ok().map(|na| na.uri)
        } else if has_scheme(s) {
            Uri::parse(s).ok()
        } else {
            None
        };
        let (user, host) = match &uri {
            Some(u) if u.scheme == Scheme::Tel => {
                (u.user.clone().unwrap_or_default(), String::new())
            }
            Some(u) => (u.user.clone().unwrap_or_default(), u.host.clone()),
            None => match s.rsplit_once('@') {
                Some((u, h)) => (u.to_string(), h.to_string()),
                None => (s.to_string(), String::new()),
            },
        };
        // A user part may carry its own parameters (`+1555;phone-context=example.com`).
        let user = user.split(';').next().unwrap_or_default();
        let digits = phone_digits(user);
        MatchKey {
            user: if digits.is_empty() {
                user.to_lowercase()
            } else {
                String::new()
            },
            host: host.to_lowercase(),
            digits: digits.trim_start_matches('0').to_string(),
        }
    }

    fn is_empty(&self) -> bool {
        self.user.is_empty() && self.digits.is_empty()
    }

    /// 3: same user at the same host; 2: the same phone number; 1: the same user name
    /// (one side without host, or another host).
    fn score(&self, stored: &MatchKey) -> Option<u8> {
        if !self.user.is_empty() && self.user == stored.user {
            let same_host = !self.host.is_empty() && self.host == stored.host;
            return Some(if same_host { 3 } else { 1 });
        }
        if !self.digits.is_empty() && same_number(&self.digits, &stored.digits) {
            return Some(2);
        }
        None
    }
}

/// Two digit strings (leading zeros dropped) name the same number when equal, or when the
/// shorter (at least 6 digits, a local number) ends the longer (with country/area code).
fn same_number(a: &str, b: &str) -> bool {
    if a.is_empty() || b.is_empty() {
        return false;
    }
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    short == long || (short.len() >= 6 && long.ends_with(short))
}

fn has_scheme(s: &str) -> bool {
    let lower = s.get(..5).unwrap_or(s).to_ascii_lowercase();
    ["sip:", "sips:", "tel:"]
        .iter()
        .any(|p| lower.starts_with(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Database {
        Database::open_in_memory().unwrap()
    }

    fn contact(name: &str, numbers: &[(&str, &str)]) -> Contact {
        Contact::new(name, numbers)
    }

    fn names(cs: &[Contact]) -> Vec<&str> {
        cs.iter().map(|c| c.name.as_str()).collect()
    }

    #[test]
    fn in_memory_search_and_lookup_agree_with_the_database() {
        let mut db = db();
        let cs = [
            contact("Bob Example", &[("mobile", "+1 (555) 123-4567")]),
            contact("Carol", &[("", "sip:carol@example.com")]),
        ];
        for c in &cs {
            db.save_contact(c).unwrap();
        }
        let all = db.list_contacts().unwrap();
        for q in ["555 12", "bob", "CAROL@", "example", "999", ""] {
            let mem: Vec<_> = all.iter().filter(|c| c.matches(q)).cloned().collect();
            assert_eq!(mem, db.search_contacts(q).unwrap(), "query {q:?}");
        }
        for peer in [
            "\"Bob\" <sip:+15551234567@pbx;user=phone>",
            "sip:carol@example.com",
            "sip:dave@example.com",
        ] {
            assert_eq!(
                find_contact(&all, peer).cloned(),
                db.lookup_contact(peer).unwrap(),
                "peer {peer:?}"
            );
        }
    }

    #[test]
    fn a_saved_contact_reads_back_with_its_numbers_in_order() {
        let mut db = db();
        let mut c = contact(
            "Bob Example",
            &[("mobile", "+1 (555) 123-4567"), ("", "sip:bob@example.com")],
        );
        c.note = "met at the conference; likes \"quotes\"".into();
        let id = db.save_contact(&c).unwrap();
        c.id = Some(id);
        assert_eq!(db.contact(id).unwrap(), Some(c.clone()));
        assert_eq!(db.list_contacts().unwrap(), vec![c]);
    }

    #[test]
    fn updating_a_contact_replaces_its_numbers() {
        let mut db = db();
        let id = db
            .save_contact(&contact("Bob", &[("work", "100"), ("home", "200")]))
            .unwrap();
        let mut c = db.contact(id).unwrap().unwrap();
        c.name = "Robert".into();
        c.favourite = true;
        c.numbers = vec![ContactNumber::new("mobile", "300")];
        assert_eq!(db.save_contact(&c).unwrap(), id);
        assert_eq!(db.contact(id).unwrap(), Some(c));
        assert_eq!(db.search_contacts("200").unwrap(), vec![]);
    }

    #[test]
    fn updating_a_contact_that_is_gone_is_an_error() {
        let mut db = db();
        let c = Contact {
            id: Some(42),
            ..contact("Ghost", &[])
        };
        let err = db.save_contact(&c).unwrap_err();
        assert!(matches!(err, StoreError::NotFound { id: 42, .. }), "{err}");
        assert!(db.list_contacts().unwrap().is_empty());
    }

    #[test]
    fn deleting_a_contact_removes_it_and_its_numbers() {
        let mut db = db();
        let id = db.save_contact(&contact("Bob", &[("", "555123")])).unwrap();
        let keep = db.save_contact(&contact("Carol", &[("", "777")])).unwrap();
        assert!(db.delete_contact(id).unwrap());
        assert!(!db.delete_contact(id).unwrap());
        assert_eq!(db.contact(id).unwrap(), None);
        assert_eq!(db.lookup_contact("tel:555123").unwrap(), None);
        let left: i64 = db
            .conn
            .query_row("SELECT count(*) FROM contact_numbers", [], |r| r.get(0))
            .unwrap();
        assert_eq!(left, 1);
        assert_eq!(db.list_contacts().unwrap()[0].id, Some(keep));
    }

    #[test]
    fn the_list_has_favourites_first_then_names_ignoring_case() {
        let mut db = db();
        for (name, fav) in [
            ("bob", false),
            ("Zoë", true),
            ("alice", false),
            ("Émile", false),
            ("Carol", false),
            ("anna", true),
        ] {
            db.save_contact(&Contact {
                favourite: fav,
                ..contact(name, &[])
            })
            .unwrap();
        }
        assert_eq!(
            names(&db.list_contacts().unwrap()),
            ["anna", "Zoë", "alice", "bob", "Carol", "Émile"]
        );
    }

    #[test]
    fn search_matches_name_and_address_substrings_ignoring_case() {
        let mut db = db();
        db.save_contact(&contact("Bob Builder", &[("", "sip:bob@Example.com")]))
            .unwrap();
        db.save_contact(&contact("Émilie Durand", &[("work", "sip:ed@corp.fr")]))
            .unwrap();
        db.save_contact(&contact("Carol", &[("", "sip:carol@example.com")]))
            .unwrap();
        assert_eq!(
            names(&db.search_contacts("BUILD").unwrap()),
            ["Bob Builder"]
        );
        assert_eq!(
            names(&db.search_contacts("émilie").unwrap()),
            ["Émilie Durand"]
        );
        assert_eq!(
            names(&db.search_contacts("ÉMI").unwrap()),
            ["Émilie Durand"]
        );
        assert_eq!(
            names(&db.search_contacts("example.COM").unwrap()),
            ["Bob Builder", "Carol"]
        );
        assert_eq!(
            names(&db.search_contacts("corp").unwrap()),
            ["Émilie Durand"]
        );
        assert_eq!(db.search_contacts("nobody").unwrap(), vec![]);
        assert_eq!(db.search_contacts("  ").unwrap().len(), 3);
    }

    #[test]
    fn search_matches_phone_numbers_by_their_digits() {
        let mut db = db();
        db.save_contact(&contact("Bob", &[("mobile", "+1 (555) 123-4567")]))
            .unwrap();
        db.save_contact(&contact(
            "Carol",
            &[("", "555-9999"), ("", "+44 20 7946 0000")],
        ))
        .unwrap();
        assert_eq!(names(&db.search_contacts("555 12").unwrap()), ["Bob"]);
        assert_eq!(names(&db.search_contacts("(555) 123").unwrap()), ["Bob"]);
        assert_eq!(names(&db.search_contacts("5551234567").unwrap()), ["Bob"]);
        assert_eq!(names(&db.search_contacts("555").unwrap()), ["Bob", "Carol"]);
        assert_eq!(names(&db.search_contacts("7946").unwrap()), ["Carol"]);
        // Digits never match across two numbers of one contact.
        assert_eq!(db.search_contacts("99994420").unwrap(), vec![]);
    }

    #[test]
    fn lookup_finds_the_contact_of_a_sip_peer_by_user_and_host() {
        let mut db = db();
        db.save_contact(&contact("Bob at home", &[("", "sip:bob@home.example")]))
            .unwrap();
        db.save_contact(&contact("Bob at work", &[("", "sip:bob@work.example")]))
            .unwrap();
        let found = |peer| db.lookup_contact(peer).unwrap().map(|c| c.name);
        assert_eq!(
            found("\"Bob\" <sip:bob@work.example>;tag=abc").as_deref(),
            Some("Bob at work")
        );
        assert_eq!(
            found("sip:BOB@home.example:5060;transport=tcp").as_deref(),
            Some("Bob at home")
        );
        // Another host: the user name alone still finds someone.
        assert!(found("sip:bob@elsewhere.example").is_some());
        assert_eq!(found("sip:alice@work.example"), None);
        assert_eq!(found(""), None);
        assert_eq!(found("<not a uri"), None);
    }

    #[test]
    fn lookup_matches_phone_numbers_in_any_notation() {
        let mut db = db();
        db.save_contact(&contact("Bob", &[("mobile", "+1 (555) 123-4567")]))
            .unwrap();
        db.save_contact(&contact("London", &[("work", "020 7946 0000")]))
            .unwrap();
        db.save_contact(&contact("Short", &[("", "1234")])).unwrap();
        let found = |peer| db.lookup_contact(peer).unwrap().map(|c| c.name);
        assert_eq!(
            found("sip:+15551234567@pbx.example;user=phone").as_deref(),
            Some("Bob")
        );
        assert_eq!(found("tel:+1-555-123-4567").as_deref(), Some("Bob"));
        assert_eq!(
            found("\"Unknown\" <sip:5551234567@10.0.0.1>").as_deref(),
            Some("Bob")
        );
        assert_eq!(found("sip:0015551234567@pbx").as_deref(), Some("Bob"));
        assert_eq!(found("tel:+44-20-7946-0000").as_deref(), Some("London"));
        assert_eq!(
            found("sip:+442079460000;phone-context=x@gw").as_deref(),
            Some("London")
        );
        // Short numbers match only exactly: an extension is not the end of a phone number.
        assert_eq!(found("sip:1234@pbx").as_deref(), Some("Short"));
        assert_eq!(found("tel:+1-555-000-1234"), None);
        assert_eq!(found("tel:+1-555-999-4567"), None);
    }

    #[test]
    fn lookup_prefers_an_exact_address_over_a_user_name_elsewhere() {
        let mut db = db();
        db.save_contact(&contact("Plain bob", &[("", "bob")]))
            .unwrap();
        db.save_contact(&contact("Exact bob", &[("", "sip:bob@pbx.example")]))
            .unwrap();
        assert_eq!(
            db.lookup_contact("<sip:bob@pbx.example>")
                .unwrap()
                .unwrap()
                .name,
            "Exact bob"
        );
        assert_eq!(
            db.lookup_contact("sip:bob@other.example")
                .unwrap()
                .unwrap()
                .name,
            "Exact bob" // both score 1: the first in list order
        );
    }

    #[test]
    fn a_thousand_contacts_list_and_search_correctly() {
        let mut db = db();
        let contacts: Vec<Contact> = (0..1000)
            .map(|i| Contact {
                favourite: i % 100 == 0,
                ..contact(
                    &format!("Person {i:04}"),
                    &[
                        ("mobile", &format!("+1 (555) {:03}-{:04}", i % 1000, i)),
                        ("", &format!("sip:person{i}@example.com")),
                    ],
                )
            })
            .collect();
        let ids = db.save_contacts(&contacts).unwrap();
        assert_eq!(ids.len(), 1000);
        let all = db.list_contacts().unwrap();
        assert_eq!(all.len(), 1000);
        assert_eq!(all[0].name, "Person 0000");
        assert_eq!(all[1].name, "Person 0100");
        assert_eq!(all[10].name, "Person 0001");
        assert!(all.iter().all(|c| c.numbers.len() == 2));
        let found = db.search_contacts("person 042").unwrap();
        assert_eq!(
            names(&found),
            (420..430)
                .map(|i| format!("Person {i:04}"))
                .collect::<Vec<_>>()
        );
        let by_digits = db.search_contacts("555 777-0777").unwrap();
        assert_eq!(names(&by_digits), ["Person 0777"]);
        assert_eq!(
            db.lookup_contact("sip:person999@example.com")
                .unwrap()
                .unwrap()
                .name,
            "Person 0999"
        );
    }

    #[test]
    fn phone_like_text_is_digits_and_phone_punctuation_only() {
        assert!(is_phone_like("+1 (555) 123-4567"));
        assert!(is_phone_like("*21#"));
        assert!(!is_phone_like("bob5"));
        assert!(!is_phone_like("+-()"));
        assert_eq!(phone_digits("+1 (555) 12"), "155512");
        assert_eq!(phone_digits("sip:555@host"), "");
    }
}
