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
//!
//! On top of them, the first wired slice (plain RTP/AVP, synthetic devices):
//! - [`devices`]: sources and sinks by name (`tone:440`, `wav:FILE`, `silence`; `null`, `wav:FILE`);
//! - [`hub`]: the capture hub — the input opened once, one capture and one encode per codec per
//!   20 ms, the payload fanned out to every call;
//! - [`stream`]: one call's RTP sender/receiver, jitter buffer and decoder;
//! - [`playout`]: the mixer and the output, opened once; [`alerts`]: ringback, ring tone (on a
//!   ring device of its own if one is set) and the test tone;
//! - [`engine`]: all of it, driven by the runtime with the time passed in;
//! - [`resample`]: rate conversion (windowed sinc, low delay) between the hub's 48 kHz
//!   and codec, device and file rates: [`polyphase`] for whole ratios, rubato for the rest;
//! - [`hotplug`]: what to do when devices come, go or fail (sans-IO; `engine::device_watch` is
//!   its I/O side);
//! - [`cpal_device`]: real microphones and speakers (cpal, its PulseAudio host on Linux) behind
//!   lock-free rings, for `default` and `device:NAME`;
//! - [`pulse_events`]: the sound server's change notifications, which wake the hot-plug watcher.

pub mod alerts;
pub mod apm;
pub mod codecs;
pub mod cpal_device;
pub mod devices;
pub mod engine;
pub mod hotplug;
pub mod hub;
pub mod jitter;
pub mod playout;
pub mod polyphase;
pub mod pulse_events;
pub mod resample;
pub mod rtp_session;
pub mod srtp;
pub mod stream;
pub mod tone;
pub mod wav;
