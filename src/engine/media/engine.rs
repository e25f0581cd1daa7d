//! The media engine: the capture hub, the playout mixer and every call's stream, driven by the
//! runtime with the time passed in. Sans-IO like the SIP side: RTP comes in through `on_rtp`,
//! packets to send come out of `tick`, which the runtime calls every 20 ms while a call has media,
//! an alert sounds or the input is monitored (and never while idle). A ring device of its own,
//! if one is set, plays the ring tone.

use super::alerts::Alerts;
use super::apm::{AudioProcessor, ProcessingRate};
use super::devices::{
    AudioSink, AudioSource, DeviceError, FRAME_SAMPLES, InputSpec, OutputSpec, loopback_pair,
    open_sink, read_wav_at_hub_rate,
};
use super::hotplug::{Decision, DeviceMonitor, Reopen, Snapshot};
use super::hub::CaptureHub;
use super::playout::Playout;
use super::rtp_session::DtmfDigit;
use super::stream::{CodecKey, MediaParams, Stream};
use crate::api::{CallId, DeviceStats, MediaStats};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

/// RTP packets to send: the call, where to, the bytes.
pub type Outgoing = Vec<(CallId, SocketAddr, Vec<u8>)>;

/// An RTCP packet to send: the call, where to, the bytes, and whether it goes out of the RTP
/// socket (rtcp-mux) rather than the RTCP one.
pub type Rtcp = (CallId, SocketAddr, Vec<u8>, bool);

/// Level events go out every this many frames (5 × 20 ms: 10 per second).
const LEVEL_EVERY: u32 = 5;

/// What one media clock tick produced.
#[derive(Default)]
pub struct Tick {
    pub packets: Outgoing,
    /// RTCP reports due this tick.
    pub rtcp: Vec<Rtcp>,
    /// The input or the output failed (each reported once).
    pub errors: Vec<DeviceError>,
    /// Meter levels, every `LEVEL_EVERY` ticks: input dBFS and each call's output dBFS.
    pub levels: Option<(f32, Vec<(CallId, f32)>)>,
}

/// RMS level of a frame in dBFS (a full-scale sine is about -3; silence is -120).
pub fn level_dbfs(frame: &[i16]) -> f32 {
    if frame.is_empty() {
        return -120.0;
    }
    let sum: f64 = frame.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    let rms = (sum / frame.len() as f64).sqrt() / 32768.0;
    if rms <= 1e-6 {
        -120.0
    } else {
        (20.0 * rms.log10()) as f32
    }
}

/// The echo canceller's delay hint: from a frame handed to the output to its echo in a frame
/// read from the input, the output's latency plus the input's. None when neither is a device
/// that knows its latency (a synthetic side adds nothing).
pub fn echo_delay(input: Option<Duration>, output: Option<Duration>) -> Option<Duration> {
    match (input, output) {
        (None, None) => None,
        (i, o) => Some(i.unwrap_or_default() + o.unwrap_or_default()),
    }
}

pub struct MediaEngine {
    hub: CaptureHub,
    playout: Playout,
    streams: BTreeMap<CallId, Stream>,
    alerts: Alerts,
    frame: Vec<i16>,
    ticks: u32,
    /// Peak of the levels over the current meter period: input, and per call.
    input_level: f32,
    call_levels: BTreeMap<CallId, f32>,
    /// Echo cancellation, noise suppression and AGC on the input, if the setting is on: built
    /// at open, applied only while the input is a real microphone (see `processing_active`),
    /// rebuilt when the calls need another rate (see `sync_processing`).
    apm: Option<Box<AudioProcessor>>,
    /// The audio processing setting; a change applies from the next call (`set_call`).
    audio_processing: bool,
    /// Where incoming calls ring, if not on the call output.
    ring: Option<Playout>,
    /// Ring devices opened (at start and by each switch).
    ring_opens: u32,
    /// Meter the input with no call (`MonitorInput`).
    monitor_input: bool,
    /// Hot-plug: which devices the user wants, which are open, what to re-open.
    monitor: DeviceMonitor,
    /// Re-opens asked for by a device that failed during a tick, for the runtime to carry out.
    reopens: Vec<Reopen>,
    /// The device streams are running (not paused while idle): see `sync_devices`.
    devices_running: bool,
}

impl MediaEngine {
    /// Opens the input and the output, once. Devices that fail fall back (silence, null) and
    /// their errors are returned for the user to see. `audio_processing` turns on echo
    /// cancellation, noise suppression and AGC for real microphones (synthetic and file sources
    /// are sent as they are). `loopback` as both input and output links them: what is played
    /// is captured again on the next tick (the echo service).
    pub fn open(
        input: InputSpec,
        output: OutputSpec,
        audio_processing: bool,
    ) -> (MediaEngine, Vec<DeviceError>) {
        let (input_wanted, output_wanted) = (input.clone(), output.clone());
        let (hub, playout, errors) =
            if input == InputSpec::Loopback && output == OutputSpec::Loopback {
                let (source, sink) = loopback_pair();
                tracing::info!("audio input and output: loopback");
                let hub = CaptureHub::with(input.clone(), source);
                (hub, Playout::with(sink, output.clone()), Vec::new())
            } else {
                let (hub, e1) = CaptureHub::open(input.clone());
                let (playout, e2) = Playout::open(output.clone());
                (hub, playout, e1.into_iter().chain(e2).collect())
            };
        let mut monitor = DeviceMonitor::default();
        monitor.input_chosen(&input_wanted, &hub.spec);
        monitor.output_chosen(&output_wanted, &playout.spec);
        let mut engine = MediaEngine {
            hub,
            playout,
            streams: BTreeMap::new(),
            alerts: Alerts::default(),
            frame: Vec::with_capacity(FRAME_SAMPLES),
            ticks: 0,
            input_level: -120.0,
            call_levels: BTreeMap::new(),
            apm: None,
            audio_processing,
            ring: None,
            ring_opens: 0,
            monitor_input: false,
            monitor,
            reopens: Vec::new(),
            devices_running: true,
        };
        engine.sync_processing(true);
        // Opened once, paused until something needs them.
        engine.sync_devices();
        (engine, errors)
    }

    /// Opens (or switches, or with None closes) the ring device: incoming calls ring there
    /// instead of on the call output. A device that cannot be opened leaves none (calls ring on
    /// the call output) and is returned.
    pub fn set_ring_output(&mut self, spec: Option<OutputSpec>) -> Result<(), DeviceError> {
        if self.ring.as_ref().map(|r| &r.spec) == spec.as_ref() {
            return Ok(());
        }
        let opened = spec
            .map(|spec| open_sink(&spec).map(|sink| Playout::with(sink, spec)))
            .transpose();
        let (ring, result) = match opened {
            Ok(ring) => (ring, Ok(())),
            Err(e) => (None, Err(e)),
        };
        if let Some(mut old) = std::mem::replace(&mut self.ring, ring) {
            tracing::info!("ring device closed: {}", old.spec);
            if let Err(e) = old.close() {
                tracing::warn!("closing the ring device: {e}");
            }
        }
        if let Some(r) = &self.ring {
            tracing::info!("ring device opened: {}", r.spec);
            self.ring_opens += 1;
        }
        self.alerts.set_ring_device(self.ring.is_some());
        self.apply_running();
        result
    }

    /// The ring tone from the next ring on: a WAV file (looped), or None for the built-in one.
    /// A file that cannot be read gives the built-in one, and the error.
    pub fn set_ring_tone(&mut self, file: Option<&Path>) -> Result<(), DeviceError> {
        match file.map(read_wav_at_hub_rate).transpose() {
            Ok(samples) => {
                self.alerts.set_ring_tone(samples);
                Ok(())
            }
            Err(e) => {
                self.alerts.set_ring_tone(None);
                Err(e)
            }
        }
    }

    /// Echo cancellation, noise suppression and AGC on or off, from the next call on (at once
    /// when no call has media).
    pub fn set_audio_processing(&mut self, on: bool) {
        self.audio_processing = on;
        if self.streams.is_empty() {
            self.sync_processing(true);
        }
    }

    /// The rate the calls need the microphone processed at: the full rate if any call with
    /// media has a full-band codec (Opus), 16 kHz if all are narrowband or wideband (G.711).
    /// Held and muted calls count (resuming or unmuting should not make the echo canceller
    /// start over). None with no call: the processor keeps the rate it has (nothing is
    /// processed with no call, and the next call most likely has the same codec).
    fn processing_rate(&self) -> Option<ProcessingRate> {
        self.streams
            .values()
            .map(|s| ProcessingRate::for_codec(s.audio_rate()))
            .max()
    }

    /// Builds, rebuilds or drops the audio processor: on or off as the setting says when
    /// `setting_applies` (no call has media, or the first one starts; otherwise as it is), at
    /// the rate the calls need. A rebuilt echo canceller converges again (about a second);
    /// that happens only when a call starts, ends or changes codec, never per frame.
    fn sync_processing(&mut self, setting_applies: bool) {
        let on = if setting_applies {
            self.audio_processing
        } else {
            self.apm.is_some()
        };
        let current = self.apm.as_ref().map(|a| a.rate());
        let rate = self
            .processing_rate()
            .or(current)
            .unwrap_or(ProcessingRate::Wideband);
        if !on {
            self.apm = None;
        } else if current != Some(rate) {
            if let Some(old) = current {
                tracing::info!("audio processing: {} Hz -> {} Hz", old.hz(), rate.hz());
            }
            self.apm = Some(Box::new(AudioProcessor::new(rate)));
        }
    }

    /// Meter the input (levels about 10 per second) even with no call; off stops the clock
    /// again when nothing else needs it.
    pub fn set_monitor(&mut self, on: bool) {
        self.monitor_input = on;
    }

    /// A one-second 440 Hz tone on the call output (or on the ring device with `ring`).
    pub fn play_test_tone(&mut self, ring: bool) {
        self.alerts.play_test_tone(ring);
    }

    /// Whether the captured audio goes through echo cancellation, noise suppression and AGC:
    /// the setting is on and the input is a real microphone.
    pub fn processing_active(&self) -> bool {
        self.apm.is_some() && self.hub.spec.is_device()
    }

    /// Whether the runtime should tick: only while some call has media, an alert sounds or the
    /// input is monitored.
    pub fn active(&self) -> bool {
        !self.streams.is_empty() || self.alerts.active() || self.monitor_input
    }

    /// Ringback (an outgoing call rings without early media) and ring tone (a call comes in).
    pub fn set_alerts(&mut self, ringback: bool, ring: bool) {
        self.alerts.set(ringback, ring);
    }

    /// Starts or updates a call's media. A codec change builds a new stream.
    pub fn set_call(
        &mut self,
        call: CallId,
        params: MediaParams,
        now: Instant,
    ) -> Result<(), String> {
        if let Some(s) = self.streams.get_mut(&call)
            && s.update(params.clone())
        {
            // Muting picks another (silent) encoder: drop the ones no call uses now.
            self.calls_changed(false);
            return Ok(());
        }
        let stream = Stream::new(params, now, std::time::SystemTime::now())?;
        // The first call since the setting changed: it applies now.
        let first = self.streams.is_empty();
        self.streams.insert(call, stream);
        self.calls_changed(first);
        Ok(())
    }

    /// Ends a call's media; returns its RTCP BYE, to send to the far end.
    pub fn remove_call(&mut self, call: CallId, now: Instant) -> Option<Rtcp> {
        let mut stream = self.streams.remove(&call)?;
        self.calls_changed(false);
        let mux = stream.params.rtcp_mux;
        stream
            .rtcp_bye(now)
            .map(|(to, bytes)| (call, to, bytes, mux))
    }

    /// A call started, ended or changed (codec, mute, hold): the encoders and the audio
    /// processing follow what the calls use now. `first`: the first call is starting.
    fn calls_changed(&mut self, first: bool) {
        self.retain_codecs();
        self.sync_processing(first);
    }

    fn retain_codecs(&mut self) {
        let used: Vec<(CodecKey, bool)> = self
            .streams
            .values()
            .map(|s| (s.key.clone(), s.params.muted))
            .collect();
        self.hub.retain_codecs(&used);
    }

    pub fn on_rtp(&mut self, call: CallId, bytes: &[u8], now: Instant) {
        if let Some(s) = self.streams.get_mut(&call) {
            s.on_rtp(bytes, now);
        }
    }

    /// A datagram on a call's RTCP port.
    pub fn on_rtcp(&mut self, call: CallId, bytes: &[u8], now: Instant) {
        if let Some(s) = self.streams.get_mut(&call) {
            s.on_rtcp(bytes, now);
        }
    }

    /// One 20 ms step: capture once, encode once per codec, packetize per call; then mix and
    /// play what every call received. Returns the RTP packets to send.
    pub fn tick(&mut self, now: Instant) -> Tick {
        let mut tick = Tick::default();
        self.sync_devices();
        if !self.active() {
            return tick;
        }
        let calls = !self.streams.is_empty();
        if calls || self.monitor_input {
            if let Some(e) = self.hub.capture() {
                if matches!(e, DeviceError::Lost { .. }) {
                    self.reopens.extend(self.monitor.input_lost());
                }
                tick.errors.push(e);
            }
            // Processed for calls only: a meter with no call shows the microphone as it is.
            if calls
                && self.hub.spec.is_device()
                && let Some(apm) = self.apm.as_mut()
            {
                if let Some(delay) = echo_delay(self.hub.latency(), self.playout.latency()) {
                    apm.set_stream_delay(delay);
                }
                apm.process_capture(self.hub.frame_mut());
            }
            self.input_level = self.input_level.max(level_dbfs(self.hub.frame()));
        }
        for (id, s) in self.streams.iter_mut() {
            if !s.params.send || s.params.remote.is_none() {
                continue;
            }
            let Some(payload) = self.hub.payload(&s.key, &s.params.codec, s.params.muted) else {
                continue;
            };
            let mut pkts = Vec::new();
            if let Some(to) = s.outgoing(payload, now, &mut pkts) {
                tick.packets.extend(pkts.into_iter().map(|p| (*id, to, p)));
            }
        }
        for (id, s) in self.streams.iter_mut() {
            if let Some((to, bytes)) = s.rtcp_due(now) {
                tick.rtcp.push((*id, to, bytes, s.params.rtcp_mux));
            }
        }
        let alert = self.alerts.frame();
        // The call output plays while a call has media or an alert sounds there, not for a
        // meter alone.
        if calls || alert.call.is_some() {
            self.playout.begin();
            for (id, s) in self.streams.iter_mut() {
                self.frame.clear();
                s.playout(now, &mut self.frame);
                let level = if s.params.recv {
                    self.playout.add(&self.frame);
                    level_dbfs(&self.frame)
                } else {
                    -120.0
                };
                let peak = self.call_levels.entry(*id).or_insert(-120.0);
                *peak = peak.max(level);
            }
            if let Some(f) = alert.call {
                self.playout.add(f);
            }
            if let Some(e) = self.playout.finish() {
                if matches!(e, DeviceError::Lost { .. }) {
                    self.reopens.extend(self.monitor.output_lost());
                }
                tick.errors.push(e);
            }
        }
        if let (Some(f), Some(ring)) = (alert.ring, self.ring.as_mut()) {
            ring.begin();
            ring.add(f);
            tick.errors.extend(ring.finish());
        }
        // The echo reference: what went to the speaker this tick, before the next capture. Fed
        // only on ticks that capture, so render and capture stay paired.
        if !self.streams.is_empty()
            && self.hub.spec.is_device()
            && let Some(apm) = self.apm.as_mut()
        {
            apm.process_render(self.playout.frame());
        }
        self.ticks = self.ticks.wrapping_add(1);
        if self.ticks.is_multiple_of(LEVEL_EVERY) && (calls || self.monitor_input) {
            self.call_levels
                .retain(|id, _| self.streams.contains_key(id));
            let calls = self.call_levels.iter().map(|(id, l)| (*id, *l)).collect();
            tick.levels = Some((self.input_level, calls));
            self.input_level = -120.0;
            self.call_levels.values_mut().for_each(|l| *l = -120.0);
        }
        // An alert that just ended may leave nothing to do: pause the devices now.
        self.sync_devices();
        tick
    }

    /// Real devices run only while something needs them — a call's media, an alert, the input
    /// meter — and are paused otherwise, so an idle engine costs no CPU. They stay open either
    /// way (opened once); a resumed microphone delivers again within a few frames, and calls
    /// that ring (ring tone, ringback) resume it before the answer.
    pub fn sync_devices(&mut self) {
        let want = self.active();
        if want != self.devices_running {
            self.devices_running = want;
            self.apply_running();
        }
    }

    /// Tells every device stream (again) whether to run, e.g. after one was re-opened.
    fn apply_running(&mut self) {
        let on = self.devices_running;
        self.hub.set_running(on);
        self.playout.set_running(on);
        if let Some(r) = self.ring.as_mut() {
            r.set_running(on);
        }
    }

    /// Swaps the input under every call (no renegotiation).
    pub fn switch_input(&mut self, spec: InputSpec) -> Result<(), DeviceError> {
        self.hub.switch(spec.clone())?;
        self.monitor.input_chosen(&spec, &spec);
        self.apply_running();
        Ok(())
    }

    /// Swaps the output under every call.
    pub fn switch_output(&mut self, spec: OutputSpec) -> Result<(), DeviceError> {
        self.playout.switch(spec.clone())?;
        self.monitor.output_chosen(&spec, &spec);
        self.apply_running();
        Ok(())
    }

    /// Whether the devices are worth watching for hot-plug (a real one is wanted).
    pub fn watches_devices(&self) -> bool {
        self.monitor.watches()
    }

    /// The system's devices changed (or this is the first look): what to announce, report and
    /// re-open. The re-opens are the runtime's to carry out, off the I/O loop.
    pub fn on_devices(&mut self, snapshot: Snapshot) -> Decision {
        self.monitor.on_snapshot(snapshot)
    }

    /// Re-opens asked for by devices that failed during ticks.
    pub fn take_reopens(&mut self) -> Vec<Reopen> {
        std::mem::take(&mut self.reopens)
    }

    /// A re-open finished with `spec` open as `source`: swapped in under every call, unless the
    /// ticket is stale (the user chose another input meanwhile). Returns what to close: the
    /// old source, or the new one when stale (closing may block: not on the I/O loop).
    pub fn install_input(
        &mut self,
        ticket: u64,
        spec: InputSpec,
        source: Box<dyn AudioSource>,
    ) -> Box<dyn AudioSource> {
        if self.monitor.input_opened(ticket, &spec) {
            let old = self.hub.install(spec, source);
            self.apply_running();
            old
        } else {
            source
        }
    }

    /// As [`Self::install_input`], for the output.
    pub fn install_output(
        &mut self,
        ticket: u64,
        spec: OutputSpec,
        sink: Box<dyn AudioSink>,
    ) -> Box<dyn AudioSink> {
        if self.monitor.output_opened(ticket, &spec) {
            let old = self.playout.install(spec, sink);
            self.apply_running();
            old
        } else {
            sink
        }
    }

    /// Queues DTMF digits on a call's RTP stream.
    pub fn send_dtmf(&mut self, call: CallId, digits: &str) -> Result<(), String> {
        let Some(s) = self.streams.get_mut(&call) else {
            return Err("the call has no media".into());
        };
        if s.queue_dtmf(digits) {
            Ok(())
        } else {
            Err("no telephone-event was agreed for this call".into())
        }
    }

    /// Digits the far ends pressed since the last call.
    pub fn take_dtmf(&mut self) -> Vec<(CallId, DtmfDigit)> {
        let mut out = Vec::new();
        for (id, s) in self.streams.iter_mut() {
            out.extend(s.received_dtmf.drain(..).map(|d| (*id, d)));
        }
        out
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
            ring_output: self
                .ring
                .as_ref()
                .map(|r| r.spec.to_string())
                .unwrap_or_default(),
            ring_opens: self.ring_opens,
            ring_frames_played: self.ring.as_ref().map_or(0, |r| r.frames_played),
            audio_processing: self.processing_active(),
            monitoring: self.monitor_input,
            echo_delay_ms: self
                .apm
                .as_ref()
                .filter(|_| self.processing_active())
                .map(|a| a.stream_delay_ms().max(0) as u32),
            audio_processing_rate_hz: self
                .apm
                .as_ref()
                .filter(|_| self.processing_active())
                .map(|a| a.rate().hz()),
        }
    }

    /// Flushes the output (a WAV recording's header) at shutdown.
    pub fn close(&mut self) {
        if let Err(e) = self.playout.close() {
            tracing::error!("closing the audio output: {e}");
        }
        if let Some(Err(e)) = self.ring.as_mut().map(Playout::close) {
            tracing::error!("closing the ring device: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::media::rtp_session::RtpPacket;
    use crate::engine::sip::sdp::CodecSpec;

    fn params(port: u16, remote: u16, codec: CodecSpec) -> MediaParams {
        MediaParams {
            local_port: port,
            remote: Some(SocketAddr::from(([127, 0, 0, 1], remote))),
            remote_rtcp: Some(SocketAddr::from(([127, 0, 0, 1], remote + 1))),
            rtcp_mux: false,
            codec,
            dtmf: None,
            send: true,
            recv: true,
            muted: false,
            srtp: None,
        }
    }

    #[test]
    fn one_capture_and_one_encode_per_codec_feed_every_call() {
        let (mut m, errors) = MediaEngine::open(InputSpec::Tone(440.0), OutputSpec::Null, true);
        assert!(errors.is_empty());
        for (i, codec) in [CodecSpec::pcmu(), CodecSpec::pcmu(), CodecSpec::pcma()]
            .into_iter()
            .enumerate()
        {
            m.set_call(
                CallId(i as u64 + 1),
                params(20000 + 2 * i as u16, 30000, codec),
                Instant::now(),
            )
            .unwrap();
        }
        let t0 = Instant::now();
        let mut ssrcs = std::collections::HashSet::new();
        for n in 0..10u32 {
            let pkts = m
                .tick(t0 + Duration::from_millis(20 * u64::from(n)))
                .packets;
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
    fn two_engines_exchange_rtcp_reports_and_measure_the_round_trip() {
        let (mut a, _) = MediaEngine::open(InputSpec::Tone(440.0), OutputSpec::Null, true);
        let (mut b, _) = MediaEngine::open(InputSpec::Tone(1000.0), OutputSpec::Null, true);
        let t0 = Instant::now();
        a.set_call(CallId(1), params(20000, 20100, CodecSpec::pcmu()), t0)
            .unwrap();
        b.set_call(CallId(1), params(20100, 20000, CodecSpec::pcmu()), t0)
            .unwrap();
        let one_way = Duration::from_millis(15);
        // (due, to_a, bytes, rtcp): what is on the virtual wire.
        let mut wire: Vec<(Instant, bool, Vec<u8>, bool)> = Vec::new();
        for n in 0..750u64 {
            let now = t0 + Duration::from_millis(20 * n);
            for (to_a, m) in [(false, &mut a), (true, &mut b)] {
                let tick = m.tick(now);
                for (_, _, p) in tick.packets {
                    wire.push((now + one_way, to_a, p, false));
                }
                for (_, _, p, _) in tick.rtcp {
                    wire.push((now + one_way, to_a, p, true));
                }
            }
            let (due, later): (Vec<_>, Vec<_>) = wire.into_iter().partition(|w| w.0 <= now);
            wire = later;
            for (at, to_a, bytes, rtcp) in due {
                let m = if to_a { &mut a } else { &mut b };
                if rtcp {
                    m.on_rtcp(CallId(1), &bytes, at);
                } else {
                    m.on_rtp(CallId(1), &bytes, at);
                }
            }
        }
        let s = a.call_stats(CallId(1)).unwrap();
        assert!(s.rtcp_received >= 2, "{s:?}");
        let rtt = s
            .rtt_ms
            .expect("a round-trip time from B's report on our SR");
        assert!(
            (25.0..=60.0).contains(&rtt),
            "{rtt} ms for 2 × 15 ms on the wire"
        );
        assert_eq!(s.remote_fraction_lost, Some(0.0));
        assert!(b.call_stats(CallId(1)).unwrap().rtcp_received >= 2);
        // Hanging up sends an RTCP BYE.
        assert!(
            a.remove_call(CallId(1), t0 + Duration::from_secs(16))
                .is_some()
        );
    }

    #[test]
    fn srtp_streams_encrypt_what_they_send_and_drop_forged_or_replayed_packets() {
        use crate::engine::media::srtp::{CryptoAttribute, CryptoSuite};
        use crate::engine::media::stream::SrtpParams;
        let ka = CryptoAttribute::generate(1, CryptoSuite::AesCm128HmacSha1_80).unwrap();
        let kb = CryptoAttribute::generate(1, CryptoSuite::AesCm128HmacSha1_80).unwrap();
        let (mut a, _) = MediaEngine::open(InputSpec::Tone(440.0), OutputSpec::Null, true);
        let (mut b, _) = MediaEngine::open(InputSpec::Tone(1000.0), OutputSpec::Null, true);
        let (mut plain, _) = MediaEngine::open(InputSpec::Tone(440.0), OutputSpec::Null, true);
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
        let t0 = Instant::now();
        a.set_call(CallId(1), pa, t0).unwrap();
        b.set_call(CallId(1), pb, t0).unwrap();
        plain
            .set_call(CallId(1), params(20004, 20002, CodecSpec::pcmu()), t0)
            .unwrap();
        for n in 0..5u64 {
            let now = t0 + Duration::from_millis(20 * n);
            let pkts = a.tick(now).packets;
            let clear = plain.tick(now).packets;
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
        let (mut m, _) = MediaEngine::open(InputSpec::Silence, OutputSpec::Null, true);
        assert!(!m.active());
        assert!(m.tick(Instant::now()).packets.is_empty());
        assert_eq!(m.device_stats().frames_captured, 0);
        let mut p = params(20000, 30000, CodecSpec::pcmu());
        p.send = false;
        m.set_call(CallId(1), p, Instant::now()).unwrap();
        assert!(m.tick(Instant::now()).packets.is_empty());
    }

    #[test]
    fn audio_processing_applies_to_real_microphones_only() {
        assert!(InputSpec::Default.is_device());
        assert!(InputSpec::Device("mic".into()).is_device());
        for spec in [
            InputSpec::Tone(440.0),
            InputSpec::Silence,
            InputSpec::Wav("a.wav".into()),
        ] {
            assert!(!spec.is_device(), "{spec}");
        }
        // A synthetic source is sent untouched even with the setting on.
        let (m, _) = MediaEngine::open(InputSpec::Tone(440.0), OutputSpec::Null, true);
        assert!(!m.processing_active());
        let (mut on, _) = MediaEngine::open(InputSpec::Tone(440.0), OutputSpec::Null, true);
        let (mut off, _) = MediaEngine::open(InputSpec::Tone(440.0), OutputSpec::Null, false);
        let now = Instant::now();
        on.set_call(CallId(1), params(20000, 30000, CodecSpec::pcmu()), now)
            .unwrap();
        off.set_call(CallId(1), params(20002, 30000, CodecSpec::pcmu()), now)
            .unwrap();
        for n in 0..5u64 {
            let t = now + Duration::from_millis(20 * n);
            let (a, b) = (on.tick(t).packets, off.tick(t).packets);
            assert_eq!(a[0].2[12..], b[0].2[12..]);
        }
    }

    /// From a burst entering A's source to it leaving B's sink, ms: two engines ticking in
    /// step with no network delay, `codec` both ways.
    fn mouth_to_ear_ms(codec: CodecSpec) -> f64 {
        use crate::engine::media::tone::ToneGenerator;
        use crate::engine::media::wav::{WavWriter, read_wav};
        let dir = tempfile::tempdir().unwrap();
        let (burst, heard) = (dir.path().join("burst.wav"), dir.path().join("heard.wav"));
        // 300 ms of silence, then 100 ms of 1 kHz at half scale, at 8 kHz.
        let mut samples = vec![0i16; 2_400];
        let mut tone = vec![0i16; 800];
        ToneGenerator::new(1000.0, -6.0, 8_000).fill(&mut tone);
        samples.extend_from_slice(&tone);
        let mut w = WavWriter::create(&burst, 8_000).unwrap();
        w.write(&samples).unwrap();
        w.finish().unwrap();
        let (mut a, _) = MediaEngine::open(InputSpec::Wav(burst), OutputSpec::Null, false);
        let (mut b, _) =
            MediaEngine::open(InputSpec::Silence, OutputSpec::Wav(heard.clone()), false);
        let t0 = Instant::now();
        a.set_call(CallId(1), params(20000, 20002, codec.clone()), t0)
            .unwrap();
        b.set_call(CallId(1), params(20002, 20000, codec), t0)
            .unwrap();
        for n in 0..20u64 {
            let now = t0 + Duration::from_millis(20 * n);
            for (_, _, p) in a.tick(now).packets {
                b.on_rtp(CallId(1), &p, now);
            }
            b.tick(now);
        }
        b.close();
        let rec = read_wav(&heard).unwrap();
        let onset = rec
            .samples
            .iter()
            .position(|s| s.unsigned_abs() > 8_192)
            .unwrap();
        onset as f64 / 48.0 - 300.0
    }

    #[test]
    fn pcmu_mouth_to_ear_in_step_is_the_jitter_frame_plus_a_few_ms_of_resampling() {
        // With no network and the two media clocks in step, what remains is B's jitter buffer
        // (one 20 ms frame at start) and the codec path: Opus' own look-ahead, or for PCMU the
        // 48 ↔ 8 kHz conversions (1.4 + 3.0 ms).
        let (opus, pcmu) = (
            mouth_to_ear_ms(CodecSpec::opus()),
            mouth_to_ear_ms(CodecSpec::pcmu()),
        );
        println!("mouth-to-ear in step, no network: Opus {opus:.2} ms, PCMU {pcmu:.2} ms");
        assert!((20.0..26.0).contains(&pcmu), "PCMU {pcmu:.2} ms");
        assert!((20.0..28.0).contains(&opus), "Opus {opus:.2} ms");
    }

    #[test]
    fn the_echo_delay_hint_adds_both_directions_of_whatever_knows_its_latency() {
        let ms = Duration::from_millis;
        assert_eq!(echo_delay(Some(ms(45)), Some(ms(60))), Some(ms(105)));
        assert_eq!(echo_delay(Some(ms(45)), None), Some(ms(45)));
        assert_eq!(echo_delay(None, Some(ms(60))), Some(ms(60)));
        assert_eq!(echo_delay(None, None), None);
        // Synthetic devices: no processing, no hint in the stats.
        let (m, _) = MediaEngine::open(InputSpec::Tone(440.0), OutputSpec::Null, true);
        assert_eq!(m.device_stats().echo_delay_ms, None);
    }

    #[test]
    fn unavailable_devices_fall_back_with_an_error() {
        let (m, errors) = MediaEngine::open(
            InputSpec::Device("no-such-microphone-here".into()),
            OutputSpec::Device("no-such-speaker-here".into()),
            true,
        );
        assert_eq!(errors.len(), 2);
        let d = m.device_stats();
        assert_eq!((d.input.as_str(), d.output.as_str()), ("silence", "null"));
    }

    /// Runs `a` and `b` (call 1 on each, linked by a lossless wire) for `ticks` 20 ms ticks.
    fn run_pair(a: &mut MediaEngine, b: &mut MediaEngine, ticks: u64) {
        let t0 = Instant::now();
        a.set_call(CallId(1), params(20000, 20100, CodecSpec::pcmu()), t0)
            .unwrap();
        b.set_call(CallId(1), params(20100, 20000, CodecSpec::pcmu()), t0)
            .unwrap();
        for n in 0..ticks {
            let now = t0 + Duration::from_millis(20 * n);
            let to_b = a.tick(now).packets;
            let to_a = b.tick(now).packets;
            for (_, _, p) in to_b {
                b.on_rtp(CallId(1), &p, now);
            }
            for (_, _, p) in to_a {
                a.on_rtp(CallId(1), &p, now);
            }
        }
    }

    #[test]
    fn a_loopback_engine_sends_back_what_it_receives() {
        let dir = tempfile::tempdir().unwrap();
        let heard = dir.path().join("heard.wav");
        let (mut caller, _) = MediaEngine::open(
            InputSpec::Tone(440.0),
            OutputSpec::Wav(heard.clone()),
            false,
        );
        let (mut echo, errors) =
            MediaEngine::open(InputSpec::Loopback, OutputSpec::Loopback, false);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(echo.device_stats().input, "loopback");
        run_pair(&mut caller, &mut echo, 100);
        caller.close();
        let rec = crate::engine::media::wav::read_wav(&heard).unwrap().samples;
        let tail = &rec[rec.len() - 48_000..];
        let tone = crate::engine::media::tone::dominant_tone(tail, 48_000, &[440.0, 1000.0]);
        let (hz, db) = tone.expect("the caller hears its tone back");
        assert_eq!(hz, 440.0);
        assert!(db > -20.0, "{db} dBFS");
    }

    #[test]
    fn monitoring_meters_the_input_with_no_call_and_plays_nothing() {
        let (mut m, _) = MediaEngine::open(InputSpec::Tone(440.0), OutputSpec::Null, false);
        m.set_monitor(true);
        assert!(m.active());
        let t0 = Instant::now();
        let levels: Vec<_> = (0..10u64)
            .filter_map(|n| m.tick(t0 + Duration::from_millis(20 * n)).levels)
            .collect();
        assert_eq!(levels.len(), 2, "every fifth tick");
        let (input, calls) = &levels[1];
        assert!((-14.5..=-11.5).contains(input), "{input}");
        assert!(calls.is_empty());
        let d = m.device_stats();
        assert!(d.monitoring);
        assert_eq!((d.frames_captured, d.frames_played), (10, 0));
        m.set_monitor(false);
        assert!(!m.active(), "nothing left to tick for");
        assert!(m.tick(t0).levels.is_none());
        assert_eq!(m.device_stats().frames_captured, 10);
    }

    #[test]
    fn the_ring_tone_plays_on_the_ring_device_and_not_on_the_call_output() {
        use crate::engine::media::alerts::{RING_HZ, RINGBACK_HZ, TEST_TONE_HZ};
        use crate::engine::media::tone::dominant_tone;
        use crate::engine::media::wav::read_wav;
        let dir = tempfile::tempdir().unwrap();
        let (out, ring) = (dir.path().join("out.wav"), dir.path().join("ring.wav"));
        let (mut m, _) = MediaEngine::open(InputSpec::Silence, OutputSpec::Wav(out.clone()), false);
        m.set_ring_output(Some(OutputSpec::Wav(ring.clone())))
            .unwrap();
        // The same device again opens nothing.
        m.set_ring_output(Some(OutputSpec::Wav(ring.clone())))
            .unwrap();
        m.set_alerts(false, true);
        let t0 = Instant::now();
        for n in 0..25u64 {
            m.tick(t0 + Duration::from_millis(20 * n));
        }
        m.set_alerts(false, false);
        m.play_test_tone(false);
        for n in 25..100u64 {
            m.tick(t0 + Duration::from_millis(20 * n));
        }
        assert!(!m.active(), "the test tone ended by itself");
        let d = m.device_stats();
        assert_eq!(d.ring_output, format!("wav:{}", ring.display()));
        assert_eq!((d.ring_opens, d.ring_frames_played), (1, 25));
        assert_eq!(
            d.frames_played, 50,
            "the test tone's second on the call output"
        );
        m.close();
        let candidates = [RING_HZ.0, RINGBACK_HZ, TEST_TONE_HZ];
        let ring = read_wav(&ring).unwrap().samples;
        assert_eq!(ring.len(), 25 * FRAME_SAMPLES);
        assert_eq!(
            dominant_tone(&ring, 48_000, &candidates).map(|t| t.0),
            Some(RING_HZ.0)
        );
        let out = read_wav(&out).unwrap().samples;
        assert_eq!(
            out.len(),
            50 * FRAME_SAMPLES,
            "no ring tone frames on the call output"
        );
        assert_eq!(
            dominant_tone(&out, 48_000, &candidates).map(|t| t.0),
            Some(TEST_TONE_HZ)
        );
        // Closed again: the ring goes back to the call output.
        m.set_ring_output(None).unwrap();
        assert_eq!(m.device_stats().ring_output, "");
    }

    #[test]
    fn an_unusable_ring_device_or_ring_tone_leaves_the_defaults_and_says_why() {
        let (mut m, _) = MediaEngine::open(InputSpec::Silence, OutputSpec::Null, false);
        let e = m
            .set_ring_output(Some(OutputSpec::Device("no-such-ringer-here".into())))
            .unwrap_err();
        assert!(e.to_string().contains("no-such-ringer-here"), "{e}");
        assert_eq!(m.device_stats().ring_output, "");
        let e = m
            .set_ring_tone(Some(Path::new("/nonexistent/ring.wav")))
            .unwrap_err();
        assert!(e.to_string().contains("/nonexistent/ring.wav"), "{e}");
        // The built-in ring tone still sounds (on the call output).
        m.set_alerts(false, true);
        let now = Instant::now();
        m.tick(now);
        assert_eq!(m.device_stats().frames_played, 1);
    }

    #[test]
    fn narrowband_calls_are_processed_at_16_khz_and_an_opus_call_switches_to_48() {
        use crate::engine::media::devices::open_source;
        let (mut m, _) = MediaEngine::open(InputSpec::Silence, OutputSpec::Null, true);
        // A tone under a microphone's name: processed like a real one.
        let tone = open_source(&InputSpec::Tone(1000.0)).unwrap();
        m.hub = CaptureHub::with(InputSpec::Device("mic".into()), tone);
        let t0 = Instant::now();
        let mut n = 0u64;
        let mut run = |m: &mut MediaEngine| {
            for _ in 0..5 {
                n += 1;
                m.tick(t0 + Duration::from_millis(20 * n));
            }
            let apm = m.apm.as_deref().unwrap();
            assert_eq!(apm.errors, 0);
            (
                m.device_stats().audio_processing_rate_hz,
                std::ptr::from_ref(apm),
            )
        };
        let pcmu = params(20000, 30000, CodecSpec::pcmu());
        m.set_call(CallId(1), pcmu.clone(), t0).unwrap();
        assert_eq!(run(&mut m).0, Some(16_000), "a PCMU call");
        // An Opus call joins: the processor is rebuilt at the full rate.
        let opus = params(20002, 30002, CodecSpec::opus());
        m.set_call(CallId(2), opus.clone(), t0).unwrap();
        let (rate, built) = run(&mut m);
        assert_eq!(rate, Some(48_000), "PCMU and Opus calls");
        // Holding or muting the Opus call keeps the processor (and its converged canceller).
        m.set_call(
            CallId(2),
            MediaParams {
                muted: true,
                send: false,
                ..opus.clone()
            },
            t0,
        )
        .unwrap();
        assert_eq!(run(&mut m), (Some(48_000), built));
        m.remove_call(CallId(2), t0);
        assert_eq!(run(&mut m).0, Some(16_000), "the Opus call ended");
        // The PCMU call changes codec (a re-INVITE) to Opus, and back.
        m.set_call(
            CallId(1),
            MediaParams {
                codec: CodecSpec::opus(),
                ..pcmu.clone()
            },
            t0,
        )
        .unwrap();
        assert_eq!(run(&mut m).0, Some(48_000), "re-negotiated to Opus");
        m.set_call(CallId(1), pcmu.clone(), t0).unwrap();
        let (rate, built) = run(&mut m);
        assert_eq!(rate, Some(16_000), "re-negotiated to PCMU");
        // No call: nothing is processed, and the rate stays for the next call.
        m.remove_call(CallId(1), t0);
        assert_eq!(m.device_stats().audio_processing_rate_hz, Some(16_000));
        m.set_call(CallId(3), params(20004, 30004, CodecSpec::pcma()), t0)
            .unwrap();
        assert_eq!(run(&mut m), (Some(16_000), built), "the next PCMA call");
    }

    #[test]
    fn turning_audio_processing_off_applies_from_the_next_call() {
        let (mut m, _) = MediaEngine::open(InputSpec::Silence, OutputSpec::Null, true);
        let now = Instant::now();
        m.set_call(CallId(1), params(20000, 30000, CodecSpec::pcmu()), now)
            .unwrap();
        m.set_audio_processing(false);
        assert!(m.apm.is_some(), "not under a running call");
        m.remove_call(CallId(1), now);
        m.set_call(CallId(2), params(20002, 30000, CodecSpec::pcmu()), now)
            .unwrap();
        assert!(m.apm.is_none());
        m.remove_call(CallId(2), now);
        m.set_audio_processing(true);
        assert!(m.apm.is_some(), "at once with no call");
    }
}
