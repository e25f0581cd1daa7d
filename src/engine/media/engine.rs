//! The media engine: the capture hub, the playout mixer and every call's stream, driven by the
//! runtime with the time passed in. Sans-IO like the SIP side: RTP comes in through `on_rtp`,
//! packets to send come out of `tick`, which the runtime calls every 20 ms while a call has media
//! (and never while idle).

use super::devices::{DeviceError, FRAME_SAMPLES, InputSpec, OutputSpec};
use super::hub::CaptureHub;
use super::playout::Playout;
use super::stream::{CodecKey, MediaParams, Stream};
use crate::api::{CallId, DeviceStats, MediaStats};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Instant;

/// RTP packets to send: the call, where to, the bytes.
pub type Outgoing = Vec<(CallId, SocketAddr, Vec<u8>)>;

pub struct MediaEngine {
    hub: CaptureHub,
    playout: Playout,
    streams: BTreeMap<CallId, Stream>,
    frame: Vec<i16>,
}

impl MediaEngine {
    /// Opens the input and the output, once. Devices that fail fall back (silence, null) and
    /// their errors are returned for the user to see.
    pub fn open(input: InputSpec, output: OutputSpec) -> (MediaEngine, Vec<DeviceError>) {
        let (hub, e1) = CaptureHub::open(input);
        let (playout, e2) = Playout::open(output);
        let errors = e1.into_iter().chain(e2).collect();
        (
            MediaEngine {
                hub,
                playout,
                streams: BTreeMap::new(),
                frame: Vec::with_capacity(FRAME_SAMPLES),
            },
            errors,
        )
    }

    /// Whether the runtime should tick: only while some call has media.
    pub fn active(&self) -> bool {
        !self.streams.is_empty()
    }

    /// Starts or updates a call's media. A codec change builds a new stream.
    pub fn set_call(&mut self, call: CallId, params: MediaParams) -> Result<(), String> {
        if let Some(s) = self.streams.get_mut(&call)
            && s.update(params.clone())
        {
            return Ok(());
        }
        let stream = Stream::new(params)?;
        self.streams.insert(call, stream);
        self.retain_codecs();
        Ok(())
    }

    pub fn remove_call(&mut self, call: CallId) {
        self.streams.remove(&call);
        self.retain_codecs();
    }

    fn retain_codecs(&mut self) {
        let used: Vec<CodecKey> = self.streams.values().map(|s| s.key.clone()).collect();
        self.hub.retain_codecs(&used);
    }

    pub fn on_rtp(&mut self, call: CallId, bytes: &[u8], now: Instant) {
        if let Some(s) = self.streams.get_mut(&call) {
            s.on_rtp(bytes, now);
        }
    }

    /// One 20 ms step: capture once, encode once per codec, packetize per call; then mix and
    /// play what every call received. Returns the RTP packets to send.
    pub fn tick(&mut self, now: Instant) -> (Outgoing, Option<DeviceError>) {
        let mut out = Vec::new();
        if self.streams.is_empty() {
            return (out, None);
        }
        self.hub.capture();
        for (id, s) in self.streams.iter_mut() {
            if !s.params.send || s.params.remote.is_none() {
                continue;
            }
            let key = s.key.clone();
            let Some(payload) = self.hub.payload(&key, &s.params.codec) else {
                continue;
            };
            if let Some((to, pkt)) = s.packetize(payload, now) {
                out.push((*id, to, pkt));
            }
        }
        self.playout.begin();
        for s in self.streams.values_mut() {
            self.frame.clear();
            s.playout(now, &mut self.frame);
            if s.params.recv {
                self.playout.add(&self.frame);
            }
        }
        let err = self.playout.finish();
        (out, err)
    }

    pub fn call_stats(&self, call: CallId) -> Option<MediaStats> {
        self.streams.get(&call).map(Stream::stats)
    }

    pub fn device_stats(&self) -> DeviceStats {
        DeviceStats {
            input: self.hub.spec.to_string(),
            output: self.playout.spec.to_string(),
            input_opens: self.hub.opens,
            output_opens: self.playout.opens,
            frames_captured: self.hub.frames_captured,
            frames_played: self.playout.frames_played,
            encodes: self.hub.encodes,
        }
    }

    /// Flushes the output (a WAV recording's header) at shutdown.
    pub fn close(&mut self) {
        if let Err(e) = self.playout.close() {
            tracing::error!("closing the audio output: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::media::rtp_session::RtpPacket;
    use crate::engine::sip::sdp::CodecSpec;
    use std::time::Duration;

    fn params(port: u16, remote: u16, codec: CodecSpec) -> MediaParams {
        MediaParams {
            local_port: port,
            remote: Some(SocketAddr::from(([127, 0, 0, 1], remote))),
            codec,
            dtmf: None,
            send: true,
            recv: true,
            srtp: None,
        }
    }

    #[test]
    fn one_capture_and_one_encode_per_codec_feed_every_call() {
        let (mut m, errors) = MediaEngine::open(InputSpec::Tone(440.0), OutputSpec::Null);
        assert!(errors.is_empty());
        for (i, codec) in [CodecSpec::pcmu(), CodecSpec::pcmu(), CodecSpec::pcma()]
            .into_iter()
            .enumerate()
        {
            m.set_call(
                CallId(i as u64 + 1),
                params(20000 + 2 * i as u16, 30000, codec),
            )
            .unwrap();
        }
        let t0 = Instant::now();
        let mut ssrcs = std::collections::HashSet::new();
        for n in 0..10u32 {
            let (pkts, _) = m.tick(t0 + Duration::from_millis(20 * u64::from(n)));
            assert_eq!(pkts.len(), 3);
            let parsed: Vec<RtpPacket> = pkts
                .iter()
                .map(|p| RtpPacket::parse(&p.2).unwrap())
                .collect();
            // The two PCMU calls carry the same payload, each in its own RTP stream.
            assert_eq!(parsed[0].payload, parsed[1].payload);
            assert_ne!(parsed[0].ssrc, parsed[1].ssrc);
            ssrcs.extend(parsed.iter().map(|p| p.ssrc));
        }
        assert_eq!(ssrcs.len(), 3);
        let d = m.device_stats();
        assert_eq!((d.input_opens, d.output_opens), (1, 1));
        assert_eq!(d.frames_captured, 10);
        assert_eq!(
            d.encodes, 20,
            "one encode per codec per frame, not per call"
        );
        assert_eq!(m.call_stats(CallId(1)).unwrap().frames_fanned_out, 10);
    }

    #[test]
    fn srtp_streams_encrypt_what_they_send_and_drop_forged_or_replayed_packets() {
        use crate::engine::media::srtp::{CryptoAttribute, CryptoSuite};
        use crate::engine::media::stream::SrtpParams;
        let ka = CryptoAttribute::generate(1, CryptoSuite::AesCm128HmacSha1_80).unwrap();
        let kb = CryptoAttribute::generate(1, CryptoSuite::AesCm128HmacSha1_80).unwrap();
        let (mut a, _) = MediaEngine::open(InputSpec::Tone(440.0), OutputSpec::Null);
        let (mut b, _) = MediaEngine::open(InputSpec::Tone(1000.0), OutputSpec::Null);
        let (mut plain, _) = MediaEngine::open(InputSpec::Tone(440.0), OutputSpec::Null);
        let mut pa = params(20000, 20002, CodecSpec::pcmu());
        pa.srtp = Some(SrtpParams {
            local: ka.clone(),
            remote: kb.clone(),
        });
        let mut pb = params(20002, 20000, CodecSpec::pcmu());
        pb.srtp = Some(SrtpParams {
            local: kb,
            remote: ka,
        });
        a.set_call(CallId(1), pa).unwrap();
        b.set_call(CallId(1), pb).unwrap();
        plain
            .set_call(CallId(1), params(20004, 20002, CodecSpec::pcmu()))
            .unwrap();
        let t0 = Instant::now();
        for n in 0..5u64 {
            let now = t0 + Duration::from_millis(20 * n);
            let (pkts, _) = a.tick(now);
            let (clear, _) = plain.tick(now);
            let (sent, clear) = (&pkts[0].2, &clear[0].2);
            // Same tone, same codec: only encryption (and the 10-byte tag) tells them apart.
            assert_eq!(sent.len(), clear.len() + 10);
            assert_ne!(sent[12..sent.len() - 10], clear[12..]);
            b.on_rtp(CallId(1), sent, now);
            if n == 4 {
                b.on_rtp(CallId(1), sent, now); // replayed
                let mut forged = sent.clone();
                forged[20] ^= 1;
                b.on_rtp(CallId(1), &forged, now);
                b.on_rtp(CallId(1), clear, now); // plain RTP on an SRTP call
            }
        }
        let s = b.call_stats(CallId(1)).unwrap();
        // 5 authenticated; the first is the RFC 3550 probation packet, not counted.
        assert_eq!(s.packets_received, 4, "{s:?}");
        assert_eq!(s.srtp_failures, 3, "{s:?}");
        assert_eq!(a.call_stats(CallId(1)).unwrap().packets_sent, 5);
    }

    #[test]
    fn held_calls_send_nothing_and_idle_engine_does_nothing() {
        let (mut m, _) = MediaEngine::open(InputSpec::Silence, OutputSpec::Null);
        assert!(!m.active());
        assert!(m.tick(Instant::now()).0.is_empty());
        assert_eq!(m.device_stats().frames_captured, 0);
        let mut p = params(20000, 30000, CodecSpec::pcmu());
        p.send = false;
        m.set_call(CallId(1), p).unwrap();
        assert!(m.tick(Instant::now()).0.is_empty());
    }

    #[test]
    fn unavailable_devices_fall_back_with_an_error() {
        let (m, errors) = MediaEngine::open(InputSpec::Default, OutputSpec::Default);
        assert_eq!(errors.len(), 2);
        let d = m.device_stats();
        assert_eq!((d.input.as_str(), d.output.as_str()), ("silence", "null"));
    }
}
