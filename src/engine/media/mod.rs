//! The media engine (issue #3): capture hub, per-call sessions, codecs, jitter buffer and
//! playout mixer.
//!
//! The first layer is pure building blocks with no threads, sockets or devices, so each is
//! tested alone with synthetic input and, where time matters, a clock passed in:
//! - [`codecs`]: G.711 µ-law/A-law and Opus behind one [`codecs::AudioCodec`] trait, with loss
//!   concealment;
//! - [`tone`]: a sine generator (a synthetic source) and a Goertzel detector (to prove audio got
//!   through in tests);
//! - [`wav`]: 16-bit PCM WAV reading (a file source) and streaming writing (a recording sink);
//! - [`jitter`]: an adaptive jitter buffer for one RTP stream;
//! - [`rtp_session`]: one call's RTP sender/receiver (RFC 3550 statistics, RFC 4733 DTMF) and RTCP;
//! - [`srtp`]: SDES-SRTP (RFC 4568 `a=crypto`, AES_CM_128_HMAC_SHA1_80/32) through rtc-srtp.

pub mod codecs;
pub mod jitter;
pub mod rtp_session;
pub mod srtp;
pub mod tone;
pub mod wav;
