//! The built-in echo service behind the app's "Echo test": a second engine in the same process
//! that answers every call at once and plays back what it hears, over real SIP and RTP on
//! loopback. A new user calls it (no account needed) and hears their own microphone about a
//! jitter buffer and a frame later; the whole path — capture hub, codec, RTP, jitter buffer,
//! playout — is the one real calls take.
//!
//! The engine is an ordinary [`Engine`]: no accounts, SIP on `127.0.0.1` on a port the OS picks,
//! auto-answer, no audio processing, and the `loopback` device pair as input and output (what
//! its mixer plays is what its hub captures on the next tick). Several callers at once each hear
//! the mix of all of them. Dropping the service stops its engine.

use crate::api::Event;
use crate::engine::{Engine, EngineError};
use crate::store::settings::Settings;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};

/// RTP ports the echo engine may use: 20 calls (RTP and RTCP each).
const RTP_SPAN: u16 = 40;

/// A running echo service; dropping it stops it.
pub struct EchoService {
    engine: Option<Engine>,
    uri: String,
    /// Reads the engine's events (it logs its errors) until the engine stops.
    events: Option<std::thread::JoinHandle<()>>,
}

impl EchoService {
    /// Starts the echo engine on loopback; Err if it cannot bind or start.
    pub fn spawn() -> Result<EchoService, EngineError> {
        let settings = Settings {
            accounts: Vec::new(),
            listen: "127.0.0.1:0".into(),
            rtp_ports: free_rtp_range()?,
            auto_answer: true,
            user_agent: format!("Dialtone-echo/{}", env!("CARGO_PKG_VERSION")),
            audio_in: "loopback".into(),
            audio_out: "loopback".into(),
            audio_processing: false,
            ..Settings::default()
        };
        let (engine, mut rx) = Engine::spawn(settings, None)?;
        let uri = format!("sip:echo@{}", engine.local_addr());
        let events = std::thread::Builder::new()
            .name("dialtone-echo-events".into())
            .spawn(move || {
                while let Some(e) = rx.blocking_recv() {
                    match e {
                        Event::Error { message } => tracing::warn!("echo service: {message}"),
                        Event::Stopped => break,
                        other => tracing::debug!("echo service: {other:?}"),
                    }
                }
            })
            .map_err(|e| EngineError::Thread(e.to_string()))?;
        tracing::info!("echo service at {uri}");
        Ok(EchoService {
            engine: Some(engine),
            uri,
            events: Some(events),
        })
    }

    /// The address to call, e.g. `sip:echo@127.0.0.1:41234`.
    pub fn uri(&self) -> String {
        self.uri.clone()
    }
}

impl Drop for EchoService {
    fn drop(&mut self) {
        if let Some(engine) = self.engine.take() {
            engine.shutdown();
        }
        if let Some(t) = self.events.take() {
            let _ = t.join();
        }
    }
}

/// An RTP port range on 127.0.0.1 that is free now and out of the way: above the system's
/// ephemeral ports (which the OS hands out for port 0 and outgoing connections) when there is
/// room there, and never the default range of the user's own engine (20000-20999). Every port
/// is checked by binding it; a range found busy is skipped.
fn free_rtp_range() -> Result<String, EngineError> {
    let (lo, hi) = quiet_ports();
    let slots = (hi - lo + 1) / RTP_SPAN;
    for _ in 0..64 {
        let first = lo + (rand::random::<u16>() % slots) * RTP_SPAN;
        let last = first + RTP_SPAN - 1;
        let free = (first..=last)
            .all(|p| UdpSocket::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, p))).is_ok());
        if free {
            return Ok(format!("{first}-{last}"));
        }
    }
    Err(EngineError::Settings(
        "echo service: no free RTP ports on 127.0.0.1".into(),
    ))
}

/// Where to look for echo RTP ports: even-aligned, at least a few ranges wide.
fn quiet_ports() -> (u16, u16) {
    let ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|n| n.parse::<u16>().ok());
            Some((it.next()??, it.next()??))
        })
        .unwrap_or((32768, 60999));
    let above = (ephemeral.1.saturating_add(1).max(21000), u16::MAX - 1);
    let below = (21000, ephemeral.0.saturating_sub(1));
    let span = |(a, b): (u16, u16)| b.saturating_sub(a);
    let (a, b) = if span(above) >= 4 * RTP_SPAN {
        above
    } else if span(below) >= 4 * RTP_SPAN {
        below
    } else {
        (21000, u16::MAX - 1)
    };
    (a + a % 2, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_rtp_ranges_are_even_free_and_clear_of_the_default_range() {
        let (lo, hi) = quiet_ports();
        assert_eq!(lo % 2, 0);
        assert!(lo >= 21000 && hi > lo + 4 * RTP_SPAN, "{lo}-{hi}");
        let r = free_rtp_range().unwrap();
        let (a, b) = r.split_once('-').unwrap();
        let (a, b): (u16, u16) = (a.parse().unwrap(), b.parse().unwrap());
        assert_eq!((a % 2, b - a + 1), (0, RTP_SPAN), "{r}");
        assert!(a >= lo && b <= hi, "{r} in {lo}-{hi}");
    }
}
