//! The twelve-key pad, shared by the main window (dialling) and call windows (DTMF).

use egui::{RichText, Ui, Vec2};

const KEYS: [(char, &str); 12] = [
    ('1', ""),
    ('2', "ABC"),
    ('3', "DEF"),
    ('4', "GHI"),
    ('5', "JKL"),
    ('6', "MNO"),
    ('7', "PQRS"),
    ('8', "TUV"),
    ('9', "WXYZ"),
    ('*', ""),
    ('0', "+"),
    ('#', ""),
];

/// Draws the pad; returns the key pressed this frame, if any. Each key's accessible name is
/// "Key N" (tests and screen readers find it by that).
pub fn show(ui: &mut Ui, key_size: f32) -> Option<char> {
    let mut pressed = None;
    let width = 3.0 * key_size * 1.3 + 2.0 * 8.0;
    ui.horizontal(|ui| {
        ui.add_space(((ui.available_width() - width) / 2.0).max(0.0));
        egui::Grid::new(ui.next_auto_id())
            .spacing(Vec2::splat(8.0))
            .show(ui, |ui| {
                for (i, (digit, letters)) in KEYS.iter().enumerate() {
                    let text = if letters.is_empty() {
                        RichText::new(format!("{digit}\n ")).size(18.0)
                    } else {
                        RichText::new(format!("{digit}\n{letters}")).size(18.0)
                    };
                    let resp = ui
                        .add(egui::Button::new(text).min_size(Vec2::new(key_size * 1.3, key_size)))
                        .on_hover_text(format!("Key {digit}"));
                    resp.widget_info(|| {
                        egui::WidgetInfo::labeled(egui::Role::Button, true, format!("Key {digit}"))
                    });
                    if resp.clicked() {
                        pressed = Some(*digit);
                    }
                    if i % 3 == 2 {
                        ui.end_row();
                    }
                }
            });
    });
    pressed
}
