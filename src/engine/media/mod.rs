//! The media engine (issue #3): capture hub, per-call sessions, codecs, jitter buffer and
//! playout mixer.
//!
//! This first layer is pure building blocks with no threads, sockets or devices, so each is
//! tested alone with synthetic input and, where time matters, a clock passed in:
//! - [`codecs`]: G.711 µ-law/A-law and Opus behind one [`codecs::AudioCodec`] trait, with loss
//!   concealment;
//! - [`tone`]: a sine generator (a synthetic source) and a Goertzel detector (to prove audio got
//!   through in tests);
//! - [`wav`]: 16-bit PCM WAV reading (a file source) and streaming writing (a recording sink);
//! - [`jitter`]: an adaptive jitter buffer for one RTP stream.

pub mod codecs;
pub mod jitter;
pub mod tone;
pub mod wav;
