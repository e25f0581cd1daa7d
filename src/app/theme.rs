//! One look for every window: follows the system's light/dark preference, readable type, rounded
//! controls, green to accept and red to end. Small painted widgets (avatars, level meters, round
//! call buttons) live here so every window draws them the same way.

use egui::{
    Color32, CornerRadius, FontId, Response, RichText, Sense, Stroke, TextStyle, Theme, Ui, Vec2,
};

pub const GREEN: Color32 = Color32::from_rgb(0x22, 0xa5, 0x5a);
pub const RED: Color32 = Color32::from_rgb(0xe0, 0x3e, 0x3e);
pub const AMBER: Color32 = Color32::from_rgb(0xe0, 0x9b, 0x1a);
pub const ACCENT: Color32 = Color32::from_rgb(0x2f, 0x7c, 0xf6);
pub const GREY: Color32 = Color32::from_rgb(0x8a, 0x8f, 0x98);

/// Icons: glyphs of Google's Material Icons (Apache-2.0), subset into `assets/fonts/dialtone-icons.ttf`
/// by `scripts/subset-icons.sh` and embedded, so nothing is decoded or looked up at start-up.
pub mod icon {
    pub const CALL: &str = "\u{e0b0}";
    pub const HANGUP: &str = "\u{e0b1}";
    pub const MIC: &str = "\u{e029}";
    pub const MUTED: &str = "\u{e02b}";
    pub const HOLD: &str = "\u{e034}";
    pub const RESUME: &str = "\u{e037}";
    pub const KEYPAD: &str = "\u{e0bc}";
    pub const STATS: &str = "\u{e26b}";
    pub const STAR: &str = "\u{e838}";
    pub const STAR_EMPTY: &str = "\u{e83a}";
    pub const SETTINGS: &str = "\u{e8b8}";
    pub const SEARCH: &str = "\u{e8b6}";
    pub const ADD: &str = "\u{e7fe}";
    pub const EDIT: &str = "\u{e3c9}";
    pub const DELETE: &str = "\u{e872}";
    pub const INCOMING: &str = "\u{e0b5}";
    pub const OUTGOING: &str = "\u{e0b2}";
    pub const MISSED: &str = "\u{e0b4}";
    pub const MISSED_OUTGOING: &str = "\u{e0e4}";
    pub const DND: &str = "\u{e644}";
    pub const ECHO: &str = "\u{e028}";
    pub const SPEAKER: &str = "\u{e050}";
    pub const CONTACTS: &str = "\u{e0ba}";
    pub const RECENTS: &str = "\u{e889}";
    pub const PERSON: &str = "\u{e7fd}";
    pub const CLOSE: &str = "\u{e5cd}";
    pub const RETRY: &str = "\u{e5d5}";
    pub const IMPORT: &str = "\u{e2c6}";
    pub const EXPORT: &str = "\u{e2c4}";
    pub const BACKSPACE: &str = "\u{e14a}";
    pub const RING: &str = "\u{e0d1}";
    pub const TONE: &str = "\u{e1b8}";
}

/// The icon font, appended as a fallback to both font families so icons mix with text.
const ICON_FONT: &[u8] = include_bytes!("../../assets/fonts/dialtone-icons.ttf");

fn install_icon_font(ctx: &egui::Context) {
    let mut fonts = egui::FontDefinitions::default();
    fonts.font_data.insert(
        "dialtone-icons".into(),
        std::sync::Arc::new(egui::FontData::from_static(ICON_FONT)),
    );
    for family in [egui::FontFamily::Proportional, egui::FontFamily::Monospace] {
        fonts
            .families
            .entry(family)
            .or_default()
            .push("dialtone-icons".into());
    }
    ctx.set_fonts(fonts);
}

/// The colour every window is cleared to before egui paints (the app's
/// `clear_color`): the panels' own colour, so that a [`central_panel`] need not paint it again.
pub fn clear_color(visuals: &egui::Visuals) -> [f32; 4] {
    visuals.panel_fill.to_normalized_gamma_f32()
}

/// A window's central panel: egui's margins, without its fill, which would cover the whole window
/// in the colour [`clear_color`] already cleared it to. One full-window layer less for the
/// rasteriser on every frame (Mesa's llvmpipe, where there is no GPU, shades every pixel of it).
pub fn central_panel(ui: &Ui) -> egui::CentralPanel {
    let frame = egui::Frame::central_panel(ui.style()).fill(Color32::TRANSPARENT);
    egui::CentralPanel::default_margins().frame(frame)
}

/// Installs the style for both themes; egui picks by the system preference.
pub fn install(ctx: &egui::Context) {
    install_icon_font(ctx);
    ctx.options_mut(|o| o.theme_preference = egui::ThemePreference::System);
    for theme in [Theme::Dark, Theme::Light] {
        ctx.style_mut_of(theme, |style| {
            style.text_styles = [
                (TextStyle::Heading, FontId::proportional(21.0)),
                (TextStyle::Body, FontId::proportional(15.0)),
                (TextStyle::Button, FontId::proportional(15.0)),
                (TextStyle::Small, FontId::proportional(12.0)),
                (TextStyle::Monospace, FontId::monospace(14.0)),
            ]
            .into();
            style.spacing.item_spacing = Vec2::new(8.0, 6.0);
            // A phone's labels are not documents: clicks go to the controls around them.
            style.interaction.selectable_labels = false;
            style.spacing.button_padding = Vec2::new(10.0, 5.0);
            style.spacing.interact_size.y = 28.0;
            let v = &mut style.visuals;
            let r = CornerRadius::same(8);
            v.widgets.inactive.corner_radius = r;
            v.widgets.hovered.corner_radius = r;
            v.widgets.active.corner_radius = r;
            v.widgets.noninteractive.corner_radius = r;
            v.widgets.open.corner_radius = r;
            v.window_corner_radius = CornerRadius::same(12);
            v.selection.bg_fill = if theme == Theme::Dark {
                ACCENT.gamma_multiply(0.7)
            } else {
                ACCENT.gamma_multiply(0.35)
            };
            v.hyperlink_color = ACCENT;
        });
    }
}

/// A circle with the person's initials, in a colour picked from the name (same name, same colour).
pub fn avatar(ui: &mut Ui, name: &str, diameter: f32) -> Response {
    let (rect, resp) = ui.allocate_exact_size(Vec2::splat(diameter), Sense::hover());
    let hue = name
        .bytes()
        .fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(b as u32))
        % 360;
    let fill = egui::ecolor::Hsva::new(hue as f32 / 360.0, 0.45, 0.75, 1.0);
    ui.painter()
        .circle_filled(rect.center(), diameter / 2.0, Color32::from(fill));
    ui.painter().text(
        rect.center(),
        egui::Align2::CENTER_CENTER,
        initials(name),
        FontId::proportional(diameter * 0.4),
        Color32::WHITE,
    );
    resp
}

/// "Bob Smith" → "BS", "carol" → "C", "+1 555" → "#".
pub fn initials(name: &str) -> String {
    let letters: String = name
        .split_whitespace()
        .filter_map(|w| w.chars().find(|c| c.is_alphanumeric()))
        .filter(|c| c.is_alphabetic())
        .take(2)
        .flat_map(|c| c.to_uppercase())
        .collect();
    if letters.is_empty() {
        "#".into()
    } else {
        letters
    }
}

/// A meter's steps: 2 dB each over the 60 dB below full scale.
pub const METER_STEPS: u8 = 30;
/// One meter step, in dB.
pub const METER_STEP_DB: f32 = 2.0;
/// From this step up (-6 dBFS and louder) the meter shows amber: close to clipping.
const METER_HOT: u8 = 27;

/// The step a meter shows for a level: what it draws, and what decides whether a new level is
/// worth a frame (`app::wake`).
pub fn meter_step(dbfs: f32) -> u8 {
    let step = ((dbfs + 60.0) / METER_STEP_DB).floor();
    step.clamp(0.0, f32::from(METER_STEPS)) as u8
}

/// A horizontal level bar for -60..0 dBFS in [`METER_STEPS`] steps, labelled for screen readers.
pub fn level_meter(ui: &mut Ui, label: &str, dbfs: f32) {
    let step = meter_step(dbfs);
    let frac = f32::from(step) / f32::from(METER_STEPS);
    ui.horizontal(|ui| {
        ui.label(RichText::new(label).small());
        let bar = egui::ProgressBar::new(frac)
            .desired_height(8.0)
            .fill(if step >= METER_HOT { AMBER } else { GREEN });
        ui.add(bar)
            .on_hover_text(format!("{label}: {dbfs:.0} dBFS"));
    });
}

/// A round call-control button: a large icon over a small caption (the caption is the
/// control's accessible name), optionally filled (green/red) and toggled.
pub fn round_button(
    ui: &mut Ui,
    icon: &str,
    caption: &str,
    fill: Option<Color32>,
    on: bool,
    enabled: bool,
) -> Response {
    let size = Vec2::new(58.0, 62.0);
    let sense = if enabled {
        Sense::click()
    } else {
        Sense::hover()
    };
    let (rect, resp) = ui.allocate_exact_size(size, sense);
    let resp = resp.on_hover_cursor(egui::CursorIcon::PointingHand);
    resp.widget_info(|| egui::WidgetInfo::selected(egui::Role::Button, enabled, on, caption));
    if ui.is_rect_visible(rect) {
        let visuals = ui.style().interact_selectable(&resp, on);
        let center = egui::pos2(rect.center().x, rect.top() + 21.0);
        let bg = match fill {
            Some(c) if enabled => {
                if resp.hovered() {
                    c.gamma_multiply(1.15)
                } else {
                    c
                }
            }
            Some(c) => c.gamma_multiply(0.4),
            None if on => ui.visuals().selection.bg_fill,
            None => visuals.weak_bg_fill,
        };
        ui.painter().circle(center, 20.0, bg, Stroke::NONE);
        let fg = if fill.is_some() {
            Color32::WHITE
        } else if enabled {
            ui.visuals().strong_text_color()
        } else {
            ui.visuals().weak_text_color()
        };
        ui.painter().text(
            center,
            egui::Align2::CENTER_CENTER,
            icon,
            FontId::proportional(19.0),
            fg,
        );
        ui.painter().text(
            egui::pos2(rect.center().x, rect.bottom() - 8.0),
            egui::Align2::CENTER_CENTER,
            caption,
            FontId::proportional(11.5),
            ui.visuals().text_color(),
        );
    }
    resp
}

/// A wide filled button (Accept / Decline / Call) with an optional icon before the text; its
/// accessible name is the text alone.
pub fn filled_button(ui: &mut Ui, icon: Option<&str>, text: &str, fill: Color32) -> Response {
    let shown = match icon {
        Some(i) => format!("{i}  {text}"),
        None => text.to_string(),
    };
    let resp = ui.add(
        egui::Button::new(RichText::new(shown).color(Color32::WHITE).strong())
            .fill(fill)
            .min_size(Vec2::new(110.0, 36.0))
            .corner_radius(CornerRadius::same(18)),
    );
    resp.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Button, true, text));
    resp
}

/// A plain button with an icon before the text; its accessible name is the text alone.
pub fn icon_button(ui: &mut Ui, icon: &str, text: &str) -> Response {
    let resp = ui.button(format!("{icon}  {text}"));
    resp.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Button, true, text));
    resp
}

/// A tab: selectable, icon before the text, accessible name = the text.
pub fn tab(ui: &mut Ui, selected: bool, icon: &str, text: &str) -> Response {
    let resp = ui.selectable_label(
        selected,
        RichText::new(format!("{icon}  {text}")).size(15.0),
    );
    resp.widget_info(|| egui::WidgetInfo::selected(egui::Role::Tab, true, selected, text));
    resp
}

/// Gives a widget its screen-reader name (for text fields, whose hint text is not a label).
pub fn accessible_name(ui: &Ui, resp: &Response, name: &str) {
    ui.ctx()
        .accesskit_node_builder(resp.id, |b| b.set_label(name.to_string()));
}

/// A small coloured dot for states (registered, failed …).
pub fn status_dot(ui: &mut Ui, color: Color32) {
    let (rect, _) = ui.allocate_exact_size(Vec2::splat(10.0), Sense::hover());
    ui.painter().circle_filled(rect.center(), 5.0, color);
}

#[cfg(test)]
mod tests {
    use super::initials;

    #[test]
    fn initials_take_the_first_letters_of_two_words() {
        assert_eq!(initials("Bob Smith"), "BS");
        assert_eq!(initials("carol"), "C");
        assert_eq!(initials("Anna Maria Lopez"), "AM");
        assert_eq!(initials("+1 555 1234"), "#");
        assert_eq!(initials(""), "#");
    }
}
