//! Sample-rate conversion between the hub's 48 kHz and a codec's, a device's or a file's rate,
//! with a band-limited (windowed sinc) filter: a polyphase FIR of our own ([`super::polyphase`])
//! when one rate is a whole multiple of the other (8, 16, 24 ↔ 48 kHz, 8 ↔ 16 kHz …), rubato's
//! resampler for the rest (44.1 kHz devices, odd WAV files).
//!
//! Latency first: this sits in the mouth-to-ear path of every G.711 call (48 kHz → 8 kHz before
//! the encoder, 8 kHz → 48 kHz after the decoder) and of devices that do not run at 48 kHz. The
//! filter is short — a Blackman-windowed sinc of 128 taps going down (at the higher rate) and 48
//! going up (at the lower rate), cut off where rubato puts it for that length and window — which
//! puts the cut-off at 3.8 kHz / 3.5 kHz for 8 kHz (the telephone band is 0.3–3.4 kHz) and the
//! delay ([`Resampler::delay`], where an impulse comes out) at 11 samples at 8 kHz (1.4 ms) going
//! down and 144 samples at 48 kHz (3.0 ms) going up: 4.4 ms for a PCMU call's way from one hub
//! to the other (a step is half-way 11 and 141 samples in). Equal rates (Opus, a 48 kHz device)
//! pass through untouched, with no delay.
//!
//! Whole ratios are most of the work in a call (three conversions per 20 ms in a PCMU call with
//! echo cancelling), hence the polyphase path: one short dot product per output sample, its
//! phase tables computed when built, with AVX2 and FMA where the CPU has them — 12.3 → 2.7 µs
//! per 20 ms frame going up from 8 or 16 kHz, 2.6 → 1.0 µs going down to 8 kHz (release build;
//! without AVX2 about a third of rubato's time up, 0.6 down). rubato's table of 48 points per
//! input sample put these ratios' outputs on the same filter, 1/48 input sample early; the
//! polyphase path keeps that, so it gives the samples rubato gave to within a rounding, 2 input
//! samples (0.25 ms at 8 kHz) sooner going up.
//!
//! Streaming: a whole frame in gives a whole frame out at once. The polyphase path converts every
//! input sample as it comes, starting on silence, so nothing waits in it. rubato's converts in
//! chunks of the caller's natural size (a 20 ms frame for the codecs, 1 ms for devices, whose
//! reads have any length), so a device read waits for at most 1 ms of input; it is primed with
//! silence when built, so from the first call on every chunk yields exactly `chunk × to / from`
//! samples when that is a whole number (a 20 ms frame stays a 20 ms frame). All buffers are
//! allocated when built: `process` allocates nothing once `out` has room.

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{
    Async, FixedAsync, Resampler as _, SincInterpolationParameters, SincInterpolationType,
    WindowFunction,
};

use super::polyphase::Polyphase;

/// Points per input sample in rubato's sinc table. 48 is a multiple of 6 and 3: every output
/// position of a 2:3 or 3:2 conversion (32 ↔ 48 kHz) falls exactly on a table point, so those
/// take the nearest point, exact, at one dot product per sample (linear interpolation between two
/// points, for other rates, costs two: 30 % more time in all); and the table is quick to build on
/// the call path (0.1 ms up, 0.3 ms down, release build).
const OVERSAMPLING: usize = 48;

/// Filter length going down, in samples of the (higher) input rate.
const TAPS_DOWN: usize = 128;

/// Filter length going up, in samples of the (lower) input rate.
const TAPS_UP: usize = 48;

/// Whether every output position of a `from` → `to` conversion falls on a point of the sinc
/// table: positions step by `from / to` input samples, the table by `1 / OVERSAMPLING`.
fn on_table_points(from: u32, to: u32) -> bool {
    (u64::from(from) * OVERSAMPLING as u64).is_multiple_of(u64::from(to))
}

/// Rates a [`Resampler`] accepts (a WAV file may claim anything).
pub const RATES: std::ops::RangeInclusive<u32> = 1_000..=384_000;

/// A rate outside [`RATES`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("cannot convert {from} Hz to {to} Hz: rates must be within 1000–384000 Hz")]
pub struct RateError {
    pub from: u32,
    pub to: u32,
}

/// Converts one mono stream from `from` Hz to `to` Hz, keeping phase across calls.
pub struct Resampler {
    from: u32,
    to: u32,
    path: Path,
}

/// How a [`Resampler`] converts.
enum Path {
    /// Equal rates: copied.
    Identity,
    /// One rate a whole multiple of the other.
    Polyphase(Box<Polyphase>),
    /// Any other ratio.
    Sinc(Box<Sinc>),
}

/// rubato's resampler with its preallocated buffers.
struct Sinc {
    inner: Async<f32>,
    /// Input frames per rubato call.
    chunk: usize,
    /// Input waiting for a whole chunk (capacity `chunk`).
    pending: Vec<f32>,
    /// One call's output (capacity `output_frames_max`).
    out: Vec<f32>,
}

impl std::fmt::Debug for Resampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Resampler({} -> {} Hz)", self.from, self.to)
    }
}

/// The filter's length for a `from` → `to` conversion (counted at the input rate).
fn taps(from: u32, to: u32) -> usize {
    if to < from { TAPS_DOWN } else { TAPS_UP }
}

impl Resampler {
    /// A converter fed a 20 ms frame (of `from` Hz) at a time: each frame is converted at once.
    pub fn new(from: u32, to: u32) -> Result<Resampler, RateError> {
        Resampler::with_chunk(from, to, (from / 50) as usize)
    }

    /// A converter for input of any length (a device's reads): converted every millisecond of
    /// input at most (every sample for whole ratios), so at most 1 ms waits in the converter.
    pub fn streaming(from: u32, to: u32) -> Result<Resampler, RateError> {
        Resampler::with_chunk(from, to, (from / 1000) as usize)
    }

    fn with_chunk(from: u32, to: u32, chunk: usize) -> Result<Resampler, RateError> {
        if !RATES.contains(&from) || !RATES.contains(&to) {
            return Err(RateError { from, to });
        }
        if from == to {
            return Ok(Resampler {
                from,
                to,
                path: Path::Identity,
            });
        }
        let taps = taps(from, to);
        // The cut-off rubato picks for this length and window (relative to the lower rate's
        // Nyquist), and its table's offset: the same filter, at the same time, as before.
        let cutoff = rubato::calculate_cutoff::<f32>(taps, WindowFunction::Blackman);
        let advance = 1.0 / OVERSAMPLING as f64;
        if let Some(poly) = Polyphase::new(from, to, taps, f64::from(cutoff), advance) {
            return Ok(Resampler {
                from,
                to,
                path: Path::Polyphase(Box::new(poly)),
            });
        }
        let interpolation = if on_table_points(from, to) {
            SincInterpolationType::Nearest
        } else {
            SincInterpolationType::Linear
        };
        Resampler::rubato(from, to, chunk, interpolation)
    }

    /// A converter through rubato, whatever the ratio, for rates [`Resampler::with_chunk`] has
    /// checked against [`RATES`].
    fn rubato(
        from: u32,
        to: u32,
        chunk: usize,
        interpolation: SincInterpolationType,
    ) -> Result<Resampler, RateError> {
        let params = SincInterpolationParameters::new(taps(from, to), WindowFunction::Blackman)
            .oversampling_factor(OVERSAMPLING)
            .interpolation(interpolation);
        let chunk = chunk.max(1);
        let ratio = f64::from(to) / f64::from(from);
        // Rates within RATES and a chunk of at least one frame are all rubato asks for.
        let inner = Async::<f32>::new_sinc(ratio, 1.0, &params, chunk, 1, FixedAsync::Input)
            .map_err(|_| RateError { from, to })?;
        let mut sinc = Sinc {
            out: vec![0.0; inner.output_frames_max()],
            pending: Vec::with_capacity(chunk),
            inner,
            chunk,
        };
        // Past rubato's start-up (its first two calls give a little less), so that every chunk
        // from now on gives its exact share; what comes out is silence, dropped.
        for _ in 0..2 {
            sinc.pending.resize(chunk, 0.0);
            sinc.run(&mut |_| {});
        }
        Ok(Resampler {
            from,
            to,
            path: Path::Sinc(Box::new(sinc)),
        })
    }

    pub fn is_identity(&self) -> bool {
        matches!(self.path, Path::Identity)
    }

    /// How late a sound comes out, in output samples (0 when the rates are equal). Through
    /// rubato, as rubato reckons it (its interpolation adds up to two input samples).
    pub fn delay(&self) -> usize {
        match &self.path {
            Path::Identity => 0,
            Path::Polyphase(p) => p.delay(),
            Path::Sinc(s) => s.inner.output_delay(),
        }
    }

    /// Input samples that surely make `out` output samples come out (with what waits inside).
    pub fn input_for(&self, out: usize) -> usize {
        let waiting = match &self.path {
            Path::Sinc(s) => s.chunk,
            Path::Identity | Path::Polyphase(_) => 0,
        };
        (out as u64 * u64::from(self.from)).div_ceil(u64::from(self.to)) as usize + waiting
    }

    /// Appends the converted `input` to `out` (through rubato, whole chunks only; the rest waits
    /// for more).
    pub fn process(&mut self, input: &[i16], out: &mut Vec<i16>) {
        let sinc = match &mut self.path {
            Path::Identity => return out.extend_from_slice(input),
            Path::Polyphase(p) => return p.process(input, out),
            Path::Sinc(sinc) => sinc,
        };
        let mut rest = input;
        while !rest.is_empty() {
            let take = (sinc.chunk - sinc.pending.len()).min(rest.len());
            sinc.pending
                .extend(rest[..take].iter().map(|&s| f32::from(s) / 32768.0));
            rest = &rest[take..];
            if sinc.pending.len() == sinc.chunk {
                sinc.run(&mut |converted| {
                    out.extend(
                        converted
                            .iter()
                            .map(|&x| (x * 32768.0).round().clamp(-32768.0, 32767.0) as i16),
                    )
                });
            }
        }
    }
}

impl Sinc {
    /// Converts the pending chunk and hands the result to `sink`.
    fn run(&mut self, sink: &mut dyn FnMut(&[f32])) {
        let frames_out = self.out.len();
        let (Ok(input), Ok(mut output)) = (
            InterleavedSlice::new(&self.pending[..], 1, self.chunk),
            InterleavedSlice::new_mut(&mut self.out[..], 1, frames_out),
        ) else {
            // Sizes are fixed at construction; never expected.
            self.pending.clear();
            return;
        };
        match self.inner.process_into_buffer(&input, &mut output, None) {
            Ok((_, produced)) => sink(&self.out[..produced]),
            Err(e) => tracing::warn!("resampling: {e}"),
        }
        self.pending.clear();
    }
}

/// Converts a whole clip (a WAV file at open), with the converter's delay trimmed: the result
/// lines up with the input and has `len × to / from` samples.
pub fn convert_all(from: u32, to: u32, input: &[i16]) -> Result<Vec<i16>, RateError> {
    let mut r = Resampler::new(from, to)?;
    let want = (input.len() as u64 * u64::from(to) / u64::from(from)) as usize;
    let delay = r.delay();
    let mut out = Vec::with_capacity(want + delay + 2 * to as usize / 50);
    r.process(input, &mut out);
    // Flush what is still in the filter with silence.
    let silence = [0i16; 256];
    while out.len() < want + delay {
        r.process(&silence, &mut out);
    }
    out.drain(..delay);
    out.truncate(want);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::media::tone::{ToneGenerator, dominant_tone, test_noise};

    const CANDIDATES: [f32; 4] = [300.0, 440.0, 1000.0, 3000.0];

    /// A tone at `hz` (-10 dBFS) made at `from`, converted to `to` frame by frame (20 ms of
    /// input per call); returns the output and checks every frame gives its exact share.
    fn convert(hz: f32, from: u32, to: u32, seconds: u32) -> Vec<i16> {
        let mut tone = ToneGenerator::new(hz, -10.0, from);
        let mut r = Resampler::new(from, to).unwrap();
        let per_frame = (from / 50) as usize;
        let mut frame = vec![0i16; per_frame];
        let mut out = Vec::new();
        for _ in 0..50 * seconds {
            tone.fill(&mut frame);
            let start = out.len();
            r.process(&frame, &mut out);
            if (per_frame as u64 * u64::from(to)).is_multiple_of(u64::from(from)) {
                assert_eq!(out.len() - start, (to / 50) as usize, "{from} -> {to}");
            }
        }
        out
    }

    #[test]
    fn tones_keep_their_frequency_and_level_both_ways_between_8_16_44_1_and_48_khz() {
        for (from, to) in [
            (48_000, 8_000),
            (8_000, 48_000),
            (48_000, 16_000),
            (16_000, 48_000),
            (44_100, 48_000),
            (48_000, 44_100),
        ] {
            for hz in [300.0, 1000.0, 3000.0] {
                let out = convert(hz, from, to, 1);
                // One second in, one second out (44.1 kHz: within the 1 ms chunk that waits).
                assert!(
                    (out.len() as i64 - i64::from(to)).abs() <= 1,
                    "{from}->{to}: {}",
                    out.len()
                );
                let (f, db) = dominant_tone(&out[to as usize / 10..], to, &CANDIDATES).unwrap();
                assert_eq!(f, hz, "{from} -> {to}");
                assert!((db + 10.0).abs() < 0.5, "{hz} Hz {from} -> {to}: {db} dBFS");
            }
        }
    }

    #[test]
    fn down_then_up_gives_the_tone_back() {
        let mut tone = ToneGenerator::new(440.0, -10.0, 48_000);
        let mut down = Resampler::new(48_000, 8_000).unwrap();
        let mut up = Resampler::new(8_000, 48_000).unwrap();
        let (mut low, mut back) = (Vec::new(), Vec::new());
        let mut frame = [0i16; 960];
        for _ in 0..50 {
            tone.fill(&mut frame);
            low.clear();
            down.process(&frame, &mut low);
            assert_eq!(low.len(), 160);
            let start = back.len();
            up.process(&low, &mut back);
            assert_eq!(back.len() - start, 960);
        }
        let (f, db) = dominant_tone(&back[9600..], 48_000, &CANDIDATES).unwrap();
        assert_eq!(f, 440.0);
        assert!((db + 10.0).abs() < 0.5, "{db}");
    }

    #[test]
    fn what_the_telephone_band_cannot_carry_is_filtered_not_folded() {
        // 7 kHz at 48 kHz would alias to 1 kHz at 8 kHz without the anti-aliasing filter.
        let out = convert(7_000.0, 48_000, 8_000, 1);
        let db = crate::engine::media::engine::level_dbfs(&out[800..]);
        assert!(
            db < -60.0,
            "7 kHz (-10 dBFS) folded into the band at {db} dBFS"
        );
    }

    #[test]
    fn the_delay_is_small_and_as_reported() {
        for (from, to, most) in [
            (48_000, 8_000, 11),
            (8_000, 48_000, 144),
            (44_100, 48_000, 40),
        ] {
            let mut r = Resampler::new(from, to).unwrap();
            assert!(r.delay() <= most, "{from} -> {to}: {}", r.delay());
            // A step: silence, then a constant; the output reaches half-way `delay` samples in.
            let n = (from / 50) as usize;
            let mut out = Vec::new();
            r.process(&vec![0i16; n], &mut out);
            let before = out.len();
            r.process(&vec![16_000i16; n], &mut out);
            let half = out[before..].iter().position(|&s| s >= 8_000).unwrap();
            println!(
                "{from} -> {to}: step half-way at {half}, delay {}",
                r.delay()
            );
            // Within two input samples (the step's edge is half an input sample before its first
            // sample; rubato's figure leaves out its interpolation's part).
            let slack = 2 * to.div_ceil(from) as i64;
            assert!(
                (half as i64 - r.delay() as i64).abs() <= slack,
                "{from} -> {to}: step half-way at {half}, delay {}",
                r.delay()
            );
        }
        assert_eq!(Resampler::new(48_000, 48_000).unwrap().delay(), 0);
    }

    #[test]
    fn device_reads_of_any_length_come_out_at_the_right_rate() {
        let mut r = Resampler::streaming(44_100, 48_000).unwrap();
        let mut out = Vec::new();
        let mut fed = 0;
        for n in 0..1000 {
            let len = [1, 7, 441, 300, 2][n % 5];
            r.process(&vec![0i16; len], &mut out);
            fed += len;
        }
        let want = fed as i64 * 48_000 / 44_100;
        // At most one millisecond of input waits in the converter.
        assert!((want - out.len() as i64) <= 49, "{} of {want}", out.len());
        assert!(out.len() as i64 <= want + 1);
    }

    #[test]
    fn whole_clips_line_up_with_the_input() {
        let mut clip = vec![0i16; 800];
        clip.extend(std::iter::repeat_n(10_000i16, 800));
        let out = convert_all(8_000, 48_000, &clip).unwrap();
        assert_eq!(out.len(), 9_600);
        // The step stays at 100 ms, within two samples at 8 kHz.
        let rise = out.iter().position(|&s| s >= 5_000).unwrap();
        assert!((4_788..=4_812).contains(&rise), "{rise}");
        assert!((out[9_000] - 10_000).abs() < 100, "{}", out[9_000]);
    }

    /// Converts `clip` 20 ms at a time through `r`.
    fn run(r: &mut Resampler, clip: &[i16], from: u32) -> Vec<i16> {
        let mut out = Vec::new();
        for frame in clip.chunks(from as usize / 50) {
            r.process(frame, &mut out);
        }
        out
    }

    #[test]
    fn whole_ratios_give_the_samples_rubato_gave() {
        for (from, to) in [
            (48_000, 8_000),
            (8_000, 48_000),
            (48_000, 16_000),
            (16_000, 48_000),
        ] {
            let mut tone = vec![0i16; 3 * from as usize];
            ToneGenerator::new(3_000.0, -1.0, from).fill(&mut tone);
            for (what, clip) in [("tone", tone), ("noise", test_noise(3 * from as usize))] {
                let mut poly = Resampler::new(from, to).unwrap();
                assert!(matches!(poly.path, Path::Polyphase(_)), "{from} -> {to}");
                let mut sinc = Resampler::rubato(
                    from,
                    to,
                    (from / 50) as usize,
                    SincInterpolationType::Nearest,
                )
                .unwrap();
                let (a, b) = (run(&mut poly, &clip, from), run(&mut sinc, &clip, from));
                assert_eq!(a.len(), b.len(), "{from} -> {to}");
                // rubato's outputs came 2 input samples later going up (it waited for a chunk
                // and kept a sample more than the filter needs); the same going down.
                let lag = if to > from {
                    2 * (to / from) as usize
                } else {
                    0
                };
                let worst = a
                    .iter()
                    .zip(&b[lag..])
                    .map(|(&x, &y)| (i32::from(x) - i32::from(y)).abs())
                    .max();
                // A rounding apart (a phase table off by one phase: thousands).
                assert!(worst <= Some(1), "{from} -> {to} {what}: {worst:?}");
            }
        }
    }

    #[test]
    fn conversions_on_the_tables_points_match_linear_interpolation() {
        for (from, to) in [
            (48_000, 32_000),
            (32_000, 48_000),
            (24_000, 16_000),
            (16_000, 24_000),
        ] {
            assert!(on_table_points(from, to), "{from} -> {to}");
            let mut nearest = Resampler::new(from, to).unwrap();
            assert!(matches!(nearest.path, Path::Sinc(_)), "{from} -> {to}");
            let mut linear = Resampler::rubato(
                from,
                to,
                (from / 50) as usize,
                SincInterpolationType::Linear,
            )
            .unwrap();
            // Full-scale noise for 2 s: at most a rounding apart.
            let clip = test_noise(2 * from as usize);
            let (a, b) = (
                run(&mut nearest, &clip, from),
                run(&mut linear, &clip, from),
            );
            assert_eq!(a.len(), b.len());
            let worst = a
                .iter()
                .zip(&b)
                .map(|(&x, &y)| (i32::from(x) - i32::from(y)).abs())
                .max();
            assert!(worst <= Some(1), "{from} -> {to}: {worst:?}");
        }
        // 44.1 kHz positions fall between the points: interpolated.
        assert!(!on_table_points(44_100, 48_000));
        assert!(!on_table_points(48_000, 44_100));
    }

    #[test]
    fn absurd_rates_are_refused() {
        assert!(Resampler::new(0, 48_000).is_err());
        assert!(Resampler::new(48_000, 4_000_000).is_err());
        assert!(convert_all(1, 48_000, &[0; 10]).is_err());
    }
}
