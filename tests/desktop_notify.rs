//! Incoming-call notifications over a real (private) D-Bus: a `dbus-daemon` started by the test and
//! a fake `org.freedesktop.Notifications` server, written here with zbus, that records the calls
//! it gets and can click its buttons. And what happens with no bus or no server: nothing hangs.

mod common;

use common::dbus::PrivateBus;
use dialtone::desktop::notify::{NotificationAction, NotificationEvent, Notifier};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use zbus::zvariant::OwnedValue;

const PATH: &str = "/org/freedesktop/Notifications";
const IFACE: &str = "org.freedesktop.Notifications";
const WAIT: Duration = Duration::from_secs(10);

/// One `Notify` call as the server saw it.
#[derive(Debug, Clone)]
struct Notified {
    id: u32,
    app_name: String,
    app_icon: String,
    summary: String,
    body: String,
    actions: Vec<String>,
    hints: HashMap<String, OwnedValue>,
    expire_timeout: i32,
}

#[derive(Default)]
struct Record {
    notified: Vec<Notified>,
    closed: Vec<u32>,
}

struct FakeServer {
    record: Arc<Mutex<Record>>,
    next_id: u32,
}

#[zbus::interface(name = "org.freedesktop.Notifications")]
impl FakeServer {
    #[allow(clippy::too_many_arguments)]
    fn notify(
        &mut self,
        app_name: String,
        _replaces_id: u32,
        app_icon: String,
        summary: String,
        body: String,
        actions: Vec<String>,
        hints: HashMap<String, OwnedValue>,
        expire_timeout: i32,
    ) -> u32 {
        self.next_id += 1;
        self.record.lock().unwrap().notified.push(Notified {
            id: self.next_id,
            app_name,
            app_icon,
            summary,
            body,
            actions,
            hints,
            expire_timeout,
        });
        self.next_id
    }

    fn close_notification(&mut self, id: u32) {
        self.record.lock().unwrap().closed.push(id);
    }

    fn get_capabilities(&self) -> Vec<String> {
        vec!["actions".into(), "body".into(), "body-markup".into()]
    }

    fn get_server_information(&self) -> (String, String, String, String) {
        (
            "fake".into(),
            "dialtone-tests".into(),
            "1".into(),
            "1.2".into(),
        )
    }
}

/// Starts the fake server on `bus`; returns its connection (to emit signals) and its record.
async fn fake_server(bus: &PrivateBus) -> (zbus::Connection, Arc<Mutex<Record>>) {
    let record = Arc::new(Mutex::new(Record::default()));
    let server = FakeServer {
        record: record.clone(),
        next_id: 40,
    };
    let conn = zbus::connection::Builder::address(bus.address())
        .unwrap()
        .name(IFACE)
        .unwrap()
        .serve_at(PATH, server)
        .unwrap()
        .build()
        .await
        .expect("fake notification server on the private bus");
    (conn, record)
}

/// Polls `f` until it returns `Some`, for at most [`WAIT`].
async fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < WAIT, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn counting_waker() -> (dialtone::engine::Waker, Arc<AtomicUsize>) {
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    (
        Arc::new(move || {
            c.fetch_add(1, Ordering::SeqCst);
        }),
        count,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incoming_call_notification_shows_the_caller_delivers_buttons_and_closes() {
    let bus = PrivateBus::start();
    let (server, record) = fake_server(&bus).await;
    let notifier = Notifier::with_address(bus.address());
    let (waker, wakes) = counting_waker();
    notifier.set_waker(waker);

    let start = Instant::now();
    let handle = notifier.notify_incoming("Alice Example <sip:alice@example.com>", Some("work"));
    assert!(
        start.elapsed() < Duration::from_millis(50),
        "notify_incoming must not block"
    );

    let shown = eventually("Notify", || {
        record.lock().unwrap().notified.first().cloned()
    })
    .await;
    assert_eq!(shown.app_name, "Dialtone");
    assert_eq!(shown.app_icon, "dialtone");
    assert!(
        shown
            .summary
            .contains("Alice Example <sip:alice@example.com>"),
        "{}",
        shown.summary
    );
    assert!(
        shown
            .body
            .contains("Alice Example &lt;sip:alice@example.com&gt;"),
        "{}",
        shown.body
    );
    assert!(shown.body.contains("work"), "{}", shown.body);
    assert_eq!(
        shown.actions,
        ["default", "Show", "accept", "Accept", "decline", "Decline"]
    );
    assert_eq!(shown.expire_timeout, 0, "stays while ringing");
    assert_eq!(u8::try_from(&shown.hints["urgency"]).unwrap(), 2);
    assert_eq!(
        <&str>::try_from(&shown.hints["category"]).unwrap(),
        "call.incoming"
    );
    assert_eq!(
        <&str>::try_from(&shown.hints["desktop-entry"]).unwrap(),
        "dialtone"
    );

    // The user clicks "Accept" on the notification.
    let wakes_before = wakes.load(Ordering::SeqCst);
    server
        .emit_signal(
            None::<&str>,
            PATH,
            IFACE,
            "ActionInvoked",
            &(shown.id, "accept"),
        )
        .await
        .unwrap();
    let event = notifier
        .events()
        .recv_timeout(WAIT)
        .expect("an action event");
    assert_eq!(
        event,
        NotificationEvent::Action {
            handle,
            action: NotificationAction::Accept
        }
    );
    // The worker puts the event in the channel first, then wakes the UI (so a woken UI finds
    // it): the wake may land just after the event is read here.
    let deadline = Instant::now() + WAIT;
    while wakes.load(Ordering::SeqCst) <= wakes_before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(
        wakes.load(Ordering::SeqCst) > wakes_before,
        "the UI was woken"
    );

    // A signal about someone else's notification is not ours: the next event is the click on
    // the body that follows it.
    for (id, key) in [(shown.id + 100, "decline"), (shown.id, "default")] {
        server
            .emit_signal(None::<&str>, PATH, IFACE, "ActionInvoked", &(id, key))
            .await
            .unwrap();
    }
    assert_eq!(
        notifier.events().recv_timeout(WAIT).unwrap(),
        NotificationEvent::Action {
            handle,
            action: NotificationAction::Show
        }
    );

    // The call is answered: the app withdraws the notification.
    notifier.close(handle);
    let closed = eventually("CloseNotification", || {
        record.lock().unwrap().closed.first().copied()
    })
    .await;
    assert_eq!(closed, shown.id);
    assert!(
        notifier.events().try_recv().is_err(),
        "no event for a foreign notification"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notification_dismissed_by_the_user_is_reported_and_close_is_then_a_no_op() {
    let bus = PrivateBus::start();
    let (server, record) = fake_server(&bus).await;
    let notifier = Notifier::with_address(bus.address());
    let first = notifier.notify_incoming("bob", None);
    let second = notifier.notify_incoming("carol", Some("home"));
    let ids = eventually("two Notify calls", || {
        let r = record.lock().unwrap();
        (r.notified.len() == 2).then(|| (r.notified[0].id, r.notified[1].id))
    })
    .await;
    assert_ne!(first, second);

    // reason 2: dismissed by the user
    server
        .emit_signal(
            None::<&str>,
            PATH,
            IFACE,
            "NotificationClosed",
            &(ids.0, 2u32),
        )
        .await
        .unwrap();
    assert_eq!(
        notifier.events().recv_timeout(WAIT).unwrap(),
        NotificationEvent::Closed { handle: first }
    );
    server
        .emit_signal(
            None::<&str>,
            PATH,
            IFACE,
            "ActionInvoked",
            &(ids.1, "decline"),
        )
        .await
        .unwrap();
    assert_eq!(
        notifier.events().recv_timeout(WAIT).unwrap(),
        NotificationEvent::Action {
            handle: second,
            action: NotificationAction::Decline
        }
    );

    notifier.close(first);
    notifier.close(second);
    let closed = eventually("CloseNotification", || {
        let r = record.lock().unwrap();
        (!r.closed.is_empty()).then(|| r.closed.clone())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(closed, [ids.1]);
    assert_eq!(
        record.lock().unwrap().closed,
        [ids.1],
        "the dismissed one is not closed again"
    );
}

#[test]
fn no_bus_returns_at_once_reports_once_and_stays_quiet() {
    let dir = tempfile::tempdir().unwrap();
    let address = format!("unix:path={}", dir.path().join("no-bus-here").display());
    let start = Instant::now();
    let notifier = Notifier::with_address(&address);
    let handle = notifier.notify_incoming("Alice", Some("work"));
    notifier.close(handle);
    assert!(
        start.elapsed() < Duration::from_millis(50),
        "took {:?}",
        start.elapsed()
    );

    match notifier.events().recv_timeout(WAIT).expect("one report") {
        NotificationEvent::Unavailable { reason } => assert!(reason.contains("D-Bus"), "{reason}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "took {:?}",
        start.elapsed()
    );
    for _ in 0..20 {
        let h = notifier.notify_incoming("Bob", None);
        notifier.close(h);
    }
    assert!(
        notifier
            .events()
            .recv_timeout(Duration::from_millis(300))
            .is_err(),
        "reported only once"
    );
    let drop_start = Instant::now();
    drop(notifier);
    assert!(drop_start.elapsed() < Duration::from_millis(50));
}

#[test]
fn bus_without_a_notification_server_reports_once_and_does_not_hang() {
    let bus = PrivateBus::start();
    let notifier = Notifier::with_address(bus.address());
    let start = Instant::now();
    for i in 0..5 {
        notifier.notify_incoming(&format!("caller {i}"), None);
    }
    assert!(start.elapsed() < Duration::from_millis(50));
    match notifier.events().recv_timeout(WAIT).expect("one report") {
        NotificationEvent::Unavailable { reason } => {
            assert!(reason.contains("notification server"), "{reason}")
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(
        notifier
            .events()
            .recv_timeout(Duration::from_millis(500))
            .is_err(),
        "only once"
    );
}
