//! A sine tone generator (a synthetic audio source) and a Goertzel tone detector (to prove, in
//! tests and diagnostics, that a given tone went through a call).
//!
//! Levels are in dBFS with a full-scale sine at 0 dBFS (AES17): a tone's level is its peak
//! amplitude against 32767, and an RMS level is reported on the same scale (RMS × √2), so a pure
//! tone measures the same on both. Silence is [`SILENCE_DBFS`] rather than minus infinity.

use std::f64::consts::TAU;

/// The floor every level is clamped to (digital silence).
pub const SILENCE_DBFS: f32 = -120.0;

const FULL_SCALE: f64 = 32767.0;

fn to_dbfs(amplitude: f64) -> f32 {
    if amplitude <= 0.0 {
        return SILENCE_DBFS;
    }
    ((20.0 * (amplitude / FULL_SCALE).log10()) as f32).max(SILENCE_DBFS)
}

/// A phase-continuous sine generator: successive [`ToneGenerator::fill`] calls continue the
/// same wave, so a stream built from 20 ms frames has no click at the frame boundaries.
#[derive(Debug, Clone)]
pub struct ToneGenerator {
    amplitude: f64,
    /// Phase advance per sample, in radians.
    step: f64,
    /// Current phase in radians, kept in [0, 2π) so precision does not drift over hours.
    phase: f64,
}

impl ToneGenerator {
    /// A tone of `freq` Hz at `level_dbfs` (0 = full-scale sine; clamped to at most 0) sampled at
    /// `rate` Hz.
    pub fn new(freq: f32, level_dbfs: f32, rate: u32) -> Self {
        let level = f64::from(level_dbfs.min(0.0));
        Self {
            amplitude: FULL_SCALE * 10f64.powf(level / 20.0),
            step: TAU * f64::from(freq) / f64::from(rate.max(1)),
            phase: 0.0,
        }
    }

    /// Overwrites `out` with the next samples of the tone.
    pub fn fill(&mut self, out: &mut [i16]) {
        for s in out {
            *s = (self.amplitude * self.phase.sin()).round() as i16;
            self.phase = (self.phase + self.step) % TAU;
        }
    }
}

/// What [`Goertzel::measure`] found in a block.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ToneLevel {
    /// Level of the component at the detector's frequency (dBFS, sine peak scale).
    pub tone_dbfs: f32,
    /// Level of the whole block (dBFS, RMS × √2 so a pure tone reads the same as `tone_dbfs`).
    pub rms_dbfs: f32,
}

/// A single-frequency detector (the Goertzel algorithm: one DFT bin at any frequency, not only
/// the bin centres). The block is Hann-windowed first: that costs some resolution but keeps a
/// strong tone nearby from leaking into the bin, which matters for the short (20 ms) blocks.
#[derive(Debug, Clone, Copy)]
pub struct Goertzel {
    freq: f32,
    omega: f64,
}

impl Goertzel {
    pub fn new(freq: f32, rate: u32) -> Self {
        Self {
            freq,
            omega: TAU * f64::from(freq) / f64::from(rate.max(1)),
        }
    }

    /// The frequency this detector listens for.
    pub fn freq(&self) -> f32 {
        self.freq
    }

    /// Measures the tone and the overall level over one block. An empty block is silence.
    pub fn measure(&self, samples: &[i16]) -> ToneLevel {
        let n = samples.len();
        if n == 0 {
            return ToneLevel {
                tone_dbfs: SILENCE_DBFS,
                rms_dbfs: SILENCE_DBFS,
            };
        }
        let coeff = 2.0 * self.omega.cos();
        let (mut s1, mut s2) = (0.0f64, 0.0f64);
        let mut window_sum = 0.0f64;
        let mut energy = 0.0f64;
        let denom = (n.max(2) - 1) as f64;
        for (i, &x) in samples.iter().enumerate() {
            let x = f64::from(x);
            energy += x * x;
            let w = if n < 2 {
                1.0
            } else {
                0.5 - 0.5 * (TAU * i as f64 / denom).cos()
            };
            window_sum += w;
            let s0 = x * w + coeff * s1 - s2;
            s2 = s1;
            s1 = s0;
        }
        // |X(ω)|² from the last two states; a sine of amplitude A gives |X| ≈ A·Σw/2.
        let power = (s1 * s1 + s2 * s2 - coeff * s1 * s2).max(0.0);
        let amplitude = 2.0 * power.sqrt() / window_sum.max(f64::MIN_POSITIVE);
        let rms = (energy / n as f64).sqrt();
        ToneLevel {
            tone_dbfs: to_dbfs(amplitude),
            rms_dbfs: to_dbfs(rms * std::f64::consts::SQRT_2),
        }
    }
}

/// How far below the block's overall level a tone may be and still count as dominant: a pure
/// tone loses about 1 dB to windowing; two equal tones each sit 3 dB below the total.
const DOMINANCE_DB: f32 = 3.0;
/// Quieter blocks are silence, whatever their spectrum.
const SILENCE_THRESHOLD_DBFS: f32 = -60.0;

/// Which of `candidates` (Hz) dominates `samples`: the loudest, if it carries most of the
/// block's energy and the block is not silence. Returns its frequency and level (dBFS).
pub fn dominant_tone(samples: &[i16], rate: u32, candidates: &[f32]) -> Option<(f32, f32)> {
    let mut best: Option<(f32, ToneLevel)> = None;
    for &f in candidates {
        let m = Goertzel::new(f, rate).measure(samples);
        if best.is_none_or(|(_, b)| m.tone_dbfs > b.tone_dbfs) {
            best = Some((f, m));
        }
    }
    let (f, m) = best?;
    (m.rms_dbfs > SILENCE_THRESHOLD_DBFS && m.tone_dbfs >= m.rms_dbfs - DOMINANCE_DB)
        .then_some((f, m.tone_dbfs))
}

/// Full-scale white noise, `n` samples of a fixed sequence: a signal with every frequency in it, for
/// tests of filters and converters.
#[cfg(test)]
pub(crate) fn test_noise(n: usize) -> Vec<i16> {
    let mut seed = 0x9e37_79b9u32;
    (0..n)
        .map(|_| {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 16) as i16
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(freq: f32, dbfs: f32, rate: u32, n: usize) -> Vec<i16> {
        let mut g = ToneGenerator::new(freq, dbfs, rate);
        let mut v = vec![0; n];
        g.fill(&mut v);
        v
    }

    #[test]
    fn generator_level_matches_dbfs() {
        let v = tone(1000.0, -10.0, 8000, 8000);
        let peak = v.iter().map(|s| i32::from(*s).abs()).max().unwrap();
        let expected = 32767.0 * 10f64.powf(-0.5);
        assert!((f64::from(peak) - expected).abs() < 2.0, "{peak}");
        let full = tone(1000.0, 0.0, 8000, 80);
        assert!(full.iter().all(|&s| s > i16::MIN));
        assert_eq!(full.iter().max(), Some(&32767));
    }

    #[test]
    fn generator_is_phase_continuous_across_fill_calls() {
        let whole = tone(440.0, -6.0, 48000, 960 * 5);
        let mut g = ToneGenerator::new(440.0, -6.0, 48000);
        let mut pieces = Vec::new();
        for len in [960, 1, 959, 1000, 1880] {
            let mut f = vec![0; len];
            g.fill(&mut f);
            pieces.extend(f);
        }
        assert_eq!(pieces.len(), whole.len());
        for (a, b) in pieces.iter().zip(&whole) {
            assert!((i32::from(*a) - i32::from(*b)).abs() <= 1);
        }
    }

    #[test]
    fn detects_440_hz_at_minus_10_dbfs_within_5_hz_and_1_db() {
        for rate in [8000, 48000] {
            let v = tone(440.0, -10.0, rate, rate as usize / 2);
            let candidates: Vec<f32> = (300..=600).map(|f| f as f32).collect();
            let (f, level) = dominant_tone(&v, rate, &candidates).unwrap();
            assert!((f - 440.0).abs() <= 5.0, "{rate}: {f}");
            assert!((level + 10.0).abs() <= 1.0, "{rate}: {level}");
        }
    }

    #[test]
    fn detects_a_tone_in_one_20_ms_frame() {
        let v = tone(440.0, -10.0, 8000, 160);
        let m = Goertzel::new(440.0, 8000).measure(&v);
        assert!((m.tone_dbfs + 10.0).abs() <= 1.0, "{m:?}");
        assert!((m.rms_dbfs + 10.0).abs() <= 1.0, "{m:?}");
    }

    #[test]
    fn rejects_1000_hz_when_listening_for_440() {
        let v = tone(1000.0, -10.0, 8000, 4000);
        let m = Goertzel::new(440.0, 8000).measure(&v);
        assert!(m.tone_dbfs < -50.0, "{m:?}");
        assert!((m.rms_dbfs + 10.0).abs() < 0.5);
        assert_eq!(dominant_tone(&v, 8000, &[350.0, 440.0, 480.0]), None);
        let (f, _) = dominant_tone(&v, 8000, &[440.0, 1000.0]).unwrap();
        assert_eq!(f, 1000.0);
    }

    #[test]
    fn silence_is_detected_as_silence() {
        let v = vec![0i16; 1600];
        let m = Goertzel::new(440.0, 8000).measure(&v);
        assert_eq!(m.tone_dbfs, SILENCE_DBFS);
        assert_eq!(m.rms_dbfs, SILENCE_DBFS);
        assert_eq!(dominant_tone(&v, 8000, &[440.0]), None);
        assert_eq!(dominant_tone(&[], 8000, &[440.0]), None);
        assert_eq!(dominant_tone(&v, 8000, &[]), None);
        // A very quiet tone is silence too.
        assert_eq!(
            dominant_tone(&tone(440.0, -70.0, 8000, 1600), 8000, &[440.0]),
            None
        );
    }

    #[test]
    fn a_tone_under_a_louder_one_is_not_dominant() {
        let a = tone(440.0, -12.0, 8000, 4000);
        let b = tone(1200.0, -6.0, 8000, 4000);
        let mix: Vec<i16> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
        assert_eq!(dominant_tone(&mix, 8000, &[440.0]), None);
    }
}
