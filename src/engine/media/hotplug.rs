//! Hot-plug decisions, sans-IO: what the engine does when the system's audio devices change or
//! one it uses stops working. The I/O side (`engine::device_watch`) enumerates the devices off
//! the I/O loop, hands each change in as a [`Snapshot`], and carries out the [`Reopen`]s this
//! returns (opening is slow: it never happens on the I/O loop).
//!
//! For each direction the monitor remembers what the user asked for (`wanted`: `default`,
//! `device:NAME`, or a synthetic spec it leaves alone) and what is open now (`current`):
//! - the device in use disappears (unplugged; PulseAudio then moves our stream to its default
//!   by itself, an ALSA stream fails instead — [`DeviceMonitor::lost`]): an error naming it, and
//!   the default is opened in its place (silence / the null sink if there is none);
//! - the wanted device is back: it is opened again;
//! - `default` is wanted and the system default changes: the new default is opened.
//!
//! Each of these re-opens counts in the engine's `device_opens`; calls never do.

use super::devices::{InputSpec, OutputSpec};

/// The audio devices present, as `id (description)` labels, and the system defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    pub default_input: Option<String>,
    pub default_output: Option<String>,
}

/// A device to open (off the I/O loop) and swap in.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    Input(InputSpec),
    Output(OutputSpec),
}

/// A re-open to carry out: open `target` (or, failing that, the default, then a stand-in) and
/// hand the result back with its `ticket`; a result whose ticket is stale (the user chose
/// another device meanwhile) is dropped.
#[derive(Debug, Clone, PartialEq)]
pub struct Reopen {
    pub target: Target,
    pub ticket: u64,
}

/// What a snapshot or a lost device calls for.
#[derive(Debug, Default, PartialEq)]
pub struct Decision {
    /// The device list changed: `(inputs, outputs)` for the UI.
    pub announce: Option<(Vec<String>, Vec<String>)>,
    pub reopen: Vec<Reopen>,
    /// For the user (`error` events).
    pub errors: Vec<String>,
}

/// Whether a `device:NAME` spec names one of `labels` (the same rule as opening: any part of
/// the label, case-insensitive).
pub fn present(name: &str, labels: &[String]) -> bool {
    let want = name.to_lowercase();
    labels.iter().any(|l| l.to_lowercase().contains(&want))
}

/// One direction's state: a real device spec (`default` or `device:NAME`) as the user wants it
/// and as it is open, as plain names (`None` = the default).
#[derive(Debug, Clone)]
struct Side {
    word: &'static str,
    /// Whether the wanted spec is a real device at all (synthetic ones are left alone).
    real: bool,
    /// `None` = default, `Some(name)` = `device:NAME`.
    wanted: Option<String>,
    /// What is open: `Some(None)` the default, `Some(Some(name))` that device, `None` a
    /// stand-in (silence, the null sink) or a synthetic spec.
    current: Option<Option<String>>,
    /// The ticket of the re-open on its way (do not ask twice).
    opening: Option<u64>,
}

impl Side {
    fn new(word: &'static str) -> Side {
        Side {
            word,
            real: false,
            wanted: None,
            current: None,
            opening: None,
        }
    }

    fn set(&mut self, wanted: Option<Option<String>>, current: Option<Option<String>>) {
        self.real = wanted.is_some();
        self.wanted = wanted.flatten();
        self.current = current;
        self.opening = None;
    }

    /// The decision for this side given the devices present and the old and new default.
    fn check(
        &mut self,
        labels: &[String],
        old_default: Option<&String>,
        new_default: Option<&String>,
        errors: &mut Vec<String>,
    ) -> Option<Option<String>> {
        if !self.real || self.opening.is_some() {
            return None;
        }
        match (&self.wanted, &self.current) {
            // The wanted device is back (or was missing at start): open it.
            (Some(name), cur) if cur.as_ref() != Some(&Some(name.clone())) => {
                if present(name, labels) {
                    Some(Some(name.clone()))
                } else if cur.is_none() && new_default.is_some() {
                    // Still missing, and a stand-in plays: the default is better than silence.
                    Some(None)
                } else {
                    None
                }
            }
            // The device in use is gone.
            (Some(name), _) if !present(name, labels) => {
                let instead = match new_default {
                    Some(_) => format!("using the default {} until it is back", self.word),
                    None => "no other device: silence until it is back".to_string(),
                };
                errors.push(format!(
                    "audio {} device:{name} disappeared; {instead}",
                    self.word
                ));
                self.current = None;
                new_default.map(|_| None)
            }
            (Some(_), _) => None,
            // Default wanted: follow the system default when it changes.
            (None, Some(None)) if old_default != new_default && new_default.is_some() => Some(None),
            // Default wanted, a stand-in plays (no default at start, or lost): retry.
            (None, None) if new_default.is_some() => Some(None),
            (None, _) => None,
        }
    }

    /// The open device stopped working: open the wanted one again unless the last snapshot
    /// (`labels`, if any) says it is gone, the default otherwise.
    fn lost(&mut self, labels: Option<&[String]>) -> Option<Option<String>> {
        if !self.real || self.opening.is_some() {
            return None;
        }
        self.current = None;
        Some(
            self.wanted
                .clone()
                .filter(|n| labels.is_none_or(|l| present(n, l))),
        )
    }

    /// A re-open finished: `opened` is what plays now (`None`: a stand-in). False (and nothing
    /// changes) when the ticket is not the one on its way.
    fn opened(&mut self, ticket: u64, opened: Option<Option<String>>) -> bool {
        if self.opening != Some(ticket) {
            return false;
        }
        self.opening = None;
        self.current = opened;
        true
    }
}

/// The hot-plug state machine for the engine's input and output.
#[derive(Debug, Clone)]
pub struct DeviceMonitor {
    last: Option<Snapshot>,
    input: Side,
    output: Side,
    tickets: u64,
}

impl Default for DeviceMonitor {
    fn default() -> Self {
        DeviceMonitor {
            last: None,
            input: Side::new("input"),
            output: Side::new("output"),
            tickets: 0,
        }
    }
}

fn input_device(spec: &InputSpec) -> Option<Option<String>> {
    match spec {
        InputSpec::Default => Some(None),
        InputSpec::Device(n) => Some(Some(n.clone())),
        _ => None,
    }
}

fn output_device(spec: &OutputSpec) -> Option<Option<String>> {
    match spec {
        OutputSpec::Default => Some(None),
        OutputSpec::Device(n) => Some(Some(n.clone())),
        _ => None,
    }
}

fn input_spec(device: Option<String>) -> InputSpec {
    device.map_or(InputSpec::Default, InputSpec::Device)
}

fn output_spec(device: Option<String>) -> OutputSpec {
    device.map_or(OutputSpec::Default, OutputSpec::Device)
}

impl DeviceMonitor {
    /// The user chose `wanted` and `current` is open (the same, or a stand-in after a failure).
    pub fn input_chosen(&mut self, wanted: &InputSpec, current: &InputSpec) {
        self.input.set(input_device(wanted), input_device(current));
    }

    pub fn output_chosen(&mut self, wanted: &OutputSpec, current: &OutputSpec) {
        self.output
            .set(output_device(wanted), output_device(current));
    }

    /// A re-open asked for by this monitor finished with `current` open. False when the ticket
    /// is stale: the caller drops what it opened.
    pub fn input_opened(&mut self, ticket: u64, current: &InputSpec) -> bool {
        self.input.opened(ticket, input_device(current))
    }

    pub fn output_opened(&mut self, ticket: u64, current: &OutputSpec) -> bool {
        self.output.opened(ticket, output_device(current))
    }

    fn ticket(&mut self, side_is_input: bool) -> u64 {
        self.tickets += 1;
        let side = if side_is_input {
            &mut self.input
        } else {
            &mut self.output
        };
        side.opening = Some(self.tickets);
        self.tickets
    }

    fn reopen_input(&mut self, t: Option<String>) -> Reopen {
        Reopen {
            ticket: self.ticket(true),
            target: Target::Input(input_spec(t)),
        }
    }

    fn reopen_output(&mut self, t: Option<String>) -> Reopen {
        Reopen {
            ticket: self.ticket(false),
            target: Target::Output(output_spec(t)),
        }
    }

    /// Whether any direction uses a real device (only then are devices worth watching).
    pub fn watches(&self) -> bool {
        self.input.real || self.output.real
    }

    /// The devices present now. The first snapshot is the baseline (no announcement).
    pub fn on_snapshot(&mut self, now: Snapshot) -> Decision {
        let mut d = Decision::default();
        let last = self.last.take();
        if let Some(last) = &last
            && (last.inputs != now.inputs || last.outputs != now.outputs)
        {
            d.announce = Some((now.inputs.clone(), now.outputs.clone()));
        }
        let (old_in, old_out) = match &last {
            Some(l) => (l.default_input.as_ref(), l.default_output.as_ref()),
            // Nothing to compare with: no default change at the first snapshot.
            None => (now.default_input.as_ref(), now.default_output.as_ref()),
        };
        if let Some(t) = self.input.check(
            &now.inputs,
            old_in,
            now.default_input.as_ref(),
            &mut d.errors,
        ) {
            let r = self.reopen_input(t);
            d.reopen.push(r);
        }
        if let Some(t) = self.output.check(
            &now.outputs,
            old_out,
            now.default_output.as_ref(),
            &mut d.errors,
        ) {
            let r = self.reopen_output(t);
            d.reopen.push(r);
        }
        self.last = Some(now);
        d
    }

    /// The input stopped working (its error was already reported): what to open instead.
    pub fn input_lost(&mut self) -> Option<Reopen> {
        let labels = self.last.as_ref().map(|l| l.inputs.as_slice());
        let t = self.input.lost(labels)?;
        Some(self.reopen_input(t))
    }

    pub fn output_lost(&mut self) -> Option<Reopen> {
        let labels = self.last.as_ref().map(|l| l.outputs.as_slice());
        let t = self.output.lost(labels)?;
        Some(self.reopen_output(t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(inputs: &[&str], outputs: &[&str], din: Option<&str>, dout: Option<&str>) -> Snapshot {
        let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect();
        Snapshot {
            inputs: v(inputs),
            outputs: v(outputs),
            default_input: din.map(str::to_string),
            default_output: dout.map(str::to_string),
        }
    }

    fn headset() -> DeviceMonitor {
        let mut m = DeviceMonitor::default();
        let usb = InputSpec::Device("usb".into());
        m.input_chosen(&usb, &usb);
        let usb = OutputSpec::Device("usb".into());
        m.output_chosen(&usb, &usb);
        m
    }

    fn targets(d: &Decision) -> Vec<Target> {
        d.reopen.iter().map(|r| r.target.clone()).collect()
    }

    /// Completes every re-open of `d` with what it asked for.
    fn complete(m: &mut DeviceMonitor, d: &Decision) {
        for r in &d.reopen {
            let ok = match &r.target {
                Target::Input(s) => m.input_opened(r.ticket, s),
                Target::Output(s) => m.output_opened(r.ticket, s),
            };
            assert!(ok);
        }
    }

    #[test]
    fn the_first_snapshot_is_the_baseline() {
        let mut m = headset();
        assert!(m.watches());
        let d = m.on_snapshot(snap(&["usb mic"], &["usb out"], Some("x"), Some("y")));
        assert_eq!(d, Decision::default());
    }

    #[test]
    fn an_unplugged_device_falls_back_to_the_default_and_comes_back_when_plugged_in() {
        let mut m = headset();
        let all = snap(
            &["usb mic", "pci mic"],
            &["usb out", "pci out"],
            Some("pci mic"),
            Some("pci out"),
        );
        m.on_snapshot(all.clone());
        let unplugged = snap(&["pci mic"], &["pci out"], Some("pci mic"), Some("pci out"));
        let d = m.on_snapshot(unplugged.clone());
        assert_eq!(
            d.announce,
            Some((vec!["pci mic".into()], vec!["pci out".into()]))
        );
        assert_eq!(
            targets(&d),
            vec![
                Target::Input(InputSpec::Default),
                Target::Output(OutputSpec::Default)
            ]
        );
        assert_eq!(d.errors.len(), 2);
        assert!(
            d.errors[0].contains("input device:usb disappeared; using the default input"),
            "{:?}",
            d.errors
        );
        assert!(
            d.errors[1].contains("output device:usb disappeared"),
            "{:?}",
            d.errors
        );
        // Nothing twice while the re-open is on its way.
        let again = m.on_snapshot(snap(&["pci mic"], &["pci out"], Some("pci mic"), None));
        assert!(
            again.reopen.is_empty() && again.errors.is_empty(),
            "{again:?}"
        );
        complete(&mut m, &d);
        assert_eq!(m.on_snapshot(unplugged).reopen, vec![]);
        // Back: the wanted device is opened again.
        let d = m.on_snapshot(all);
        assert_eq!(
            targets(&d),
            vec![
                Target::Input(InputSpec::Device("usb".into())),
                Target::Output(OutputSpec::Device("usb".into()))
            ]
        );
        assert!(d.errors.is_empty());
    }

    #[test]
    fn with_no_default_left_a_lost_device_is_reported_once_and_waited_for() {
        let mut m = headset();
        m.on_snapshot(snap(
            &["usb mic"],
            &["usb out"],
            Some("usb mic"),
            Some("usb out"),
        ));
        let d = m.on_snapshot(snap(&[], &[], None, None));
        assert!(d.reopen.is_empty(), "{d:?}");
        assert_eq!(d.errors.len(), 2);
        assert!(
            d.errors[0].contains("silence until it is back"),
            "{:?}",
            d.errors
        );
        let d = m.on_snapshot(snap(&["x"], &[], None, None));
        assert!(d.reopen.is_empty() && d.errors.is_empty(), "{d:?}");
        // A default appears: better than silence.
        let d = m.on_snapshot(snap(&["x"], &[], Some("x"), None));
        assert_eq!(targets(&d), vec![Target::Input(InputSpec::Default)]);
    }

    #[test]
    fn the_default_is_followed_when_it_changes() {
        let mut m = DeviceMonitor::default();
        m.output_chosen(&OutputSpec::Default, &OutputSpec::Default);
        m.input_chosen(&InputSpec::Tone(440.0), &InputSpec::Tone(440.0));
        m.on_snapshot(snap(&["a"], &["a", "b"], Some("a"), Some("a")));
        // A new device alone changes nothing but the list.
        let d = m.on_snapshot(snap(&["a"], &["a", "b", "c"], Some("a"), Some("a")));
        assert!(d.announce.is_some() && d.reopen.is_empty(), "{d:?}");
        let d = m.on_snapshot(snap(&["a"], &["a", "b", "c"], Some("a"), Some("c")));
        assert_eq!(d.announce, None);
        assert_eq!(targets(&d), vec![Target::Output(OutputSpec::Default)]);
        complete(&mut m, &d);
        let d = m.on_snapshot(snap(&["a"], &["a", "b", "c"], Some("a"), Some("c")));
        assert_eq!(d, Decision::default());
    }

    #[test]
    fn synthetic_devices_are_left_alone() {
        let mut m = DeviceMonitor::default();
        m.input_chosen(&InputSpec::Tone(440.0), &InputSpec::Tone(440.0));
        m.output_chosen(&OutputSpec::Null, &OutputSpec::Null);
        assert!(!m.watches());
        m.on_snapshot(snap(&["a"], &["a"], Some("a"), Some("a")));
        let d = m.on_snapshot(snap(&[], &["b"], None, Some("b")));
        assert!(d.reopen.is_empty() && d.errors.is_empty() && d.announce.is_some());
        assert_eq!(m.input_lost(), None);
        assert_eq!(m.output_lost(), None);
    }

    #[test]
    fn a_device_missing_at_start_is_replaced_by_the_default_then_by_itself() {
        let mut m = DeviceMonitor::default();
        // device:usb could not be opened at start: silence plays instead.
        m.input_chosen(&InputSpec::Device("usb".into()), &InputSpec::Silence);
        let d = m.on_snapshot(snap(&["pci mic"], &[], Some("pci mic"), None));
        assert_eq!(targets(&d), vec![Target::Input(InputSpec::Default)]);
        complete(&mut m, &d);
        let d = m.on_snapshot(snap(&["pci mic", "USB mic"], &[], Some("pci mic"), None));
        assert_eq!(
            targets(&d),
            vec![Target::Input(InputSpec::Device("usb".into()))]
        );
    }

    #[test]
    fn a_failed_stream_is_reopened_once_with_the_wanted_device_while_it_is_listed() {
        let mut m = headset();
        // Before any snapshot: try the wanted device (the opener falls back if it fails).
        let r = m.input_lost().unwrap();
        assert_eq!(r.target, Target::Input(InputSpec::Device("usb".into())));
        assert_eq!(m.input_lost(), None, "one re-open at a time");
        assert!(m.input_opened(r.ticket, &InputSpec::Device("usb".into())));
        // Listed: the wanted device again; not listed: the default.
        m.on_snapshot(snap(
            &["usb mic", "pci"],
            &["pci"],
            Some("pci"),
            Some("pci"),
        ));
        let r = m.input_lost().unwrap();
        assert_eq!(r.target, Target::Input(InputSpec::Device("usb".into())));
        assert!(m.input_opened(r.ticket, &InputSpec::Silence));
        // A speaker missing at start, none listed as default: a failure asks for the default.
        let mut m = DeviceMonitor::default();
        m.output_chosen(&OutputSpec::Device("usb".into()), &OutputSpec::Null);
        assert_eq!(
            m.on_snapshot(snap(&[], &["pci"], None, None)).reopen,
            vec![]
        );
        let r = m.output_lost().unwrap();
        assert_eq!(r.target, Target::Output(OutputSpec::Default));
    }

    #[test]
    fn a_reopen_overtaken_by_the_users_choice_is_dropped() {
        let mut m = headset();
        let r = m.input_lost().unwrap();
        m.input_chosen(&InputSpec::Tone(440.0), &InputSpec::Tone(440.0));
        assert!(!m.input_opened(r.ticket, &InputSpec::Default));
        assert!(!m.input_opened(r.ticket + 100, &InputSpec::Default));
    }
}
