//! The main window: account status, the address field, the pages (keypad, settings …) and a strip
//! with the calls that are live.

use crate::app::model::AccountState;
use crate::app::store_worker::StoreOp;
use crate::app::theme::{self, icon};
use crate::app::{AppState, Page};
use egui::{Key, RichText, Ui};

pub fn show(app: &mut AppState, ui: &mut Ui) {
    // A vCard file dropped on the window is imported.
    let dropped: Vec<std::path::PathBuf> = ui.input(|i| {
        i.raw
            .dropped_files
            .iter()
            .map(|f| f.path().to_path_buf())
            .filter(|p| !p.as_os_str().is_empty())
            .collect()
    });
    for path in dropped {
        app.store.send(StoreOp::ImportVcf(path));
        app.page = Page::Contacts;
    }
    quit_guard(app, ui);
    egui::Panel::top("status").show(ui, |ui| {
        ui.add_space(4.0);
        if app.confirm_quit {
            confirm_quit(app, ui);
        }
        accounts(app, ui);
        notices(app, ui);
        ui.add_space(4.0);
        address_row(app, ui);
        ui.add_space(4.0);
        tabs(app, ui);
        ui.add_space(2.0);
    });
    if app.model.any_live() {
        egui::Panel::bottom("live-calls").show(ui, |ui| live_calls(app, ui));
    }
    theme::central_panel(ui).show(ui, |ui| match app.page {
        Page::Contacts => super::contacts::show(app, ui),
        Page::Recents => super::recents::show(app, ui),
        Page::Keypad => keypad_page(app, ui),
        Page::Settings => super::settings::show(app, ui),
    });
}

fn accounts(app: &mut AppState, ui: &mut Ui) {
    if app.model.accounts.is_empty() {
        ui.horizontal(|ui| {
            theme::status_dot(ui, theme::GREY);
            ui.label("No account: direct sip: calls and the echo test work.");
        });
        return;
    }
    let mut retry = None;
    for a in &app.model.accounts {
        ui.horizontal(|ui| {
            let (color, text) = match &a.state {
                AccountState::Registered => (theme::GREEN, "Registered".to_string()),
                AccountState::Registering => (theme::AMBER, "Registering…".to_string()),
                AccountState::Offline => (theme::GREY, "Offline".to_string()),
                AccountState::Failed { reason } => (theme::RED, format!("Failed: {reason}")),
            };
            theme::status_dot(ui, color);
            ui.label(RichText::new(a.aor.trim_start_matches("sip:")).strong());
            ui.label(RichText::new(text).color(color));
            if matches!(a.state, AccountState::Failed { .. })
                && ui
                    .small_button("Retry")
                    .on_hover_text("Register this account again now")
                    .clicked()
            {
                retry = Some(a.id);
            }
        });
    }
    if let Some(account) = retry {
        app.send(crate::api::Command::Register { account });
    }
}

fn notices(app: &mut AppState, ui: &mut Ui) {
    let mut dismiss = None;
    for (i, n) in app.model.notices.iter().enumerate() {
        let color = if n.error { theme::RED } else { theme::ACCENT };
        egui::Frame::new()
            .fill(color.gamma_multiply(0.15))
            .corner_radius(6)
            .inner_margin(6)
            .show(ui, |ui| {
                ui.horizontal(|ui| {
                    ui.add(egui::Label::new(RichText::new(&n.text).color(color)).wrap());
                    if ui
                        .small_button(icon::CLOSE)
                        .on_hover_text("Dismiss this message")
                        .clicked()
                    {
                        dismiss = Some(i);
                    }
                });
            });
    }
    if let Some(i) = dismiss {
        app.model.notices.remove(i);
    }
}

fn address_row(app: &mut AppState, ui: &mut Ui) {
    ui.horizontal(|ui| {
        let width = (ui.available_width() - 126.0).max(120.0);
        let edit = egui::TextEdit::singleline(&mut app.address)
            .hint_text("Name, number or sip: address")
            .desired_width(width);
        let resp = ui
            .add(edit)
            .on_hover_text("Type a number or address, Enter calls");
        theme::accessible_name(ui, &resp, "Address");
        let enter = resp.lost_focus() && ui.input(|i| i.key_pressed(Key::Enter));
        let call = theme::filled_button(ui, Some(icon::CALL), "Call", theme::GREEN)
            .on_hover_text("Call this address (Enter)");
        if enter || call.clicked() {
            let target = std::mem::take(&mut app.address);
            app.dial(&target);
        }
    });
}

fn tabs(app: &mut AppState, ui: &mut Ui) {
    ui.horizontal(|ui| {
        let recents = if app.unseen_missed > 0 {
            format!("Recents ({})", app.unseen_missed)
        } else {
            "Recents".to_string()
        };
        for (page, ic, label) in [
            (Page::Contacts, icon::CONTACTS, "Contacts"),
            (Page::Recents, icon::RECENTS, recents.as_str()),
            (Page::Keypad, icon::KEYPAD, "Keypad"),
            (Page::Settings, icon::SETTINGS, "Settings"),
        ] {
            if theme::tab(ui, app.page == page, ic, label).clicked() && app.page != page {
                app.page = page;
                if page == Page::Recents && app.unseen_missed > 0 {
                    app.store.send(StoreOp::MarkHistorySeen);
                }
            }
        }
    });
}

fn keypad_page(app: &mut AppState, ui: &mut Ui) {
    ui.vertical_centered(|ui| {
        ui.add_space(8.0);
        if let Some(d) = super::keypad::show(ui, 48.0) {
            app.address.push(d);
        }
        ui.add_space(8.0);
        if let Some(uri) = app.echo_uri.clone()
            && theme::icon_button(ui, icon::ECHO, "Echo test")
                .on_hover_text("Call the built-in echo service and hear your own microphone")
                .clicked()
        {
            app.dial(&uri);
        }
    });
}

fn live_calls(app: &mut AppState, ui: &mut Ui) {
    for c in app.model.calls.values() {
        if c.is_ended() {
            continue;
        }
        ui.horizontal(|ui| {
            theme::avatar(ui, &c.name, 22.0);
            ui.label(RichText::new(&c.name).strong());
            ui.label(c.brief_status());
            if !c.ringing_popup
                && ui
                    .small_button("Show")
                    .on_hover_text("Bring this call's window to the front")
                    .clicked()
            {
                ui.ctx().send_viewport_cmd_to(
                    super::call_window::viewport_id(c.id),
                    egui::ViewportCommand::Focus,
                );
            }
        });
    }
}

/// Closing the main window quits Dialtone: with calls up, ask first.
fn quit_guard(app: &mut AppState, ui: &mut Ui) {
    if app
        .force_quit
        .as_ref()
        .is_some_and(|f| f.load(std::sync::atomic::Ordering::Relaxed))
    {
        app.quit_confirmed = true;
    }
    if ui.input(|i| i.viewport().close_requested())
        && app.model.calls.values().any(|c| c.is_up())
        && !app.quit_confirmed
    {
        ui.ctx()
            .send_viewport_cmd_to(egui::ViewportId::ROOT, egui::ViewportCommand::CancelClose);
        app.confirm_quit = true;
    }
}

fn confirm_quit(app: &mut AppState, ui: &mut Ui) {
    let n = app.model.calls.values().filter(|c| c.is_up()).count();
    egui::Frame::new()
        .fill(theme::AMBER.gamma_multiply(0.2))
        .corner_radius(6)
        .inner_margin(6)
        .show(ui, |ui| {
            ui.label(format!(
                "{n} call{} up. Quit Dialtone and hang up?",
                if n == 1 { " is" } else { "s are" }
            ));
            ui.horizontal(|ui| {
                if theme::filled_button(ui, Some(icon::HANGUP), "Quit and hang up", theme::RED)
                    .clicked()
                {
                    app.quit_confirmed = true;
                    ui.ctx()
                        .send_viewport_cmd_to(egui::ViewportId::ROOT, egui::ViewportCommand::Close);
                }
                if ui.button("Keep Dialtone open").clicked() {
                    app.confirm_quit = false;
                }
            });
        });
}
