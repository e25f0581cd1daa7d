//! The media edge: one UDP socket per call on the port its SDP announced (symmetric RTP: we send
//! from the socket we receive on), a reader task per socket, and the 20 ms media clock, which
//! runs only while a call has media. The media work itself is `media::engine::MediaEngine`.

use super::media::engine::MediaEngine;
use super::media::stream::MediaParams;
use crate::api::{CallId, Event};
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
}

pub struct MediaNet {
    pub engine: MediaEngine,
    bind_ip: IpAddr,
    sockets: HashMap<CallId, CallSocket>,
    rtp_tx: mpsc::UnboundedSender<(CallId, Vec<u8>)>,
    pub rtp: mpsc::UnboundedReceiver<(CallId, Vec<u8>)>,
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
            let reader = tokio::spawn(read_rtp(call, socket.clone(), self.rtp_tx.clone()));
            self.sockets.insert(call, CallSocket { socket, reader });
        }
        if let Err(why) = self.engine.set_call(call, params) {
            self.stop_call(call);
            return Err(Event::Error {
                message: format!("call {call}: no media: {why}"),
            });
        }
        if !was_active {
            // Start the clock afresh: no burst of ticks missed while idle.
            self.clock.reset();
        }
        Ok(())
    }

    pub fn stop_call(&mut self, call: CallId) {
        self.engine.remove_call(call);
        if let Some(s) = self.sockets.remove(&call) {
            s.reader.abort();
        }
    }

    /// One media clock tick: capture, encode once, send every call's packet, play.
    pub fn tick(&mut self) -> Vec<Event> {
        let (packets, errors) = self.engine.tick(Instant::now());
        for (call, to, bytes) in packets {
            if let Some(s) = self.sockets.get(&call) {
                // Non-blocking: a full socket buffer drops this frame rather than stall the loop.
                if let Err(e) = s.socket.try_send_to(&bytes, to) {
                    tracing::debug!(call = %call, "RTP to {to} not sent: {e}");
                }
            }
        }
        errors
            .into_iter()
            .map(|e| Event::Error {
                message: format!("audio: {e}"),
            })
            .collect()
    }
}

impl Drop for MediaNet {
    fn drop(&mut self) {
        for s in self.sockets.values() {
            s.reader.abort();
        }
        self.engine.close();
    }
}

async fn read_rtp(
    call: CallId,
    socket: Arc<UdpSocket>,
    tx: mpsc::UnboundedSender<(CallId, Vec<u8>)>,
) {
    let mut buf = vec![0u8; 2048];
    loop {
        match socket.recv_from(&mut buf).await {
            Ok((n, _from)) => {
                if tx.send((call, buf[..n].to_vec())).is_err() {
                    return;
                }
            }
            Err(e) => tracing::debug!(call = %call, "RTP receive: {e}"),
        }
    }
}
