//! End to end: real engines (`dialtone::engine::Engine`, in-process, each on its own thread and
//! its own 127.0.0.1 port) register at the test registrar (tests/common/registrar.rs) and call
//! each other through it or directly, over UDP, TCP and TLS. Every test starts its own registrar
//! and engines on free ports, so they run in parallel.

mod common;

use common::registrar::{Options, Registrar};
use dialtone::api::{
    AccountId, CallId, CallState, CallStats, Command, EndReason, Event, HoldState,
    RegistrationState,
};
use dialtone::engine::Engine;
use dialtone::engine::sip::auth::Algorithm;
use dialtone::engine::sip::message::Message;
use dialtone::store::settings::{Account, Settings, Transport};
use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedReceiver;

/// Long enough for anything on loopback, short enough to fail a hung test quickly.
const T: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------- harness

/// An engine's event stream: everything received is kept, so a failed wait can show it all;
/// events not yet waited for stay pending, in order.
struct Events {
    name: &'static str,
    rx: UnboundedReceiver<Event>,
    pending: VecDeque<Event>,
    seen: Vec<Event>,
}

impl Events {
    fn pump(&mut self) {
        while let Ok(e) = self.rx.try_recv() {
            self.seen.push(e.clone());
            self.pending.push_back(e);
        }
    }

    fn take(&mut self, pred: &impl Fn(&Event) -> bool) -> Option<Event> {
        self.pump();
        let i = self.pending.iter().position(pred)?;
        self.pending.remove(i)
    }
}

/// Waits for the first pending or coming event that satisfies `pred` and takes it; fails with
/// every event the engine sent so far.
#[track_caller]
fn wait_for(ev: &mut Events, pred: impl Fn(&Event) -> bool, timeout: Duration) -> Event {
    let end = Instant::now() + timeout;
    loop {
        if let Some(e) = ev.take(&pred) {
            return e;
        }
        if Instant::now() >= end {
            panic!(
                "{}: no matching event within {timeout:?}; events so far:\n{:#?}",
                ev.name, ev.seen
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Asserts that no event satisfying `pred` comes within `within`.
#[track_caller]
fn no_event(ev: &mut Events, pred: impl Fn(&Event) -> bool, within: Duration) {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if let Some(e) = ev.take(&pred) {
            panic!(
                "{}: unexpected {e:?}; events so far:\n{:#?}",
                ev.name, ev.seen
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A distinct RTP range per engine, so no two engines of a test run ever share one.
fn rtp_range() -> String {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let n = NEXT.fetch_add(1, Ordering::SeqCst) % 500;
    let first = 30_000 + n * 40;
    format!("{first}-{}", first + 39)
}

fn settings(accounts: Vec<Account>) -> Settings {
    Settings {
        accounts,
        listen: "127.0.0.1:0".into(),
        rtp_ports: rtp_range(),
        // Synthetic devices: these tests are about SIP, not sound cards.
        audio_in: "tone:440".into(),
        audio_out: "null".into(),
        ..Settings::default()
    }
}

fn start(name: &'static str, settings: Settings) -> (Engine, Events) {
    let (engine, rx) = Engine::spawn(settings, None).expect("engine starts");
    let events = Events {
        name,
        rx,
        pending: VecDeque::new(),
        seen: Vec::new(),
    };
    (engine, events)
}

fn account(user: &str, password: &str, registrar: &str, transport: Transport) -> Account {
    Account {
        uri: format!("sip:{user}@{registrar}"),
        password: password.into(),
        registrar: registrar.into(),
        transport,
        ..Account::default()
    }
}

/// A registrar with alice and bob, both engines registered at it over the given transports.
fn alice_and_bob(a: Transport, b: Transport) -> (Registrar, (Engine, Events), (Engine, Events)) {
    let reg = Registrar::start(
        Options::default()
            .user("alice", "alicepw")
            .user("bob", "bobpw"),
    );
    let mut alice = start(
        "alice",
        settings(vec![account("alice", "alicepw", &reg.addr(), a)]),
    );
    let mut bob = start(
        "bob",
        settings(vec![account("bob", "bobpw", &reg.addr(), b)]),
    );
    for ev in [&mut alice.1, &mut bob.1] {
        let e = registered(ev);
        assert!(is_registration(&e, RegistrationState::Registered), "{e:?}");
    }
    (reg, alice, bob)
}

fn is_registration(e: &Event, want: RegistrationState) -> bool {
    matches!(e, Event::Registration { state, .. } if *state == want)
}

#[track_caller]
fn registered(ev: &mut Events) -> Event {
    wait_for(
        ev,
        |e| {
            matches!(
                e,
                Event::Registration {
                    state: RegistrationState::Registered | RegistrationState::Failed,
                    ..
                }
            )
        },
        T,
    )
}

/// Waits for a `call` event of `call` (any call when None) in `state`.
#[track_caller]
fn call_event(ev: &mut Events, call: Option<CallId>, want: CallState) -> Event {
    wait_for(
        ev,
        |e| matches!(e, Event::Call { call: c, state, .. } if *state == want && call.is_none_or(|id| id == *c)),
        T,
    )
}

fn call_id(e: &Event) -> CallId {
    match e {
        Event::Call { call, .. } | Event::Incoming { call, .. } => *call,
        other => panic!("not a call event: {other:?}"),
    }
}

#[track_caller]
fn incoming(ev: &mut Events) -> CallId {
    call_id(&wait_for(ev, |e| matches!(e, Event::Incoming { .. }), T))
}

#[track_caller]
fn ended(ev: &mut Events, call: CallId) -> (Option<EndReason>, Option<u16>) {
    match call_event(ev, Some(call), CallState::Ended) {
        Event::Call { reason, code, .. } => (reason, code),
        _ => unreachable!(),
    }
}

#[track_caller]
fn stats(engine: &Engine, ev: &mut Events) -> Vec<CallStats> {
    engine.send(Command::Stats);
    match wait_for(ev, |e| matches!(e, Event::Stats { .. }), T) {
        Event::Stats { calls, .. } => calls,
        _ => unreachable!(),
    }
}

/// `a` calls `uri`, `b` rings and answers: both established. Returns (a's call, b's call).
#[track_caller]
fn connect(
    a: &Engine,
    a_ev: &mut Events,
    b: &Engine,
    b_ev: &mut Events,
    uri: &str,
) -> (CallId, CallId) {
    a.send(Command::Call {
        uri: uri.into(),
        account: None,
    });
    let a_call = call_id(&call_event(a_ev, None, CallState::Calling));
    let b_call = incoming(b_ev);
    call_event(b_ev, Some(b_call), CallState::Ringing);
    call_event(a_ev, Some(a_call), CallState::Ringing);
    b.send(Command::Answer { call: b_call });
    call_event(b_ev, Some(b_call), CallState::Established);
    call_event(a_ev, Some(a_call), CallState::Established);
    (a_call, b_call)
}

/// `a` hangs up an established call: a ends `local_hangup`, b `remote_hangup`.
#[track_caller]
fn hang_up(a: &Engine, a_ev: &mut Events, a_call: CallId, b_ev: &mut Events, b_call: CallId) {
    a.send(Command::Hangup { call: a_call });
    assert_eq!(ended(a_ev, a_call).0, Some(EndReason::LocalHangup));
    assert_eq!(ended(b_ev, b_call).0, Some(EndReason::RemoteHangup));
}

fn direct_uri(engine: &Engine) -> String {
    format!("sip:anything@{}", engine.local_addr())
}

// ---------------------------------------------------------------------------------- registration

#[test]
fn two_engines_register_over_udp_and_one_over_tcp_with_digest_auth() {
    let reg = Registrar::start(
        Options::default()
            .user("alice", "alicepw")
            .user("bob", "bobpw")
            .user("carol", "carolpw"),
    );
    let (_a, mut a_ev) = start(
        "alice",
        settings(vec![account(
            "alice",
            "alicepw",
            &reg.addr(),
            Transport::Udp,
        )]),
    );
    let (_b, mut b_ev) = start(
        "bob",
        settings(vec![account("bob", "bobpw", &reg.addr(), Transport::Udp)]),
    );
    let (_c, mut c_ev) = start(
        "carol",
        settings(vec![account(
            "carol",
            "carolpw",
            &reg.addr(),
            Transport::Tcp,
        )]),
    );
    for (ev, user) in [
        (&mut a_ev, "alice"),
        (&mut b_ev, "bob"),
        (&mut c_ev, "carol"),
    ] {
        let e = registered(ev);
        assert_eq!(
            e,
            Event::Registration {
                account: AccountId(0),
                aor: format!("sip:{user}@127.0.0.1"),
                state: RegistrationState::Registered,
                code: Some(200),
                reason: None,
            }
        );
        let bindings = reg.bindings(user);
        assert_eq!(bindings.len(), 1, "{user}: {reg:?}");
        assert!(
            bindings[0]
                .contact
                .starts_with(&format!("sip:{user}@127.0.0.1:")),
            "{bindings:?}"
        );
    }
    let carol = &reg.bindings("carol")[0];
    assert_eq!(carol.transport, Transport::Tcp);
    assert!(carol.contact.ends_with(";transport=tcp"), "{carol:?}");
    // Every account was challenged once and then got through.
    assert!(reg.registers() >= 6, "{reg:?}");
    assert_eq!(reg.auth_failures(), 0, "{reg:?}");
}

#[test]
fn registers_with_sha256_digest() {
    let reg = Registrar::start(
        Options::default()
            .user("alice", "alicepw")
            .algorithm(Algorithm::Sha256),
    );
    let (_a, mut a_ev) = start(
        "alice",
        settings(vec![account(
            "alice",
            "alicepw",
            &reg.addr(),
            Transport::Udp,
        )]),
    );
    assert!(is_registration(
        &registered(&mut a_ev),
        RegistrationState::Registered
    ));
    assert_eq!(reg.auth_failures(), 0);
    assert_eq!(reg.bindings("alice").len(), 1);
}

#[test]
fn wrong_password_fails_with_401_and_a_reason() {
    let reg = Registrar::start(Options::default().user("alice", "alicepw"));
    let (_a, mut a_ev) = start(
        "alice",
        settings(vec![account("alice", "guess", &reg.addr(), Transport::Udp)]),
    );
    match registered(&mut a_ev) {
        Event::Registration {
            state: RegistrationState::Failed,
            code: Some(401),
            reason: Some(reason),
            ..
        } => assert!(reason.contains("password"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert!(reg.auth_failures() >= 1, "{reg:?}");
    assert_eq!(reg.binding_count(), 0);
    // Failed means failed: no more REGISTERs until the retry back-off (seconds away).
    let seen = reg.registers();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(reg.registers(), seen, "the engine keeps hammering: {reg:?}");
    assert!(seen <= 3, "{seen} REGISTERs for one failed attempt");
}

#[test]
fn register_raises_expiry_after_423_interval_too_brief() {
    let reg = Registrar::start(Options::default().user("alice", "alicepw").min_expires(120));
    let mut acc = account("alice", "alicepw", &reg.addr(), Transport::Udp);
    acc.expires = 60;
    let (_a, mut a_ev) = start("alice", settings(vec![acc]));
    assert!(is_registration(
        &registered(&mut a_ev),
        RegistrationState::Registered
    ));
    assert_eq!(reg.too_brief(), 1, "{reg:?}");
    let b = &reg.bindings("alice")[0];
    let left = b.expires_at.saturating_duration_since(Instant::now());
    assert!(left > Duration::from_secs(100), "{b:?}");
}

#[test]
fn registration_is_refreshed_and_answers_a_new_challenge() {
    // Every nonce is good once: the refresh's reused nonce is challenged again (without stale).
    let reg = Registrar::start(
        Options::default()
            .user("alice", "alicepw")
            .single_use_nonces(),
    );
    let mut acc = account("alice", "alicepw", &reg.addr(), Transport::Udp);
    acc.expires = 10; // refreshed after 5 s
    let (_a, mut a_ev) = start("alice", settings(vec![acc]));
    assert!(is_registration(
        &registered(&mut a_ev),
        RegistrationState::Registered
    ));
    assert_eq!(reg.registers(), 2, "{reg:?}");
    wait_for(
        &mut a_ev,
        |e| is_registration(e, RegistrationState::Registered),
        Duration::from_secs(8),
    );
    assert_eq!(reg.registers(), 4, "{reg:?}");
    assert_eq!(reg.unknown_nonces(), 1, "{reg:?}");
    assert_eq!(reg.auth_failures(), 0, "{reg:?}");
    assert_eq!(reg.bindings("alice").len(), 1);
    a_ev.pump();
    assert!(
        !a_ev
            .seen
            .iter()
            .any(|e| is_registration(e, RegistrationState::Failed)),
        "{:#?}",
        a_ev.seen
    );
}

#[test]
fn register_command_after_a_failure_tries_once_more() {
    let reg = Registrar::start(Options::default().user("alice", "alicepw"));
    let (a, mut a_ev) = start(
        "alice",
        settings(vec![account("alice", "guess", &reg.addr(), Transport::Udp)]),
    );
    assert!(is_registration(
        &registered(&mut a_ev),
        RegistrationState::Failed
    ));
    let first = reg.registers();
    a.send(Command::Register {
        account: AccountId(0),
    });
    wait_for(
        &mut a_ev,
        |e| is_registration(e, RegistrationState::Registering),
        T,
    );
    let e = registered(&mut a_ev);
    assert!(
        matches!(
            e,
            Event::Registration {
                state: RegistrationState::Failed,
                code: Some(401),
                ..
            }
        ),
        "{e:?}"
    );
    std::thread::sleep(Duration::from_millis(300));
    let again = reg.registers() - first;
    assert!(
        (1..=2).contains(&again),
        "{again} REGISTERs for one retry: {reg:?}"
    );
}

#[test]
fn tls_registration_with_the_test_ca_trusted() {
    let reg = Registrar::start(Options::default().user("alice", "alicepw"));
    let mut acc = account("alice", "alicepw", &reg.tls_addr(), Transport::Tls);
    acc.tls_ca = reg.ca_file();
    let (_a, mut a_ev) = start("alice", settings(vec![acc]));
    let e = registered(&mut a_ev);
    assert!(is_registration(&e, RegistrationState::Registered), "{e:?}");
    let b = &reg.bindings("alice")[0];
    assert_eq!(b.transport, Transport::Tls);
    assert!(b.contact.ends_with(";transport=tls"), "{b:?}");
    assert_eq!(reg.tls_handshake_failures(), 0);
}

#[test]
fn tls_to_an_untrusted_server_fails() {
    let reg = Registrar::start(Options::default().user("alice", "alicepw"));
    let acc = account("alice", "alicepw", &reg.tls_addr(), Transport::Tls);
    assert!(acc.tls_verify && acc.tls_ca.is_empty());
    let (_a, mut a_ev) = start("alice", settings(vec![acc]));
    match registered(&mut a_ev) {
        Event::Registration {
            state: RegistrationState::Failed,
            reason: Some(reason),
            ..
        } => {
            let r = reason.to_ascii_lowercase();
            assert!(r.contains("tls") || r.contains("certificate"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    no_event(
        &mut a_ev,
        |e| is_registration(e, RegistrationState::Registered),
        Duration::from_millis(300),
    );
    assert_eq!(reg.registers(), 0, "{reg:?}");
    assert_eq!(reg.binding_count(), 0);
    assert!(reg.tls_handshake_failures() >= 1, "{reg:?}");
}

#[test]
fn shutdown_unregisters_and_stops() {
    let (reg, (a, mut a_ev), (b, mut b_ev)) = alice_and_bob(Transport::Udp, Transport::Tcp);
    assert_eq!(reg.binding_count(), 2);
    let started = Instant::now();
    a.shutdown();
    b.shutdown();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    for ev in [&mut a_ev, &mut b_ev] {
        wait_for(
            ev,
            |e| is_registration(e, RegistrationState::Unregistered),
            T,
        );
        wait_for(ev, |e| matches!(e, Event::Stopped), T);
    }
    assert_eq!(reg.binding_count(), 0, "{reg:?}");
}

#[test]
fn dead_server_over_tcp_fails_at_once() {
    // A port nothing listens on: bind, learn the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let registrar = format!("127.0.0.1:{port}");
    let (_a, mut a_ev) = start(
        "alice",
        settings(vec![account("alice", "pw", &registrar, Transport::Tcp)]),
    );
    let started = Instant::now();
    let e = registered(&mut a_ev);
    assert!(is_registration(&e, RegistrationState::Failed), "{e:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn call_to_a_dead_tcp_port_ends_with_an_error_at_once() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let (a, mut a_ev) = start("a", settings(vec![]));
    let started = Instant::now();
    a.send(Command::Call {
        uri: format!("sip:nobody@127.0.0.1:{port};transport=tcp"),
        account: None,
    });
    let call = call_id(&call_event(&mut a_ev, None, CallState::Calling));
    // A refused connection is a transport error (`error`), not an unanswered call (`timeout`).
    assert_eq!(ended(&mut a_ev, call), (Some(EndReason::Error), None));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

/// The one slow test: over UDP nothing says "refused", so only timer F (64*T1 = 32 s) ends it.
#[test]
fn dead_server_over_udp_fails_after_timer_f() {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("udp");
    let registrar = sock.local_addr().expect("addr").to_string();
    drop(sock);
    let mut acc = account("alice", "pw", &registrar, Transport::Udp);
    acc.expires = 60;
    let (_a, mut a_ev) = start("alice", settings(vec![acc]));
    let started = Instant::now();
    let e = wait_for(
        &mut a_ev,
        |e| is_registration(e, RegistrationState::Failed),
        Duration::from_secs(40),
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(30) && took < Duration::from_secs(36),
        "{took:?}"
    );
    assert!(
        matches!(&e, Event::Registration { code: None, reason: Some(r), .. } if !r.is_empty()),
        "{e:?}"
    );
}

// ---------------------------------------------------------------------------------- calls

#[test]
fn call_through_the_registrar_with_hold_resume_and_hangup() {
    let (reg, (a, mut a_ev), (b, mut b_ev)) = alice_and_bob(Transport::Udp, Transport::Udp);

    let bob = format!("sip:bob@{}", reg.addr());
    let (a_call, b_call) = connect(&a, &mut a_ev, &b, &mut b_ev, &bob);
    // INVITE and ACK (which may still be on its way) went through the proxy, 180 and 200 back.
    assert_eq!(reg.forwarded("INVITE"), 1, "{reg:?}");
    assert!(reg.wait(T, |r| r.forwarded("ACK") == 1), "{reg:?}");
    assert!(reg.forwarded_responses() >= 2, "{reg:?}");

    a.send(Command::Hold { call: a_call });
    match call_event(&mut a_ev, Some(a_call), CallState::Held) {
        Event::Call { hold, .. } => assert_eq!(
            hold,
            Some(HoldState {
                local: true,
                remote: false
            })
        ),
        _ => unreachable!(),
    }
    match call_event(&mut b_ev, Some(b_call), CallState::Held) {
        Event::Call { hold, .. } => assert_eq!(
            hold,
            Some(HoldState {
                local: false,
                remote: true
            })
        ),
        _ => unreachable!(),
    }
    a.send(Command::Resume { call: a_call });
    call_event(&mut a_ev, Some(a_call), CallState::Established);
    call_event(&mut b_ev, Some(b_call), CallState::Established);

    hang_up(&a, &mut a_ev, a_call, &mut b_ev, b_call);
    // Every in-dialog request followed the Record-Route through the registrar.
    assert_eq!(reg.forwarded("INVITE"), 3, "{reg:?}");
    assert_eq!(reg.forwarded("BYE"), 1, "{reg:?}");
    assert!(reg.wait(T, |r| r.forwarded("ACK") == 3), "{reg:?}");
}

#[test]
fn call_through_the_registrar_to_a_tcp_user_callee_hangs_up() {
    let (reg, (a, mut a_ev), (b, mut b_ev)) = alice_and_bob(Transport::Udp, Transport::Tcp);
    let bob = format!("sip:bob@{}", reg.addr());
    let (a_call, b_call) = connect(&a, &mut a_ev, &b, &mut b_ev, &bob);
    // The callee's re-INVITE goes the other way through the route set.
    b.send(Command::Hold { call: b_call });
    call_event(&mut b_ev, Some(b_call), CallState::Held);
    call_event(&mut a_ev, Some(a_call), CallState::Held);
    b.send(Command::Resume { call: b_call });
    call_event(&mut b_ev, Some(b_call), CallState::Established);
    call_event(&mut a_ev, Some(a_call), CallState::Established);
    hang_up(&b, &mut b_ev, b_call, &mut a_ev, a_call);
}

#[test]
fn tls_user_calls_udp_user_through_the_registrar() {
    let reg = Registrar::start(
        Options::default()
            .user("alice", "alicepw")
            .user("bob", "bobpw"),
    );
    let mut alice = account("alice", "alicepw", &reg.tls_addr(), Transport::Tls);
    alice.tls_ca = reg.ca_file();
    let (a, mut a_ev) = start("alice", settings(vec![alice]));
    let (b, mut b_ev) = start(
        "bob",
        settings(vec![account("bob", "bobpw", &reg.addr(), Transport::Udp)]),
    );
    assert!(is_registration(
        &registered(&mut a_ev),
        RegistrationState::Registered
    ));
    assert!(is_registration(
        &registered(&mut b_ev),
        RegistrationState::Registered
    ));
    let bob = format!("sip:bob@{}", reg.addr());
    let (a_call, b_call) = connect(&a, &mut a_ev, &b, &mut b_ev, &bob);
    // A re-INVITE from the TLS side refreshes its Contact: the far end must still reach it.
    a.send(Command::Hold { call: a_call });
    call_event(&mut a_ev, Some(a_call), CallState::Held);
    call_event(&mut b_ev, Some(b_call), CallState::Held);
    a.send(Command::Resume { call: a_call });
    call_event(&mut a_ev, Some(a_call), CallState::Established);
    call_event(&mut b_ev, Some(b_call), CallState::Established);
    hang_up(&b, &mut b_ev, b_call, &mut a_ev, a_call);

    // And the other way round: bob calls alice, reached over her TLS connection.
    let alice = format!("sip:alice@{}", reg.addr());
    let (b_call, a_call) = connect(&b, &mut b_ev, &a, &mut a_ev, &alice);
    hang_up(&a, &mut a_ev, a_call, &mut b_ev, b_call);
}

#[test]
fn call_through_a_proxy_that_challenges_the_invite() {
    let reg = Registrar::start(
        Options::default()
            .user("alice", "alicepw")
            .user("bob", "bobpw")
            .challenge_invites(),
    );
    let (a, mut a_ev) = start(
        "alice",
        settings(vec![account(
            "alice",
            "alicepw",
            &reg.addr(),
            Transport::Udp,
        )]),
    );
    let (b, mut b_ev) = start(
        "bob",
        settings(vec![account("bob", "bobpw", &reg.addr(), Transport::Udp)]),
    );
    assert!(is_registration(
        &registered(&mut a_ev),
        RegistrationState::Registered
    ));
    assert!(is_registration(
        &registered(&mut b_ev),
        RegistrationState::Registered
    ));
    let before = reg.challenges();
    let bob = format!("sip:bob@{}", reg.addr());
    let (a_call, b_call) = connect(&a, &mut a_ev, &b, &mut b_ev, &bob);
    assert_eq!(reg.challenges(), before + 1, "{reg:?}");
    assert_eq!(reg.auth_failures(), 0, "{reg:?}");
    // Only the authorised INVITE went on; the ACK of the 407 stayed at the proxy.
    assert_eq!(reg.forwarded("INVITE"), 1, "{reg:?}");
    assert!(reg.wait(T, |r| r.forwarded("ACK") == 1), "{reg:?}");
    hang_up(&a, &mut a_ev, a_call, &mut b_ev, b_call);
}

#[test]
fn call_with_a_wrong_password_gives_up_after_one_answer() {
    let reg = Registrar::start(
        Options::default()
            .user("alice", "alicepw")
            .user("bob", "bobpw")
            .challenge_invites(),
    );
    let (_b, mut b_ev) = start(
        "bob",
        settings(vec![account("bob", "bobpw", &reg.addr(), Transport::Udp)]),
    );
    assert!(is_registration(
        &registered(&mut b_ev),
        RegistrationState::Registered
    ));
    let mut alice = account("alice", "guess", &reg.addr(), Transport::Udp);
    alice.register = false;
    let (a, mut a_ev) = start("alice", settings(vec![alice]));
    a.send(Command::Call {
        uri: format!("sip:bob@{}", reg.addr()),
        account: None,
    });
    let call = call_id(&call_event(&mut a_ev, None, CallState::Calling));
    assert_eq!(ended(&mut a_ev, call), (Some(EndReason::Error), Some(407)));
    match wait_for(&mut a_ev, |e| matches!(e, Event::Error { .. }), T) {
        Event::Error { message } => assert!(message.contains("password"), "{message}"),
        _ => unreachable!(),
    }
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(reg.auth_failures(), 1, "{reg:?}");
    assert_eq!(reg.forwarded("INVITE"), 0, "{reg:?}");
    no_event(
        &mut b_ev,
        |e| matches!(e, Event::Incoming { .. }),
        Duration::ZERO,
    );
}

#[test]
fn call_to_an_unregistered_user_fails_with_404() {
    let reg = Registrar::start(Options::default().user("alice", "alicepw"));
    let (a, mut a_ev) = start(
        "alice",
        settings(vec![account(
            "alice",
            "alicepw",
            &reg.addr(),
            Transport::Udp,
        )]),
    );
    assert!(is_registration(
        &registered(&mut a_ev),
        RegistrationState::Registered
    ));
    a.send(Command::Call {
        uri: format!("sip:nobody@{}", reg.addr()),
        account: None,
    });
    let call = call_id(&call_event(&mut a_ev, None, CallState::Calling));
    assert_eq!(ended(&mut a_ev, call), (Some(EndReason::Error), Some(404)));
}

#[test]
fn shutdown_hangs_up_established_and_ringing_calls() {
    let (a, mut a_ev) = start("a", settings(vec![]));
    let (b, mut b_ev) = start("b", settings(vec![]));
    let (c, mut c_ev) = start("c", settings(vec![]));
    // a—b established, c rings a (incoming for a), a rings c (outgoing for a).
    let (ab, ba) = connect(&a, &mut a_ev, &b, &mut b_ev, &direct_uri(&b));
    let (ca, ac_in) = ring(&c, &mut c_ev, &a, &mut a_ev);
    let (ac_out, ca_in) = ring(&a, &mut a_ev, &c, &mut c_ev);
    a.shutdown();
    assert_eq!(ended(&mut a_ev, ab).0, Some(EndReason::LocalHangup));
    assert_eq!(ended(&mut b_ev, ba).0, Some(EndReason::RemoteHangup));
    assert_eq!(ended(&mut a_ev, ac_in).0, Some(EndReason::Declined));
    assert_eq!(ended(&mut c_ev, ca), (Some(EndReason::Declined), Some(603)));
    assert_eq!(ended(&mut a_ev, ac_out).0, Some(EndReason::Cancelled));
    assert_eq!(ended(&mut c_ev, ca_in).0, Some(EndReason::Cancelled));
    wait_for(&mut a_ev, |e| matches!(e, Event::Stopped), T);
    assert_eq!(stats(&b, &mut b_ev), vec![]);
    assert_eq!(stats(&c, &mut c_ev), vec![]);
}

#[test]
fn direct_call_over_udp_without_accounts() {
    let (a, mut a_ev) = start("a", settings(vec![]));
    let (b, mut b_ev) = start("b", settings(vec![]));
    let (a_call, b_call) = connect(&a, &mut a_ev, &b, &mut b_ev, &direct_uri(&b));
    hang_up(&b, &mut b_ev, b_call, &mut a_ev, a_call);
}

#[test]
fn direct_call_over_tcp_without_accounts() {
    let (a, mut a_ev) = start("a", settings(vec![]));
    let (b, mut b_ev) = start("b", settings(vec![]));
    let uri = format!("{};transport=tcp", direct_uri(&b));
    let (a_call, b_call) = connect(&a, &mut a_ev, &b, &mut b_ev, &uri);
    let held =
        |ev: &mut Events, call, local, remote| match call_event(ev, Some(call), CallState::Held) {
            Event::Call { hold, .. } => assert_eq!(hold, Some(HoldState { local, remote })),
            _ => unreachable!(),
        };
    // Both sides hold, then a resumes: b still holds.
    a.send(Command::Hold { call: a_call });
    held(&mut a_ev, a_call, true, false);
    held(&mut b_ev, b_call, false, true);
    b.send(Command::Hold { call: b_call });
    held(&mut b_ev, b_call, true, true);
    held(&mut a_ev, a_call, true, true);
    a.send(Command::Resume { call: a_call });
    held(&mut a_ev, a_call, false, true);
    held(&mut b_ev, b_call, true, false);
    b.send(Command::Resume { call: b_call });
    call_event(&mut b_ev, Some(b_call), CallState::Established);
    call_event(&mut a_ev, Some(a_call), CallState::Established);
    hang_up(&a, &mut a_ev, a_call, &mut b_ev, b_call);
}

/// `a` calls `b` directly and waits until b rings: (a's call, b's call).
fn ring(a: &Engine, a_ev: &mut Events, b: &Engine, b_ev: &mut Events) -> (CallId, CallId) {
    a.send(Command::Call {
        uri: direct_uri(b),
        account: None,
    });
    let a_call = call_id(&call_event(a_ev, None, CallState::Calling));
    let b_call = incoming(b_ev);
    call_event(a_ev, Some(a_call), CallState::Ringing);
    (a_call, b_call)
}

#[test]
fn callee_rejects_and_caller_sees_busy() {
    let (a, mut a_ev) = start("a", settings(vec![]));
    let (b, mut b_ev) = start("b", settings(vec![]));
    let (a_call, b_call) = ring(&a, &mut a_ev, &b, &mut b_ev);
    b.send(Command::Reject {
        call: b_call,
        decline: false,
    });
    assert_eq!(ended(&mut a_ev, a_call), (Some(EndReason::Busy), Some(486)));
    assert_eq!(ended(&mut b_ev, b_call).0, Some(EndReason::Declined));
}

#[test]
fn callee_declines_and_caller_sees_declined() {
    let (a, mut a_ev) = start("a", settings(vec![]));
    let (b, mut b_ev) = start("b", settings(vec![]));
    let (a_call, b_call) = ring(&a, &mut a_ev, &b, &mut b_ev);
    b.send(Command::Reject {
        call: b_call,
        decline: true,
    });
    assert_eq!(
        ended(&mut a_ev, a_call),
        (Some(EndReason::Declined), Some(603))
    );
    assert_eq!(ended(&mut b_ev, b_call).0, Some(EndReason::Declined));
}

#[test]
fn caller_cancels_while_callee_rings() {
    let (a, mut a_ev) = start("a", settings(vec![]));
    let (b, mut b_ev) = start("b", settings(vec![]));
    let (a_call, b_call) = ring(&a, &mut a_ev, &b, &mut b_ev);
    a.send(Command::Hangup { call: a_call });
    assert_eq!(ended(&mut a_ev, a_call).0, Some(EndReason::Cancelled));
    assert_eq!(ended(&mut b_ev, b_call).0, Some(EndReason::Cancelled));
    // Nothing lingers: no live calls on either side.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(stats(&a, &mut a_ev), vec![]);
    assert_eq!(stats(&b, &mut b_ev), vec![]);
}

#[test]
fn caller_hangs_up_straight_after_dialling() {
    let (a, mut a_ev) = start("a", settings(vec![]));
    let (b, mut b_ev) = start("b", settings(vec![]));
    a.send(Command::Call {
        uri: direct_uri(&b),
        account: None,
    });
    // The first call gets number 1: hang up before any response can have come.
    a.send(Command::Hangup { call: CallId(1) });
    assert_eq!(ended(&mut a_ev, CallId(1)).0, Some(EndReason::Cancelled));
    // The INVITE is out; whenever its 180 comes, the CANCEL follows.
    let b_call = incoming(&mut b_ev);
    assert_eq!(ended(&mut b_ev, b_call).0, Some(EndReason::Cancelled));
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(stats(&a, &mut a_ev), vec![]);
    assert_eq!(stats(&b, &mut b_ev), vec![]);
}

#[test]
fn caller_cancels_through_the_registrar() {
    let (reg, (a, mut a_ev), (_b, mut b_ev)) = alice_and_bob(Transport::Udp, Transport::Udp);
    a.send(Command::Call {
        uri: format!("sip:bob@{}", reg.addr()),
        account: None,
    });
    let b_call = incoming(&mut b_ev);
    let a_call = call_id(&call_event(&mut a_ev, None, CallState::Ringing));
    a.send(Command::Hangup { call: a_call });
    assert_eq!(ended(&mut a_ev, a_call).0, Some(EndReason::Cancelled));
    assert_eq!(ended(&mut b_ev, b_call).0, Some(EndReason::Cancelled));
}

#[test]
fn callee_auto_answers() {
    let (a, mut a_ev) = start("a", settings(vec![]));
    let (b, mut b_ev) = start(
        "b",
        Settings {
            auto_answer: true,
            ..settings(vec![])
        },
    );
    a.send(Command::Call {
        uri: direct_uri(&b),
        account: None,
    });
    let b_call = incoming(&mut b_ev);
    call_event(&mut b_ev, Some(b_call), CallState::Established);
    let a_call = call_id(&call_event(&mut a_ev, None, CallState::Established));
    hang_up(&a, &mut a_ev, a_call, &mut b_ev, b_call);
}

#[track_caller]
fn assert_media(calls: &[CallStats], want: &[CallId]) {
    let mut ids: Vec<CallId> = calls.iter().map(|c| c.call).collect();
    ids.sort();
    let mut want = want.to_vec();
    want.sort();
    assert_eq!(ids, want, "{calls:#?}");
    for c in calls {
        assert_eq!(c.state, CallState::Established, "{c:?}");
        let codec = c.codec.as_deref().unwrap_or_default();
        assert!(codec == "PCMU/8000" || codec == "opus/48000/2", "{c:?}");
        let media: SocketAddr = c
            .remote_media
            .as_deref()
            .and_then(|m| m.parse().ok())
            .unwrap_or_else(|| panic!("no remote media address: {c:?}"));
        assert!(media.ip().is_loopback() && media.port() != 0, "{c:?}");
    }
}

#[test]
fn two_calls_at_once_then_three_in_a_row() {
    let (a, mut a_ev) = start("a", settings(vec![]));
    let (b, mut b_ev) = start("b", settings(vec![]));
    let uri = direct_uri(&b);

    let (a1, b1) = connect(&a, &mut a_ev, &b, &mut b_ev, &uri);
    let (a2, b2) = connect(&a, &mut a_ev, &b, &mut b_ev, &uri);
    assert_ne!(a1, a2);
    assert_ne!(b1, b2);
    let sa = stats(&a, &mut a_ev);
    let sb = stats(&b, &mut b_ev);
    assert_media(&sa, &[a1, a2]);
    assert_media(&sb, &[b1, b2]);
    // Each call has its own RTP port on each side; the far end sends to the other's.
    assert_ne!(sa[0].local_rtp_port, sa[1].local_rtp_port);
    for s in &sa {
        let peer_port = s
            .remote_media
            .as_deref()
            .and_then(|m| m.parse::<SocketAddr>().ok());
        assert!(
            sb.iter()
                .any(|t| t.local_rtp_port == peer_port.map(|p| p.port())),
            "{sa:#?} {sb:#?}"
        );
    }
    hang_up(&a, &mut a_ev, a1, &mut b_ev, b1);
    assert_media(&stats(&a, &mut a_ev), &[a2]);
    hang_up(&b, &mut b_ev, b2, &mut a_ev, a2);

    for _ in 0..3 {
        let (ac, bc) = connect(&a, &mut a_ev, &b, &mut b_ev, &uri);
        assert_media(&stats(&a, &mut a_ev), &[ac]);
        assert_media(&stats(&b, &mut b_ev), &[bc]);
        hang_up(&a, &mut a_ev, ac, &mut b_ev, bc);
    }
    assert_eq!(stats(&a, &mut a_ev), vec![]);
    assert_eq!(stats(&b, &mut b_ev), vec![]);
    // Nothing else went wrong on the way.
    for ev in [&mut a_ev, &mut b_ev] {
        ev.pump();
        let errors: Vec<&Event> = ev
            .seen
            .iter()
            .filter(|e| matches!(e, Event::Error { .. }))
            .collect();
        assert!(errors.is_empty(), "{}: {errors:?}", ev.name);
    }
}

// ---------------------------------------------------------------------------------- robustness

fn options_request(to: SocketAddr, from: SocketAddr, n: u32) -> String {
    format!(
        "OPTIONS sip:{to} SIP/2.0\r\n\
Via: SIP/2.0/UDP {from};branch=z9hG4bKopt{n};rport\r\n\
Max-Forwards: 70\r\n\
From: <sip:probe@{from}>;tag=p{n}\r\n\
To: <sip:{to}>\r\n\
Call-ID: probe-{n}@test\r\n\
CSeq: {n} OPTIONS\r\n\
Content-Length: 0\r\n\r\n"
    )
}

/// Sends `msg` and returns the status line of the answer carrying `branch`, if one comes
/// (answers to earlier junk, such as retransmitted 488s, are skipped).
fn ask(sock: &UdpSocket, to: SocketAddr, msg: &str, branch: &str) -> Option<String> {
    sock.send_to(msg.as_bytes(), to).ok()?;
    let mut buf = [0u8; 4096];
    loop {
        let (n, _) = sock.recv_from(&mut buf).ok()?;
        let text = String::from_utf8_lossy(&buf[..n]);
        if text.contains(branch) {
            return text.lines().next().map(str::to_string);
        }
    }
}

/// Random bytes of many sizes and broken SIP messages, sent from `sock` to `to`.
fn send_garbage(sock: &UdpSocket, to: SocketAddr) {
    let from = sock.local_addr().expect("addr");
    // Random bytes of many sizes (a fixed xorshift, so a failure replays).
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for len in [1usize, 2, 7, 64, 512, 1400, 9000, 65_000] {
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let _ = sock.send_to(&bytes, to);
    }
    let invite = format!(
        "INVITE sip:x@{to} SIP/2.0\r\n\
Via: SIP/2.0/UDP {from};branch=z9hG4bKgarbage1;rport\r\n\
From: <sip:g@{from}>;tag=g1\r\n\
To: <sip:x@{to}>\r\n\
Call-ID: garbage-1@test\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:g@{from}>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 300\r\n\r\nv=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n"
    );
    let mut datagrams: Vec<Vec<u8>> = vec![
        // Truncated: cut in a header, then a body shorter than Content-Length.
        invite.as_bytes()[..90].to_vec(),
        invite.as_bytes().to_vec(),
        b"\r\n\r\n".to_vec(),
        b"INVITE\r\n\r\n".to_vec(),
        b"SIP/2.0 200 OK\r\n\r\n".to_vec(),
        b"SIP/2.0 999999 Whatever\r\nVia: nonsense\r\n\r\n".to_vec(),
        format!(
            "BYE sip:x@{to} SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bKg2\r\n\
From: <sip:g@{from}>;tag=1\r\nTo: <sip:x@{to}>;tag=2\r\nCall-ID: nope\r\nCSeq: x BYE\r\n\r\n"
        )
        .into_bytes(),
        format!(
            "INVITE sip:x@{to} SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bKg3\r\n\
From: <sip:g@{from}>;tag=1\r\nTo: <sip:x@{to}>\r\nCall-ID: g3\r\nCSeq: 1 INVITE\r\n\
Content-Type: application/sdp\r\nContent-Length: 9\r\n\r\nnot-sdp!!"
        )
        .into_bytes(),
        format!(
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP {to};branch=z9hG4bKnothing\r\n\
From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: stray\r\nCSeq: 1 INVITE\r\n\r\n"
        )
        .into_bytes(),
    ];
    let mut binary_headers = invite.as_bytes()[..120].to_vec();
    binary_headers.extend_from_slice(&[0xff, 0xfe, 0x00, b':', b'\r', b'\n', b'\r', b'\n']);
    datagrams.push(binary_headers);
    for d in &datagrams {
        let _ = sock.send_to(d, to);
    }
}

#[test]
fn garbage_does_not_crash_the_engine() {
    let (engine, mut ev) = start("target", settings(vec![]));
    let to = engine.local_addr();
    let sock = UdpSocket::bind("127.0.0.1:0").expect("udp");
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let from = sock.local_addr().expect("addr");

    send_garbage(&sock, to);

    // A request with no Call-ID is refused with 400, not dropped silently, and not fatal.
    let no_call_id = format!(
        "OPTIONS sip:{to} SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bKnocid;rport\r\n\
From: <sip:g@{from}>;tag=1\r\nTo: <sip:{to}>\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    );
    assert_eq!(
        ask(&sock, to, &no_call_id, "z9hG4bKnocid").as_deref(),
        Some("SIP/2.0 400 Bad Request")
    );

    // Junk on a TCP connection too.
    if let Ok(mut tcp) = TcpStream::connect(to) {
        let _ = tcp.write_all(b"GARBAGE / HTTP/1.1\r\nContent-Length: banana\r\n\r\n");
        let _ = tcp.set_read_timeout(Some(Duration::from_millis(300)));
        let _ = tcp.read(&mut [0u8; 256]);
    }

    // Still alive and answering.
    assert_eq!(
        ask(&sock, to, &options_request(to, from, 7), "z9hG4bKopt7").as_deref(),
        Some("SIP/2.0 200 OK")
    );
    no_event(
        &mut ev,
        |e| matches!(e, Event::Stopped),
        Duration::from_millis(50),
    );
    engine.shutdown();
    wait_for(&mut ev, |e| matches!(e, Event::Stopped), T);
}

#[test]
fn garbage_does_not_crash_the_registrar() {
    let reg = Registrar::start(Options::default().user("alice", "alicepw"));
    let to: SocketAddr = reg.addr().parse().expect("registrar address");
    let sock = UdpSocket::bind("127.0.0.1:0").expect("udp");
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let from = sock.local_addr().expect("addr");
    send_garbage(&sock, to);
    let request = |method: &str, n: u32, extra: &str| {
        format!(
            "{method} sip:alice@{to} SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bKr{n};rport\r\n\
From: <sip:alice@{to}>;tag=r{n}\r\nTo: <sip:alice@{to}>\r\nCall-ID: r{n}@test\r\n\
CSeq: {n} {method}\r\n{extra}Content-Length: 0\r\n\r\n"
        )
    };
    for (msg, branch, want) in [
        (
            request("INVITE", 1, "Max-Forwards: 0\r\n"),
            "z9hG4bKr1",
            "SIP/2.0 483",
        ),
        (request("INVITE", 2, ""), "z9hG4bKr2", "SIP/2.0 404"),
        (
            request("REGISTER", 3, "Contact: *\r\nExpires: 5\r\n"),
            "z9hG4bKr3",
            "SIP/2.0 401",
        ),
        (
            request("REGISTER", 4, "Expires: soon\r\n"),
            "z9hG4bKr4",
            "SIP/2.0 401",
        ),
        (request("OPTIONS", 5, ""), "z9hG4bKr5", "SIP/2.0 200"),
    ] {
        let got = ask(&sock, to, &msg, branch).unwrap_or_default();
        assert!(got.starts_with(want), "{msg}\n-> {got}");
    }
    // A response with our branch and nowhere to go, and junk on TCP and TLS.
    let _ = sock.send_to(
        format!(
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP {to};branch=z9hG4bK-dtreg-1\r\n\
From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 BYE\r\n\r\n"
        )
        .as_bytes(),
        to,
    );
    for addr in [reg.addr(), reg.tls_addr()] {
        if let Ok(mut tcp) = TcpStream::connect(addr) {
            let _ = tcp.write_all(b"GARBAGE / HTTP/1.1\r\nContent-Length: banana\r\n\r\n");
            let _ = tcp.set_read_timeout(Some(Duration::from_millis(200)));
            let _ = tcp.read(&mut [0u8; 256]);
        }
    }
    assert!(reg.malformed() > 0, "{reg:?}");
    // Still serving.
    let (_a, mut a_ev) = start(
        "alice",
        settings(vec![account(
            "alice",
            "alicepw",
            &reg.addr(),
            Transport::Tcp,
        )]),
    );
    assert!(is_registration(
        &registered(&mut a_ev),
        RegistrationState::Registered
    ));
    assert_eq!(reg.bindings("alice").len(), 1);
}

/// Reads datagrams until one parses and satisfies `pred` (others are skipped), or times out.
#[track_caller]
fn recv_msg(sock: &UdpSocket, pred: impl Fn(&Message) -> bool) -> Message {
    let end = Instant::now() + T;
    let mut buf = vec![0u8; 65_535];
    let mut skipped = Vec::new();
    while Instant::now() < end {
        let Ok((n, _)) = sock.recv_from(&mut buf) else {
            continue;
        };
        match Message::parse(&buf[..n]) {
            Ok(m) if pred(&m) => return m,
            Ok(m) => skipped.push(m.summary()),
            Err(e) => skipped.push(format!("unparsable: {e}")),
        }
    }
    panic!("no matching message; skipped {skipped:?}");
}

/// A caller written by hand: INVITE without SDP (the callee offers in its 200, we answer in the
/// ACK), a retransmitted INVITE, then BYE.
#[test]
fn late_offer_from_a_hand_written_caller() {
    let (b, mut b_ev) = start(
        "b",
        Settings {
            auto_answer: true,
            ..settings(vec![])
        },
    );
    let to = b.local_addr();
    let sock = UdpSocket::bind("127.0.0.1:0").expect("udp");
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let from = sock.local_addr().expect("addr");
    let invite = format!(
        "INVITE sip:b@{to} SIP/2.0\r\n\
Via: SIP/2.0/UDP {from};branch=z9hG4bKlate1;rport\r\n\
Max-Forwards: 70\r\n\
From: \"Hand\" <sip:hand@{from}>;tag=h1\r\n\
To: <sip:b@{to}>\r\n\
Call-ID: late-1@test\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:hand@{from}>\r\n\
Content-Length: 0\r\n\r\n"
    );
    sock.send_to(invite.as_bytes(), to).expect("send");
    let ok = recv_msg(&sock, |m| m.status() == Some(200));
    // A retransmission of the INVITE is absorbed: the 200 again, no second call.
    sock.send_to(invite.as_bytes(), to).expect("send");
    let again = recv_msg(&sock, |m| m.status() == Some(200));
    assert_eq!(again.to().ok(), ok.to().ok());
    let b_call = incoming(&mut b_ev);
    call_event(&mut b_ev, Some(b_call), CallState::Established);
    no_event(
        &mut b_ev,
        |e| matches!(e, Event::Incoming { .. }),
        Duration::from_millis(100),
    );

    let offer = String::from_utf8_lossy(&ok.body).to_string();
    assert!(offer.contains("m=audio "), "{offer}");
    assert!(offer.contains("PCMU/8000"), "{offer}");
    let to_tagged = ok.header("To").expect("To").to_string();
    let target = ok.contacts().ok().and_then(|c| match c {
        dialtone::engine::sip::message::Contacts::List(l) => l.first().map(|c| c.uri.to_string()),
        _ => None,
    });
    let target = target.expect("Contact in the 200");
    let answer = "v=0\r\no=- 7 7 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n";
    let ack = format!(
        "ACK {target} SIP/2.0\r\n\
Via: SIP/2.0/UDP {from};branch=z9hG4bKlate2;rport\r\n\
Max-Forwards: 70\r\n\
From: \"Hand\" <sip:hand@{from}>;tag=h1\r\n\
To: {to_tagged}\r\n\
Call-ID: late-1@test\r\n\
CSeq: 1 ACK\r\n\
Content-Type: application/sdp\r\n\
Content-Length: {}\r\n\r\n{answer}",
        answer.len()
    );
    sock.send_to(ack.as_bytes(), to).expect("send");
    std::thread::sleep(Duration::from_millis(100));
    let calls = stats(&b, &mut b_ev);
    assert_eq!(calls.len(), 1, "{calls:#?}");
    assert_eq!(calls[0].codec.as_deref(), Some("PCMU/8000"), "{calls:#?}");
    assert_eq!(calls[0].remote_media.as_deref(), Some("127.0.0.1:40000"));
    // The ACK stopped the 200 retransmissions (T1 = 500 ms would have sent one by now).
    let mut buf = [0u8; 4096];
    let end = Instant::now() + Duration::from_millis(1200);
    while Instant::now() < end {
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            panic!(
                "after the ACK: {}",
                String::from_utf8_lossy(&buf[..n])
                    .lines()
                    .next()
                    .unwrap_or("")
            );
        }
    }

    let bye = format!(
        "BYE {target} SIP/2.0\r\n\
Via: SIP/2.0/UDP {from};branch=z9hG4bKlate3;rport\r\n\
Max-Forwards: 70\r\n\
From: \"Hand\" <sip:hand@{from}>;tag=h1\r\n\
To: {to_tagged}\r\n\
Call-ID: late-1@test\r\n\
CSeq: 2 BYE\r\n\
Content-Length: 0\r\n\r\n"
    );
    sock.send_to(bye.as_bytes(), to).expect("send");
    let resp = recv_msg(&sock, |m| m.cseq().is_ok_and(|(n, _)| n == 2));
    assert_eq!(resp.status(), Some(200));
    assert_eq!(ended(&mut b_ev, b_call).0, Some(EndReason::RemoteHangup));
}

/// A peer written by hand on a UDP socket, for the orderings two engines cannot force.
struct HandPeer {
    sock: UdpSocket,
    me: SocketAddr,
    engine: SocketAddr,
    call_id: String,
    /// The To value with the engine's tag, once answered.
    remote: String,
    target: String,
    cseq: u32,
}

const HAND_SDP: &str = "v=0\r\no=- 7 7 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

impl HandPeer {
    fn new(engine: SocketAddr, call_id: &str) -> HandPeer {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("udp");
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        let me = sock.local_addr().expect("addr");
        HandPeer {
            sock,
            me,
            engine,
            call_id: call_id.into(),
            remote: format!("<sip:b@{engine}>"),
            target: format!("sip:b@{engine}"),
            cseq: 0,
        }
    }

    /// A request in the call; `direction` adds an SDP offer with that attribute.
    fn send(&mut self, method: &str, direction: Option<&str>) -> String {
        if method != "ACK" {
            self.cseq += 1;
        }
        let branch = format!("z9hG4bKhand{}{method}", self.cseq);
        let body = direction
            .map(|d| format!("{HAND_SDP}a={d}\r\n"))
            .unwrap_or_default();
        let (me, target, remote) = (self.me, &self.target, &self.remote);
        let msg = format!(
            "{method} {target} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch={branch};rport\r\n\
Max-Forwards: 70\r\nFrom: <sip:hand@{me}>;tag=hand\r\nTo: {remote}\r\nCall-ID: {}\r\n\
CSeq: {} {method}\r\nContact: <sip:hand@{me}>\r\n{}Content-Length: {}\r\n\r\n{body}",
            self.call_id,
            self.cseq,
            if body.is_empty() {
                ""
            } else {
                "Content-Type: application/sdp\r\n"
            },
            body.len()
        );
        self.sock
            .send_to(msg.as_bytes(), self.engine)
            .expect("send");
        branch
    }

    /// Waits for the final response to our request with CSeq `cseq`.
    #[track_caller]
    fn final_response(&mut self, cseq: u32) -> Message {
        let resp = recv_msg(&self.sock, |m| {
            m.status().is_some_and(|c| c >= 200) && m.cseq().is_ok_and(|(n, _)| n == cseq)
        });
        if let Some(to) = resp.header("To") {
            self.remote = to.to_string();
        }
        if let Ok(dialtone::engine::sip::message::Contacts::List(l)) = resp.contacts()
            && let Some(c) = l.first()
        {
            self.target = c.uri.to_string();
        }
        resp
    }
}

/// The engine sent its 200 to our re-INVITE and waits for the ACK: the offer/answer exchange is
/// complete (the offer was in the INVITE), so a Hold from the user right now must go out, not be
/// refused as "already in progress" (RFC 3261 14.1: the INVITE server transaction ended with the
/// 2xx; only an offer in our own 2xx would have to wait for the ACK).
#[test]
fn hold_right_after_answering_a_reinvite_is_not_refused() {
    let (b, mut b_ev) = start(
        "b",
        Settings {
            auto_answer: true,
            ..settings(vec![])
        },
    );
    let mut hand = HandPeer::new(b.local_addr(), "hold-race@test");
    hand.send("INVITE", Some("sendrecv"));
    assert_eq!(hand.final_response(1).status(), Some(200));
    hand.send("ACK", None);
    let b_call = incoming(&mut b_ev);
    call_event(&mut b_ev, Some(b_call), CallState::Established);

    // We hold: the engine answers 200 (held by us), and we do not ACK yet.
    hand.send("INVITE", Some("sendonly"));
    assert_eq!(hand.final_response(2).status(), Some(200));
    call_event(&mut b_ev, Some(b_call), CallState::Held);
    b.send(Command::Hold { call: b_call });
    let reinvite = recv_msg(&hand.sock, |m| {
        m.method().is_some_and(|m| m.as_str() == "INVITE")
    });
    let body = String::from_utf8_lossy(&reinvite.body).to_string();
    assert!(
        body.contains("a=sendonly") || body.contains("a=inactive"),
        "{body}"
    );
    let mut ok = Message::response_to(&reinvite, 200, "OK");
    ok.push_header("Contact", format!("<sip:hand@{}>", hand.me));
    ok.set_body(
        "application/sdp",
        format!("{HAND_SDP}a=inactive\r\n").into_bytes(),
    );
    hand.sock
        .send_to(&ok.to_bytes(), b.local_addr())
        .expect("send");
    hand.send("ACK", None);
    match call_event(&mut b_ev, Some(b_call), CallState::Held) {
        Event::Call { hold, .. } => assert_eq!(
            hold,
            Some(HoldState {
                local: true,
                remote: true
            })
        ),
        _ => unreachable!(),
    }
    b_ev.pump();
    let errors: Vec<&Event> = b_ev
        .seen
        .iter()
        .filter(|e| matches!(e, Event::Error { .. }))
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    hand.send("BYE", None);
    assert_eq!(hand.final_response(3).status(), Some(200));
    assert_eq!(ended(&mut b_ev, b_call).0, Some(EndReason::RemoteHangup));
}

/// A callee written by hand: takes the engine's INVITE and answers it as the test says.
struct HandCallee {
    sock: UdpSocket,
    me: SocketAddr,
    invite: Message,
    tag: &'static str,
}

impl HandCallee {
    /// Lets `a` call a hand-written callee and returns it with the INVITE received.
    fn called_by(a: &Engine) -> HandCallee {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("udp");
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        let me = sock.local_addr().expect("addr");
        a.send(Command::Call {
            uri: format!("sip:hand@{me}"),
            account: None,
        });
        let invite = recv_msg(&sock, |m| {
            m.method().is_some_and(|m| m.as_str() == "INVITE")
        });
        HandCallee {
            sock,
            me,
            invite,
            tag: "callee",
        }
    }

    fn respond_to(&self, req: &Message, code: u16, with_sdp: bool) -> Vec<u8> {
        let mut resp = Message::response_to(req, code, if code == 200 { "OK" } else { "X" });
        if let Ok(to) = req.to()
            && to.tag().is_none()
        {
            resp.set_header("To", to.with_tag(self.tag).to_string());
        }
        if code < 300 && req.method().is_some_and(|m| m.as_str() == "INVITE") {
            resp.push_header("Contact", format!("<sip:hand@{}>", self.me));
        }
        if with_sdp {
            resp.set_body(
                "application/sdp",
                format!("{HAND_SDP}a=sendrecv\r\n").into_bytes(),
            );
        }
        resp.to_bytes()
    }

    fn send(&self, bytes: &[u8], to: SocketAddr) {
        self.sock.send_to(bytes, to).expect("send");
    }

    #[track_caller]
    fn expect(&self, method: &str) -> Message {
        recv_msg(&self.sock, |m| {
            m.method().is_some_and(|m| m.as_str() == method)
        })
    }
}

/// The 200 crosses our CANCEL: the engine must ACK that 2xx and end the dialog with BYE, and the
/// call stays `cancelled` (RFC 3261 9.1, 15).
#[test]
fn answer_crossing_our_cancel_is_acked_and_ended_with_bye() {
    let (a, mut a_ev) = start("a", settings(vec![]));
    let hand = HandCallee::called_by(&a);
    let a_addr = a.local_addr();
    hand.send(&hand.respond_to(&hand.invite, 180, false), a_addr);
    let call = call_id(&call_event(&mut a_ev, None, CallState::Ringing));
    a.send(Command::Hangup { call });
    assert_eq!(ended(&mut a_ev, call).0, Some(EndReason::Cancelled));
    let cancel = hand.expect("CANCEL");
    // Too late: we had answered already.
    hand.send(&hand.respond_to(&hand.invite, 200, true), a_addr);
    hand.send(&hand.respond_to(&cancel, 200, false), a_addr);
    let ack = hand.expect("ACK");
    assert_eq!(
        ack.cseq().map(|(n, _)| n).ok(),
        hand.invite.cseq().map(|(n, _)| n).ok()
    );
    let bye = hand.expect("BYE");
    assert_eq!(
        bye.request_uri(),
        Some(format!("sip:hand@{}", hand.me).as_str())
    );
    hand.send(&hand.respond_to(&bye, 200, false), a_addr);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(stats(&a, &mut a_ev), vec![]);
    a_ev.pump();
    assert!(
        !a_ev.seen.iter().any(|e| matches!(
            e,
            Event::Call {
                state: CallState::Established,
                ..
            }
        )),
        "{:#?}",
        a_ev.seen
    );
}

/// Our ACK got lost: the callee retransmits its 200, and each copy is ACKed again (13.2.2.4).
#[test]
fn retransmitted_answer_is_acked_again() {
    let (a, mut a_ev) = start("a", settings(vec![]));
    let hand = HandCallee::called_by(&a);
    let a_addr = a.local_addr();
    let ok = hand.respond_to(&hand.invite, 200, true);
    hand.send(&ok, a_addr);
    let call = call_id(&call_event(&mut a_ev, None, CallState::Established));
    hand.expect("ACK");
    hand.send(&ok, a_addr);
    hand.expect("ACK");
    hand.send(&ok, a_addr);
    hand.expect("ACK");
    let calls = stats(&a, &mut a_ev);
    assert_eq!(calls.len(), 1, "{calls:#?}");
    assert_eq!(calls[0].codec.as_deref(), Some("PCMU/8000"));
    a.send(Command::Hangup { call });
    let bye = hand.expect("BYE");
    hand.send(&hand.respond_to(&bye, 200, false), a_addr);
    assert_eq!(ended(&mut a_ev, call).0, Some(EndReason::LocalHangup));
}

// ---------------------------------------------------------------------------------- reconfigure

fn reconfigure(engine: &Engine, settings: Settings) {
    engine.send(Command::Reconfigure {
        settings: Box::new(settings),
    });
}

#[test]
fn reconfigure_moves_an_account_to_another_user_and_reports_its_registration() {
    let reg = Registrar::start(
        Options::default()
            .user("alice", "alicepw")
            .user("bob", "bobpw"),
    );
    let alice = account("alice", "alicepw", &reg.addr(), Transport::Udp);
    let base = settings(vec![alice]);
    let (a, mut a_ev) = start("a", base.clone());
    assert!(is_registration(
        &registered(&mut a_ev),
        RegistrationState::Registered
    ));
    reconfigure(
        &a,
        Settings {
            accounts: vec![account("bob", "bobpw", &reg.addr(), Transport::Udp)],
            ..base.clone()
        },
    );
    let bob = |e: &Event| matches!(e, Event::Registration { aor, .. } if aor.contains("bob"));
    let e = wait_for(&mut a_ev, bob, T);
    assert!(
        matches!(
            &e,
            Event::Registration {
                account: AccountId(0),
                state: RegistrationState::Registering,
                ..
            }
        ),
        "{e:?}"
    );
    let e = wait_for(&mut a_ev, bob, T);
    assert!(
        matches!(&e, Event::Registration { account: AccountId(0), state: RegistrationState::Registered, aor, .. } if aor.contains("bob")),
        "{e:?}"
    );
    assert!(reg.wait(T, |r| r.bindings("alice").is_empty()));
    assert_eq!(reg.bindings("bob").len(), 1);
    // Removing it un-registers it and says so.
    reconfigure(
        &a,
        Settings {
            accounts: vec![],
            ..base
        },
    );
    let e = wait_for(
        &mut a_ev,
        |e| is_registration(e, RegistrationState::Unregistered),
        T,
    );
    assert!(
        matches!(
            &e,
            Event::Registration {
                account: AccountId(0),
                ..
            }
        ),
        "{e:?}"
    );
    assert!(reg.wait(T, |r| r.binding_count() == 0));
}

#[test]
fn reconfigure_cannot_move_the_sockets_and_says_they_take_effect_after_a_restart() {
    let base = settings(vec![]);
    let (a, mut a_ev) = start("a", base.clone());
    reconfigure(
        &a,
        Settings {
            listen: "127.0.0.1:5999".into(),
            rtp_ports: "41000-41099".into(),
            ..base.clone()
        },
    );
    let e = wait_for(&mut a_ev, |e| matches!(e, Event::Error { .. }), T);
    assert!(
        matches!(&e, Event::Error { message } if message.contains("after a restart")),
        "{e:?}"
    );
    // Settings that do not validate change nothing and say why.
    reconfigure(
        &a,
        Settings {
            codecs: vec!["g729".into()],
            auto_answer: true,
            ..base
        },
    );
    let e = wait_for(&mut a_ev, |e| matches!(e, Event::Error { .. }), T);
    assert!(
        matches!(&e, Event::Error { message } if message.contains("g729")),
        "{e:?}"
    );
    // The engine still answers to its old address.
    let (b, mut b_ev) = start("b", settings(vec![]));
    let (_b_call, a_call) = ring(&b, &mut b_ev, &a, &mut a_ev);
    call_event(&mut a_ev, Some(a_call), CallState::Ringing);
    no_event(
        &mut a_ev,
        |e| {
            matches!(
                e,
                Event::Call {
                    state: CallState::Established,
                    ..
                }
            )
        },
        Duration::from_millis(300),
    );
}

#[test]
fn reconfigure_switches_the_microphone_under_a_call_like_set_audio_input() {
    let (a, mut a_ev) = start("a", settings(vec![]));
    let (b, mut b_ev) = start("b", settings(vec![]));
    let (a_call, b_call) = connect(&a, &mut a_ev, &b, &mut b_ev, &direct_uri(&b));
    reconfigure(
        &a,
        Settings {
            audio_in: "tone:1000".into(),
            ..settings(vec![])
        },
    );
    let devices = |engine: &Engine, ev: &mut Events| {
        engine.send(Command::Stats);
        match wait_for(ev, |e| matches!(e, Event::Stats { .. }), T) {
            Event::Stats { devices, .. } => devices.expect("device figures"),
            _ => unreachable!(),
        }
    };
    let d = devices(&a, &mut a_ev);
    assert_eq!((d.input.as_str(), d.input_opens), ("tone:1000", 2), "{d:?}");
    assert_eq!(
        d.output_opens, 1,
        "the output is unchanged: not opened again"
    );
    // No re-INVITE: the far end sees no change of its call.
    no_event(
        &mut b_ev,
        |e| matches!(e, Event::Call { .. }),
        Duration::from_millis(300),
    );
    hang_up(&a, &mut a_ev, a_call, &mut b_ev, b_call);
}

#[test]
fn do_not_disturb_refuses_calls_with_486_and_reports_each_for_the_history() {
    let dnd = Settings {
        do_not_disturb: true,
        ..settings(vec![])
    };
    let (a, mut a_ev) = start("a", settings(vec![]));
    let (b, mut b_ev) = start("b", dnd.clone());
    a.send(Command::Call {
        uri: direct_uri(&b),
        account: None,
    });
    let a_call = call_id(&call_event(&mut a_ev, None, CallState::Calling));
    assert_eq!(ended(&mut a_ev, a_call), (Some(EndReason::Busy), Some(486)));
    let e = wait_for(&mut b_ev, |e| matches!(e, Event::IncomingRefused { .. }), T);
    assert!(
        matches!(&e, Event::IncomingRefused { code: 486, reason, from, .. }
            if reason == "do-not-disturb" && from.contains("dialtone@")),
        "{e:?}"
    );
    no_event(
        &mut b_ev,
        |e| matches!(e, Event::Incoming { .. } | Event::Call { .. }),
        Duration::from_millis(200),
    );
    // Turned off: the next call rings.
    reconfigure(
        &b,
        Settings {
            do_not_disturb: false,
            ..dnd
        },
    );
    ring(&a, &mut a_ev, &b, &mut b_ev);
}
