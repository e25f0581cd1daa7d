//! The contacts page: search as you type, click a contact to call it (picking one of several
//! numbers), favourites on top, add / edit / delete, vCard import and export (a path, or a .vcf
//! file dropped on the window), and the built-in "Echo test" entry on top.

use crate::app::AppState;
use crate::app::store_worker::StoreOp;
use crate::app::theme::{self, icon};
use crate::store::{Contact, ContactNumber};
use egui::{RichText, Ui};

pub fn show(app: &mut AppState, ui: &mut Ui) {
    if app.editing.is_some() {
        editor(app, ui);
        return;
    }
    ui.horizontal(|ui| {
        let resp = ui.add(
            egui::TextEdit::singleline(&mut app.search)
                .hint_text(format!("{}  Search contacts", icon::SEARCH))
                .desired_width((ui.available_width() - 140.0).max(100.0)),
        );
        theme::accessible_name(ui, &resp, "Search contacts");
        if ui.input_mut(|i| i.consume_shortcut(&SEARCH_KEY)) {
            resp.request_focus();
        }
        resp.on_hover_text(format!(
            "Filter by name, number or address ({})",
            ui.ctx().format_shortcut(&SEARCH_KEY)
        ));
        if theme::icon_button(ui, icon::ADD, "Add contact").clicked() {
            app.editing = Some(Contact {
                numbers: vec![ContactNumber::new("", "")],
                ..Contact::default()
            });
        }
    });
    ui.add_space(4.0);
    let mut dial: Option<String> = None;
    let mut edit = None;
    let mut pick = app.picking;
    egui::ScrollArea::vertical()
        .auto_shrink([false, false])
        .max_height((ui.available_height() - 70.0).max(120.0))
        .show(ui, |ui| {
            if let Some(uri) = &app.echo_uri
                && (app.search.is_empty() || "echo test".contains(&app.search.to_lowercase()))
                && row(
                    ui,
                    "Echo test",
                    "Hear your own microphone (built in)",
                    false,
                    true,
                )
                .call
                .clicked()
            {
                dial = Some(uri.clone());
            }
            let query = app.search.as_str();
            for c in app.contacts.iter().filter(|c| c.matches(query)) {
                let first = c.numbers.first().map(|n| n.uri.as_str()).unwrap_or("");
                let detail = match c.numbers.len() {
                    0 | 1 => first.to_string(),
                    n => format!("{first} (+{} more)", n - 1),
                };
                let clicks = row(ui, &c.name, &detail, c.favourite, false);
                if clicks.call.clicked() {
                    match c.numbers.as_slice() {
                        [] => {}
                        [one] => dial = Some(one.uri.clone()),
                        _ => pick = if pick == c.id { None } else { c.id },
                    }
                }
                if clicks.edit || clicks.call.secondary_clicked() {
                    edit = Some(c.clone());
                }
                if pick.is_some() && pick == c.id {
                    ui.indent(("numbers", c.id), |ui| {
                        for n in &c.numbers {
                            let label = if n.label.is_empty() {
                                n.uri.clone()
                            } else {
                                format!("{}: {}", n.label, n.uri)
                            };
                            if theme::icon_button(ui, icon::CALL, &label).clicked() {
                                dial = Some(n.uri.clone());
                            }
                        }
                    });
                }
            }
            if app.contacts.is_empty() {
                ui.add_space(8.0);
                ui.label(
                    RichText::new(
                        "No contacts yet: add one, or import a vCard (.vcf) file below \
                         (dropping one on the window works too).",
                    )
                    .weak(),
                );
            }
        });
    app.picking = pick;
    if let Some(c) = edit {
        app.editing = Some(c);
    }
    if let Some(uri) = dial {
        app.picking = None;
        app.dial(&uri);
    }
    ui.separator();
    vcard_row(app, ui);
}

const SEARCH_KEY: egui::KeyboardShortcut =
    egui::KeyboardShortcut::new(egui::Modifiers::COMMAND, egui::Key::F);

/// What the user did with a contact line.
struct RowClicks {
    /// The line itself (call); its accessible name is "Call NAME".
    call: egui::Response,
    /// The pencil at its end (edit), for real contacts.
    edit: bool,
}

/// One contact line: avatar, name (star for favourites), detail, and a pencil to edit. The line is
/// allocated first so the pencil, drawn over it, gets its own clicks.
fn row(ui: &mut Ui, name: &str, detail: &str, favourite: bool, builtin: bool) -> RowClicks {
    let (rect, call) =
        ui.allocate_exact_size(egui::vec2(ui.available_width(), 44.0), egui::Sense::click());
    let call = call
        .on_hover_cursor(egui::CursorIcon::PointingHand)
        .on_hover_text(format!("Call {name}"));
    call.widget_info(|| {
        egui::WidgetInfo::labeled(egui::Role::Button, true, format!("Call {name}"))
    });
    if call.hovered() {
        ui.painter().rect_filled(
            rect,
            6,
            ui.visuals()
                .widgets
                .hovered
                .weak_bg_fill
                .gamma_multiply(0.5),
        );
    }
    let mut edit = false;
    let mut line = ui.new_child(
        egui::UiBuilder::new()
            .max_rect(rect.shrink2(egui::vec2(2.0, 0.0)))
            .layout(egui::Layout::left_to_right(egui::Align::Center)),
    );
    let ui = &mut line;
    if builtin {
        let (r, _) = ui.allocate_exact_size(egui::vec2(34.0, 34.0), egui::Sense::hover());
        ui.painter().circle_filled(r.center(), 17.0, theme::ACCENT);
        ui.painter().text(
            r.center(),
            egui::Align2::CENTER_CENTER,
            icon::ECHO,
            egui::FontId::proportional(18.0),
            egui::Color32::WHITE,
        );
    } else {
        theme::avatar(ui, name, 34.0);
    }
    ui.vertical(|ui| {
        ui.horizontal(|ui| {
            ui.label(RichText::new(name).strong());
            if favourite {
                ui.label(RichText::new(icon::STAR).color(theme::AMBER));
            }
        });
        ui.label(RichText::new(detail).small().weak());
    });
    ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
        ui.label(RichText::new(icon::CALL).color(theme::GREEN).size(18.0));
        if !builtin {
            let label = format!("Edit {name}");
            let r = ui
                .add(egui::Button::new(RichText::new(icon::EDIT).weak()).frame(false))
                .on_hover_text(&label);
            r.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Button, true, &label));
            edit = r.clicked();
        }
    });
    RowClicks { call, edit }
}

fn vcard_row(app: &mut AppState, ui: &mut Ui) {
    ui.horizontal(|ui| {
        let resp = ui.add(
            egui::TextEdit::singleline(&mut app.vcard_path)
                .desired_width((ui.available_width() - 190.0).max(80.0)),
        );
        theme::accessible_name(ui, &resp, "vCard file");
        resp.on_hover_text("The .vcf file to import from or export to");
        if theme::icon_button(ui, icon::IMPORT, "Import")
            .on_hover_text("Add the contacts of this vCard file")
            .clicked()
        {
            app.store
                .send(StoreOp::ImportVcf(app.vcard_path.trim().into()));
        }
        if theme::icon_button(ui, icon::EXPORT, "Export")
            .on_hover_text("Write every contact to this vCard file")
            .clicked()
        {
            app.store
                .send(StoreOp::ExportVcf(app.vcard_path.trim().into()));
        }
    });
}

fn editor(app: &mut AppState, ui: &mut Ui) {
    let Some(c) = app.editing.as_mut() else {
        return;
    };
    ui.heading(if c.id.is_some() {
        "Edit contact"
    } else {
        "New contact"
    });
    ui.add_space(4.0);
    egui::Grid::new("contact-editor")
        .num_columns(2)
        .spacing([8.0, 6.0])
        .show(ui, |ui| {
            ui.label("Name");
            let r = ui.text_edit_singleline(&mut c.name);
            theme::accessible_name(ui, &r, "Contact name");
            ui.end_row();
            ui.label("");
            ui.checkbox(&mut c.favourite, "Favourite (listed first)");
            ui.end_row();
        });
    ui.add_space(4.0);
    ui.label(RichText::new("Numbers and addresses").strong());
    let mut remove = None;
    for (i, n) in c.numbers.iter_mut().enumerate() {
        ui.horizontal(|ui| {
            let r = ui.add(
                egui::TextEdit::singleline(&mut n.label)
                    .hint_text("label")
                    .desired_width(70.0),
            );
            theme::accessible_name(ui, &r, &format!("Label {}", i + 1));
            let r = ui.add(
                egui::TextEdit::singleline(&mut n.uri)
                    .hint_text("number or sip: address")
                    .desired_width((ui.available_width() - 40.0).max(80.0)),
            );
            theme::accessible_name(ui, &r, &format!("Number {}", i + 1));
            if ui
                .small_button(icon::DELETE)
                .on_hover_text("Remove this number")
                .clicked()
            {
                remove = Some(i);
            }
        });
    }
    if let Some(i) = remove {
        c.numbers.remove(i);
    }
    if theme::icon_button(ui, icon::ADD, "Add number").clicked() {
        c.numbers.push(ContactNumber::new("", ""));
    }
    ui.add_space(4.0);
    ui.label("Note");
    let r = ui.add(egui::TextEdit::multiline(&mut c.note).desired_rows(2));
    theme::accessible_name(ui, &r, "Note");
    ui.add_space(8.0);
    let valid = !c.name.trim().is_empty() || c.numbers.iter().any(|n| !n.uri.trim().is_empty());
    let mut close = false;
    ui.horizontal(|ui| {
        if ui
            .add_enabled(valid, egui::Button::new("Save"))
            .on_disabled_hover_text("A contact needs a name or a number")
            .clicked()
        {
            let mut c = c.clone();
            c.numbers.retain(|n| !n.uri.trim().is_empty());
            for n in &mut c.numbers {
                n.uri = n.uri.trim().to_string();
                n.label = n.label.trim().to_string();
            }
            c.name = c.name.trim().to_string();
            if c.name.is_empty() {
                c.name = c.numbers.first().map(|n| n.uri.clone()).unwrap_or_default();
            }
            app.store.send(StoreOp::SaveContact(c));
            close = true;
        }
        if ui.button("Cancel").clicked() {
            close = true;
        }
        if let Some(id) = c.id
            && theme::icon_button(ui, icon::DELETE, "Delete contact").clicked()
        {
            app.store.send(StoreOp::DeleteContact(id));
            close = true;
        }
    });
    if close {
        app.editing = None;
    }
}
