//! Audio sources and sinks, chosen by name: `tone:440`, `wav:FILE`, `silence` in; `null`,
//! `wav:FILE` out; `default` / `device:NAME` for real devices; and `loopback` in and out, a pair
//! that plays back what is played (the echo service: [`loopback_pair`]).
//!
//! Everything here speaks the hub's format: 48 kHz mono, 20 ms frames of 960 samples. Sources are
//! pulled one frame per hub tick (the hub's clock paces synthetic sources); sinks take the mixed
//! frame. `default` and `device:NAME` are real devices through cpal ([`super::cpal_device`], the
//! PulseAudio host on Linux when a server runs); one that cannot be opened is an error and the
//! engine falls back to silence / the null sink, saying so in an `error` event.

pub use super::cpal_device::list_devices;
use super::cpal_device::{CpalSink, CpalSource};
use super::resample::{RateError, convert_all};
use super::tone::ToneGenerator;
use super::wav::{WavError, WavWriter, read_wav};
use std::fmt;
use std::path::PathBuf;

/// The hub's sample rate.
pub const HUB_RATE: u32 = 48_000;
/// Samples in one 20 ms hub frame.
pub const FRAME_SAMPLES: usize = 960;

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("bad audio {kind} {spec:?}: want {want}")]
    BadSpec {
        kind: &'static str,
        spec: String,
        want: &'static str,
    },
    #[error("no audio {kind} device matches {name:?}; available: {available}")]
    NoSuchDevice {
        kind: &'static str,
        name: String,
        available: String,
    },
    /// A real device could not be opened.
    #[error("{what}: {message}")]
    Audio { what: String, message: String },
    /// A real device stopped working (unplugged, the sound server went away).
    #[error("{what} stopped working: {message}")]
    Lost { what: String, message: String },
    #[error("{path}: {source}")]
    Wav { path: PathBuf, source: WavError },
    #[error("{path} has no audio")]
    EmptyWav { path: PathBuf },
    #[error("{path}: {source}")]
    WavRate { path: PathBuf, source: RateError },
}

/// Where captured audio comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum InputSpec {
    /// The system's default microphone.
    Default,
    Device(String),
    /// A sine tone at this frequency (-10 dBFS).
    Tone(f32),
    /// A WAV file, looped.
    Wav(PathBuf),
    Silence,
    /// What the `loopback` output played, one frame later (only with the `loopback` output).
    Loopback,
}

/// Where the mixed call audio goes.
#[derive(Debug, Clone, PartialEq)]
pub enum OutputSpec {
    Default,
    Device(String),
    /// A WAV recording (48 kHz mono).
    Wav(PathBuf),
    /// Discard (but still paced and counted).
    Null,
    /// Into the `loopback` input (only with the `loopback` input).
    Loopback,
}

impl InputSpec {
    /// A real microphone (`default`, `device:NAME`), as opposed to a synthetic or file source.
    pub fn is_device(&self) -> bool {
        matches!(self, InputSpec::Default | InputSpec::Device(_))
    }

    pub fn parse(s: &str) -> Result<InputSpec, DeviceError> {
        let bad = || DeviceError::BadSpec {
            kind: "input",
            spec: s.to_string(),
            want: "default, device:NAME, tone:HZ, wav:FILE, silence or loopback",
        };
        let s = s.trim();
        Ok(match s.split_once(':') {
            None if s.is_empty() || s == "default" => InputSpec::Default,
            None if s == "silence" => InputSpec::Silence,
            None if s == "loopback" => InputSpec::Loopback,
            Some(("device", name)) if !name.is_empty() => InputSpec::Device(name.into()),
            Some(("tone", hz)) => {
                let hz: f32 = hz.parse().map_err(|_| bad())?;
                if !(20.0..=20_000.0).contains(&hz) {
                    return Err(bad());
                }
                InputSpec::Tone(hz)
            }
            Some(("wav", path)) if !path.is_empty() => InputSpec::Wav(path.into()),
            _ => return Err(bad()),
        })
    }
}

impl OutputSpec {
    pub fn parse(s: &str) -> Result<OutputSpec, DeviceError> {
        let s = s.trim();
        Ok(match s.split_once(':') {
            None if s.is_empty() || s == "default" => OutputSpec::Default,
            None if s == "null" => OutputSpec::Null,
            None if s == "loopback" => OutputSpec::Loopback,
            Some(("device", name)) if !name.is_empty() => OutputSpec::Device(name.into()),
            Some(("wav", path)) if !path.is_empty() => OutputSpec::Wav(path.into()),
            _ => {
                return Err(DeviceError::BadSpec {
                    kind: "output",
                    spec: s.to_string(),
                    want: "default, device:NAME, wav:FILE, null or loopback",
                });
            }
        })
    }
}

impl fmt::Display for InputSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InputSpec::Default => f.write_str("default"),
            InputSpec::Device(n) => write!(f, "device:{n}"),
            InputSpec::Tone(hz) => write!(f, "tone:{hz}"),
            InputSpec::Wav(p) => write!(f, "wav:{}", p.display()),
            InputSpec::Silence => f.write_str("silence"),
            InputSpec::Loopback => f.write_str("loopback"),
        }
    }
}

impl fmt::Display for OutputSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OutputSpec::Default => f.write_str("default"),
            OutputSpec::Device(n) => write!(f, "device:{n}"),
            OutputSpec::Wav(p) => write!(f, "wav:{}", p.display()),
            OutputSpec::Null => f.write_str("null"),
            OutputSpec::Loopback => f.write_str("loopback"),
        }
    }
}

/// Captured audio, pulled one hub frame at a time.
pub trait AudioSource: Send {
    /// Fills `out` (`FRAME_SAMPLES` long) with the next frame. A device that stopped working
    /// fills silence and says so.
    fn read(&mut self, out: &mut [i16]) -> Result<(), DeviceError>;
    /// How old a frame is when read (a real device's buffers); None for synthetic sources.
    fn latency(&self) -> Option<std::time::Duration> {
        None
    }
    /// Pause (`false`) or resume the device's stream while nothing needs it. The device stays
    /// open (opened once): only the host's data flow stops, so an idle engine costs no CPU.
    fn set_running(&mut self, _on: bool) {}
}

/// Played audio, one mixed hub frame at a time.
pub trait AudioSink: Send {
    fn write(&mut self, frame: &[i16]) -> Result<(), DeviceError>;
    /// How long a frame written now waits before it is heard; None for synthetic sinks.
    fn latency(&self) -> Option<std::time::Duration> {
        None
    }
    /// Flushes what must survive the process (a WAV header).
    fn close(&mut self) -> Result<(), DeviceError> {
        Ok(())
    }
    /// Pause or resume the device's stream (see [`AudioSource::set_running`]).
    fn set_running(&mut self, _on: bool) {}
}

struct ToneSource(ToneGenerator);

impl AudioSource for ToneSource {
    fn read(&mut self, out: &mut [i16]) -> Result<(), DeviceError> {
        self.0.fill(out);
        Ok(())
    }
}

struct SilenceSource;

impl AudioSource for SilenceSource {
    fn read(&mut self, out: &mut [i16]) -> Result<(), DeviceError> {
        out.fill(0);
        Ok(())
    }
}

/// A WAV file converted to 48 kHz once at open, then looped.
struct WavSource {
    samples: Vec<i16>,
    at: usize,
}

impl AudioSource for WavSource {
    fn read(&mut self, out: &mut [i16]) -> Result<(), DeviceError> {
        for s in out.iter_mut() {
            *s = self.samples[self.at];
            self.at = (self.at + 1) % self.samples.len();
        }
        Ok(())
    }
}

struct NullSink;

impl AudioSink for NullSink {
    fn write(&mut self, _frame: &[i16]) -> Result<(), DeviceError> {
        Ok(())
    }
}

struct WavSink {
    path: PathBuf,
    writer: Option<WavWriter>,
}

impl AudioSink for WavSink {
    fn write(&mut self, frame: &[i16]) -> Result<(), DeviceError> {
        match self.writer.as_mut() {
            Some(w) => w.write(frame).map_err(|source| DeviceError::Wav {
                path: self.path.clone(),
                source,
            }),
            None => Ok(()),
        }
    }

    fn close(&mut self) -> Result<(), DeviceError> {
        match self.writer.take() {
            Some(w) => w.finish().map_err(|source| DeviceError::Wav {
                path: self.path.clone(),
                source,
            }),
            None => Ok(()),
        }
    }
}

/// Opens a source. Called once per engine, by the capture hub.
pub fn open_source(spec: &InputSpec) -> Result<Box<dyn AudioSource>, DeviceError> {
    match spec {
        InputSpec::Default => Ok(Box::new(CpalSource::open(None)?)),
        InputSpec::Device(name) => Ok(Box::new(CpalSource::open(Some(name))?)),
        InputSpec::Tone(hz) => Ok(Box::new(ToneSource(ToneGenerator::new(
            *hz, -10.0, HUB_RATE,
        )))),
        InputSpec::Silence => Ok(Box::new(SilenceSource)),
        InputSpec::Wav(path) => Ok(Box::new(WavSource {
            samples: read_wav_at_hub_rate(path)?,
            at: 0,
        })),
        InputSpec::Loopback => Err(unpaired_loopback("input")),
    }
}

/// A WAV file's audio at the hub's rate (48 kHz mono); an error names the file. Never empty.
pub fn read_wav_at_hub_rate(path: &std::path::Path) -> Result<Vec<i16>, DeviceError> {
    let audio = read_wav(path).map_err(|source| DeviceError::Wav {
        path: path.into(),
        source,
    })?;
    let samples = convert_all(audio.rate, HUB_RATE, &audio.samples).map_err(|source| {
        DeviceError::WavRate {
            path: path.into(),
            source,
        }
    })?;
    if samples.is_empty() {
        return Err(DeviceError::EmptyWav { path: path.into() });
    }
    Ok(samples)
}

fn unpaired_loopback(kind: &str) -> DeviceError {
    DeviceError::Audio {
        what: format!("loopback {kind}"),
        message: "works only with loopback as both input and output (the echo service)".into(),
    }
}

/// Frames the loopback pair holds before the oldest are dropped: far more than the one frame
/// between a tick's playout and the next tick's capture.
const LOOPBACK_FRAMES: usize = 4;

/// The `loopback` input and output, linked: each mixed frame written to the sink is read back
/// by the source on the next hub tick (silence until then). A lock-free ring between the two,
/// allocated here once; the echo service's engine plays back what its callers send.
pub fn loopback_pair() -> (Box<dyn AudioSource>, Box<dyn AudioSink>) {
    let (tx, rx) = rtrb::RingBuffer::new(LOOPBACK_FRAMES * FRAME_SAMPLES);
    (Box::new(LoopbackSource(rx)), Box::new(LoopbackSink(tx)))
}

struct LoopbackSource(rtrb::Consumer<i16>);

impl AudioSource for LoopbackSource {
    fn read(&mut self, out: &mut [i16]) -> Result<(), DeviceError> {
        if self.0.slots() < out.len() {
            out.fill(0);
            return Ok(());
        }
        for s in out.iter_mut() {
            *s = self.0.pop().unwrap_or(0);
        }
        Ok(())
    }
}

struct LoopbackSink(rtrb::Producer<i16>);

impl AudioSink for LoopbackSink {
    fn write(&mut self, frame: &[i16]) -> Result<(), DeviceError> {
        // Full (nothing reads: no capture this tick): the newest frame is dropped, not the
        // oldest — the source catches up on its next reads.
        if self.0.slots() < frame.len() {
            return Ok(());
        }
        for &s in frame {
            let _ = self.0.push(s);
        }
        Ok(())
    }
}

/// Opens a sink. Called once per engine, by the playout side of the hub.
pub fn open_sink(spec: &OutputSpec) -> Result<Box<dyn AudioSink>, DeviceError> {
    match spec {
        OutputSpec::Default => Ok(Box::new(CpalSink::open(None)?)),
        OutputSpec::Device(name) => Ok(Box::new(CpalSink::open(Some(name))?)),
        OutputSpec::Null => Ok(Box::new(NullSink)),
        OutputSpec::Wav(path) => {
            let writer = WavWriter::create(path, HUB_RATE).map_err(|source| DeviceError::Wav {
                path: path.clone(),
                source,
            })?;
            Ok(Box::new(WavSink {
                path: path.clone(),
                writer: Some(writer),
            }))
        }
        OutputSpec::Loopback => Err(unpaired_loopback("output")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_print_back() {
        for s in [
            "default",
            "device:USB Headset",
            "tone:440",
            "wav:/tmp/x.wav",
            "silence",
            "loopback",
        ] {
            assert_eq!(InputSpec::parse(s).unwrap().to_string(), s);
        }
        for s in ["default", "device:hw", "wav:/tmp/y.wav", "null", "loopback"] {
            assert_eq!(OutputSpec::parse(s).unwrap().to_string(), s);
        }
        for bad in ["tone:", "tone:abc", "tone:5", "wav:", "mic", "device:"] {
            assert!(InputSpec::parse(bad).is_err(), "{bad}");
        }
        assert!(OutputSpec::parse("speaker").is_err());
    }

    #[test]
    fn missing_wav_and_unknown_devices_are_clear_errors() {
        let e = open_source(&InputSpec::Wav("/nonexistent/x.wav".into()))
            .err()
            .unwrap();
        assert!(e.to_string().contains("/nonexistent/x.wav"), "{e}");
        let e = open_source(&InputSpec::Device("no such microphone, surely".into()))
            .err()
            .unwrap();
        assert!(e.to_string().contains("no such microphone"), "{e}");
    }

    #[test]
    fn loopback_plays_back_each_frame_once_and_alone_is_an_error() {
        let (mut src, mut sink) = loopback_pair();
        let mut frame = [7i16; FRAME_SAMPLES];
        src.read(&mut frame).unwrap();
        assert!(
            frame.iter().all(|&s| s == 0),
            "silence before anything was played"
        );
        let played: Vec<i16> = (0..FRAME_SAMPLES as i16).collect();
        sink.write(&played).unwrap();
        src.read(&mut frame).unwrap();
        assert_eq!(frame[..], played[..]);
        src.read(&mut frame).unwrap();
        assert!(
            frame.iter().all(|&s| s == 0),
            "each frame is read back once"
        );
        // Written with no one reading: the ring keeps what fits and drops the rest.
        for _ in 0..LOOPBACK_FRAMES + 3 {
            sink.write(&played).unwrap();
        }
        for _ in 0..LOOPBACK_FRAMES {
            src.read(&mut frame).unwrap();
            assert_eq!(frame[..], played[..]);
        }
        let e = open_source(&InputSpec::Loopback).err().unwrap();
        assert!(e.to_string().contains("loopback"), "{e}");
        assert!(open_sink(&OutputSpec::Loopback).is_err());
    }

    #[test]
    fn wav_source_loops_and_wav_sink_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.wav");
        // 60 ms at 8 kHz: 2880 samples at 48 kHz, three hub frames.
        let mut w = WavWriter::create(&path, 8_000).unwrap();
        w.write(&[1000i16; 480]).unwrap();
        w.finish().unwrap();
        let mut src = open_source(&InputSpec::Wav(path)).unwrap();
        let mut frames = vec![[0i16; FRAME_SAMPLES]; 4];
        for f in frames.iter_mut() {
            src.read(f).unwrap();
        }
        // The file's level in the middle (its edges are filtered against the silence around
        // the file), and the file again from the fourth frame on.
        let at_level = frames[1].iter().filter(|&&s| (s - 1000).abs() <= 2).count();
        assert_eq!(at_level, FRAME_SAMPLES, "{:?}", &frames[1][..8]);
        assert_eq!(frames[3], frames[0]);
        let frame = frames[1];

        let out = dir.path().join("out.wav");
        let mut sink = open_sink(&OutputSpec::Wav(out.clone())).unwrap();
        sink.write(&frame).unwrap();
        sink.close().unwrap();
        let rec = read_wav(&out).unwrap();
        assert_eq!(rec.samples, frame);
        assert_eq!((rec.rate, rec.samples.len()), (HUB_RATE, FRAME_SAMPLES));
    }
}
