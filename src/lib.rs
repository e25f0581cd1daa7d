//! Dialtone: a SIP softphone. The engine (SIP and media on tokio) and its front-ends share only
//! the types in [`api`]. See README.md and the design notes in each module.

pub mod api;
pub mod app;
pub mod desktop;
pub mod echo;
pub mod engine;
pub mod headless;
pub mod store;
