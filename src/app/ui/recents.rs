//! The recents page: incoming, outgoing and missed calls with time and duration, call back with
//! one click. Opening the page marks missed calls as seen (the tab counts them until then).

use crate::app::AppState;
use crate::app::model::format_duration;
use crate::app::store_worker::StoreOp;
use crate::app::theme::{self, icon};
use crate::store::{Direction, HistoryEntry, Outcome};
use egui::{RichText, Ui};
use std::time::Duration;

pub fn show(app: &mut AppState, ui: &mut Ui) {
    ui.horizontal(|ui| {
        ui.heading("Recent calls");
        ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
            if !app.history.is_empty()
                && theme::icon_button(ui, icon::DELETE, "Clear history")
                    .on_hover_text("Forget every call in the list")
                    .clicked()
            {
                app.store.send(StoreOp::ClearHistory);
            }
        });
    });
    if app.history.is_empty() {
        ui.add_space(8.0);
        ui.label(RichText::new("No calls yet.").weak());
        return;
    }
    let now_ms = super::super::unix_ms();
    let mut dial = None;
    let mut delete = None;
    egui::ScrollArea::vertical()
        .auto_shrink([false, false])
        .show(ui, |ui| {
            for e in &app.history {
                let resp = ui.horizontal(|ui| {
                    let (ic, color, what) = kind(e);
                    ui.label(RichText::new(ic).color(color).size(18.0))
                        .on_hover_text(what);
                    ui.vertical(|ui| {
                        let name = RichText::new(&e.name).strong();
                        ui.label(if e.outcome == Outcome::Missed {
                            name.color(theme::RED)
                        } else {
                            name
                        });
                        let mut detail = format!("{what} · {}", when(e.started_at, now_ms));
                        if e.outcome == Outcome::Answered {
                            detail.push_str(&format!(
                                " · {}",
                                format_duration(Duration::from_secs_f64(e.duration_s.max(0.0)))
                            ));
                        }
                        ui.label(RichText::new(detail).small().weak());
                    });
                    ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                        if ui
                            .small_button(icon::DELETE)
                            .on_hover_text("Remove from the list")
                            .clicked()
                        {
                            delete = e.id;
                        }
                        let call = ui
                            .button(RichText::new(icon::CALL).color(theme::GREEN))
                            .on_hover_text(format!("Call back {} ({})", e.name, e.peer));
                        call.widget_info(|| {
                            egui::WidgetInfo::labeled(
                                egui::Role::Button,
                                true,
                                format!("Call back {}", e.name),
                            )
                        });
                        if call.clicked() {
                            dial = Some(e.peer.clone());
                        }
                    });
                });
                resp.response.on_hover_text(&e.peer);
                ui.separator();
            }
        });
    if let Some(id) = delete {
        app.store.send(StoreOp::DeleteCall(id));
    }
    if let Some(peer) = dial {
        app.dial(&peer);
    }
}

fn kind(e: &HistoryEntry) -> (&'static str, egui::Color32, &'static str) {
    match (e.direction, e.outcome) {
        (Direction::Incoming, Outcome::Missed) => (icon::MISSED, theme::RED, "Missed"),
        (Direction::Incoming, Outcome::Rejected) => (icon::MISSED, theme::AMBER, "Declined"),
        (Direction::Incoming, _) => (icon::INCOMING, theme::GREEN, "Incoming"),
        (Direction::Outgoing, Outcome::Answered) => (icon::OUTGOING, theme::GREEN, "Outgoing"),
        (Direction::Outgoing, Outcome::Cancelled) => {
            (icon::MISSED_OUTGOING, theme::GREY, "Cancelled")
        }
        (Direction::Outgoing, _) => (icon::MISSED_OUTGOING, theme::RED, "Not answered"),
    }
}

/// "14:05" today, "Yesterday 14:05", else "2026-11-20 14:05", in local time.
pub fn when(ms: i64, now_ms: i64) -> String {
    let (Some(t), Some(now)) = (local(ms), local(now_ms)) else {
        return String::new();
    };
    let hm = format!("{:02}:{:02}", t.tm_hour, t.tm_min);
    let day = |x: &libc::tm| (x.tm_year, x.tm_yday);
    if day(&t) == day(&now) {
        hm
    } else if local(now_ms - 86_400_000).is_some_and(|y| day(&y) == day(&t)) {
        format!("Yesterday {hm}")
    } else {
        format!(
            "{}-{:02}-{:02} {hm}",
            t.tm_year + 1900,
            t.tm_mon + 1,
            t.tm_mday
        )
    }
}

fn local(ms: i64) -> Option<libc::tm> {
    let secs = ms.div_euclid(1000) as libc::time_t;
    // SAFETY: localtime_r writes only into `out`, which we own; both pointers are valid.
    unsafe {
        let mut out: libc::tm = std::mem::zeroed();
        (!libc::localtime_r(&secs, &mut out).is_null()).then_some(out)
    }
}
