//! Call progress sounds through the hub's output: ringback for an outgoing call that rings
//! without early media (425 Hz, 1 s on / 4 s off, the ETSI cadence), and a ring tone for an
//! incoming call (two tones, 1 s on / 2 s off). They are mixed with the calls' audio, so a second
//! call ringing in during a call is heard too.

use super::devices::{FRAME_SAMPLES, HUB_RATE};
use super::tone::ToneGenerator;

/// Ringback frequency (Hz).
pub const RINGBACK_HZ: f32 = 425.0;
/// Ring tone frequencies (Hz).
pub const RING_HZ: (f32, f32) = (880.0, 1320.0);

const FRAMES_PER_SECOND: u32 = 50;

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

pub struct Alerts {
    ringback: Option<(ToneGenerator, Cadence)>,
    ring: Option<(ToneGenerator, ToneGenerator, Cadence)>,
    a: Vec<i16>,
    b: Vec<i16>,
}

impl Default for Alerts {
    fn default() -> Self {
        Alerts {
            ringback: None,
            ring: None,
            a: vec![0; FRAME_SAMPLES],
            b: vec![0; FRAME_SAMPLES],
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
                self.ring = Some((
                    ToneGenerator::new(RING_HZ.0, -16.0, HUB_RATE),
                    ToneGenerator::new(RING_HZ.1, -22.0, HUB_RATE),
                    Cadence {
                        on: FRAMES_PER_SECOND,
                        period: 3 * FRAMES_PER_SECOND,
                        tick: 0,
                    },
                ))
            }
            (false, true) => self.ring = None,
            _ => {}
        }
    }

    pub fn active(&self) -> bool {
        self.ringback.is_some() || self.ring.is_some()
    }

    /// This frame's alert sound, if any is sounding, for the mixer.
    pub fn frame(&mut self) -> Option<&[i16]> {
        let mut any = false;
        self.b.fill(0);
        if let Some((g, c)) = self.ringback.as_mut()
            && c.sounding()
        {
            g.fill(&mut self.a);
            add(&mut self.b, &self.a);
            any = true;
        }
        if let Some((g1, g2, c)) = self.ring.as_mut()
            && c.sounding()
        {
            g1.fill(&mut self.a);
            add(&mut self.b, &self.a);
            g2.fill(&mut self.a);
            add(&mut self.b, &self.a);
            any = true;
        }
        any.then_some(&self.b[..])
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

    #[test]
    fn ringback_follows_its_cadence_and_stops() {
        let mut a = Alerts::default();
        assert!(a.frame().is_none());
        a.set(true, false);
        let mut heard = Vec::new();
        let mut on_frames = 0;
        for _ in 0..250 {
            if let Some(f) = a.frame() {
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
        assert!(a.frame().is_none());
    }

    #[test]
    fn ring_tone_is_its_own_sound() {
        let mut a = Alerts::default();
        a.set(false, true);
        let f = a.frame().unwrap().to_vec();
        let (hz, _) = dominant_tone(&f, HUB_RATE, &[RINGBACK_HZ, RING_HZ.0]).unwrap();
        assert_eq!(hz, RING_HZ.0);
    }
}
