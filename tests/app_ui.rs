//! The desktop app driven by egui_kittest with a fake engine (a channel pair): widgets are found by
//! their accessible (AccessKit) names, clicked, and the commands the app sends are asserted.

use dialtone::api::{AccountId, CallId, CallState, Command, Event};
use dialtone::app::{AppInit, DialtoneApp, EngineLink};
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
    let (tx, rx) = mpsc::unbounded_channel();
    let sent = Rc::new(RefCell::new(Vec::new()));
    let s = sent.clone();
    let link = EngineLink::new(move |c| s.borrow_mut().push(c), rx);
    let init = AppInit {
        link,
        accounts,
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
    h.get_by_label("Echo test").click();
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
