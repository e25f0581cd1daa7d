//! SIP, as sans-IO state machines: nothing here touches a socket or reads a clock; time is passed in.

pub mod auth;
pub mod message;
pub mod sdp;
pub mod uri;
