//! Which window an engine event wakes.
//!
//! The engine's events pass through here on their way to the app (a thread of their own, so the
//! UI thread never waits): every event but levels wakes the main window, which applies it and
//! wakes the call windows it concerns. Level events (ten a second per call) wake only the window
//! of a call whose meter moved by a step ([`theme::meter_step`]), at most five times a second: a
//! steady tone, silence, a noise floor, a muted or held call cost no frame at all.

use super::theme;
use super::ui::call_window::viewport_id;
use crate::api::{CallId, Event};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// The fastest a call window repaints for its meters.
pub const METER_PERIOD: Duration = Duration::from_millis(200);

/// Forwards `events` to the returned receiver (the app's), waking the windows on `ctx` that
/// show what came. Ends when the engine's side closes or the app's receiver is gone.
pub fn forward(
    ctx: egui::Context,
    mut events: mpsc::UnboundedReceiver<Event>,
) -> std::io::Result<mpsc::UnboundedReceiver<Event>> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::Builder::new()
        .name("dialtone-ui-wake".into())
        .spawn(move || {
            let mut meters = Meters::default();
            while let Some(ev) = events.blocking_recv() {
                let wake = meters.wake_for(&ev, Instant::now());
                if tx.send(ev).is_err() {
                    return;
                }
                match wake {
                    Wake::Main => ctx.request_repaint_of(egui::ViewportId::ROOT),
                    Wake::Calls(calls) => {
                        for (call, after) in calls {
                            ctx.request_repaint_after_for(after, viewport_id(call));
                        }
                    }
                }
            }
        })?;
    Ok(rx)
}

/// What to wake for one event.
#[derive(Debug, PartialEq)]
enum Wake {
    Main,
    /// These call windows, each after a delay (zero: now).
    Calls(Vec<(CallId, Duration)>),
}

/// What each call window's meters show now, and when it was last woken for them.
#[derive(Default)]
struct Meters {
    shown: HashMap<CallId, Shown>,
}

struct Shown {
    /// The input and output levels the window was last woken for.
    levels: (f32, f32),
    woken: Instant,
}

/// Is `new` worth a frame over `shown`? Only when the meter shows another step *and* the level
/// moved by a whole step (2 dB): a level hovering at a step's edge (the residue of an echo
/// canceller, a steady noise floor) would otherwise flicker between two steps ten times a second.
fn moved(shown: f32, new: f32) -> bool {
    theme::meter_step(shown) != theme::meter_step(new)
        && (new - shown).abs() >= theme::METER_STEP_DB
}

impl Meters {
    fn wake_for(&mut self, ev: &Event, now: Instant) -> Wake {
        let Event::Levels { input_dbfs, calls } = ev else {
            return Wake::Main;
        };
        // Calls no longer in the levels have no media (ended, or before answer).
        self.shown
            .retain(|id, _| calls.iter().any(|level| level.call == *id));
        let mut wake = Vec::new();
        for level in calls {
            let levels = (*input_dbfs, level.output_dbfs);
            match self.shown.get_mut(&level.call) {
                Some(s) if !moved(s.levels.0, levels.0) && !moved(s.levels.1, levels.1) => {}
                Some(s) => {
                    // A wake before METER_PERIOD is over is deferred to its end.
                    let since = now.saturating_duration_since(s.woken);
                    let after = METER_PERIOD.saturating_sub(since);
                    s.levels = levels;
                    if after.is_zero() {
                        s.woken = now;
                    }
                    wake.push((level.call, after));
                }
                None => {
                    self.shown.insert(level.call, Shown { levels, woken: now });
                    wake.push((level.call, Duration::ZERO));
                }
            }
        }
        Wake::Calls(wake)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::CallLevel;

    fn levels(input_dbfs: f32, calls: &[(u64, f32)]) -> Event {
        Event::Levels {
            input_dbfs,
            calls: calls
                .iter()
                .map(|&(call, output_dbfs)| CallLevel {
                    call: CallId(call),
                    output_dbfs,
                })
                .collect(),
        }
    }

    #[test]
    fn a_steady_level_wakes_a_call_window_once() {
        let mut m = Meters::default();
        let t = Instant::now();
        let first = m.wake_for(&levels(-40.5, &[(1, -21.0)]), t);
        assert_eq!(first, Wake::Calls(vec![(CallId(1), Duration::ZERO)]));
        for n in 1..50 {
            // Hovering at a step's edge (-40 dB), less than a step away: no frame.
            let wobble = if n % 2 == 0 { 0.9 } else { -0.9 };
            let ev = levels(-40.0 + wobble, &[(1, -20.2)]);
            let at = t + Duration::from_millis(100 * n);
            assert_eq!(m.wake_for(&ev, at), Wake::Calls(vec![]), "at {n}");
        }
    }

    #[test]
    fn a_moving_level_wakes_at_most_five_times_a_second() {
        let mut m = Meters::default();
        let t = Instant::now();
        m.wake_for(&levels(-40.0, &[(1, -20.0)]), t);
        let mut now_wakes = 0;
        for n in 1..=10u32 {
            let ev = levels(-40.0 + 4.0 * (n % 2) as f32, &[(1, -20.0)]);
            let at = t + Duration::from_millis(100 * u64::from(n));
            let Wake::Calls(w) = m.wake_for(&ev, at) else {
                panic!("levels wake call windows only");
            };
            assert_eq!(w.len(), 1);
            assert!(w[0].1 <= METER_PERIOD);
            if w[0].1.is_zero() {
                now_wakes += 1;
            }
        }
        // A second of levels, ten moves: five frames now, the others deferred to them.
        assert_eq!(now_wakes, 5);
    }

    #[test]
    fn other_events_wake_the_main_window_and_ended_calls_are_forgotten() {
        let mut m = Meters::default();
        let t = Instant::now();
        m.wake_for(&levels(-40.0, &[(1, -20.0), (2, -30.0)]), t);
        assert_eq!(m.wake_for(&Event::Stopped, t), Wake::Main);
        // Call 1 is gone from the levels: its entry goes; call 2 is unchanged.
        assert_eq!(
            m.wake_for(&levels(-40.0, &[(2, -30.0)]), t),
            Wake::Calls(vec![])
        );
        assert_eq!(m.shown.len(), 1);
        // If call 1 came back (a new media stream), it would be woken at once.
        assert_eq!(
            m.wake_for(&levels(-40.0, &[(1, -20.0), (2, -30.0)]), t),
            Wake::Calls(vec![(CallId(1), Duration::ZERO)])
        );
    }
}
