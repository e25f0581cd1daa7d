//! A polyphase FIR converter for whole-number rate ratios (8 ↔ 48 kHz, 16 ↔ 48 kHz, 24 → 48 kHz,
//! 8 → 16 kHz …): the path [`super::resample`] takes for them, at one short dot product per output
//! sample and no per-sample position arithmetic.
//!
//! The filter is a Blackman-windowed sinc (the kernel), `taps` long counted at the input rate,
//! with its cut-off given relative to the lower rate's Nyquist frequency. Going up by L, output
//! `qL + r` is the dot product of the `taps` inputs up to input `q` with phase `r`'s table; going
//! down by M, only every M-th input position gives an output, from the `taps` inputs up to it.
//! Each phase's table is the kernel sampled at that phase's offset and scaled to sum to 1 (every
//! phase passes DC unchanged), computed once when built.
//!
//! Timing: output `n` stands for input time `n × from / to − D`, with `D = taps / 2 − advance`
//! input samples: the kernel's half-length — the least that lets an output be made as soon as
//! the input sample at its position has arrived — less a fraction of an input sample (`advance`,
//! at most one output position). So every input sample gives its whole share of output at once
//! and nothing waits in the converter; it starts on silence (a history of zeros).
//!
//! Input is converted to `f32` into a history buffer sized when built (the last `taps` inputs
//! and a block of new ones), so [`Polyphase::process`] allocates nothing once `out` has room.

/// Output samples made per pass, at most (longer input is taken in blocks), unless one input
/// sample gives more.
const BLOCK: usize = 1024;

/// The dot products run over whole groups of this many samples (tables are zero-padded at the
/// old end), so they vectorise with independent accumulators.
const LANES: usize = 8;

/// Which way, and by how much.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// `factor` outputs per input.
    Up { factor: usize },
    /// One output per `factor` inputs.
    Down { factor: usize },
}

/// Converts one mono stream by a whole-number ratio, keeping phase across calls.
pub struct Polyphase {
    step: Step,
    /// Samples per dot product: the kernel's length, padded to whole groups of [`LANES`].
    len: usize,
    /// One table of `len` taps per phase (one phase going down), oldest input first.
    tables: Vec<f32>,
    /// Input samples taken per pass.
    block: usize,
    /// The last `len - 1` inputs, then the block being converted (capacity fixed when built).
    history: Vec<f32>,
    /// The block's output before it is rounded to 16 bits (capacity fixed when built).
    converted: Vec<f32>,
    /// The CPU has AVX2 and FMA: the dot products use them.
    #[cfg(target_arch = "x86_64")]
    wide: bool,
    /// Going down: inputs still to come before the next output position.
    skip: usize,
    /// Output samples an input sample comes out late (rounded).
    delay: usize,
}

impl std::fmt::Debug for Polyphase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Polyphase({:?}, {} taps)", self.step, self.len)
    }
}

impl Polyphase {
    /// A converter from `from` Hz to `to` Hz with a kernel of `taps` input samples, cut off at
    /// `cutoff` × the lower rate's Nyquist, its outputs placed `advance` input samples early
    /// (clamped to 0 ..= one output position). `None` unless one rate is a whole multiple of the
    /// other (and they differ), and with a kernel that passes nothing (no taps, a NaN cut-off).
    pub fn new(from: u32, to: u32, taps: usize, cutoff: f64, advance: f64) -> Option<Polyphase> {
        if from == 0 || to == 0 || from == to || taps == 0 {
            return None;
        }
        let step = if to.is_multiple_of(from) {
            Step::Up {
                factor: (to / from) as usize,
            }
        } else if from.is_multiple_of(to) {
            Step::Down {
                factor: (from / to) as usize,
            }
        } else {
            return None;
        };
        let (phases, fc, out_per_in) = match step {
            Step::Up { factor } => (factor, cutoff, factor as f64),
            Step::Down { factor } => (1, cutoff / factor as f64, 1.0 / factor as f64),
        };
        let advance = advance.clamp(0.0, 1.0_f64.min(1.0 / out_per_in));
        let half = taps as f64 / 2.0;
        let len = taps.next_multiple_of(LANES);
        let mut tables = Vec::with_capacity(phases * len);
        for r in 0..phases {
            // Phase r's output stands at input time (newest input) + r / phases − D; tap p
            // meets the input `len − 1 − p` samples before the newest.
            let at = r as f64 / phases as f64 + advance - half;
            let start = tables.len();
            tables.extend((0..len).map(|p| kernel(at + (len - 1 - p) as f64, half, fc)));
            let sum: f64 = tables[start..].iter().sum();
            if sum.is_nan() || sum <= 0.0 {
                // A degenerate kernel (a cut-off or length that passes nothing).
                return None;
            }
            for t in &mut tables[start..] {
                *t /= sum;
            }
        }
        let block = BLOCK.div_ceil(phases);
        let mut history = Vec::with_capacity(len - 1 + block);
        history.resize(len - 1, 0.0);
        Some(Polyphase {
            step,
            len,
            tables: tables.into_iter().map(|t| t as f32).collect(),
            block,
            history,
            converted: Vec::with_capacity(block * phases),
            skip: 0,
            delay: ((half - advance) * out_per_in).round() as usize,
            #[cfg(target_arch = "x86_64")]
            wide: std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma"),
        })
    }

    /// How late a sound comes out, in output samples (rounded to the nearest).
    pub fn delay(&self) -> usize {
        self.delay
    }

    /// Appends the converted `input` to `out`: `input.len() × to / from` samples going up; going
    /// down, one for each output position among these inputs.
    pub fn process(&mut self, input: &[i16], out: &mut Vec<i16>) {
        let len = self.len;
        let keep = len - 1;
        for block in input.chunks(self.block) {
            self.history
                .extend(block.iter().map(|&s| f32::from(s) * (1.0 / 32768.0)));
            self.convert();
            let end = self.history.len();
            // Rounded in a pass of its own, which vectorises.
            out.extend(self.converted.iter().map(|&x| to_i16(x)));
            self.converted.clear();
            self.history.copy_within(end - keep..end, 0);
            self.history.truncate(keep);
        }
    }

    /// Converts what `history` holds into `converted`, with the widest vectors the CPU
    /// has: AVX2 and FMA where present (checked once, when built), else the target's baseline.
    fn convert(&mut self) {
        #[cfg(target_arch = "x86_64")]
        if self.wide {
            // SAFETY: `wide` is set only where the CPU reported AVX2 and FMA.
            unsafe { self.convert_wide() };
            return;
        }
        self.convert_with::<false>();
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn convert_wide(&mut self) {
        self.convert_with::<true>();
    }

    /// The dot products of one block; `FUSED`: multiply-adds fused (only where the CPU has FMA:
    /// elsewhere `mul_add` is a software routine).
    #[inline(always)]
    fn convert_with<const FUSED: bool>(&mut self) {
        let len = self.len;
        match self.step {
            Step::Up { .. } => {
                for window in self.history.windows(len) {
                    self.converted.extend(
                        self.tables
                            .chunks_exact(len)
                            .map(|t| dot::<FUSED>(window, t)),
                    );
                }
            }
            Step::Down { factor } => {
                let first = self.skip;
                let windows = self.history.windows(len).skip(first).step_by(factor);
                let n = windows.len();
                self.converted
                    .extend(windows.map(|window| dot::<FUSED>(window, &self.tables)));
                // The next output position, counted from the next block's first input (the
                // block keeps the last `len - 1` inputs of this one).
                self.skip = first + n * factor - (self.history.len() - (len - 1));
            }
        }
    }
}

/// The windowed sinc at `t` input samples from its centre: `half` samples to either side, cut off
/// at `fc` × the input's Nyquist, Blackman-windowed (0 beyond `half`).
fn kernel(t: f64, half: f64, fc: f64) -> f64 {
    if t.abs() >= half {
        return 0.0;
    }
    let x = std::f64::consts::PI * fc * t;
    let sinc = if x == 0.0 { 1.0 } else { x.sin() / x };
    let w = std::f64::consts::PI * t / half;
    sinc * (0.42 + 0.5 * w.cos() + 0.08 * (2.0 * w).cos())
}

/// Σ a·b over two slices of the same length, a multiple of [`LANES`].
#[inline(always)]
fn dot<const FUSED: bool>(a: &[f32], b: &[f32]) -> f32 {
    let (a, _) = a.as_chunks::<LANES>();
    let (b, _) = b.as_chunks::<LANES>();
    let mut acc = [0.0f32; LANES];
    for (x, y) in a.iter().zip(b) {
        for i in 0..LANES {
            acc[i] = if FUSED {
                x[i].mul_add(y[i], acc[i])
            } else {
                acc[i] + x[i] * y[i]
            };
        }
    }
    acc.iter().sum()
}

/// A sample in ±1.0 to 16 bits, rounded half away from zero, saturating (no library call).
fn to_i16(x: f32) -> i16 {
    let y = x * 32768.0;
    (y + 0.5f32.copysign(y)) as i16
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::media::tone::{ToneGenerator, dominant_tone, test_noise};

    fn cutoff(taps: usize) -> f64 {
        f64::from(rubato::calculate_cutoff::<f32>(
            taps,
            rubato::WindowFunction::Blackman,
        ))
    }

    /// The converters resample.rs builds: 128 taps going down, 48 going up.
    fn converter(from: u32, to: u32) -> Polyphase {
        let taps = if to < from { 128 } else { 48 };
        Polyphase::new(from, to, taps, cutoff(taps), 1.0 / 48.0).unwrap()
    }

    #[test]
    fn only_whole_ratios_are_taken() {
        for (from, to) in [
            (8_000, 48_000),
            (48_000, 8_000),
            (16_000, 48_000),
            (8_000, 16_000),
        ] {
            assert!(
                Polyphase::new(from, to, 48, 0.9, 0.0).is_some(),
                "{from} -> {to}"
            );
        }
        for (from, to) in [
            (44_100, 48_000),
            (48_000, 44_100),
            (48_000, 48_000),
            (0, 8_000),
        ] {
            assert!(
                Polyphase::new(from, to, 48, 0.9, 0.0).is_none(),
                "{from} -> {to}"
            );
        }
        assert!(Polyphase::new(8_000, 48_000, 0, 0.9, 0.0).is_none());
        assert!(Polyphase::new(8_000, 48_000, 1, 0.9, 0.0).is_none());
        assert!(Polyphase::new(8_000, 48_000, 48, f64::NAN, 0.0).is_none());
    }

    #[test]
    fn every_phase_passes_a_constant_unchanged() {
        for (from, to) in [
            (48_000, 8_000),
            (8_000, 48_000),
            (16_000, 48_000),
            (8_000, 16_000),
        ] {
            let mut p = converter(from, to);
            let mut out = Vec::new();
            p.process(&vec![10_000i16; from as usize / 10], &mut out);
            // Past the start (the kernel filling up from silence): the constant, to a rounding.
            for (i, &s) in out[out.len() / 2..].iter().enumerate() {
                assert!((s - 10_000).abs() <= 1, "{from} -> {to}: {s} at {i}");
            }
        }
    }

    #[test]
    fn an_impulse_comes_out_centred_on_the_reported_delay() {
        for (from, to, delay) in [
            (48_000, 8_000, 11),
            (8_000, 48_000, 144),
            (16_000, 48_000, 72),
        ] {
            let mut p = converter(from, to);
            assert_eq!(p.delay(), delay, "{from} -> {to}");
            let mut input = vec![0i16; from as usize / 50];
            input[0] = 30_000;
            let mut out = Vec::new();
            p.process(&input, &mut out);
            let peak = (0..out.len()).max_by_key(|&i| out[i]).unwrap();
            assert!(peak.abs_diff(delay) <= 1, "{from} -> {to}: peak at {peak}");
            // Nothing before it comes out further than the kernel's half-length after it.
            assert!(
                out[2 * delay + 2..].iter().all(|&s| s == 0),
                "{from} -> {to}"
            );
        }
    }

    #[test]
    fn tones_keep_their_frequency_and_level() {
        for (from, to) in [
            (48_000, 8_000),
            (8_000, 48_000),
            (16_000, 48_000),
            (8_000, 16_000),
        ] {
            for hz in [300.0, 1000.0, 3000.0] {
                let mut tone = ToneGenerator::new(hz, -10.0, from);
                let mut input = vec![0i16; from as usize];
                tone.fill(&mut input);
                let mut out = Vec::new();
                converter(from, to).process(&input, &mut out);
                assert_eq!(out.len(), to as usize, "{from} -> {to}");
                let candidates = [300.0, 1000.0, 3000.0];
                let (f, db) = dominant_tone(&out[to as usize / 10..], to, &candidates).unwrap();
                assert_eq!(f, hz, "{from} -> {to}");
                assert!((db + 10.0).abs() < 0.5, "{hz} Hz {from} -> {to}: {db} dBFS");
            }
        }
    }

    #[test]
    fn input_in_pieces_of_any_length_gives_the_same_samples_as_at_once() {
        let clip = test_noise(3 * 48_000 + 17);
        for (from, to) in [
            (48_000, 8_000),
            (8_000, 48_000),
            (16_000, 48_000),
            (48_000, 16_000),
        ] {
            let mut whole = Vec::new();
            converter(from, to).process(&clip, &mut whole);
            let mut p = converter(from, to);
            let mut pieces = Vec::new();
            let mut rest = &clip[..];
            let mut seed = 7u32;
            while !rest.is_empty() {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                // 0 to 2999 samples: empty calls, single samples, several blocks at once.
                let n = ((seed >> 8) as usize % 3_000).min(rest.len());
                p.process(&rest[..n], &mut pieces);
                rest = &rest[n..];
            }
            assert_eq!(pieces.len(), whole.len(), "{from} -> {to}");
            assert!(pieces == whole, "{from} -> {to}");
        }
    }

    #[test]
    fn a_frame_in_gives_its_whole_share_out_at_once() {
        for (from, to) in [
            (48_000, 8_000),
            (8_000, 48_000),
            (16_000, 48_000),
            (48_000, 16_000),
        ] {
            let mut p = converter(from, to);
            let frame = test_noise(from as usize / 50);
            let mut out = Vec::new();
            for _ in 0..10 {
                out.clear();
                p.process(&frame, &mut out);
                assert_eq!(out.len(), to as usize / 50, "{from} -> {to}");
            }
        }
    }

    #[test]
    fn converting_allocates_nothing_once_built() {
        for (from, to) in [(48_000, 8_000), (8_000, 48_000), (16_000, 48_000)] {
            let mut p = converter(from, to);
            let frame = test_noise(from as usize / 50);
            let mut out = Vec::with_capacity(to as usize / 50);
            let history = (p.history.as_ptr(), p.history.capacity());
            let room = out.capacity();
            for _ in 0..100 {
                out.clear();
                p.process(&frame, &mut out);
            }
            assert_eq!(
                (p.history.as_ptr(), p.history.capacity()),
                history,
                "{from} -> {to}"
            );
            assert_eq!(out.capacity(), room, "{from} -> {to}");
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_avx2_path_gives_the_baseline_path_samples_to_a_rounding() {
        if !(std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma"))
        {
            // The baseline path is the only one this CPU runs; the other tests cover it.
            return;
        }
        for (from, to) in [(48_000, 8_000), (8_000, 48_000), (16_000, 48_000)] {
            let input = test_noise(from as usize);
            let mut outs = [Vec::new(), Vec::new()];
            for (wide, out) in [true, false].into_iter().zip(&mut outs) {
                let mut p = converter(from, to);
                assert!(
                    p.wide,
                    "built where the CPU has AVX2 and FMA: the wide path"
                );
                p.wide = wide;
                p.process(&input, out);
            }
            assert_eq!(outs[0].len(), outs[1].len());
            let worst = outs[0]
                .iter()
                .zip(&outs[1])
                .map(|(a, b)| (i32::from(*a) - i32::from(*b)).abs())
                .max()
                .unwrap();
            assert!(worst <= 1, "{from} -> {to}: {worst}");
            // Not the same code: fused multiply-adds round differently somewhere.
            assert_ne!(outs[0], outs[1], "{from} -> {to}: both ran one path");
        }
    }

    #[test]
    fn samples_beyond_full_scale_saturate() {
        assert_eq!(to_i16(1.5), i16::MAX);
        assert_eq!(to_i16(-1.5), i16::MIN);
        assert_eq!(to_i16(0.5 / 32768.0), 1);
        assert_eq!(to_i16(-0.5 / 32768.0), -1);
        assert_eq!(to_i16(0.4 / 32768.0), 0);
        assert_eq!(to_i16(f32::NAN), 0);
    }
}
