//! The only types the UI (or the headless front-end) and the engine share: commands in, events out.
//!
//! Everything here is plain data (serde), so the headless mode can print events as JSON lines and
//! a UI can keep a view model built from them without touching protocol state.

use crate::store::settings::Settings;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Index of an account in the settings (stable for the life of the engine).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AccountId(pub u32);

/// An engine-wide call number, never reused while the engine runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CallId(pub u64);

impl fmt::Display for CallId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What the UI asks the engine to do. Intents only: the engine owns every protocol state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Command {
    /// Dial a `sip:`/`sips:`/`tel:` URI, a user name or a number; through `account`, or the first
    /// account that matches, or directly when no account exists.
    Call {
        uri: String,
        #[serde(default)]
        account: Option<AccountId>,
    },
    /// Accept a ringing incoming call.
    Answer { call: CallId },
    /// Refuse a ringing incoming call (486 Busy Here, or 603 Decline with `decline`).
    Reject {
        call: CallId,
        #[serde(default)]
        decline: bool,
    },
    /// End a call in any state: CANCEL while calling, BYE once established, reject while ringing.
    Hangup { call: CallId },
    /// Mute (or unmute) our microphone on one call: the call keeps sending RTP, with silence.
    Mute { call: CallId, muted: bool },
    /// Put an established call on hold (re-INVITE with `a=sendonly`).
    Hold { call: CallId },
    /// Take a held call off hold (re-INVITE with `a=sendrecv`).
    Resume { call: CallId },
    /// Send DTMF digits (`0-9`, `*`, `#`, `A-D`) on an established call: RFC 4733 telephone-events
    /// in the RTP stream when the far end accepted them, SIP INFO otherwise.
    Dtmf { call: CallId, digits: String },
    /// Switch the microphone under every call, without renegotiating anything:
    /// `default`, `device:NAME`, `tone:HZ`, `wav:FILE` or `silence`.
    SetAudioInput { spec: String },
    /// Switch the speaker under every call: `default`, `device:NAME`, `wav:FILE` or `null`.
    SetAudioOutput { spec: String },
    /// Enumerate the audio devices afresh (after a device was plugged in or out): a `devices` event.
    ListDevices,
    /// (Re-)register an account now, e.g. after a failure the user wants to retry.
    Register { account: AccountId },
    /// Apply a new settings snapshot live. Accounts are compared by index (their `AccountId`):
    /// an unchanged one keeps its registration, a changed one is un-registered and started anew,
    /// a removed one is un-registered, a new one registers (if `register` is on). Call options
    /// (auto-answer, codecs, SRTP, audio processing, do-not-disturb, ring tone…) apply from the
    /// next call; `audio_in`/`audio_out`/`ring_out` switch devices at once. `listen` and
    /// `rtp_ports` take effect only after a restart (an `error` event says so).
    Reconfigure { settings: Box<Settings> },
    /// Meter the microphone (`levels` events, about 10 per second) even with no call up, for a
    /// settings page; `on: false` stops it (with no call, the engine then runs no timer).
    MonitorInput { on: bool },
    /// Play a short (1 s) 440 Hz tone through the call output, or through the ring device with
    /// `ring`, so the user can check their speaker.
    PlayTestTone {
        #[serde(default)]
        ring: bool,
    },
    /// Ask for a `Stats` event.
    Stats,
    /// Hang up every call, un-register every account, then stop.
    Quit,
}

/// Registration state of one account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegistrationState {
    Registering,
    Registered,
    Failed,
    Unregistered,
}

/// State of a call, as the UI shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallState {
    /// Outgoing: INVITE sent, no ringing yet.
    Calling,
    /// Outgoing: the far end rings (180/183). Incoming: we ring (see `Event::Incoming`).
    Ringing,
    Established,
    /// On hold, by us (`local`) and/or by the far end (`remote`): see `HoldState` in the event.
    Held,
    Ended,
}

/// Why a call ended: every call ends with one of these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// We hung up (BYE sent).
    LocalHangup,
    /// The far end hung up (BYE received).
    RemoteHangup,
    /// The caller cancelled before answer (for us: CANCEL sent or received).
    Cancelled,
    /// The callee was busy (486/600).
    Busy,
    /// The callee declined (603), or we rejected an incoming call.
    Declined,
    /// No answer or no response in time (408, timer B/H, ACK never came).
    Timeout,
    /// Any other failure: a final error response, a transport error, bad SDP.
    Error,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Incoming,
    Outgoing,
}

/// Per-call figures for the `stats` event (signalling and negotiated media).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallStats {
    pub call: CallId,
    pub direction: Direction,
    pub state: CallState,
    pub peer: String,
    /// Negotiated audio codec, e.g. `PCMU/8000`, once SDP is agreed.
    pub codec: Option<String>,
    /// Where the far end wants our RTP, from its SDP.
    pub remote_media: Option<String>,
    /// Our RTP port for this call.
    pub local_rtp_port: Option<u16>,
    /// Seconds since the call was established (0 before).
    pub duration_s: f64,
    /// Our microphone is muted on this call.
    #[serde(default)]
    pub muted: bool,
    /// The audio is SRTP (`RTP/SAVP` with SDES keys agreed).
    #[serde(default)]
    pub srtp: bool,
    /// RTP figures while the call has media.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media: Option<MediaStats>,
}

/// One call's output level for the meters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CallLevel {
    pub call: CallId,
    pub output_dbfs: f32,
}

/// One call's RTP figures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct MediaStats {
    pub packets_sent: u64,
    pub bytes_sent: u64,
    pub packets_received: u64,
    pub bytes_received: u64,
    /// Expected minus received (RFC 3550 A.3).
    pub lost: i64,
    /// Interarrival jitter (RFC 3550 A.8).
    pub jitter_ms: f64,
    /// The jitter buffer's current playout delay.
    pub jitter_buffer_ms: u32,
    /// Captured frames the hub handed to this call.
    pub frames_fanned_out: u64,
    /// RTCP reports received from the far end.
    pub rtcp_received: u64,
    /// Round-trip time from the far end's RTCP reports (LSR/DLSR), once known.
    pub rtt_ms: Option<f64>,
    /// The loss the far end reports for our stream (0.0–1.0), once known.
    pub remote_fraction_lost: Option<f64>,
    /// Received packets dropped by SRTP (failed authentication, replays); 0 without SRTP.
    #[serde(default)]
    pub srtp_failures: u64,
    /// Received RTCP packets dropped by SRTCP.
    #[serde(default)]
    pub srtcp_failures: u64,
}

/// The audio devices, opened once for the life of the engine: the counters prove it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceStats {
    pub input: String,
    pub output: String,
    pub input_opens: u32,
    pub output_opens: u32,
    pub frames_captured: u64,
    pub frames_played: u64,
    /// Encodes done: one per codec in use per captured frame, however many calls share it.
    pub encodes: u64,
    /// The ring device (where incoming calls ring); empty when they ring on the call output.
    #[serde(default)]
    pub ring_output: String,
    /// How many times a ring device was opened (1 for the life of the engine when one is set).
    #[serde(default)]
    pub ring_opens: u32,
    /// Frames written to the ring device.
    #[serde(default)]
    pub ring_frames_played: u64,
    /// Echo cancellation, noise suppression and AGC are applied to the microphone now (the
    /// setting is on and the input is a real microphone).
    #[serde(default)]
    pub audio_processing: bool,
    /// The input is metered with no call (`MonitorInput`).
    #[serde(default)]
    pub monitoring: bool,
    /// The echo canceller's delay hint (output + input latency, from the devices), while it
    /// processes a real microphone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub echo_delay_ms: Option<u32>,
    /// The rate the audio processing runs at, while it processes a real microphone: 16000 when
    /// every call is narrowband or wideband (G.711), 48000 with a full-band (Opus) call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio_processing_rate_hz: Option<u32>,
}

/// What the engine tells the UI.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    Registration {
        account: AccountId,
        /// The account's address of record, e.g. `sip:carol@127.0.0.1`.
        aor: String,
        state: RegistrationState,
        /// The SIP status code of the last response, if any.
        #[serde(skip_serializing_if = "Option::is_none")]
        code: Option<u16>,
        /// A human-readable reason when the state is `failed`.
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// A new incoming call is ringing.
    Incoming {
        call: CallId,
        /// The caller as the From header shows it (display name and URI).
        from: String,
        /// The account that was called, if the request matched one.
        #[serde(skip_serializing_if = "Option::is_none")]
        account: Option<AccountId>,
    },
    /// An incoming call was refused at once, without ringing (do-not-disturb): for the history
    /// as a missed call. The call id is spent; no `call` event follows.
    IncomingRefused {
        call: CallId,
        /// The caller as the From header shows it.
        from: String,
        /// The account that was called, if the request matched one.
        #[serde(skip_serializing_if = "Option::is_none")]
        account: Option<AccountId>,
        /// The SIP status sent (486).
        code: u16,
        /// Why, e.g. `do-not-disturb`.
        reason: String,
    },
    /// A call changed state.
    Call {
        call: CallId,
        state: CallState,
        /// The far end's URI.
        peer: String,
        /// Set when `state` is `ended`.
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<EndReason>,
        /// The SIP status code behind the change, where there is one (e.g. 486).
        #[serde(skip_serializing_if = "Option::is_none")]
        code: Option<u16>,
        /// Hold flags while `held`.
        #[serde(skip_serializing_if = "Option::is_none")]
        hold: Option<HoldState>,
    },
    /// The far end pressed a key (RFC 4733 telephone-event, or SIP INFO).
    Dtmf {
        call: CallId,
        digit: char,
        duration_ms: u32,
    },
    /// Audio levels, about 10 per second while a call has media or the input is monitored
    /// (`MonitorInput`): the microphone (after capture) and what each call plays, in dBFS (-120
    /// is silence). For meters.
    Levels {
        input_dbfs: f32,
        calls: Vec<CallLevel>,
    },
    /// The audio devices present now (names usable as `device:NAME`), answering `ListDevices`.
    Devices {
        inputs: Vec<String>,
        outputs: Vec<String>,
    },
    Stats {
        calls: Vec<CallStats>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        devices: Option<DeviceStats>,
    },
    /// Something the user should see: a bad command, a broken setting, a transport failure.
    Error { message: String },
    /// The engine has stopped (after `Quit`): nothing more will come.
    Stopped,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldState {
    pub local: bool,
    pub remote: bool,
}
