//! The I/O side of hot-plug (the decisions are `media::hotplug`, sans-IO).
//!
//! - Watching: a thread (`dialtone-devices`) looks at the system's audio devices every
//!   [`PERIOD`] and sends a snapshot to the I/O loop only when something changed (the first
//!   look too, as the baseline). An idle engine is not woken at all while nothing changes; each
//!   look is a short connection to the sound server (cpal's PulseAudio host connects per
//!   enumeration): about 1 ms of CPU.
//!   cpal 0.18 has no device-change notification on Linux, hence the polling. It starts once a
//!   real device (`default`, `device:NAME`) is in use and stops with the engine.
//! - Re-opening: opening a device takes a while (a stream to build and start), so it runs on
//!   tokio's blocking pool and the opened source or sink comes back to the I/O loop, which swaps
//!   it in under every call. When the device asked for cannot be opened, the default is tried,
//!   then a stand-in (silence, the null sink): a call never loses its media.

use super::media::devices::{
    AudioSink, AudioSource, DeviceError, InputSpec, OutputSpec, open_sink, open_source,
};
use super::media::engine::MediaEngine;
use super::media::hotplug::{Reopen, Snapshot, Target};
use crate::api::Event;
use std::time::Duration;
use tokio::sync::mpsc;

/// How often the devices are looked at.
pub const PERIOD: Duration = Duration::from_secs(2);

/// What comes back to the I/O loop.
pub enum WatchEvent {
    /// The devices changed (or the first look).
    Snapshot(Snapshot),
    /// A re-open finished: what is open now, and what failed on the way.
    Input {
        ticket: u64,
        spec: InputSpec,
        source: Box<dyn AudioSource>,
        errors: Vec<DeviceError>,
    },
    Output {
        ticket: u64,
        spec: OutputSpec,
        sink: Box<dyn AudioSink>,
        errors: Vec<DeviceError>,
    },
}

pub struct DeviceWatch {
    tx: mpsc::UnboundedSender<WatchEvent>,
    rx: mpsc::UnboundedReceiver<WatchEvent>,
    /// Dropping it stops the watching thread (it waits on the other end between looks).
    stop: Option<std::sync::mpsc::Sender<()>>,
}

impl Default for DeviceWatch {
    fn default() -> Self {
        DeviceWatch::new()
    }
}

impl DeviceWatch {
    pub fn new() -> DeviceWatch {
        let (tx, rx) = mpsc::unbounded_channel();
        DeviceWatch { tx, rx, stop: None }
    }

    /// Starts watching if the engine uses a real device and nothing watches yet.
    pub fn ensure_running(&mut self, engine: &MediaEngine) {
        if self.stop.is_some() || !engine.watches_devices() {
            return;
        }
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let tx = self.tx.clone();
        let spawned = std::thread::Builder::new()
            .name("dialtone-devices".into())
            .spawn(move || watch(tx, stop_rx));
        match spawned {
            Ok(_) => self.stop = Some(stop_tx),
            Err(e) => tracing::warn!("cannot watch audio devices: {e}"),
        }
    }

    /// The next snapshot or finished re-open (pending forever when there is none).
    pub async fn recv(&mut self) -> WatchEvent {
        match self.rx.recv().await {
            Some(ev) => ev,
            // Never: `self.tx` keeps the channel open.
            None => std::future::pending().await,
        }
    }

    /// Applies what came back to the engine; returns the events for the user.
    pub fn handle(&mut self, ev: WatchEvent, engine: &mut MediaEngine) -> Vec<Event> {
        let mut events = Vec::new();
        fn failed(kind: &'static str, errors: Vec<DeviceError>) -> impl Iterator<Item = Event> {
            errors.into_iter().map(move |e| Event::Error {
                message: format!("audio {kind}: {e}"),
            })
        }
        match ev {
            WatchEvent::Snapshot(snapshot) => {
                let d = engine.on_devices(snapshot);
                if let Some((inputs, outputs)) = d.announce {
                    events.push(Event::Devices { inputs, outputs });
                }
                events.extend(d.errors.into_iter().map(|message| Event::Error { message }));
                for r in d.reopen {
                    self.open(r);
                }
            }
            WatchEvent::Input {
                ticket,
                spec,
                source,
                errors,
            } => {
                events.extend(failed("input", errors));
                let old = engine.install_input(ticket, spec, source);
                tokio::task::spawn_blocking(move || drop(old));
            }
            WatchEvent::Output {
                ticket,
                spec,
                sink,
                errors,
            } => {
                events.extend(failed("output", errors));
                let old = engine.install_output(ticket, spec, sink);
                tokio::task::spawn_blocking(move || drop(old));
            }
        }
        self.dispatch(engine);
        events
    }

    /// Starts the re-opens the engine asked for (devices that failed during ticks).
    pub fn dispatch(&mut self, engine: &mut MediaEngine) {
        for r in engine.take_reopens() {
            self.open(r);
        }
    }

    fn open(&self, r: Reopen) {
        let tx = self.tx.clone();
        tokio::task::spawn_blocking(move || {
            let ev = match r.target {
                Target::Input(spec) => {
                    let (spec, source, errors) = open_input(spec);
                    WatchEvent::Input {
                        ticket: r.ticket,
                        spec,
                        source,
                        errors,
                    }
                }
                Target::Output(spec) => {
                    let (spec, sink, errors) = open_output(spec);
                    WatchEvent::Output {
                        ticket: r.ticket,
                        spec,
                        sink,
                        errors,
                    }
                }
            };
            let _ = tx.send(ev);
        });
    }
}

/// The watching thread: a look every [`PERIOD`], a snapshot sent when it differs from the last.
fn watch(tx: mpsc::UnboundedSender<WatchEvent>, stop: std::sync::mpsc::Receiver<()>) {
    let mut lister = super::media::cpal_device::Lister::default();
    let mut last: Option<Snapshot> = None;
    loop {
        if let Some(now) = lister.snapshot()
            && last.as_ref() != Some(&now)
        {
            last = Some(now.clone());
            if tx.send(WatchEvent::Snapshot(now)).is_err() {
                return;
            }
        }
        match stop.recv_timeout(PERIOD) {
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            // The engine is gone.
            _ => return,
        }
    }
}

/// Opens `spec`, else the default (for a named device), else silence.
fn open_input(spec: InputSpec) -> (InputSpec, Box<dyn AudioSource>, Vec<DeviceError>) {
    let mut errors = Vec::new();
    let mut tries = vec![spec.clone()];
    if matches!(spec, InputSpec::Device(_)) {
        tries.push(InputSpec::Default);
    }
    tries.push(InputSpec::Silence);
    for s in tries {
        match open_source(&s) {
            Ok(source) => return (s, source, errors),
            Err(e) => errors.push(e),
        }
    }
    // Silence always opens; unreachable in practice, and still a clear outcome.
    (InputSpec::Silence, Box::new(Quiet), errors)
}

/// Opens `spec`, else the default (for a named device), else the null sink.
fn open_output(spec: OutputSpec) -> (OutputSpec, Box<dyn AudioSink>, Vec<DeviceError>) {
    let mut errors = Vec::new();
    let mut tries = vec![spec.clone()];
    if matches!(spec, OutputSpec::Device(_)) {
        tries.push(OutputSpec::Default);
    }
    tries.push(OutputSpec::Null);
    for s in tries {
        match open_sink(&s) {
            Ok(sink) => return (s, sink, errors),
            Err(e) => errors.push(e),
        }
    }
    (OutputSpec::Null, Box::new(Quiet), errors)
}

/// Silence in, nothing out: the last resort of the open chains.
struct Quiet;

impl AudioSource for Quiet {
    fn read(&mut self, out: &mut [i16]) -> Result<(), DeviceError> {
        out.fill(0);
        Ok(())
    }
}

impl AudioSink for Quiet {
    fn write(&mut self, _frame: &[i16]) -> Result<(), DeviceError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unopenable_device_falls_back_along_the_chain() {
        let (spec, _, errors) = open_input(InputSpec::Device("no-such-mic-anywhere".into()));
        // No sound server here: the default fails too, and silence stands in.
        assert!(
            matches!(spec, InputSpec::Silence | InputSpec::Default),
            "{spec}"
        );
        assert!(
            errors[0].to_string().contains("no-such-mic-anywhere"),
            "{errors:?}"
        );
        let (spec, _, errors) = open_output(OutputSpec::Device("no-such-speaker".into()));
        assert!(
            matches!(spec, OutputSpec::Null | OutputSpec::Default),
            "{spec}"
        );
        assert!(
            errors[0].to_string().contains("no-such-speaker"),
            "{errors:?}"
        );
        let (spec, _, errors) = open_input(InputSpec::Tone(440.0));
        assert_eq!((spec, errors.len()), (InputSpec::Tone(440.0), 0));
    }
}
