//! Call progress sounds through the hub's outputs: ringback for an outgoing call that rings
//! without early media (425 Hz, 1 s on / 4 s off, the ETSI cadence), a ring tone for an incoming
//! call (two tones, 1 s on / 2 s off, or a WAV file looped), and a one-second 440 Hz test tone
//! for checking a speaker. They are mixed with the calls' audio, so a second call ringing in
//! during a call is heard too. With a ring device, the ring tone (and a test tone asked for
//! there) goes to it instead of the call output; ringback always goes to the call output.

use super::devices::{FRAME_SAMPLES, HUB_RATE};
use super::tone::ToneGenerator;

/// Ringback frequency (Hz).
pub const RINGBACK_HZ: f32 = 425.0;
/// Ring tone frequencies (Hz).
pub const RING_HZ: (f32, f32) = (880.0, 1320.0);
/// Test tone frequency (Hz).
pub const TEST_TONE_HZ: f32 = 440.0;

const FRAMES_PER_SECOND: u32 = 50;
/// The test tone lasts one second.
const TEST_TONE_FRAMES: u32 = FRAMES_PER_SECOND;

struct Cadence {
    on: u32,
    period: u32,
    tick: u32,
}

impl Cadence {
    fn sounding(&mut self) -> bool {
        let s = self.tick % self.period < self.on;
        self.tick = self.tick.wrapping_add(1);
        s
    }
}

/// The ring tone while a call rings in.
enum Ring {
    /// Two tones on the ring cadence.
    Builtin(ToneGenerator, ToneGenerator, Cadence),
    /// The ring tone file, looped from its start; `at` is the next sample.
    File { at: usize },
}

struct TestTone {
    tone: ToneGenerator,
    frames_left: u32,
    /// Asked for on the ring device.
    on_ring_device: bool,
}

/// This tick's alert audio for each output; None where nothing is to be played there. A frame
/// may be silent (a cadence's pause): the output still plays it, so its stream stays steady.
pub struct AlertFrames<'a> {
    pub call: Option<&'a [i16]>,
    pub ring: Option<&'a [i16]>,
}

pub struct Alerts {
    ringback: Option<(ToneGenerator, Cadence)>,
    ring: Option<Ring>,
    test: Option<TestTone>,
    /// The ring tone file's samples at the hub's rate; None for the built-in ring tone.
    ring_file: Option<Vec<i16>>,
    /// A ring device is open: ring sounds go there, not into the call output.
    ring_device: bool,
    scratch: Vec<i16>,
    call_mix: Vec<i16>,
    ring_mix: Vec<i16>,
}

impl Default for Alerts {
    fn default() -> Self {
        Alerts {
            ringback: None,
            ring: None,
            test: None,
            ring_file: None,
            ring_device: false,
            scratch: vec![0; FRAME_SAMPLES],
            call_mix: vec![0; FRAME_SAMPLES],
            ring_mix: vec![0; FRAME_SAMPLES],
        }
    }
}

impl Alerts {
    /// What should sound now; a sound that starts begins at the start of its cadence.
    pub fn set(&mut self, ringback: bool, ring: bool) {
        match (ringback, self.ringback.is_some()) {
            (true, false) => {
                self.ringback = Some((
                    ToneGenerator::new(RINGBACK_HZ, -16.0, HUB_RATE),
                    Cadence {
                        on: FRAMES_PER_SECOND,
                        period: 5 * FRAMES_PER_SECOND,
                        tick: 0,
                    },
                ))
            }
            (false, true) => self.ringback = None,
            _ => {}
        }
        match (ring, self.ring.is_some()) {
            (true, false) => {
                self.ring = Some(match self.ring_file {
                    Some(_) => Ring::File { at: 0 },
                    None => Ring::Builtin(
                        ToneGenerator::new(RING_HZ.0, -16.0, HUB_RATE),
                        ToneGenerator::new(RING_HZ.1, -22.0, HUB_RATE),
                        Cadence {
                            on: FRAMES_PER_SECOND,
                            period: 3 * FRAMES_PER_SECOND,
                            tick: 0,
                        },
                    ),
                })
            }
            (false, true) => self.ring = None,
            _ => {}
        }
    }

    /// The ring tone from now on: a file's samples at the hub's rate (looped), or None for the
    /// built-in one. A call ringing now keeps its sound.
    pub fn set_ring_tone(&mut self, samples: Option<Vec<i16>>) {
        self.ring_file = samples.filter(|s| !s.is_empty());
        if matches!(self.ring, Some(Ring::File { .. })) && self.ring_file.is_none() {
            // The file's samples are gone: the ringing call goes on with the built-in tone.
            self.ring = None;
            self.set(self.ringback.is_some(), true);
        }
    }

    /// Whether ring sounds go to a ring device of their own.
    pub fn set_ring_device(&mut self, on: bool) {
        self.ring_device = on;
    }

    /// Plays the test tone (one second) on the call output, or on the ring device if asked and
    /// there is one; asked again, it starts over.
    pub fn play_test_tone(&mut self, on_ring_device: bool) {
        self.test = Some(TestTone {
            tone: ToneGenerator::new(TEST_TONE_HZ, -16.0, HUB_RATE),
            frames_left: TEST_TONE_FRAMES,
            on_ring_device,
        });
    }

    pub fn active(&self) -> bool {
        self.ringback.is_some() || self.ring.is_some() || self.test.is_some()
    }

    /// This frame's alert sounds, for the mixers of the call output and the ring device.
    pub fn frame(&mut self) -> AlertFrames<'_> {
        let Alerts {
            ringback,
            ring,
            test,
            ring_file,
            ring_device,
            scratch,
            call_mix,
            ring_mix,
        } = self;
        call_mix.fill(0);
        ring_mix.fill(0);
        let (mut to_call, mut to_ring) = (false, false);
        if let Some((g, c)) = ringback.as_mut() {
            to_call = true;
            if c.sounding() {
                g.fill(scratch);
                add(call_mix, scratch);
            }
        }
        if let Some(r) = ring.as_mut() {
            let mix = if *ring_device {
                to_ring = true;
                &mut *ring_mix
            } else {
                to_call = true;
                &mut *call_mix
            };
            match r {
                Ring::Builtin(g1, g2, c) => {
                    if c.sounding() {
                        g1.fill(scratch);
                        add(mix, scratch);
                        g2.fill(scratch);
                        add(mix, scratch);
                    }
                }
                Ring::File { at } => {
                    if let Some(file) = ring_file.as_ref() {
                        for s in scratch.iter_mut() {
                            *s = file[*at % file.len()];
                            *at = (*at + 1) % file.len();
                        }
                        add(mix, scratch);
                    }
                }
            }
        }
        if let Some(t) = test.as_mut() {
            let mix = if t.on_ring_device && *ring_device {
                to_ring = true;
                &mut *ring_mix
            } else {
                to_call = true;
                &mut *call_mix
            };
            t.tone.fill(scratch);
            add(mix, scratch);
            t.frames_left -= 1;
            if t.frames_left == 0 {
                *test = None;
            }
        }
        AlertFrames {
            call: to_call.then_some(&call_mix[..]),
            ring: to_ring.then_some(&ring_mix[..]),
        }
    }
}

fn add(into: &mut [i16], from: &[i16]) {
    for (o, &s) in into.iter_mut().zip(from) {
        *o = o.saturating_add(s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::media::tone::dominant_tone;

    fn loud(f: &[i16]) -> bool {
        f.iter().any(|&s| s != 0)
    }

    #[test]
    fn ringback_follows_its_cadence_and_stops() {
        let mut a = Alerts::default();
        let f = a.frame();
        assert!(f.call.is_none() && f.ring.is_none());
        a.set(true, false);
        let mut heard = Vec::new();
        let mut on_frames = 0;
        for _ in 0..250 {
            let f = a.frame();
            assert!(f.ring.is_none());
            let f = f
                .call
                .expect("ringback plays on the call output, pauses too");
            if loud(f) {
                on_frames += 1;
                if heard.len() < 4800 {
                    heard.extend_from_slice(f);
                }
            }
        }
        assert_eq!(on_frames, 50, "1 s on in 5 s");
        let (f, _) = dominant_tone(&heard, HUB_RATE, &[RINGBACK_HZ, RING_HZ.0]).unwrap();
        assert_eq!(f, RINGBACK_HZ);
        a.set(false, false);
        assert!(!a.active());
        assert!(a.frame().call.is_none());
    }

    #[test]
    fn ring_tone_is_its_own_sound() {
        let mut a = Alerts::default();
        a.set(false, true);
        let f = a.frame().call.unwrap().to_vec();
        let (hz, _) = dominant_tone(&f, HUB_RATE, &[RINGBACK_HZ, RING_HZ.0]).unwrap();
        assert_eq!(hz, RING_HZ.0);
    }

    #[test]
    fn with_a_ring_device_the_ring_goes_there_and_ringback_stays_on_the_call_output() {
        let mut a = Alerts::default();
        a.set_ring_device(true);
        a.set(true, true);
        let f = a.frame();
        let (call, ring) = (f.call.unwrap().to_vec(), f.ring.unwrap().to_vec());
        let candidates = [RINGBACK_HZ, RING_HZ.0];
        assert_eq!(
            dominant_tone(&ring, HUB_RATE, &candidates).map(|t| t.0),
            Some(RING_HZ.0)
        );
        assert_eq!(
            dominant_tone(&call, HUB_RATE, &candidates).map(|t| t.0),
            Some(RINGBACK_HZ)
        );
        a.set(true, false);
        assert!(
            a.frame().ring.is_none(),
            "the ring device rests once answered"
        );
    }

    #[test]
    fn a_ring_tone_file_loops_from_its_start_at_each_call() {
        let mut a = Alerts::default();
        // 1.5 frames of a ramp: the loop wraps inside the second frame.
        let file: Vec<i16> = (1..=(FRAME_SAMPLES as i16 * 3 / 2)).collect();
        a.set_ring_tone(Some(file.clone()));
        a.set(false, true);
        let first = a.frame().call.unwrap().to_vec();
        assert_eq!(first[..], file[..FRAME_SAMPLES]);
        let second = a.frame().call.unwrap().to_vec();
        assert_eq!(second[..FRAME_SAMPLES / 2], file[FRAME_SAMPLES..]);
        assert_eq!(second[FRAME_SAMPLES / 2..], file[..FRAME_SAMPLES / 2]);
        a.set(false, false);
        a.set(false, true);
        assert_eq!(a.frame().call.unwrap()[..], file[..FRAME_SAMPLES]);
        // Back to the built-in tone, even for the call ringing now.
        a.set_ring_tone(None);
        let f = a.frame().call.unwrap().to_vec();
        let (hz, _) = dominant_tone(&f, HUB_RATE, &[RINGBACK_HZ, RING_HZ.0]).unwrap();
        assert_eq!(hz, RING_HZ.0);
    }

    #[test]
    fn the_test_tone_plays_440_hz_for_one_second_where_asked() {
        let mut a = Alerts::default();
        a.play_test_tone(true);
        // No ring device: the call output.
        let f = a.frame().call.unwrap().to_vec();
        assert_eq!(
            dominant_tone(&f, HUB_RATE, &[TEST_TONE_HZ, RINGBACK_HZ]).map(|t| t.0),
            Some(TEST_TONE_HZ)
        );
        let mut frames = 1;
        while a.frame().call.is_some() {
            frames += 1;
        }
        assert_eq!(frames, 50);
        assert!(!a.active(), "it ends by itself");
        a.set_ring_device(true);
        a.play_test_tone(true);
        let f = a.frame();
        assert!(f.call.is_none());
        assert!(loud(f.ring.unwrap()));
        a.play_test_tone(false);
        let f = a.frame();
        assert!(f.ring.is_none());
        assert!(loud(f.call.unwrap()));
    }
}
