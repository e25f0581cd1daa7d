//! Sample-rate conversion between the hub's 48 kHz and a codec's or a file's rate.
//!
//! A small stateful converter: whole-ratio decimation averages each group of input samples (a box
//! filter, enough to keep voice-band tones clean going 48 kHz → 8 kHz), whole-ratio interpolation
//! and any other ratio interpolate linearly. Good enough for the first media slice; rubato (the
//! design's choice) replaces it where quality matters.

/// Converts one mono stream from `from` Hz to `to` Hz, keeping phase across calls.
#[derive(Debug, Clone)]
pub struct Resampler {
    from: u32,
    to: u32,
    /// Position of the next output sample after `last`, in 1/`to` of an input sample (exact).
    pos: u64,
    last: i16,
}

impl Resampler {
    pub fn new(from: u32, to: u32) -> Resampler {
        Resampler {
            from: from.max(1),
            to: to.max(1),
            pos: 0,
            last: 0,
        }
    }

    pub fn is_identity(&self) -> bool {
        self.from == self.to
    }

    /// Appends the converted `input` to `out`.
    pub fn process(&mut self, input: &[i16], out: &mut Vec<i16>) {
        if self.from == self.to {
            out.extend_from_slice(input);
            return;
        }
        if self.from > self.to && self.from.is_multiple_of(self.to) {
            let k = (self.from / self.to) as usize;
            for group in input.chunks(k) {
                let sum: i32 = group.iter().map(|&s| i32::from(s)).sum();
                out.push((sum / group.len() as i32) as i16);
            }
            return;
        }
        // Linear interpolation between `last` (position 0) and the input samples (1, 2, …).
        let (from, to) = (u64::from(self.from), u64::from(self.to));
        let end = input.len() as u64 * to;
        while self.pos < end {
            let i = (self.pos / to) as usize;
            let frac = (self.pos % to) as f64 / to as f64;
            let a = if i == 0 { self.last } else { input[i - 1] };
            let b = input[i];
            let v = f64::from(a) + (f64::from(b) - f64::from(a)) * frac;
            out.push(v.round().clamp(-32768.0, 32767.0) as i16);
            self.pos += from;
        }
        self.pos -= end;
        if let Some(&l) = input.last() {
            self.last = l;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::media::tone::{ToneGenerator, dominant_tone};

    #[test]
    fn down_and_up_keep_the_sample_count_and_the_tone() {
        let mut tone = ToneGenerator::new(440.0, -10.0, 48_000);
        let mut down = Resampler::new(48_000, 8_000);
        let mut up = Resampler::new(8_000, 48_000);
        let (mut low, mut back) = (Vec::new(), Vec::new());
        for _ in 0..50 {
            let mut frame = [0i16; 960];
            tone.fill(&mut frame);
            let start = low.len();
            down.process(&frame, &mut low);
            assert_eq!(low.len() - start, 160);
            let start = back.len();
            up.process(&low[low.len() - 160..], &mut back);
            assert_eq!(back.len() - start, 960);
        }
        let (f, db) = dominant_tone(&low[1600..], 8_000, &[300.0, 440.0, 1000.0]).unwrap();
        assert_eq!(f, 440.0);
        assert!((db + 10.0).abs() < 1.5, "{db}");
        let (f, _) = dominant_tone(&back[9600..], 48_000, &[300.0, 440.0, 1000.0]).unwrap();
        assert_eq!(f, 440.0);
    }

    #[test]
    fn odd_ratios_produce_the_right_amount() {
        let mut r = Resampler::new(44_100, 48_000);
        let mut out = Vec::new();
        for _ in 0..100 {
            r.process(&[0i16; 441], &mut out);
        }
        assert!((out.len() as i64 - 48_000).abs() <= 1, "{}", out.len());
    }
}
