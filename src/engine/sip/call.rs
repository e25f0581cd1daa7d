//! One call: its phase, its dialog, its SDP state and the timers only a call has (2xx
//! retransmission until ACK, the wait for 487 after CANCEL, the 491 glare back-off).
//!
//! Phase changes go through `Call::set_phase`, which checks the transition and reports the event
//! the UI sees; the user agent (ua.rs) drives the SIP side.

use super::client_auth::ClientAuth;
use super::dialog::Dialog;
use super::message::Message;
use super::sdp::{self, LocalMedia, MediaDirection, Negotiated, SdpSession, SessionDescription};
use super::transport::Target;
use crate::api::{AccountId, CallId, CallState, CallStats, Direction, EndReason, Event, HoldState};
use crate::engine::media::srtp::CryptoAttribute;
use crate::engine::media::stream::{MediaParams, SrtpParams};
use crate::store::settings::MediaEncryption;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Outgoing INVITE sent, no provisional response yet.
    Calling,
    /// Outgoing, the far end rings; or incoming, we ring.
    Ringing,
    Established,
    Ended,
}

/// A 2xx to an INVITE that we retransmit until the ACK comes (RFC 3261 13.3.1.4).
#[derive(Debug)]
pub struct PendingOk {
    pub bytes: Vec<u8>,
    pub target: Target,
    pub next_at: Instant,
    pub interval: Duration,
    pub give_up_at: Instant,
    /// The CSeq number of the INVITE it answers (the ACK carries the same).
    pub cseq: u32,
}

/// A re-INVITE we sent (hold / resume) and wait on.
#[derive(Debug)]
pub struct PendingReinvite {
    pub branch: String,
    pub hold: bool,
    pub request: Message,
    /// No final answer by then: CANCEL it and keep the call as it was.
    pub deadline: Instant,
}

/// How long an outgoing call may ring unanswered before we CANCEL it as `timeout` (proxies
/// use about the same bound, RFC 3261 timer C).
pub const RING_LIMIT: Duration = Duration::from_secs(180);

#[derive(Debug)]
pub struct Call {
    pub id: CallId,
    pub direction: Direction,
    /// The account the call belongs to (None for a direct call, or once the account is gone).
    pub account: Option<AccountId>,
    /// The far end, for people: `Display <sip:…>`.
    pub peer: String,
    pub phase: Phase,
    pub hold: HoldState,
    /// Our microphone is muted on this call (silence is sent).
    pub muted: bool,
    pub created_at: Instant,
    pub established_at: Option<Instant>,
    /// Transport and first hop of requests outside the dialog (INVITE, CANCEL).
    pub target: Target,

    // ---- outgoing ----
    /// The INVITE as last sent (auth retries send a new one).
    pub invite: Option<Message>,
    pub invite_branch: Option<String>,
    pub provisional_seen: bool,
    /// Hang-up asked before any provisional response: CANCEL as soon as one arrives.
    pub cancel_pending: bool,
    pub cancelled: bool,
    /// After CANCEL, give up waiting for the 487 at this time.
    pub cancel_deadline: Option<Instant>,
    /// Outgoing and ringing: CANCEL with reason `timeout` at this time (`RING_LIMIT`).
    pub ring_deadline: Option<Instant>,
    pub auth: Option<ClientAuth>,
    /// Our ACK for the 2xx, sent again when the 2xx is retransmitted.
    pub ack: Option<(Vec<u8>, Target)>,

    // ---- incoming ----
    /// The INVITE we received, and where its responses go.
    pub invite_in: Option<(Message, Target)>,
    /// Key of the INVITE server transaction.
    pub server_key: Option<String>,
    pub local_tag: String,

    pub dialog: Option<Dialog>,
    pub pending_ok: Option<PendingOk>,
    pub reinvite: Option<PendingReinvite>,
    /// A 491 (glare) told us to try the hold/resume again at this time.
    pub reinvite_retry: Option<(Instant, bool)>,

    // ---- media description ----
    pub sdp: SdpSession,
    pub local_media: LocalMedia,
    pub negotiated: Option<Negotiated>,
    /// The SRTP setting that applies (the account's, else the engine's).
    pub encryption: MediaEncryption,
    /// The SDES keys agreed for an `RTP/SAVP` stream; None for plain RTP.
    pub srtp: Option<SrtpParams>,
    /// The remote offer was in the ACK (we offered in the 200: late offer).
    pub awaiting_ack_answer: bool,
    /// The last SIP code that changed the call (for the event).
    pub last_code: Option<u16>,
    /// The call ended; the reason.
    pub end_reason: Option<EndReason>,
}

impl Call {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: CallId,
        direction: Direction,
        account: Option<AccountId>,
        peer: String,
        target: Target,
        local_media: LocalMedia,
        now: Instant,
    ) -> Call {
        Call {
            id,
            direction,
            account,
            peer,
            phase: match direction {
                Direction::Outgoing => Phase::Calling,
                Direction::Incoming => Phase::Ringing,
            },
            hold: HoldState {
                local: false,
                remote: false,
            },
            muted: false,
            created_at: now,
            established_at: None,
            target,
            invite: None,
            invite_branch: None,
            provisional_seen: false,
            cancel_pending: false,
            cancelled: false,
            cancel_deadline: None,
            ring_deadline: None,
            auth: None,
            ack: None,
            invite_in: None,
            server_key: None,
            local_tag: format!("{:08x}", rand::random::<u32>()),
            dialog: None,
            pending_ok: None,
            reinvite: None,
            reinvite_retry: None,
            sdp: SdpSession {
                id: rand::random::<u32>() as u64,
                version: 1,
            },
            local_media,
            negotiated: None,
            encryption: MediaEncryption::None,
            srtp: None,
            awaiting_ack_answer: false,
            last_code: None,
            end_reason: None,
        }
    }

    /// The state the UI shows.
    pub fn ui_state(&self) -> CallState {
        match self.phase {
            Phase::Calling => CallState::Calling,
            Phase::Ringing => CallState::Ringing,
            Phase::Established if self.hold.local || self.hold.remote => CallState::Held,
            Phase::Established => CallState::Established,
            Phase::Ended => CallState::Ended,
        }
    }

    /// The one place a call changes phase. Returns the event to report, or None when the change
    /// is not allowed (ended calls stay ended) or changes nothing the UI sees.
    pub fn set_phase(&mut self, to: Phase, code: Option<u16>, now: Instant) -> Option<Event> {
        let from = self.phase;
        let allowed = matches!(
            (from, to),
            (
                Phase::Calling,
                Phase::Ringing | Phase::Established | Phase::Ended
            ) | (
                Phase::Ringing,
                Phase::Ringing | Phase::Established | Phase::Ended
            ) | (Phase::Established, Phase::Established | Phase::Ended)
        );
        if !allowed {
            return None;
        }
        let before = self.ui_state();
        self.phase = to;
        if code.is_some() {
            self.last_code = code;
        }
        if to == Phase::Established && self.established_at.is_none() {
            self.established_at = Some(now);
        }
        let after = self.ui_state();
        if before == after && from == to {
            return None;
        }
        tracing::info!(call = %self.id, "call {:?} -> {:?} (code {:?})", from, to, code);
        Some(self.event())
    }

    /// Ends the call with a reason (once).
    pub fn end(&mut self, reason: EndReason, code: Option<u16>, now: Instant) -> Option<Event> {
        if self.phase == Phase::Ended {
            return None;
        }
        self.end_reason = Some(reason.clone());
        self.last_code = code;
        self.pending_ok = None;
        self.reinvite = None;
        self.reinvite_retry = None;
        // cancel_deadline stays: a cancelled call still waits (a bounded time) for the 487.
        tracing::info!(call = %self.id, "call ended: {reason:?} (code {code:?})");
        self.set_phase(Phase::Ended, code, now)
    }

    /// The `call` event for the current state.
    pub fn event(&self) -> Event {
        let state = self.ui_state();
        Event::Call {
            call: self.id,
            state,
            peer: self.peer.clone(),
            reason: (state == CallState::Ended)
                .then(|| self.end_reason.clone())
                .flatten(),
            code: self.last_code,
            hold: (state == CallState::Held).then_some(self.hold),
        }
    }

    /// The direction we put in our SDP: sendonly while we hold, sendrecv otherwise.
    pub fn local_direction(&self) -> MediaDirection {
        if self.hold.local {
            MediaDirection::SendOnly
        } else {
            MediaDirection::SendRecv
        }
    }

    pub fn stats(&self, now: Instant) -> CallStats {
        CallStats {
            call: self.id,
            direction: self.direction,
            state: self.ui_state(),
            peer: self.peer.clone(),
            codec: self.negotiated.as_ref().map(|n| n.codec.label()),
            remote_media: self
                .negotiated
                .as_ref()
                .and_then(|n| n.remote_rtp)
                .map(|a| a.to_string()),
            local_rtp_port: Some(self.local_media.port),
            srtp: self.srtp.is_some(),
            duration_s: self
                .established_at
                .filter(|_| self.phase == Phase::Established)
                .map(|t| now.saturating_duration_since(t).as_secs_f64())
                .unwrap_or(0.0),
            media: None,
            muted: self.muted,
        }
    }

    /// The media this call should have now: none before it is established or without an agreed
    /// SDP; no sending while either side holds, no playing while we hold.
    pub fn media_params(&self) -> Option<MediaParams> {
        let n = self.negotiated.as_ref()?;
        let early = self.phase == Phase::Ringing && self.direction == Direction::Outgoing;
        let (send, recv, srtp) = if early {
            // Early media (a 183 with SDP): play what the far end sends, send nothing yet; over
            // SRTP only with keys agreed from that SDP (none is kept before the answer).
            let srtp = agree_srtp(&self.local_media, self.encryption, n).ok()?.1;
            (false, true, srtp)
        } else if self.phase == Phase::Established {
            let send = !self.hold.local && !self.hold.remote;
            (send, !self.hold.local, self.srtp.clone())
        } else {
            return None;
        };
        Some(MediaParams {
            local_port: self.local_media.port,
            remote: n.remote_rtp,
            remote_rtcp: n.remote_rtcp,
            rtcp_mux: n.rtcp_mux,
            codec: n.codec.clone(),
            dtmf: n.dtmf.clone(),
            send,
            recv,
            muted: self.muted,
            srtp,
        })
    }

    /// Takes the result of an offer/answer exchange (either way round), with its SRTP keys
    /// (see [`agree_srtp`]). On an error nothing changes.
    pub fn apply_negotiated(&mut self, n: Negotiated) -> Result<(), String> {
        let (crypto, srtp) = agree_srtp(&self.local_media, self.encryption, &n)?;
        self.local_media.crypto = crypto;
        self.srtp = srtp;
        self.negotiated = Some(n);
        Ok(())
    }

    /// Our answer to the peer's `offer`, checked (codecs, SRTP policy and keys) but not yet
    /// taken: [`Call::take_answer`] does that. An `RTP/SAVP` offer is answered with SRTP
    /// whatever the setting: fresh keys are made when we have none.
    pub fn prepare_answer(
        &self,
        offer: &SessionDescription,
        dir: MediaDirection,
    ) -> Result<PreparedAnswer, String> {
        let mut local = self.local_media.clone();
        if local.crypto.is_empty() && offer.media.iter().any(|m| m.is_savp()) {
            local.crypto = CryptoAttribute::offer()
                .map_err(|e| e.to_string())?
                .iter()
                .map(CryptoAttribute::value)
                .collect();
        }
        let mut sdp = self.sdp;
        let (text, negotiated) =
            sdp::create_answer(offer, &local, &mut sdp, dir).map_err(|e| e.to_string())?;
        let (crypto, srtp) = agree_srtp(&local, self.encryption, &negotiated)?;
        local.crypto = crypto;
        Ok(PreparedAnswer {
            text,
            sdp,
            local,
            negotiated,
            srtp,
        })
    }

    /// Takes a prepared answer: its SDP state, keys and negotiated media. Returns the body.
    pub fn take_answer(&mut self, a: PreparedAnswer) -> String {
        self.sdp = a.sdp;
        self.local_media = a.local;
        self.srtp = a.srtp;
        self.negotiated = Some(a.negotiated);
        a.text
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        [
            self.pending_ok
                .as_ref()
                .map(|p| p.next_at.min(p.give_up_at)),
            self.cancel_deadline,
            self.ring_deadline
                .filter(|_| matches!(self.phase, Phase::Calling | Phase::Ringing)),
            self.reinvite.as_ref().map(|r| r.deadline),
            self.reinvite_retry.map(|(t, _)| t),
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

/// An answer made by [`Call::prepare_answer`], not yet part of the call.
pub struct PreparedAnswer {
    text: String,
    sdp: SdpSession,
    local: LocalMedia,
    negotiated: Negotiated,
    srtp: Option<SrtpParams>,
}

/// The SRTP outcome of an exchange: our `a=crypto` lines from now on, and the agreed keys.
///
/// `RTP/SAVP`: the peer's first usable `a=crypto` is matched by suite to one of `local.crypto`;
/// ours is re-tagged with the peer's tag and becomes our only line, so later offers (hold,
/// resume) carry the same key. Plain RTP: refused when SRTP is mandatory, else our lines are
/// dropped so that later offers are plain too. Error messages name no key.
pub fn agree_srtp(
    local: &LocalMedia,
    encryption: MediaEncryption,
    n: &Negotiated,
) -> Result<(Vec<String>, Option<SrtpParams>), String> {
    if !n.srtp {
        if encryption.mandatory() {
            return Err(
                "the far end did not agree to SRTP (plain RTP/AVP) and SRTP is mandatory".into(),
            );
        }
        return Ok((Vec::new(), None));
    }
    let ours: Vec<CryptoAttribute> = local
        .crypto
        .iter()
        .filter_map(|l| CryptoAttribute::parse(l).ok())
        .collect();
    if ours.is_empty() {
        return Err("the far end uses RTP/SAVP but we offered plain RTP".into());
    }
    let (local, remote) = n
        .srtp_crypto
        .iter()
        .filter_map(|l| CryptoAttribute::parse(l).ok())
        .find_map(|theirs| {
            let mut mine = ours.iter().find(|o| o.suite == theirs.suite)?.clone();
            mine.tag = theirs.tag;
            Some((mine, theirs))
        })
        .ok_or(
            "no usable a=crypto (AES_CM_128_HMAC_SHA1_80 or _32 with one inline key) in the \
             far end's RTP/SAVP description",
        )?;
    Ok((vec![local.value()], Some(SrtpParams { local, remote })))
}
