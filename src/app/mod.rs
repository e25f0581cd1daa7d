//! The desktop app (eframe/egui): a main window (accounts, contacts, keypad, recents, settings),
//! one window per call and an always-on-top popup for each incoming call.
//!
//! The app never touches protocol state: it sends `Command`s through an [`EngineLink`] and renders a
//! [`model::Model`] built from the engine's `Event`s, drained in `App::logic` so calls ring even
//! while the window is minimised.
//!
//! Repainting is what a softphone's CPU goes on all day (under a software rasteriser a frame of
//! the main window costs milliseconds), so each window repaints only when what it shows changes:
//! - The state lives in one [`AppState`] behind a mutex; the main window and the popups are drawn
//!   from it on the UI thread, and each call window is a *deferred* viewport whose callback locks
//!   it: a call window repaints alone, without the main window (an immediate viewport would
//!   redraw its parent with it).
//! - Engine events wake the main window (and the call windows when a call changed); level events
//!   wake only the call window whose meter moved by a visible step ([`wake`]); a call
//!   window ticks once a second for its duration; nothing repaints while idle.

pub mod launch;
pub mod model;
pub mod store_worker;
pub mod theme;
mod ui;
pub mod wake;

use crate::api::{CallId, Command, Event};
use crate::desktop::notify::{NotificationAction, NotificationEvent, NotificationHandle, Notifier};
use crate::desktop::single_instance::{InstanceServer, Request};
use crate::store::settings::Settings;
use crate::store::{Contact, HistoryEntry, find_contact};
use model::{Effect, Model};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use store_worker::{StoreOp, StoreUpdate, StoreWorker};
use tokio::sync::mpsc;

/// The app's way to the engine: commands out, events in. A real `Engine`, or a channel pair in tests.
pub struct EngineLink {
    send: Box<dyn Fn(Command) + Send>,
    events: mpsc::UnboundedReceiver<Event>,
    /// Whatever must live as long as the app (the engine itself, the echo service).
    _keep: Vec<Box<dyn std::any::Any + Send>>,
}

impl EngineLink {
    pub fn new(
        send: impl Fn(Command) + Send + 'static,
        events: mpsc::UnboundedReceiver<Event>,
    ) -> EngineLink {
        EngineLink {
            send: Box::new(send),
            events,
            _keep: Vec::new(),
        }
    }

    /// Keeps `thing` alive until the app exits (dropped after the UI, which stops engines cleanly).
    pub fn keep(mut self, thing: impl std::any::Any + Send) -> EngineLink {
        self._keep.push(Box::new(thing));
        self
    }
}

/// Which page of the main window is showing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    Contacts,
    Recents,
    Keypad,
    Settings,
}

/// An account being added or edited on the settings page.
#[derive(Debug, Clone)]
pub struct AccountDraft {
    /// `None` for a new account.
    pub index: Option<usize>,
    pub account: crate::store::settings::Account,
    pub password: String,
}

/// Everything the app starts from.
pub struct AppInit {
    pub link: EngineLink,
    /// The settings the engine runs with (passwords included).
    pub settings: Settings,
    /// Contacts, history and the settings file, off the UI thread.
    pub store: StoreWorker,
    /// Messages to show at start (a settings file or database kept aside, where passwords go).
    pub notices: Vec<String>,
    /// Where passwords are kept, in a sentence for the settings page.
    pub secrets_note: Option<String>,
    /// The settings file (`None`: from the command line, not saved).
    pub settings_path: Option<std::path::PathBuf>,
    /// The in-app echo service's URI, for the "Echo test" entry.
    pub echo_uri: Option<String>,
    /// Dial this once the app is up (`dialtone sip:bob@example.com`).
    pub dial: Option<String>,
    /// Desktop notifications for incoming calls (none in tests).
    pub notifier: Option<Notifier>,
    /// Links handed over by a second `dialtone` process.
    pub instance: Option<InstanceServer>,
    /// Set by SIGTERM/SIGINT: close without asking, even with calls up.
    pub force_quit: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
}

/// The desktop app as eframe runs it: the state, shared with the call windows' callbacks.
pub struct DialtoneApp {
    state: Arc<Mutex<AppState>>,
}

/// Everything the windows show and edit. Locked by one window's pass at a time, all on the UI
/// thread (deferred viewports are painted by the same event loop), so the lock never waits.
pub struct AppState {
    link: EngineLink,
    pub(crate) settings: Settings,
    pub(crate) store: StoreWorker,
    pub(crate) contacts: Vec<Contact>,
    pub(crate) history: Vec<HistoryEntry>,
    pub(crate) unseen_missed: u64,
    pub(crate) secrets_note: Option<String>,
    /// The contacts page's search field.
    pub(crate) search: String,
    /// The contacts page's editor (a new or existing contact being edited).
    pub(crate) editing: Option<Contact>,
    /// The contact whose numbers are offered to pick one to call.
    pub(crate) picking: Option<i64>,
    /// The vCard file path field of the contacts page.
    pub(crate) vcard_path: String,
    /// The settings page's account editor.
    pub(crate) account_draft: Option<AccountDraft>,
    pub(crate) settings_path: Option<std::path::PathBuf>,
    /// The engine meters the microphone for the settings page.
    monitoring: bool,
    /// The main window was asked to close while calls are up: the question is showing.
    pub(crate) confirm_quit: bool,
    /// The user said yes: the next close goes through.
    pub(crate) quit_confirmed: bool,
    pub(crate) force_quit: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    pub(crate) model: Model,
    pub(crate) page: Page,
    /// The address field: what is typed there is dialled on Enter.
    pub(crate) address: String,
    pub(crate) echo_uri: Option<String>,
    last_stats_request: Option<Instant>,
    notifier: Option<Notifier>,
    notifications: HashMap<CallId, NotificationHandle>,
    instance: Option<InstanceServer>,
}

impl DialtoneApp {
    pub fn new(ctx: &egui::Context, init: AppInit) -> DialtoneApp {
        DialtoneApp {
            state: Arc::new(Mutex::new(AppState::new(ctx, init))),
        }
    }

    fn lock(&self) -> MutexGuard<'_, AppState> {
        lock(&self.state)
    }
}

/// The state, also after a panic in some window's pass (the data stays consistent: every change
/// is one assignment or one model call).
pub(crate) fn lock(state: &Mutex<AppState>) -> MutexGuard<'_, AppState> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl AppState {
    fn new(ctx: &egui::Context, init: AppInit) -> AppState {
        theme::install(ctx);
        let accounts = init
            .settings
            .accounts
            .iter()
            .map(|a| (a.uri.clone(), a.register));
        let mut model = Model::new(accounts);
        for n in init.notices {
            model.notice(n);
        }
        let mut app = AppState {
            link: init.link,
            model,
            settings: init.settings,
            store: init.store,
            contacts: Vec::new(),
            history: Vec::new(),
            unseen_missed: 0,
            secrets_note: init.secrets_note,
            search: String::new(),
            editing: None,
            picking: None,
            vcard_path: default_vcard_path(),
            account_draft: None,
            settings_path: init.settings_path,
            monitoring: false,
            confirm_quit: false,
            quit_confirmed: false,
            force_quit: init.force_quit,
            page: Page::Contacts,
            address: String::new(),
            echo_uri: init.echo_uri,
            last_stats_request: None,
            notifier: init.notifier,
            notifications: HashMap::new(),
            instance: init.instance,
        };
        if let Some(target) = init.dial {
            app.dial(&target);
        }
        app
    }

    pub(crate) fn send(&self, cmd: Command) {
        tracing::debug!(?cmd, "ui → engine");
        (self.link.send)(cmd);
    }

    pub(crate) fn send_opt(&self, cmd: Option<Command>) {
        if let Some(c) = cmd {
            self.send(c);
        }
    }

    /// New settings from the settings page: the engine applies them live, the worker saves them
    /// (passwords to the keyring; an empty password deletes the stored one).
    pub(crate) fn apply_settings(&mut self, new: Settings, passwords: Vec<(String, String)>) {
        if new.accounts != self.settings.accounts {
            self.model
                .set_accounts(new.accounts.iter().map(|a| (a.uri.clone(), a.register)));
        }
        self.settings = new.clone();
        self.send(Command::Reconfigure {
            settings: Box::new(new.clone()),
        });
        self.store.send(StoreOp::SaveSettings {
            settings: Box::new(new),
            passwords,
        });
    }

    /// Dials what the user typed or clicked: a URI, a user name or a phone number.
    pub(crate) fn dial(&mut self, target: &str) {
        let target = target.trim();
        if target.is_empty() {
            return;
        }
        self.send(Command::Call {
            uri: target.to_string(),
            account: None,
        });
    }

    fn apply_effects(&mut self, effects: Vec<Effect>) {
        for fx in effects {
            match fx {
                Effect::Send(cmd) => self.send(cmd),
                Effect::History(h) => self.store.send(StoreOp::AddCall(history_entry(h))),
                Effect::NotifyIncoming {
                    call,
                    caller,
                    account,
                } => {
                    if let Some(n) = &self.notifier {
                        let h = n.notify_incoming(&caller, account.as_deref());
                        self.notifications.insert(call, h);
                    }
                }
                Effect::CloseNotification(call) => {
                    if let (Some(n), Some(h)) = (&self.notifier, self.notifications.remove(&call)) {
                        n.close(h);
                    }
                }
            }
        }
    }

    /// Drains the engine's events into the model; returns whether anything but levels came.
    fn drain_events(&mut self) -> bool {
        let mut changed = false;
        let now = Instant::now();
        let wall_ms = unix_ms();
        while let Ok(ev) = self.link.events.try_recv() {
            changed |= !matches!(ev, Event::Levels { .. });
            let contacts = &self.contacts;
            let echo = self.echo_uri.as_deref();
            let name_of = |uri: &str| {
                // The echo service's own address (perhaps with URI parameters after it).
                if echo.is_some_and(|e| uri.starts_with(e)) {
                    return Some("Echo test".to_string());
                }
                find_contact(contacts, uri).map(|c| c.name.clone())
            };
            let fx = match ev {
                Event::IncomingRefused { from, account, .. } => {
                    vec![self.model.refused(&from, account, wall_ms, &name_of)]
                }
                ev => self.model.apply(ev, now, wall_ms, &name_of),
            };
            self.apply_effects(fx);
        }
        changed
    }

    /// Applies what the store worker sent; returns whether anything came.
    fn drain_store(&mut self) -> bool {
        let updates = self.store.drain();
        let changed = !updates.is_empty();
        for u in updates {
            match u {
                StoreUpdate::Contacts(c) => self.contacts = c,
                StoreUpdate::History {
                    entries,
                    unseen_missed,
                } => {
                    self.history = entries;
                    self.unseen_missed = unseen_missed;
                    if self.page == Page::Recents && unseen_missed > 0 {
                        self.store.send(StoreOp::MarkHistorySeen);
                    }
                }
                StoreUpdate::Notice(n) => self.model.info(n),
                StoreUpdate::Error(e) => self.model.notice(e),
            }
        }
        changed
    }

    /// Accept/Decline clicked on a desktop notification.
    fn drain_notifications(&mut self) {
        let Some(n) = &self.notifier else { return };
        let events: Vec<NotificationEvent> = n.events().try_iter().collect();
        for ev in events {
            match ev {
                NotificationEvent::Action { handle, action } => {
                    let Some(call) = self
                        .notifications
                        .iter()
                        .find(|(_, h)| **h == handle)
                        .map(|(c, _)| *c)
                    else {
                        continue;
                    };
                    let cmd = match action {
                        NotificationAction::Accept => self.model.answer(call),
                        NotificationAction::Decline => self.model.decline(call),
                        NotificationAction::Show => None,
                    };
                    self.send_opt(cmd);
                }
                NotificationEvent::Unavailable { reason } => {
                    tracing::info!("desktop notifications unavailable: {reason}");
                }
                _ => {}
            }
        }
    }

    /// A second `dialtone sip:…` handed us a link, or asked to be shown.
    fn drain_instance_requests(&mut self, ctx: &egui::Context) {
        let Some(server) = &self.instance else { return };
        let requests: Vec<Request> = server.requests().try_iter().collect();
        for r in requests {
            if let Request::Dial(uri) = r {
                self.dial(&uri);
            }
            ctx.send_viewport_cmd_to(
                egui::ViewportId::ROOT,
                egui::ViewportCommand::Minimized(false),
            );
            ctx.send_viewport_cmd_to(egui::ViewportId::ROOT, egui::ViewportCommand::Focus);
        }
    }

    /// Stats are asked for only while some call window shows them, once a second.
    fn poll_stats(&mut self, now: Instant) {
        let wanted = self.page == Page::Settings
            || self
                .model
                .calls
                .values()
                .any(|c| c.window.show_stats && !c.is_ended());
        let due = self
            .last_stats_request
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1));
        if wanted && due {
            self.last_stats_request = Some(now);
            self.send(Command::Stats);
        }
    }
}

/// `~/contacts.vcf`: where import looks and export writes unless the user types another path.
fn default_vcard_path() -> String {
    std::env::var_os("HOME")
        .map(|h| std::path::PathBuf::from(h).join("contacts.vcf"))
        .unwrap_or_else(|| std::path::PathBuf::from("contacts.vcf"))
        .display()
        .to_string()
}

/// A finished call as the history stores it.
fn history_entry(h: model::FinishedCall) -> HistoryEntry {
    use crate::store::{Direction as D, Outcome as O};
    HistoryEntry {
        id: None,
        peer: h.peer,
        name: h.name,
        direction: match h.direction {
            crate::api::Direction::Incoming => D::Incoming,
            crate::api::Direction::Outgoing => D::Outgoing,
        },
        outcome: match h.outcome {
            model::Outcome::Answered => O::Answered,
            model::Outcome::Missed => O::Missed,
            model::Outcome::Rejected => O::Rejected,
            model::Outcome::Cancelled => O::Cancelled,
            model::Outcome::Failed => O::Failed,
        },
        account: h.account,
        started_at: h.started_at_ms,
        duration_s: h.duration_s,
        seen: h.outcome != model::Outcome::Missed,
    }
}

pub(crate) fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl AppState {
    /// What the main window's pass does before drawing: events, store, notifications, links
    /// handed over, the meter, stats; then when the main window and the call windows repaint.
    fn logic(&mut self, ctx: &egui::Context) {
        if self.drain_events() {
            self.repaint_call_windows(ctx, None);
        }
        if self.drain_store() {
            ctx.request_repaint();
        }
        self.drain_notifications();
        self.drain_instance_requests(ctx);
        let now = Instant::now();
        let monitor = ui::settings::monitor_wanted(self);
        if monitor != self.monitoring {
            self.monitoring = monitor;
            self.send(Command::MonitorInput { on: monitor });
            if monitor {
                self.send(Command::ListDevices);
            }
        }
        self.model.sweep(now);
        self.poll_stats(now);
        if self
            .model
            .ringing()
            .any(|c| now.duration_since(c.started) < Duration::from_secs(1))
        {
            // A popup window was just created: paint it at once, not at the next tick.
            ctx.request_repaint_after(Duration::from_millis(30));
        } else if self.page == Page::Settings {
            // The input meter (level events do not wake the main window): five frames a second.
            ctx.request_repaint_after(Duration::from_millis(200));
        } else if let Some(gone) = self.model.next_sweep(now) {
            // An ended call's window lingers, then goes with the main window's next pass.
            ctx.request_repaint_after(gone);
        }
        if self.model.stopped {
            ctx.send_viewport_cmd_to(egui::ViewportId::ROOT, egui::ViewportCommand::Close);
        }
    }

    /// A call may have changed: its window shows it (each call window is deferred and repaints
    /// only when asked). `but` is the window whose pass is running.
    fn repaint_call_windows(&self, ctx: &egui::Context, but: Option<CallId>) {
        for c in self.model.calls.values() {
            if Model::has_window(c) && Some(c.id) != but {
                ctx.request_repaint_of(ui::call_window::viewport_id(c.id));
            }
        }
    }

    /// What a call window's pass does first: the newest events (levels above all), and stats
    /// while it shows them. Returns when the window should repaint by itself next.
    fn call_window_logic(&mut self, ctx: &egui::Context, id: CallId) -> Option<Duration> {
        if self.drain_events() {
            // Not only levels: the main window and the other calls' windows may show it too.
            ctx.request_repaint_of(egui::ViewportId::ROOT);
            self.repaint_call_windows(ctx, Some(id));
        }
        let now = Instant::now();
        self.poll_stats(now);
        let c = self.model.calls.get(&id)?;
        if c.is_ended() {
            None
        } else if c.window.show_stats {
            // Figures come once a second, and wake no window.
            Some(Duration::from_millis(500))
        } else {
            // The duration: at the next whole second of it.
            let into = c.duration(now).subsec_millis();
            Some(Duration::from_millis(u64::from(1000 - into)))
        }
    }
}

impl eframe::App for DialtoneApp {
    fn clear_color(&self, visuals: &egui::Visuals) -> [f32; 4] {
        theme::clear_color(visuals)
    }

    fn logic(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        self.lock().logic(ctx);
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        {
            let mut app = self.lock();
            ui::main_window::show(&mut app, ui);
            ui::incoming::show_all(&mut app, ui.ctx());
        }
        // Unlocked: an embedded (test) call window runs its callback right here.
        ui::call_window::show_all(&self.state, ui.ctx());
    }
}
