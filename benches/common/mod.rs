//! Helpers shared by the benches (`mod common;` in a bench file, next to the test fixtures as
//! `mod fixtures;`): the wire capture, /proc CPU and memory, X events, the summaries of the tables,
//! and the loopback set-up and user agents of the SIP benches.
// Each bench compiles this module and uses only part of it.
#![allow(dead_code)]

pub mod capture;
pub mod report;
pub mod testbed;
pub mod ua;
pub mod usage;
pub mod xevents;
