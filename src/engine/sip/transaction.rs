//! RFC 3261 section 17 transactions: client and server, INVITE and non-INVITE.
//!
//! Sans-IO: each transaction is fed messages and the current time and returns `TxOutput`s; it
//! reports its next deadline so the runtime knows when to call `on_timer`. Over a reliable
//! transport (TCP, TLS) nothing is retransmitted and the waiting states end at once
//! (timers D, I, J and K are zero), as 17.1.1.2 and 17.2.1 require.
//!
//! State names and timer letters are the RFC's.

use super::message::{Message, Method};
use std::time::{Duration, Instant};

/// RFC 3261 timer base values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    pub t1: Duration,
    pub t2: Duration,
    pub t4: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

impl Timers {
    /// 64*T1: timers B, F, H and J.
    pub fn timeout(&self) -> Duration {
        self.t1 * 64
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Calling,
    Trying,
    Proceeding,
    Completed,
    Confirmed,
    Terminated,
}

/// What a transaction asks of its owner.
#[derive(Debug, Clone, PartialEq)]
pub enum TxOutput {
    /// Send these bytes to the transaction's peer (a request, a retransmission, an ACK, a response).
    Transmit(Vec<u8>),
    /// A response for the transaction user (client transactions only; retransmissions are absorbed).
    Response(Message),
    /// Timer B, F or H fired: no (final) response, or no ACK, in time.
    Timeout,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Invite,
    NonInvite,
}

/// A client transaction (17.1): sends a request and retransmits it until a response comes.
#[derive(Debug)]
pub struct ClientTx {
    kind: Kind,
    state: State,
    request: Vec<u8>,
    /// The request as sent, to build the ACK for a non-2xx final response.
    request_msg: Message,
    reliable: bool,
    timers: Timers,
    /// Timer A or E: next retransmission, and the current interval.
    retransmit_at: Option<Instant>,
    interval: Duration,
    /// Timer B or F: give up.
    timeout_at: Option<Instant>,
    /// Timer D or K: leave Completed.
    linger_until: Option<Instant>,
    /// The ACK we sent for a non-2xx final response, sent again on each retransmission of it.
    ack: Option<Vec<u8>>,
}

impl ClientTx {
    /// Starts the transaction; the first `Transmit` is returned with it.
    pub fn start(
        request: Message,
        reliable: bool,
        timers: Timers,
        now: Instant,
    ) -> (ClientTx, TxOutput) {
        let kind = if request.method() == Some(&Method::Invite) {
            Kind::Invite
        } else {
            Kind::NonInvite
        };
        let bytes = request.to_bytes();
        let tx = ClientTx {
            kind,
            state: if kind == Kind::Invite {
                State::Calling
            } else {
                State::Trying
            },
            request: bytes.clone(),
            request_msg: request,
            reliable,
            timers,
            retransmit_at: (!reliable).then(|| now + timers.t1),
            interval: timers.t1,
            timeout_at: Some(now + timers.timeout()),
            linger_until: None,
            ack: None,
        };
        (tx, TxOutput::Transmit(bytes))
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn request(&self) -> &Message {
        &self.request_msg
    }

    pub fn is_terminated(&self) -> bool {
        self.state == State::Terminated
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        [self.retransmit_at, self.timeout_at, self.linger_until]
            .into_iter()
            .flatten()
            .min()
    }

    /// A response matched this transaction (by branch and CSeq method).
    pub fn on_response(&mut self, resp: Message, now: Instant) -> Vec<TxOutput> {
        let Some(code) = resp.status() else {
            return Vec::new();
        };
        match (self.kind, self.state, code) {
            (_, State::Terminated, _) => Vec::new(),
            (Kind::Invite, State::Calling | State::Proceeding, 100..=199) => {
                // Timer B runs in Calling only: once the far end rings, it may ring for as long as
                // it likes; the TU ends the wait with CANCEL (17.1.1.2).
                self.state = State::Proceeding;
                self.retransmit_at = None;
                self.timeout_at = None;
                vec![TxOutput::Response(resp)]
            }
            (Kind::Invite, State::Calling | State::Proceeding, 200..=299) => {
                // The TU acknowledges 2xx itself, end to end (17.1.1.2).
                self.terminate();
                vec![TxOutput::Response(resp)]
            }
            (Kind::Invite, State::Calling | State::Proceeding, _) => {
                let ack = self.build_ack(&resp);
                self.ack = Some(ack.clone());
                self.state = State::Completed;
                self.retransmit_at = None;
                self.timeout_at = None;
                self.linger_until = Some(if self.reliable {
                    now
                } else {
                    now + Duration::from_secs(32)
                });
                vec![TxOutput::Transmit(ack), TxOutput::Response(resp)]
            }
            (Kind::Invite, State::Completed, 300..) => {
                // A retransmitted final response: ACK again, tell nobody.
                self.ack
                    .clone()
                    .map(TxOutput::Transmit)
                    .into_iter()
                    .collect()
            }
            (Kind::NonInvite, State::Trying | State::Proceeding, 100..=199) => {
                if self.state == State::Trying {
                    self.state = State::Proceeding;
                    if !self.reliable {
                        self.interval = self.timers.t2;
                        self.retransmit_at = Some(now + self.timers.t2);
                    }
                }
                vec![TxOutput::Response(resp)]
            }
            (Kind::NonInvite, State::Trying | State::Proceeding, _) => {
                self.state = State::Completed;
                self.retransmit_at = None;
                self.timeout_at = None;
                self.linger_until = Some(if self.reliable {
                    now
                } else {
                    now + self.timers.t4
                });
                vec![TxOutput::Response(resp)]
            }
            _ => Vec::new(),
        }
    }

    pub fn on_timer(&mut self, now: Instant) -> Vec<TxOutput> {
        let mut out = Vec::new();
        if self.linger_until.is_some_and(|t| now >= t) {
            self.terminate();
            return out;
        }
        if self.timeout_at.is_some_and(|t| now >= t) {
            self.terminate();
            out.push(TxOutput::Timeout);
            return out;
        }
        if let Some(at) = self.retransmit_at.filter(|t| now >= *t) {
            self.interval = match self.kind {
                Kind::Invite => self.interval * 2,
                Kind::NonInvite if self.state == State::Proceeding => self.timers.t2,
                Kind::NonInvite => (self.interval * 2).min(self.timers.t2),
            };
            self.retransmit_at = Some(at.max(now) + self.interval);
            out.push(TxOutput::Transmit(self.request.clone()));
        }
        out
    }

    /// A transport error (connection refused, ICMP): the transaction fails at once (8.1.3.1).
    pub fn on_transport_error(&mut self) -> Vec<TxOutput> {
        if self.is_terminated() {
            return Vec::new();
        }
        self.terminate();
        vec![TxOutput::Timeout]
    }

    fn terminate(&mut self) {
        self.state = State::Terminated;
        self.retransmit_at = None;
        self.timeout_at = None;
        self.linger_until = None;
    }

    /// The ACK for a non-2xx final response (17.1.1.3): same branch, the response's To.
    fn build_ack(&self, resp: &Message) -> Vec<u8> {
        let req = &self.request_msg;
        let uri = req.request_uri().unwrap_or_default().to_string();
        let mut ack = Message::request(Method::Ack, uri);
        if let Some(via) = req.header_values("Via").first() {
            ack.push_header("Via", *via);
        }
        for name in ["Route", "From", "Call-ID"] {
            for h in req.headers.iter().filter(|h| h.name == name) {
                ack.push_header(name, h.value.clone());
            }
        }
        if let Some(to) = resp.header("To") {
            ack.push_header("To", to);
        }
        if let Ok((n, _)) = req.cseq() {
            ack.push_header("CSeq", format!("{n} ACK"));
        }
        ack.push_header("Max-Forwards", "70");
        ack.to_bytes()
    }
}

/// A server transaction (17.2): absorbs retransmitted requests and retransmits its responses.
#[derive(Debug)]
pub struct ServerTx {
    kind: Kind,
    state: State,
    reliable: bool,
    timers: Timers,
    last_response: Option<Vec<u8>>,
    /// Timer G: retransmit a non-2xx final INVITE response.
    retransmit_at: Option<Instant>,
    interval: Duration,
    /// Timer H: no ACK came.
    timeout_at: Option<Instant>,
    /// Timers I and J.
    linger_until: Option<Instant>,
}

impl ServerTx {
    pub fn new(request: &Message, reliable: bool, timers: Timers) -> ServerTx {
        let kind = if request.method() == Some(&Method::Invite) {
            Kind::Invite
        } else {
            Kind::NonInvite
        };
        ServerTx {
            kind,
            state: if kind == Kind::Invite {
                State::Proceeding
            } else {
                State::Trying
            },
            reliable,
            timers,
            last_response: None,
            retransmit_at: None,
            interval: timers.t1,
            timeout_at: None,
            linger_until: None,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn is_terminated(&self) -> bool {
        self.state == State::Terminated
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        [self.retransmit_at, self.timeout_at, self.linger_until]
            .into_iter()
            .flatten()
            .min()
    }

    /// A retransmission of the request arrived: answer it with the last response, if any.
    pub fn on_retransmission(&mut self) -> Vec<TxOutput> {
        match self.state {
            State::Proceeding | State::Completed => self
                .last_response
                .clone()
                .map(TxOutput::Transmit)
                .into_iter()
                .collect(),
            _ => Vec::new(),
        }
    }

    /// An ACK for a non-2xx final response (INVITE only).
    pub fn on_ack(&mut self, now: Instant) {
        if self.kind == Kind::Invite && self.state == State::Completed {
            self.state = State::Confirmed;
            self.retransmit_at = None;
            self.timeout_at = None;
            self.linger_until = Some(if self.reliable {
                now
            } else {
                now + self.timers.t4
            });
        }
    }

    /// The TU sends a response through the transaction.
    pub fn respond(&mut self, resp: &Message, now: Instant) -> Vec<TxOutput> {
        let Some(code) = resp.status() else {
            return Vec::new();
        };
        if !matches!(self.state, State::Trying | State::Proceeding) {
            return Vec::new();
        }
        let bytes = resp.to_bytes();
        self.last_response = Some(bytes.clone());
        match (self.kind, code) {
            (_, 100..=199) => self.state = State::Proceeding,
            (Kind::Invite, 200..=299) => {
                // 2xx retransmissions are the TU's job (13.3.1.4).
                self.state = State::Terminated;
            }
            (Kind::Invite, _) => {
                self.state = State::Completed;
                if !self.reliable {
                    self.retransmit_at = Some(now + self.timers.t1);
                }
                self.timeout_at = Some(now + self.timers.timeout());
            }
            (Kind::NonInvite, _) => {
                self.state = State::Completed;
                self.linger_until = Some(if self.reliable {
                    now
                } else {
                    now + self.timers.timeout()
                });
            }
        }
        vec![TxOutput::Transmit(bytes)]
    }

    pub fn on_timer(&mut self, now: Instant) -> Vec<TxOutput> {
        let mut out = Vec::new();
        if self.linger_until.is_some_and(|t| now >= t) {
            self.state = State::Terminated;
            self.linger_until = None;
            return out;
        }
        if self.timeout_at.is_some_and(|t| now >= t) {
            self.state = State::Terminated;
            self.retransmit_at = None;
            self.timeout_at = None;
            out.push(TxOutput::Timeout);
            return out;
        }
        if let Some(at) = self.retransmit_at.filter(|t| now >= *t) {
            self.interval = (self.interval * 2).min(self.timers.t2);
            self.retransmit_at = Some(at.max(now) + self.interval);
            if let Some(r) = &self.last_response {
                out.push(TxOutput::Transmit(r.clone()));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str) -> Message {
        let raw = format!(
            "{method} sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5065;branch=z9hG4bKabc;rport\r\n\
From: <sip:carol@127.0.0.1>;tag=c1\r\nTo: <sip:bob@127.0.0.1>\r\nCall-ID: x1\r\nCSeq: 7 {method}\r\n\
Route: <sip:127.0.0.1;lr>\r\nContent-Length: 0\r\n\r\n"
        );
        Message::parse(raw.as_bytes()).unwrap()
    }

    fn response(req: &Message, code: u16) -> Message {
        let mut r = Message::response_to(req, code, "X");
        r.set_header("To", "<sip:bob@127.0.0.1>;tag=b9");
        r
    }

    fn transmits(out: &[TxOutput]) -> usize {
        out.iter()
            .filter(|o| matches!(o, TxOutput::Transmit(_)))
            .count()
    }

    /// Drives a transaction's timers from `start` to `end`, counting retransmissions.
    fn run_client(tx: &mut ClientTx, start: Instant, end: Instant) -> (usize, bool) {
        let (mut sent, mut timed_out) = (0, false);
        let mut now = start;
        while let Some(d) = tx.next_deadline() {
            if d > end {
                break;
            }
            now = now.max(d);
            let out = tx.on_timer(now);
            sent += transmits(&out);
            timed_out |= out.contains(&TxOutput::Timeout);
        }
        (sent, timed_out)
    }

    #[test]
    fn invite_over_udp_retransmits_on_timer_a_and_times_out_on_b() {
        let t0 = Instant::now();
        let (mut tx, first) = ClientTx::start(request("INVITE"), false, Timers::default(), t0);
        assert!(matches!(first, TxOutput::Transmit(_)));
        let (sent, timed_out) = run_client(&mut tx, t0, t0 + Duration::from_secs(40));
        // A fires at 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s; B at 32 s.
        assert_eq!(sent, 6);
        assert!(timed_out);
        assert!(tx.is_terminated());
    }

    #[test]
    fn non_invite_retransmits_cap_at_t2_and_time_out_on_f() {
        let t0 = Instant::now();
        let (mut tx, _) = ClientTx::start(request("REGISTER"), false, Timers::default(), t0);
        let (sent, timed_out) = run_client(&mut tx, t0, t0 + Duration::from_secs(40));
        // E: 0.5, 1.5, 3.5, 7.5, then every 4 s (11.5 … 31.5) → 10 retransmissions; F at 32 s.
        assert_eq!(sent, 10);
        assert!(timed_out);
    }

    #[test]
    fn provisional_stops_invite_retransmissions() {
        let t0 = Instant::now();
        let req = request("INVITE");
        let (mut tx, _) = ClientTx::start(req.clone(), false, Timers::default(), t0);
        let out = tx.on_response(response(&req, 180), t0 + Duration::from_millis(100));
        assert!(matches!(out[..], [TxOutput::Response(_)]));
        assert_eq!(tx.state(), State::Proceeding);
        let (sent, timed_out) = run_client(&mut tx, t0, t0 + Duration::from_secs(120));
        assert_eq!(sent, 0);
        assert!(!timed_out, "timer B does not run in Proceeding");
    }

    #[test]
    fn invite_error_response_is_acked_once_per_retransmission() {
        let t0 = Instant::now();
        let req = request("INVITE");
        let (mut tx, _) = ClientTx::start(req.clone(), false, Timers::default(), t0);
        let out = tx.on_response(response(&req, 486), t0);
        let TxOutput::Transmit(ack) = &out[0] else {
            panic!("no ACK: {out:?}")
        };
        let ack = Message::parse(ack).unwrap();
        assert_eq!(ack.method(), Some(&Method::Ack));
        assert_eq!(ack.cseq().unwrap(), (7, Method::Ack));
        assert_eq!(ack.top_via().unwrap().branch(), Some("z9hG4bKabc"));
        assert_eq!(ack.to().unwrap().tag(), Some("b9"));
        assert_eq!(ack.header("Route"), Some("<sip:127.0.0.1;lr>"));
        assert!(matches!(out[1], TxOutput::Response(_)));
        // The retransmitted 486 is ACKed again but not passed up.
        let again = tx.on_response(response(&req, 486), t0 + Duration::from_millis(500));
        assert_eq!(again.len(), 1);
        assert_eq!(transmits(&again), 1);
        // Timer D ends it after 32 s.
        tx.on_timer(t0 + Duration::from_secs(33));
        assert!(tx.is_terminated());
    }

    #[test]
    fn reliable_transport_never_retransmits_and_ends_completed_at_once() {
        let t0 = Instant::now();
        let req = request("BYE");
        let (mut tx, _) = ClientTx::start(req.clone(), true, Timers::default(), t0);
        assert_eq!(tx.next_deadline(), Some(t0 + Duration::from_secs(32)));
        tx.on_response(response(&req, 200), t0);
        tx.on_timer(t0);
        assert!(tx.is_terminated());
    }

    #[test]
    fn invite_2xx_goes_up_and_ends_the_transaction() {
        let t0 = Instant::now();
        let req = request("INVITE");
        let (mut tx, _) = ClientTx::start(req.clone(), false, Timers::default(), t0);
        let out = tx.on_response(response(&req, 200), t0);
        assert!(matches!(out[..], [TxOutput::Response(_)]));
        assert!(tx.is_terminated());
    }

    #[test]
    fn server_invite_retransmits_error_on_g_until_ack() {
        let t0 = Instant::now();
        let req = request("INVITE");
        let mut tx = ServerTx::new(&req, false, Timers::default());
        let out = tx.respond(&response(&req, 486), t0);
        assert_eq!(transmits(&out), 1);
        assert_eq!(transmits(&tx.on_timer(t0 + Duration::from_millis(500))), 1);
        assert_eq!(transmits(&tx.on_timer(t0 + Duration::from_millis(1500))), 1);
        assert_eq!(transmits(&tx.on_retransmission()), 1);
        tx.on_ack(t0 + Duration::from_secs(2));
        assert_eq!(tx.state(), State::Confirmed);
        assert!(tx.on_timer(t0 + Duration::from_millis(3500)).is_empty());
        tx.on_timer(t0 + Duration::from_secs(8));
        assert!(tx.is_terminated());
    }

    #[test]
    fn server_invite_without_ack_times_out_on_h() {
        let t0 = Instant::now();
        let req = request("INVITE");
        let mut tx = ServerTx::new(&req, false, Timers::default());
        tx.respond(&response(&req, 603), t0);
        let mut timed_out = false;
        while let Some(d) = tx.next_deadline() {
            timed_out |= tx.on_timer(d).contains(&TxOutput::Timeout);
        }
        assert!(timed_out);
        assert!(tx.is_terminated());
    }

    #[test]
    fn server_non_invite_answers_retransmissions_with_the_last_response() {
        let t0 = Instant::now();
        let req = request("OPTIONS");
        let mut tx = ServerTx::new(&req, false, Timers::default());
        assert!(tx.on_retransmission().is_empty());
        tx.respond(&response(&req, 200), t0);
        assert_eq!(transmits(&tx.on_retransmission()), 1);
        tx.on_timer(t0 + Duration::from_secs(32));
        assert!(tx.is_terminated());
    }
}
