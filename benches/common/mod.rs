//! Helpers shared by the benches (`mod common;` in a bench file): the wire capture, /proc CPU and
//! memory, X events, and the summaries of the tables.
// Each bench compiles this module and uses only part of it.
#![allow(dead_code)]

pub mod capture;
pub mod report;
pub mod usage;
pub mod xevents;
