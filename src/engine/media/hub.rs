//! The capture hub — the reason Dialtone exists (../shared/DESIGN.md). The input is opened once,
//! when the engine starts, and stays open for the life of the process; every call is fed from it.
//! Each hub tick captures one 20 ms frame, encodes it once per codec in use (resampling once per
//! codec rate) and hands the same payload to every call of that codec; each call then wraps it in
//! its own RTP header (own SSRC, sequence, timestamps). No call opens, closes or waits for a device.

use super::codecs::{AudioCodec, codec_for};
use super::devices::{AudioSource, DeviceError, FRAME_SAMPLES, HUB_RATE, InputSpec, open_source};
use super::resample::Resampler;
use super::stream::CodecKey;
use crate::engine::sip::sdp::CodecSpec;
use std::collections::HashMap;

struct Encoder {
    codec: Box<dyn AudioCodec + Send>,
    down: Resampler,
    pcm: Vec<i16>,
    payload: Vec<u8>,
    /// Whether this tick's payload is ready.
    ready: bool,
}

pub struct CaptureHub {
    source: Box<dyn AudioSource>,
    pub spec: InputSpec,
    frame: Vec<i16>,
    /// One encoder per codec, and one more per codec for muted calls (fed silence).
    encoders: HashMap<(CodecKey, bool), Encoder>,
    /// How many times an input was opened: 1 at start, plus one per re-open caused by a device
    /// change (the user's switch, a device lost or back, the system default changed) — never
    /// by a call.
    pub opens: u32,
    pub frames_captured: u64,
    /// Encodes done, across codecs (one per codec per tick, whatever the number of calls).
    pub encodes: u64,
    /// The input has failed (reported once).
    failed: bool,
}

impl CaptureHub {
    /// Opens the input once. A source that cannot be opened falls back to silence; the error is
    /// returned alongside so the engine can tell the user.
    pub fn open(spec: InputSpec) -> (CaptureHub, Option<DeviceError>) {
        let (source, error, spec): (Box<dyn AudioSource>, _, _) = match open_source(&spec) {
            Ok(s) => (s, None, spec),
            Err(e) => {
                tracing::error!("audio input: {e}; using silence");
                (Box::new(Zero), Some(e), InputSpec::Silence)
            }
        };
        tracing::info!("audio input opened: {spec}");
        (CaptureHub::with(spec, source), error)
    }

    /// A hub on a source opened elsewhere (the `loopback` input, linked to its output).
    pub fn with(spec: InputSpec, source: Box<dyn AudioSource>) -> CaptureHub {
        CaptureHub {
            source,
            spec,
            frame: vec![0; FRAME_SAMPLES],
            encoders: HashMap::new(),
            opens: 1,
            frames_captured: 0,
            encodes: 0,
            failed: false,
        }
    }

    /// Swaps the input under every call (no call notices but for the sound). The old source is
    /// dropped (closed) only once the new one is open; on failure the old one stays.
    pub fn switch(&mut self, spec: InputSpec) -> Result<(), DeviceError> {
        let source = open_source(&spec)?;
        drop(self.install(spec, source));
        Ok(())
    }

    /// Swaps in a source opened elsewhere (off the I/O loop); returns the old one, for the
    /// caller to drop (close) where blocking does no harm: closing a stream whose device went
    /// away can take a few hundred ms.
    pub fn install(
        &mut self,
        spec: InputSpec,
        source: Box<dyn AudioSource>,
    ) -> Box<dyn AudioSource> {
        tracing::info!("audio input switched: {} -> {spec}", self.spec);
        self.spec = spec;
        self.opens += 1;
        self.failed = false;
        std::mem::replace(&mut self.source, source)
    }

    /// How old a frame is when captured (a real device's buffers); None for synthetic sources.
    pub fn latency(&self) -> Option<std::time::Duration> {
        self.source.latency()
    }

    /// Pauses or resumes the input device's stream (it stays open).
    pub fn set_running(&mut self, on: bool) {
        self.source.set_running(on);
    }

    /// The frame captured last.
    pub fn frame(&self) -> &[i16] {
        &self.frame
    }

    /// The frame captured last, to process in place before any encode.
    pub fn frame_mut(&mut self) -> &mut [i16] {
        &mut self.frame
    }

    /// Captures the next frame; every encoder's payload is stale until `payload` asks for it.
    /// A failing input (a device that went away) gives silence and is reported once.
    pub fn capture(&mut self) -> Option<DeviceError> {
        let result = self.source.read(&mut self.frame);
        self.frames_captured += 1;
        for e in self.encoders.values_mut() {
            e.ready = false;
        }
        match result {
            Err(e) if !self.failed => {
                self.failed = true;
                Some(e)
            }
            _ => None,
        }
    }

    /// The current frame encoded with `spec`'s codec: encoded on first request in a tick, then
    /// shared by every call that asks for the same codec.
    pub fn payload(&mut self, key: &CodecKey, spec: &CodecSpec, muted: bool) -> Option<&[u8]> {
        let key = (key.clone(), muted);
        if !self.encoders.contains_key(&key) {
            let codec = codec_for(spec)?;
            let down = match Resampler::new(HUB_RATE, codec.clock_rate()) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!("{}: {e}", spec.label());
                    return None;
                }
            };
            self.encoders.insert(
                key.clone(),
                Encoder {
                    codec,
                    down,
                    pcm: Vec::with_capacity(FRAME_SAMPLES),
                    payload: Vec::with_capacity(256),
                    ready: false,
                },
            );
        }
        let e = self.encoders.get_mut(&key)?;
        if !e.ready {
            e.pcm.clear();
            if muted {
                e.pcm.resize(e.codec.frame_samples(), 0);
            } else {
                e.down.process(&self.frame, &mut e.pcm);
                e.pcm.resize(e.codec.frame_samples(), 0);
            }
            e.payload.clear();
            if let Err(err) = e.codec.encode(&e.pcm, &mut e.payload) {
                tracing::warn!("encoding {} failed: {err}", spec.label());
                return None;
            }
            e.ready = true;
            self.encodes += 1;
        }
        Some(&e.payload)
    }

    /// Drops encoders no call uses any more.
    pub fn retain_codecs(&mut self, used: &[(CodecKey, bool)]) {
        self.encoders.retain(|k, _| used.contains(k));
    }
}

/// Silence, for an input that could not be opened.
struct Zero;

impl AudioSource for Zero {
    fn read(&mut self, out: &mut [i16]) -> Result<(), DeviceError> {
        out.fill(0);
        Ok(())
    }
}
