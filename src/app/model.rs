//! The app's view model: what the windows show, built only from engine `Event`s and the user's
//! own actions. No egui and no I/O here: time is passed in, and what must happen outside (a history
//! row, a notification, a command to the engine) comes back as `Effect`s. Every state change of a
//! call, as the UI sees it, happens in this file.

use crate::api::{
    AccountId, CallId, CallState, CallStats, Command, DeviceStats, Direction, EndReason, Event,
    HoldState, RegistrationState,
};
use crate::engine::sip::uri::NameAddr;
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// How many error notices the main window keeps.
const MAX_NOTICES: usize = 5;
/// An ended call's window stays this long, showing why it ended, then closes.
pub const ENDED_LINGER: Duration = Duration::from_secs(2);

/// One account as the status line shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct AccountStatus {
    pub id: AccountId,
    /// `sip:alice@example.com`.
    pub aor: String,
    pub state: AccountState,
}

#[derive(Debug, Clone, PartialEq)]
pub enum AccountState {
    /// Registration is turned off for this account (it can still place calls).
    Offline,
    Registering,
    Registered,
    Failed {
        reason: String,
    },
}

/// How a finished call is filed in the history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Answered,
    /// Incoming, never answered (cancelled by the caller, timed out, refused by do-not-disturb).
    Missed,
    /// Incoming, declined by us.
    Rejected,
    /// Outgoing, hung up by us before the answer.
    Cancelled,
    /// Outgoing, busy / declined / failed.
    Failed,
}

/// A finished call, ready to be written to the history.
#[derive(Debug, Clone, PartialEq)]
pub struct FinishedCall {
    pub peer: String,
    pub name: String,
    pub direction: Direction,
    pub outcome: Outcome,
    pub account: Option<String>,
    /// Unix milliseconds when the call started (rang or was dialled).
    pub started_at_ms: i64,
    pub duration_s: f64,
}

/// What the caller of `Model::apply` must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    Send(Command),
    History(FinishedCall),
    /// A desktop notification for an incoming call.
    NotifyIncoming {
        call: CallId,
        caller: String,
        account: Option<String>,
    },
    /// The call stopped ringing: take its notification down.
    CloseNotification(CallId),
}

/// What the call window remembers between frames.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CallWindow {
    /// The user asked to close the window of a call that is up: ask before hanging up.
    pub confirm_hangup: bool,
    pub show_keypad: bool,
    pub show_stats: bool,
    /// Digits sent so far, shown above the keypad.
    pub dtmf_sent: String,
}

/// One call, as every window shows it.
#[derive(Debug, Clone)]
pub struct CallView {
    pub id: CallId,
    pub direction: Direction,
    /// The far end's URI.
    pub peer: String,
    /// A name for people: the contact's name, else the display name from SIP, else the URI's user.
    pub name: String,
    pub account: Option<AccountId>,
    pub state: CallState,
    pub hold: HoldState,
    pub muted: bool,
    pub started: Instant,
    pub started_at_ms: i64,
    pub answered: Option<Instant>,
    pub ended: Option<(Instant, EndReason, Option<u16>)>,
    /// The popup is showing (incoming and still ringing).
    pub ringing_popup: bool,
    pub rejected_by_us: bool,
    /// The user closed the window of this ended call before it went by itself.
    pub window_closed: bool,
    /// We answered this incoming call (its call window opens at once).
    pub accepted: bool,
    /// A desktop notification is up for this call.
    pub notified: bool,
    pub output_dbfs: f32,
    pub stats: Option<CallStats>,
    pub window: CallWindow,
}

impl CallView {
    /// A call just seen: calling (outgoing), no window state yet.
    pub fn new(
        id: CallId,
        direction: Direction,
        peer: String,
        name: String,
        now: Instant,
        wall_ms: i64,
    ) -> CallView {
        CallView {
            id,
            direction,
            peer,
            name,
            account: None,
            state: CallState::Calling,
            hold: HoldState {
                local: false,
                remote: false,
            },
            muted: false,
            started: now,
            started_at_ms: wall_ms,
            answered: None,
            ended: None,
            ringing_popup: false,
            rejected_by_us: false,
            window_closed: false,
            accepted: false,
            notified: false,
            output_dbfs: -120.0,
            stats: None,
            window: CallWindow::default(),
        }
    }

    /// Seconds since the answer, frozen at the end.
    pub fn duration(&self, now: Instant) -> Duration {
        match (self.answered, &self.ended) {
            (Some(a), Some((e, _, _))) => e.saturating_duration_since(a),
            (Some(a), None) => now.saturating_duration_since(a),
            _ => Duration::ZERO,
        }
    }

    pub fn is_up(&self) -> bool {
        matches!(self.state, CallState::Established | CallState::Held)
    }

    pub fn is_ended(&self) -> bool {
        self.state == CallState::Ended
    }

    /// One line for people: "Ringing…", "On hold", "03:12", "Busy".
    /// The state without the running duration, for the main window's list of live calls (which
    /// then needs no repaint every second; the call's own window shows the duration).
    pub fn brief_status(&self) -> String {
        match self.state {
            CallState::Established => "In call".into(),
            CallState::Held if self.hold.local => "On hold".into(),
            CallState::Held => "Held by the other side".into(),
            _ => self.status_text(self.started),
        }
    }

    pub fn status_text(&self, now: Instant) -> String {
        match self.state {
            CallState::Calling => "Calling…".into(),
            CallState::Ringing if self.direction == Direction::Incoming => "Incoming call".into(),
            CallState::Ringing => "Ringing…".into(),
            CallState::Established => format_duration(self.duration(now)),
            CallState::Held if self.hold.local => {
                format!("On hold · {}", format_duration(self.duration(now)))
            }
            CallState::Held => format!(
                "Held by the other side · {}",
                format_duration(self.duration(now))
            ),
            CallState::Ended => match &self.ended {
                Some((_, reason, code)) => end_text(reason, *code),
                None => "Call ended".into(),
            },
        }
    }
}

/// `m:ss`, or `h:mm:ss` past an hour.
pub fn format_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

fn end_text(reason: &EndReason, code: Option<u16>) -> String {
    let base = match reason {
        EndReason::LocalHangup => "Call ended",
        EndReason::RemoteHangup => "The other side hung up",
        EndReason::Cancelled => "Cancelled",
        EndReason::Busy => "Busy",
        EndReason::Declined => "Declined",
        EndReason::Timeout => "No answer",
        EndReason::Error => "Call failed",
    };
    match (reason, code) {
        (EndReason::Error, Some(c)) => format!("{base} ({c})"),
        _ => base.to_string(),
    }
}

/// Splits what SIP shows (`"Bob" <sip:bob@host>;tag=1`) into a display name and a URI.
pub fn split_peer(from: &str) -> (Option<String>, String) {
    match NameAddr::parse(from) {
        Ok(na) => (
            na.display.filter(|d| !d.trim().is_empty()),
            na.uri.to_string(),
        ),
        Err(_) => (None, from.trim().to_string()),
    }
}

/// The user part of a URI, or the URI itself: what to show when nothing better is known.
pub fn uri_user(uri: &str) -> String {
    let rest = uri
        .split_once(':')
        .map(|(scheme, r)| if scheme.contains('@') { uri } else { r })
        .unwrap_or(uri);
    let user = rest.split(['@', ';', '?']).next().unwrap_or(rest);
    if user.is_empty() {
        uri.to_string()
    } else {
        user.to_string()
    }
}

/// A message the main window shows until dismissed (newest last).
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    pub text: String,
    /// An error (red) rather than information.
    pub error: bool,
}

/// The whole view model.
#[derive(Debug, Default)]
pub struct Model {
    pub accounts: Vec<AccountStatus>,
    pub calls: BTreeMap<CallId, CallView>,
    pub input_dbfs: Option<f32>,
    pub device_stats: Option<DeviceStats>,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    pub notices: VecDeque<Notice>,
    pub stopped: bool,
}

impl Model {
    /// Starts from the configured accounts (`aor`, whether it registers), before any event.
    pub fn new(accounts: impl IntoIterator<Item = (String, bool)>) -> Model {
        let mut m = Model::default();
        m.set_accounts(accounts);
        m
    }

    /// The account list changed in the settings: statuses start over.
    pub fn set_accounts(&mut self, accounts: impl IntoIterator<Item = (String, bool)>) {
        self.accounts = accounts
            .into_iter()
            .enumerate()
            .map(|(i, (aor, register))| AccountStatus {
                id: AccountId(i as u32),
                aor,
                state: if register {
                    AccountState::Registering
                } else {
                    AccountState::Offline
                },
            })
            .collect();
    }

    /// An error for the user (also logged).
    pub fn notice(&mut self, text: impl Into<String>) {
        let text = text.into();
        tracing::warn!("{text}");
        self.push_notice(Notice { text, error: true });
    }

    /// Information for the user (an import's result, settings saved).
    pub fn info(&mut self, text: impl Into<String>) {
        let text = text.into();
        tracing::info!("{text}");
        self.push_notice(Notice { text, error: false });
    }

    fn push_notice(&mut self, n: Notice) {
        if self.notices.len() == MAX_NOTICES {
            self.notices.pop_front();
        }
        self.notices.push_back(n);
    }

    fn account_aor(&self, id: Option<AccountId>) -> Option<String> {
        id.and_then(|id| self.accounts.get(id.0 as usize))
            .map(|a| a.aor.clone())
    }

    /// Applies one engine event. `name_of` finds a contact's name for a URI.
    pub fn apply(
        &mut self,
        event: Event,
        now: Instant,
        wall_ms: i64,
        name_of: &dyn Fn(&str) -> Option<String>,
    ) -> Vec<Effect> {
        let mut fx = Vec::new();
        match event {
            Event::Registration {
                account,
                aor,
                state,
                code,
                reason,
            } => {
                let st = match state {
                    RegistrationState::Registering => AccountState::Registering,
                    RegistrationState::Registered => AccountState::Registered,
                    RegistrationState::Unregistered => AccountState::Offline,
                    RegistrationState::Failed => AccountState::Failed {
                        reason: match (reason, code) {
                            (Some(r), _) => r,
                            (None, Some(c)) => format!("the server answered {c}"),
                            (None, None) => "no answer from the server".into(),
                        },
                    },
                };
                match self.accounts.iter_mut().find(|a| a.id == account) {
                    Some(a) => {
                        a.aor = aor;
                        a.state = st;
                    }
                    None => self.accounts.push(AccountStatus {
                        id: account,
                        aor,
                        state: st,
                    }),
                }
            }
            Event::Incoming {
                call,
                from,
                account,
            } => {
                let (display, uri) = split_peer(&from);
                let name = name_of(&uri).or(display).unwrap_or_else(|| uri_user(&uri));
                let account_aor = self.account_aor(account);
                fx.push(Effect::NotifyIncoming {
                    call,
                    caller: format!("{name} ({})", uri_user(&uri)),
                    account: account_aor,
                });
                let mut view = CallView::new(call, Direction::Incoming, uri, name, now, wall_ms);
                view.account = account;
                view.state = CallState::Ringing;
                view.ringing_popup = true;
                view.notified = true;
                self.calls.insert(call, view);
            }
            Event::Call {
                call,
                state,
                peer,
                reason,
                code,
                hold,
            } => self.on_call(
                call, state, peer, reason, code, hold, now, wall_ms, name_of, &mut fx,
            ),
            Event::Levels { input_dbfs, calls } => {
                self.input_dbfs = Some(input_dbfs);
                for l in calls {
                    if let Some(c) = self.calls.get_mut(&l.call) {
                        c.output_dbfs = l.output_dbfs;
                    }
                }
            }
            Event::Devices { inputs, outputs } => {
                self.inputs = inputs;
                self.outputs = outputs;
            }
            Event::Stats { calls, devices } => {
                for s in calls {
                    if let Some(c) = self.calls.get_mut(&s.call) {
                        c.muted = s.muted;
                        c.stats = Some(s);
                    }
                }
                if devices.is_some() {
                    self.device_stats = devices;
                }
            }
            Event::Error { message } => self.notice(message),
            Event::Stopped => self.stopped = true,
            // DTMF from the far end is not shown; future events are ignored by older UIs.
            _ => {}
        }
        fx
    }

    #[allow(clippy::too_many_arguments)]
    fn on_call(
        &mut self,
        call: CallId,
        state: CallState,
        peer: String,
        reason: Option<EndReason>,
        code: Option<u16>,
        hold: Option<HoldState>,
        now: Instant,
        wall_ms: i64,
        name_of: &dyn Fn(&str) -> Option<String>,
        fx: &mut Vec<Effect>,
    ) {
        let c = self.calls.entry(call).or_insert_with(|| {
            // A call we did not see start: an outgoing call the engine just placed.
            let (display, uri) = split_peer(&peer);
            let name = name_of(&uri).or(display).unwrap_or_else(|| uri_user(&uri));
            CallView::new(call, Direction::Outgoing, uri, name, now, wall_ms)
        });
        if c.is_ended() {
            return;
        }
        let was_up = c.is_up();
        c.state = state;
        if let Some(h) = hold {
            c.hold = h;
        } else if state == CallState::Established {
            c.hold = HoldState {
                local: false,
                remote: false,
            };
        }
        if matches!(state, CallState::Established | CallState::Held) && c.answered.is_none() {
            c.answered = Some(now);
        }
        if state != CallState::Ringing {
            c.ringing_popup = false;
            if c.notified {
                c.notified = false;
                fx.push(Effect::CloseNotification(call));
            }
        }
        if state == CallState::Ended {
            let reason = reason.unwrap_or(EndReason::Error);
            c.ended = Some((now, reason.clone(), code));
            let outcome = match (c.direction, c.answered.is_some(), &reason) {
                (_, true, _) => Outcome::Answered,
                (Direction::Incoming, false, _) if c.rejected_by_us => Outcome::Rejected,
                (Direction::Incoming, false, _) => Outcome::Missed,
                (Direction::Outgoing, false, EndReason::Cancelled | EndReason::LocalHangup) => {
                    Outcome::Cancelled
                }
                (Direction::Outgoing, false, _) => Outcome::Failed,
            };
            let finished = FinishedCall {
                peer: c.peer.clone(),
                name: c.name.clone(),
                direction: c.direction,
                outcome,
                account: None,
                started_at_ms: c.started_at_ms,
                duration_s: c.duration(now).as_secs_f64(),
            };
            let account = self.account_aor(self.calls[&call].account);
            fx.push(Effect::History(FinishedCall {
                account,
                ..finished
            }));
            return;
        }
        // A call just came up: the others that are up go on hold (one conversation at a time).
        if state == CallState::Established && !was_up {
            for other in self.calls.values() {
                if other.id != call && other.state == CallState::Established {
                    fx.push(Effect::Send(Command::Hold { call: other.id }));
                }
            }
        }
    }

    /// A call refused by do-not-disturb (or any refusal the engine reports without ringing).
    pub fn refused(
        &mut self,
        from: &str,
        account: Option<AccountId>,
        wall_ms: i64,
        name_of: &dyn Fn(&str) -> Option<String>,
    ) -> Effect {
        let (display, uri) = split_peer(from);
        let name = name_of(&uri).or(display).unwrap_or_else(|| uri_user(&uri));
        Effect::History(FinishedCall {
            peer: uri,
            name,
            direction: Direction::Incoming,
            outcome: Outcome::Missed,
            account: self.account_aor(account),
            started_at_ms: wall_ms,
            duration_s: 0.0,
        })
    }

    // ---- the user's actions: each returns the command to send ----

    pub fn answer(&mut self, call: CallId) -> Option<Command> {
        let c = self.calls.get_mut(&call)?;
        (c.state == CallState::Ringing && c.direction == Direction::Incoming).then(|| {
            c.ringing_popup = false;
            c.accepted = true;
            Command::Answer { call }
        })
    }

    pub fn decline(&mut self, call: CallId) -> Option<Command> {
        let c = self.calls.get_mut(&call)?;
        (c.state == CallState::Ringing && c.direction == Direction::Incoming).then(|| {
            c.ringing_popup = false;
            c.rejected_by_us = true;
            Command::Reject {
                call,
                decline: true,
            }
        })
    }

    pub fn hangup(&mut self, call: CallId) -> Option<Command> {
        let c = self.calls.get_mut(&call)?;
        if c.is_ended() {
            return None;
        }
        if c.direction == Direction::Incoming && c.state == CallState::Ringing {
            c.rejected_by_us = true;
        }
        Some(Command::Hangup { call })
    }

    pub fn toggle_mute(&mut self, call: CallId) -> Option<Command> {
        let c = self.calls.get_mut(&call)?;
        if c.is_ended() {
            return None;
        }
        c.muted = !c.muted;
        Some(Command::Mute {
            call,
            muted: c.muted,
        })
    }

    pub fn toggle_hold(&mut self, call: CallId) -> Option<Command> {
        let c = self.calls.get(&call)?;
        match c.state {
            CallState::Held if c.hold.local => Some(Command::Resume { call }),
            CallState::Established | CallState::Held => Some(Command::Hold { call }),
            _ => None,
        }
    }

    /// Resuming one call puts the other calls that are up on hold first.
    pub fn resume_exclusive(&self, call: CallId) -> Vec<Command> {
        let mut out: Vec<Command> = self
            .calls
            .values()
            .filter(|c| c.id != call && c.state == CallState::Established)
            .map(|c| Command::Hold { call: c.id })
            .collect();
        out.push(Command::Resume { call });
        out
    }

    pub fn dtmf(&mut self, call: CallId, digit: char) -> Option<Command> {
        let c = self.calls.get_mut(&call)?;
        if !c.is_up() {
            return None;
        }
        c.window.dtmf_sent.push(digit);
        Some(Command::Dtmf {
            call,
            digits: digit.to_string(),
        })
    }

    /// Ended calls whose window has lingered long enough are dropped.
    pub fn sweep(&mut self, now: Instant) {
        self.calls.retain(|_, c| match &c.ended {
            Some((at, _, _)) => now.saturating_duration_since(*at) < ENDED_LINGER,
            None => true,
        });
    }

    /// How long until [`Self::sweep`] drops the next ended call (`None`: no call has ended).
    pub fn next_sweep(&self, now: Instant) -> Option<Duration> {
        self.calls
            .values()
            .filter_map(|c| c.ended.as_ref())
            .map(|(at, _, _)| ENDED_LINGER.saturating_sub(now.saturating_duration_since(*at)))
            .min()
    }

    /// The incoming calls still ringing, oldest first.
    pub fn ringing(&self) -> impl Iterator<Item = &CallView> {
        self.calls.values().filter(|c| c.ringing_popup)
    }

    /// Does this call have a window? Outgoing calls do, incoming ones once accepted (a call
    /// missed or declined at the popup never gets one).
    pub fn has_window(c: &CallView) -> bool {
        !c.window_closed
            && !c.ringing_popup
            && (c.direction == Direction::Outgoing || c.accepted || c.answered.is_some())
    }

    /// Is any call active (ringing, calling or up)? The UI ticks once a second then.
    pub fn any_live(&self) -> bool {
        self.calls.values().any(|c| !c.is_ended())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_names(_: &str) -> Option<String> {
        None
    }

    fn call_event(call: u64, state: CallState, reason: Option<EndReason>) -> Event {
        Event::Call {
            call: CallId(call),
            state,
            peer: "sip:bob@example.com".into(),
            reason,
            code: None,
            hold: None,
        }
    }

    fn incoming(m: &mut Model, call: u64, now: Instant) -> Vec<Effect> {
        m.apply(
            Event::Incoming {
                call: CallId(call),
                from: "\"Bob B\" <sip:bob@example.com>;tag=9".into(),
                account: Some(AccountId(0)),
            },
            now,
            1_000,
            &no_names,
        )
    }

    #[test]
    fn incoming_call_cancelled_by_the_caller_is_missed_and_closes_the_popup() {
        let mut m = Model::new([("sip:alice@example.com".to_string(), true)]);
        let t = Instant::now();
        let fx = incoming(&mut m, 1, t);
        assert!(
            matches!(&fx[0], Effect::NotifyIncoming { caller, account, .. }
            if caller == "Bob B (bob)" && account.as_deref() == Some("sip:alice@example.com"))
        );
        assert_eq!(m.ringing().count(), 1);
        let fx = m.apply(
            call_event(1, CallState::Ended, Some(EndReason::Cancelled)),
            t,
            2_000,
            &no_names,
        );
        assert_eq!(m.ringing().count(), 0);
        assert_eq!(fx[0], Effect::CloseNotification(CallId(1)));
        match &fx[1] {
            Effect::History(h) => {
                assert_eq!(h.outcome, Outcome::Missed);
                assert_eq!(h.name, "Bob B");
                assert_eq!(h.peer, "sip:bob@example.com");
                assert_eq!(h.account.as_deref(), Some("sip:alice@example.com"));
            }
            other => panic!("expected history, got {other:?}"),
        }
    }

    #[test]
    fn answering_from_the_popup_takes_the_notification_down_once_the_call_is_up() {
        let mut m = Model::default();
        let t = Instant::now();
        incoming(&mut m, 1, t);
        assert!(m.answer(CallId(1)).is_some());
        assert!(
            Model::has_window(&m.calls[&CallId(1)]),
            "the call window opens at once"
        );
        let fx = m.apply(call_event(1, CallState::Established, None), t, 0, &no_names);
        assert_eq!(fx, vec![Effect::CloseNotification(CallId(1))]);
        let fx = m.apply(
            call_event(1, CallState::Ended, Some(EndReason::RemoteHangup)),
            t,
            0,
            &no_names,
        );
        assert!(!fx.iter().any(|e| matches!(e, Effect::CloseNotification(_))));
    }

    #[test]
    fn declined_call_is_filed_as_rejected() {
        let mut m = Model::default();
        let t = Instant::now();
        incoming(&mut m, 1, t);
        assert_eq!(
            m.decline(CallId(1)),
            Some(Command::Reject {
                call: CallId(1),
                decline: true
            })
        );
        let fx = m.apply(
            call_event(1, CallState::Ended, Some(EndReason::Declined)),
            t,
            0,
            &no_names,
        );
        assert!(
            fx.iter()
                .any(|e| matches!(e, Effect::History(h) if h.outcome == Outcome::Rejected))
        );
    }

    #[test]
    fn answering_a_second_call_puts_the_first_on_hold() {
        let mut m = Model::default();
        let t = Instant::now();
        m.apply(call_event(1, CallState::Calling, None), t, 0, &no_names);
        m.apply(call_event(1, CallState::Established, None), t, 0, &no_names);
        incoming(&mut m, 2, t);
        assert!(m.answer(CallId(2)).is_some());
        let fx = m.apply(call_event(2, CallState::Established, None), t, 0, &no_names);
        assert_eq!(
            fx,
            vec![
                Effect::CloseNotification(CallId(2)),
                Effect::Send(Command::Hold { call: CallId(1) })
            ]
        );
    }

    #[test]
    fn answered_call_keeps_its_duration_in_history() {
        let mut m = Model::default();
        let t = Instant::now();
        m.apply(call_event(7, CallState::Calling, None), t, 0, &no_names);
        m.apply(call_event(7, CallState::Established, None), t, 0, &no_names);
        let later = t + Duration::from_secs(65);
        assert_eq!(m.calls[&CallId(7)].status_text(later), "1:05");
        assert_eq!(m.calls[&CallId(7)].brief_status(), "In call");
        assert_eq!(m.next_sweep(later), None, "nothing has ended");
        let fx = m.apply(
            call_event(7, CallState::Ended, Some(EndReason::RemoteHangup)),
            later,
            0,
            &no_names,
        );
        match &fx[..] {
            [Effect::History(h)] => {
                assert_eq!(h.outcome, Outcome::Answered);
                assert_eq!(h.direction, Direction::Outgoing);
                assert!((h.duration_s - 65.0).abs() < 0.01);
            }
            other => panic!("{other:?}"),
        }
        // The window lingers, then goes.
        m.sweep(later + Duration::from_secs(1));
        assert!(m.calls.contains_key(&CallId(7)));
        assert_eq!(
            m.next_sweep(later + Duration::from_secs(1)),
            Some(ENDED_LINGER - Duration::from_secs(1))
        );
        m.sweep(later + ENDED_LINGER);
        assert!(m.calls.is_empty());
    }

    #[test]
    fn outgoing_call_hung_up_before_answer_is_cancelled_not_failed() {
        let mut m = Model::default();
        let t = Instant::now();
        m.apply(call_event(3, CallState::Ringing, None), t, 0, &no_names);
        let fx = m.apply(
            call_event(3, CallState::Ended, Some(EndReason::Cancelled)),
            t,
            0,
            &no_names,
        );
        assert!(matches!(&fx[..], [Effect::History(h)] if h.outcome == Outcome::Cancelled));
        let fx = m.apply(
            call_event(4, CallState::Ended, Some(EndReason::Busy)),
            t,
            0,
            &no_names,
        );
        assert!(matches!(&fx[..], [Effect::History(h)] if h.outcome == Outcome::Failed));
    }

    #[test]
    fn registration_failure_shows_the_reason() {
        let mut m = Model::new([("sip:a@h".to_string(), true)]);
        m.apply(
            Event::Registration {
                account: AccountId(0),
                aor: "sip:a@h".into(),
                state: RegistrationState::Failed,
                code: Some(403),
                reason: None,
            },
            Instant::now(),
            0,
            &no_names,
        );
        assert_eq!(
            m.accounts[0].state,
            AccountState::Failed {
                reason: "the server answered 403".into()
            }
        );
    }

    #[test]
    fn contact_names_win_over_sip_display_names() {
        let mut m = Model::default();
        let names = |uri: &str| (uri == "sip:bob@example.com").then(|| "Robert".to_string());
        m.apply(
            Event::Incoming {
                call: CallId(1),
                from: "\"Bob B\" <sip:bob@example.com>".into(),
                account: None,
            },
            Instant::now(),
            0,
            &names,
        );
        assert_eq!(m.calls[&CallId(1)].name, "Robert");
    }

    #[test]
    fn peers_split_into_name_and_uri() {
        assert_eq!(
            split_peer("\"Bob\" <sip:bob@h>;tag=1"),
            (Some("Bob".into()), "sip:bob@h".into())
        );
        assert_eq!(split_peer("sip:carol@h"), (None, "sip:carol@h".into()));
        assert_eq!(uri_user("sip:carol@h;transport=tcp"), "carol");
        assert_eq!(uri_user("tel:+15551234"), "+15551234");
        assert_eq!(format_duration(Duration::from_secs(3725)), "1:02:05");
    }
}
