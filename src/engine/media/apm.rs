//! Echo cancellation, noise suppression and automatic gain control on the captured signal,
//! through sonora (a pure-Rust port of the WebRTC audio processing module: AEC3, NS, AGC2).
//!
//! The engine feeds every frame it plays to the speaker as the echo reference
//! ([`AudioProcessor::process_render`]) and runs every captured frame through
//! [`AudioProcessor::process_capture`] before it is encoded. Both work on the hub's 20 ms frames
//! at 48 kHz mono; sonora wants 10 ms, so each frame is processed as two halves.
//!
//! The delay between a frame handed to the speaker and its echo in a captured frame is given to
//! AEC3 as a hint ([`AudioProcessor::set_stream_delay`]): what waits in the output's queue and
//! device buffer plus what waited in the input's (the devices report both, see
//! `cpal_device`). AEC3 starts aligned on it and refines the estimate itself from the signals.

use super::devices::{FRAME_SAMPLES, HUB_RATE};
use sonora::config::{
    AdaptiveDigital, EchoCanceller, GainController2, HighPassFilter, NoiseSuppression,
};
use sonora::{AudioProcessing, Config, StreamConfig};

/// Samples in the 10 ms blocks sonora processes.
const BLOCK: usize = HUB_RATE as usize / 100;

pub struct AudioProcessor {
    apm: AudioProcessing,
    /// Output of one 10 ms capture block (sonora does not process in place).
    capture_out: Vec<i16>,
    /// Output of one render block: sonora hands the reference back unchanged; discarded.
    render_out: Vec<i16>,
    /// Blocks sonora refused (wrong size); never expected with the hub's frames.
    pub errors: u64,
}

/// The longest stream delay sonora takes.
const MAX_STREAM_DELAY_MS: u32 = 500;

impl Default for AudioProcessor {
    fn default() -> Self {
        AudioProcessor::new()
    }
}

impl AudioProcessor {
    /// AEC3, moderate noise suppression, AGC2 with its adaptive digital gain, and the high-pass
    /// filter, for 48 kHz mono capture and render.
    pub fn new() -> AudioProcessor {
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
        let stream = StreamConfig::new(HUB_RATE, 1);
        let apm = AudioProcessing::builder()
            .config(config)
            .capture_config(stream)
            .render_config(stream)
            .build();
        AudioProcessor {
            apm,
            capture_out: vec![0; BLOCK],
            render_out: vec![0; BLOCK],
            errors: 0,
        }
    }

    /// The delay from a frame passed to [`Self::process_render`] to its echo reaching
    /// [`Self::process_capture`]: render latency (queued for the speaker and in its device
    /// buffer) plus capture latency (in the microphone's buffer and queue). Clamped to 500 ms.
    pub fn set_stream_delay(&mut self, delay: std::time::Duration) {
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
        debug_assert!(frame.len().is_multiple_of(BLOCK));
        for block in frame.chunks_exact(BLOCK) {
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
        debug_assert!(frame.len().is_multiple_of(BLOCK));
        for block in frame.chunks_exact_mut(BLOCK) {
            match self.apm.process_capture_i16(block, &mut self.capture_out) {
                Ok(()) => block.copy_from_slice(&self.capture_out),
                Err(_) => self.errors += 1,
            }
        }
    }
}

const _: () = assert!(FRAME_SAMPLES.is_multiple_of(BLOCK));

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::media::tone::ToneGenerator;

    /// Speech-like far-end audio: noise bursts (a syllable every 250 ms, 180 ms long) with a
    /// crude low-pass, at about -20 dBFS while talking.
    struct Talker {
        seed: u32,
        n: usize,
        lp: f32,
    }

    impl Talker {
        fn next(&mut self) -> i16 {
            self.seed ^= self.seed << 13;
            self.seed ^= self.seed >> 17;
            self.seed ^= self.seed << 5;
            let white = (self.seed as f32 / u32::MAX as f32) * 2.0 - 1.0;
            self.lp = 0.7 * self.lp + 0.3 * white;
            let pos = self.n % 12_000;
            self.n += 1;
            let on = if pos < 8_640 {
                // A smooth syllable envelope.
                (std::f32::consts::PI * pos as f32 / 8_640.0).sin()
            } else {
                0.0
            };
            (self.lp * on * 12_000.0) as i16
        }
    }

    /// Echo energy, in dB, of the processed capture relative to the raw capture over the last
    /// `measure` frames, for a far end played for `frames` frames and captured back delayed by
    /// `delay` samples and attenuated to `gain`.
    fn echo_run(frames: usize, measure: usize, delay: usize, gain: f32) -> (f64, f64) {
        echo_run_hinted(frames, measure, delay, gain, None)
    }

    fn echo_run_hinted(
        frames: usize,
        measure: usize,
        delay: usize,
        gain: f32,
        hint: Option<std::time::Duration>,
    ) -> (f64, f64) {
        let mut apm = AudioProcessor::new();
        if let Some(h) = hint {
            apm.set_stream_delay(h);
        }
        let mut talker = Talker {
            seed: 0x1234_5678,
            n: 0,
            lp: 0.0,
        };
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
            let energy = |x: &[i16]| x.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>();
            if f >= frames - measure {
                raw += energy(&mic);
            }
            apm.process_capture(&mut mic);
            if f >= frames - measure {
                out += energy(&mic);
            }
            for s in speaker.iter_mut() {
                *s = talker.next();
            }
            line.extend(speaker.iter().copied());
            apm.process_render(&speaker);
        }
        assert_eq!(apm.errors, 0);
        (10.0 * (raw / out.max(1.0)).log10(), raw)
    }

    #[test]
    fn a_hinted_stream_delay_aligns_the_canceller_from_the_start() {
        use std::time::Duration;
        // A long echo path (250 ms: a Bluetooth headset, a busy sound server): unhinted, AEC3
        // searches for the delay for the first half second; hinted, it starts aligned.
        let (none, _) = echo_run(25, 25, 250 * 48, 0.5);
        let (hinted, _) = echo_run_hinted(25, 25, 250 * 48, 0.5, Some(Duration::from_millis(250)));
        println!("first 0.5 s, 250 ms echo path: {none:.1} dB unhinted, {hinted:.1} dB hinted");
        assert!(
            hinted >= 40.0 && hinted >= none + 20.0,
            "{none:.1} / {hinted:.1} dB"
        );
        // 150 ms, over the last half second of two: still clearly ahead.
        let (none, _) = echo_run(100, 25, 150 * 48, 0.5);
        let (hinted, _) = echo_run_hinted(100, 25, 150 * 48, 0.5, Some(Duration::from_millis(150)));
        println!("1.5-2 s, 150 ms echo path: {none:.1} dB unhinted, {hinted:.1} dB hinted");
        assert!(hinted >= none + 5.0, "{none:.1} / {hinted:.1} dB");
    }

    #[test]
    fn the_stream_delay_hint_is_kept_in_sonoras_range() {
        use std::time::Duration;
        let mut apm = AudioProcessor::new();
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
        let (reduction, raw) = echo_run(200, 100, 2_880, 0.5);
        assert!(raw > 0.0);
        println!("echo reduced by {reduction:.1} dB");
        assert!(reduction >= 20.0, "echo reduced by only {reduction:.1} dB");
    }

    /// Gain (dB) the processing applies to a near-end source alone (the far end silent), per
    /// frame: energy out over energy in.
    fn near_end_gains(mut fill: impl FnMut(&mut [i16]), frames: usize) -> Vec<f64> {
        let mut apm = AudioProcessor::new();
        let mut mic = vec![0i16; FRAME_SAMPLES];
        let silence = vec![0i16; FRAME_SAMPLES];
        let energy = |x: &[i16]| x.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>();
        let mut gains = Vec::new();
        for _ in 0..frames {
            fill(&mut mic);
            let before = energy(&mic);
            apm.process_capture(&mut mic);
            gains.push((energy(&mic), before));
            apm.process_render(&silence);
        }
        assert_eq!(apm.errors, 0);
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
        let mut talker = Talker {
            seed: 0x9e37_79b9,
            n: 0,
            lp: 0.0,
        };
        // Per second, over 4 s.
        let gains = near_end_gains(|f| f.iter_mut().for_each(|s| *s = talker.next()), 200);
        // AGC2 raises this quiet talker (about -25 dBFS while talking) by some 10 dB.
        println!("near-end speech, gain per second: {gains:.1?} dB");
        for g in &gains[1..] {
            assert!((-6.0..=12.0).contains(g), "near-end speech: {gains:.1?} dB");
        }
    }

    #[test]
    fn a_steady_near_end_tone_is_treated_as_noise_and_attenuated() {
        // Noise suppression learns a stationary sound as background noise: a steady tone fades
        // by about the moderate level's 12 dB within 2-3 s. Real voices are not stationary.
        let mut tone = ToneGenerator::new(440.0, -20.0, HUB_RATE);
        let gains = near_end_gains(|f| tone.fill(f), 150);
        println!("steady 440 Hz tone, gain per second: {gains:.1?} dB");
        assert!(gains[0] > -6.0, "{gains:.1?}");
        assert!(gains[2] < gains[0], "{gains:.1?}");
    }
}
