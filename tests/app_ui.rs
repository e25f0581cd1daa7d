//! The desktop app driven by egui_kittest with a fake engine (a channel pair): widgets are found by
//! their accessible (AccessKit) names, clicked, and the commands the app sends are asserted.

use dialtone::api::{AccountId, CallId, CallState, Command, Event};
use dialtone::app::store_worker::StoreWorker;
use dialtone::app::{AppInit, DialtoneApp, EngineLink};
use dialtone::store::settings::{Account, Settings};
use dialtone::store::{Contact, Database};
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

struct FakeEngine {
    events: mpsc::UnboundedSender<Event>,
    sent: Arc<Mutex<Vec<Command>>>,
}

impl FakeEngine {
    fn emit(&self, e: Event) {
        self.events.send(e).unwrap();
    }

    fn take(&self) -> Vec<Command> {
        std::mem::take(&mut self.sent.lock().unwrap())
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
    let sent = Arc::new(Mutex::new(Vec::new()));
    let s = sent.clone();
    let link = EngineLink::new(move |c| s.lock().unwrap().push(c), rx);
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
        force_quit: None,
    };
    let harness = Harness::builder()
        .with_size([420.0, 900.0])
        .build_eframe(move |cc| DialtoneApp::new(&cc.egui_ctx, init));
    (harness, FakeEngine { events: tx, sent })
}

/// Clicks the widget named `label` and lets the app settle.
fn click(h: &mut Harness<'static, DialtoneApp>, label: &str) {
    h.get_by_label(label).click();
    h.run();
}

/// Focuses the text field named `label` and types `text` into it.
fn type_into(h: &mut Harness<'static, DialtoneApp>, label: &str, text: &str) {
    click(h, label);
    h.get_by_label(label).type_text(text);
    h.run();
}

/// What the app sends to dial `uri` (through the default account).
fn dialled(uri: &str) -> Vec<Command> {
    vec![Command::Call {
        uri: uri.into(),
        account: None,
    }]
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
    type_into(&mut h, "Address", "sip:bob@example.com");
    h.key_press(egui::Key::Enter);
    h.run();
    assert_eq!(engine.take(), dialled("sip:bob@example.com"));
}

#[test]
fn keypad_digits_go_into_the_address_and_the_call_button_dials_them() {
    let (mut h, engine) = app(vec![]);
    h.run();
    click(&mut h, "Keypad");
    for d in ["1", "0", "0"] {
        h.get_by_label(&format!("Key {d}")).click();
        h.run();
    }
    click(&mut h, "Call");
    assert_eq!(engine.take(), dialled("100"));
}

#[test]
fn echo_test_entry_calls_the_built_in_echo_service() {
    let (mut h, engine) = app(vec![]);
    h.run();
    click(&mut h, "Call Echo test");
    assert_eq!(engine.take(), dialled("sip:echo@127.0.0.1:5999"));
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
    click(&mut h, "Accept");
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
    click(&mut h, "Decline");
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
    click(&mut h, "Mute");
    click(&mut h, "Hold");
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
    click(&mut h, "Resume");
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
    click(&mut h, "Hang up");
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
    click(&mut h, "Retry");
    assert_eq!(
        engine.take(),
        vec![Command::Register {
            account: AccountId(0)
        }]
    );
}

fn contact(name: &str, favourite: bool, numbers: &[(&str, &str)]) -> Contact {
    Contact {
        favourite,
        ..Contact::new(name, numbers)
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
    click(&mut h, "Call Bob");
    assert_eq!(engine.take(), dialled("sip:bob@example.com"));
    click(&mut h, "Call Carol");
    assert!(engine.take().is_empty(), "two numbers: the user picks one");
    click(&mut h, "desk: sip:carol@pbx.example.com");
    assert_eq!(engine.take(), dialled("sip:carol@pbx.example.com"));
}

#[test]
fn search_as_you_type_filters_the_contacts() {
    let db = db_with(&[
        contact("Bob", false, &[("", "sip:bob@example.com")]),
        contact("Carol", false, &[("", "+1 (555) 123-4567")]),
    ]);
    let (mut h, _engine) = app_with(vec![], db);
    h.run();
    type_into(&mut h, "Search contacts", "555 12");
    assert!(h.query_by_label("Call Carol").is_some());
    assert!(h.query_by_label("Call Bob").is_none());
}

#[test]
fn a_contact_added_in_the_editor_is_saved_and_listed() {
    let (mut h, engine) = app(vec![]);
    h.run();
    click(&mut h, "Add contact");
    type_into(&mut h, "Contact name", "Dave");
    type_into(&mut h, "Number 1", "sip:dave@example.com");
    click(&mut h, "Save");
    // Edited later: a favourite now.
    click(&mut h, "Edit Dave");
    click(&mut h, "Favourite (listed first)");
    click(&mut h, "Save");
    click(&mut h, "Call Dave");
    assert_eq!(engine.take(), dialled("sip:dave@example.com"));
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
    click(&mut h, "Recents (1)");
    assert!(h.query_by_label("Recents").is_some(), "seen once opened");
    click(&mut h, "Call back Erin");
    assert_eq!(engine.take(), dialled("sip:erin@example.com"));
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
    click(&mut h, "Recents (1)");
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
    click(&mut h, "Settings");
    let sent = engine.take();
    assert!(
        sent.contains(&Command::MonitorInput { on: true }),
        "{sent:?}"
    );
    assert!(sent.contains(&Command::ListDevices), "{sent:?}");
    click(&mut h, "Play test tone");
    assert!(
        engine
            .take()
            .contains(&Command::PlayTestTone { ring: false })
    );
    click(&mut h, "Contacts");
    assert!(engine.take().contains(&Command::MonitorInput { on: false }));
}

#[test]
fn do_not_disturb_and_auto_answer_switches_reconfigure_the_engine_at_once() {
    let (mut h, engine) = app(vec![]);
    h.run();
    click(&mut h, "Settings");
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
    click(&mut h, "Settings");
    click(&mut h, "Add account");
    for (field, text) in [
        ("SIP address", "sip:alice@example.com"),
        ("Password", "s3cret"),
    ] {
        type_into(&mut h, field, text);
    }
    engine.take();
    click(&mut h, "Save");
    let s = reconfigured(&engine.take());
    assert_eq!(s.len(), 1, "one reconfigure");
    assert_eq!(s[0].accounts.len(), 1);
    assert_eq!(s[0].accounts[0].uri, "sip:alice@example.com");
    assert_eq!(s[0].accounts[0].password, "s3cret");
    assert!(s[0].accounts[0].register);
    // The status line (and the settings list) now show the new account.
    assert_eq!(h.get_all_by_label("alice@example.com").count(), 2);
    click(&mut h, "Remove sip:alice@example.com");
    let s = reconfigured(&engine.take());
    assert!(s[0].accounts.is_empty());
}

#[test]
fn closing_the_main_window_with_a_call_up_asks_before_quitting() {
    let (mut h, engine) = app(vec![]);
    h.run();
    engine.emit(call_state(2, CallState::Established));
    h.run();
    h.input_mut()
        .viewports
        .entry(egui::ViewportId::ROOT)
        .or_default()
        .events
        .push(egui::ViewportEvent::Close);
    h.step();
    // The close request was one event (kittest would repeat it every frame).
    h.input_mut()
        .viewports
        .get_mut(&egui::ViewportId::ROOT)
        .unwrap()
        .events
        .clear();
    h.run();
    h.get_by_label_contains("Quit Dialtone and hang up?");
    // (Embedded in the test, the call window covers the main window's top: click through
    // AccessKit, as a screen reader would.)
    h.get_by_label("Keep Dialtone open").click_accesskit();
    h.run();
    assert!(h.query_by_label_contains("Quit Dialtone").is_none());
    assert!(engine.take().is_empty(), "nothing hung up");
}
