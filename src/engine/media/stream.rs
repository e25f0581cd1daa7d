//! One call's audio stream: its RTP sender (own SSRC, sequence, timestamps), receiver, jitter
//! buffer and decoder. The encoder is not here: the hub encodes once per codec and hands every
//! stream of that codec the same payload.

use super::codecs::{AudioCodec, codec_for};
use super::devices::{FRAME_SAMPLES, HUB_RATE};
use super::jitter::{JitterBuffer, JitterConfig, Playout};
use super::resample::Resampler;
use super::rtp_session::{RtpReceiver, RtpSender};
use super::srtp::{CryptoAttribute, SrtpContext};
use crate::api::MediaStats;
use crate::engine::sip::sdp::CodecSpec;
use std::net::SocketAddr;
use std::time::Instant;

/// What the SIP side agreed for a call's audio, as the media side needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaParams {
    /// Our RTP port (the socket is bound by the runtime).
    pub local_port: u16,
    /// Where the far end wants our RTP; None while it gave no address (port 0, c=0.0.0.0).
    pub remote: Option<SocketAddr>,
    /// The codec with the payload number to send and expect.
    pub codec: CodecSpec,
    pub dtmf: Option<CodecSpec>,
    /// Send our audio (not on hold either way).
    pub send: bool,
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
    sender: RtpSender,
    receiver: RtpReceiver,
    decoder: Box<dyn AudioCodec + Send>,
    jitter: JitterBuffer,
    up: Resampler,
    pcm: Vec<i16>,
    samples_per_frame: u32,
    started: bool,
    pub frames_fanned_out: u64,
    srtp: Option<SrtpContext>,
    /// Received packets dropped by SRTP: failed authentication, replays, garbage.
    srtp_failures: u64,
}

impl Stream {
    pub fn new(params: MediaParams) -> Result<Stream, String> {
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
            sender: RtpSender::new(clock),
            receiver: RtpReceiver::new(clock, &pts, params.dtmf.as_ref().map(|d| d.pt)),
            samples_per_frame: decoder.frame_samples() as u32,
            jitter: JitterBuffer::new(JitterConfig {
                clock_rate: clock,
                ..JitterConfig::default()
            }),
            up: Resampler::new(clock, HUB_RATE),
            pcm: Vec::with_capacity(FRAME_SAMPLES),
            decoder,
            params,
            started: false,
            frames_fanned_out: 0,
            srtp,
            srtp_failures: 0,
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

    /// The RTP packet carrying this hub frame's payload, if we send to someone.
    pub fn packetize(&mut self, payload: &[u8], now: Instant) -> Option<(SocketAddr, Vec<u8>)> {
        let remote = self.params.remote.filter(|_| self.params.send)?;
        let marker = !self.started;
        self.started = true;
        self.frames_fanned_out += 1;
        let pkt = self.sender.packetize(
            self.params.codec.pt,
            self.samples_per_frame,
            payload,
            marker,
            now,
        );
        match self.srtp.as_mut() {
            None => Some((remote, pkt)),
            Some(ctx) => match ctx.protect_rtp(&pkt) {
                Ok(protected) => Some((remote, protected)),
                Err(e) => {
                    tracing::debug!("SRTP protect failed, packet not sent: {e}");
                    None
                }
            },
        }
    }

    /// An RTP datagram arrived on the call's socket.
    pub fn on_rtp(&mut self, bytes: &[u8], now: Instant) {
        let clear;
        let bytes = match self.srtp.as_mut() {
            None => bytes,
            // RTCP multiplexed on the RTP port (RFC 5761 4: packet types 192-223) is not used
            // yet; leave it alone rather than count it as an SRTP failure.
            Some(_) if bytes.len() > 1 && (192..=223).contains(&bytes[1]) => return,
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
        match self.receiver.receive(bytes, now) {
            Ok(r) => {
                if r.ssrc_changed {
                    self.jitter.reset();
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
        if !self.pcm.is_empty() {
            self.up.process(&self.pcm, out);
        }
        // Exactly one hub frame: pad (nothing to play) or trim (rounding).
        out.resize(start + FRAME_SAMPLES, 0);
    }

    pub fn stats(&self) -> MediaStats {
        let r = self.receiver.stats();
        let j = self.jitter.stats();
        MediaStats {
            packets_sent: u64::from(self.sender.packets_sent()),
            bytes_sent: u64::from(self.sender.octets_sent()),
            packets_received: r.packets,
            bytes_received: r.bytes,
            lost: r.lost,
            jitter_ms: f64::from(r.jitter) * 1000.0 / f64::from(self.decoder.clock_rate()),
            jitter_buffer_ms: j.delay_ms,
            frames_fanned_out: self.frames_fanned_out,
            srtp_failures: self.srtp_failures,
        }
    }
}
