//! Echo cancellation, noise suppression and automatic gain control on the captured signal,
//! through sonora (a pure-Rust port of the WebRTC audio processing module: AEC3, NS, AGC2).
//!
//! The engine feeds every frame it plays to the speaker as the echo reference
//! ([`AudioProcessor::process_render`]) and runs every captured frame through
//! [`AudioProcessor::process_capture`] before it is encoded. Both take the hub's 20 ms frames at
//! 48 kHz mono; sonora wants 10 ms blocks, so each frame is processed as two halves.
//!
//! Two processing rates ([`ProcessingRate`]). At the full rate sonora converts the capture and
//! the reference to 32 kHz, splits them into two bands, processes and converts back. At 16 kHz —
//! all a G.711 or G.722 call carries — the project's resampler converts the capture and the
//! reference down to 16 kHz (a whole ratio: its polyphase path, a few µs a frame), sonora
//! processes one band at 16 kHz in and out, and the resampler converts the capture back up into
//! the hub frame. That saves sonora's band split and its 32 kHz round trip, about 15 % of the
//! processing's cost (174 → 148 µs per 20 ms frame, optimised build): AEC3 and AGC2, most of it,
//! work on a 16 kHz band either way; converting down before sonora rather than in it (its WebRTC
//! sinc resampler, ~8 µs a frame for each of the two) saves ~10 % more. The conversions and their
//! buffers are made when the processor is built; nothing is allocated per frame. Nor in sonora
//! (third_party/PATCHES.md, patch 10) but for one small `Vec` per 10 ms block in sonora-agc2's
//! limiter: `tests/apm_allocations.rs` counts them.
//!
//! The processed capture comes out about 15 ms late at the full rate (noise suppression's 6 ms
//! overlap, AEC3's blocks, the band split and conversions) and about 2 ms later still at 16 kHz
//! (measured in a unit test).
//!
//! The delay between a frame handed to the speaker and its echo in a captured frame is given to
//! AEC3 as a hint ([`AudioProcessor::set_stream_delay`]): what waits in the output's queue and
//! device buffer plus what waited in the input's (the devices report both, see
//! `cpal_device`). AEC3 starts aligned on it and refines the estimate itself from the signals.
//! The hint is the same at either rate: the reference and the capture go through the same
//! down-conversion (same filter, same delay) before they meet in AEC3, so the delay between them
//! is the acoustic one; the up-conversion comes after AEC3 and only delays what is sent.

use super::devices::{FRAME_SAMPLES, HUB_RATE};
use super::resample::Resampler;
use sonora::config::{
    AdaptiveDigital, EchoCanceller, GainController2, HighPassFilter, NoiseSuppression,
};
use sonora::{AudioProcessing, Config, StreamConfig};
use std::time::Duration;

/// The rate sonora processes at. Ordered: the higher rate covers what the lower one does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ProcessingRate {
    /// 16 kHz: audio up to 8 kHz, all that a narrowband (G.711) or wideband (G.722) codec
    /// carries.
    Wideband,
    /// The hub's 48 kHz: for a full-band codec (Opus).
    Full,
}

impl ProcessingRate {
    pub fn hz(self) -> u32 {
        match self {
            ProcessingRate::Wideband => 16_000,
            ProcessingRate::Full => HUB_RATE,
        }
    }

    /// Samples in a 10 ms block at this rate, what sonora takes at a time.
    fn block(self) -> usize {
        self.hz() as usize / 100
    }

    /// The cheapest rate that keeps all the audio a codec sampling at `audio_rate` Hz carries.
    pub fn for_codec(audio_rate: u32) -> ProcessingRate {
        if audio_rate > ProcessingRate::Wideband.hz() {
            ProcessingRate::Full
        } else {
            ProcessingRate::Wideband
        }
    }
}

/// Samples in a 10 ms block at the hub's rate, what sonora takes in.
const HUB_BLOCK: usize = HUB_RATE as usize / 100;

/// Below the hub's rate: the hub's frames converted down before sonora, the processed capture
/// back up after it.
struct Conversion {
    capture_down: Resampler,
    render_down: Resampler,
    up: Resampler,
    /// A frame of capture or reference at the processing rate.
    low: Vec<i16>,
    /// A frame of processed capture at the hub's rate.
    high: Vec<i16>,
}

pub struct AudioProcessor {
    apm: AudioProcessing,
    rate: ProcessingRate,
    /// What sonora is handed and hands back, capture and render: mono at the processing rate.
    format: StreamConfig,
    /// One frame of processed capture, at the processing rate.
    capture_out: Vec<i16>,
    /// Below the hub's rate: the conversions around sonora.
    conversion: Option<Conversion>,
    /// Output of one render block: sonora hands the reference back unchanged; discarded.
    render_out: Vec<i16>,
    /// Blocks sonora refused (wrong size) or frames not of the hub's length, left as they
    /// were; never expected with the hub's frames.
    pub errors: u64,
}

/// The longest stream delay sonora takes.
const MAX_STREAM_DELAY_MS: u32 = 500;

impl AudioProcessor {
    /// AEC3, moderate noise suppression, AGC2 with its adaptive digital gain, and the high-pass
    /// filter, on 48 kHz mono capture and render, processed at `rate`.
    pub fn new(rate: ProcessingRate) -> AudioProcessor {
        let config = Config {
            high_pass_filter: Some(HighPassFilter::default()),
            echo_canceller: Some(EchoCanceller::default()),
            noise_suppression: Some(NoiseSuppression::default()),
            gain_controller2: Some(GainController2 {
                adaptive_digital: Some(AdaptiveDigital::default()),
                ..GainController2::default()
            }),
            ..Config::default()
        };
        let format = StreamConfig::new(rate.hz(), 1);
        let apm = AudioProcessing::builder()
            .config(config)
            .capture_config(format)
            .render_config(format)
            .build();
        let low_frame = FRAME_SAMPLES * rate.hz() as usize / HUB_RATE as usize;
        let conversion = (rate != ProcessingRate::Full).then(|| {
            // A frame at a time each way (one conversion call per frame, not 20). The capture
            // and the reference go through the same filter: the same delay (see the module).
            let resampler = |from, to| {
                Resampler::new(from, to).expect("16 and 48 kHz are within the resampler's range")
            };
            Conversion {
                capture_down: resampler(HUB_RATE, rate.hz()),
                render_down: resampler(HUB_RATE, rate.hz()),
                up: resampler(rate.hz(), HUB_RATE),
                low: Vec::with_capacity(low_frame),
                high: Vec::with_capacity(FRAME_SAMPLES),
            }
        });
        AudioProcessor {
            apm,
            rate,
            format,
            capture_out: vec![0; low_frame],
            conversion,
            render_out: vec![0; rate.block()],
            errors: 0,
        }
    }

    pub fn rate(&self) -> ProcessingRate {
        self.rate
    }

    /// The delay from a frame passed to [`Self::process_render`] to its echo reaching
    /// [`Self::process_capture`]: render latency (queued for the speaker and in its device
    /// buffer) plus capture latency (in the microphone's buffer and queue). Clamped to 500 ms.
    /// The same at either rate (see the module's documentation).
    pub fn set_stream_delay(&mut self, delay: Duration) {
        let ms = delay.as_millis().min(u128::from(MAX_STREAM_DELAY_MS)) as i32;
        // In range by construction: sonora's clamp warning cannot happen.
        let _ = self.apm.set_stream_delay_ms(ms);
    }

    /// The stream delay last set, in ms (0 until one is set).
    pub fn stream_delay_ms(&self) -> i32 {
        self.apm.stream_delay_ms()
    }

    /// The far-end frame going to the speaker: what the microphone may pick up as echo.
    pub fn process_render(&mut self, frame: &[i16]) {
        debug_assert_eq!(frame.len(), FRAME_SAMPLES);
        let frame = match self.conversion.as_mut() {
            None => frame,
            Some(c) => convert(&mut c.render_down, frame, &mut c.low),
        };
        // A whole-ratio conversion of whole milliseconds: always a frame.
        if frame.len() != self.capture_out.len() {
            self.errors += 1;
            return;
        }
        for block in frame.chunks_exact(self.rate.block()) {
            if self
                .apm
                .process_render_i16(block, &mut self.render_out)
                .is_err()
            {
                self.errors += 1;
            }
        }
    }

    /// A captured frame, processed in place: echo removed, noise suppressed, level adjusted.
    pub fn process_capture(&mut self, frame: &mut [i16]) {
        debug_assert_eq!(frame.len(), FRAME_SAMPLES);
        if frame.len() != FRAME_SAMPLES {
            self.errors += 1;
            return;
        }
        let input = match self.conversion.as_mut() {
            None => &frame[..],
            Some(c) => convert(&mut c.capture_down, frame, &mut c.low),
        };
        if input.len() != self.capture_out.len() {
            self.errors += 1;
            return;
        }
        let block = self.rate.block();
        let blocks = input
            .chunks_exact(block)
            .zip(self.capture_out.chunks_exact_mut(block));
        for (block, out) in blocks {
            let processed =
                self.apm
                    .process_capture_i16_with_config(block, &self.format, &self.format, out);
            if processed.is_err() {
                self.errors += 1;
                // The block goes on as it was.
                out.copy_from_slice(block);
            }
        }
        match self.conversion.as_mut() {
            None => frame.copy_from_slice(&self.capture_out),
            Some(c) => {
                let high = convert(&mut c.up, &self.capture_out, &mut c.high);
                if high.len() == frame.len() {
                    frame.copy_from_slice(high);
                } else {
                    self.errors += 1;
                }
            }
        }
    }
}

/// `input` converted by `by` into `out` (emptied first): a frame's worth, with the buffers made
/// when the processor was built.
fn convert<'a>(by: &mut Resampler, input: &[i16], out: &'a mut Vec<i16>) -> &'a [i16] {
    out.clear();
    by.process(input, out);
    out
}

const _: () = assert!(FRAME_SAMPLES.is_multiple_of(HUB_BLOCK));

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::media::tone::ToneGenerator;
    use ProcessingRate::{Full, Wideband};

    /// Speech-like far-end audio: noise bursts (a syllable every 250 ms, 180 ms long) with a
    /// crude low-pass, at about -20 dBFS while talking.
    struct Talker {
        seed: u32,
        n: usize,
        lp: f32,
    }

    impl Talker {
        fn new(seed: u32) -> Talker {
            Talker {
                seed,
                n: 0,
                lp: 0.0,
            }
        }

        fn next(&mut self) -> i16 {
            self.seed ^= self.seed << 13;
            self.seed ^= self.seed >> 17;
            self.seed ^= self.seed << 5;
            let white = (self.seed as f32 / u32::MAX as f32) * 2.0 - 1.0;
            self.lp = 0.7 * self.lp + 0.3 * white;
            (self.lp * syllable(self.n) * 12_000.0) as i16
        }

        fn fill(&mut self, frame: &mut [i16]) {
            for s in frame.iter_mut() {
                *s = self.next();
                self.n += 1;
            }
        }
    }

    /// A syllable every 250 ms at 48 kHz, 180 ms long, with a smooth envelope.
    fn syllable(n: usize) -> f32 {
        let pos = n % 12_000;
        if pos < 8_640 {
            (std::f32::consts::PI * pos as f32 / 8_640.0).sin()
        } else {
            0.0
        }
    }

    /// A voiced near-end talker with nothing above 4 kHz: the harmonics of a pitch gliding
    /// around 150 Hz (falling off at 6 dB per octave) in syllables, about -22 dBFS while
    /// talking. What a narrowband call carries, and not stationary like a steady tone (which
    /// noise suppression learns as noise).
    struct Voice {
        n: usize,
        phases: Vec<f32>,
    }

    impl Voice {
        fn new() -> Voice {
            Voice {
                n: 0,
                phases: vec![0.0; 20],
            }
        }

        fn fill(&mut self, frame: &mut [i16]) {
            use std::f32::consts::TAU;
            for s in frame.iter_mut() {
                let t = self.n as f32 / HUB_RATE as f32;
                let f0 = 150.0 + 40.0 * (TAU * 0.7 * t).sin();
                let mut v = 0.0;
                for (k, phase) in self.phases.iter_mut().enumerate() {
                    let hz = f0 * (k + 1) as f32;
                    *phase = (*phase + TAU * hz / HUB_RATE as f32) % TAU;
                    if hz < 4_000.0 {
                        v += phase.sin() / (k + 1) as f32;
                    }
                }
                *s = (v * syllable(self.n) * 3_000.0) as i16;
                self.n += 1;
            }
        }
    }

    fn energy(x: &[i16]) -> f64 {
        x.iter().map(|&s| f64::from(s).powi(2)).sum()
    }

    /// Echo energy, in dB, of the processed capture relative to the raw capture over the last
    /// `measure` frames, processing at `rate`, for a far end played for `frames` frames and
    /// captured back delayed by `delay` samples and attenuated to `gain`; with `hint` as the
    /// stream delay if given. Also the raw energy.
    fn echo_run(
        rate: ProcessingRate,
        (frames, measure): (usize, usize),
        delay: usize,
        gain: f32,
        hint: Option<Duration>,
    ) -> (f64, f64) {
        let mut apm = AudioProcessor::new(rate);
        if let Some(h) = hint {
            apm.set_stream_delay(h);
        }
        let mut talker = Talker::new(0x1234_5678);
        let mut speaker = vec![0i16; FRAME_SAMPLES];
        // The acoustic path: a delay line from the speaker to the microphone.
        let mut line = std::collections::VecDeque::from(vec![0i16; delay]);
        let mut mic = vec![0i16; FRAME_SAMPLES];
        let (mut raw, mut out) = (0f64, 0f64);
        for f in 0..frames {
            // Render of tick N-1 went in before; now capture of tick N, then render of tick N.
            for m in mic.iter_mut() {
                let s = line.pop_front().unwrap_or(0);
                *m = (f32::from(s) * gain) as i16;
            }
            if f >= frames - measure {
                raw += energy(&mic);
            }
            apm.process_capture(&mut mic);
            if f >= frames - measure {
                out += energy(&mic);
            }
            talker.fill(&mut speaker);
            line.extend(speaker.iter().copied());
            apm.process_render(&speaker);
        }
        assert_eq!(apm.errors, 0);
        (10.0 * (raw / out.max(1.0)).log10(), raw)
    }

    #[test]
    fn a_hinted_stream_delay_aligns_the_canceller_from_the_start() {
        // A long echo path (250 ms: a Bluetooth headset, a busy sound server): unhinted, AEC3
        // searches for the delay for the first half second; hinted, it starts aligned. The same
        // hint at 16 kHz: the down-conversions delay the reference and the capture alike.
        for rate in [Full, Wideband] {
            let path = 250 * 48;
            let (none, _) = echo_run(rate, (25, 25), path, 0.5, None);
            let hint = Some(Duration::from_millis(250));
            let (hinted, _) = echo_run(rate, (25, 25), path, 0.5, hint);
            println!(
                "{rate:?}, first 0.5 s, 250 ms path: {none:.1} dB unhinted, {hinted:.1} hinted"
            );
            assert!(
                hinted >= 40.0 && hinted >= none + 20.0,
                "{rate:?}: {none:.1} / {hinted:.1} dB"
            );
            // 150 ms, over the last half second of two: still clearly ahead.
            let path = 150 * 48;
            let (none, _) = echo_run(rate, (100, 25), path, 0.5, None);
            let hint = Some(Duration::from_millis(150));
            let (hinted, _) = echo_run(rate, (100, 25), path, 0.5, hint);
            println!("{rate:?}, 1.5-2 s, 150 ms path: {none:.1} dB unhinted, {hinted:.1} hinted");
            assert!(hinted >= none + 5.0, "{rate:?}: {none:.1} / {hinted:.1} dB");
        }
    }

    #[test]
    fn the_stream_delay_hint_is_kept_in_sonoras_range() {
        let mut apm = AudioProcessor::new(Full);
        assert_eq!(apm.stream_delay_ms(), 0);
        apm.set_stream_delay(Duration::from_micros(62_700));
        assert_eq!(apm.stream_delay_ms(), 62);
        apm.set_stream_delay(Duration::from_secs(3));
        assert_eq!(apm.stream_delay_ms(), 500);
    }

    #[test]
    fn a_delayed_attenuated_echo_of_the_far_end_is_cancelled() {
        // 60 ms acoustic delay, echo 6 dB below what the speaker plays; 4 s, the last 2 s
        // measured (the first second or so is convergence).
        let (reduction, raw) = echo_run(Full, (200, 100), 2_880, 0.5, None);
        assert!(raw > 0.0);
        println!("echo reduced by {reduction:.1} dB");
        assert!(reduction >= 20.0, "echo reduced by only {reduction:.1} dB");
    }

    #[test]
    fn at_16_khz_the_echo_of_the_far_end_is_cancelled_by_a_similar_margin() {
        // As above. The far end's little energy above 8 kHz (about a tenth) is dropped by the
        // conversion whatever the canceller does: worth well under 20 dB.
        let (full, _) = echo_run(Full, (200, 100), 2_880, 0.5, None);
        let (wide, raw) = echo_run(Wideband, (200, 100), 2_880, 0.5, None);
        assert!(raw > 0.0);
        println!("echo reduced by {full:.1} dB at 48 kHz, {wide:.1} dB at 16 kHz");
        assert!(wide >= 20.0, "echo reduced by only {wide:.1} dB at 16 kHz");
        assert!(
            wide >= full - 10.0,
            "{wide:.1} dB at 16 kHz, {full:.1} at 48"
        );
    }

    /// Gain (dB) the processing at `rate` applies to a near-end source alone (the far end
    /// silent), per second: energy out over energy in. Checks that the buffers made at build
    /// time were never reallocated.
    fn near_end_gains(
        rate: ProcessingRate,
        mut fill: impl FnMut(&mut [i16]),
        frames: usize,
    ) -> Vec<f64> {
        let mut apm = AudioProcessor::new(rate);
        let capacities = |a: &AudioProcessor| {
            a.conversion.as_ref().map(|c| {
                let v = |v: &Vec<i16>| (v.as_ptr(), v.capacity());
                (v(&c.low), v(&c.high))
            })
        };
        let built = capacities(&apm);
        let mut mic = vec![0i16; FRAME_SAMPLES];
        let silence = vec![0i16; FRAME_SAMPLES];
        let mut gains = Vec::new();
        for _ in 0..frames {
            fill(&mut mic);
            let before = energy(&mic);
            apm.process_capture(&mut mic);
            gains.push((energy(&mic), before));
            apm.process_render(&silence);
        }
        assert_eq!(apm.errors, 0);
        assert_eq!(capacities(&apm), built, "a buffer grew while processing");
        gains
            .chunks(50)
            .map(|c| {
                let (o, i) = c.iter().fold((0.0, 0.0), |a, g| (a.0 + g.0, a.1 + g.1));
                10.0 * (o / i.max(1.0)).log10()
            })
            .collect()
    }

    #[test]
    fn near_end_speech_alone_passes_through() {
        let mut talker = Talker::new(0x9e37_79b9);
        // Per second, over 4 s.
        let gains = near_end_gains(Full, |f| talker.fill(f), 200);
        // AGC2 raises this quiet talker (about -25 dBFS while talking) by some 10 dB.
        println!("near-end speech, gain per second: {gains:.1?} dB");
        for g in &gains[1..] {
            assert!((-6.0..=12.0).contains(g), "near-end speech: {gains:.1?} dB");
        }
    }

    #[test]
    fn at_16_khz_a_near_end_voice_comes_out_as_at_48_khz() {
        // All its sound is below 4 kHz: processing at 16 kHz and converting back loses nothing,
        // so after the first second (AGC2 settling) each second's gain is within 2 dB of the
        // full rate's, and about unity (AGC2 lifts this quiet voice by a few dB).
        let (mut a, mut b) = (Voice::new(), Voice::new());
        let full = near_end_gains(Full, |f| a.fill(f), 250);
        let wide = near_end_gains(Wideband, |f| b.fill(f), 250);
        println!("near-end voice, gain per second: {full:.1?} dB at 48 kHz, {wide:.1?} at 16");
        for (f, w) in full.iter().zip(&wide).skip(1) {
            assert!((f - w).abs() <= 2.0, "{full:.1?} / {wide:.1?} dB");
            assert!((-3.0..=10.0).contains(w), "{wide:.1?} dB at 16 kHz");
        }
    }

    #[test]
    fn at_16_khz_the_capture_comes_out_a_few_ms_later_at_most() {
        // Speech-like noise through the processor at each rate (not a voice: its pitch would
        // make the match ambiguous); the lag at which output and input match best. At 48 kHz
        // that is sonora's own, about 15 ms (noise suppression's 6 ms overlap, AEC3's blocks,
        // its band split and 48 <-> 32 kHz conversions). At 16 kHz the conversions are
        // 48 -> 16 kHz in sonora and 16 -> 48 kHz in ours (3.2 ms), and there is no band split.
        let lag = |rate| {
            let mut apm = AudioProcessor::new(rate);
            let mut talker = Talker::new(0x2545_f491);
            let (mut input, mut output) = (Vec::new(), Vec::new());
            let mut mic = vec![0i16; FRAME_SAMPLES];
            let silence = vec![0i16; FRAME_SAMPLES];
            for _ in 0..100 {
                talker.fill(&mut mic);
                input.extend_from_slice(&mic);
                apm.process_capture(&mut mic);
                output.extend_from_slice(&mic);
                apm.process_render(&silence);
            }
            // Over the last second, lags up to 20 ms.
            let (x, y) = (&input[48_000..], &output[48_000..]);
            let corr = |l: usize| {
                x[..x.len() - 960]
                    .iter()
                    .zip(&y[l..])
                    .map(|(&a, &b)| f64::from(a) * f64::from(b))
                    .sum::<f64>()
            };
            let best = (0..960).max_by(|&a, &b| corr(a).total_cmp(&corr(b)));
            Duration::from_micros(best.unwrap_or(0) as u64 * 1000 / 48)
        };
        let (full, wide) = (lag(Full), lag(Wideband));
        println!("capture delay {full:?} at 48 kHz, {wide:?} at 16 kHz");
        let ms = Duration::from_millis;
        assert!((ms(12)..ms(18)).contains(&full), "{full:?} at 48 kHz");
        assert!(
            (full..=full + ms(3)).contains(&wide),
            "{wide:?} at 16 kHz, {full:?} at 48"
        );
    }

    #[test]
    fn a_steady_near_end_tone_is_treated_as_noise_and_attenuated() {
        // Noise suppression learns a stationary sound as background noise: a steady tone fades
        // by about the moderate level's 12 dB within 2-3 s. Real voices are not stationary.
        let mut tone = ToneGenerator::new(440.0, -20.0, HUB_RATE);
        let gains = near_end_gains(Full, |f| tone.fill(f), 150);
        println!("steady 440 Hz tone, gain per second: {gains:.1?} dB");
        assert!(gains[0] > -6.0, "{gains:.1?}");
        assert!(gains[2] < gains[0], "{gains:.1?}");
    }
}
