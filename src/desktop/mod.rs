//! Desktop integration around the window: the `.desktop` entry, icons and scheme handlers
//! (`--install-desktop`), one instance per session, desktop notifications for incoming calls, and
//! turning `sip:`/`tel:` links into dial targets. Nothing here touches the engine; the app calls it.

pub mod assets;
pub mod dial_target;
pub mod install;
pub mod notify;
pub mod single_instance;

pub use dial_target::dial_target_from_arg;
