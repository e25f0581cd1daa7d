//! SDP offer/answer (RFC 3264) for the audio stream.
