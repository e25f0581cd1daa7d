//! The incoming-call popup: a small always-on-top window per ringing call with the caller (named
//! from the contacts), the account that was called, Accept (Enter) and Decline (Esc). It is created
//! without activation, so it never takes the keyboard from the application the user types in.

use crate::api::CallId;
use crate::app::AppState;
use crate::app::model::uri_user;
use crate::app::theme::{self, icon};
use egui::{Key, RichText, ViewportBuilder, ViewportId};

pub fn viewport_id(call: CallId) -> ViewportId {
    ViewportId::from_hash_of(("dialtone-incoming", call.0))
}

pub fn show_all(app: &mut AppState, ctx: &egui::Context) {
    let ringing: Vec<(CallId, String, String, Option<String>)> = app
        .model
        .ringing()
        .map(|c| {
            let account = c
                .account
                .and_then(|a| app.model.accounts.get(a.0 as usize))
                .map(|a| a.aor.trim_start_matches("sip:").to_string());
            (c.id, c.name.clone(), c.peer.clone(), account)
        })
        .collect();
    for (n, (id, name, peer, account)) in ringing.into_iter().enumerate() {
        let builder = ViewportBuilder::default()
            .with_title(format!("Incoming call from {name}"))
            .with_app_id("dialtone")
            .with_inner_size([380.0, 170.0])
            .with_resizable(false)
            .with_always_on_top()
            // Appear without taking keyboard focus from whatever the user is typing in.
            .with_active(false)
            .with_position([60.0 + 24.0 * n as f32, 60.0 + 24.0 * n as f32]);
        ctx.show_viewport_immediate(viewport_id(id), builder, |ui, class| {
            let mut body = |ui: &mut egui::Ui| {
                ui.horizontal(|ui| {
                    theme::avatar(ui, &name, 56.0);
                    ui.vertical(|ui| {
                        ui.label(RichText::new(format!("{} Incoming call", icon::CALL)).weak());
                        ui.heading(&name);
                        ui.label(RichText::new(uri_user(&peer)).small());
                        if let Some(a) = &account {
                            ui.label(RichText::new(format!("to {a}")).small().weak());
                        }
                    });
                });
                ui.add_space(8.0);
                ui.horizontal(|ui| {
                    let accept = theme::filled_button(ui, Some(icon::CALL), "Accept", theme::GREEN)
                        .on_hover_text("Answer the call (Enter)");
                    let decline =
                        theme::filled_button(ui, Some(icon::HANGUP), "Decline", theme::RED)
                            .on_hover_text("Decline the call (Esc)");
                    // Keys only count in the popup's own window (never while embedded in another).
                    let keys = class != egui::ViewportClass::EmbeddedWindow;
                    let enter =
                        keys && ui.input_mut(|i| i.consume_key(egui::Modifiers::NONE, Key::Enter));
                    let esc =
                        keys && ui.input_mut(|i| i.consume_key(egui::Modifiers::NONE, Key::Escape));
                    if accept.clicked() || enter {
                        let cmd = app.model.answer(id);
                        app.send_opt(cmd);
                    } else if decline.clicked() || esc {
                        let cmd = app.model.decline(id);
                        app.send_opt(cmd);
                    }
                });
            };
            if class == egui::ViewportClass::EmbeddedWindow {
                body(ui);
            } else {
                theme::central_panel(ui).show(ui, body);
            }
            if ui.input(|i| i.viewport().close_requested()) {
                // Closing the popup silences nothing: it declines, as a phone's red button does.
                let cmd = app.model.decline(id);
                app.send_opt(cmd);
            }
        });
    }
}
