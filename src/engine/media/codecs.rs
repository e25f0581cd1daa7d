//! Audio codecs behind one small trait: G.711 µ-law and A-law (our own implementation of ITU-T
//! G.711) and Opus (libopus through the `opus` crate).
//!
//! Design choices:
//! - The PCM side is always mono `i16` at the codec's clock rate, 20 ms per frame: the capture hub
//!   is mono, and Opus is encoded mono even though its rtpmap says `/2` (RFC 7587 allows it; the
//!   decoder folds a stereo packet to mono).
//! - `encode`/`decode` *append* to a caller-owned `Vec`, so one buffer can be reused frame after
//!   frame with no allocation in steady state.
//! - Loss handling is in the codec because only the codec knows how: G.711 repeats the last frame
//!   with a fade (silence after [`G711_CONCEAL_FRAMES`]), Opus runs its own PLC and can rebuild a
//!   lost frame from the in-band FEC carried by the next packet ([`AudioCodec::decode_fec`]).

use crate::engine::sip::sdp::CodecSpec;

/// Why a frame could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// libopus refused the frame (wrong frame size, corrupt packet...).
    #[error("opus: {0}")]
    Opus(#[from] opus::Error),
}

/// One direction-agnostic codec instance: an encoder and a decoder for one RTP stream.
pub trait AudioCodec {
    /// The RTP encoding name, spelt as in SDP (`"PCMU"`, `"PCMA"`, `"opus"`).
    fn name(&self) -> &'static str;
    /// Sample rate of the PCM taken and given (and the RTP clock rate).
    fn clock_rate(&self) -> u32;
    /// Channels of the PCM taken and given: always 1 (see the module docs).
    fn channels(&self) -> u8;
    /// Samples in one 20 ms frame.
    fn frame_samples(&self) -> usize;
    /// Encodes one frame of PCM, appending the payload to `out`.
    fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>) -> Result<(), CodecError>;
    /// Decodes one payload, appending the PCM to `out`.
    fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) -> Result<(), CodecError>;
    /// Appends one frame standing in for a lost packet.
    fn conceal(&mut self, out: &mut Vec<i16>);
    /// Rebuilds the frame lost just before `next_payload` from the FEC data it carries, appending
    /// it to `out`. Returns `false` (and appends nothing) when the codec has no FEC; the caller
    /// then uses [`AudioCodec::conceal`].
    fn decode_fec(&mut self, next_payload: &[u8], out: &mut Vec<i16>) -> Result<bool, CodecError> {
        let _ = (next_payload, out);
        Ok(false)
    }
}

/// Builds the codec for a negotiated payload format, keyed by name (case-insensitive) and clock.
/// `None` for anything we cannot encode (telephone-event, unknown names, other rates) or when
/// libopus fails to initialise.
pub fn codec_for(spec: &CodecSpec) -> Option<Box<dyn AudioCodec + Send>> {
    let name = spec.name.to_ascii_lowercase();
    match (name.as_str(), spec.clock) {
        ("pcmu", 8000) => Some(Box::new(G711::new(G711Law::MuLaw))),
        ("pcma", 8000) => Some(Box::new(G711::new(G711Law::ALaw))),
        ("opus", 48000) => match OpusCodec::new() {
            Ok(c) => Some(Box::new(c)),
            Err(e) => {
                tracing::warn!("cannot create an opus codec: {e}");
                None
            }
        },
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// G.711

/// µ-law bias on the 16-bit scale (33 on the 14-bit scale of the standard, shifted by 2).
const MU_BIAS: i32 = 0x84;
/// Largest magnitude µ-law can represent once biased into 15 bits.
const MU_CLIP: i32 = 0x7FFF - MU_BIAS;

/// Encodes one linear sample to µ-law (G.711 table 2): sign, 3-bit segment (the position of
/// the top bit of the biased magnitude), 4-bit mantissa, all bits inverted.
pub fn linear_to_ulaw(sample: i16) -> u8 {
    let s = i32::from(sample);
    let (mask, magnitude) = if s < 0 { (0x7F, -s) } else { (0xFF, s) };
    let biased = magnitude.min(MU_CLIP) + MU_BIAS; // 0x84..=0x7FFF: top bit is 7..=14
    let segment = (31 - biased.leading_zeros() as i32) - 7;
    let mantissa = (biased >> (segment + 3)) & 0x0F;
    (((segment << 4) | mantissa) as u8) ^ mask
}

/// Decodes one µ-law byte to a linear sample (the middle of its quantisation step).
pub fn ulaw_to_linear(code: u8) -> i16 {
    ULAW_TABLE[code as usize]
}

const fn ulaw_decode(code: u8) -> i16 {
    let u = !code;
    let segment = ((u >> 4) & 0x07) as i32;
    let mantissa = (u & 0x0F) as i32;
    let magnitude = (((mantissa << 3) + MU_BIAS) << segment) - MU_BIAS;
    if u & 0x80 != 0 {
        -magnitude as i16
    } else {
        magnitude as i16
    }
}

/// Encodes one linear sample to A-law (G.711 table 1): the 13-bit magnitude is split in a
/// segment and a mantissa (segments 0 and 1 share one step size), then the even bits are
/// inverted (XOR 0x55) and the sign bit set for positive values.
pub fn linear_to_alaw(sample: i16) -> u8 {
    let s = i32::from(sample) >> 3; // 13-bit
    // One's complement for negatives keeps the two halves symmetric (-1 -> 0, like +0).
    let (mask, magnitude) = if s >= 0 { (0xD5, s) } else { (0x55, -s - 1) };
    let magnitude = magnitude.min(0x0FFF);
    let code = if magnitude < 32 {
        magnitude >> 1
    } else {
        let segment = (31 - magnitude.leading_zeros() as i32) - 4; // 1..=7
        (segment << 4) | ((magnitude >> segment) & 0x0F)
    };
    (code as u8) ^ mask
}

/// Decodes one A-law byte to a linear sample (the middle of its quantisation step).
pub fn alaw_to_linear(code: u8) -> i16 {
    ALAW_TABLE[code as usize]
}

const fn alaw_decode(code: u8) -> i16 {
    let a = code ^ 0x55;
    let segment = ((a >> 4) & 0x07) as i32;
    let mantissa = (a & 0x0F) as i32;
    let magnitude = if segment == 0 {
        (mantissa << 4) + 8
    } else {
        ((mantissa << 4) + 0x108) << (segment - 1)
    };
    if a & 0x80 != 0 {
        magnitude as i16
    } else {
        -magnitude as i16
    }
}

const fn decode_table(alaw: bool) -> [i16; 256] {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = if alaw {
            alaw_decode(i as u8)
        } else {
            ulaw_decode(i as u8)
        };
        i += 1;
    }
    t
}

static ULAW_TABLE: [i16; 256] = decode_table(false);
static ALAW_TABLE: [i16; 256] = decode_table(true);

/// Which G.711 companding law.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum G711Law {
    /// µ-law, `PCMU` (North America, Japan).
    MuLaw,
    /// A-law, `PCMA` (everywhere else).
    ALaw,
}

/// Frames of faded repetition G.711 concealment gives before going silent (60 ms).
pub const G711_CONCEAL_FRAMES: u32 = 3;

/// G.711 at 8 kHz, 160 samples per 20 ms frame. Stateless apart from the concealment memory.
#[derive(Debug, Clone)]
pub struct G711 {
    law: G711Law,
    /// The last frame decoded, replayed (faded) for lost frames.
    last: Vec<i16>,
    /// Consecutive frames concealed since the last real one.
    concealed: u32,
}

impl G711 {
    /// Samples in a 20 ms frame at 8 kHz.
    pub const FRAME: usize = 160;

    pub fn new(law: G711Law) -> Self {
        Self {
            law,
            last: Vec::with_capacity(Self::FRAME),
            concealed: 0,
        }
    }
}

impl AudioCodec for G711 {
    fn name(&self) -> &'static str {
        match self.law {
            G711Law::MuLaw => "PCMU",
            G711Law::ALaw => "PCMA",
        }
    }

    fn clock_rate(&self) -> u32 {
        8000
    }

    fn channels(&self) -> u8 {
        1
    }

    fn frame_samples(&self) -> usize {
        Self::FRAME
    }

    fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>) -> Result<(), CodecError> {
        let f = match self.law {
            G711Law::MuLaw => linear_to_ulaw,
            G711Law::ALaw => linear_to_alaw,
        };
        out.extend(pcm.iter().map(|&s| f(s)));
        Ok(())
    }

    fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) -> Result<(), CodecError> {
        let table = match self.law {
            G711Law::MuLaw => &ULAW_TABLE,
            G711Law::ALaw => &ALAW_TABLE,
        };
        let start = out.len();
        out.extend(payload.iter().map(|&b| table[b as usize]));
        self.last.clear();
        self.last.extend_from_slice(&out[start..]);
        self.concealed = 0;
        Ok(())
    }

    /// Repeats the last frame, fading linearly to zero over [`G711_CONCEAL_FRAMES`] frames (the
    /// ramp runs across samples so there is no step between frames); silence after that.
    fn conceal(&mut self, out: &mut Vec<i16>) {
        let n = G711_CONCEAL_FRAMES;
        if self.concealed >= n || self.last.is_empty() {
            out.extend(std::iter::repeat_n(0, Self::FRAME));
            self.concealed = self.concealed.saturating_add(1);
            return;
        }
        let len = self.last.len() as f32;
        let total = n as f32 * len;
        let done = self.concealed as f32 * len;
        out.extend(self.last.iter().enumerate().map(|(i, &s)| {
            let gain = 1.0 - (done + i as f32) / total;
            (f32::from(s) * gain) as i16
        }));
        self.concealed += 1;
    }
}

// ---------------------------------------------------------------------------------------------
// Opus

/// Opus at 48 kHz mono, 20 ms frames, VoIP mode, in-band FEC on.
pub struct OpusCodec {
    encoder: opus::Encoder,
    decoder: opus::Decoder,
}

impl OpusCodec {
    /// Samples in a 20 ms frame at 48 kHz.
    pub const FRAME: usize = 960;
    /// Largest frame a packet may decode to (120 ms at 48 kHz).
    const MAX_DECODED: usize = 5760;
    /// Worst case for one encoded 20 ms frame (RFC 6716: 1275 bytes per frame).
    const MAX_PACKET: usize = 1275;
    /// Loss rate the encoder plans for: FEC is only emitted when this is above zero.
    const EXPECTED_LOSS_PERCENT: i32 = 10;

    pub fn new() -> Result<Self, CodecError> {
        let mut encoder = opus::Encoder::new(48000, opus::Channels::Mono, opus::Application::Voip)?;
        encoder.set_inband_fec(true)?;
        encoder.set_packet_loss_perc(Self::EXPECTED_LOSS_PERCENT)?;
        let decoder = opus::Decoder::new(48000, opus::Channels::Mono)?;
        Ok(Self { encoder, decoder })
    }

    /// Runs the decoder into `out` (grown then truncated, so no scratch buffer is needed).
    fn decode_into(
        &mut self,
        payload: &[u8],
        max: usize,
        fec: bool,
        out: &mut Vec<i16>,
    ) -> Result<(), CodecError> {
        let start = out.len();
        out.resize(start + max, 0);
        match self.decoder.decode(payload, &mut out[start..], fec) {
            Ok(n) => {
                out.truncate(start + n);
                Ok(())
            }
            Err(e) => {
                out.truncate(start);
                Err(e.into())
            }
        }
    }
}

impl AudioCodec for OpusCodec {
    fn name(&self) -> &'static str {
        "opus"
    }

    fn clock_rate(&self) -> u32 {
        48000
    }

    fn channels(&self) -> u8 {
        1
    }

    fn frame_samples(&self) -> usize {
        Self::FRAME
    }

    fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>) -> Result<(), CodecError> {
        let start = out.len();
        out.resize(start + Self::MAX_PACKET, 0);
        match self.encoder.encode(pcm, &mut out[start..]) {
            Ok(n) => {
                out.truncate(start + n);
                Ok(())
            }
            Err(e) => {
                out.truncate(start);
                Err(e.into())
            }
        }
    }

    fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) -> Result<(), CodecError> {
        self.decode_into(payload, Self::MAX_DECODED, false, out)
    }

    /// libopus PLC: decoding "no packet" extrapolates one frame from the decoder state.
    fn conceal(&mut self, out: &mut Vec<i16>) {
        if self.decode_into(&[], Self::FRAME, false, out).is_err() {
            out.extend(std::iter::repeat_n(0, Self::FRAME));
        }
    }

    /// The frame size asked for must be the lost duration (one 20 ms frame); libopus falls back
    /// to PLC itself when the packet carries no FEC.
    fn decode_fec(&mut self, next_payload: &[u8], out: &mut Vec<i16>) -> Result<bool, CodecError> {
        self.decode_into(next_payload, Self::FRAME, true, out)?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(rate: f32, freq: f32, amp: f32, n: usize, offset: usize) -> Vec<i16> {
        (0..n)
            .map(|i| {
                let t = (i + offset) as f32 / rate;
                (amp * (2.0 * std::f32::consts::PI * freq * t).sin()) as i16
            })
            .collect()
    }

    #[test]
    fn ulaw_known_values() {
        assert_eq!(linear_to_ulaw(0), 0xFF);
        assert_eq!(ulaw_to_linear(0xFF), 0);
        assert_eq!(ulaw_to_linear(0x7F), 0); // negative zero
        assert_eq!(linear_to_ulaw(i16::MAX), 0x80);
        assert_eq!(linear_to_ulaw(i16::MIN), 0x00);
        assert_eq!(ulaw_to_linear(0x80), 32124);
        assert_eq!(ulaw_to_linear(0x00), -32124);
        assert_eq!(linear_to_ulaw(-1), 0x7F);
    }

    #[test]
    fn alaw_known_values() {
        assert_eq!(linear_to_alaw(0), 0xD5);
        assert_eq!(alaw_to_linear(0xD5), 8);
        assert_eq!(alaw_to_linear(0x55), -8);
        assert_eq!(linear_to_alaw(-1), 0x55);
        assert_eq!(linear_to_alaw(i16::MAX), 0xAA);
        assert_eq!(linear_to_alaw(i16::MIN), 0x2A);
        assert_eq!(alaw_to_linear(0xAA), 32256);
        assert_eq!(alaw_to_linear(0x2A), -32256);
    }

    #[test]
    fn ulaw_round_trip_error_is_within_half_a_step_for_every_i16() {
        for x in i16::MIN..=i16::MAX {
            let y = ulaw_to_linear(linear_to_ulaw(x));
            let err = (i32::from(x) - i32::from(y)).abs();
            let mag = i32::from(x).abs();
            // Half a step in the segment of the biased magnitude is at most (mag + bias) / 32;
            // above the clip point the error is the distance to the largest code.
            let bound = if mag > MU_CLIP {
                mag - 32124
            } else {
                (mag + MU_BIAS) / 32 + 1
            };
            assert!(err <= bound, "x={x} y={y} err={err} bound={bound}");
            // Same sign (or zero).
            assert!(i32::from(x) * i32::from(y) >= 0, "x={x} y={y}");
        }
    }

    #[test]
    fn alaw_round_trip_error_is_within_half_a_step_for_every_i16() {
        for x in i16::MIN..=i16::MAX {
            let y = alaw_to_linear(linear_to_alaw(x));
            let err = (i32::from(x) - i32::from(y)).abs();
            let mag = i32::from(x).abs();
            // Segments 0 and 1 have a 16-step on the 16-bit scale (half: 8, plus the 3 bits
            // dropped going to 13 bits); above, half a step is at most mag / 32.
            let bound = (mag / 32).max(8) + 8;
            assert!(err <= bound, "x={x} y={y} err={err} bound={bound}");
        }
    }

    #[test]
    fn g711_decode_is_monotonic_in_code_order() {
        // Positive µ-law codes 0xFF down to 0x80 rise; A-law codes rise with the XORed value.
        let mu: Vec<i16> = (0x80..=0xFFu8).rev().map(ulaw_to_linear).collect();
        assert!(mu.windows(2).all(|w| w[0] < w[1]));
        let a: Vec<i16> = (0x80..=0xFFu8).map(|c| alaw_to_linear(c ^ 0x55)).collect();
        assert!(a.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn g711_codec_encodes_a_frame_and_appends() {
        for law in [G711Law::MuLaw, G711Law::ALaw] {
            let mut c = G711::new(law);
            let pcm = sine(8000.0, 1000.0, 10000.0, 160, 0);
            let mut bytes = vec![0xAB];
            c.encode(&pcm, &mut bytes).unwrap();
            assert_eq!(bytes.len(), 161);
            assert_eq!(bytes[0], 0xAB);
            let mut out = vec![7];
            c.decode(&bytes[1..], &mut out).unwrap();
            assert_eq!(out.len(), 161);
            for (a, b) in pcm.iter().zip(&out[1..]) {
                assert!((i32::from(*a) - i32::from(*b)).abs() <= 10000 / 32 + 16);
            }
        }
    }

    #[test]
    fn g711_concealment_fades_the_last_frame_then_goes_silent() {
        let mut c = G711::new(G711Law::MuLaw);
        let pcm = vec![8000i16; 160];
        let mut bytes = Vec::new();
        c.encode(&pcm, &mut bytes).unwrap();
        let mut out = Vec::new();
        c.decode(&bytes, &mut out).unwrap();
        let level = out[0];
        let mut frames = Vec::new();
        for _ in 0..5 {
            let mut f = Vec::new();
            c.conceal(&mut f);
            assert_eq!(f.len(), 160);
            frames.push(f);
        }
        assert!(frames[0][0] >= level - 1 && frames[0][0] > 0);
        // Fading: strictly decreasing from frame to frame, no jump at the frame boundaries.
        for w in frames.concat().windows(2).take(3 * 160 - 1) {
            assert!(w[1] <= w[0]);
        }
        assert!(frames[2][159] < level / 100 + 1);
        assert!(frames[3].iter().chain(&frames[4]).all(|&s| s == 0));
        // A real frame resets the concealment.
        c.decode(&bytes, &mut out).unwrap();
        let mut f = Vec::new();
        c.conceal(&mut f);
        assert!(f[0] > level / 2);
    }

    #[test]
    fn g711_concealment_before_any_frame_is_silence() {
        let mut c = G711::new(G711Law::ALaw);
        let mut f = Vec::new();
        c.conceal(&mut f);
        assert_eq!(f, vec![0; 160]);
    }

    #[test]
    fn factory_picks_codecs_by_name_and_clock() {
        let mu = codec_for(&CodecSpec::pcmu()).unwrap();
        assert_eq!(
            (mu.name(), mu.clock_rate(), mu.frame_samples()),
            ("PCMU", 8000, 160)
        );
        let a = codec_for(&CodecSpec::pcma()).unwrap();
        assert_eq!(a.name(), "PCMA");
        let o = codec_for(&CodecSpec::opus()).unwrap();
        assert_eq!(
            (o.name(), o.clock_rate(), o.channels(), o.frame_samples()),
            ("opus", 48000, 1, 960)
        );
        let mut upper = CodecSpec::opus();
        upper.name = "OPUS".into();
        assert!(codec_for(&upper).is_some());
        assert!(codec_for(&CodecSpec::telephone_event(101, 8000)).is_none());
        let mut odd = CodecSpec::pcmu();
        odd.clock = 16000;
        assert!(codec_for(&odd).is_none());
    }

    #[test]
    fn codecs_are_send() {
        fn is_send<T: Send>() {}
        is_send::<G711>();
        is_send::<OpusCodec>();
    }

    fn rms(x: &[i16]) -> f64 {
        (x.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / x.len() as f64).sqrt()
    }

    #[test]
    fn opus_round_trip_keeps_a_tone() {
        let mut c = OpusCodec::new().unwrap();
        let mut out = Vec::new();
        let mut packet = Vec::new();
        for k in 0..25 {
            let pcm = sine(48000.0, 440.0, 10000.0, 960, k * 960);
            packet.clear();
            c.encode(&pcm, &mut packet).unwrap();
            assert!(!packet.is_empty() && packet.len() < 400);
            c.decode(&packet, &mut out).unwrap();
        }
        assert_eq!(out.len(), 25 * 960);
        // Past the codec's start-up, the level is that of the input sine (rms = amp / sqrt 2).
        let level = rms(&out[10 * 960..]);
        assert!((level - 10000.0 / 2f64.sqrt()).abs() < 1000.0, "{level}");
    }

    #[test]
    fn opus_rejects_a_frame_of_the_wrong_size_and_a_corrupt_packet() {
        let mut c = OpusCodec::new().unwrap();
        let mut out = vec![1u8];
        assert!(c.encode(&[0; 100], &mut out).is_err());
        assert_eq!(out, vec![1]);
        let mut pcm = vec![5i16];
        // TOC byte announcing a code-3 packet with no frame count byte: invalid.
        assert!(c.decode(&[0xFF], &mut pcm).is_err());
        assert_eq!(pcm, vec![5]);
    }

    #[test]
    fn opus_recovers_a_lost_frame_from_fec_and_conceals_without_it() {
        let mut c = OpusCodec::new().unwrap();
        let mut packets = Vec::new();
        for k in 0..30 {
            let pcm = sine(48000.0, 440.0, 10000.0, 960, k * 960);
            let mut p = Vec::new();
            c.encode(&pcm, &mut p).unwrap();
            packets.push(p);
        }
        let mut out = Vec::new();
        for p in &packets[..20] {
            c.decode(p, &mut out).unwrap();
        }
        // Packet 20 lost: rebuild it from packet 21's FEC, then decode 21 normally.
        let mut fec = Vec::new();
        assert!(c.decode_fec(&packets[21], &mut fec).unwrap());
        assert_eq!(fec.len(), 960);
        assert!(rms(&fec) > 3000.0, "{}", rms(&fec));
        c.decode(&packets[21], &mut out).unwrap();
        // Packet 22 lost with nothing after it: PLC still gives a full frame of sound.
        let mut plc = Vec::new();
        c.conceal(&mut plc);
        assert_eq!(plc.len(), 960);
        assert!(rms(&plc) > 1000.0, "{}", rms(&plc));
    }
}
