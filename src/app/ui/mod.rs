//! One file per window or page. Each reads the app's model and sends commands; none keeps
//! protocol state.

pub mod call_window;
pub mod contacts;
pub mod incoming;
pub mod keypad;
pub mod main_window;
pub mod recents;
pub mod settings;
