//! Starting the desktop app: one instance per session (a second `dialtone sip:…` hands its link to
//! the running one), the engine first (it opens the audio devices once, while the window comes up),
//! then the eframe window on the same `egui::Context` the engine, the instance socket and the
//! notifications wake. SIGTERM/SIGINT close the window, so calls are hung up and accounts
//! un-registered on the way out.

use super::store_worker::StoreWorker;
use super::{AppInit, DialtoneApp, EngineLink};
use crate::desktop::assets::icon_png;
use crate::desktop::notify::Notifier;
use crate::desktop::single_instance::{self, Instance, Request};
use crate::echo::EchoService;
use crate::engine::{Engine, Waker};
use crate::store::settings::Settings;
use crate::store::{Database, Paths, Secrets};
use std::path::PathBuf;
use std::sync::Arc;

/// The settings the window starts with, and where they are saved.
pub struct GuiSettings {
    pub settings: Settings,
    /// The settings file; `None` when they came from the command line (kiosks, tests): then
    /// changes apply for the session and are not saved.
    pub path: Option<PathBuf>,
    /// Set when the file was broken and kept aside.
    pub notice: Option<String>,
}

/// What the command line asks of the window.
pub struct LaunchOptions {
    /// A `sip:`/`sips:`/`tel:` link (the positional argument): handed to a running instance if
    /// there is one.
    pub link: Option<String>,
    /// Free-form `--call` target (number, user name or URI), dialled at start.
    pub call: Option<String>,
}

/// Runs the app until its main window closes; returns the process exit code.
pub fn run(gui: GuiSettings, opts: LaunchOptions) -> i32 {
    let request = match Request::from_arg(opts.link.as_deref()) {
        Some(r) => r,
        None => {
            eprintln!(
                "dialtone: {:?} is not a sip:, sips: or tel: link",
                opts.link.unwrap_or_default()
            );
            return 2;
        }
    };
    let instance = match single_instance::default_dir()
        .and_then(|dir| single_instance::acquire(&dir, &request))
    {
        Ok(Instance::Secondary) => {
            eprintln!("dialtone: handed over to the Dialtone already running");
            return 0;
        }
        Ok(Instance::Primary(server)) => Some(server),
        Err(e) => {
            // Not fatal: this process runs alone, links just won't reach it from a second one.
            tracing::warn!("single instance off: {e}");
            None
        }
    };

    let GuiSettings {
        mut settings,
        path: settings_path,
        notice,
    } = gui;
    let mut notices: Vec<String> = notice.into_iter().collect();
    let paths = Paths::from_env();
    // Passwords live in the keyring (or the private file) when the settings come from the file.
    let secrets = match (&paths, &settings_path) {
        (Some(p), Some(_)) => Some(Secrets::open(p)),
        _ => None,
    };
    if let Some(secrets) = &secrets {
        for a in settings
            .accounts
            .iter_mut()
            .filter(|a| a.password.is_empty())
        {
            match secrets.get(&a.uri) {
                Ok(Some(pw)) => a.password = pw,
                Ok(None) => {}
                Err(e) => notices.push(format!("cannot read the password of {}: {e}", a.uri)),
            }
        }
    }
    let db = match &paths {
        Some(p) => match Database::open(&p.database_file()) {
            Ok(opened) => {
                notices.extend(opened.recovered);
                Some(opened.db)
            }
            Err(e) => {
                notices.push(format!("contacts and history are unavailable: {e}"));
                None
            }
        },
        None => {
            notices.push("no home directory: contacts and history are not kept".into());
            None
        }
    };
    // The built-in echo test: a second engine on loopback, answering with what it hears.
    let echo = match EchoService::spawn() {
        Ok(e) => Some(e),
        Err(e) => {
            notices.push(format!("the echo test is unavailable: {e}"));
            None
        }
    };
    let echo_uri = echo.as_ref().map(EchoService::uri);

    let ctx = egui::Context::default();
    // What eframe does for a context it creates itself: real OS windows for viewports, and
    // multi-pass layout.
    ctx.set_embed_viewports(false);
    ctx.options_mut(|o| o.max_passes = std::num::NonZeroUsize::new(2).unwrap_or(o.max_passes));
    let waker_ctx = ctx.clone();
    // The main window's: from another thread `request_repaint` would wake whichever viewport
    // the UI thread happens to be painting.
    let waker: Waker = Arc::new(move || waker_ctx.request_repaint_of(egui::ViewportId::ROOT));
    // The engine's events wake the windows through `wake::forward`, not through a waker.
    let (engine, events) = match Engine::spawn(settings.clone(), None) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("dialtone: cannot start the engine: {e}");
            return 1;
        }
    };
    let events = match super::wake::forward(ctx.clone(), events) {
        Ok(rx) => rx,
        Err(e) => {
            eprintln!("dialtone: cannot start the UI's event thread: {e}");
            return 1;
        }
    };
    let send = engine.commands();
    // The echo service is dropped after the engine (its calls are hung up first).
    let link = EngineLink::new(move |cmd| send.send(cmd), events)
        .keep(engine)
        .keep(echo);
    let secrets_note = secrets.as_ref().map(|s| s.backend().describe());
    let store = StoreWorker::spawn(db, settings_path.clone(), secrets, waker.clone());
    if let Some(server) = &instance {
        server.set_waker(waker.clone());
    }
    let notifier = Notifier::new();
    notifier.set_waker(waker);
    let force_quit = Arc::new(std::sync::atomic::AtomicBool::new(false));
    close_on_signals(&ctx, force_quit.clone());

    let icon = eframe::icon_data::from_png_bytes(icon_png(256)).ok();
    let mut viewport = egui::ViewportBuilder::default()
        .with_title("Dialtone")
        .with_app_id("dialtone")
        .with_inner_size([460.0, 680.0])
        .with_min_inner_size([340.0, 420.0]);
    if let Some(icon) = icon {
        viewport = viewport.with_icon(icon);
    }
    let options = eframe::NativeOptions {
        viewport,
        ..Default::default()
    };
    let dial = match request {
        Request::Dial(uri) => Some(uri),
        Request::Raise => opts.call,
    };
    let init = AppInit {
        link,
        settings,
        store,
        notices,
        secrets_note,
        settings_path,
        echo_uri,
        dial,
        notifier: Some(notifier),
        instance,
        force_quit: Some(force_quit),
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

/// SIGTERM (session logout) and SIGINT (Ctrl-C in a terminal) close the main window, which
/// drops the engine cleanly.
fn close_on_signals(ctx: &egui::Context, force_quit: Arc<std::sync::atomic::AtomicBool>) {
    let ctx = ctx.clone();
    let spawned = std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                use tokio::signal::unix::{SignalKind, signal};
                let (Ok(mut term), Ok(mut int)) = (
                    signal(SignalKind::terminate()),
                    signal(SignalKind::interrupt()),
                ) else {
                    return;
                };
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            });
            tracing::info!("signal received: closing");
            force_quit.store(true, std::sync::atomic::Ordering::Relaxed);
            ctx.send_viewport_cmd_to(egui::ViewportId::ROOT, egui::ViewportCommand::Close);
            ctx.request_repaint_of(egui::ViewportId::ROOT);
        });
    if let Err(e) = spawned {
        tracing::warn!("cannot watch signals: {e}");
    }
}
