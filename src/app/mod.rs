//! The desktop app (eframe/egui): a main window (accounts, contacts, keypad, recents, settings),
//! one window per call and an always-on-top popup for each incoming call.
//!
//! The app never touches protocol state: it sends `Command`s through an [`EngineLink`] and renders a
//! [`model::Model`] built from the engine's `Event`s, drained in `App::logic` so calls ring even
//! while the window is minimised. The engine wakes the UI with `request_repaint`; nothing repaints
//! while idle except a once-a-second tick while a call is live (for its duration).

pub mod launch;
pub mod model;
pub mod theme;
mod ui;

use crate::api::{CallId, Command, Event};
use crate::desktop::notify::{NotificationAction, NotificationEvent, NotificationHandle, Notifier};
use crate::desktop::single_instance::{InstanceServer, Request};
use model::{Effect, Model};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// The app's way to the engine: commands out, events in. A real `Engine`, or a channel pair in tests.
pub struct EngineLink {
    send: Box<dyn Fn(Command)>,
    events: mpsc::UnboundedReceiver<Event>,
    /// Whatever must live as long as the app (the engine itself, the echo service).
    _keep: Vec<Box<dyn std::any::Any>>,
}

impl EngineLink {
    pub fn new(
        send: impl Fn(Command) + 'static,
        events: mpsc::UnboundedReceiver<Event>,
    ) -> EngineLink {
        EngineLink {
            send: Box::new(send),
            events,
            _keep: Vec::new(),
        }
    }

    /// Keeps `thing` alive until the app exits (dropped after the UI, which stops engines cleanly).
    pub fn keep(mut self, thing: impl std::any::Any) -> EngineLink {
        self._keep.push(Box::new(thing));
        self
    }
}

/// Which page of the main window is showing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    Keypad,
    Settings,
}

/// Everything the app starts from.
pub struct AppInit {
    pub link: EngineLink,
    /// `(address of record, registers?)` per configured account, in `AccountId` order.
    pub accounts: Vec<(String, bool)>,
    /// The in-app echo service's URI, for the "Echo test" entry.
    pub echo_uri: Option<String>,
    /// Dial this once the app is up (`dialtone sip:bob@example.com`).
    pub dial: Option<String>,
    /// Desktop notifications for incoming calls (none in tests).
    pub notifier: Option<Notifier>,
    /// Links handed over by a second `dialtone` process.
    pub instance: Option<InstanceServer>,
}

pub struct DialtoneApp {
    link: EngineLink,
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
        theme::install(ctx);
        let mut app = DialtoneApp {
            link: init.link,
            model: Model::new(init.accounts),
            page: Page::Keypad,
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
                Effect::History(h) => tracing::info!(?h, "call finished"),
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

    /// Drains the engine's events into the model; returns whether anything changed.
    fn drain_events(&mut self) -> bool {
        let mut changed = false;
        let now = Instant::now();
        let wall_ms = unix_ms();
        while let Ok(ev) = self.link.events.try_recv() {
            changed = true;
            let fx = self.model.apply(ev, now, wall_ms, &|_| None);
            self.apply_effects(fx);
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
            ctx.send_viewport_cmd(egui::ViewportCommand::Minimized(false));
            ctx.send_viewport_cmd(egui::ViewportCommand::Focus);
        }
    }

    /// Stats are asked for only while some call window shows them, once a second.
    fn poll_stats(&mut self, now: Instant) {
        let wanted = self
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

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl eframe::App for DialtoneApp {
    fn logic(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        self.drain_events();
        self.drain_notifications();
        self.drain_instance_requests(ctx);
        let now = Instant::now();
        self.model.sweep(now);
        self.poll_stats(now);
        if self
            .model
            .ringing()
            .any(|c| now.duration_since(c.started) < Duration::from_secs(1))
        {
            // A popup window was just created: paint it at once, not at the next tick.
            ctx.request_repaint_after(Duration::from_millis(30));
        } else if self.model.any_live() {
            // Durations tick; ended calls' windows linger then close.
            ctx.request_repaint_after(Duration::from_millis(500));
        }
        if self.model.stopped {
            ctx.send_viewport_cmd(egui::ViewportCommand::Close);
        }
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        ui::main_window::show(self, ui);
        ui::call_window::show_all(self, ui.ctx());
        ui::incoming::show_all(self, ui.ctx());
    }
}
