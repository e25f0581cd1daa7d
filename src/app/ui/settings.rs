//! The settings page: accounts (add / edit / remove, transport, register on/off, SRTP), audio
//! devices (input, output, ring) with a live input meter and a test tone, echo cancellation,
//! auto-answer, do-not-disturb, and where things are stored. Switches apply at once (the engine
//! is reconfigured live and the file saved); an account is applied when its editor is saved.

use crate::api::Command;
use crate::app::model::AccountState;
use crate::app::theme::{self, icon};
use crate::app::{AccountDraft, AppState};
use crate::store::settings::{Account, MediaEncryption, Transport};
use egui::{RichText, Ui};

pub fn show(app: &mut AppState, ui: &mut Ui) {
    if app.account_draft.is_some() {
        account_editor(app, ui);
        return;
    }
    egui::ScrollArea::vertical()
        .auto_shrink([false, false])
        .show(ui, |ui| {
            accounts(app, ui);
            ui.add_space(10.0);
            audio(app, ui);
            ui.add_space(10.0);
            calls(app, ui);
            ui.add_space(10.0);
            storage(app, ui);
        });
}

fn section(ui: &mut Ui, title: &str) {
    ui.label(RichText::new(title).heading().size(17.0));
    ui.separator();
}

fn accounts(app: &mut AppState, ui: &mut Ui) {
    section(ui, "Accounts");
    let mut edit = None;
    let mut remove = None;
    for (i, a) in app.settings.accounts.iter().enumerate() {
        ui.horizontal(|ui| {
            let state = app.model.accounts.get(i).map(|s| &s.state);
            let (color, text) = match state {
                Some(AccountState::Registered) => (theme::GREEN, "registered"),
                Some(AccountState::Registering) => (theme::AMBER, "registering"),
                Some(AccountState::Failed { .. }) => (theme::RED, "failed"),
                _ => (theme::GREY, "offline"),
            };
            theme::status_dot(ui, color);
            ui.label(RichText::new(a.uri.trim_start_matches("sip:")).strong());
            ui.label(RichText::new(text).small().color(color));
            ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                let label = format!("Remove {}", a.uri);
                let r = ui.small_button(icon::DELETE).on_hover_text(&label);
                r.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Button, true, &label));
                if r.clicked() {
                    remove = Some(i);
                }
                let label = format!("Edit {}", a.uri);
                let r = ui.small_button(icon::EDIT).on_hover_text(&label);
                r.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Button, true, &label));
                if r.clicked() {
                    edit = Some(i);
                }
            });
        });
    }
    if app.settings.accounts.is_empty() {
        ui.label(
            RichText::new("No account. Direct sip: calls and the echo test work without one.")
                .weak(),
        );
    }
    if theme::icon_button(ui, icon::ADD, "Add account").clicked() {
        app.account_draft = Some(AccountDraft {
            index: None,
            account: Account::default(),
            password: String::new(),
        });
    }
    if let Some(i) = edit {
        let account = app.settings.accounts[i].clone();
        app.account_draft = Some(AccountDraft {
            index: Some(i),
            password: account.password.clone(),
            account,
        });
    }
    if let Some(i) = remove {
        let mut s = app.settings.clone();
        let gone = s.accounts.remove(i);
        app.apply_settings(s, vec![(gone.uri, String::new())]);
    }
}

fn account_editor(app: &mut AppState, ui: &mut Ui) {
    let Some(d) = app.account_draft.as_mut() else {
        return;
    };
    ui.heading(if d.index.is_some() {
        "Edit account"
    } else {
        "New account"
    });
    ui.add_space(4.0);
    let a = &mut d.account;
    egui::Grid::new("account-editor")
        .num_columns(2)
        .spacing([8.0, 6.0])
        .show(ui, |ui| {
            let field = |ui: &mut Ui, name: &str, value: &mut String, hint: &str, secret| {
                let label = ui.label(name);
                ui.add(
                    egui::TextEdit::singleline(value)
                        .hint_text(hint)
                        .password(secret)
                        .desired_width(230.0),
                )
                .labelled_by(label.id);
                ui.end_row();
            };
            field(
                ui,
                "SIP address",
                &mut a.uri,
                "sip:alice@example.com",
                false,
            );
            field(ui, "Password", &mut d.password, "", true);
            field(ui, "Display name", &mut a.display_name, "Alice", false);
            field(
                ui,
                "Auth user",
                &mut a.auth_user,
                "if not the address's user",
                false,
            );
            field(
                ui,
                "Registrar",
                &mut a.registrar,
                "default: the address's host",
                false,
            );
            field(
                ui,
                "Outbound proxy",
                &mut a.outbound_proxy,
                "optional",
                false,
            );
            ui.label("Transport");
            let r = egui::ComboBox::from_id_salt("transport")
                .selected_text(format!("{:?}", a.transport).to_uppercase())
                .show_ui(ui, |ui| {
                    for t in [Transport::Udp, Transport::Tcp, Transport::Tls] {
                        ui.selectable_value(&mut a.transport, t, format!("{t:?}").to_uppercase());
                    }
                });
            theme::accessible_name(ui, &r.response, "Transport");
            ui.end_row();
            ui.label("Encryption");
            let r = egui::ComboBox::from_id_salt("srtp")
                .selected_text(srtp_text(a.media_encryption))
                .show_ui(ui, |ui| {
                    for m in [
                        MediaEncryption::None,
                        MediaEncryption::Sdes,
                        MediaEncryption::SdesMandatory,
                    ] {
                        ui.selectable_value(&mut a.media_encryption, m, srtp_text(m));
                    }
                });
            theme::accessible_name(ui, &r.response, "Encryption");
            ui.end_row();
            ui.label("");
            ui.checkbox(&mut a.register, "Register (receive calls)");
            ui.end_row();
        });
    if a.transport == Transport::Tls {
        ui.checkbox(&mut a.tls_verify, "Verify the server's certificate");
    }
    let where_passwords = match (&app.settings_path, &app.secrets_note) {
        (None, _) => "The password is used for this session only (settings from the command line).",
        (Some(_), Some(note)) => note.as_str(),
        (Some(_), None) => "The password is saved in the settings file (readable only by you).",
    };
    ui.label(RichText::new(where_passwords).small().weak());
    let uri = a.uri.trim().to_string();
    let valid = crate::engine::sip::uri::Uri::parse(&uri).is_ok()
        && (uri.starts_with("sip:") || uri.starts_with("sips:"));
    ui.add_space(8.0);
    let mut close = false;
    let mut save = None;
    ui.horizontal(|ui| {
        if ui
            .add_enabled(valid, egui::Button::new("Save"))
            .on_disabled_hover_text("The SIP address must look like sip:user@host")
            .clicked()
        {
            save = Some(d.clone());
        }
        if ui.button("Cancel").clicked() {
            close = true;
        }
    });
    if let Some(d) = save {
        let mut s = app.settings.clone();
        let mut account = d.account;
        account.uri = account.uri.trim().to_string();
        account.password = d.password.clone();
        let mut passwords = vec![(account.uri.clone(), d.password)];
        match d.index {
            Some(i) if i < s.accounts.len() => {
                if s.accounts[i].uri != account.uri {
                    // The old address's password goes with it.
                    passwords.push((s.accounts[i].uri.clone(), String::new()));
                }
                s.accounts[i] = account;
            }
            _ => s.accounts.push(account),
        }
        app.apply_settings(s, passwords);
        close = true;
    }
    if close {
        app.account_draft = None;
    }
}

fn srtp_text(m: MediaEncryption) -> &'static str {
    match m {
        MediaEncryption::None => "None (RTP)",
        MediaEncryption::Sdes => "SRTP when offered (SDES)",
        MediaEncryption::SdesMandatory => "SRTP required (SDES)",
    }
}

/// A device choice: `default`, every `device:NAME` the engine listed, and the current value
/// (which may be a synthetic source such as `tone:440`).
fn device_combo(
    ui: &mut Ui,
    label: &str,
    current: &str,
    devices: &[String],
    extra_first: Option<(&str, &str)>,
) -> Option<String> {
    let mut choice = None;
    let shown = match extra_first {
        Some((value, text)) if current == value => text.to_string(),
        _ if current == "default" => "System default".to_string(),
        _ => current.trim_start_matches("device:").to_string(),
    };
    ui.label(label);
    let r = egui::ComboBox::from_id_salt(label)
        .selected_text(shown)
        .width(230.0)
        .show_ui(ui, |ui| {
            if let Some((value, text)) = extra_first
                && ui.selectable_label(current == value, text).clicked()
            {
                choice = Some(value.to_string());
            }
            if ui
                .selectable_label(current == "default", "System default")
                .clicked()
            {
                choice = Some("default".into());
            }
            for d in devices {
                let spec = format!("device:{d}");
                if ui.selectable_label(current == spec, d).clicked() {
                    choice = Some(spec);
                }
            }
        });
    theme::accessible_name(ui, &r.response, label);
    ui.end_row();
    choice.filter(|c| c != current)
}

fn audio(app: &mut AppState, ui: &mut Ui) {
    section(ui, "Audio");
    let mut s = app.settings.clone();
    let mut changed = false;
    egui::Grid::new("audio")
        .num_columns(2)
        .spacing([8.0, 6.0])
        .show(ui, |ui| {
            if let Some(c) = device_combo(ui, "Microphone", &s.audio_in, &app.model.inputs, None) {
                s.audio_in = c;
                changed = true;
            }
            if let Some(c) = device_combo(ui, "Speaker", &s.audio_out, &app.model.outputs, None) {
                s.audio_out = c;
                changed = true;
            }
            if let Some(c) = device_combo(
                ui,
                "Ring on",
                &s.ring_out,
                &app.model.outputs,
                Some(("", "Same as the speaker")),
            ) {
                s.ring_out = c;
                changed = true;
            }
        });
    ui.add_space(4.0);
    theme::level_meter(
        ui,
        "Microphone level",
        app.model.input_dbfs.unwrap_or(-120.0),
    );
    ui.horizontal(|ui| {
        if theme::icon_button(ui, icon::TONE, "Play test tone")
            .on_hover_text("One second of 440 Hz through the speaker")
            .clicked()
        {
            app.send(Command::PlayTestTone { ring: false });
        }
        if !s.ring_out.is_empty()
            && theme::icon_button(ui, icon::RING, "Test ring device")
                .on_hover_text("One second of 440 Hz through the ring device")
                .clicked()
        {
            app.send(Command::PlayTestTone { ring: true });
        }
        if theme::icon_button(ui, icon::RETRY, "Refresh devices")
            .on_hover_text("List the audio devices again (after plugging one in)")
            .clicked()
        {
            app.send(Command::ListDevices);
        }
    });
    if ui
        .checkbox(
            &mut s.audio_processing,
            "Echo cancellation, noise suppression and gain control",
        )
        .changed()
    {
        changed = true;
    }
    if let Some(d) = &app.model.device_stats {
        ui.label(
            RichText::new(format!(
                "Devices opened since start: microphone {}, speaker {}{} — every call shares them.",
                d.input_opens,
                d.output_opens,
                if d.ring_output.is_empty() {
                    String::new()
                } else {
                    format!(", ring device {}", d.ring_opens)
                }
            ))
            .small()
            .weak(),
        );
    }
    if changed {
        app.apply_settings(s, Vec::new());
    }
}

fn calls(app: &mut AppState, ui: &mut Ui) {
    section(ui, "Calls");
    let mut s = app.settings.clone();
    let a = ui
        .checkbox(&mut s.auto_answer, "Answer incoming calls automatically")
        .changed();
    let d = ui
        .checkbox(
            &mut s.do_not_disturb,
            format!("{}  Do not disturb (refuse calls as busy)", icon::DND),
        )
        .changed();
    if a || d {
        app.apply_settings(s, Vec::new());
    }
}

fn storage(app: &mut AppState, ui: &mut Ui) {
    section(ui, "Storage");
    let file = match &app.settings_path {
        Some(p) => format!("Settings: {}", p.display()),
        None => "Settings come from the command line for this session and are not saved.".into(),
    };
    ui.label(RichText::new(file).small());
    if let Some(n) = &app.secrets_note {
        ui.label(RichText::new(n).small());
    }
    if let Some(p) = crate::store::Paths::from_env() {
        ui.label(
            RichText::new(format!(
                "Contacts and history: {}",
                p.database_file().display()
            ))
            .small(),
        );
    }
}

/// Keeps the settings page's live parts fed: the input meter runs only while it is open.
pub fn monitor_wanted(app: &AppState) -> bool {
    app.page == crate::app::Page::Settings
}
