//! Desktop notifications for incoming calls, per the freedesktop Desktop Notifications spec
//! (`org.freedesktop.Notifications` on the session D-Bus), with Accept / Decline buttons.
//!
//! All D-Bus work happens on one worker thread with its own current-thread tokio runtime; the UI
//! thread only puts a request in a channel, so a slow or hung notification server can never stall
//! a frame. The worker connects once at start. Without a session bus, or without a notification
//! server on it, it logs one line, sends one [`NotificationEvent::Unavailable`], and from then on
//! drops requests quietly (a notification server that appears later is still used: each
//! notification is tried, only the report is not repeated).
//!
//! The popup window stays the primary way to answer; the notification is a hint for a user who
//! is looking at another window. It never expires by itself (`expire_timeout` 0): the app closes
//! it with [`Notifier::close`] when the call is answered, declined or cancelled.

use crate::engine::Waker;
use futures_lite::StreamExt;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;
use tokio::sync::mpsc as tokio_mpsc;
use zbus::zvariant::Value;

/// How long connecting to the bus may take before notifications are declared unavailable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long one Notify / CloseNotification call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest caller or account text put in a notification (characters).
const MAX_TEXT: usize = 120;

/// Identifies one notification shown by this [`Notifier`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NotificationHandle(u64);

/// A button or click on a notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotificationAction {
    /// "Accept": answer the call.
    Accept,
    /// "Decline": reject the call.
    Decline,
    /// The notification itself was clicked: show the popup / main window.
    Show,
}

/// What the notification side reports to the app.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NotificationEvent {
    /// The user chose an action on the notification.
    Action {
        /// Which notification.
        handle: NotificationHandle,
        /// What was chosen.
        action: NotificationAction,
    },
    /// The notification server closed the notification (dismissed by the user, or after an
    /// action); calling [`Notifier::close`] for it is then a no-op.
    Closed {
        /// Which notification.
        handle: NotificationHandle,
    },
    /// Notifications cannot be shown (no session bus, no notification server); reported once.
    Unavailable {
        /// Why, for a settings page or a log.
        reason: String,
    },
}

/// Which bus the worker connects to.
enum Bus {
    Session,
    Address(String),
}

/// A request from the app to the worker.
enum Op {
    Show {
        handle: NotificationHandle,
        summary: String,
        body: String,
    },
    Close(NotificationHandle),
}

/// Shows incoming-call notifications; cheap to call from the UI thread.
pub struct Notifier {
    ops: tokio_mpsc::UnboundedSender<Op>,
    events: mpsc::Receiver<NotificationEvent>,
    waker: Arc<Mutex<Option<Waker>>>,
    next_handle: AtomicU64,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier").finish_non_exhaustive()
    }
}

impl Default for Notifier {
    fn default() -> Self {
        Notifier::new()
    }
}

impl Notifier {
    /// A notifier on the session bus (`$DBUS_SESSION_BUS_ADDRESS`, or `$XDG_RUNTIME_DIR/bus`).
    pub fn new() -> Notifier {
        Notifier::start(Bus::Session)
    }

    /// A notifier on the bus at a D-Bus address such as `unix:path=/run/user/1000/bus` (tests use
    /// a private bus).
    pub fn with_address(address: &str) -> Notifier {
        Notifier::start(Bus::Address(address.to_string()))
    }

    fn start(bus: Bus) -> Notifier {
        let (ops, ops_rx) = tokio_mpsc::unbounded_channel();
        let (events_tx, events) = mpsc::channel();
        let waker: Arc<Mutex<Option<Waker>>> = Arc::default();
        let sink = EventSink {
            tx: events_tx,
            waker: waker.clone(),
        };
        let spawned = std::thread::Builder::new()
            .name("notifications".into())
            .spawn(move || worker(bus, ops_rx, sink));
        if let Err(e) = spawned {
            // The channel's receiver is gone with the closure: requests are dropped quietly.
            tracing::warn!("desktop notifications off: cannot start their thread: {e}");
        }
        Notifier {
            ops,
            events,
            waker,
            next_handle: AtomicU64::new(1),
        }
    }

    /// Called after each event is queued (e.g. `ctx.request_repaint()`); called once at once so
    /// that events already waiting are seen.
    pub fn set_waker(&self, waker: Waker) {
        if let Ok(mut w) = self.waker.lock() {
            *w = Some(waker.clone());
        }
        waker();
    }

    /// Actions, closes and unavailability, in order.
    pub fn events(&self) -> &mpsc::Receiver<NotificationEvent> {
        &self.events
    }

    /// Shows "Incoming call from `caller`" (and which account was called) with Accept and Decline
    /// buttons, urgent and without timeout. Returns at once; the notification appears when the
    /// server has it.
    pub fn notify_incoming(&self, caller: &str, account: Option<&str>) -> NotificationHandle {
        let handle = NotificationHandle(self.next_handle.fetch_add(1, Ordering::Relaxed));
        let (summary, body) = incoming_text(caller, account);
        // A send error means the worker is gone; notifications are best-effort.
        let _ = self.ops.send(Op::Show {
            handle,
            summary,
            body,
        });
        handle
    }

    /// Withdraws the notification (the call was answered, declined or cancelled).
    pub fn close(&self, handle: NotificationHandle) {
        let _ = self.ops.send(Op::Close(handle));
    }
}

/// Summary (plain text) and body (may be interpreted as markup by the server, so escaped).
fn incoming_text(caller: &str, account: Option<&str>) -> (String, String) {
    let caller = clean(caller);
    let caller = if caller.is_empty() {
        "unknown caller".to_string()
    } else {
        caller
    };
    let summary = format!("Incoming call from {caller}");
    let body = match account.map(clean).filter(|a| !a.is_empty()) {
        Some(account) => format!("{} → {}", escape_markup(&caller), escape_markup(&account)),
        None => escape_markup(&caller),
    };
    (summary, body)
}

/// One line of at most [`MAX_TEXT`] characters: control characters become spaces.
fn clean(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_TEXT + 1)
        .collect();
    if out.chars().count() > MAX_TEXT {
        out = out.chars().take(MAX_TEXT - 1).collect::<String>() + "…";
    }
    out.trim().to_string()
}

/// The spec's body markup is a small XML subset: `&`, `<` and `>` must be escaped.
fn escape_markup(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Where the worker puts events: the app's channel, then the app's waker.
struct EventSink {
    tx: mpsc::Sender<NotificationEvent>,
    waker: Arc<Mutex<Option<Waker>>>,
}

impl EventSink {
    fn send(&self, event: NotificationEvent) {
        if self.tx.send(event).is_err() {
            return;
        }
        let waker = self.waker.lock().ok().and_then(|w| w.clone());
        if let Some(w) = waker {
            w();
        }
    }
}

#[zbus::proxy(
    interface = "org.freedesktop.Notifications",
    default_service = "org.freedesktop.Notifications",
    default_path = "/org/freedesktop/Notifications"
)]
trait Notifications {
    #[allow(clippy::too_many_arguments)]
    fn notify(
        &self,
        app_name: &str,
        replaces_id: u32,
        app_icon: &str,
        summary: &str,
        body: &str,
        actions: &[&str],
        hints: HashMap<&str, Value<'_>>,
        expire_timeout: i32,
    ) -> zbus::Result<u32>;

    fn close_notification(&self, id: u32) -> zbus::Result<()>;

    #[zbus(signal)]
    fn action_invoked(&self, id: u32, action_key: String) -> zbus::Result<()>;

    #[zbus(signal)]
    fn notification_closed(&self, id: u32, reason: u32) -> zbus::Result<()>;
}

fn worker(bus: Bus, ops: tokio_mpsc::UnboundedReceiver<Op>, sink: EventSink) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            unavailable(&sink, format!("cannot start the notification runtime: {e}"));
            return;
        }
    };
    rt.block_on(run(bus, ops, sink));
}

/// Logs the one line and sends the one event for notifications being unavailable.
fn unavailable(sink: &EventSink, reason: String) {
    tracing::info!("desktop notifications unavailable: {reason}");
    sink.send(NotificationEvent::Unavailable { reason });
}

async fn connect(bus: &Bus) -> zbus::Result<zbus::Connection> {
    let builder = match bus {
        Bus::Session => zbus::connection::Builder::session()?,
        Bus::Address(a) => zbus::connection::Builder::address(a.as_str())?,
    };
    builder.method_timeout(CALL_TIMEOUT).build().await
}

/// The worker: connect, subscribe to the server's signals, then serve requests and signals until
/// the [`Notifier`] is dropped.
async fn run(bus: Bus, mut ops: tokio_mpsc::UnboundedReceiver<Op>, sink: EventSink) {
    let setup = async {
        let conn = connect(&bus).await?;
        let proxy = NotificationsProxy::new(&conn).await?;
        let actions = proxy.receive_action_invoked().await?;
        let closed = proxy.receive_notification_closed().await?;
        zbus::Result::Ok((conn, proxy, actions, closed))
    };
    let (_conn, proxy, mut actions, mut closed) =
        match tokio::time::timeout(CONNECT_TIMEOUT, setup).await {
            Ok(Ok(parts)) => parts,
            Ok(Err(e)) => {
                unavailable(&sink, format!("no session D-Bus ({e})"));
                while ops.recv().await.is_some() {}
                return;
            }
            Err(_) => {
                unavailable(&sink, "the session D-Bus did not answer".to_string());
                while ops.recv().await.is_some() {}
                return;
            }
        };
    let mut shown = Shown::default();
    let mut reported = false;
    loop {
        tokio::select! {
            op = ops.recv() => match op {
                None => return,
                Some(Op::Show { handle, summary, body }) => {
                    match tokio::time::timeout(CALL_TIMEOUT, show(&proxy, &summary, &body)).await {
                        Ok(Ok(id)) => {
                            tracing::debug!("notification {id} shown: {summary}");
                            shown.insert(handle, id);
                        }
                        Ok(Err(e)) if !reported => {
                            reported = true;
                            unavailable(&sink, format!("no notification server ({e})"));
                        }
                        Err(_) if !reported => {
                            reported = true;
                            unavailable(&sink, "the notification server did not answer".into());
                        }
                        _ => tracing::debug!("notification not shown: {summary}"),
                    }
                }
                Some(Op::Close(handle)) => {
                    let Some(id) = shown.remove_handle(handle) else { continue };
                    match tokio::time::timeout(CALL_TIMEOUT, proxy.close_notification(id)).await {
                        Ok(Ok(())) => tracing::debug!("notification {id} closed"),
                        Ok(Err(e)) => tracing::debug!("closing notification {id}: {e}"),
                        Err(_) => tracing::debug!("closing notification {id}: no answer"),
                    }
                }
            },
            Some(signal) = actions.next() => {
                let Ok(args) = signal.args() else { continue };
                let action = match args.action_key.as_str() {
                    "accept" => NotificationAction::Accept,
                    "decline" => NotificationAction::Decline,
                    "default" => NotificationAction::Show,
                    _ => continue,
                };
                if let Some(handle) = shown.handle_of(args.id) {
                    sink.send(NotificationEvent::Action { handle, action });
                }
            },
            Some(signal) = closed.next() => {
                let Ok(args) = signal.args() else { continue };
                if let Some(handle) = shown.remove_id(args.id) {
                    sink.send(NotificationEvent::Closed { handle });
                }
            },
        }
    }
}

async fn show(proxy: &NotificationsProxy<'_>, summary: &str, body: &str) -> zbus::Result<u32> {
    let hints = HashMap::from([
        ("urgency", Value::U8(2)),
        ("category", Value::from("call.incoming")),
        ("desktop-entry", Value::from("dialtone")),
        // The app plays its own ring tone.
        ("suppress-sound", Value::Bool(true)),
    ]);
    let actions = ["default", "Show", "accept", "Accept", "decline", "Decline"];
    proxy
        .notify("Dialtone", 0, "dialtone", summary, body, &actions, hints, 0)
        .await
}

/// Our handles and the server's ids of the notifications on screen.
#[derive(Default)]
struct Shown {
    by_handle: HashMap<NotificationHandle, u32>,
}

impl Shown {
    fn insert(&mut self, handle: NotificationHandle, id: u32) {
        self.by_handle.insert(handle, id);
    }

    fn handle_of(&self, id: u32) -> Option<NotificationHandle> {
        self.by_handle
            .iter()
            .find_map(|(h, i)| (*i == id).then_some(*h))
    }

    fn remove_handle(&mut self, handle: NotificationHandle) -> Option<u32> {
        self.by_handle.remove(&handle)
    }

    fn remove_id(&mut self, id: u32) -> Option<NotificationHandle> {
        let handle = self.handle_of(id)?;
        self.by_handle.remove(&handle);
        Some(handle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caller_in_summary_and_body_with_markup_escaped() {
        let (summary, body) = incoming_text("Bob <sip:bob@example.com>", Some("work & home"));
        assert_eq!(summary, "Incoming call from Bob <sip:bob@example.com>");
        assert_eq!(body, "Bob &lt;sip:bob@example.com&gt; → work &amp; home");
    }

    #[test]
    fn hostile_caller_text_is_one_short_line() {
        let (summary, body) = incoming_text(&format!("Eve\n\r\u{7}{}", "x".repeat(500)), None);
        assert!(!summary.contains(['\n', '\r', '\u{7}']));
        assert!(summary.chars().count() <= "Incoming call from ".len() + MAX_TEXT);
        assert!(summary.ends_with('…'));
        assert!(!body.contains('\n'));
        let (summary, _) = incoming_text("  ", Some(""));
        assert_eq!(summary, "Incoming call from unknown caller");
    }
}
