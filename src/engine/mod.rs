//! The engine: SIP (and, with the audio issue, media) on its own tokio runtime thread, driven by
//! `Command`s and reporting `Event`s. `Engine::spawn` is the only way in; the UI or the headless
//! front-end never sees protocol state.

pub mod device_watch;
pub mod media;
pub mod media_clock;
pub mod media_net;
pub mod media_socket;
pub mod net;
pub mod reconfigure;
pub mod runtime;
pub mod sip;

use crate::api::{Command, Event};
use crate::store::settings::Settings;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Called (from the engine thread) after events were queued, e.g. `ctx.request_repaint()`.
pub type Waker = Arc<dyn Fn() + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Net(#[from] net::NetError),
    #[error("invalid settings: {0}")]
    Settings(String),
    #[error("cannot start the engine thread: {0}")]
    Thread(String),
}

/// A cloneable way to queue commands; never blocks.
#[derive(Clone)]
pub struct CommandSender(mpsc::UnboundedSender<Command>);

impl CommandSender {
    pub fn send(&self, cmd: Command) {
        if self.0.send(cmd).is_err() {
            tracing::debug!("engine already stopped; command dropped");
        }
    }
}

/// A running engine. Dropping it shuts the engine down cleanly (calls hung up, accounts
/// un-registered, bounded to a few seconds).
pub struct Engine {
    commands: mpsc::UnboundedSender<Command>,
    thread: Option<std::thread::JoinHandle<()>>,
    local: SocketAddr,
}

impl Engine {
    /// Binds the transports, starts the engine thread and returns its handle and event stream.
    pub fn spawn(
        settings: Settings,
        waker: Option<Waker>,
    ) -> Result<(Engine, mpsc::UnboundedReceiver<Event>), EngineError> {
        settings
            .validate()
            .map_err(|e| EngineError::Settings(e.to_string()))?;
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("dialtone-engine".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(EngineError::Thread(e.to_string())));
                        return;
                    }
                };
                rt.block_on(runtime::run(settings, cmd_rx, ev_tx, waker, ready_tx));
            })
            .map_err(|e| EngineError::Thread(e.to_string()))?;
        let local = ready_rx
            .recv()
            .map_err(|_| EngineError::Thread("the engine thread died while starting".into()))??;
        Ok((
            Engine {
                commands: cmd_tx,
                thread: Some(thread),
                local,
            },
            ev_rx,
        ))
    }

    /// Queues a command; never blocks.
    pub fn send(&self, cmd: Command) {
        if self.commands.send(cmd).is_err() {
            tracing::debug!("engine already stopped; command dropped");
        }
    }

    /// A sender for commands that can live on another thread than the handle (the UI's closure).
    pub fn commands(&self) -> CommandSender {
        CommandSender(self.commands.clone())
    }

    /// The SIP address others reach us on (advertised IP, bound port).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Asks for a clean stop and waits for the engine thread to finish.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let _ = self.commands.send(Command::Quit);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.stop();
    }
}
