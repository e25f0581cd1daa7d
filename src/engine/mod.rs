//! The engine: SIP (and later media) on its own tokio runtime, driven by `Command`s, reporting `Event`s.

pub mod sip;
