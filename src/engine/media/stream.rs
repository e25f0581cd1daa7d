//! One call's audio stream: its RTP sender (own SSRC, sequence, timestamps), receiver, jitter
//! buffer and decoder. The encoder is not here: the hub encodes once per codec and hands every
//! stream of that codec the same payload.

use super::codecs::{AudioCodec, codec_for};
use super::devices::{FRAME_SAMPLES, HUB_RATE};
use super::jitter::{JitterBuffer, JitterConfig, Playout};
use super::resample::Resampler;
use super::rtp_session::{
    DtmfDigit, NtpClock, RemoteReport, RtcpTimer, RtpReceiver, RtpSender, RtpSession,
};
use super::srtp::{CryptoAttribute, SrtpContext};
use crate::api::MediaStats;
use crate::engine::sip::sdp::CodecSpec;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Instant, SystemTime};

/// What the SIP side agreed for a call's audio, as the media side needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaParams {
    /// Our RTP port (the socket is bound by the runtime).
    pub local_port: u16,
    /// Where the far end wants our RTP; None while it gave no address (port 0, c=0.0.0.0).
    pub remote: Option<SocketAddr>,
    /// Where its RTCP goes (`a=rtcp`, or RTP port + 1, or the RTP address with rtcp-mux).
    pub remote_rtcp: Option<SocketAddr>,
    /// RTCP shares the RTP port (RFC 5761).
    pub rtcp_mux: bool,
    /// The codec with the payload number to send and expect.
    pub codec: CodecSpec,
    pub dtmf: Option<CodecSpec>,
    /// Send our audio (not on hold either way).
    pub send: bool,
    /// Send silence instead of the microphone (the call keeps its RTP flowing).
    pub muted: bool,
    /// Play theirs (we did not put the call on hold).
    pub recv: bool,
    /// The SDES keys agreed in SDP when the stream is `RTP/SAVP`: every packet sent is
    /// protected, every packet received must authenticate.
    pub srtp: Option<SrtpParams>,
}

/// The two `a=crypto` attributes of an agreed `RTP/SAVP` stream (same suite). Their `Debug`
/// never shows the keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrtpParams {
    /// Ours: what we protect our packets with (the line in our SDP).
    pub local: CryptoAttribute,
    /// Theirs: what their packets are protected with (the line in the peer's SDP).
    pub remote: CryptoAttribute,
}

/// Codec identity for encode-once fan-out: name and clock (payload numbers may differ per call).
pub type CodecKey = (String, u32);

pub fn codec_key(spec: &CodecSpec) -> CodecKey {
    (spec.name.to_ascii_lowercase(), spec.clock)
}

pub struct Stream {
    pub params: MediaParams,
    pub key: CodecKey,
    /// RTP sender and receiver with their RTCP reporting.
    session: RtpSession,
    rtcp_timer: RtcpTimer,
    /// What the far end last reported about our stream (loss, jitter, round-trip time).
    remote_report: Option<RemoteReport>,
    rtcp_received: u64,
    decoder: Box<dyn AudioCodec + Send>,
    jitter: JitterBuffer,
    up: Resampler,
    pcm: Vec<i16>,
    samples_per_frame: u32,
    started: bool,
    pub frames_fanned_out: u64,
    /// Digits waiting to be sent as RFC 4733 events, one after the other.
    dtmf_queue: VecDeque<char>,
    /// The current digit's packets, each with the tick (20 ms) it is due at.
    dtmf_packets: VecDeque<(u32, Vec<u8>)>,
    dtmf_tick: u32,
    /// Audio frames to send between two digits.
    dtmf_gap: u32,
    /// Digits the far end pressed, for the engine to report.
    pub received_dtmf: Vec<DtmfDigit>,
    srtp: Option<SrtpContext>,
    /// Received packets dropped by SRTP: failed authentication, replays, garbage.
    srtp_failures: u64,
    /// Received RTCP packets dropped by SRTCP.
    srtcp_failures: u64,
}

/// How long we press a key, and the pause after it (audio flows in the pause).
const DTMF_TONE_MS: u32 = 100;
const DTMF_GAP_FRAMES: u32 = 3;

impl Stream {
    /// A new stream; `now` and `wall` anchor the RTCP sender reports' NTP time.
    pub fn new(params: MediaParams, now: Instant, wall: SystemTime) -> Result<Stream, String> {
        let decoder = codec_for(&params.codec)
            .ok_or_else(|| format!("no codec for {}", params.codec.label()))?;
        let clock = decoder.clock_rate();
        let srtp = params
            .srtp
            .as_ref()
            .map(|s| SrtpContext::from_attributes(&s.local, &s.remote))
            .transpose()
            .map_err(|e| format!("SRTP: {e}"))?;
        let mut pts = vec![params.codec.pt];
        if let Some(d) = &params.dtmf {
            pts.push(d.pt);
        }
        Ok(Stream {
            key: codec_key(&params.codec),
            session: RtpSession::new(
                RtpSender::new(clock),
                RtpReceiver::new(clock, &pts, params.dtmf.as_ref().map(|d| d.pt)),
                &format!("dialtone-{:08x}", rand::random::<u32>()),
                NtpClock::new(now, wall),
            ),
            rtcp_timer: RtcpTimer::new(now),
            remote_report: None,
            rtcp_received: 0,
            samples_per_frame: decoder.frame_samples() as u32,
            jitter: JitterBuffer::new(JitterConfig {
                clock_rate: clock,
                // Start at one frame: a quiet link plays with the least delay (mouth-to-ear),
                // and measured jitter grows the target at once.
                initial_delay_ms: 20,
                ..JitterConfig::default()
            }),
            up: Resampler::new(clock, HUB_RATE).map_err(|e| e.to_string())?,
            pcm: Vec::with_capacity(FRAME_SAMPLES),
            decoder,
            params,
            started: false,
            frames_fanned_out: 0,
            dtmf_queue: VecDeque::new(),
            dtmf_packets: VecDeque::new(),
            dtmf_tick: 0,
            dtmf_gap: 0,
            received_dtmf: Vec::new(),
            srtp,
            srtp_failures: 0,
            srtcp_failures: 0,
        })
    }

    /// New parameters for the same call (hold, resume, a new remote address or codec).
    /// Returns false when the codec or the SRTP keys changed: the caller builds a new stream
    /// (same keys: the SRTP contexts, with their rollover counters and replay windows, go on).
    pub fn update(&mut self, params: MediaParams) -> bool {
        if codec_key(&params.codec) != self.key || params.srtp != self.params.srtp {
            return false;
        }
        self.params = params;
        true
    }

    /// The sample rate of the codec's audio (its PCM side).
    pub fn audio_rate(&self) -> u32 {
        self.decoder.clock_rate()
    }

    /// Queues DTMF digits; false when no telephone-event was agreed.
    pub fn queue_dtmf(&mut self, digits: &str) -> bool {
        if self.params.dtmf.is_none() {
            return false;
        }
        self.dtmf_queue.extend(digits.chars());
        true
    }

    /// This tick's RTP packets, appended to `out`: the hub frame's payload in our own RTP stream,
    /// or while a key is pressed its telephone-event packets instead. Returns where they go.
    pub fn outgoing(
        &mut self,
        payload: &[u8],
        now: Instant,
        out: &mut Vec<Vec<u8>>,
    ) -> Option<SocketAddr> {
        let remote = self.params.remote.filter(|_| self.params.send)?;
        if self.dtmf_packets.is_empty() && self.dtmf_gap == 0 {
            self.start_next_digit(now);
        }
        if !self.dtmf_packets.is_empty() {
            while let Some((due, _)) = self.dtmf_packets.front() {
                if *due > self.dtmf_tick {
                    break;
                }
                if let Some((_, bytes)) = self.dtmf_packets.pop_front() {
                    out.extend(self.seal_rtp(bytes));
                }
            }
            self.dtmf_tick += 1;
            if self.dtmf_packets.is_empty() {
                self.dtmf_gap = DTMF_GAP_FRAMES;
            }
            return Some(remote);
        }
        self.dtmf_gap = self.dtmf_gap.saturating_sub(1);
        let marker = !self.started;
        self.started = true;
        self.frames_fanned_out += 1;
        let pkt = self.session.sender.packetize(
            self.params.codec.pt,
            self.samples_per_frame,
            payload,
            marker,
            now,
        );
        out.extend(self.seal_rtp(pkt));
        Some(remote)
    }

    /// SRTP-protects an RTP packet when the call is encrypted; None when that fails (not sent).
    fn seal_rtp(&mut self, pkt: Vec<u8>) -> Option<Vec<u8>> {
        match self.srtp.as_mut() {
            None => Some(pkt),
            Some(ctx) => ctx
                .protect_rtp(&pkt)
                .map_err(|e| tracing::debug!("SRTP protect failed, packet not sent: {e}"))
                .ok(),
        }
    }

    /// SRTCP-protects an RTCP packet when the call is encrypted.
    fn seal_rtcp(&mut self, pkt: Vec<u8>) -> Option<Vec<u8>> {
        match self.srtp.as_mut() {
            None => Some(pkt),
            Some(ctx) => ctx
                .protect_rtcp(&pkt)
                .map_err(|e| tracing::debug!("SRTCP protect failed, report not sent: {e}"))
                .ok(),
        }
    }

    fn start_next_digit(&mut self, now: Instant) {
        let Some(ev) = self.params.dtmf.clone() else {
            self.dtmf_queue.clear();
            return;
        };
        while let Some(key) = self.dtmf_queue.pop_front() {
            let per_ms = ev.clock / 1000;
            let duration = u16::try_from(per_ms * DTMF_TONE_MS).unwrap_or(u16::MAX);
            let step = u16::try_from(per_ms * 20).unwrap_or(u16::MAX);
            if let Some(packets) = self
                .session
                .sender
                .dtmf(ev.pt, key, duration, step, 10, now)
            {
                self.dtmf_packets = packets
                    .into_iter()
                    .map(|p| ((p.at.as_millis() / 20) as u32, p.bytes))
                    .collect();
                self.dtmf_tick = 0;
                return;
            }
        }
    }

    /// An RTP datagram arrived on the call's socket (RTCP too, when it is multiplexed).
    pub fn on_rtp(&mut self, bytes: &[u8], now: Instant) {
        // RFC 5761 demultiplexing: RTCP packet types 192-223 sit where RTP has M+PT.
        if bytes.get(1).is_some_and(|b| (192..=223).contains(b)) {
            return self.on_rtcp(bytes, now);
        }
        let clear;
        let bytes = match self.srtp.as_mut() {
            None => bytes,
            Some(ctx) => match ctx.unprotect_rtp(bytes) {
                Ok(b) => {
                    clear = b;
                    &clear
                }
                Err(e) => {
                    self.srtp_failures += 1;
                    tracing::debug!("dropping SRTP packet: {e}");
                    return;
                }
            },
        };
        match self.session.receiver.receive(bytes, now) {
            Ok(r) => {
                if r.ssrc_changed {
                    self.jitter.reset();
                }
                if let Some(d) = r.dtmf {
                    self.received_dtmf.push(d);
                }
                if let Some(p) = r.media.filter(|_| !r.duplicate)
                    && p.payload_type == self.params.codec.pt
                {
                    self.jitter
                        .push(p.sequence, p.timestamp, p.payload.to_vec(), now);
                }
            }
            Err(e) => tracing::debug!("dropping RTP: {e}"),
        }
    }

    /// Appends one hub frame (48 kHz, `FRAME_SAMPLES`) of this call's received audio to `out`.
    pub fn playout(&mut self, now: Instant, out: &mut Vec<i16>) {
        self.pcm.clear();
        let result = match self.jitter.pop(now) {
            Playout::Frame(payload) => self.decoder.decode(&payload, &mut self.pcm),
            Playout::Lost => {
                let next = self.jitter.next_payload().map(<[u8]>::to_vec);
                match next {
                    Some(n) => match self.decoder.decode_fec(&n, &mut self.pcm) {
                        Ok(true) => Ok(()),
                        _ => {
                            self.decoder.conceal(&mut self.pcm);
                            Ok(())
                        }
                    },
                    None => {
                        self.decoder.conceal(&mut self.pcm);
                        Ok(())
                    }
                }
            }
            Playout::Empty => Ok(()),
        };
        if let Err(e) = result {
            tracing::debug!("decode failed: {e}");
            self.pcm.clear();
        }
        let start = out.len();
        if self.pcm.is_empty() && !self.up.is_identity() {
            // Nothing to play: silence through the converter too, so that its filter keeps the
            // timeline (the end of the last sound, then silence) for when audio comes back.
            self.pcm.resize(self.samples_per_frame as usize, 0);
        }
        self.up.process(&self.pcm, out);
        // Exactly one hub frame: pad (nothing to play) or trim (rounding).
        out.resize(start + FRAME_SAMPLES, 0);
    }

    /// An RTCP compound packet from the far end.
    pub fn on_rtcp(&mut self, bytes: &[u8], now: Instant) {
        let clear;
        let bytes = match self.srtp.as_mut() {
            None => bytes,
            Some(ctx) => match ctx.unprotect_rtcp(bytes) {
                Ok(b) => {
                    clear = b;
                    &clear
                }
                Err(e) => {
                    // Dropped, as RFC 3711 requires for anything unauthenticated. baresip sends
                    // one such packet per call: its RTCP "NAT pinhole" APP (PING/PONG) goes out
                    // once in the clear before its SRTP filter is installed (then again as
                    // SRTCP, which passes); see tests/peers_dialtone.rs.
                    self.srtcp_failures += 1;
                    tracing::debug!("dropping SRTCP packet: {e}");
                    return;
                }
            },
        };
        match self.session.receive_rtcp(bytes, now) {
            Ok(info) => {
                self.rtcp_received += 1;
                if let Some(r) = info.report {
                    self.remote_report = Some(r);
                }
            }
            Err(e) => tracing::debug!("dropping RTCP: {e}"),
        }
    }

    /// The RTCP report due now, if one is, with where it goes.
    pub fn rtcp_due(&mut self, now: Instant) -> Option<(SocketAddr, Vec<u8>)> {
        let to = self.params.remote_rtcp?;
        if !self.rtcp_timer.poll(now) {
            return None;
        }
        match self.session.build_report(now) {
            Ok(bytes) => self.seal_rtcp(bytes).map(|b| (to, b)),
            Err(e) => {
                tracing::warn!("cannot build an RTCP report: {e}");
                None
            }
        }
    }

    /// An RTCP BYE for the end of the call.
    pub fn rtcp_bye(&mut self, now: Instant) -> Option<(SocketAddr, Vec<u8>)> {
        let to = self.params.remote_rtcp?;
        let bye = self.session.build_bye(now).ok()?;
        self.seal_rtcp(bye).map(|b| (to, b))
    }

    pub fn stats(&self) -> MediaStats {
        let r = self.session.receiver.stats();
        let j = self.jitter.stats();
        MediaStats {
            packets_sent: u64::from(self.session.sender.packets_sent()),
            bytes_sent: u64::from(self.session.sender.octets_sent()),
            packets_received: r.packets,
            bytes_received: r.bytes,
            lost: r.lost,
            jitter_ms: f64::from(r.jitter) * 1000.0 / f64::from(self.decoder.clock_rate()),
            jitter_buffer_ms: j.delay_ms,
            frames_fanned_out: self.frames_fanned_out,
            rtcp_received: self.rtcp_received,
            rtt_ms: self
                .remote_report
                .as_ref()
                .and_then(|r| r.rtt)
                .map(|d| d.as_secs_f64() * 1000.0),
            remote_fraction_lost: self.remote_report.as_ref().map(|r| r.fraction_lost),
            srtp_failures: self.srtp_failures,
            srtcp_failures: self.srtcp_failures,
        }
    }
}
