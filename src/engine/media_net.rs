//! The media edge: one UDP socket per call on the port its SDP announced (symmetric RTP: we send
//! from the socket we receive on), a reader task per socket, and the 20 ms media clock, which
//! runs only while a call has media. The media work itself is `media::engine::MediaEngine`.

use super::media::engine::{MediaEngine, Rtcp};
use super::media::stream::MediaParams;
use crate::api::{CallId, CallLevel, Event};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Interval, MissedTickBehavior};

/// The media clock's period: one hub frame.
pub const FRAME: Duration = Duration::from_millis(20);

struct CallSocket {
    socket: Arc<UdpSocket>,
    reader: JoinHandle<()>,
    /// The RTCP socket on the next port (none when it could not be bound: RTCP is optional).
    rtcp: Option<(Arc<UdpSocket>, JoinHandle<()>)>,
}

pub struct MediaNet {
    pub engine: MediaEngine,
    bind_ip: IpAddr,
    sockets: HashMap<CallId, CallSocket>,
    rtp_tx: mpsc::UnboundedSender<(CallId, Vec<u8>, bool)>,
    /// Datagrams from the calls' sockets: (call, bytes, arrived on the RTCP port).
    pub rtp: mpsc::UnboundedReceiver<(CallId, Vec<u8>, bool)>,
    pub clock: Interval,
}

impl MediaNet {
    pub fn new(engine: MediaEngine, bind_ip: IpAddr) -> MediaNet {
        let (rtp_tx, rtp) = mpsc::unbounded_channel();
        let mut clock = tokio::time::interval(FRAME);
        // A late tick is made up at once: every frame is captured and sent.
        clock.set_missed_tick_behavior(MissedTickBehavior::Burst);
        MediaNet {
            engine,
            bind_ip,
            sockets: HashMap::new(),
            rtp_tx,
            rtp,
            clock,
        }
    }

    /// Starts or updates a call's media; an error is for the user (the call itself goes on).
    pub async fn set_call(&mut self, call: CallId, params: MediaParams) -> Result<(), Event> {
        let was_active = self.engine.active();
        if !self.sockets.contains_key(&call) {
            let addr = SocketAddr::new(self.bind_ip, params.local_port);
            let socket = UdpSocket::bind(addr).await.map_err(|e| Event::Error {
                message: format!("call {call}: cannot open RTP port {addr}: {e}"),
            })?;
            let socket = Arc::new(socket);
            let reader = tokio::spawn(read_rtp(call, socket.clone(), false, self.rtp_tx.clone()));
            let rtcp_addr = SocketAddr::new(self.bind_ip, params.local_port.wrapping_add(1));
            let rtcp = match UdpSocket::bind(rtcp_addr).await {
                Ok(s) => {
                    let s = Arc::new(s);
                    let r = tokio::spawn(read_rtp(call, s.clone(), true, self.rtp_tx.clone()));
                    Some((s, r))
                }
                Err(e) => {
                    tracing::warn!(call = %call, "no RTCP port {rtcp_addr}: {e}");
                    None
                }
            };
            self.sockets.insert(
                call,
                CallSocket {
                    socket,
                    reader,
                    rtcp,
                },
            );
        }
        if let Err(why) = self.engine.set_call(call, params, Instant::now()) {
            self.stop_call(call);
            return Err(Event::Error {
                message: format!("call {call}: no media: {why}"),
            });
        }
        if !was_active {
            // Start the clock afresh: the first frame goes out now (media on the first packet after
            // the answer), and no burst of ticks missed while idle.
            self.clock.reset_immediately();
        }
        self.engine.sync_devices();
        Ok(())
    }

    /// Ringback / ring tone on or off; the media clock runs while one sounds.
    pub fn set_alerts(&mut self, ringback: bool, ring: bool) {
        self.waking(|e| e.set_alerts(ringback, ring));
    }

    /// Input meter with no call on or off; the media clock runs while it is on.
    pub fn set_monitor(&mut self, on: bool) {
        self.waking(|e| e.set_monitor(on));
    }

    /// The one-second test tone, on the call output or the ring device.
    pub fn play_test_tone(&mut self, ring: bool) {
        self.waking(|e| e.play_test_tone(ring));
    }

    /// Applies `change`; a clock that was idle and has work now starts afresh at once.
    fn waking(&mut self, change: impl FnOnce(&mut MediaEngine)) {
        let was_active = self.engine.active();
        change(&mut self.engine);
        if !was_active && self.engine.active() {
            self.clock.reset_immediately();
        }
        self.engine.sync_devices();
    }

    pub fn stop_call(&mut self, call: CallId) {
        let bye = self.engine.remove_call(call, Instant::now());
        if let Some(bye) = bye {
            self.send_rtcp(bye);
        }
        self.engine.sync_devices();
        if let Some(s) = self.sockets.remove(&call) {
            s.reader.abort();
            if let Some((_, r)) = s.rtcp {
                r.abort();
            }
        }
    }

    fn send_rtcp(&self, (call, to, bytes, mux): Rtcp) {
        let Some(s) = self.sockets.get(&call) else {
            return;
        };
        let socket = match (&s.rtcp, mux) {
            (Some((rtcp, _)), false) => rtcp,
            _ => &s.socket,
        };
        if let Err(e) = socket.try_send_to(&bytes, to) {
            tracing::debug!(call = %call, "RTCP to {to} not sent: {e}");
        }
    }

    /// One media clock tick: capture, encode once, send every call's packet, play. Returns the
    /// events it produced (an output failure, meter levels).
    pub fn tick(&mut self) -> Vec<Event> {
        let tick = self.engine.tick(Instant::now());
        for (call, to, bytes) in tick.packets {
            if let Some(s) = self.sockets.get(&call) {
                // Non-blocking: a full socket buffer drops this frame rather than stall the loop.
                if let Err(e) = s.socket.try_send_to(&bytes, to) {
                    tracing::debug!(call = %call, "RTP to {to} not sent: {e}");
                }
            }
        }
        for r in tick.rtcp {
            self.send_rtcp(r);
        }
        let mut events = Vec::new();
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
}

impl Drop for MediaNet {
    fn drop(&mut self) {
        for s in self.sockets.values() {
            s.reader.abort();
            if let Some((_, r)) = &s.rtcp {
                r.abort();
            }
        }
        self.engine.close();
    }
}

async fn read_rtp(
    call: CallId,
    socket: Arc<UdpSocket>,
    rtcp: bool,
    tx: mpsc::UnboundedSender<(CallId, Vec<u8>, bool)>,
) {
    let mut buf = vec![0u8; 2048];
    loop {
        match socket.recv_from(&mut buf).await {
            Ok((n, _from)) => {
                if tx.send((call, buf[..n].to_vec(), rtcp)).is_err() {
                    return;
                }
            }
            Err(e) => tracing::debug!(call = %call, "RTP receive: {e}"),
        }
    }
}
