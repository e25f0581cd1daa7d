//! The media edge: one UDP socket per call on the port its SDP announced (symmetric RTP: we send
//! from the socket we receive on), and the 20 ms media clock, which runs only while a call has
//! media. The clock is the only thing that wakes the engine for media: each tick first reads what
//! the calls' sockets received since the last one (with the kernel's arrival times), then runs
//! the media work itself, `media::engine::MediaEngine`.

use super::media::engine::{MediaEngine, Rtcp};
use super::media::stream::MediaParams;
use super::media_clock::MediaClock;
use super::media_socket::MediaSocket;
use crate::api::{CallId, CallLevel, Event};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// The media clock's period: one hub frame.
pub const FRAME: Duration = Duration::from_millis(20);

/// Datagrams read from one socket per tick at most: a flood cannot stall the loop (the rest
/// wait for the next tick, or the kernel drops them).
const MAX_READS_PER_TICK: usize = 64;

/// The receive buffer: larger than any RTP packet on a path with a 1500-byte MTU.
const DATAGRAM_MAX: usize = 2048;

struct CallSocket {
    socket: MediaSocket,
    /// The RTCP socket on the next port (none when it could not be bound: RTCP is optional).
    rtcp: Option<MediaSocket>,
}

pub struct MediaNet {
    pub engine: MediaEngine,
    bind_ip: IpAddr,
    sockets: HashMap<CallId, CallSocket>,
    /// One buffer for every datagram read.
    buf: Box<[u8; DATAGRAM_MAX]>,
    /// Runs while the engine has media work ([`Self::sync_clock`]).
    pub clock: MediaClock,
}

impl MediaNet {
    pub fn new(engine: MediaEngine, bind_ip: IpAddr) -> MediaNet {
        MediaNet {
            engine,
            bind_ip,
            sockets: HashMap::new(),
            buf: Box::new([0; DATAGRAM_MAX]),
            clock: MediaClock::new(FRAME),
        }
    }

    /// Starts or updates a call's media; an error is a message for the user (the call itself goes
    /// on).
    pub fn set_call(&mut self, call: CallId, params: MediaParams) -> Result<(), String> {
        if !self.sockets.contains_key(&call) {
            let addr = SocketAddr::new(self.bind_ip, params.local_port);
            let socket = MediaSocket::bind(addr)
                .map_err(|e| format!("call {call}: cannot open RTP port {addr}: {e}"))?;
            let rtcp_addr = SocketAddr::new(self.bind_ip, params.local_port.wrapping_add(1));
            let rtcp = match MediaSocket::bind(rtcp_addr) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!(call = %call, "no RTCP port {rtcp_addr}: {e}");
                    None
                }
            };
            self.sockets.insert(call, CallSocket { socket, rtcp });
        }
        if let Err(why) = self.engine.set_call(call, params, Instant::now()) {
            self.stop_call(call);
            return Err(format!("call {call}: no media: {why}"));
        }
        self.engine.sync_devices();
        Ok(())
    }

    /// Ringback / ring tone on or off; the media clock runs while one sounds.
    pub fn set_alerts(&mut self, ringback: bool, ring: bool) {
        self.engine.set_alerts(ringback, ring);
        self.engine.sync_devices();
    }

    /// Input meter with no call on or off; the media clock runs while it is on.
    pub fn set_monitor(&mut self, on: bool) {
        self.engine.set_monitor(on);
        self.engine.sync_devices();
    }

    /// The one-second test tone, on the call output or the ring device.
    pub fn play_test_tone(&mut self, ring: bool) {
        self.engine.play_test_tone(ring);
        self.engine.sync_devices();
    }

    /// Runs the media clock while the engine has work (a call with media, an alert, the input
    /// meter, a test tone), stops it otherwise. A clock that starts ticks at once — the first
    /// frame goes out now (media on the first packet after the answer) — with no burst of the
    /// ticks missed while it was stopped.
    pub fn sync_clock(&mut self) {
        self.clock.set_running(self.engine.active());
    }

    pub fn stop_call(&mut self, call: CallId) {
        let bye = self.engine.remove_call(call, Instant::now());
        if let Some(bye) = bye {
            self.send_rtcp(bye);
        }
        self.engine.sync_devices();
        // Dropping the sockets closes them; what they still held is discarded.
        self.sockets.remove(&call);
    }

    fn send_rtcp(&self, (call, to, bytes, mux): Rtcp) {
        let Some(s) = self.sockets.get(&call) else {
            return;
        };
        let socket = match (&s.rtcp, mux) {
            (Some(rtcp), false) => rtcp,
            _ => &s.socket,
        };
        if let Err(e) = socket.send_to(&bytes, to) {
            tracing::debug!(call = %call, "RTCP to {to} not sent: {e}");
        }
    }

    /// One media clock tick: take in what the calls received since the last tick, then capture,
    /// encode once, send every call's packet, play. Returns the events it produced (DTMF
    /// received, an output failure, meter levels).
    pub fn tick(&mut self) -> Vec<Event> {
        self.receive();
        let mut events: Vec<Event> = self
            .engine
            .take_dtmf()
            .into_iter()
            .map(|(call, d)| Event::Dtmf {
                call,
                digit: d.key,
                duration_ms: u32::try_from(d.duration.as_millis()).unwrap_or(u32::MAX),
            })
            .collect();
        let tick = self.engine.tick(Instant::now());
        for (call, to, bytes) in tick.packets {
            if let Some(s) = self.sockets.get(&call) {
                // Non-blocking: a full socket buffer drops this frame rather than stall the loop.
                if let Err(e) = s.socket.send_to(&bytes, to) {
                    tracing::debug!(call = %call, "RTP to {to} not sent: {e}");
                }
            }
        }
        for r in tick.rtcp {
            self.send_rtcp(r);
        }
        events.extend(tick.errors.into_iter().map(|e| Event::Error {
            message: format!("audio: {e}"),
        }));
        if let Some((input_dbfs, calls)) = tick.levels {
            events.push(Event::Levels {
                input_dbfs,
                calls: calls
                    .into_iter()
                    .map(|(call, output_dbfs)| CallLevel { call, output_dbfs })
                    .collect(),
            });
        }
        events
    }

    /// Hands the engine every datagram waiting on the calls' sockets, with its arrival time.
    fn receive(&mut self) {
        let buf = &mut self.buf[..];
        for (&call, s) in &self.sockets {
            let engine = &mut self.engine;
            s.socket.drain(buf, MAX_READS_PER_TICK, |bytes, at| {
                engine.on_rtp(call, bytes, at);
            });
            if let Some(rtcp) = &s.rtcp {
                rtcp.drain(buf, MAX_READS_PER_TICK, |bytes, at| {
                    engine.on_rtcp(call, bytes, at);
                });
            }
        }
    }
}

impl Drop for MediaNet {
    fn drop(&mut self) {
        self.engine.close();
    }
}
