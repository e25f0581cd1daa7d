//! The playout side of the hub: the output is opened once at engine start; every tick the
//! received audio of all calls that are not held is mixed into one frame and written to it.

use super::devices::{AudioSink, DeviceError, FRAME_SAMPLES, OutputSpec, open_sink};

pub struct Playout {
    sink: Box<dyn AudioSink>,
    pub spec: OutputSpec,
    mix: Vec<i32>,
    out: Vec<i16>,
    /// 1 at start, plus one per re-open caused by a device change (never by a call).
    pub opens: u32,
    pub frames_played: u64,
    failed: bool,
}

impl Playout {
    /// Opens the output once; one that cannot be opened falls back to the null sink.
    pub fn open(spec: OutputSpec) -> (Playout, Option<DeviceError>) {
        let (sink, error, spec) = match open_sink(&spec) {
            Ok(s) => (s, None, spec),
            Err(e) => {
                tracing::error!("audio output: {e}; discarding audio");
                let null: Box<dyn AudioSink> = match open_sink(&OutputSpec::Null) {
                    Ok(s) => s,
                    Err(e2) => {
                        return (Playout::with(Box::new(Discard), OutputSpec::Null), Some(e2));
                    }
                };
                (null, Some(e), OutputSpec::Null)
            }
        };
        tracing::info!("audio output opened: {spec}");
        (Playout::with(sink, spec), error)
    }

    /// A playout on a sink opened elsewhere (the `loopback` output, a ring device).
    pub fn with(sink: Box<dyn AudioSink>, spec: OutputSpec) -> Playout {
        Playout {
            sink,
            spec,
            mix: vec![0; FRAME_SAMPLES],
            out: vec![0; FRAME_SAMPLES],
            opens: 1,
            frames_played: 0,
            failed: false,
        }
    }

    /// Swaps the output under every call; the old one is closed after the new one opened.
    pub fn switch(&mut self, spec: OutputSpec) -> Result<(), DeviceError> {
        let sink = open_sink(&spec)?;
        drop(self.install(spec, sink));
        Ok(())
    }

    /// Swaps in a sink opened elsewhere (off the I/O loop); the old one is closed (a WAV
    /// recording's header written) and returned for the caller to drop where blocking does no
    /// harm.
    pub fn install(&mut self, spec: OutputSpec, sink: Box<dyn AudioSink>) -> Box<dyn AudioSink> {
        let mut old = std::mem::replace(&mut self.sink, sink);
        if let Err(e) = old.close() {
            tracing::warn!("closing the previous audio output: {e}");
        }
        tracing::info!("audio output switched: {} -> {spec}", self.spec);
        self.spec = spec;
        self.opens += 1;
        self.failed = false;
        old
    }

    /// Starts a new mixed frame.
    pub fn begin(&mut self) {
        self.mix.fill(0);
    }

    pub fn add(&mut self, frame: &[i16]) {
        for (m, &s) in self.mix.iter_mut().zip(frame) {
            *m += i32::from(s);
        }
    }

    /// Writes the mixed frame (clipped) to the output. A failing output is reported once.
    pub fn finish(&mut self) -> Option<DeviceError> {
        for (o, &m) in self.out.iter_mut().zip(&self.mix) {
            *o = m.clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16;
        }
        self.frames_played += 1;
        match self.sink.write(&self.out) {
            Ok(()) => None,
            Err(e) if !self.failed => {
                self.failed = true;
                Some(e)
            }
            Err(_) => None,
        }
    }

    /// How long a frame written now waits before it is heard; None for synthetic sinks.
    pub fn latency(&self) -> Option<std::time::Duration> {
        self.sink.latency()
    }

    /// Pauses or resumes the output device's stream (it stays open).
    pub fn set_running(&mut self, on: bool) {
        self.sink.set_running(on);
    }

    /// The frame written last (the echo reference for the audio processing).
    pub fn frame(&self) -> &[i16] {
        &self.out
    }

    pub fn close(&mut self) -> Result<(), DeviceError> {
        self.sink.close()
    }
}

struct Discard;

impl AudioSink for Discard {
    fn write(&mut self, _frame: &[i16]) -> Result<(), DeviceError> {
        Ok(())
    }
}
