//! The store as the desktop app uses it: real-world vCard files imported into a database on disk,
//! looked up by a caller's address, searched, exported and imported back.

use dialtone::store::{
    Contact, Database, Paths, VcardImport, parse_vcard_bytes, parse_vcards, write_vcards,
};
use std::path::Path;

fn fixture(name: &str) -> VcardImport {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/vcard")
        .join(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    parse_vcard_bytes(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn contact(name: &str, favourite: bool, note: &str, numbers: &[(&str, &str)]) -> Contact {
    Contact {
        favourite,
        note: note.into(),
        ..Contact::new(name, numbers)
    }
}

#[test]
fn google_contacts_export_imports_every_number_with_its_label() {
    let import = fixture("google-contacts.vcf");
    assert_eq!(
        import.contacts,
        [
            contact(
                "Alice Martin",
                true,
                "Prefers calls after 10am, not before. Door code: 4711; ring twice.",
                &[
                    ("mobile", "+1 415-555-0132"),
                    ("work", "+1 415-555-0177"),
                    ("home", "(415) 555-0100"),
                    ("Boat", "+1 415-555-0199"),
                ],
            ),
            contact(
                "Bob Nguyen",
                false,
                "",
                &[
                    ("mobile", "+44 7700 900123"),
                    ("SIP", "sip:bob@sip.example.net")
                ],
            ),
            contact("Pizza Napoli", false, "", &[("work", "+1 212-555-0147")]),
        ]
    );
    assert_eq!(
        import.skipped,
        ["card at line 39 (Carol Email-Only) skipped: it has no phone number or SIP address"]
    );
}

#[test]
fn apple_contacts_export_imports_iphone_labels_custom_labels_and_sip() {
    let import = fixture("apple-contacts.vcf");
    assert_eq!(import.skipped, Vec::<String>::new());
    assert_eq!(
        import.contacts,
        [
            contact(
                "John Appleseed",
                false,
                "Line one\nLine two",
                &[
                    ("mobile", "+1 (408) 555-5270"),
                    ("iPhone", "+1 (408) 555-1212"),
                    ("home", "+1 (408) 555-3514"),
                    ("work fax", "+1 (408) 555-3515"),
                    ("other", "+1 (408) 555-0000"),
                    ("Gate intercom", "+1 (408) 555-9999"),
                    ("", "sip:john@voip.example.com"),
                ],
            ),
            contact(
                "Zoë Ångström",
                false,
                "",
                &[("mobile", "+46 70 123 45 67"), ("main", "+46 8 123 456 78")],
            ),
        ]
    );
}

#[test]
fn android_2_1_export_decodes_quoted_printable_utf8_and_x_sip() {
    let import = fixture("android-2.1.vcf");
    assert_eq!(import.skipped, Vec::<String>::new());
    assert_eq!(
        import.contacts,
        [
            contact(
                "Anna Schmidt",
                false,
                "",
                &[
                    ("mobile", "+49 151 23456789"),
                    ("home", "+49 30 1234567"),
                    ("work", "+49 30 7654321"),
                    ("", "sip:anna@sip.example.de"),
                ],
            ),
            contact(
                "张三",
                false,
                "老同学，在北京工作",
                &[("mobile", "138 0013 8000"), ("work", "010 6552 9988")],
            ),
            contact(
                "Jörg Müller",
                false,
                "",
                &[("mobile", "0176 98765432"), ("Boat", "0176 11111111")],
            ),
            contact(
                "+33 6 12 34 56 78",
                false,
                "",
                &[("mobile", "+33 6 12 34 56 78")]
            ),
        ]
    );
}

#[test]
fn thunderbird_4_0_export_reads_text_and_tel_uri_values() {
    let import = fixture("thunderbird-4.0.vcf");
    assert_eq!(import.skipped, Vec::<String>::new());
    assert_eq!(
        import.contacts,
        [
            contact(
                "Jeanne Dupont",
                false,
                "Rencontrée à la conférence, très sympa",
                &[
                    ("mobile", "+33 6 12 34 56 78"),
                    ("work", "+33 1 23 45 67 89"),
                    ("home", "+33 4 78 00 00 00"),
                ],
            ),
            contact(
                "Dev Team Bridge",
                false,
                "",
                &[
                    ("work", "+1-555-555-0100;ext=102"),
                    ("", "sip:bridge@conf.example.org"),
                    ("mobile", "+1-555-555-0111"),
                ],
            ),
        ]
    );
}

#[test]
fn outlook_2_1_export_in_windows_1252_imports_with_accents() {
    let import = fixture("outlook-2.1.vcf");
    assert_eq!(import.skipped, Vec::<String>::new());
    assert_eq!(
        import.contacts,
        [
            contact(
                "Hans Müller",
                false,
                "Erste Zeile\nZweite Zeile mit Umlauten: äöü € 5,00 pro Minute",
                &[
                    ("work", "+49 (30) 1234567"),
                    ("home", "+49 (30) 7654321"),
                    ("mobile", "+49 170 1234567"),
                    ("work fax", "+49 (30) 1234568"),
                ],
            ),
            contact("René François", false, "", &[("work", "+33 1 40 20 50 50")]),
        ]
    );
}

#[test]
fn a_file_with_broken_cards_imports_the_good_ones_and_says_why_the_others_were_skipped() {
    let import = fixture("broken.vcf");
    assert_eq!(
        import.contacts,
        [
            contact("First Good", false, "", &[("mobile", "+1 555 0101")]),
            contact("Second Good", false, "", &[("home", "+1 555 0104")]),
        ]
    );
    assert_eq!(
        import.skipped,
        [
            "card at line 6 (Never Ended) skipped: it has no END:VCARD before the next card",
            "card at line 10 skipped: FN: broken quoted-printable text near \"=G1\"",
            "card at line 22 (Cut Off At The End) skipped: the file ends before its END:VCARD",
        ]
    );
}

#[test]
fn every_fixture_exports_and_imports_back_identically() {
    for name in [
        "google-contacts.vcf",
        "apple-contacts.vcf",
        "android-2.1.vcf",
        "thunderbird-4.0.vcf",
        "outlook-2.1.vcf",
        "broken.vcf",
    ] {
        let first = fixture(name).contacts;
        let exported = write_vcards(&first);
        let again = parse_vcards(&exported).unwrap();
        assert_eq!(again.skipped, Vec::<String>::new(), "{name}");
        assert_eq!(again.contacts, first, "{name}:\n{exported}");
    }
}

#[test]
fn awkward_contacts_export_and_import_back_identically() {
    let contacts = vec![
        contact(
            "Smith, John; \"Jr\" \\ the 2nd",
            true,
            "Line one\nLine two, with comma; and semicolon\\backslash\n\nafter a blank line",
            &[
                ("mobile", "+1 (555) 123-4567"),
                ("home fax", "555 0000"),
                ("Boat, blue; big", "sip:boat@sea.example;transport=tcp"),
                ("", "sips:secure@example.com"),
                ("iPhone", "7"),
                ("other", "bob"),
                ("work", "bob@pbx.example"),
            ],
        ),
        contact(
            "Zoë 張三 Ångström with a very long name that needs folding because it is long",
            false,
            &"Ünïcödé nötes ünd 漢字 ".repeat(20),
            &[("Ünïcödé label", "+46 70 123 45 67")],
        ),
        contact("Only SIP", false, "", &[("", "sip:only@example.com")]),
    ];
    let text = write_vcards(&contacts);
    for line in text.split("\r\n") {
        assert!(line.len() <= 75, "{} octets: {line:?}", line.len());
    }
    assert!(text.starts_with("BEGIN:VCARD\r\nVERSION:3.0\r\n"), "{text}");
    let back = parse_vcards(&text).unwrap();
    assert_eq!(back.skipped, Vec::<String>::new());
    assert_eq!(back.contacts, contacts, "{text}");
}

#[test]
fn imported_contacts_are_found_on_disk_by_caller_and_by_search() {
    let dir = tempfile::tempdir().unwrap();
    let paths = Paths::at(dir.path());
    let mut db = Database::open(&paths.database_file()).unwrap().db;
    let mut all = Vec::new();
    for name in [
        "google-contacts.vcf",
        "apple-contacts.vcf",
        "android-2.1.vcf",
    ] {
        all.extend(fixture(name).contacts);
    }
    let ids = db.save_contacts(&all).unwrap();
    assert_eq!(ids.len(), 9);
    drop(db);

    let db = Database::open(&paths.database_file()).unwrap().db;
    let listed = db.list_contacts().unwrap();
    assert_eq!(listed.len(), 9);
    assert_eq!(listed[0].name, "Alice Martin", "the favourite comes first");
    let who = |peer: &str| db.lookup_contact(peer).unwrap().map(|c| c.name);
    assert_eq!(
        who("\"Alice\" <sip:+14155550177@pbx.example;user=phone>;tag=1").as_deref(),
        Some("Alice Martin")
    );
    assert_eq!(
        who("tel:+1-408-555-1212").as_deref(),
        Some("John Appleseed")
    );
    assert_eq!(
        who("<sip:john@voip.example.com>").as_deref(),
        Some("John Appleseed")
    );
    assert_eq!(
        who("sip:anna@sip.example.de").as_deref(),
        Some("Anna Schmidt")
    );
    assert_eq!(
        who("sip:+8613800138000@gw.example").as_deref(),
        Some("张三")
    );
    assert_eq!(who("sip:unknown@nowhere.example"), None);

    let names = |q: &str| {
        db.search_contacts(q)
            .unwrap()
            .into_iter()
            .map(|c| c.name)
            .collect::<Vec<_>>()
    };
    assert_eq!(names("408 555 12"), ["John Appleseed"]);
    assert_eq!(names("ZOË"), ["Zoë Ångström"]);
    assert_eq!(names("张"), ["张三"]);
    assert_eq!(names("sip.example"), ["Anna Schmidt", "Bob Nguyen"]);

    let exported = write_vcards(&listed);
    let back = parse_vcards(&exported).unwrap().contacts;
    let without_ids: Vec<Contact> = listed
        .into_iter()
        .map(|c| Contact { id: None, ..c })
        .collect();
    assert_eq!(back, without_ids);
}
