//! Fixtures shared by the integration tests (`mod common;` in a test file).
// Each test binary compiles this module and uses only part of it.
#![allow(dead_code)]

pub mod dbus;
pub mod dialtone;
pub mod gui;
pub mod peers;
pub mod pulse;
pub mod registrar;
