//! The I/O side of hot-plug (the decisions are `media::hotplug`, sans-IO).
//!
//! - Watching: a thread (`dialtone-devices`) looks at the system's audio devices and sends a
//!   snapshot to the I/O loop only when something changed (the first look too, as the baseline).
//!   It looks when the sound server says a sink, source, card or default device changed
//!   (`media::pulse_events`, PulseAudio's subscription), [`SETTLE`] after the first notice of a
//!   burst; while nothing changes, no thread runs and nothing talks to the server. Without
//!   notifications (no PulseAudio server reachable, or its connection gone: the server died or
//!   restarted) it looks every [`PERIOD`] instead and tries to subscribe again each time, so a
//!   server that comes back is noticed. It starts once a real device (`default`,
//!   `device:NAME`) is in use and stops with the engine.
//! - Re-opening: opening a device takes a while (a stream to build and start), so it runs on
//!   tokio's blocking pool and the opened source or sink comes back to the I/O loop, which swaps
//!   it in under every call. When the device asked for cannot be opened, the default is tried,
//!   then a stand-in (silence, the null sink): a call never loses its media.

use super::media::cpal_device::Lister;
use super::media::devices::{
    AudioSink, AudioSource, DeviceError, InputSpec, OutputSpec, open_sink, open_source,
};
use super::media::engine::MediaEngine;
use super::media::hotplug::{Reopen, Snapshot, Target};
use super::media::pulse_events::{self, Notice, Subscription};
use crate::api::Event;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// How often the devices are looked at while the sound server sends no change notifications.
pub const PERIOD: Duration = Duration::from_secs(2);

/// How long after a change notification the devices are looked at: a burst of them (a new sink
/// and its monitor source, a card switching profiles) makes one look.
pub const SETTLE: Duration = Duration::from_millis(150);

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

/// What wakes the watching thread.
enum Wake {
    /// The sound server says something changed.
    Changed,
    /// The connection of the subscription with this number ended (the server died or restarted).
    Lost(u64),
    /// The engine stops.
    Stop,
}

pub struct DeviceWatch {
    tx: mpsc::UnboundedSender<WatchEvent>,
    rx: mpsc::UnboundedReceiver<WatchEvent>,
    /// The watching thread's wake-ups, once it runs; dropping the watch stops it.
    wake: Option<Sender<Wake>>,
}

impl Drop for DeviceWatch {
    fn drop(&mut self) {
        if let Some(wake) = &self.wake {
            let _ = wake.send(Wake::Stop);
        }
    }
}

impl Default for DeviceWatch {
    fn default() -> Self {
        DeviceWatch::new()
    }
}

impl DeviceWatch {
    pub fn new() -> DeviceWatch {
        let (tx, rx) = mpsc::unbounded_channel();
        DeviceWatch { tx, rx, wake: None }
    }

    /// Starts watching if the engine uses a real device and nothing watches yet.
    pub fn ensure_running(&mut self, engine: &MediaEngine) {
        if self.wake.is_some() || !engine.watches_devices() {
            return;
        }
        let (wake_tx, wake_rx) = std::sync::mpsc::channel();
        let (tx, thread_wake) = (self.tx.clone(), wake_tx.clone());
        let spawned = std::thread::Builder::new()
            .name("dialtone-devices".into())
            .spawn(move || watch(tx, thread_wake, wake_rx));
        match spawned {
            Ok(_) => self.wake = Some(wake_tx),
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

/// The watching thread: a look at start, then one after each burst of change notifications (or
/// every [`PERIOD`] while there are none to be had); a snapshot is sent when it differs from the
/// last. `wake_tx` is for the subscriptions it makes.
fn watch(tx: mpsc::UnboundedSender<WatchEvent>, wake_tx: Sender<Wake>, wake: Receiver<Wake>) {
    let mut lister = Lister::default();
    let mut last: Option<Snapshot> = None;
    // The subscription and its number (counting the tries).
    let mut subscription: Option<(u64, Subscription)> = None;
    let mut tries = 0;
    loop {
        // Subscribed before the look, so that no change falls between the two.
        if subscription.is_none() {
            tries += 1;
            subscription = subscribe(&wake_tx, tries).map(|s| (tries, s));
            if subscription.is_some() {
                // A server (back): list through it, not through the host found while it was
                // away (ALSA's, kept for as long as it answers).
                lister = Lister::default();
            }
        }
        if let Some(now) = lister.snapshot()
            && last.as_ref() != Some(&now)
        {
            last = Some(now.clone());
            if tx.send(WatchEvent::Snapshot(now)).is_err() {
                return;
            }
        }
        let current = subscription.as_ref().map(|(n, _)| *n);
        let period_end = current.is_none().then(|| Instant::now() + PERIOD);
        match wait(&wake, period_end, current) {
            Next::Look => {}
            Next::Lost => subscription = None,
            Next::Stop => return,
        }
    }
}

/// What ends a wait of the watching thread.
#[derive(Debug, PartialEq)]
enum Next {
    Look,
    /// The subscription ended: look, and subscribe again.
    Lost,
    Stop,
}

/// Waits for the next look: [`SETTLE`] after the first of a burst of notices, or at `until`
/// (looking every [`PERIOD`]); or for the end of the subscription numbered `current`.
fn wait(wake: &Receiver<Wake>, until: Option<Instant>, current: Option<u64>) -> Next {
    let mut settled = None;
    loop {
        let woke = match [settled, until].into_iter().flatten().min() {
            Some(t) => wake.recv_timeout(t.saturating_duration_since(Instant::now())),
            None => wake.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match woke {
            Ok(Wake::Changed) => {
                settled.get_or_insert_with(|| Instant::now() + SETTLE);
            }
            Ok(Wake::Lost(n)) if current == Some(n) => return Next::Lost,
            // From a try that failed as it started: already known.
            Ok(Wake::Lost(_)) => {}
            Err(RecvTimeoutError::Timeout) => return Next::Look,
            Ok(Wake::Stop) | Err(RecvTimeoutError::Disconnected) => return Next::Stop,
        }
    }
}

/// A subscription to the sound server's change notifications, which it sends as [`Wake`]s (its
/// end as `Lost(number)`); None when there is none to be had.
fn subscribe(wake: &Sender<Wake>, number: u64) -> Option<Subscription> {
    let wake = wake.clone();
    let notify = move |notice| {
        let _ = wake.send(match notice {
            Notice::Changed => Wake::Changed,
            Notice::Ended => Wake::Lost(number),
        });
    };
    match pulse_events::subscribe(notify) {
        Ok(subscription) => {
            tracing::debug!("audio devices: watching the sound server's notifications");
            Some(subscription)
        }
        Err(e) => {
            tracing::debug!("audio devices: no notifications ({e}), a look every {PERIOD:?}");
            None
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
    fn a_burst_of_notices_makes_one_look_once_it_settles() {
        let (tx, rx) = std::sync::mpsc::channel();
        for _ in 0..5 {
            tx.send(Wake::Changed).unwrap();
        }
        let start = Instant::now();
        assert_eq!(wait(&rx, None, Some(1)), Next::Look);
        let waited = start.elapsed();
        assert!(
            (SETTLE..SETTLE * 4).contains(&waited),
            "{waited:?}: the burst is one look, SETTLE after its first notice"
        );
        assert!(rx.try_recv().is_err(), "the burst is used up");
    }

    #[test]
    fn without_notices_the_look_is_at_the_end_of_the_period() {
        let (_tx, rx) = std::sync::mpsc::channel();
        let start = Instant::now();
        let until = start + Duration::from_millis(50);
        assert_eq!(wait(&rx, Some(until), None), Next::Look);
        assert!(start.elapsed() >= Duration::from_millis(50));
    }

    #[test]
    fn only_the_end_of_the_current_subscription_ends_it() {
        let (tx, rx) = std::sync::mpsc::channel();
        // The end of an earlier try that failed as it started comes late: not this one's.
        tx.send(Wake::Lost(1)).unwrap();
        tx.send(Wake::Lost(2)).unwrap();
        assert_eq!(wait(&rx, None, Some(2)), Next::Lost);
        // While looking every period, a late end changes nothing.
        tx.send(Wake::Lost(2)).unwrap();
        let until = Instant::now() + Duration::from_millis(20);
        assert_eq!(wait(&rx, Some(until), None), Next::Look);
    }

    #[test]
    fn the_engine_stopping_ends_a_wait_even_mid_burst() {
        let (tx, rx) = std::sync::mpsc::channel();
        tx.send(Wake::Changed).unwrap();
        tx.send(Wake::Stop).unwrap();
        assert_eq!(wait(&rx, None, Some(1)), Next::Stop);
        drop(tx);
        assert_eq!(wait(&rx, None, Some(1)), Next::Stop);
    }

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
