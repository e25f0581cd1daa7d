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
    /// play what every call received. Returns the RTP packets to send and, once each, a failing
    /// input or output.
    pub fn tick(&mut self, now: Instant) -> (Outgoing, Vec<DeviceError>) {
        let mut out = Vec::new();
        if self.streams.is_empty() {
            return (out, Vec::new());
        }
        let input_error = self.hub.capture();
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
        let output_error = self.playout.finish();
        (out, input_error.into_iter().chain(output_error).collect())
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
