//! Starting the desktop app: the engine first (it opens the audio devices once, in parallel with
//! the window coming up), then the eframe window on the same `egui::Context` the engine wakes.

use super::{AppInit, DialtoneApp, EngineLink};
use crate::engine::{Engine, Waker};
use crate::store::settings::Settings;
use std::sync::Arc;

/// Runs the app until its main window closes; returns the process exit code.
pub fn run(settings: Settings, dial: Option<String>) -> i32 {
    let ctx = egui::Context::default();
    // What eframe does for a context it creates itself: real OS windows for viewports, and
    // multi-pass layout.
    ctx.set_embed_viewports(false);
    ctx.options_mut(|o| o.max_passes = std::num::NonZeroUsize::new(2).unwrap_or(o.max_passes));
    let waker_ctx = ctx.clone();
    let waker: Waker = Arc::new(move || waker_ctx.request_repaint());
    let accounts = settings
        .accounts
        .iter()
        .map(|a| (a.uri.clone(), a.register))
        .collect();
    let (engine, events) = match Engine::spawn(settings, Some(waker)) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("dialtone: cannot start the engine: {e}");
            return 1;
        }
    };
    let send = engine.commands();
    let link = EngineLink::new(move |cmd| send.send(cmd), events).keep(engine);
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("Dialtone")
            .with_app_id("dialtone")
            .with_inner_size([420.0, 640.0])
            .with_min_inner_size([340.0, 420.0]),
        ..Default::default()
    };
    let init = AppInit {
        link,
        accounts,
        echo_uri: None,
        dial,
    };
    let result = eframe::run_native_ext(
        "Dialtone",
        options,
        Some(ctx),
        Box::new(move |cc| Ok(Box::new(DialtoneApp::new(&cc.egui_ctx, init)))),
    );
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("dialtone: cannot open the window: {e}");
            1
        }
    }
}
