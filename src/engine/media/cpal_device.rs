//! Real audio devices through cpal: [`CpalSource`] (a microphone) and [`CpalSink`] (a speaker).
//!
//! On Linux the native PulseAudio host (cpal's `pulseaudio` feature, a pure-Rust client that also
//! speaks to PipeWire's pipewire-pulse) is preferred when a server is reachable; otherwise cpal's
//! default host (ALSA). See ../shared/FACTS.md for why: the ALSA `pulse` device stalls on input.
//!
//! Threads and buffers. The device's callback runs on cpal's audio thread; the hub pulls and
//! pushes 20 ms frames on the engine's thread. Between them is one lock-free single-producer /
//! single-consumer ring (`rtrb`) of mono `i16` samples at the *device's* rate. The callback only
//! converts samples (format and channels, no rate change) and pushes or pops them one by one: no
//! allocation, no lock, no syscall. Rate conversion to and from the hub's 48 kHz happens on the
//! hub's side with [`Resampler`]. Underruns give silence, overruns drop, and the drift between
//! the device's clock and the hub's is absorbed by keeping the ring near a target fill (the
//! source skips the oldest samples beyond it, the sink drops a frame's excess beyond it).
//!
//! One connection to the sound server for all the devices open at a time ([`with_host`]): on the
//! PulseAudio host a connection is a socket and a thread that reads it, and the server's record
//! data and playback requests for one sink and its monitor arrive together, so a microphone and a
//! speaker on one connection cost about 160 thread wake-ups a second in a call instead of 230
//! (record and playback threads apart).
//!
//! The cpal `Stream` is built, played and dropped on a dedicated thread that lives as long as the
//! source or sink: it is not `Send` on every platform, and this keeps `CpalSource`/`CpalSink`
//! `Send` everywhere. A stream error that means the device is gone sets an atomic flag; the next
//! `read`/`write` reports it as [`DeviceError::Lost`].
//!
//! Latency. Each callback stores the device's own latency from cpal's timestamps (capture →
//! callback for a microphone, callback → playback for a speaker) in an atomic; `latency()` adds
//! what waits in the ring. The echo canceller takes the sum of both directions as its delay hint.

use super::devices::{AudioSink, AudioSource, DeviceError, FRAME_SAMPLES, HUB_RATE};
use super::hotplug::Snapshot;
use super::resample::Resampler;
use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use cpal::{FromSample, SampleFormat, SizedSample};
use rtrb::{Consumer, Producer, RingBuffer};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long building a stream may take before the open is refused.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Input,
    Output,
}

impl Direction {
    fn word(self) -> &'static str {
        match self {
            Direction::Input => "input",
            Direction::Output => "output",
        }
    }
}

/// The PulseAudio host when a server is reachable, else the platform's default host.
fn host() -> cpal::Host {
    #[cfg(target_os = "linux")]
    if cpal::available_hosts().contains(&cpal::HostId::PulseAudio)
        && let Ok(h) = cpal::host_from_id(cpal::HostId::PulseAudio)
    {
        return h;
    }
    cpal::default_host()
}

/// A device's name for users: its id (`pulseaudio:loop.monitor`) and its description.
fn label(device: &cpal::Device) -> String {
    let id = device.id().map(|i| i.to_string()).unwrap_or_default();
    let name = device
        .description()
        .map(|d| d.name().to_string())
        .unwrap_or_default();
    match (id.is_empty(), name.is_empty() || name == id) {
        (false, false) => format!("{id} ({name})"),
        (false, true) => id,
        (true, _) => name,
    }
}

fn devices(host: &cpal::Host, dir: Direction) -> Vec<cpal::Device> {
    let list = match dir {
        Direction::Input => host.input_devices().map(|d| d.collect::<Vec<_>>()),
        Direction::Output => host.output_devices().map(|d| d.collect::<Vec<_>>()),
    };
    list.unwrap_or_else(|e| {
        tracing::warn!("listing audio {} devices: {e}", dir.word());
        Vec::new()
    })
}

/// Runs `open` on the connection the open devices share, made if none is open: the stream it
/// opens keeps the connection (which closes when the last stream on it does). An open that fails
/// on a shared connection is tried once more on a new one, which is shared from then on: the old
/// one may have died with its server (a restarted sound server); a genuine failure (no such
/// device) fails again.
fn with_host<T>(
    mut open: impl FnMut(&cpal::Host) -> Result<(cpal::Stream, T), DeviceError>,
) -> Result<(Live, T), DeviceError> {
    static SHARED: Mutex<Weak<cpal::Host>> = Mutex::new(Weak::new());
    let live = |(stream, t), connection| {
        (
            Live {
                stream,
                _connection: connection,
            },
            t,
        )
    };
    let shared = SHARED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .upgrade();
    if let Some(h) = shared {
        match open(&h) {
            Ok(opened) => return Ok(live(opened, h)),
            Err(e) => tracing::debug!("{e}: trying again on a new sound server connection"),
        }
    }
    let fresh = Arc::new(host());
    *SHARED.lock().unwrap_or_else(PoisonError::into_inner) = Arc::downgrade(&fresh);
    Ok(live(open(&fresh)?, fresh))
}

/// The input and output devices of the preferred host, as `id (description)`, for settings UIs
/// and `--list-devices`. A `device:NAME` spec matches any part of these (case-insensitive).
pub fn list_devices() -> (Vec<String>, Vec<String>) {
    let host = host();
    let names = |dir| devices(&host, dir).iter().map(label).collect();
    (names(Direction::Input), names(Direction::Output))
}

/// Enumerates the devices again and again over one host connection (the hot-plug watcher's):
/// a connection that fails is dropped and made anew at the next look.
#[derive(Default)]
pub struct Lister {
    host: Option<cpal::Host>,
}

impl Lister {
    /// The devices present and the defaults; None when the host cannot be asked right now.
    pub fn snapshot(&mut self) -> Option<Snapshot> {
        let host = self.host.get_or_insert_with(host);
        let listed = host.input_devices().and_then(|i| {
            Ok((
                i.collect::<Vec<_>>(),
                host.output_devices()?.collect::<Vec<_>>(),
            ))
        });
        match listed {
            Ok((inputs, outputs)) => Some(Snapshot {
                inputs: inputs.iter().map(label).collect(),
                outputs: outputs.iter().map(label).collect(),
                default_input: host.default_input_device().as_ref().map(label),
                default_output: host.default_output_device().as_ref().map(label),
            }),
            Err(e) => {
                tracing::debug!("listing audio devices: {e}");
                self.host = None;
                None
            }
        }
    }
}

/// The default device, or the first whose label contains `name` (case-insensitive; an exact id
/// or description wins over a substring).
fn find_device(
    host: &cpal::Host,
    dir: Direction,
    name: Option<&str>,
) -> Result<cpal::Device, DeviceError> {
    let Some(name) = name else {
        let d = match dir {
            Direction::Input => host.default_input_device(),
            Direction::Output => host.default_output_device(),
        };
        return d.ok_or_else(|| DeviceError::Audio {
            what: format!("default audio {}", dir.word()),
            message: format!("the {} host has no default device", host.id()),
        });
    };
    let all = devices(host, dir);
    let want = name.to_lowercase();
    let exact = all.iter().position(|d| {
        let id = d.id().map(|i| i.to_string().to_lowercase());
        let desc = d.description().map(|x| x.name().to_lowercase());
        id.is_ok_and(|i| i == want || i.split_once(':').is_some_and(|(_, rest)| rest == want))
            || desc.is_ok_and(|x| x == want)
    });
    let found = exact.or_else(|| {
        all.iter()
            .position(|d| label(d).to_lowercase().contains(&want))
    });
    match found {
        Some(i) => Ok(all.into_iter().nth(i).expect("index from the same list")),
        None => Err(DeviceError::NoSuchDevice {
            kind: dir.word(),
            name: name.to_string(),
            available: if all.is_empty() {
                "none".into()
            } else {
                all.iter().map(label).collect::<Vec<_>>().join(", ")
            },
        }),
    }
}

/// The stream format: 48 kHz mono `i16` when the device takes it (PulseAudio converts anything),
/// else the device's default configuration.
fn choose_config(
    device: &cpal::Device,
    dir: Direction,
) -> Result<(cpal::StreamConfig, SampleFormat), cpal::Error> {
    let ranges: Vec<cpal::SupportedStreamConfigRange> = match dir {
        Direction::Input => device.supported_input_configs()?.collect(),
        Direction::Output => device.supported_output_configs()?.collect(),
    };
    let preferred = [SampleFormat::I16, SampleFormat::F32];
    let pick = preferred.iter().find_map(|&f| {
        ranges
            .iter()
            .filter(|r| r.sample_format() == f && r.contains_rate(HUB_RATE))
            .min_by_key(|r| r.channels())
            .map(|r| r.with_sample_rate(HUB_RATE))
    });
    let supported = match pick {
        Some(s) => s,
        None => match dir {
            Direction::Input => device.default_input_config()?,
            Direction::Output => device.default_output_config()?,
        },
    };
    let mut config = supported.config();
    // 20 ms periods when the device allows choosing (PulseAudio does); else the host's default.
    let period = supported.sample_rate() / 50;
    if let cpal::SupportedBufferSize::Range { min, max } = *supported.buffer_size()
        && (min..=max).contains(&period)
    {
        config.buffer_size = cpal::BufferSize::Fixed(period);
    }
    Ok((config, supported.sample_format()))
}

/// State shared between the stream thread's callbacks and the source or sink.
#[derive(Default)]
struct Shared {
    /// The device is gone (a fatal stream error).
    failed: AtomicBool,
    /// The first fatal error's text.
    reason: OnceLock<String>,
    /// Underruns and overruns seen by the callback (samples short or dropped), for debugging.
    xruns: AtomicU64,
    /// The device's latency at the last callback, µs (0: the host does not say).
    device_latency_us: AtomicU32,
}

impl Shared {
    fn on_error(&self, what: &str, e: cpal::Error) {
        use cpal::ErrorKind::*;
        match e.kind() {
            Xrun | DeviceChanged | RealtimeDenied => {
                self.xruns.fetch_add(1, Ordering::Relaxed);
                tracing::debug!("{what}: {e}");
            }
            _ => {
                tracing::error!("{what} failed: {e}");
                let _ = self.reason.set(e.to_string());
                self.failed.store(true, Ordering::Release);
            }
        }
    }

    /// The host's figure from the callback, or else one period of the stream (`period`).
    fn device_latency(&self, period: Duration) -> Duration {
        match self.device_latency_us.load(Ordering::Relaxed) {
            0 => period,
            us => Duration::from_micros(u64::from(us)),
        }
    }

    fn check(&self, what: &str) -> Result<(), DeviceError> {
        if self.failed.load(Ordering::Acquire) {
            return Err(DeviceError::Lost {
                what: what.to_string(),
                message: self.reason.get().cloned().unwrap_or_default(),
            });
        }
        Ok(())
    }
}

/// A playing stream and the connection it was opened on (kept open while the stream lives;
/// dropped after it).
struct Live {
    stream: cpal::Stream,
    _connection: Arc<cpal::Host>,
}

/// What the stream thread reports once the stream plays.
struct Opened<R> {
    ring: R,
    rate: u32,
    label: String,
    /// One device buffer (the fixed period asked for, else a 20 ms guess).
    period: Duration,
}

/// One device buffer of `config`: the fixed size asked for, else 20 ms (hosts' usual default).
fn period_of(config: &cpal::StreamConfig) -> Duration {
    match config.buffer_size {
        cpal::BufferSize::Fixed(frames) if config.sample_rate > 0 => {
            Duration::from_micros(u64::from(frames) * 1_000_000 / u64::from(config.sample_rate))
        }
        _ => Duration::from_millis(20),
    }
}

/// `samples` at `rate` Hz as a duration.
fn samples_to_duration(samples: usize, rate: u32) -> Duration {
    Duration::from_micros(samples as u64 * 1_000_000 / u64::from(rate.max(1)))
}

fn to_us(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

/// What the owner asks of a stream's thread (cpal streams are not `Send`: only their own
/// thread touches them).
enum Ctl {
    Play,
    Pause,
}

/// The thread owning a cpal `Stream`: it builds and plays it, then holds it — pausing and
/// resuming it on request — until told to stop (its sender dropped).
struct StreamThread {
    stop: Option<mpsc::Sender<Ctl>>,
    thread: Option<JoinHandle<()>>,
}

impl StreamThread {
    /// Runs `build` on a new thread; returns once the stream plays (or failed to).
    fn spawn<R: Send + 'static>(
        what: String,
        build: impl FnOnce() -> Result<(Live, Opened<R>), DeviceError> + Send + 'static,
    ) -> Result<(StreamThread, Opened<R>), DeviceError> {
        let (ready_tx, ready_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = mpsc::channel::<Ctl>();
        let name = what.clone();
        let thread = std::thread::Builder::new()
            .name("dialtone-audio".into())
            .spawn(move || match build() {
                Ok((live, opened)) => {
                    if ready_tx.send(Ok(opened)).is_ok() {
                        // Until the owner drops its sender.
                        while let Ok(ctl) = stop_rx.recv() {
                            let r = match ctl {
                                Ctl::Play => live.stream.play(),
                                Ctl::Pause => live.stream.pause(),
                            };
                            match r {
                                Ok(()) => tracing::debug!(
                                    "{name}: {}",
                                    if matches!(ctl, Ctl::Play) {
                                        "resumed"
                                    } else {
                                        "paused while idle"
                                    }
                                ),
                                Err(e) => tracing::warn!("{name}: cannot pause/resume: {e}"),
                            }
                        }
                    }
                    drop(live);
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            })
            .map_err(|e| DeviceError::Audio {
                what: what.clone(),
                message: format!("cannot start its thread: {e}"),
            })?;
        let mut st = StreamThread {
            stop: Some(stop_tx),
            thread: Some(thread),
        };
        match ready_rx.recv_timeout(OPEN_TIMEOUT) {
            Ok(Ok(opened)) => Ok((st, opened)),
            Ok(Err(e)) => Err(e),
            Err(_) => {
                // A stuck backend: leave the thread behind rather than block on it.
                st.thread = None;
                Err(DeviceError::Audio {
                    what,
                    message: format!("no answer from the audio host in {OPEN_TIMEOUT:?}"),
                })
            }
        }
    }
}

impl StreamThread {
    /// Asks the stream's thread to resume or pause it; never blocks.
    fn set_running(&self, on: bool) {
        if let Some(tx) = &self.stop {
            let _ = tx.send(if on { Ctl::Play } else { Ctl::Pause });
        }
    }
}

impl Drop for StreamThread {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Builds a stream for the device's sample format: `$build::<T>(args…)` with the matching `T`.
macro_rules! by_sample_format {
    ($format:expr, $what:expr, $build:ident($($arg:expr),* $(,)?)) => {
        match $format {
            SampleFormat::I16 => $build::<i16>($($arg),*),
            SampleFormat::F32 => $build::<f32>($($arg),*),
            SampleFormat::I32 => $build::<i32>($($arg),*),
            SampleFormat::U8 => $build::<u8>($($arg),*),
            SampleFormat::U16 => $build::<u16>($($arg),*),
            f => Err(unsupported($what, f)),
        }
    };
}

/// Starts a built stream and logs what was opened; returns the device's label.
fn play(
    stream: &cpal::Stream,
    device: &cpal::Device,
    config: &cpal::StreamConfig,
    format: SampleFormat,
    what: &str,
) -> Result<String, DeviceError> {
    stream.play().map_err(cpal_err(what))?;
    let label = label(device);
    tracing::info!(
        "{what}: {label}, {} Hz, {} channel(s), {format}, {:?}",
        config.sample_rate,
        config.channels,
        config.buffer_size
    );
    Ok(label)
}

fn cpal_err(what: &str) -> impl Fn(cpal::Error) -> DeviceError + '_ {
    move |e| DeviceError::Audio {
        what: what.to_string(),
        message: e.to_string(),
    }
}

fn unsupported(what: &str, format: SampleFormat) -> DeviceError {
    DeviceError::Audio {
        what: what.to_string(),
        message: format!("sample format {format} is not supported"),
    }
}

/// A microphone: the device's samples arrive through the ring and leave as 48 kHz hub frames.
pub struct CpalSource {
    what: String,
    label: String,
    ring: Consumer<i16>,
    rate: u32,
    shared: Arc<Shared>,
    up: Resampler,
    /// Device-rate samples taken from the ring this read.
    raw: Vec<i16>,
    /// Converted samples not yet handed to the hub (fewer than a frame or so).
    pending: Vec<i16>,
    /// Whether enough is buffered to play through; cleared on underrun so a bursty device
    /// refills its cushion instead of alternating audio and gaps.
    primed: bool,
    period: Duration,
    thread: StreamThread,
}

impl CpalSource {
    /// Underruns and overruns so far (gaps filled with silence, samples dropped).
    pub fn xruns(&self) -> u64 {
        self.shared.xruns.load(Ordering::Relaxed)
    }

    /// Opens the default input (`None`) or the first matching `device:NAME`.
    pub fn open(name: Option<&str>) -> Result<CpalSource, DeviceError> {
        let what = match name {
            Some(n) => format!("audio input device:{n}"),
            None => "audio input default".to_string(),
        };
        let shared = Arc::new(Shared::default());
        let (name2, shared2, what2) = (name.map(str::to_string), shared.clone(), what.clone());
        let (thread, opened) = StreamThread::spawn(what.clone(), move || {
            with_host(|host| {
                let device = find_device(host, Direction::Input, name2.as_deref())?;
                let (config, format) =
                    choose_config(&device, Direction::Input).map_err(cpal_err(&what2))?;
                // One second at the device's rate: far more than the hub ever lets accumulate.
                let (producer, consumer) = RingBuffer::<i16>::new(config.sample_rate as usize);
                let channels = usize::from(config.channels.max(1));
                let stream = by_sample_format!(
                    format,
                    &what2,
                    build_input(&device, &config, channels, producer, &shared2, &what2)
                )?;
                let label = play(&stream, &device, &config, format, &what2)?;
                Ok((
                    stream,
                    Opened {
                        ring: consumer,
                        rate: config.sample_rate,
                        label,
                        period: period_of(&config),
                    },
                ))
            })
        })?;
        let up = Resampler::streaming(opened.rate, HUB_RATE).map_err(|e| DeviceError::Audio {
            what: what.clone(),
            message: e.to_string(),
        })?;
        Ok(CpalSource {
            what,
            label: opened.label,
            ring: opened.ring,
            rate: opened.rate,
            shared,
            up,
            raw: Vec::with_capacity(opened.rate as usize / 10),
            pending: Vec::with_capacity(2 * FRAME_SAMPLES),
            primed: false,
            period: opened.period,
            thread,
        })
    }

    /// The device opened, as `--list-devices` names it.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// How old captured audio is when the hub reads it: the device's latency plus what waits in
    /// the ring and the converter.
    pub fn latency(&self) -> Duration {
        self.shared.device_latency(self.period)
            + samples_to_duration(self.ring.slots(), self.rate)
            + samples_to_duration(self.pending.len(), HUB_RATE)
    }

    /// Device-rate samples for `ms` milliseconds.
    fn samples(&self, ms: u32) -> usize {
        (self.rate * ms / 1000) as usize
    }
}

fn build_input<T>(
    device: &cpal::Device,
    config: &cpal::StreamConfig,
    channels: usize,
    mut ring: Producer<i16>,
    shared: &Arc<Shared>,
    what: &str,
) -> Result<cpal::Stream, DeviceError>
where
    T: SizedSample + Send + 'static,
    i16: FromSample<T>,
{
    let (cb_shared, err_shared, err_what) = (shared.clone(), shared.clone(), what.to_string());
    device
        .build_input_stream::<T, _, _>(
            *config,
            // The audio thread: first channel of each frame, converted, pushed; a full ring
            // (the hub is not reading) drops the rest of this buffer. No allocation, no lock.
            move |data: &[T], info: &cpal::InputCallbackInfo| {
                let t = info.timestamp();
                let latency = to_us(t.callback.duration_since(t.capture));
                cb_shared
                    .device_latency_us
                    .store(latency, Ordering::Relaxed);
                for frame in data.chunks(channels) {
                    if ring.push(i16::from_sample_(frame[0])).is_err() {
                        cb_shared.xruns.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                }
            },
            move |e| err_shared.on_error(&err_what, e),
            Some(OPEN_TIMEOUT),
        )
        .map_err(cpal_err(what))
}

impl AudioSource for CpalSource {
    fn latency(&self) -> Option<Duration> {
        Some(CpalSource::latency(self))
    }

    /// Paused (corked at the sound server, still open) while no call, alert or meter needs it:
    /// no CPU, and no "microphone in use" indicator on the desktop while idle. A call resumes it
    /// when it starts ringing, so it runs before the answer.
    fn set_running(&mut self, on: bool) {
        self.thread.set_running(on);
    }

    fn read(&mut self, out: &mut [i16]) -> Result<(), DeviceError> {
        // Drift and idle time: while no call ticks the hub, or when the device runs a little
        // fast, the ring fills; keep only the newest `target` so latency stays bounded.
        let target = self.samples(40);
        let high = self.samples(120);
        let available = self.ring.slots();
        if available > high {
            let skip = available - target;
            if let Ok(chunk) = self.ring.read_chunk(skip) {
                chunk.commit_all();
            }
        }
        let available = self.ring.slots();
        if !self.primed && available >= target {
            self.primed = true;
        }
        if self.primed {
            // Enough device samples to make up this frame (the resampler keeps the phase).
            let have = self.pending.len();
            let need_out = out.len().saturating_sub(have);
            let need_in = self.up.input_for(need_out);
            let take = need_in.min(self.ring.slots());
            self.raw.clear();
            if let Ok(chunk) = self.ring.read_chunk(take) {
                self.raw.extend(chunk);
            }
            self.up.process(&self.raw, &mut self.pending);
        }
        let n = self.pending.len().min(out.len());
        out[..n].copy_from_slice(&self.pending[..n]);
        out[n..].fill(0);
        self.pending.drain(..n);
        if self.primed && n < out.len() {
            // Underrun: silence for the missing part, then rebuild the cushion.
            self.primed = false;
            self.shared.xruns.fetch_add(1, Ordering::Relaxed);
        }
        self.shared.check(&self.what)
    }
}

/// A speaker: 48 kHz hub frames are converted to the device's rate and queued in the ring.
pub struct CpalSink {
    what: String,
    label: String,
    ring: Producer<i16>,
    rate: u32,
    shared: Arc<Shared>,
    down: Resampler,
    converted: Vec<i16>,
    period: Duration,
    thread: StreamThread,
}

impl CpalSink {
    /// Underruns and overruns so far (gaps filled with silence, samples dropped).
    pub fn xruns(&self) -> u64 {
        self.shared.xruns.load(Ordering::Relaxed)
    }

    /// Opens the default output (`None`) or the first matching `device:NAME`.
    pub fn open(name: Option<&str>) -> Result<CpalSink, DeviceError> {
        let what = match name {
            Some(n) => format!("audio output device:{n}"),
            None => "audio output default".to_string(),
        };
        let shared = Arc::new(Shared::default());
        let (name2, shared2, what2) = (name.map(str::to_string), shared.clone(), what.clone());
        let (thread, opened) = StreamThread::spawn(what.clone(), move || {
            with_host(|host| {
                let device = find_device(host, Direction::Output, name2.as_deref())?;
                let (config, format) =
                    choose_config(&device, Direction::Output).map_err(cpal_err(&what2))?;
                // Half a second at the device's rate; `write` keeps it far emptier.
                let (producer, consumer) = RingBuffer::<i16>::new(config.sample_rate as usize / 2);
                let channels = usize::from(config.channels.max(1));
                let stream = by_sample_format!(
                    format,
                    &what2,
                    build_output(&device, &config, channels, consumer, &shared2, &what2)
                )?;
                let label = play(&stream, &device, &config, format, &what2)?;
                Ok((
                    stream,
                    Opened {
                        ring: producer,
                        rate: config.sample_rate,
                        label,
                        period: period_of(&config),
                    },
                ))
            })
        })?;
        let down = Resampler::streaming(HUB_RATE, opened.rate).map_err(|e| DeviceError::Audio {
            what: what.clone(),
            message: e.to_string(),
        })?;
        Ok(CpalSink {
            what,
            label: opened.label,
            ring: opened.ring,
            rate: opened.rate,
            shared,
            down,
            converted: Vec::with_capacity(opened.rate as usize / 10),
            period: opened.period,
            thread,
        })
    }

    /// The device opened, as `--list-devices` names it.
    pub fn label(&self) -> &str {
        &self.label
    }
}

fn build_output<T>(
    device: &cpal::Device,
    config: &cpal::StreamConfig,
    channels: usize,
    mut ring: Consumer<i16>,
    shared: &Arc<Shared>,
    what: &str,
) -> Result<cpal::Stream, DeviceError>
where
    T: SizedSample + FromSample<i16> + Send + 'static,
{
    let (cb_shared, err_shared, err_what) = (shared.clone(), shared.clone(), what.to_string());
    // Samples the device needs queued before playing resumes after running dry: two hub frames.
    let cushion = (config.sample_rate / 25) as usize;
    let mut playing = false;
    device
        .build_output_stream::<T, _, _>(
            *config,
            // The audio thread: one queued sample to every channel of a frame; silence when the
            // ring is dry (underrun) until a cushion has built up again. No allocation, no lock.
            move |data: &mut [T], info: &cpal::OutputCallbackInfo| {
                let t = info.timestamp();
                let latency = to_us(t.playback.duration_since(t.callback));
                cb_shared
                    .device_latency_us
                    .store(latency, Ordering::Relaxed);
                if !playing && ring.slots() >= cushion {
                    playing = true;
                }
                let silence = T::from_sample_(0i16);
                for frame in data.chunks_mut(channels) {
                    let s = if playing {
                        match ring.pop() {
                            Ok(s) => T::from_sample_(s),
                            Err(_) => {
                                playing = false;
                                cb_shared.xruns.fetch_add(1, Ordering::Relaxed);
                                silence
                            }
                        }
                    } else {
                        silence
                    };
                    frame.fill(s);
                }
            },
            move |e| err_shared.on_error(&err_what, e),
            Some(OPEN_TIMEOUT),
        )
        .map_err(cpal_err(what))
}

impl CpalSink {
    /// How long a frame written now waits before it is heard: what is queued in the ring plus
    /// the device's latency.
    pub fn latency(&self) -> Duration {
        let queued = self.ring.buffer().capacity() - self.ring.slots();
        self.shared.device_latency(self.period) + samples_to_duration(queued, self.rate)
    }
}

impl AudioSink for CpalSink {
    fn latency(&self) -> Option<Duration> {
        Some(CpalSink::latency(self))
    }

    fn set_running(&mut self, on: bool) {
        self.thread.set_running(on);
    }

    fn write(&mut self, frame: &[i16]) -> Result<(), DeviceError> {
        self.shared.check(&self.what)?;
        self.converted.clear();
        self.down.process(frame, &mut self.converted);
        // Drift: when the hub runs ahead of the device, keep at most ~100 ms queued and drop
        // the excess of this frame; a full ring (overrun) drops too.
        let limit = (self.rate / 10) as usize;
        let queued = self.ring.buffer().capacity() - self.ring.slots();
        let room = limit.saturating_sub(queued).min(self.ring.slots());
        let n = self.converted.len().min(room);
        if n < self.converted.len() {
            self.shared.xruns.fetch_add(1, Ordering::Relaxed);
        }
        if let Ok(chunk) = self.ring.write_chunk_uninit(n) {
            chunk.fill_from_iter(self.converted[..n].iter().copied());
        }
        Ok(())
    }
}
