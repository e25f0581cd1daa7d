//! The desktop app driven by egui_kittest with a fake engine (a channel pair): widgets are found by
//! their accessible (AccessKit) names, clicked, and the commands the app sends are asserted.

use dialtone::api::{AccountId, CallId, CallState, Command, Event};
use dialtone::app::store_worker::StoreWorker;
use dialtone::app::{AppInit, DialtoneApp, EngineLink};
use dialtone::store::settings::{Account, Settings};
use dialtone::store::{Contact, ContactNumber, Database};
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use std::cell::RefCell;
use std::rc::Rc;
use tokio::sync::mpsc;

struct FakeEngine {
    events: mpsc::UnboundedSender<Event>,
    sent: Rc<RefCell<Vec<Command>>>,
}

impl FakeEngine {
    fn emit(&self, e: Event) {
        self.events.send(e).unwrap();
    }

    fn take(&self) -> Vec<Command> {
        std::mem::take(&mut self.sent.borrow_mut())
    }
}

fn app(accounts: Vec<(String, bool)>) -> (Harness<'static, DialtoneApp>, FakeEngine) {
    app_with(accounts, Database::open_in_memory().unwrap())
}

fn app_with(
    accounts: Vec<(String, bool)>,
    db: Database,
) -> (Harness<'static, DialtoneApp>, FakeEngine) {
    let (tx, rx) = mpsc::unbounded_channel();
    let settings = Settings {
        accounts: accounts
            .into_iter()
            .map(|(uri, register)| Account {
                uri,
                register,
                ..Account::default()
            })
            .collect(),
        ..Settings::default()
    };
    let sent = Rc::new(RefCell::new(Vec::new()));
    let s = sent.clone();
    let link = EngineLink::new(move |c| s.borrow_mut().push(c), rx);
    let init = AppInit {
        link,
        settings,
        store: StoreWorker::inline(Some(db), None),
        notices: Vec::new(),
        secrets_note: None,
        settings_path: None,
        echo_uri: Some("sip:echo@127.0.0.1:5999".into()),
        dial: None,
        notifier: None,
        instance: None,
    };
    let harness = Harness::builder()
        .with_size([420.0, 900.0])
        .build_eframe(move |cc| DialtoneApp::new(&cc.egui_ctx, init));
    (harness, FakeEngine { events: tx, sent })
}

fn call_state(call: u64, state: CallState) -> Event {
    Event::Call {
        call: CallId(call),
        state,
        peer: "sip:bob@example.com".into(),
        reason: None,
        code: None,
        hold: None,
    }
}

#[test]
fn typing_an_address_and_pressing_enter_dials_it() {
    let (mut h, engine) = app(vec![]);
    h.run();
    h.get_by_label("Address").click();
    h.run();
    h.get_by_label("Address").type_text("sip:bob@example.com");
    h.run();
    h.key_press(egui::Key::Enter);
    h.run();
    assert_eq!(
        engine.take(),
        vec![Command::Call {
            uri: "sip:bob@example.com".into(),
            account: None
        }]
    );
}

#[test]
fn keypad_digits_go_into_the_address_and_the_call_button_dials_them() {
    let (mut h, engine) = app(vec![]);
    h.run();
    h.get_by_label("Keypad").click();
    h.run();
    for d in ["1", "0", "0"] {
        h.get_by_label(&format!("Key {d}")).click();
        h.run();
    }
    h.get_by_label("Call").click();
    h.run();
    assert_eq!(
        engine.take(),
        vec![Command::Call {
            uri: "100".into(),
            account: None
        }]
    );
}

#[test]
fn echo_test_entry_calls_the_built_in_echo_service() {
    let (mut h, engine) = app(vec![]);
    h.run();
    h.get_by_label("Call Echo test").click();
    h.run();
    assert_eq!(
        engine.take(),
        vec![Command::Call {
            uri: "sip:echo@127.0.0.1:5999".into(),
            account: None
        }]
    );
}

#[test]
fn popup_accept_sends_answer_and_opens_the_call_window() {
    let (mut h, engine) = app(vec![("sip:alice@example.com".into(), true)]);
    h.run();
    engine.emit(Event::Incoming {
        call: CallId(5),
        from: "\"Bob B\" <sip:bob@example.com>".into(),
        account: Some(AccountId(0)),
    });
    h.run();
    h.get_by_label_contains("to alice@example.com");
    assert!(
        h.query_by_label("Hang up").is_none(),
        "no call window while ringing"
    );
    h.get_by_label("Accept").click();
    h.run();
    assert_eq!(engine.take(), vec![Command::Answer { call: CallId(5) }]);
    assert!(
        h.query_by_label("Accept").is_none(),
        "the popup closes on accept"
    );
    engine.emit(call_state(5, CallState::Established));
    h.run();
    h.get_by_label("Hang up");
    h.get_by_label("Mute");
}

#[test]
fn popup_decline_rejects_the_call() {
    let (mut h, engine) = app(vec![]);
    h.run();
    engine.emit(Event::Incoming {
        call: CallId(9),
        from: "sip:carol@example.com".into(),
        account: None,
    });
    h.run();
    h.get_by_label("Decline").click();
    h.run();
    assert_eq!(
        engine.take(),
        vec![Command::Reject {
            call: CallId(9),
            decline: true
        }]
    );
}

#[test]
fn call_window_buttons_send_mute_hold_resume_dtmf_and_hangup() {
    let (mut h, engine) = app(vec![]);
    h.run();
    engine.emit(call_state(3, CallState::Calling));
    engine.emit(call_state(3, CallState::Established));
    h.run();
    h.get_by_label("Mute").click();
    h.run();
    h.get_by_label("Hold").click();
    h.run();
    assert_eq!(
        engine.take(),
        vec![
            Command::Mute {
                call: CallId(3),
                muted: true
            },
            Command::Hold { call: CallId(3) }
        ]
    );
    h.get_by_label("Unmute");
    engine.emit(Event::Call {
        call: CallId(3),
        state: CallState::Held,
        peer: "sip:bob@example.com".into(),
        reason: None,
        code: None,
        hold: Some(dialtone::api::HoldState {
            local: true,
            remote: false,
        }),
    });
    h.run();
    h.get_by_label("Resume").click();
    h.run();
    assert_eq!(engine.take(), vec![Command::Resume { call: CallId(3) }]);
    engine.emit(call_state(3, CallState::Established));
    h.run();
    h.get_all_by_label("Keypad").last().unwrap().click();
    h.run();
    h.get_all_by_label("Key 5").last().unwrap().click();
    h.run();
    assert_eq!(
        engine.take(),
        vec![Command::Dtmf {
            call: CallId(3),
            digits: "5".into()
        }]
    );
    h.get_by_label("Hang up").click();
    h.run();
    assert_eq!(engine.take(), vec![Command::Hangup { call: CallId(3) }]);
}

#[test]
fn failed_registration_shows_the_reason_and_retry_registers_again() {
    let (mut h, engine) = app(vec![("sip:alice@example.com".into(), true)]);
    engine.emit(Event::Registration {
        account: AccountId(0),
        aor: "sip:alice@example.com".into(),
        state: dialtone::api::RegistrationState::Failed,
        code: Some(403),
        reason: Some("403 Forbidden".into()),
    });
    h.run();
    h.get_by_label_contains("403 Forbidden");
    h.get_by_label("Retry").click();
    h.run();
    assert_eq!(
        engine.take(),
        vec![Command::Register {
            account: AccountId(0)
        }]
    );
}

fn contact(name: &str, favourite: bool, numbers: &[(&str, &str)]) -> Contact {
    Contact {
        id: None,
        name: name.into(),
        favourite,
        numbers: numbers
            .iter()
            .map(|(l, u)| ContactNumber::new(l, u))
            .collect(),
        note: String::new(),
    }
}

fn db_with(contacts: &[Contact]) -> Database {
    let mut db = Database::open_in_memory().unwrap();
    for c in contacts {
        db.save_contact(c).unwrap();
    }
    db
}

#[test]
fn clicking_a_contact_dials_its_uri_and_one_with_several_numbers_asks_which() {
    let db = db_with(&[
        contact("Bob", false, &[("", "sip:bob@example.com")]),
        contact(
            "Carol",
            true,
            &[
                ("mobile", "+1 555 0100"),
                ("desk", "sip:carol@pbx.example.com"),
            ],
        ),
    ]);
    let (mut h, engine) = app_with(vec![], db);
    h.run();
    h.get_by_label("Call Bob").click();
    h.run();
    assert_eq!(
        engine.take(),
        vec![Command::Call {
            uri: "sip:bob@example.com".into(),
            account: None
        }]
    );
    h.get_by_label("Call Carol").click();
    h.run();
    assert!(engine.take().is_empty(), "two numbers: the user picks one");
    h.get_by_label("desk: sip:carol@pbx.example.com").click();
    h.run();
    assert_eq!(
        engine.take(),
        vec![Command::Call {
            uri: "sip:carol@pbx.example.com".into(),
            account: None
        }]
    );
}

#[test]
fn search_as_you_type_filters_the_contacts() {
    let db = db_with(&[
        contact("Bob", false, &[("", "sip:bob@example.com")]),
        contact("Carol", false, &[("", "+1 (555) 123-4567")]),
    ]);
    let (mut h, _engine) = app_with(vec![], db);
    h.run();
    h.get_by_label("Search contacts").click();
    h.run();
    h.get_by_label("Search contacts").type_text("555 12");
    h.run();
    assert!(h.query_by_label("Call Carol").is_some());
    assert!(h.query_by_label("Call Bob").is_none());
}

#[test]
fn a_contact_added_in_the_editor_is_saved_and_listed() {
    let (mut h, engine) = app(vec![]);
    h.run();
    h.get_by_label("Add contact").click();
    h.run();
    h.get_by_label("Contact name").click();
    h.run();
    h.get_by_label("Contact name").type_text("Dave");
    h.get_by_label("Number 1").click();
    h.run();
    h.get_by_label("Number 1").type_text("sip:dave@example.com");
    h.run();
    h.get_by_label("Save").click();
    h.run();
    // Edited later: a second number, and a favourite now.
    h.get_by_label("Edit Dave").click();
    h.run();
    h.get_by_label("Favourite (listed first)").click();
    h.run();
    h.get_by_label("Save").click();
    h.run();
    h.get_by_label("Call Dave").click();
    h.run();
    assert_eq!(
        engine.take(),
        vec![Command::Call {
            uri: "sip:dave@example.com".into(),
            account: None
        }]
    );
}

#[test]
fn a_missed_call_is_counted_until_recents_is_opened_and_calls_back_in_one_click() {
    let (mut h, engine) = app(vec![]);
    h.run();
    engine.emit(Event::Incoming {
        call: CallId(4),
        from: "\"Erin\" <sip:erin@example.com>".into(),
        account: None,
    });
    engine.emit(Event::Call {
        call: CallId(4),
        state: CallState::Ended,
        peer: "sip:erin@example.com".into(),
        reason: Some(dialtone::api::EndReason::Cancelled),
        code: None,
        hold: None,
    });
    h.run();
    h.get_by_label("Recents (1)").click();
    h.run();
    assert!(h.query_by_label("Recents").is_some(), "seen once opened");
    h.get_by_label("Call back Erin").click();
    h.run();
    assert_eq!(
        engine.take(),
        vec![Command::Call {
            uri: "sip:erin@example.com".into(),
            account: None
        }]
    );
}

#[test]
fn do_not_disturb_refusals_land_in_history_as_missed() {
    let (mut h, engine) = app(vec![]);
    h.run();
    engine.emit(Event::IncomingRefused {
        call: CallId(8),
        from: "sip:frank@example.com".into(),
        account: None,
        code: 486,
        reason: "do-not-disturb".into(),
    });
    h.run();
    assert!(h.query_by_label("Accept").is_none(), "no popup");
    h.get_by_label("Recents (1)").click();
    h.run();
    h.get_by_label("Call back frank");
}

fn reconfigured(cmds: &[Command]) -> Vec<Settings> {
    cmds.iter()
        .filter_map(|c| match c {
            Command::Reconfigure { settings } => Some((**settings).clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn settings_page_meters_the_microphone_only_while_open_and_plays_a_test_tone() {
    let (mut h, engine) = app(vec![]);
    h.run();
    engine.take();
    h.get_by_label("Settings").click();
    h.run();
    let sent = engine.take();
    assert!(
        sent.contains(&Command::MonitorInput { on: true }),
        "{sent:?}"
    );
    assert!(sent.contains(&Command::ListDevices), "{sent:?}");
    h.get_by_label("Play test tone").click();
    h.run();
    assert!(
        engine
            .take()
            .contains(&Command::PlayTestTone { ring: false })
    );
    h.get_by_label("Contacts").click();
    h.run();
    assert!(engine.take().contains(&Command::MonitorInput { on: false }));
}

#[test]
fn do_not_disturb_and_auto_answer_switches_reconfigure_the_engine_at_once() {
    let (mut h, engine) = app(vec![]);
    h.run();
    h.get_by_label("Settings").click();
    h.run();
    engine.take();
    h.get_by_label_contains("Do not disturb").click();
    h.run();
    let s = reconfigured(&engine.take());
    assert_eq!(s.len(), 1);
    assert!(s[0].do_not_disturb);
    h.get_by_label("Answer incoming calls automatically")
        .click();
    h.run();
    let s = reconfigured(&engine.take());
    assert!(s[0].auto_answer && s[0].do_not_disturb);
}

#[test]
fn an_account_added_in_settings_is_sent_to_the_engine_with_its_password() {
    let (mut h, engine) = app(vec![]);
    h.run();
    h.get_by_label("Settings").click();
    h.run();
    h.get_by_label("Add account").click();
    h.run();
    for (field, text) in [
        ("SIP address", "sip:alice@example.com"),
        ("Password", "s3cret"),
    ] {
        h.get_by_label(field).click();
        h.run();
        h.get_by_label(field).type_text(text);
        h.run();
    }
    engine.take();
    h.get_by_label("Save").click();
    h.run();
    let s = reconfigured(&engine.take());
    assert_eq!(s.len(), 1, "one reconfigure");
    assert_eq!(s[0].accounts.len(), 1);
    assert_eq!(s[0].accounts[0].uri, "sip:alice@example.com");
    assert_eq!(s[0].accounts[0].password, "s3cret");
    assert!(s[0].accounts[0].register);
    // The status line (and the settings list) now show the new account.
    assert_eq!(h.get_all_by_label("alice@example.com").count(), 2);
    h.get_by_label("Remove sip:alice@example.com").click();
    h.run();
    let s = reconfigured(&engine.take());
    assert!(s[0].accounts.is_empty());
}
