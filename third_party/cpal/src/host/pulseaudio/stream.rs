use std::{
    sync::{
        atomic::{fence, AtomicBool, Ordering},
        Arc, Condvar, Mutex,
    },
    time::{Duration, Instant},
};

#[cfg(not(target_has_atomic = "64"))]
use portable_atomic::AtomicU64;
#[cfg(target_has_atomic = "64")]
use std::sync::atomic::AtomicU64;

use futures::executor::block_on;
use futures::FutureExt as _;
use pulseaudio::{protocol, AsPlaybackSource};

use crate::{
    host::{emit_error, latch::Latch, ErrorCallbackArc},
    traits::StreamTrait,
    Data, Error, ErrorKind, FrameCount, InputCallbackInfo, InputStreamTimestamp,
    OutputCallbackInfo, OutputStreamTimestamp, SampleFormat, StreamInstant,
};

// Dialtone patch: a callback asks for a poll when the last one is this old (was 100 ms; the
// figure between polls now follows the bytes moved, see `LatencyClock`).
const LATENCY_MAX_INTERVAL: Duration = Duration::from_secs(1);
// Dialtone patch: the longest wait between two latency polls when no callback asks for one.
const LATENCY_IDLE_INTERVAL: Duration = Duration::from_millis(1500);
// Dialtone patch: a poll during which a callback moved bytes is taken again, this many times
// at most (the server's figure and the count of bytes would disagree by a callback's worth).
const LATENCY_POLL_TRIES: usize = 3;
// Dialtone patch: the same for a corked stream (nothing to measure; an hour stands for never).
const LATENCY_PAUSED_INTERVAL: Duration = Duration::from_secs(3600);

// Coordinates the latency polling thread
struct LatencyHandle {
    // Cancellation on drop
    cancel: Arc<AtomicBool>,
    // Event-driven early wakeup from callbacks and play/pause
    update: Arc<(Mutex<bool>, Condvar)>,
    // Dialtone patch: corked (no timed polls until played again)
    paused: Arc<AtomicBool>,
}

impl LatencyHandle {
    fn new() -> Self {
        Self {
            cancel: Arc::new(AtomicBool::new(false)),
            update: Arc::new((Mutex::new(false), Condvar::new())),
            paused: Arc::new(AtomicBool::new(false)),
        }
    }

    // Trigger an early poll
    fn notify(&self) {
        let (lock, cvar) = &*self.update;
        *lock.lock().unwrap_or_else(|e| e.into_inner()) = true;
        cvar.notify_one();
    }

    // Dialtone patch: record whether the stream is corked, then trigger a poll
    fn set_paused(&self, paused: bool) {
        self.paused.store(paused, Ordering::Relaxed);
        self.notify();
    }

    // Signal cancellation and wake the thread immediately
    fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
        self.notify();
    }
}

// Dialtone patch: the stream's latency between two polls, from the last poll and the bytes the
// callbacks have moved since: a playback stream's latency grows by what is written and shrinks as
// time passes (the device plays); a record stream's the other way round. Was: the polled figure
// minus (playback) or plus (record) the time since the poll, capped at 100 ms — it ignored the
// bytes written or read in between, so the figure drifted by up to a whole poll interval and
// polls (server round trips, two thread wake-ups each) had to come ten times a second.
#[derive(Default)]
struct LatencyClock {
    // Seqlock over `polled_us`, `at_us` and `bytes_then`: odd while the latency thread writes.
    seq: AtomicU64,
    // The latency the last poll found, µs.
    polled_us: AtomicU64,
    // When that poll's answer came, µs since the stream's start.
    at_us: AtomicU64,
    // `bytes` at that time.
    bytes_then: AtomicU64,
    // The bytes the callbacks have handed over (playback) or taken (record); only they add.
    bytes: AtomicU64,
}

impl LatencyClock {
    // The latency thread: a poll's figure, taken at `at_us` when `bytes_then` had been moved.
    fn polled(&self, polled_us: u64, at_us: u64, bytes_then: u64) {
        self.seq.fetch_add(1, Ordering::Relaxed);
        fence(Ordering::Release);
        self.polled_us.store(polled_us, Ordering::Relaxed);
        self.at_us.store(at_us, Ordering::Relaxed);
        self.bytes_then.store(bytes_then, Ordering::Relaxed);
        self.seq.fetch_add(1, Ordering::Release);
    }

    // The last poll's figures: (latency µs, when µs, bytes then). Never waits: a callback that
    // meets the latency thread mid-write four times running (its write is three stores) gets
    // the figures of no poll, as at the stream's start — stale, so it asks for a new poll.
    fn last_poll(&self) -> (u64, u64, u64) {
        for _ in 0..4 {
            let before = self.seq.load(Ordering::Acquire);
            let polled = self.polled_us.load(Ordering::Relaxed);
            let at = self.at_us.load(Ordering::Relaxed);
            let then = self.bytes_then.load(Ordering::Relaxed);
            fence(Ordering::Acquire);
            if before % 2 == 0 && self.seq.load(Ordering::Relaxed) == before {
                return (polled, at, then);
            }
        }
        (0, 0, self.bytes.load(Ordering::Relaxed))
    }

    // The latency at `now_us` (µs since the stream's start), and whether the last poll is stale.
    fn latency(&self, now_us: u64, spec: protocol::SampleSpec, playback: bool) -> (u64, bool) {
        let (polled, at, then) = self.last_poll();
        let moved = spec
            .bytes_to_duration(self.bytes.load(Ordering::Relaxed).saturating_sub(then) as usize)
            .as_micros() as u64;
        let passed = now_us.saturating_sub(at);
        if passed >= 2 * LATENCY_MAX_INTERVAL.as_micros() as u64 {
            // Far older than callbacks let a poll get: the stream was corked in between. The
            // last figure as it was until the poll its resuming asked for comes back.
            return (polled, true);
        }
        let latency = if playback {
            (polled + moved).saturating_sub(passed)
        } else {
            (polled + passed).saturating_sub(moved)
        };
        (latency, passed >= LATENCY_MAX_INTERVAL.as_micros() as u64)
    }

    // A callback has moved `n` bytes.
    fn moved(&self, n: usize) {
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
    }
}

enum StreamInner {
    Playback(pulseaudio::PlaybackStream, Instant, LatencyHandle),
    Record(pulseaudio::RecordStream, Instant, LatencyHandle),
}

pub struct Stream {
    inner: StreamInner,
    workers: Vec<std::thread::JoinHandle<()>>,
    latch: Latch,
}

impl Drop for Stream {
    fn drop(&mut self) {
        match &mut self.inner {
            StreamInner::Playback(stream, _, handle) => {
                handle.cancel();
                // Help the play_all driver thread terminate by
                // queueing a delete, which causes the reactor to drop
                // the source's eof_tx. We need to do this because
                // poll_read always reports a non-empty buffer.
                let _ = stream.clone().delete().now_or_never();
            }
            StreamInner::Record(_, _, handle) => {
                handle.cancel();
            }
        }

        // Unpark the threads in case they're sleeping.
        self.signal_ready();

        for handle in self.workers.drain(..) {
            // Prevent self-join: a worker thread may surface an error
            // through the user's error_callback, and that callback may
            // drop the Stream — in which case we'd be joining ourselves.
            if handle.thread().id() != std::thread::current().id() {
                let _ = handle.join();
            }
        }
    }
}

impl StreamTrait for Stream {
    fn play(&self) -> Result<(), Error> {
        match &self.inner {
            StreamInner::Playback(stream, _, handle) => {
                block_on(stream.uncork()).map_err(Error::from)?;
                handle.set_paused(false);
            }
            StreamInner::Record(stream, _, handle) => {
                block_on(stream.uncork()).map_err(Error::from)?;
                block_on(stream.started()).map_err(Error::from)?;
                handle.set_paused(false);
            }
        }
        Ok(())
    }

    fn pause(&self) -> Result<(), Error> {
        let res = match &self.inner {
            StreamInner::Playback(stream, _, _) => block_on(stream.cork()),
            StreamInner::Record(stream, _, _) => block_on(stream.cork()),
        };
        res.map_err(Error::from)?;
        match &self.inner {
            StreamInner::Playback(_, _, handle) | StreamInner::Record(_, _, handle) => {
                handle.set_paused(true)
            }
        }
        Ok(())
    }

    fn now(&self) -> StreamInstant {
        let start = match &self.inner {
            StreamInner::Playback(_, start, _) | StreamInner::Record(_, start, _) => *start,
        };
        let elapsed = start.elapsed();
        StreamInstant::new(elapsed.as_secs(), elapsed.subsec_nanos())
    }

    fn buffer_size(&self) -> Result<FrameCount, Error> {
        let (spec, bytes) = match &self.inner {
            StreamInner::Playback(s, _, _) => (
                s.sample_spec(),
                s.buffer_attr().minimum_request_length as usize,
            ),
            StreamInner::Record(s, _, _) => {
                (s.sample_spec(), s.buffer_attr().fragment_size as usize)
            }
        };
        let frame_size = spec.channels as usize * spec.format.bytes_per_sample();
        Ok((bytes / frame_size) as _)
    }
}

impl Stream {
    pub fn new_playback<D, E>(
        client: pulseaudio::Client,
        params: protocol::PlaybackStreamParams,
        mut data_callback: D,
        error_callback: E,
    ) -> Result<Self, Error>
    where
        D: FnMut(&mut Data, &OutputCallbackInfo) + Send + 'static,
        E: FnMut(Error) + Send + 'static,
    {
        let start = Instant::now();

        let clock = Arc::new(LatencyClock::default());
        let clock_callback = clock.clone();
        let sample_spec = params.sample_spec;
        let pa_format = sample_spec.format;

        let format: SampleFormat = pa_format.try_into().map_err(|_| {
            Error::with_message(
                ErrorKind::UnsupportedConfig,
                "Sample format is not supported",
            )
        })?;

        // Silence for unsigned formats is the midpoint, not zero. Among
        // PulseAudio's supported formats, only U8 is unsigned and has a
        // single-byte repeatable silence representation (0x80). Multi-byte
        // unsigned formats (U16, U32, ...) are not currently supported.
        let silence_byte = if format == SampleFormat::U8 {
            0x80u8
        } else {
            0u8
        };

        let handle = LatencyHandle::new();
        let update_callback = handle.update.clone();

        // Wrap the write callback to match the pulseaudio signature.
        let callback = move |buf: &mut [u8]| {
            let elapsed = Instant::now().saturating_duration_since(start);
            let elapsed_usec = elapsed.as_micros() as u64;

            // Dialtone patch: what was queued at the last poll, plus what was written since,
            // less what has played since (see `LatencyClock`).
            let (latency, stale) = clock_callback.latency(elapsed_usec, sample_spec, true);

            let playback_time = elapsed + Duration::from_micros(latency);

            let timestamp = OutputStreamTimestamp {
                callback: StreamInstant::new(elapsed.as_secs(), elapsed.subsec_nanos()),
                playback: StreamInstant::new(playback_time.as_secs(), playback_time.subsec_nanos()),
            };

            // Preemptively fill the buffer with silence in case the user
            // callback doesn't fill it completely (cpal's API doesn't allow
            // short writes).
            buf.fill(silence_byte);

            let bps = sample_spec.format.bytes_per_sample();
            let n_samples = buf.len() / bps;

            // SAFETY: we calculated the number of samples based on
            // `sample_spec.format`, and `format` is directly derived from (and
            // equivalent to) `sample_spec.format`.
            let mut data = unsafe { Data::from_parts(buf.as_mut_ptr().cast(), n_samples, format) };

            data_callback(&mut data, &OutputCallbackInfo { timestamp });
            clock_callback.moved(buf.len());

            // Dialtone patch: notify the latency thread only when its figure is stale
            // (was: after every callback, a server round trip per callback).
            if stale {
                let (lock, cvar) = &*update_callback;
                *lock.lock().unwrap_or_else(|e| e.into_inner()) = true;
                cvar.notify_one();
            }

            // We always consider the full buffer filled, because cpal's
            // user-facing API doesn't allow short writes.
            buf.len()
        };

        let stream = block_on(client.create_playback_stream(params, callback.as_playback_source()))
            .map_err(Error::from)?;

        // Share the error callback between the worker and latency threads so
        // both can surface errors to the user.
        let error_callback: ErrorCallbackArc = Arc::new(Mutex::new(error_callback));

        // Spawn a thread to drive the stream future. It will exit automatically
        // when the stream is stopped by the user.
        let stream_clone = stream.clone();
        let error_callback_clone = error_callback.clone();
        let cancel_driver = handle.cancel.clone();

        // The latch is released just before the `Stream` is returned so the driver and latency
        // threads cannot fire any callbacks before the caller has the handle.
        let mut latch = Latch::new();
        let waiter_driver = latch.waiter();

        let driver_handle = std::thread::spawn(move || {
            waiter_driver.wait();
            if let Err(e) = block_on(stream_clone.play_all()) {
                // A server playback error is expected when the client
                // closes their stream. No need to report it back to
                // the client.
                if !cancel_driver.load(Ordering::Relaxed) {
                    emit_error(&error_callback_clone, Error::from(e));
                }
            }
        });

        let cancel_thread = handle.cancel.clone();
        let paused_thread = handle.paused.clone();
        let update_thread = handle.update.clone();
        let stream_clone = stream.clone();

        let waiter_latency = latch.waiter();
        let latency_handle = std::thread::spawn(move || {
            waiter_latency.wait();
            loop {
                if cancel_thread.load(Ordering::Relaxed) {
                    break;
                }

                if let Err(e) = poll(&clock, start, sample_spec, || {
                    block_on(stream_clone.timing_info())
                        .map(|t| (t.sink_usec, t.write_offset, t.read_offset))
                }) {
                    emit_error(&error_callback, Error::from(e));
                    break;
                }

                // Dialtone patch: wait until a callback finds the figure stale, a
                // play/pause/drop event, or LATENCY_IDLE_INTERVAL (was LATENCY_MAX_INTERVAL:
                // ten server round trips a second even while corked). The timed poll is
                // also how a running record stream learns that the server has gone; a
                // corked stream is not polled until it plays again.
                let interval = if paused_thread.load(Ordering::Relaxed) {
                    LATENCY_PAUSED_INTERVAL
                } else {
                    LATENCY_IDLE_INTERVAL
                };
                let (lock, cvar) = &*update_thread;
                let Ok(guard) = lock.lock() else { break };
                let (mut guard, _) = cvar
                    .wait_timeout_while(guard, interval, |notified| !*notified)
                    .unwrap_or_else(|e| e.into_inner());
                *guard = false;
            }
        });

        latch.add_thread(driver_handle.thread().clone());
        latch.add_thread(latency_handle.thread().clone());
        Ok(Self {
            inner: StreamInner::Playback(stream, start, handle),
            workers: vec![driver_handle, latency_handle],
            latch,
        })
    }

    pub fn new_record<D, E>(
        client: pulseaudio::Client,
        params: protocol::RecordStreamParams,
        mut data_callback: D,
        mut error_callback: E,
    ) -> Result<Self, Error>
    where
        D: FnMut(&Data, &InputCallbackInfo) + Send + 'static,
        E: FnMut(Error) + Send + 'static,
    {
        let start = Instant::now();

        let clock = Arc::new(LatencyClock::default());
        let clock_callback = clock.clone();
        let sample_spec = params.sample_spec;
        let pa_format = sample_spec.format;

        let format: SampleFormat = pa_format.try_into().map_err(|_| {
            Error::with_message(
                ErrorKind::UnsupportedConfig,
                "Sample format is not supported",
            )
        })?;

        let handle = LatencyHandle::new();
        let update_callback = handle.update.clone();

        let callback = move |buf: &[u8]| {
            let elapsed = Instant::now().saturating_duration_since(start);
            let elapsed_usec = elapsed.as_micros() as u64;

            // Dialtone patch: what was queued at the last poll, plus what has been recorded
            // since, less what was read since (see `LatencyClock`).
            let (latency, stale) = clock_callback.latency(elapsed_usec, sample_spec, false);

            let capture_time = elapsed
                .checked_sub(Duration::from_micros(latency))
                .unwrap_or_default();

            let timestamp = InputStreamTimestamp {
                callback: StreamInstant::new(elapsed.as_secs(), elapsed.subsec_nanos()),
                capture: StreamInstant::new(capture_time.as_secs(), capture_time.subsec_nanos()),
            };

            let bps = sample_spec.format.bytes_per_sample();
            let n_samples = buf.len() / bps;

            // SAFETY: we calculated the number of samples based on
            // `sample_spec.format`, and `format` is directly derived from (and
            // equivalent to) `sample_spec.format`. The pointer is cast from
            // *const to *mut, but cpal's Data type for input streams only
            // exposes shared references (&[T]), so no mutation occurs.
            let data = unsafe { Data::from_parts(buf.as_ptr() as *mut _, n_samples, format) };

            data_callback(&data, &InputCallbackInfo { timestamp });
            clock_callback.moved(buf.len());

            // Dialtone patch: notify the latency thread only when its figure is stale
            // (was: after every callback, a server round trip per callback).
            if stale {
                let (lock, cvar) = &*update_callback;
                *lock.lock().unwrap_or_else(|e| e.into_inner()) = true;
                cvar.notify_one();
            }
        };

        let stream =
            block_on(client.create_record_stream(params, callback)).map_err(Error::from)?;

        // Spawn a thread to monitor the stream's latency in a loop.
        let cancel_thread = handle.cancel.clone();
        let paused_thread = handle.paused.clone();
        let update_thread = handle.update.clone();
        let stream_clone = stream.clone();

        // The latch is released just before the `Stream` is returned so the latency thread cannot
        // fire any callbacks before the caller has the handle.
        let mut latch = Latch::new();
        let waiter_latency = latch.waiter();

        let latency_handle = std::thread::spawn(move || {
            waiter_latency.wait();
            loop {
                if cancel_thread.load(Ordering::Relaxed) {
                    break;
                }

                if let Err(e) = poll(&clock, start, sample_spec, || {
                    block_on(stream_clone.timing_info())
                        .map(|t| (t.source_usec, t.write_offset, t.read_offset))
                }) {
                    error_callback(Error::from(e));
                    break;
                }

                // Dialtone patch: wait until a callback finds the figure stale, a
                // play/pause/drop event, or LATENCY_IDLE_INTERVAL (was LATENCY_MAX_INTERVAL:
                // ten server round trips a second even while corked). The timed poll is
                // also how a running record stream learns that the server has gone; a
                // corked stream is not polled until it plays again.
                let interval = if paused_thread.load(Ordering::Relaxed) {
                    LATENCY_PAUSED_INTERVAL
                } else {
                    LATENCY_IDLE_INTERVAL
                };
                let (lock, cvar) = &*update_thread;
                let Ok(guard) = lock.lock() else { break };
                let (mut guard, _) = cvar
                    .wait_timeout_while(guard, interval, |notified| !*notified)
                    .unwrap_or_else(|e| e.into_inner());
                *guard = false;
            }
        });

        latch.add_thread(latency_handle.thread().clone());
        Ok(Self {
            inner: StreamInner::Record(stream, start, handle),
            workers: vec![latency_handle],
            latch,
        })
    }

    /// Releases the latch so the worker thread can begin processing audio callbacks.
    pub(crate) fn signal_ready(&self) {
        self.latch.release();
    }
}

// Dialtone patch: one latency poll into `clock`. `timing` asks the server for (device latency µs,
// write offset, read offset); asked again (up to LATENCY_POLL_TRIES) when a callback moved bytes
// meanwhile, as the answer may or may not count them.
fn poll<E>(
    clock: &LatencyClock,
    start: Instant,
    sample_spec: protocol::SampleSpec,
    mut timing: impl FnMut() -> Result<(u64, i64, i64), E>,
) -> Result<(), E> {
    for _ in 0..LATENCY_POLL_TRIES {
        let before = clock.bytes.load(Ordering::Relaxed);
        let (device_latency_usec, write_offset, read_offset) = timing()?;
        let after = clock.bytes.load(Ordering::Relaxed);
        let offset = (write_offset - read_offset).max(0) as u64;
        let latency = Duration::from_micros(device_latency_usec)
            + sample_spec.bytes_to_duration(offset as usize);
        let at = Instant::now().saturating_duration_since(start).as_micros() as u64;
        clock.polled(
            latency.as_micros().try_into().unwrap_or(u64::MAX),
            at,
            after,
        );
        if before == after {
            break;
        }
    }
    Ok(())
}
