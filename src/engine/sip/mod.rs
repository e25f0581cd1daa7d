//! SIP, as sans-IO state machines: nothing here touches a socket or reads a clock; time is passed in.

pub mod auth;
pub mod call;
pub mod client_auth;
pub mod dialog;
pub mod message;
pub mod registration;
pub mod sdp;
pub mod transaction;
pub mod transport;
pub mod ua;
#[cfg(test)]
mod ua_tests;
pub mod uri;
