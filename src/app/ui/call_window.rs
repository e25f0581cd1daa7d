//! One window per call (an egui viewport, titled with the peer's name): state and duration, mute,
//! hold/resume, hang up, a keypad for DTMF, levels, and codec/quality figures on demand. Closing the
//! window hangs up, after asking if the call is up.

use crate::api::{CallId, CallState, Command, Direction};
use crate::app::model::CallView;
use crate::app::theme::{self, icon};
use crate::app::{AppState, lock};
use egui::{Key, KeyboardShortcut, Modifiers, RichText, Ui, ViewportBuilder, ViewportId};
use std::sync::{Arc, Mutex};
use std::time::Instant;

const MUTE_KEY: KeyboardShortcut = KeyboardShortcut::new(Modifiers::CTRL, Key::M);
const HOLD_KEY: KeyboardShortcut = KeyboardShortcut::new(Modifiers::CTRL, Key::H);
const HANGUP_KEY: KeyboardShortcut = KeyboardShortcut::new(Modifiers::CTRL, Key::E);

pub fn viewport_id(call: CallId) -> ViewportId {
    ViewportId::from_hash_of(("dialtone-call", call.0))
}

/// Shows the window of every call that has one (every call but incoming ones still ringing).
///
/// Each is a deferred viewport: egui calls its callback when that window repaints, and it locks
/// the state itself, so a call window repaints without the main window. The caller holds no
/// lock (an embedded window, in tests, runs its callback right away).
pub fn show_all(state: &Arc<Mutex<AppState>>, ctx: &egui::Context) {
    let windows: Vec<(CallId, String)> = lock(state)
        .model
        .calls
        .values()
        .filter(|c| crate::app::model::Model::has_window(c))
        .map(|c| (c.id, c.name.clone()))
        .collect();
    for (id, name) in windows {
        let builder = ViewportBuilder::default()
            .with_title(format!("{name} — Dialtone"))
            .with_app_id("dialtone")
            .with_inner_size([360.0, 470.0])
            .with_min_inner_size([300.0, 360.0]);
        // Weak: the context keeps the callback, and must not keep the app (and its engine)
        // alive after the main window closed.
        let state = Arc::downgrade(state);
        ctx.show_viewport_deferred(viewport_id(id), builder, move |ui, class| {
            let Some(state) = state.upgrade() else {
                return;
            };
            let mut app = lock(&state);
            if class == egui::ViewportClass::EmbeddedWindow {
                // Tests (and back-ends without windows) show it as a window inside the main one,
                // whose pass has done the logic.
                call_ui(&mut app, ui, id);
            } else {
                if let Some(next) = app.call_window_logic(ui.ctx(), id) {
                    ui.ctx().request_repaint_after(next);
                }
                theme::central_panel(ui).show(ui, |ui| call_ui(&mut app, ui, id));
            }
            if ui.input(|i| i.viewport().close_requested()) {
                on_close_requested(&mut app, ui.ctx(), id);
            }
        });
    }
}

fn on_close_requested(app: &mut AppState, ctx: &egui::Context, id: CallId) {
    let Some(c) = app.model.calls.get_mut(&id) else {
        return;
    };
    if c.is_up() {
        // Ask first: a stray click must not end a conversation.
        ctx.send_viewport_cmd(egui::ViewportCommand::CancelClose);
        c.window.confirm_hangup = true;
    } else if c.is_ended() {
        c.window_closed = true;
        // The main window's pass is what stops showing this viewport.
        ctx.request_repaint_of(egui::ViewportId::ROOT);
    } else {
        let cmd = app.model.hangup(id);
        app.send_opt(cmd);
    }
}

fn call_ui(app: &mut AppState, ui: &mut Ui, id: CallId) {
    let now = Instant::now();
    let Some(c) = app.model.calls.get(&id) else {
        return;
    };
    let c: CallView = c.clone();
    let live = !c.is_ended();
    let up = c.is_up();
    let input_dbfs = app.model.input_dbfs;

    ui.vertical_centered(|ui| {
        ui.add_space(10.0);
        theme::avatar(ui, &c.name, 72.0);
        ui.add_space(4.0);
        ui.heading(&c.name);
        ui.label(RichText::new(&c.peer).small().weak());
        let direction = match c.direction {
            Direction::Incoming => icon::INCOMING,
            Direction::Outgoing => icon::OUTGOING,
        };
        let status = c.status_text(now);
        let color = match c.state {
            CallState::Ended => theme::RED,
            CallState::Held => theme::AMBER,
            CallState::Established => theme::GREEN,
            _ => ui.visuals().text_color(),
        };
        ui.label(
            RichText::new(format!("{direction} {status}"))
                .color(color)
                .size(17.0),
        );
    });
    ui.add_space(6.0);

    if c.window.confirm_hangup && up {
        confirm_hangup(app, ui, &c);
        return;
    }

    if up {
        if let Some(db) = input_dbfs {
            theme::level_meter(ui, "Microphone", if c.muted { -120.0 } else { db });
        }
        theme::level_meter(ui, "Speaker", c.output_dbfs);
        ui.add_space(6.0);
    }

    let mut actions: Vec<Option<Command>> = Vec::new();
    ui.horizontal(|ui| {
        let total = 5.0 * 58.0 + 4.0 * ui.spacing().item_spacing.x;
        ui.add_space(((ui.available_width() - total) / 2.0).max(0.0));
        let mute_icon = if c.muted { icon::MUTED } else { icon::MIC };
        let mute_caption = if c.muted { "Unmute" } else { "Mute" };
        if theme::round_button(ui, mute_icon, mute_caption, None, c.muted, live)
            .on_hover_text(format!(
                "{mute_caption} your microphone on this call ({})",
                ui.ctx().format_shortcut(&MUTE_KEY)
            ))
            .clicked()
        {
            actions.push(app.model.toggle_mute(id));
        }
        let held = c.state == CallState::Held && c.hold.local;
        let (hold_icon, hold_caption) = if held {
            (icon::RESUME, "Resume")
        } else {
            (icon::HOLD, "Hold")
        };
        if theme::round_button(ui, hold_icon, hold_caption, None, held, up)
            .on_hover_text(format!(
                "{hold_caption} this call ({})",
                ui.ctx().format_shortcut(&HOLD_KEY)
            ))
            .clicked()
        {
            actions.extend(hold_or_resume(app, &c));
        }
        if theme::round_button(ui, icon::KEYPAD, "Keypad", None, c.window.show_keypad, up)
            .on_hover_text("Show the keypad to send tones (DTMF)")
            .clicked()
            && let Some(v) = app.model.calls.get_mut(&id)
        {
            v.window.show_keypad = !v.window.show_keypad;
        }
        if theme::round_button(ui, icon::STATS, "Stats", None, c.window.show_stats, live)
            .on_hover_text("Codec and call quality figures")
            .clicked()
            && let Some(v) = app.model.calls.get_mut(&id)
        {
            v.window.show_stats = !v.window.show_stats;
        }
        let hang_caption = if c.direction == Direction::Incoming && c.state == CallState::Ringing {
            "Decline"
        } else {
            "Hang up"
        };
        if theme::round_button(
            ui,
            icon::HANGUP,
            hang_caption,
            Some(theme::RED),
            false,
            live,
        )
        .on_hover_text(format!(
            "End this call ({})",
            ui.ctx().format_shortcut(&HANGUP_KEY)
        ))
        .clicked()
        {
            actions.push(app.model.hangup(id));
        }
    });

    // Shortcuts act on the focused call window only (each viewport has its own input).
    if live && !ui.ctx().embed_viewports() {
        if ui.input_mut(|i| i.consume_shortcut(&MUTE_KEY)) {
            actions.push(app.model.toggle_mute(id));
        }
        if up && ui.input_mut(|i| i.consume_shortcut(&HOLD_KEY)) {
            actions.extend(hold_or_resume(app, &c));
        }
        if ui.input_mut(|i| i.consume_shortcut(&HANGUP_KEY)) {
            actions.push(app.model.hangup(id));
        }
    }

    if c.window.show_keypad && up {
        ui.add_space(6.0);
        ui.vertical_centered(|ui| {
            if !c.window.dtmf_sent.is_empty() {
                ui.label(RichText::new(&c.window.dtmf_sent).monospace().size(18.0));
            }
            if let Some(d) = super::keypad::show(ui, 36.0) {
                actions.push(app.model.dtmf(id, d));
            }
        });
    }
    if c.window.show_stats {
        ui.add_space(6.0);
        stats(ui, &c);
    }
    for a in actions.into_iter().flatten() {
        app.send(a);
    }
}

/// Resume puts the other live calls on hold first; hold just holds.
fn hold_or_resume(app: &mut AppState, c: &CallView) -> Vec<Option<Command>> {
    if c.state == CallState::Held && c.hold.local {
        app.model
            .resume_exclusive(c.id)
            .into_iter()
            .map(Some)
            .collect()
    } else {
        vec![app.model.toggle_hold(c.id)]
    }
}

fn confirm_hangup(app: &mut AppState, ui: &mut Ui, c: &CallView) {
    ui.vertical_centered(|ui| {
        ui.label(format!("Hang up the call with {}?", c.name));
        ui.add_space(6.0);
        ui.horizontal(|ui| {
            if theme::filled_button(ui, Some(icon::HANGUP), "Hang up", theme::RED).clicked() {
                let cmd = app.model.hangup(c.id);
                app.send_opt(cmd);
            }
            if ui.button("Keep talking").clicked()
                && let Some(v) = app.model.calls.get_mut(&c.id)
            {
                v.window.confirm_hangup = false;
            }
        });
    });
}

fn stats(ui: &mut Ui, c: &CallView) {
    let Some(s) = &c.stats else {
        ui.label(RichText::new("Waiting for figures…").weak());
        return;
    };
    egui::Grid::new(("stats", c.id.0))
        .num_columns(2)
        .striped(true)
        .show(ui, |ui| {
            let mut row = |k: &str, v: String| {
                ui.label(k);
                ui.label(v);
                ui.end_row();
            };
            row("Codec", s.codec.clone().unwrap_or_else(|| "—".into()));
            row(
                "Encryption",
                if s.srtp { "SRTP".into() } else { "none".into() },
            );
            if let Some(m) = &s.media {
                row(
                    "Packets sent / received",
                    format!("{} / {}", m.packets_sent, m.packets_received),
                );
                row("Lost", m.lost.to_string());
                row("Jitter", format!("{:.1} ms", m.jitter_ms));
                row("Jitter buffer", format!("{} ms", m.jitter_buffer_ms));
                row(
                    "Round trip",
                    m.rtt_ms.map_or("—".into(), |r| format!("{r:.0} ms")),
                );
            }
            if let Some(r) = &s.remote_media {
                row("Far end media", r.clone());
            }
        });
}
