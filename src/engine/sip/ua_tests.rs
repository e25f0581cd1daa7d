//! Whole SIP flows between user agents on a virtual network with a fake clock (the str0m
//! `progress` idea): no sockets, no sleeping. Every test is named by its scenario and checks both
//! what the UI sees (events) and what went over the wire (the packet log).
//!
//! The harness: `Net` holds user agents keyed by their `local` address and a tiny sans-IO test
//! registrar; `step` delivers one packet in flight (zero latency, FIFO) or, when nothing is in
//! flight, moves the clock to the earliest `next_deadline()`. Drop rules make the network lossy.
//! Like the runtime, the harness stops driving a user agent once it reports `is_stopped()`.

use super::auth::{self, Algorithm, Credentials};
use super::message::{Message, Method};
use super::transaction::Timers;
use super::transport::Target;
use super::ua::{Config, Output, UserAgent};
use crate::api::{CallId, CallState, Command, EndReason, Event, HoldState, RegistrationState};
use crate::engine::media::stream::MediaParams;
use crate::store::settings::{Account, MediaEncryption, Settings, Transport};
use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

// =============================================================================================
// Harness
// =============================================================================================

const fn local(port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), port))
}

const A: SocketAddr = local(5001);
const B: SocketAddr = local(5002);
const C: SocketAddr = local(5003);
const REGISTRAR: SocketAddr = local(5070);
/// A peer that is not a user agent: tests write its packets by hand and read its replies in the log.
const RAW: SocketAddr = local(5099);

const T1: Duration = Duration::from_millis(500);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn config(addr: SocketAddr) -> Config {
    Config {
        user_agent: "Dialtone-test".into(),
        timers: Timers::default(),
        auto_answer: false,
        rtp_ports: (20000, 20998),
        local: addr,
        codecs: vec!["opus".into(), "PCMU".into(), "PCMA".into()],
        media_encryption: MediaEncryption::None,
        do_not_disturb: false,
    }
}

/// One datagram that went over the virtual network (or was dropped on the way).
#[derive(Debug, Clone)]
struct Packet {
    /// Virtual time since the start of the test.
    at: Duration,
    from: SocketAddr,
    to: Target,
    bytes: Vec<u8>,
    msg: Option<Message>,
    dropped: bool,
}

impl Packet {
    fn to_addr(&self) -> Option<SocketAddr> {
        let ip: IpAddr = self.to.host.parse().ok()?;
        Some(SocketAddr::new(ip, self.to.port))
    }

    fn method(&self) -> Option<&Method> {
        self.msg.as_ref().and_then(Message::method)
    }

    fn is_request(&self, method: &str) -> bool {
        self.method() == Some(&Method::parse(method))
    }

    /// An initial INVITE (no To tag), as opposed to a re-INVITE.
    fn is_initial_invite(&self) -> bool {
        self.is_request("INVITE") && !self.has_to_tag()
    }

    fn is_reinvite(&self) -> bool {
        self.is_request("INVITE") && self.has_to_tag()
    }

    fn has_to_tag(&self) -> bool {
        self.msg
            .as_ref()
            .and_then(|m| m.to().ok())
            .is_some_and(|t| t.tag().is_some())
    }

    fn status(&self) -> Option<u16> {
        self.msg.as_ref().and_then(Message::status)
    }

    /// A response with this code to a request with this CSeq method.
    fn is_response(&self, code: u16, method: &str) -> bool {
        self.status() == Some(code) && self.cseq_method() == Some(Method::parse(method))
    }

    fn cseq_method(&self) -> Option<Method> {
        self.msg.as_ref().and_then(|m| m.cseq().ok()).map(|c| c.1)
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.msg.as_ref().and_then(|m| m.header(name))
    }

    fn body(&self) -> String {
        self.msg
            .as_ref()
            .map(|m| String::from_utf8_lossy(&m.body).into_owned())
            .unwrap_or_default()
    }

    fn summary(&self) -> String {
        let what = match &self.msg {
            Some(m) => m.summary(),
            None => format!("{} unparsable bytes", self.bytes.len()),
        };
        format!(
            "{:>9.3}s {} -> {}:{} {what}{}",
            self.at.as_secs_f64(),
            self.from,
            self.to.host,
            self.to.port,
            if self.dropped { " (DROPPED)" } else { "" }
        )
    }
}

type Pred = Box<dyn Fn(&Packet) -> bool>;

/// Drops packets matching `pred`: after letting `skip` matches through, drop `count` of them
/// (all with None), while the virtual time is before `until` (always with None).
struct DropRule {
    pred: Pred,
    skip: usize,
    count: Option<usize>,
    until: Option<Duration>,
    seen: usize,
    dropped: usize,
}

impl DropRule {
    fn applies(&mut self, p: &Packet) -> bool {
        if self.until.is_some_and(|u| p.at >= u) || !(self.pred)(p) {
            return false;
        }
        self.seen += 1;
        if self.seen <= self.skip || self.count.is_some_and(|c| self.dropped >= c) {
            return false;
        }
        self.dropped += 1;
        true
    }
}

/// A call event, flattened for assertions.
#[derive(Debug, Clone, PartialEq)]
struct CallEv {
    at: Duration,
    call: CallId,
    state: CallState,
    reason: Option<EndReason>,
    code: Option<u16>,
    hold: Option<HoldState>,
}

struct UaNode {
    ua: UserAgent,
    events: Vec<(Duration, Event)>,
    /// Media announcements: (when, call, Some(params) = start/update, None = stop).
    media: Vec<(Duration, CallId, Option<MediaParams>)>,
    /// DTMF handed to the media side: (when, call, digits).
    dtmf: Vec<(Duration, CallId, String)>,
    /// Alert changes: (when, ringback, ring).
    alerts: Vec<(Duration, bool, bool)>,
}

struct Net {
    base: Instant,
    now: Instant,
    uas: BTreeMap<SocketAddr, UaNode>,
    registrars: BTreeMap<SocketAddr, Registrar>,
    in_flight: VecDeque<(SocketAddr, Target, Vec<u8>)>,
    log: Vec<Packet>,
    rules: Vec<DropRule>,
    /// Guards against a user agent whose deadline never moves (it would spin the runtime).
    spin: (Instant, u32),
}

impl Net {
    fn new() -> Net {
        let base = Instant::now();
        Net {
            base,
            now: base,
            uas: BTreeMap::new(),
            registrars: BTreeMap::new(),
            in_flight: VecDeque::new(),
            log: Vec::new(),
            rules: Vec::new(),
            spin: (base, 0),
        }
    }

    /// A and B, no accounts.
    fn pair() -> Net {
        let mut net = Net::new();
        net.add(A, config(A), &[]);
        net.add(B, config(B), &[]);
        net
    }

    fn add(&mut self, addr: SocketAddr, cfg: Config, accounts: &[Account]) {
        assert_eq!(cfg.local, addr);
        let mut ua = UserAgent::new(cfg, accounts);
        ua.start(self.now);
        self.uas.insert(
            addr,
            UaNode {
                ua,
                events: Vec::new(),
                media: Vec::new(),
                dtmf: Vec::new(),
                alerts: Vec::new(),
            },
        );
    }

    fn add_registrar(&mut self, r: Registrar) {
        self.registrars.insert(r.addr, r);
    }

    fn registrar(&mut self) -> &mut Registrar {
        self.registrars.get_mut(&REGISTRAR).expect("no registrar")
    }

    fn elapsed(&self) -> Duration {
        self.now - self.base
    }

    fn ua(&mut self, addr: SocketAddr) -> &mut UserAgent {
        &mut self.uas.get_mut(&addr).expect("no such user agent").ua
    }

    /// A user command, at the current virtual time. Nothing is delivered until the next `run`.
    fn cmd(&mut self, addr: SocketAddr, c: Command) {
        let now = self.now;
        self.ua(addr).handle_command(c, now);
    }

    /// Puts hand-written bytes on the wire, as if `from` had sent them.
    fn inject(&mut self, from: SocketAddr, to: SocketAddr, bytes: impl Into<Vec<u8>>) {
        self.in_flight
            .push_back((from, Target::from_addr(Transport::Udp, to), bytes.into()));
    }

    // ---- lossy network ----

    /// Drops the `nth` (1-based) packet matching `pred`, once.
    fn drop_nth(&mut self, nth: usize, pred: impl Fn(&Packet) -> bool + 'static) {
        self.rules.push(DropRule {
            pred: Box::new(pred),
            skip: nth - 1,
            count: Some(1),
            until: None,
            seen: 0,
            dropped: 0,
        });
    }

    /// Drops every packet matching `pred`.
    fn drop_all(&mut self, pred: impl Fn(&Packet) -> bool + 'static) {
        self.rules.push(DropRule {
            pred: Box::new(pred),
            skip: 0,
            count: None,
            until: None,
            seen: 0,
            dropped: 0,
        });
    }

    /// Drops every packet matching `pred` for the next `d` of virtual time.
    fn drop_for(&mut self, d: Duration, pred: impl Fn(&Packet) -> bool + 'static) {
        let until = self.elapsed() + d;
        self.rules.push(DropRule {
            pred: Box::new(pred),
            skip: 0,
            count: None,
            until: Some(until),
            seen: 0,
            dropped: 0,
        });
    }

    fn heal(&mut self) {
        self.rules.clear();
    }

    // ---- progress ----

    /// Collects every user agent's output: events are recorded, packets put in flight.
    fn drain(&mut self) {
        let at = self.elapsed();
        for (addr, node) in &mut self.uas {
            while let Some(o) = node.ua.poll_output() {
                match o {
                    Output::Transmit { target, bytes } => {
                        self.in_flight.push_back((*addr, target, bytes))
                    }
                    Output::Event(e) => node.events.push((at, e)),
                    Output::Media { call, params } => node.media.push((at, call, Some(params))),
                    Output::MediaStop { call } => node.media.push((at, call, None)),
                    Output::Dtmf { call, digits } => node.dtmf.push((at, call, digits)),
                    Output::Alerts { ringback, ring } => node.alerts.push((at, ringback, ring)),
                }
            }
        }
    }

    /// One unit of progress before `limit`: deliver one packet, or fire the earliest timers.
    /// False when nothing is left to do before `limit`.
    fn step(&mut self, limit: Instant) -> bool {
        self.drain();
        if let Some((from, to, bytes)) = self.in_flight.pop_front() {
            self.deliver(from, to, bytes);
            return true;
        }
        let Some(next) = self
            .uas
            .values()
            .filter(|n| !n.ua.is_stopped())
            .filter_map(|n| n.ua.next_deadline())
            .min()
        else {
            return false;
        };
        if next > limit {
            return false;
        }
        self.now = self.now.max(next);
        if self.spin.0 == self.now {
            self.spin.1 += 1;
            assert!(
                self.spin.1 < 1000,
                "a user agent spins: its deadline {:?} does not move\n{}",
                self.now - self.base,
                self.dump()
            );
        } else {
            self.spin = (self.now, 0);
        }
        let now = self.now;
        for node in self.uas.values_mut().filter(|n| !n.ua.is_stopped()) {
            if node.ua.next_deadline().is_some_and(|d| d <= now) {
                node.ua.handle_timeout(now);
            }
        }
        true
    }

    fn deliver(&mut self, from: SocketAddr, to: Target, bytes: Vec<u8>) {
        let mut p = Packet {
            at: self.elapsed(),
            from,
            msg: Message::parse(&bytes).ok(),
            to,
            bytes,
            dropped: false,
        };
        // Every rule sees every packet (each counts its own matches).
        for r in &mut self.rules {
            p.dropped |= r.applies(&p);
        }
        let storm = self.log.iter().rev().take_while(|q| q.at == p.at).count();
        assert!(
            storm < 2000,
            "packet storm: 2000 packets at {:?}\n{}",
            p.at,
            self.log[self.log.len() - 20..]
                .iter()
                .map(Packet::summary)
                .collect::<Vec<_>>()
                .join("\n")
        );
        let dest = p.to_addr();
        let (dropped, bytes, to) = (p.dropped, p.bytes.clone(), p.to.clone());
        self.log.push(p);
        assert_eq!(to.transport, Transport::Udp, "all traffic here is UDP");
        if dropped {
            return;
        }
        let now = self.now;
        let Some(dest) = dest else { return };
        if let Some(node) = self.uas.get_mut(&dest) {
            if node.ua.is_stopped() {
                return;
            }
            node.ua.handle_packet(Transport::Udp, from, &bytes, now);
        } else if let Some(r) = self.registrars.get_mut(&dest) {
            for (to, reply) in r.handle(from, &bytes) {
                self.in_flight
                    .push_back((dest, Target::from_addr(Transport::Udp, to), reply));
            }
        }
    }

    /// Runs the network for `d` of virtual time.
    fn run(&mut self, d: Duration) {
        let limit = self.now + d;
        while self.step(limit) {}
        self.now = limit;
        self.drain();
    }

    /// Delivers everything in flight without moving the clock.
    fn settle(&mut self) {
        self.run(Duration::ZERO);
    }

    /// Runs until `cond` holds, at most `max` of virtual time; panics with the log if it never does.
    fn run_until(&mut self, max: Duration, what: &str, cond: impl Fn(&Net) -> bool) {
        let limit = self.now + max;
        loop {
            self.drain();
            if cond(self) {
                return;
            }
            if !self.step(limit) {
                self.drain();
                assert!(
                    cond(self),
                    "still waiting for {what} after {max:?}\n{}",
                    self.dump()
                );
                return;
            }
        }
    }

    // ---- observations ----

    fn dump(&self) -> String {
        let mut s = String::from("packets:\n");
        for p in &self.log {
            s.push_str(&p.summary());
            s.push('\n');
        }
        for (addr, node) in &self.uas {
            s.push_str(&format!("events of {addr}:\n"));
            for (at, e) in &node.events {
                s.push_str(&format!("{:>9.3}s {e:?}\n", at.as_secs_f64()));
            }
        }
        s
    }

    fn events(&self, addr: SocketAddr) -> Vec<Event> {
        self.uas[&addr]
            .events
            .iter()
            .map(|(_, e)| e.clone())
            .collect()
    }

    fn call_events(&self, addr: SocketAddr) -> Vec<CallEv> {
        self.uas[&addr]
            .events
            .iter()
            .filter_map(|(at, e)| match e {
                Event::Call {
                    call,
                    state,
                    reason,
                    code,
                    hold,
                    ..
                } => Some(CallEv {
                    at: *at,
                    call: *call,
                    state: *state,
                    reason: reason.clone(),
                    code: *code,
                    hold: *hold,
                }),
                _ => None,
            })
            .collect()
    }

    /// The states call `id` went through, as the UI saw them.
    fn states(&self, addr: SocketAddr, id: CallId) -> Vec<CallState> {
        self.call_events(addr)
            .into_iter()
            .filter(|e| e.call == id)
            .map(|e| e.state)
            .collect()
    }

    fn last(&self, addr: SocketAddr, id: CallId) -> Option<CallEv> {
        self.call_events(addr).into_iter().rfind(|e| e.call == id)
    }

    fn state(&self, addr: SocketAddr, id: CallId) -> Option<CallState> {
        self.last(addr, id).map(|e| e.state)
    }

    fn ended(&self, addr: SocketAddr, id: CallId) -> Option<(EndReason, Option<u16>)> {
        self.last(addr, id)
            .filter(|e| e.state == CallState::Ended)
            .map(|e| (e.reason.expect("an ended call has a reason"), e.code))
    }

    fn incoming(&self, addr: SocketAddr) -> Vec<CallId> {
        self.events(addr)
            .into_iter()
            .filter_map(|e| match e {
                Event::Incoming { call, .. } => Some(call),
                _ => None,
            })
            .collect()
    }

    /// The outgoing calls of `addr`, in the order they were placed.
    fn outgoing(&self, addr: SocketAddr) -> Vec<CallId> {
        let inc = self.incoming(addr);
        let mut v: Vec<CallId> = Vec::new();
        for e in self.call_events(addr) {
            if !inc.contains(&e.call) && !v.contains(&e.call) {
                v.push(e.call);
            }
        }
        v
    }

    fn errors(&self, addr: SocketAddr) -> Vec<String> {
        self.events(addr)
            .into_iter()
            .filter_map(|e| match e {
                Event::Error { message } => Some(message),
                _ => None,
            })
            .collect()
    }

    fn registrations(&self, addr: SocketAddr) -> Vec<(Duration, RegistrationState, Option<u16>)> {
        self.uas[&addr]
            .events
            .iter()
            .filter_map(|(at, e)| match e {
                Event::Registration { state, code, .. } => Some((*at, *state, *code)),
                _ => None,
            })
            .collect()
    }

    fn reg_state(&self, addr: SocketAddr) -> Option<RegistrationState> {
        self.registrations(addr).last().map(|r| r.1)
    }

    /// Packets `from` sent that match `pred` (dropped ones included).
    fn sent(&self, from: SocketAddr, pred: impl Fn(&Packet) -> bool) -> Vec<&Packet> {
        self.log
            .iter()
            .filter(|p| p.from == from && pred(p))
            .collect()
    }

    /// Packets that reached `to` and match `pred`.
    fn received(&self, to: SocketAddr, pred: impl Fn(&Packet) -> bool) -> Vec<&Packet> {
        self.log
            .iter()
            .filter(|p| !p.dropped && p.to_addr() == Some(to) && pred(p))
            .collect()
    }

    fn count(&self, from: SocketAddr, pred: impl Fn(&Packet) -> bool) -> usize {
        self.sent(from, pred).len()
    }

    fn live_calls(&mut self, addr: SocketAddr) -> Vec<(CallId, CallState)> {
        self.ua(addr)
            .call_states()
            .into_iter()
            .filter(|(_, s)| *s != CallState::Ended)
            .collect()
    }

    // ---- common flows ----

    /// `from` dials `to` directly; returns the caller's and the callee's call ids once it rings.
    fn ring(&mut self, from: SocketAddr, to: SocketAddr) -> (CallId, CallId) {
        let before_out = self.outgoing(from).len();
        let before_in = self.incoming(to).len();
        self.cmd(
            from,
            Command::Call {
                uri: format!("sip:x@{to}"),
                account: None,
            },
        );
        self.run_until(secs(40), "ringing", |n| {
            n.incoming(to).len() > before_in
                && n.outgoing(from)
                    .get(before_out)
                    .is_some_and(|id| n.state(from, *id) == Some(CallState::Ringing))
        });
        (
            self.outgoing(from)[before_out],
            self.incoming(to)[before_in],
        )
    }

    /// `from` calls `to`, which answers; returns both ids once the ACK is through.
    fn establish(&mut self, from: SocketAddr, to: SocketAddr) -> (CallId, CallId) {
        let (a, b) = self.ring(from, to);
        self.cmd(to, Command::Answer { call: b });
        self.settle();
        assert_eq!(self.state(from, a), Some(CallState::Established));
        assert_eq!(self.state(to, b), Some(CallState::Established));
        (a, b)
    }
}

// =============================================================================================
// A tiny sans-IO registrar
// =============================================================================================

/// Answers REGISTER: 401 with a digest challenge, then 200 with the bindings (or 423, or a NAT
/// rewrite of what it saw in Via). Stateless apart from its nonces and bindings.
struct Registrar {
    addr: SocketAddr,
    realm: String,
    users: Vec<(String, String)>,
    algorithm: Algorithm,
    nonce_count: u32,
    /// Nonces handed out and still valid.
    nonces: Vec<String>,
    /// Challenge a failed authorization with a new nonce (as most servers do) instead of the same.
    fresh_nonce_on_failure: bool,
    /// Accept each nonce once: every refresh is challenged again (without `stale`).
    one_time_nonces: bool,
    min_expires: Option<u32>,
    /// Report this as Via received/rport instead of the real source (a NAT in between).
    nat: Option<(String, u16)>,
    /// Contact URI -> expires, as last granted.
    bindings: BTreeMap<String, u32>,
    /// Every REGISTER it saw: (Expires asked, had Authorization).
    seen: Vec<(u32, bool)>,
}

impl Registrar {
    fn new(users: &[(&str, &str)]) -> Registrar {
        Registrar {
            addr: REGISTRAR,
            realm: "dialtone.test".into(),
            users: users
                .iter()
                .map(|(u, p)| (u.to_string(), p.to_string()))
                .collect(),
            algorithm: Algorithm::Md5,
            nonce_count: 0,
            nonces: Vec::new(),
            fresh_nonce_on_failure: false,
            one_time_nonces: false,
            min_expires: None,
            nat: None,
            bindings: BTreeMap::new(),
            seen: Vec::new(),
        }
    }

    fn new_nonce(&mut self) -> String {
        self.nonce_count += 1;
        let n = format!("nonce{:04}", self.nonce_count);
        self.nonces.push(n.clone());
        n
    }

    fn handle(&mut self, source: SocketAddr, bytes: &[u8]) -> Vec<(SocketAddr, Vec<u8>)> {
        let Ok(req) = Message::parse(bytes) else {
            return Vec::new();
        };
        if req.method() != Some(&Method::Register) || req.validate().is_err() {
            return Vec::new();
        }
        let resp = self.register(source, &req);
        vec![(source, resp.to_bytes())]
    }

    fn register(&mut self, source: SocketAddr, req: &Message) -> Message {
        let asked = req.expires().unwrap_or(3600);
        let authz = req.header("Authorization");
        self.seen.push((asked, authz.is_some()));
        let verdict = authz.map(|v| self.check(v, req));
        match verdict {
            Some(Ok(nonce)) => {
                if self.one_time_nonces {
                    self.nonces.retain(|n| *n != nonce);
                }
            }
            Some(Err(stale_nonce)) => {
                let nonce = if self.fresh_nonce_on_failure || stale_nonce.is_none() {
                    self.new_nonce()
                } else {
                    stale_nonce.unwrap_or_default()
                };
                return self.challenge(source, req, &nonce);
            }
            None => {
                let nonce = self.new_nonce();
                return self.challenge(source, req, &nonce);
            }
        }
        let contacts = match req.contacts() {
            Ok(super::message::Contacts::List(l)) => l,
            _ => Vec::new(),
        };
        let mut changes = Vec::new();
        for c in &contacts {
            let e = c
                .param("expires")
                .flatten()
                .and_then(|e| e.parse().ok())
                .unwrap_or(asked);
            if let Some(min) = self.min_expires
                && e != 0
                && e < min
            {
                let mut r = self.response(source, req, 423, "Interval Too Brief");
                r.push_header("Min-Expires", min.to_string());
                return r;
            }
            changes.push((c.uri.to_string(), e));
        }
        for (uri, e) in changes {
            if e == 0 {
                self.bindings.remove(&uri);
            } else {
                self.bindings.insert(uri, e);
            }
        }
        let mut ok = self.response(source, req, 200, "OK");
        for (uri, e) in &self.bindings {
            ok.push_header("Contact", format!("<{uri}>;expires={e}"));
        }
        ok
    }

    /// Ok with the nonce used, or Err with it when only the digest was wrong (None: unknown
    /// nonce or user).
    fn check(&self, value: &str, req: &Message) -> Result<String, Option<String>> {
        let cred = Credentials::parse(value).map_err(|_| None)?;
        if !self.nonces.contains(&cred.nonce) || cred.realm != self.realm {
            return Err(None);
        }
        let Some((_, password)) = self.users.iter().find(|(u, _)| *u == cred.username) else {
            return Err(Some(cred.nonce));
        };
        if cred.verify(password, "REGISTER", &req.body) {
            Ok(cred.nonce)
        } else {
            Err(Some(cred.nonce))
        }
    }

    fn challenge(&self, source: SocketAddr, req: &Message, nonce: &str) -> Message {
        let mut r = self.response(source, req, 401, "Unauthorized");
        r.push_header(
            "WWW-Authenticate",
            auth::challenge_header(&self.realm, nonce, self.algorithm, true),
        );
        r
    }

    /// A response with the top Via's `received` and `rport` filled in (RFC 3581) and a To tag.
    fn response(&self, source: SocketAddr, req: &Message, code: u16, reason: &str) -> Message {
        let mut r = Message::response_to(req, code, reason);
        let (host, port) = self
            .nat
            .clone()
            .unwrap_or_else(|| (source.ip().to_string(), source.port()));
        if let Some(via) = r.headers.iter_mut().find(|h| h.name == "Via") {
            let mut parts: Vec<String> = via
                .value
                .split(';')
                .map(|p| {
                    if p.trim() == "rport" {
                        format!("rport={port}")
                    } else {
                        p.to_string()
                    }
                })
                .collect();
            parts.push(format!("received={host}"));
            via.value = parts.join(";");
        }
        if let Ok(to) = req.to()
            && to.tag().is_none()
        {
            r.set_header("To", to.with_tag("reg1").to_string());
        }
        r
    }
}

fn account(user: &str, password: &str, expires: u32) -> Account {
    Account {
        uri: format!("sip:{user}@dialtone.test"),
        password: password.into(),
        registrar: REGISTRAR.to_string(),
        expires,
        ..Account::default()
    }
}

/// A with one registering account, and a registrar that knows alice/secret.
fn registering(password: &str, expires: u32, setup: impl FnOnce(&mut Registrar)) -> Net {
    let mut net = Net::new();
    let mut r = Registrar::new(&[("alice", "secret")]);
    setup(&mut r);
    net.add_registrar(r);
    net.add(A, config(A), &[account("alice", password, expires)]);
    net
}

fn is_register(p: &Packet) -> bool {
    p.is_request("REGISTER")
}

// =============================================================================================
// Raw messages for the hand-written peer
// =============================================================================================

const SDP_OFFER: &str = "v=0\r\no=raw 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio 30000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n";

/// A request from RAW to B; `extra` headers go before the body.
fn raw_request(
    method: &str,
    branch: &str,
    to_tag: Option<&str>,
    extra: &str,
    body: &str,
) -> String {
    let to_tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
    let ctype = if body.is_empty() {
        String::new()
    } else {
        "Content-Type: application/sdp\r\n".to_string()
    };
    format!(
        "{method} sip:bob@{B} SIP/2.0\r\n\
Via: SIP/2.0/UDP {RAW};branch={branch};rport\r\n\
Max-Forwards: 70\r\n\
From: <sip:raw@{RAW}>;tag=raw1\r\n\
To: <sip:bob@{B}>{to_tag}\r\n\
Call-ID: rawcall-1\r\n\
CSeq: 1 {method}\r\n\
Contact: <sip:raw@{RAW}>\r\n\
{extra}{ctype}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// What RAW answers to `req` (a packet it received): the response with a To tag and extras.
fn raw_reply(req: &Packet, code: u16, reason: &str, extra: &[(&str, &str)], body: &str) -> Vec<u8> {
    let msg = req.msg.as_ref().expect("a parsed request");
    let mut r = Message::response_to(msg, code, reason);
    if let Ok(to) = msg.to()
        && to.tag().is_none()
    {
        r.set_header("To", to.with_tag("rawtag").to_string());
    }
    for (name, value) in extra {
        r.push_header(name, *value);
    }
    if !body.is_empty() {
        r.set_body("application/sdp", body.as_bytes().to_vec());
    }
    r.to_bytes()
}

// =============================================================================================
// Direct calls
// =============================================================================================

#[test]
fn direct_call_rings_is_answered_and_hung_up_by_the_caller() {
    let mut net = Net::pair();
    net.cmd(
        A,
        Command::Call {
            uri: "sip:x@127.0.0.1:5002".into(),
            account: None,
        },
    );
    net.settle();
    let a = net.outgoing(A)[0];
    let b = net.incoming(B)[0];
    assert!(matches!(
        &net.events(B)[0],
        Event::Incoming { call, from, account: None } if *call == b && from.contains("dialtone@127.0.0.1")
    ));
    assert_eq!(net.states(A, a), [CallState::Calling, CallState::Ringing]);
    assert_eq!(net.states(B, b), [CallState::Ringing]);
    assert_eq!(net.count(A, |p| p.is_initial_invite()), 1);
    assert_eq!(net.count(B, |p| p.is_response(100, "INVITE")), 1);
    assert_eq!(net.count(B, |p| p.is_response(180, "INVITE")), 1);
    let invite = net.sent(A, |p| p.is_initial_invite())[0];
    assert_eq!(invite.to_addr(), Some(B));
    assert!(invite.body().contains("m=audio"), "INVITE carries an offer");

    // Ringing for a while changes nothing: no retransmissions once a provisional came.
    net.run(secs(10));
    assert_eq!(net.count(A, |p| p.is_initial_invite()), 1);

    net.cmd(B, Command::Answer { call: b });
    net.settle();
    assert_eq!(net.last(A, a).unwrap().code, Some(200));
    assert_eq!(
        net.states(A, a),
        [
            CallState::Calling,
            CallState::Ringing,
            CallState::Established
        ]
    );
    assert_eq!(
        net.states(B, b),
        [CallState::Ringing, CallState::Established]
    );
    let ok = net.sent(B, |p| p.is_response(200, "INVITE"));
    assert_eq!(ok.len(), 1);
    assert!(ok[0].body().contains("m=audio"), "200 carries the answer");
    assert_eq!(net.count(A, |p| p.is_request("ACK")), 1);

    // The 200 is not retransmitted once ACKed.
    net.run(secs(40));
    assert_eq!(net.count(B, |p| p.is_response(200, "INVITE")), 1);

    net.cmd(A, Command::Hangup { call: a });
    net.settle();
    assert_eq!(net.ended(A, a).map(|e| e.0), Some(EndReason::LocalHangup));
    assert_eq!(net.ended(B, b).map(|e| e.0), Some(EndReason::RemoteHangup));
    let bye = net.sent(A, |p| p.is_request("BYE"));
    assert_eq!(bye.len(), 1);
    assert_eq!(bye[0].to_addr(), Some(B), "BYE goes to B's Contact");
    assert_eq!(net.count(B, |p| p.is_response(200, "BYE")), 1);

    // Everything is cleaned up once the transactions have lingered.
    net.run(secs(40));
    assert!(net.live_calls(A).is_empty() && net.live_calls(B).is_empty());
    assert!(net.ua(A).next_deadline().is_none(), "{:?}", net.ua(A));
    assert!(net.ua(B).next_deadline().is_none(), "{:?}", net.ua(B));
    assert!(net.errors(A).is_empty() && net.errors(B).is_empty());
}

#[test]
fn callee_hangs_up_and_the_caller_sees_remote_hangup() {
    let mut net = Net::pair();
    let (a, b) = net.establish(A, B);
    net.cmd(B, Command::Hangup { call: b });
    net.settle();
    assert_eq!(net.ended(B, b).map(|e| e.0), Some(EndReason::LocalHangup));
    assert_eq!(net.ended(A, a).map(|e| e.0), Some(EndReason::RemoteHangup));
    let bye = net.sent(B, |p| p.is_request("BYE"));
    assert_eq!(bye.len(), 1);
    assert_eq!(bye[0].to_addr(), Some(A), "BYE goes to A's Contact");
    assert_eq!(net.count(A, |p| p.is_response(200, "BYE")), 1);
}

#[test]
fn a_call_may_ring_for_a_minute_before_it_is_answered() {
    let mut net = Net::pair();
    let (a, b) = net.ring(A, B);
    net.run(secs(60));
    assert_eq!(net.state(A, a), Some(CallState::Ringing), "{}", net.dump());
    assert_eq!(net.state(B, b), Some(CallState::Ringing));
    net.cmd(B, Command::Answer { call: b });
    net.settle();
    assert_eq!(net.state(A, a), Some(CallState::Established));
}

#[test]
fn call_to_nowhere_times_out_after_timer_b() {
    let mut net = Net::pair();
    net.cmd(
        A,
        Command::Call {
            uri: "sip:nobody@127.0.0.1:5999".into(),
            account: None,
        },
    );
    net.run(secs(40));
    let a = net.outgoing(A)[0];
    assert_eq!(net.ended(A, a), Some((EndReason::Timeout, None)));
    assert_eq!(net.last(A, a).unwrap().at, T1 * 64, "timer B is 64*T1");
    // INVITE retransmissions at 0, T1, 3T1, 7T1 … doubling, with no cap (17.1.1.2).
    let times: Vec<Duration> = net
        .sent(A, |p| p.is_initial_invite())
        .iter()
        .map(|p| p.at)
        .collect();
    assert_eq!(
        times,
        [0, 1, 3, 7, 15, 31, 63].map(|n| T1 * n).to_vec(),
        "{}",
        net.dump()
    );
}

// =============================================================================================
// Loss
// =============================================================================================

#[test]
fn lost_invite_is_retransmitted_after_t1_and_the_call_succeeds() {
    let mut net = Net::pair();
    net.drop_nth(1, |p| p.is_initial_invite());
    net.cmd(
        A,
        Command::Call {
            uri: format!("sip:x@{B}"),
            account: None,
        },
    );
    net.settle();
    assert!(net.incoming(B).is_empty());
    net.run(ms(499));
    assert_eq!(net.count(A, |p| p.is_initial_invite()), 1);
    net.run(ms(1));
    let invites = net.sent(A, |p| p.is_initial_invite());
    assert_eq!(invites.len(), 2);
    assert!(invites[0].dropped && !invites[1].dropped);
    assert_eq!(invites[1].at, T1);
    assert_eq!(
        invites[0].bytes, invites[1].bytes,
        "a retransmission is the same request"
    );
    let b = net.incoming(B)[0];
    let a = net.outgoing(A)[0];
    assert_eq!(net.state(A, a), Some(CallState::Ringing));
    net.cmd(B, Command::Answer { call: b });
    net.settle();
    assert_eq!(net.state(A, a), Some(CallState::Established));
    assert_eq!(net.state(B, b), Some(CallState::Established));
    net.run(secs(10));
    assert_eq!(
        net.count(A, |p| p.is_initial_invite()),
        2,
        "no more retransmissions"
    );
}

#[test]
fn lost_ack_makes_the_callee_retransmit_its_200_until_an_ack_gets_through() {
    let mut net = Net::pair();
    let (a, b) = net.ring(A, B);
    net.drop_nth(1, |p| p.is_request("ACK"));
    net.drop_nth(2, |p| p.is_request("ACK"));
    let t0 = net.elapsed();
    net.cmd(B, Command::Answer { call: b });
    net.run(secs(40));
    let oks: Vec<Duration> = net
        .sent(B, |p| p.is_response(200, "INVITE"))
        .iter()
        .map(|p| p.at - t0)
        .collect();
    assert_eq!(oks, [ms(0), T1, T1 * 3], "{}", net.dump());
    let acks = net.sent(A, |p| p.is_request("ACK"));
    assert_eq!(acks.len(), 3, "every 200 is ACKed");
    assert!(acks[0].dropped && acks[1].dropped && !acks[2].dropped);
    assert_eq!(
        acks[0].bytes, acks[2].bytes,
        "the ACK of a retransmitted 2xx is the same ACK"
    );
    // One established event each, no error, the call stays up.
    assert_eq!(
        net.states(A, a),
        [
            CallState::Calling,
            CallState::Ringing,
            CallState::Established
        ]
    );
    assert_eq!(
        net.states(B, b),
        [CallState::Ringing, CallState::Established]
    );
    assert!(net.errors(B).is_empty());
    assert_eq!(net.count(B, |p| p.is_request("BYE")), 0);
}

#[test]
fn no_ack_at_all_ends_the_call_with_timeout_and_bye_after_64_t1() {
    let mut net = Net::pair();
    let (a, b) = net.ring(A, B);
    net.drop_all(|p| p.is_request("ACK"));
    let t0 = net.elapsed();
    net.cmd(B, Command::Answer { call: b });
    net.run(secs(60));
    let oks: Vec<Duration> = net
        .sent(B, |p| p.is_response(200, "INVITE"))
        .iter()
        .map(|p| p.at - t0)
        .collect();
    // T1, 2T1, 4T1, then capped at T2 = 4 s (13.3.1.4), until 64*T1.
    let want: Vec<Duration> = [
        0u64, 500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500,
    ]
    .map(ms)
    .to_vec();
    assert_eq!(oks, want, "{}", net.dump());
    let end = net.last(B, b).unwrap();
    assert_eq!(end.state, CallState::Ended);
    assert_eq!(end.reason, Some(EndReason::Timeout));
    assert_eq!(end.at - t0, T1 * 64);
    let bye = net.sent(B, |p| p.is_request("BYE"));
    assert_eq!(bye.len(), 1);
    assert_eq!(bye[0].at - t0, T1 * 64);
    assert_eq!(net.ended(A, a).map(|e| e.0), Some(EndReason::RemoteHangup));
    assert!(net.live_calls(A).is_empty() && net.live_calls(B).is_empty());
}

#[test]
fn lost_bye_is_retransmitted() {
    let mut net = Net::pair();
    let (a, b) = net.establish(A, B);
    net.drop_nth(1, |p| p.is_request("BYE"));
    let t0 = net.elapsed();
    net.cmd(A, Command::Hangup { call: a });
    net.run(secs(2));
    let byes = net.sent(A, |p| p.is_request("BYE"));
    assert_eq!(byes.len(), 2);
    assert_eq!(byes[1].at - t0, T1);
    assert_eq!(net.ended(A, a).map(|e| e.0), Some(EndReason::LocalHangup));
    assert_eq!(net.ended(B, b).map(|e| e.0), Some(EndReason::RemoteHangup));
}

// =============================================================================================
// Reject, decline, auto answer
// =============================================================================================

#[test]
fn reject_sends_486_and_the_caller_ends_busy() {
    let mut net = Net::pair();
    let (a, b) = net.ring(A, B);
    net.cmd(
        B,
        Command::Reject {
            call: b,
            decline: false,
        },
    );
    net.settle();
    assert_eq!(net.ended(A, a), Some((EndReason::Busy, Some(486))));
    assert_eq!(net.ended(B, b), Some((EndReason::Declined, Some(486))));
    let busy = net.sent(B, |p| p.is_response(486, "INVITE"));
    assert_eq!(busy.len(), 1);
    // The ACK for a non-2xx is part of the INVITE transaction: same branch.
    let ack = net.sent(A, |p| p.is_request("ACK"));
    assert_eq!(ack.len(), 1);
    let invite = net.sent(A, |p| p.is_initial_invite())[0];
    let branch = |p: &Packet| {
        p.msg
            .as_ref()
            .and_then(|m| m.top_via().ok())
            .and_then(|v| v.branch().map(str::to_string))
    };
    assert_eq!(branch(ack[0]), branch(invite));
    // ACKed, so the 486 is not retransmitted.
    net.run(secs(40));
    assert_eq!(net.count(B, |p| p.is_response(486, "INVITE")), 1);
    assert!(net.live_calls(A).is_empty() && net.live_calls(B).is_empty());
}

#[test]
fn decline_sends_603_and_the_caller_ends_declined() {
    let mut net = Net::pair();
    let (a, b) = net.ring(A, B);
    net.cmd(
        B,
        Command::Reject {
            call: b,
            decline: true,
        },
    );
    net.settle();
    assert_eq!(net.ended(A, a), Some((EndReason::Declined, Some(603))));
    assert_eq!(net.ended(B, b), Some((EndReason::Declined, Some(603))));
    assert_eq!(net.count(B, |p| p.is_response(603, "INVITE")), 1);
    assert_eq!(net.count(A, |p| p.is_request("ACK")), 1);
}

#[test]
fn lost_486_is_retransmitted_until_acked() {
    let mut net = Net::pair();
    let (a, b) = net.ring(A, B);
    net.drop_nth(1, |p| p.is_response(486, "INVITE"));
    let t0 = net.elapsed();
    net.cmd(
        B,
        Command::Reject {
            call: b,
            decline: false,
        },
    );
    net.run(secs(40));
    let busy: Vec<Duration> = net
        .sent(B, |p| p.is_response(486, "INVITE"))
        .iter()
        .map(|p| p.at - t0)
        .collect();
    assert_eq!(busy, [ms(0), T1], "timer G, then the ACK stops it");
    assert_eq!(net.ended(A, a), Some((EndReason::Busy, Some(486))));
}

#[test]
fn auto_answer_answers_at_once() {
    let mut net = Net::new();
    net.add(A, config(A), &[]);
    net.add(
        B,
        Config {
            auto_answer: true,
            ..config(B)
        },
        &[],
    );
    net.cmd(
        A,
        Command::Call {
            uri: format!("sip:x@{B}"),
            account: None,
        },
    );
    net.settle();
    let a = net.outgoing(A)[0];
    let b = net.incoming(B)[0];
    assert_eq!(
        net.states(B, b),
        [CallState::Ringing, CallState::Established]
    );
    assert_eq!(net.state(A, a), Some(CallState::Established));
    assert_eq!(net.last(A, a).unwrap().at, Duration::ZERO);
    assert_eq!(net.count(B, |p| p.is_response(200, "INVITE")), 1);
    assert_eq!(net.count(A, |p| p.is_request("ACK")), 1);
}

// =============================================================================================
// CANCEL
// =============================================================================================

#[test]
fn caller_hangs_up_while_ringing_and_cancels() {
    let mut net = Net::pair();
    let (a, b) = net.ring(A, B);
    net.cmd(A, Command::Hangup { call: a });
    net.settle();
    assert_eq!(net.ended(A, a).map(|e| e.0), Some(EndReason::Cancelled));
    assert_eq!(net.ended(B, b), Some((EndReason::Cancelled, Some(487))));
    let cancel = net.sent(A, |p| p.is_request("CANCEL"));
    assert_eq!(cancel.len(), 1);
    let invite = net.sent(A, |p| p.is_initial_invite())[0];
    assert_eq!(
        cancel[0].header("Via"),
        invite.header("Via"),
        "CANCEL has the INVITE's Via"
    );
    assert_eq!(net.count(B, |p| p.is_response(200, "CANCEL")), 1);
    assert_eq!(net.count(B, |p| p.is_response(487, "INVITE")), 1);
    assert_eq!(net.count(A, |p| p.is_request("ACK")), 1, "the 487 is ACKed");
    net.run(secs(40));
    assert_eq!(net.count(B, |p| p.is_response(487, "INVITE")), 1);
    assert_eq!(net.events(A).len(), 3, "{:?}", net.events(A));
    assert!(net.live_calls(A).is_empty() && net.live_calls(B).is_empty());
    assert!(net.ua(A).next_deadline().is_none() && net.ua(B).next_deadline().is_none());
}

#[test]
fn cancel_waits_for_a_provisional_response() {
    let mut net = Net::pair();
    // B's 100 and 180 (and the 180 it repeats for retransmitted INVITEs) are lost for 2 s.
    net.drop_for(secs(2), |p| {
        p.from == B && p.status().is_some_and(|c| c < 200)
    });
    net.cmd(
        A,
        Command::Call {
            uri: format!("sip:x@{B}"),
            account: None,
        },
    );
    net.run(ms(100));
    let a = net.outgoing(A)[0];
    let b = net.incoming(B)[0];
    net.cmd(A, Command::Hangup { call: a });
    net.settle();
    assert_eq!(net.ended(A, a).map(|e| e.0), Some(EndReason::Cancelled));
    assert_eq!(
        net.count(A, |p| p.is_request("CANCEL")),
        0,
        "no CANCEL before a provisional response (9.1)"
    );
    net.run(secs(10));
    let first_provisional = net.received(A, |p| p.status().is_some_and(|c| c < 200))[0].at;
    let cancel = net.sent(A, |p| p.is_request("CANCEL"));
    assert_eq!(cancel.len(), 1, "{}", net.dump());
    assert_eq!(cancel[0].at, first_provisional);
    assert!(cancel[0].at >= secs(2));
    assert_eq!(net.ended(B, b), Some((EndReason::Cancelled, Some(487))));
    assert_eq!(net.count(A, |p| p.is_request("ACK")), 1);
    assert_eq!(
        net.states(A, a),
        [CallState::Calling, CallState::Ended],
        "nothing after the end"
    );
}

#[test]
fn cancel_goes_out_after_100_trying_even_if_180_never_comes() {
    let mut net = Net::pair();
    net.drop_all(|p| p.is_response(180, "INVITE"));
    net.cmd(
        A,
        Command::Call {
            uri: format!("sip:x@{B}"),
            account: None,
        },
    );
    net.run(ms(100));
    let a = net.outgoing(A)[0];
    let b = net.incoming(B)[0];
    assert_eq!(net.received(A, |p| p.is_response(100, "INVITE")).len(), 1);
    net.cmd(A, Command::Hangup { call: a });
    net.run(secs(40));
    assert_eq!(
        net.count(A, |p| p.is_request("CANCEL")),
        1,
        "100 Trying is a provisional response: CANCEL may go (9.1)\n{}",
        net.dump()
    );
    assert_eq!(net.ended(B, b), Some((EndReason::Cancelled, Some(487))));
    assert_eq!(net.ended(A, a).map(|e| e.0), Some(EndReason::Cancelled));
}

#[test]
fn answer_crossing_cancel_is_acked_and_byed() {
    let mut net = Net::pair();
    let (a, b) = net.ring(A, B);
    // B answers and A hangs up at the same moment: the 200 and the CANCEL cross.
    net.cmd(B, Command::Answer { call: b });
    net.cmd(A, Command::Hangup { call: a });
    net.run(secs(40));
    assert_eq!(net.ended(A, a).map(|e| e.0), Some(EndReason::Cancelled));
    assert_eq!(
        net.states(A, a),
        [CallState::Calling, CallState::Ringing, CallState::Ended]
    );
    // B had answered: the CANCEL only gets its own 200, no 487.
    assert_eq!(net.count(B, |p| p.is_response(200, "CANCEL")), 1);
    assert_eq!(net.count(B, |p| p.is_response(487, "INVITE")), 0);
    // A ACKs the 200 and ends the dialog with BYE so nothing is left up.
    assert_eq!(net.count(A, |p| p.is_request("ACK")), 1);
    assert_eq!(net.count(A, |p| p.is_request("BYE")), 1);
    assert_eq!(net.ended(B, b).map(|e| e.0), Some(EndReason::RemoteHangup));
    assert_eq!(
        net.count(B, |p| p.is_response(200, "INVITE")),
        1,
        "the ACK stopped B's retransmissions"
    );
    assert!(net.live_calls(A).is_empty() && net.live_calls(B).is_empty());
}

// =============================================================================================
// Hold and resume
// =============================================================================================

fn direction(p: &Packet) -> &'static str {
    let body = p.body();
    ["sendrecv", "sendonly", "recvonly", "inactive"]
        .into_iter()
        .find(|d| body.contains(&format!("a={d}")))
        .unwrap_or("none")
}

#[test]
fn media_starts_on_answer_pauses_on_hold_and_stops_on_hang_up() {
    let mut net = Net::pair();
    let (a, b) = net.establish(A, B);
    net.cmd(A, Command::Hold { call: a });
    net.settle();
    net.cmd(A, Command::Resume { call: a });
    net.settle();
    net.cmd(B, Command::Hangup { call: b });
    net.settle();
    let flags = |addr: SocketAddr, id: CallId| -> Vec<Option<(bool, bool)>> {
        net.uas[&addr]
            .media
            .iter()
            .filter(|(_, c, _)| *c == id)
            .map(|(_, _, p)| p.as_ref().map(|p| (p.send, p.recv)))
            .collect()
    };
    // Start (both ways), hold (we neither send nor play), resume, stop.
    let want = vec![
        Some((true, true)),
        Some((false, false)),
        Some((true, true)),
        None,
    ];
    assert_eq!(flags(A, a), want, "{}", net.dump());
    // The held side keeps playing what the holder sends (music on hold) but sends nothing.
    let want_b = vec![
        Some((true, true)),
        Some((false, true)),
        Some((true, true)),
        None,
    ];
    assert_eq!(flags(B, b), want_b);
    let Some((_, _, Some(p))) = net.uas[&A].media.first() else {
        panic!("no media start")
    };
    assert_eq!(p.codec.name, "opus");
    assert_eq!(p.remote.map(|r| r.ip()), Some(B.ip()));
}

#[test]
fn ringback_while_the_far_end_rings_and_ring_tone_while_we_ring() {
    let mut net = Net::pair();
    let (_a, b) = net.ring(A, B);
    assert_eq!(
        net.uas[&A].alerts.last().map(|x| (x.1, x.2)),
        Some((true, false))
    );
    assert_eq!(
        net.uas[&B].alerts.last().map(|x| (x.1, x.2)),
        Some((false, true))
    );
    net.cmd(B, Command::Answer { call: b });
    net.settle();
    assert_eq!(
        net.uas[&A].alerts.last().map(|x| (x.1, x.2)),
        Some((false, false))
    );
    assert_eq!(
        net.uas[&B].alerts.last().map(|x| (x.1, x.2)),
        Some((false, false))
    );
}

#[test]
fn hold_and_resume_from_the_caller() {
    let mut net = Net::pair();
    let (a, b) = net.establish(A, B);
    net.cmd(A, Command::Hold { call: a });
    net.settle();
    let reinv = net.sent(A, |p| p.is_reinvite());
    assert_eq!(reinv.len(), 1);
    assert_eq!(direction(reinv[0]), "sendonly");
    let ok = net.sent(B, |p| p.is_response(200, "INVITE"));
    assert_eq!(ok.len(), 2);
    assert_eq!(direction(ok[1]), "recvonly");
    assert_eq!(net.count(A, |p| p.is_request("ACK")), 2);
    let ea = net.last(A, a).unwrap();
    assert_eq!(ea.state, CallState::Held);
    assert_eq!(
        ea.hold,
        Some(HoldState {
            local: true,
            remote: false
        })
    );
    let eb = net.last(B, b).unwrap();
    assert_eq!(eb.state, CallState::Held);
    assert_eq!(
        eb.hold,
        Some(HoldState {
            local: false,
            remote: true
        })
    );

    net.cmd(A, Command::Resume { call: a });
    net.settle();
    let reinv = net.sent(A, |p| p.is_reinvite());
    assert_eq!(reinv.len(), 2);
    assert_eq!(direction(reinv[1]), "sendrecv");
    assert_eq!(
        direction(net.sent(B, |p| p.is_response(200, "INVITE"))[2]),
        "sendrecv"
    );
    assert_eq!(net.state(A, a), Some(CallState::Established));
    assert_eq!(net.state(B, b), Some(CallState::Established));
    // CSeq grows with every in-dialog request.
    let seqs: Vec<u32> = reinv
        .iter()
        .map(|p| p.msg.as_ref().unwrap().cseq().unwrap().0)
        .collect();
    assert!(seqs[0] > 1 && seqs[1] == seqs[0] + 1, "{seqs:?}");
    net.run(secs(40));
    assert_eq!(net.count(B, |p| p.is_response(200, "INVITE")), 3);
    assert!(net.errors(A).is_empty() && net.errors(B).is_empty());
}

#[test]
fn hold_and_resume_from_the_callee() {
    let mut net = Net::pair();
    let (a, b) = net.establish(A, B);
    net.cmd(B, Command::Hold { call: b });
    net.settle();
    let reinv = net.sent(B, |p| p.is_reinvite());
    assert_eq!(reinv.len(), 1);
    assert_eq!(reinv[0].to_addr(), Some(A), "re-INVITE goes to A's Contact");
    assert_eq!(direction(reinv[0]), "sendonly");
    let ok = net.sent(A, |p| p.is_response(200, "INVITE"));
    assert_eq!(ok.len(), 1);
    assert_eq!(direction(ok[0]), "recvonly");
    assert_eq!(net.count(B, |p| p.is_request("ACK")), 1);
    assert_eq!(
        net.last(B, b).unwrap().hold,
        Some(HoldState {
            local: true,
            remote: false
        })
    );
    assert_eq!(
        net.last(A, a).unwrap().hold,
        Some(HoldState {
            local: false,
            remote: true
        })
    );
    // A puts B on hold too: both flags, and A's offer is sendonly, B answers inactive.
    net.cmd(A, Command::Hold { call: a });
    net.settle();
    let last_ok = *net
        .sent(B, |p| p.is_response(200, "INVITE"))
        .last()
        .unwrap();
    assert_eq!(direction(last_ok), "inactive");
    let both = Some(HoldState {
        local: true,
        remote: true,
    });
    assert_eq!(net.last(A, a).unwrap().hold, both);
    assert_eq!(net.last(B, b).unwrap().hold, both);

    net.cmd(B, Command::Resume { call: b });
    net.cmd(A, Command::Resume { call: a });
    net.run(secs(10));
    assert_eq!(
        net.state(A, a),
        Some(CallState::Established),
        "{}",
        net.dump()
    );
    assert_eq!(net.state(B, b), Some(CallState::Established));
}

#[test]
fn reinvite_glare_gets_491_and_both_retry_after_2_1_to_4_s() {
    let mut net = Net::pair();
    let (a, b) = net.establish(A, B);
    let t0 = net.elapsed();
    net.cmd(A, Command::Hold { call: a });
    net.cmd(B, Command::Hold { call: b });
    net.settle();
    assert_eq!(net.count(A, |p| p.is_response(491, "INVITE")), 1);
    assert_eq!(net.count(B, |p| p.is_response(491, "INVITE")), 1);
    assert_eq!(net.state(A, a), Some(CallState::Established));
    net.run(secs(10));
    for (who, id) in [(A, a), (B, b)] {
        let reinv = net.sent(who, |p| p.is_reinvite());
        assert!(reinv.len() >= 2, "{}", net.dump());
        let wait = reinv[1].at - t0;
        assert!(
            wait >= ms(2100) && wait < secs(4),
            "{who} retried after {wait:?}"
        );
        assert_eq!(
            net.last(who, id).unwrap().hold,
            Some(HoldState {
                local: true,
                remote: true
            }),
            "{}",
            net.dump()
        );
    }
    // Every re-INVITE was answered and ACKed; nothing is pending.
    assert!(net.errors(A).is_empty() && net.errors(B).is_empty());
    net.run(secs(40));
    assert!(net.ua(A).next_deadline().is_none(), "{:?}", net.ua(A));
}

#[test]
fn lost_200_and_lost_ack_of_a_reinvite_are_recovered() {
    let mut net = Net::pair();
    let (a, b) = net.establish(A, B);
    net.drop_nth(1, |p| p.is_response(200, "INVITE"));
    net.drop_nth(1, |p| p.is_request("ACK"));
    let t0 = net.elapsed();
    net.cmd(A, Command::Hold { call: a });
    net.run(secs(40));
    let oks: Vec<Duration> = net
        .sent(B, |p| p.is_response(200, "INVITE"))
        .iter()
        .skip(1)
        .map(|p| p.at - t0)
        .collect();
    assert_eq!(oks, [ms(0), T1, T1 * 3], "{}", net.dump());
    // A retransmitted its re-INVITE once (timer A) before the 200 came; B did not answer it anew.
    let reinv = net.sent(A, |p| p.is_reinvite());
    assert_eq!(reinv.len(), 2);
    assert_eq!(reinv[0].bytes, reinv[1].bytes);
    assert_eq!(
        net.sent(A, |p| p.is_request("ACK")).len(),
        3,
        "initial ACK, the lost one, the repeat"
    );
    let held: Vec<CallEv> = net
        .call_events(A)
        .into_iter()
        .filter(|e| e.call == a && e.state == CallState::Held)
        .collect();
    assert_eq!(held.len(), 1, "one held event");
    assert_eq!(net.state(B, b), Some(CallState::Held));
    assert!(net.errors(A).is_empty() && net.errors(B).is_empty());
}

#[test]
fn call_through_a_proxy_answers_its_407_challenge() {
    let mut net = Net::new();
    let acct = Account {
        uri: "sip:alice@dialtone.test".into(),
        password: "secret".into(),
        outbound_proxy: RAW.to_string(),
        register: false,
        ..Account::default()
    };
    net.add(A, config(A), &[acct]);
    net.cmd(
        A,
        Command::Call {
            uri: "sip:bob@dialtone.test".into(),
            account: None,
        },
    );
    net.settle();
    let first = net.received(RAW, |p| p.is_initial_invite())[0].clone();
    assert!(
        first
            .header("Route")
            .is_some_and(|r| r.contains("127.0.0.1:5099") && r.contains(";lr"))
    );
    let challenge = auth::challenge_header("dialtone.test", "pnonce1", Algorithm::Md5, true);
    net.inject(
        RAW,
        A,
        raw_reply(
            &first,
            407,
            "Proxy Authentication Required",
            &[("Proxy-Authenticate", &challenge)],
            "",
        ),
    );
    net.settle();
    let invites = net.received(RAW, |p| p.is_initial_invite());
    assert_eq!(invites.len(), 2, "{}", net.dump());
    let second = invites[1].clone();
    let m1 = first.msg.as_ref().unwrap();
    let m2 = second.msg.as_ref().unwrap();
    assert_eq!(m2.cseq().unwrap().0, m1.cseq().unwrap().0 + 1);
    assert_eq!(m2.call_id().unwrap(), m1.call_id().unwrap());
    assert_ne!(
        m2.top_via().unwrap().branch(),
        m1.top_via().unwrap().branch()
    );
    let cred = Credentials::parse(second.header("Proxy-Authorization").unwrap()).unwrap();
    assert_eq!(cred.username, "alice");
    assert!(cred.verify("secret", "INVITE", &m2.body));
    // The 407 was ACKed within its transaction.
    let ack = net.received(RAW, |p| p.is_request("ACK"));
    assert_eq!(ack.len(), 1);
    assert_eq!(
        ack[0].msg.as_ref().unwrap().top_via().unwrap().branch(),
        m1.top_via().unwrap().branch()
    );

    let contact = format!("<sip:bob@{RAW}>");
    net.inject(
        RAW,
        A,
        raw_reply(&second, 180, "Ringing", &[("Contact", &contact)], ""),
    );
    net.inject(
        RAW,
        A,
        raw_reply(&second, 200, "OK", &[("Contact", &contact)], SDP_OFFER),
    );
    net.settle();
    let a = net.outgoing(A)[0];
    assert_eq!(
        net.states(A, a),
        [
            CallState::Calling,
            CallState::Ringing,
            CallState::Established
        ]
    );
    assert_eq!(net.received(RAW, |p| p.is_request("ACK")).len(), 2);
    net.cmd(A, Command::Hangup { call: a });
    net.settle();
    let bye = net.received(RAW, |p| p.is_request("BYE"));
    assert_eq!(bye.len(), 1);
    assert_eq!(
        bye[0].msg.as_ref().unwrap().request_uri(),
        Some("sip:bob@127.0.0.1:5099")
    );
}

#[test]
fn call_with_a_wrong_proxy_password_ends_with_the_407() {
    let mut net = Net::new();
    let acct = Account {
        uri: "sip:alice@dialtone.test".into(),
        password: "wrong".into(),
        outbound_proxy: RAW.to_string(),
        register: false,
        ..Account::default()
    };
    net.add(A, config(A), &[acct]);
    net.cmd(
        A,
        Command::Call {
            uri: "sip:bob@dialtone.test".into(),
            account: None,
        },
    );
    net.settle();
    let challenge = auth::challenge_header("dialtone.test", "pnonce1", Algorithm::Md5, true);
    for round in 0..2 {
        let inv = net.received(RAW, |p| p.is_initial_invite())[round].clone();
        net.inject(
            RAW,
            A,
            raw_reply(
                &inv,
                407,
                "Proxy Authentication Required",
                &[("Proxy-Authenticate", &challenge)],
                "",
            ),
        );
        net.settle();
    }
    let a = net.outgoing(A)[0];
    assert_eq!(net.ended(A, a), Some((EndReason::Error, Some(407))));
    assert_eq!(net.received(RAW, |p| p.is_initial_invite()).len(), 2);
    assert_eq!(net.received(RAW, |p| p.is_request("ACK")).len(), 2);
    assert_eq!(net.errors(A).len(), 1, "{:?}", net.errors(A));
}

#[test]
fn incoming_call_for_a_registered_account_names_the_account() {
    let mut net = registering("secret", 600, |_| {});
    net.add(B, config(B), &[]);
    net.settle();
    assert_eq!(net.reg_state(A), Some(RegistrationState::Registered));
    net.cmd(
        B,
        Command::Call {
            uri: format!("sip:alice@{A}"),
            account: None,
        },
    );
    net.settle();
    assert!(matches!(
        net.events(A).last(),
        Some(Event::Call {
            state: CallState::Ringing,
            ..
        })
    ));
    let inc = net
        .events(A)
        .into_iter()
        .find(|e| matches!(e, Event::Incoming { .. }));
    assert!(
        matches!(
            inc,
            Some(Event::Incoming {
                account: Some(crate::api::AccountId(0)),
                ..
            })
        ),
        "{inc:?}"
    );
    let ringing = net.sent(A, |p| p.is_response(180, "INVITE"))[0];
    assert_eq!(
        ringing.header("Contact"),
        Some("<sip:alice@127.0.0.1:5001>")
    );
}

#[test]
fn hold_on_a_call_that_is_not_up_is_an_error() {
    let mut net = Net::pair();
    let (a, _b) = net.ring(A, B);
    net.cmd(A, Command::Hold { call: a });
    net.settle();
    assert_eq!(net.errors(A).len(), 1);
    assert_eq!(net.count(A, |p| p.is_reinvite()), 0);
}

// =============================================================================================
// Registration
// =============================================================================================

#[test]
fn registration_answers_the_401_and_registers() {
    let mut net = registering("secret", 600, |_| {});
    net.settle();
    assert_eq!(
        net.registrations(A)
            .iter()
            .map(|r| (r.1, r.2))
            .collect::<Vec<_>>(),
        [
            (RegistrationState::Registering, None),
            (RegistrationState::Registered, Some(200))
        ]
    );
    let regs = net.sent(A, is_register);
    assert_eq!(regs.len(), 2);
    assert!(regs[0].header("Authorization").is_none());
    assert!(
        regs[1]
            .header("Authorization")
            .is_some_and(|v| v.contains("username=\"alice\""))
    );
    let m0 = regs[0].msg.as_ref().unwrap();
    let m1 = regs[1].msg.as_ref().unwrap();
    assert_eq!(m0.call_id().unwrap(), m1.call_id().unwrap());
    assert_eq!(m1.cseq().unwrap().0, m0.cseq().unwrap().0 + 1);
    assert_eq!(regs[0].header("Expires"), Some("600"));
    assert_eq!(net.count(REGISTRAR, |p| p.status() == Some(401)), 1);
    assert_eq!(
        net.registrar().bindings.keys().collect::<Vec<_>>(),
        ["sip:alice@127.0.0.1:5001"]
    );
}

#[test]
fn registration_is_refreshed_before_it_expires() {
    let mut net = registering("secret", 60, |_| {});
    net.run(secs(130));
    let regs: Vec<Duration> = net.sent(A, is_register).iter().map(|p| p.at).collect();
    // Initial pair at 0, then refreshes at 85 % of 60 s (51 s), answered with the known nonce.
    assert_eq!(
        regs,
        [secs(0), secs(0), secs(51), secs(102)],
        "{}",
        net.dump()
    );
    assert_eq!(net.count(REGISTRAR, |p| p.status() == Some(401)), 1);
    assert!(net.registrar().seen.iter().skip(1).all(|(_, auth)| *auth));
    let states: Vec<RegistrationState> = net.registrations(A).iter().map(|r| r.1).collect();
    assert_eq!(
        states[0..2],
        [
            RegistrationState::Registering,
            RegistrationState::Registered
        ]
    );
    assert!(
        states[2..]
            .iter()
            .all(|s| *s == RegistrationState::Registered),
        "a refresh never leaves the registered state: {states:?}"
    );
}

#[test]
fn wrong_password_fails_with_401_and_retries_with_back_off() {
    let mut net = registering("wrong", 600, |_| {});
    net.settle();
    assert_eq!(net.reg_state(A), Some(RegistrationState::Failed));
    assert_eq!(net.registrations(A).last().unwrap().2, Some(401));
    assert_eq!(
        net.count(A, is_register),
        2,
        "one try with credentials, then stop"
    );
    net.run(secs(40));
    let regs: Vec<Duration> = net.sent(A, is_register).iter().map(|p| p.at).collect();
    // Back-off 5 s, then 10 s, then 20 s; each retry answers the known challenge at once.
    assert_eq!(regs, [0, 0, 5, 15, 35].map(secs).to_vec(), "{}", net.dump());
    assert!(net.registrar().bindings.is_empty());
    let fails: Vec<Option<u16>> = net
        .registrations(A)
        .iter()
        .filter(|r| r.1 == RegistrationState::Failed)
        .map(|r| r.2)
        .collect();
    assert_eq!(fails, [Some(401); 4]);
}

#[test]
fn wrong_password_fails_also_when_the_registrar_changes_its_nonce() {
    let mut net = registering("wrong", 600, |r| r.fresh_nonce_on_failure = true);
    net.run(secs(1));
    assert_eq!(
        net.reg_state(A),
        Some(RegistrationState::Failed),
        "{}",
        net.dump()
    );
    assert_eq!(net.registrations(A).last().unwrap().2, Some(401));
    // No REGISTER storm: the first answer is challenged again, and that is the end of it.
    assert_eq!(net.count(A, is_register), 2, "{}", net.dump());
    net.run(secs(20));
    assert_eq!(net.reg_state(A), Some(RegistrationState::Failed));
    assert!(
        net.count(A, is_register) < 3 + 3 * 4,
        "back-off, not a storm"
    );
}

#[test]
fn refresh_works_with_a_registrar_that_accepts_each_nonce_once() {
    let mut net = registering("secret", 60, |r| r.one_time_nonces = true);
    net.run(secs(130));
    let regs: Vec<Duration> = net.sent(A, is_register).iter().map(|p| p.at).collect();
    // Every refresh answers a fresh challenge (a new nonce, not marked stale) and succeeds.
    assert_eq!(
        regs,
        [0, 0, 51, 51, 102, 102].map(secs).to_vec(),
        "{}",
        net.dump()
    );
    assert!(
        net.registrations(A)
            .iter()
            .skip(1)
            .all(|r| r.1 == RegistrationState::Registered)
    );
}

#[test]
fn interval_too_brief_423_raises_the_expiry_to_min_expires() {
    let mut net = registering("secret", 60, |r| r.min_expires = Some(120));
    net.run(secs(1));
    assert_eq!(net.reg_state(A), Some(RegistrationState::Registered));
    let asked: Vec<u32> = net.registrar().seen.iter().map(|s| s.0).collect();
    assert_eq!(asked, [60, 60, 120], "{}", net.dump());
    assert_eq!(net.count(REGISTRAR, |p| p.status() == Some(423)), 1);
    assert_eq!(
        net.registrar()
            .bindings
            .values()
            .copied()
            .collect::<Vec<_>>(),
        [120]
    );
    // The refresh follows the granted 120 s: 85 % is 102 s.
    net.run(secs(110));
    let refresh = net.sent(A, is_register).last().unwrap().at;
    assert_eq!(refresh, secs(102));
}

#[test]
fn unreachable_registrar_fails_after_timer_f_and_retries() {
    let mut net = registering("secret", 600, |_| {});
    net.drop_all(|p| p.to_addr() == Some(REGISTRAR));
    net.run(secs(37));
    let regs: Vec<Duration> = net.sent(A, is_register).iter().map(|p| p.at).collect();
    // Timer E: T1, 2T1, 4T1, then T2 (4 s) until timer F at 64*T1 = 32 s.
    let want: Vec<Duration> = [
        0u64, 500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500,
    ]
    .map(ms)
    .into_iter()
    .chain([secs(37)])
    .collect();
    assert_eq!(regs, want, "{}", net.dump());
    let r = net.registrations(A);
    assert_eq!(r[1], (secs(32), RegistrationState::Failed, None));
    assert_eq!(net.reg_state(A), Some(RegistrationState::Registering));
    // The network comes back: the retry registers.
    net.heal();
    net.run(secs(40));
    assert_eq!(
        net.reg_state(A),
        Some(RegistrationState::Registered),
        "{}",
        net.dump()
    );
}

#[test]
fn nat_seen_by_the_registrar_re_registers_the_public_contact() {
    let mut net = registering("secret", 600, |r| r.nat = Some(("192.0.2.7".into(), 40000)));
    net.run(secs(1));
    assert_eq!(
        net.reg_state(A),
        Some(RegistrationState::Registered),
        "{}",
        net.dump()
    );
    let regs = net.sent(A, is_register);
    let last = regs.last().unwrap().msg.as_ref().unwrap();
    let contacts = last.header_values("Contact");
    assert_eq!(
        contacts,
        [
            "<sip:alice@192.0.2.7:40000>",
            "<sip:alice@127.0.0.1:5001>;expires=0"
        ]
    );
    assert_eq!(
        net.registrar().bindings.keys().collect::<Vec<_>>(),
        ["sip:alice@192.0.2.7:40000"]
    );
    assert_eq!(
        net.registrations(A)
            .iter()
            .filter(|r| r.1 == RegistrationState::Registered)
            .count(),
        1
    );
}

#[test]
fn quit_unregisters_with_expires_0_then_stops() {
    let mut net = registering("secret", 600, |_| {});
    net.settle();
    assert_eq!(net.reg_state(A), Some(RegistrationState::Registered));
    net.run(secs(1));
    net.cmd(A, Command::Quit);
    net.settle();
    let last = *net.sent(A, is_register).last().unwrap();
    assert_eq!(last.header("Expires"), Some("0"));
    assert!(last.header("Authorization").is_some());
    assert!(net.registrar().bindings.is_empty());
    let ev = net.events(A);
    assert!(matches!(
        ev[ev.len() - 2],
        Event::Registration {
            state: RegistrationState::Unregistered,
            code: Some(200),
            ..
        }
    ));
    assert_eq!(ev.last(), Some(&Event::Stopped));
    assert!(net.ua(A).is_stopped());
    // Stopped means stopped: no refresh later.
    let n = net.count(A, is_register);
    net.run(secs(700));
    assert_eq!(net.count(A, is_register), n);
}

#[test]
fn quit_hangs_up_calls_and_stops_even_if_the_registrar_is_gone() {
    let mut net = registering("secret", 600, |_| {});
    net.add(B, config(B), &[]);
    net.settle();
    let (a, b) = net.establish(A, B);
    net.drop_all(|p| p.to_addr() == Some(REGISTRAR));
    net.cmd(A, Command::Quit);
    net.run(secs(10));
    assert_eq!(net.ended(A, a).map(|e| e.0), Some(EndReason::LocalHangup));
    assert_eq!(net.ended(B, b).map(|e| e.0), Some(EndReason::RemoteHangup));
    assert_eq!(net.events(A).last(), Some(&Event::Stopped));
    let stopped_at = net.uas[&A]
        .events
        .iter()
        .find(|(_, e)| *e == Event::Stopped)
        .unwrap()
        .0;
    assert!(stopped_at <= secs(4), "gives up within its quit deadline");
}

// =============================================================================================
// Several calls
// =============================================================================================

#[test]
fn two_calls_at_once_and_hanging_up_one_keeps_the_other() {
    let mut net = Net::pair();
    let (a1, b1) = net.establish(A, B);
    let (a2, b2) = net.establish(A, B);
    assert_ne!(a1, a2);
    assert_ne!(b1, b2);
    let invites = net.sent(A, |p| p.is_initial_invite());
    let call_id = |p: &Packet| p.msg.as_ref().unwrap().call_id().unwrap().to_string();
    assert_ne!(call_id(invites[0]), call_id(invites[1]));
    let port = |p: &Packet| {
        p.body()
            .lines()
            .find(|l| l.starts_with("m=audio"))
            .map(str::to_string)
    };
    assert_ne!(
        port(invites[0]),
        port(invites[1]),
        "each call has its RTP port"
    );

    net.cmd(A, Command::Hangup { call: a1 });
    net.run(secs(40));
    assert_eq!(net.ended(B, b1).map(|e| e.0), Some(EndReason::RemoteHangup));
    assert_eq!(net.state(A, a2), Some(CallState::Established));
    assert_eq!(net.state(B, b2), Some(CallState::Established));
    assert_eq!(net.live_calls(A), [(a2, CallState::Established)]);
    assert_eq!(net.live_calls(B), [(b2, CallState::Established)]);
    assert_eq!(net.count(A, |p| p.is_request("BYE")), 1);

    net.cmd(B, Command::Hangup { call: b2 });
    net.settle();
    assert_eq!(net.ended(A, a2).map(|e| e.0), Some(EndReason::RemoteHangup));
}

#[test]
fn three_agents_call_each_other() {
    let mut net = Net::pair();
    net.add(C, config(C), &[]);
    let (ab, ba) = net.establish(A, B);
    let (cb, bc) = net.establish(C, B);
    let (ca, ac) = net.establish(C, A);
    net.cmd(B, Command::Hold { call: bc });
    net.settle();
    assert_eq!(net.state(C, cb), Some(CallState::Held));
    assert_eq!(net.state(A, ab), Some(CallState::Established));
    assert_eq!(net.state(C, ca), Some(CallState::Established));
    net.cmd(A, Command::Hangup { call: ac });
    net.settle();
    assert_eq!(net.ended(C, ca).map(|e| e.0), Some(EndReason::RemoteHangup));
    assert_eq!(net.state(B, ba), Some(CallState::Established));
    assert_eq!(net.live_calls(B).len(), 2);
    net.cmd(B, Command::Stats);
    net.settle();
    let Some(Event::Stats { calls, .. }) = net.events(B).last().cloned() else {
        panic!("no stats");
    };
    assert_eq!(calls.len(), 2);
    assert!(calls.iter().all(|c| c.codec.is_some()));
}

// =============================================================================================
// Odd input
// =============================================================================================

#[test]
fn incoming_invite_with_broken_sdp_gets_488() {
    let mut net = Net::pair();
    net.inject(
        RAW,
        B,
        raw_request("INVITE", "z9hG4bKbad1", None, "", "this is not SDP\r\n"),
    );
    net.settle();
    assert!(net.incoming(B).is_empty());
    let r = net.received(RAW, |p| p.status().is_some());
    assert_eq!(r.len(), 1, "{}", net.dump());
    assert!(r[0].is_response(488, "INVITE"));
    // With nothing in common (only a codec we do not have) it is 488 too.
    let g729 = SDP_OFFER
        .replace("RTP/AVP 0 101", "RTP/AVP 18")
        .replace("a=rtpmap:0 PCMU/8000", "a=rtpmap:18 G729/8000");
    let mut req = raw_request("INVITE", "z9hG4bKbad2", None, "", &g729);
    req = req.replace("rawcall-1", "rawcall-2");
    net.inject(RAW, B, req);
    net.settle();
    assert_eq!(net.received(RAW, |p| p.is_response(488, "INVITE")).len(), 2);
    assert!(net.incoming(B).is_empty());
    // Not ACKed: timer G repeats the 488 until timer H, then B forgets it.
    net.run(secs(40));
    assert!(net.received(RAW, |p| p.is_response(488, "INVITE")).len() > 2);
    assert!(net.ua(B).next_deadline().is_none(), "{:?}", net.ua(B));
}

#[test]
fn incoming_invite_without_sdp_is_answered_with_an_offer_and_the_ack_carries_the_answer() {
    let mut net = Net::pair();
    net.inject(RAW, B, raw_request("INVITE", "z9hG4bKlate", None, "", ""));
    net.settle();
    let b = net.incoming(B)[0];
    assert_eq!(net.state(B, b), Some(CallState::Ringing));
    net.cmd(B, Command::Answer { call: b });
    net.settle();
    let ok = net.received(RAW, |p| p.is_response(200, "INVITE"));
    assert_eq!(ok.len(), 1);
    assert!(ok[0].body().contains("m=audio"), "B offers in the 200");
    assert_eq!(direction(ok[0]), "sendrecv");
    let tag = ok[0]
        .msg
        .as_ref()
        .unwrap()
        .to()
        .unwrap()
        .tag()
        .unwrap()
        .to_string();
    let answer = SDP_OFFER.replace("o=raw 1 1", "o=raw 1 2");
    net.inject(
        RAW,
        B,
        raw_request("ACK", "z9hG4bKlateack", Some(&tag), "", &answer),
    );
    net.run(secs(40));
    assert_eq!(net.state(B, b), Some(CallState::Established));
    assert_eq!(
        net.received(RAW, |p| p.is_response(200, "INVITE")).len(),
        1,
        "the ACK stopped the retransmissions"
    );
    assert!(net.errors(B).is_empty(), "{:?}", net.errors(B));
    net.cmd(B, Command::Stats);
    net.settle();
    let Some(Event::Stats { calls, .. }) = net.events(B).last().cloned() else {
        panic!("no stats");
    };
    assert_eq!(calls[0].codec.as_deref(), Some("PCMU/8000"));
    assert_eq!(calls[0].remote_media.as_deref(), Some("127.0.0.1:30000"));
}

#[test]
fn malformed_datagrams_never_panic() {
    let mut net = Net::pair();
    let junk: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"\r\n\r\n".to_vec(),
        b"hello".to_vec(),
        vec![0xff; 1500],
        (0..=255u8).collect(),
        b"INVITE sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bKx\r\nContent-Length: 500\r\n\r\nshort".to_vec(),
        b"SIP/2.0 200 OK\r\n\r\n".to_vec(),
        b"SIP/2.0 999 What\r\nVia: x\r\n\r\n".to_vec(),
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5002;branch=z9hG4bKnope\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: q\r\nCSeq: 1 INVITE\r\n\r\n".to_vec(),
        b"INVITE sip:bob@127.0.0.1 SIP/2.0\r\nVia: garbage\r\nFrom: x\r\nTo: y\r\nCall-ID: z\r\nCSeq: one INVITE\r\n\r\n".to_vec(),
        b"ACK sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bKack\r\n\r\n".to_vec(),
        raw_request("INVITE", "z9hG4bKnocid", None, "", SDP_OFFER)
            .replace("Call-ID: rawcall-1\r\n", "")
            .into_bytes(),
        raw_request("BYE", "", Some("t"), "", "")
            .replace(";branch=", "")
            .into_bytes(),
        raw_request("INVITE", "z9hG4bKbadcl", None, "", SDP_OFFER)
            .replace("Content-Length: ", "Content-Length: x")
            .into_bytes(),
        raw_request("INVITE", "z9hG4bKneg", None, "", "")
            .replace("CSeq: 1 INVITE", "CSeq: 4294967295 INVITE")
            .into_bytes(),
    ];
    for j in &junk {
        net.inject(RAW, B, j.clone());
        net.inject(RAW, A, j.clone());
    }
    net.run(secs(40));
    // Nothing rang except the one well-formed INVITE (the huge CSeq is legal); the INVITE
    // without Call-ID got a 400; nothing else got an answer and nobody reported anything.
    for ua in [A, B] {
        assert_eq!(net.incoming(ua).len(), 1, "{}", net.dump());
        assert_eq!(net.events(ua).len(), 2, "{:?}", net.events(ua));
        let answers: Vec<u16> = net
            .sent(ua, |p| p.to_addr() == Some(RAW))
            .iter()
            .filter_map(|p| p.status())
            .collect();
        assert_eq!(answers, [400, 100, 180], "{}", net.dump());
    }
}

#[test]
fn request_missing_headers_gets_400_when_it_has_a_via() {
    let mut net = Net::pair();
    let no_call_id = raw_request("INVITE", "z9hG4bKnocid", None, "", SDP_OFFER)
        .replace("Call-ID: rawcall-1\r\n", "");
    let only_via = format!(
        "OPTIONS sip:bob@{B} SIP/2.0\r\nVia: SIP/2.0/UDP {RAW};branch=z9hG4bKonly\r\nContent-Length: 0\r\n\r\n"
    );
    let no_via = raw_request("OPTIONS", "z9hG4bKnovia", None, "", "").replace(
        &format!("Via: SIP/2.0/UDP {RAW};branch=z9hG4bKnovia;rport\r\n"),
        "",
    );
    let no_contact = raw_request("INVITE", "z9hG4bKnoct", None, "", SDP_OFFER)
        .replace(&format!("Contact: <sip:raw@{RAW}>\r\n"), "");
    for m in [&no_call_id, &only_via, &no_via, &no_contact] {
        net.inject(RAW, B, m.clone());
    }
    net.settle();
    let r = net.received(RAW, |p| p.status().is_some());
    let codes: Vec<(u16, String)> = r
        .iter()
        .map(|p| {
            let via = p.header("Via").unwrap_or_default();
            (p.status().unwrap(), via.to_string())
        })
        .collect();
    assert_eq!(codes.len(), 3, "{codes:?}");
    assert!(codes.iter().all(|(c, _)| *c == 400), "{codes:?}");
    assert!(codes[0].1.contains("z9hG4bKnocid"));
    assert!(codes[1].1.contains("z9hG4bKonly"));
    assert!(codes[2].1.contains("z9hG4bKnoct"));
    assert!(net.incoming(B).is_empty());
}

#[test]
fn bye_for_an_unknown_dialog_gets_481() {
    let mut net = Net::pair();
    net.inject(
        RAW,
        B,
        raw_request("BYE", "z9hG4bKbye", Some("nosuch"), "", ""),
    );
    net.settle();
    let r = net.received(RAW, |p| p.status().is_some());
    assert_eq!(r.len(), 1);
    assert!(r[0].is_response(481, "BYE"));
    assert!(net.events(B).is_empty());
}

#[test]
fn options_gets_200_with_allow() {
    let mut net = Net::pair();
    net.inject(RAW, B, raw_request("OPTIONS", "z9hG4bKopt", None, "", ""));
    net.settle();
    let r = net.received(RAW, |p| p.status().is_some());
    assert_eq!(r.len(), 1);
    assert!(r[0].is_response(200, "OPTIONS"));
    let allow = r[0].header("Allow").unwrap_or_default();
    for m in ["INVITE", "ACK", "CANCEL", "BYE", "OPTIONS"] {
        assert!(allow.contains(m), "{allow}");
    }
    // A retransmitted OPTIONS gets the same answer from the transaction, not a new one.
    net.inject(RAW, B, raw_request("OPTIONS", "z9hG4bKopt", None, "", ""));
    net.settle();
    let r = net.received(RAW, |p| p.status().is_some());
    assert_eq!(r.len(), 2);
    assert_eq!(r[0].bytes, r[1].bytes);
    assert!(net.events(B).is_empty());
}

#[test]
fn cancel_that_is_never_answered_gives_up_after_64_t1() {
    let mut net = Net::pair();
    let (a, _b) = net.ring(A, B);
    // B vanishes while ringing: nothing it sends arrives any more.
    net.drop_all(|p| p.from == B);
    let t0 = net.elapsed();
    net.cmd(A, Command::Hangup { call: a });
    net.run(secs(60));
    assert_eq!(net.ended(A, a).map(|e| e.0), Some(EndReason::Cancelled));
    let cancels = net.sent(A, |p| p.is_request("CANCEL"));
    assert_eq!(
        cancels.last().unwrap().at - t0,
        ms(31500),
        "timer E until F"
    );
    // RFC 3261 9.1: 64*T1 after the CANCEL the INVITE transaction is given up as well.
    assert!(net.ua(A).call_states().is_empty(), "{:?}", net.ua(A));
    assert_eq!(net.ua(A).next_deadline(), None, "{:?}", net.ua(A));
}

#[test]
fn callee_hangs_up_while_ringing_and_declines() {
    let mut net = Net::pair();
    let (a, b) = net.ring(A, B);
    net.cmd(B, Command::Hangup { call: b });
    net.settle();
    assert_eq!(net.ended(B, b), Some((EndReason::Declined, Some(603))));
    assert_eq!(net.ended(A, a), Some((EndReason::Declined, Some(603))));
}

#[test]
fn quit_while_calling_out_cancels_and_stops() {
    let mut net = Net::pair();
    let (a, b) = net.ring(A, B);
    net.cmd(A, Command::Quit);
    net.settle();
    assert_eq!(net.ended(A, a).map(|e| e.0), Some(EndReason::Cancelled));
    assert_eq!(net.ended(B, b), Some((EndReason::Cancelled, Some(487))));
    assert_eq!(net.count(A, |p| p.is_request("CANCEL")), 1);
    assert_eq!(net.events(A).last(), Some(&Event::Stopped));
    // Commands after quit are refused with an error, not acted on.
    net.cmd(
        A,
        Command::Call {
            uri: format!("sip:x@{B}"),
            account: None,
        },
    );
    assert_eq!(net.count(A, |p| p.is_initial_invite()), 1);
}

#[test]
fn quit_with_nothing_to_do_stops_at_once() {
    let mut net = Net::pair();
    net.cmd(A, Command::Quit);
    net.settle();
    assert_eq!(net.events(A), [Event::Stopped]);
    assert!(net.log.is_empty());
}

#[test]
fn retransmitted_invite_rings_once() {
    let mut net = Net::pair();
    let inv = raw_request("INVITE", "z9hG4bKtwice", None, "", SDP_OFFER);
    net.inject(RAW, B, inv.clone());
    net.settle();
    net.inject(RAW, B, inv);
    net.settle();
    assert_eq!(net.incoming(B).len(), 1);
    let answers: Vec<u16> = net
        .received(RAW, |p| p.status().is_some())
        .iter()
        .filter_map(|p| p.status())
        .collect();
    assert_eq!(
        answers,
        [100, 180, 180],
        "the repeat gets the last response"
    );
}

#[test]
fn the_same_invite_arriving_by_two_paths_rings_once() {
    // A forking proxy may deliver one INVITE twice with different branches (8.2.2.2).
    let mut net = Net::pair();
    net.inject(
        RAW,
        B,
        raw_request("INVITE", "z9hG4bKpath1", None, "", SDP_OFFER),
    );
    net.inject(
        RAW,
        B,
        raw_request("INVITE", "z9hG4bKpath2", None, "", SDP_OFFER),
    );
    net.settle();
    assert_eq!(net.incoming(B).len(), 1, "{}", net.dump());
    let merged = net.received(RAW, |p| p.status() == Some(482));
    assert_eq!(merged.len(), 1, "{}", net.dump());
    assert!(merged[0].header("Via").unwrap().contains("z9hG4bKpath2"));
}

#[test]
fn cancel_and_in_dialog_requests_for_nothing_get_481() {
    let mut net = Net::pair();
    net.inject(RAW, B, raw_request("CANCEL", "z9hG4bKnoinv", None, "", ""));
    net.inject(
        RAW,
        B,
        raw_request("INVITE", "z9hG4bKnodlg", Some("nosuch"), "", SDP_OFFER),
    );
    net.inject(
        RAW,
        B,
        raw_request("INFO", "z9hG4bKinfo", Some("nosuch"), "", ""),
    );
    net.settle();
    let r: Vec<(u16, Method)> = net
        .received(RAW, |p| p.status().is_some())
        .iter()
        .map(|p| (p.status().unwrap(), p.cseq_method().unwrap()))
        .collect();
    assert_eq!(
        r,
        [
            (481, Method::Cancel),
            (481, Method::Invite),
            (481, Method::Info)
        ]
    );
    assert!(net.events(B).is_empty());
}

/// A calls RAW (a hand-driven callee), which answers at once; returns A's call.
fn call_raw(net: &mut Net) -> CallId {
    net.cmd(
        A,
        Command::Call {
            uri: format!("sip:raw@{RAW}"),
            account: None,
        },
    );
    net.settle();
    let inv = net.received(RAW, |p| p.is_initial_invite())[0].clone();
    let contact = format!("<sip:raw@{RAW}>");
    net.inject(
        RAW,
        A,
        raw_reply(&inv, 200, "OK", &[("Contact", &contact)], SDP_OFFER),
    );
    net.settle();
    let a = net.outgoing(A)[0];
    assert_eq!(net.state(A, a), Some(CallState::Established));
    a
}

#[test]
fn dtmf_goes_to_the_media_side_when_telephone_event_was_agreed() {
    let mut net = Net::new();
    net.add(A, config(A), &[]);
    let a = call_raw(&mut net);
    net.cmd(
        A,
        Command::Dtmf {
            call: a,
            digits: "12#".into(),
        },
    );
    net.settle();
    assert_eq!(net.uas[&A].dtmf.len(), 1);
    assert_eq!(net.uas[&A].dtmf[0].2, "12#");
    assert!(net.received(RAW, |p| p.is_request("INFO")).is_empty());
    net.cmd(
        A,
        Command::Dtmf {
            call: a,
            digits: "1x".into(),
        },
    );
    net.settle();
    assert_eq!(net.errors(A).len(), 1, "{:?}", net.errors(A));
}

#[test]
fn dtmf_without_telephone_event_goes_as_sip_info_and_info_dtmf_is_reported() {
    let mut net = Net::new();
    net.add(A, config(A), &[]);
    net.cmd(
        A,
        Command::Call {
            uri: format!("sip:raw@{RAW}"),
            account: None,
        },
    );
    net.settle();
    let inv = net.received(RAW, |p| p.is_initial_invite())[0].clone();
    let contact = format!("<sip:raw@{RAW}>");
    let no_events = "v=0\r\no=raw 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio 30000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n";
    net.inject(
        RAW,
        A,
        raw_reply(&inv, 200, "OK", &[("Contact", &contact)], no_events),
    );
    net.settle();
    let a = net.outgoing(A)[0];
    net.cmd(
        A,
        Command::Dtmf {
            call: a,
            digits: "5*".into(),
        },
    );
    net.settle();
    let infos = net.received(RAW, |p| p.is_request("INFO"));
    assert_eq!(infos.len(), 2, "{}", net.dump());
    assert!(infos[0].body().contains("Signal=5"), "{}", infos[0].body());
    assert!(infos[1].body().contains("Signal=*"));
    assert!(net.uas[&A].dtmf.is_empty());

    // The far end sends an INFO: it is answered 200 and reported.
    let ack = net.received(RAW, |p| p.is_request("ACK"))[0].clone();
    let m = ack.msg.as_ref().unwrap();
    let info = format!(
        "INFO sip:dialtone@{A} SIP/2.0\r\nVia: SIP/2.0/UDP {RAW};branch=z9hG4bKinfo1\r\n\
From: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: 5 INFO\r\n\
Content-Type: application/dtmf-relay\r\nContent-Length: 24\r\n\r\nSignal=7\r\nDuration=250\r\n",
        m.to().unwrap(),
        m.from().unwrap(),
        m.call_id().unwrap()
    );
    net.inject(RAW, A, info);
    net.settle();
    assert_eq!(net.received(RAW, |p| p.is_response(200, "INFO")).len(), 1);
    let dtmf: Vec<Event> = net
        .events(A)
        .into_iter()
        .filter(|e| matches!(e, Event::Dtmf { .. }))
        .collect();
    assert_eq!(
        dtmf,
        vec![Event::Dtmf {
            call: a,
            digit: '7',
            duration_ms: 250
        }]
    );
}

#[test]
fn hold_refused_by_the_far_end_keeps_the_call_up() {
    let mut net = Net::new();
    net.add(A, config(A), &[]);
    let a = call_raw(&mut net);
    net.cmd(A, Command::Hold { call: a });
    net.settle();
    let reinv = net.received(RAW, |p| p.is_reinvite())[0].clone();
    net.inject(
        RAW,
        A,
        raw_reply(&reinv, 488, "Not Acceptable Here", &[], ""),
    );
    net.settle();
    assert_eq!(net.state(A, a), Some(CallState::Established));
    assert_eq!(net.errors(A).len(), 1, "{:?}", net.errors(A));
    assert_eq!(net.received(RAW, |p| p.is_request("ACK")).len(), 2);
    // The user may try again.
    net.cmd(A, Command::Hold { call: a });
    net.settle();
    assert_eq!(net.received(RAW, |p| p.is_reinvite()).len(), 2);
}

#[test]
fn reinvite_answered_only_with_100_is_cancelled_after_64_t1_and_the_call_stays_up() {
    let mut net = Net::new();
    net.add(A, config(A), &[]);
    let a = call_raw(&mut net);
    net.cmd(A, Command::Hold { call: a });
    net.settle();
    let reinv = net.received(RAW, |p| p.is_reinvite())[0].clone();
    net.inject(RAW, A, raw_reply(&reinv, 100, "Trying", &[], ""));
    net.run(T1 * 64 + secs(1));
    // One CANCEL (retransmitted while unanswered), for the re-INVITE's transaction.
    let cancels = net.received(RAW, |p| p.is_request("CANCEL"));
    assert!(!cancels.is_empty(), "{}", net.dump());
    assert_eq!(cancels[0].at, T1 * 64, "{}", net.dump());
    let reinv_branch = reinv
        .msg
        .as_ref()
        .unwrap()
        .top_via()
        .unwrap()
        .branch()
        .map(str::to_string);
    for c in &cancels {
        assert_eq!(
            c.msg
                .as_ref()
                .unwrap()
                .top_via()
                .unwrap()
                .branch()
                .map(str::to_string),
            reinv_branch,
            "the CANCEL matches the re-INVITE's transaction"
        );
    }
    assert_eq!(net.state(A, a), Some(CallState::Established));
    assert_eq!(net.errors(A).len(), 1, "{:?}", net.errors(A));
    // The far end finally ends the re-INVITE: it is ACKed and the user may hold again.
    net.inject(
        RAW,
        A,
        raw_reply(&reinv, 487, "Request Terminated", &[], ""),
    );
    net.settle();
    net.cmd(A, Command::Hold { call: a });
    net.settle();
    assert_eq!(
        net.received(RAW, |p| p.is_reinvite()).len(),
        2,
        "{}",
        net.dump()
    );
}

#[test]
fn outgoing_call_ringing_for_three_minutes_is_cancelled_as_timeout() {
    let mut net = Net::pair();
    let (a, b) = net.ring(A, B);
    net.run(secs(181));
    assert_eq!(
        net.ended(A, a).map(|e| e.0),
        Some(EndReason::Timeout),
        "{}",
        net.dump()
    );
    assert_eq!(net.ended(B, b).map(|e| e.0), Some(EndReason::Cancelled));
    assert_eq!(net.count(A, |p| p.is_request("CANCEL")), 1);
}

#[test]
fn reinvite_without_sdp_is_answered_with_an_offer_and_the_ack_answer_can_hold() {
    let mut net = Net::new();
    net.add(A, config(A), &[]);
    let a = call_raw(&mut net);
    let ok = net.received(RAW, |p| p.is_request("ACK"))[0].clone();
    let m = ok.msg.as_ref().unwrap();
    let (from, to, call_id) = (
        m.to().unwrap().to_string(),
        m.from().unwrap().to_string(),
        m.call_id().unwrap().to_string(),
    );
    let reinvite = |method: &str, branch: &str, cseq: u32, body: &str| {
        let ctype = if body.is_empty() {
            ""
        } else {
            "Content-Type: application/sdp\r\n"
        };
        format!(
            "{method} sip:dialtone@{A} SIP/2.0\r\nVia: SIP/2.0/UDP {RAW};branch={branch}\r\n\
From: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\n\
Contact: <sip:raw@{RAW}>\r\n{ctype}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    net.inject(RAW, A, reinvite("INVITE", "z9hG4bKre1", 2, ""));
    net.settle();
    let ok = net.received(RAW, |p| p.is_response(200, "INVITE"));
    assert_eq!(ok.len(), 1, "{}", net.dump());
    assert!(ok[0].body().contains("m=audio"));
    // The answer in the ACK puts A on hold (sendonly from RAW).
    let hold = SDP_OFFER.replace("a=sendrecv", "a=sendonly");
    net.inject(RAW, A, reinvite("ACK", "z9hG4bKre1ack", 2, &hold));
    net.run(secs(10));
    assert_eq!(net.received(RAW, |p| p.is_response(200, "INVITE")).len(), 1);
    assert!(net.errors(A).is_empty(), "{:?}", net.errors(A));
    // The answer in the ACK holds A: the UI hears of it.
    let last = net.last(A, a).unwrap();
    assert_eq!(last.state, CallState::Held, "{}", net.dump());
    assert_eq!(
        last.hold,
        Some(HoldState {
            local: false,
            remote: true
        })
    );
    assert_eq!(net.ua(A).call_states(), [(a, CallState::Held)]);
}

#[test]
fn stats_report_codec_and_duration() {
    let mut net = Net::pair();
    let (a, _b) = net.establish(A, B);
    net.run(secs(10));
    net.cmd(A, Command::Stats);
    net.settle();
    let Some(Event::Stats { calls, .. }) = net.events(A).last().cloned() else {
        panic!("no stats");
    };
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].call, a);
    assert_eq!(calls[0].codec.as_deref(), Some("opus/48000/2"));
    assert!((calls[0].duration_s - 10.0).abs() < 1e-6);
    assert_eq!(calls[0].remote_media.as_deref(), Some("127.0.0.1:20000"));
}

#[test]
fn quit_answers_a_challenge_to_the_unregister_before_stopping() {
    let mut net = registering("secret", 600, |r| r.one_time_nonces = true);
    net.settle();
    assert_eq!(net.reg_state(A), Some(RegistrationState::Registered));
    net.cmd(A, Command::Quit);
    net.settle();
    let asked: Vec<(u32, bool)> = net.registrar().seen.clone();
    assert_eq!(asked, [(600, false), (600, true), (0, true), (0, true)]);
    assert!(net.registrar().bindings.is_empty(), "{}", net.dump());
    assert_eq!(net.events(A).last(), Some(&Event::Stopped));
}

#[test]
fn proxy_that_changes_its_nonce_on_every_407_does_not_get_an_invite_storm() {
    let mut net = Net::new();
    let acct = Account {
        uri: "sip:alice@dialtone.test".into(),
        password: "wrong".into(),
        outbound_proxy: RAW.to_string(),
        register: false,
        ..Account::default()
    };
    net.add(A, config(A), &[acct]);
    net.cmd(
        A,
        Command::Call {
            uri: "sip:bob@dialtone.test".into(),
            account: None,
        },
    );
    net.settle();
    for round in 0..10 {
        let invites = net.received(RAW, |p| p.is_initial_invite());
        let Some(inv) = invites.get(round).map(|p| (*p).clone()) else {
            break;
        };
        let challenge = auth::challenge_header(
            "dialtone.test",
            &format!("pnonce{round}"),
            Algorithm::Md5,
            true,
        );
        net.inject(
            RAW,
            A,
            raw_reply(
                &inv,
                407,
                "Proxy Authentication Required",
                &[("Proxy-Authenticate", &challenge)],
                "",
            ),
        );
        net.settle();
    }
    let a = net.outgoing(A)[0];
    assert_eq!(net.ended(A, a), Some((EndReason::Error, Some(407))));
    // The answer to the first challenge met a new one: wrong credentials, no third INVITE.
    assert_eq!(net.received(RAW, |p| p.is_initial_invite()).len(), 2);
}

#[test]
fn after_a_nat_rewrite_calls_carry_the_public_contact() {
    let mut net = registering("secret", 600, |r| r.nat = Some(("192.0.2.7".into(), 40000)));
    net.add(B, config(B), &[]);
    net.settle();
    assert_eq!(net.reg_state(A), Some(RegistrationState::Registered));
    net.cmd(
        A,
        Command::Call {
            uri: format!("sip:bob@{B}"),
            account: None,
        },
    );
    net.settle();
    let inv = net.sent(A, |p| p.is_initial_invite())[0];
    assert_eq!(inv.to_addr(), Some(B));
    assert_eq!(inv.header("Contact"), Some("<sip:alice@192.0.2.7:40000>"));
}

// =============================================================================================
// SDES-SRTP (RTP/SAVP)
// =============================================================================================

fn srtp_pair(a: MediaEncryption, b: MediaEncryption) -> Net {
    let mut net = Net::new();
    net.add(
        A,
        Config {
            media_encryption: a,
            ..config(A)
        },
        &[],
    );
    net.add(
        B,
        Config {
            media_encryption: b,
            ..config(B)
        },
        &[],
    );
    net
}

/// The media parameters last announced for a call.
fn last_media(net: &Net, addr: SocketAddr) -> MediaParams {
    net.uas[&addr]
        .media
        .iter()
        .rev()
        .find_map(|(_, _, p)| p.clone())
        .expect("media announced")
}

#[test]
fn srtp_offer_is_answered_with_srtp_and_both_sides_hold_mirrored_keys_through_hold() {
    // B has no SRTP setting: an RTP/SAVP offer is answered with SRTP anyway.
    let mut net = srtp_pair(MediaEncryption::SdesMandatory, MediaEncryption::None);
    let (a, _) = net.establish(A, B);
    let invite = net.sent(A, |p| p.is_initial_invite());
    let body = invite[0].body();
    assert!(body.contains("RTP/SAVP"), "{body}");
    assert_eq!(body.matches("a=crypto:").count(), 2, "{body}");
    let ok = net.sent(B, |p| p.is_response(200, "INVITE"))[0].body();
    assert!(ok.contains("RTP/SAVP"), "{ok}");
    assert_eq!(ok.matches("a=crypto:").count(), 1, "{ok}");
    let (ma, mb) = (last_media(&net, A), last_media(&net, B));
    let (sa, sb) = (ma.srtp.clone().unwrap(), mb.srtp.clone().unwrap());
    assert_eq!(sa.local, sb.remote);
    assert_eq!(sa.remote, sb.local);
    assert_ne!(sa.local.key, sa.remote.key);
    // Keys never appear in events.
    let key = sa.local.value();
    let key = key.rsplit(':').next().unwrap();
    for addr in [A, B] {
        for e in net.events(addr) {
            assert!(!format!("{e:?}").contains(key), "{e:?}");
        }
    }

    net.cmd(A, Command::Hold { call: a });
    net.settle();
    net.cmd(A, Command::Resume { call: a });
    net.settle();
    let reinv = net.sent(A, |p| p.is_reinvite());
    assert_eq!(reinv.len(), 2);
    for r in &reinv {
        let body = r.body();
        assert!(body.contains("RTP/SAVP"), "{body}");
        assert!(body.contains(&sa.local.sdp_line()), "same key: {body}");
    }
    assert_eq!(last_media(&net, A).srtp, Some(sa));
    assert_eq!(last_media(&net, B).srtp, Some(sb));
    assert!(net.errors(A).is_empty() && net.errors(B).is_empty());
}

#[test]
fn srtp_mandatory_callee_refuses_a_plain_offer_with_488() {
    let mut net = srtp_pair(MediaEncryption::None, MediaEncryption::SdesMandatory);
    net.cmd(
        A,
        Command::Call {
            uri: format!("sip:x@{B}"),
            account: None,
        },
    );
    net.settle();
    let a = net.outgoing(A)[0];
    assert_eq!(net.count(B, |p| p.is_response(488, "INVITE")), 1);
    assert!(net.incoming(B).is_empty());
    assert_eq!(net.ended(A, a), Some((EndReason::Error, Some(488))));
    assert!(
        net.errors(B)[0].contains("SRTP is mandatory"),
        "{:?}",
        net.errors(B)
    );
}

#[test]
fn srtp_optional_caller_goes_plain_but_mandatory_caller_hangs_up_on_a_plain_answer() {
    // A peer that answers an RTP/SAVP offer with RTP/AVP (not RFC 4568, but it happens).
    for (setting, plain_ok) in [
        (MediaEncryption::Sdes, true),
        (MediaEncryption::SdesMandatory, false),
    ] {
        let mut net = srtp_pair(setting, MediaEncryption::None);
        net.cmd(
            A,
            Command::Call {
                uri: format!("sip:x@{RAW}"),
                account: None,
            },
        );
        net.settle();
        let invite = net.received(RAW, |p| p.is_initial_invite())[0].clone();
        assert!(invite.body().contains("RTP/SAVP"));
        let answer = "v=0\r\no=- 1 1 IN IP4 127.0.0.9\r\ns=-\r\nc=IN IP4 127.0.0.9\r\nt=0 0\r\n\
                      m=audio 30000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n";
        let ok = raw_reply(
            &invite,
            200,
            "OK",
            &[("Contact", &format!("<sip:raw@{RAW}>"))],
            answer,
        );
        net.inject(RAW, A, ok);
        net.settle();
        let a = net.outgoing(A)[0];
        if plain_ok {
            assert_eq!(net.state(A, a), Some(CallState::Established));
            assert_eq!(last_media(&net, A).srtp, None);
        } else {
            assert_eq!(net.ended(A, a), Some((EndReason::Error, None)));
            assert_eq!(net.count(A, |p| p.is_request("BYE")), 1);
            assert!(
                net.errors(A)[0].contains("did not agree to SRTP"),
                "{:?}",
                net.errors(A)
            );
        }
    }
}

// =============================================================================================
// Do-not-disturb
// =============================================================================================

#[test]
fn do_not_disturb_refuses_a_call_with_486_at_once_without_ringing() {
    let mut net = Net::new();
    net.add(A, config(A), &[]);
    let dnd = Config {
        do_not_disturb: true,
        ..config(B)
    };
    net.add(B, dnd, &[]);
    net.cmd(
        A,
        Command::Call {
            uri: format!("sip:x@{B}"),
            account: None,
        },
    );
    net.settle();
    assert_eq!(net.count(B, |p| p.is_response(180, "INVITE")), 0);
    assert_eq!(net.count(B, |p| p.is_response(486, "INVITE")), 1);
    let ev = net.events(B);
    let [
        Event::IncomingRefused {
            code: 486,
            reason,
            account: None,
            from,
            ..
        },
    ] = ev.as_slice()
    else {
        panic!("one refusal and nothing else: {ev:?}");
    };
    assert_eq!(reason, "do-not-disturb");
    assert!(from.contains("dialtone@"), "{from}");
    assert!(net.uas[&B].alerts.is_empty(), "no ring tone");
    assert!(net.uas[&B].media.is_empty());
    assert!(net.live_calls(B).is_empty());
    let a = net.outgoing(A)[0];
    assert_eq!(net.ended(A, a), Some((EndReason::Busy, Some(486))));
    // The 486 is acknowledged and not sent again.
    net.run(secs(40));
    assert_eq!(net.count(B, |p| p.is_response(486, "INVITE")), 1);
}

#[test]
fn do_not_disturb_and_auto_answer_set_by_reconfigure_apply_to_the_next_call() {
    let mut net = Net::pair();
    let with = |dnd: bool, auto: bool| Command::Reconfigure {
        settings: Box::new(Settings {
            do_not_disturb: dnd,
            auto_answer: auto,
            ..Settings::default()
        }),
    };
    let call = |net: &mut Net| {
        net.cmd(
            A,
            Command::Call {
                uri: format!("sip:x@{B}"),
                account: None,
            },
        );
        net.settle();
        *net.outgoing(A).last().unwrap()
    };
    net.cmd(B, with(true, false));
    let a1 = call(&mut net);
    assert_eq!(net.ended(A, a1), Some((EndReason::Busy, Some(486))));
    assert!(net.incoming(B).is_empty());
    net.cmd(B, with(false, true));
    let a2 = call(&mut net);
    assert_eq!(net.state(A, a2), Some(CallState::Established));
    assert_eq!(net.incoming(B).len(), 1);
    let refused = net
        .events(B)
        .iter()
        .filter(|e| matches!(e, Event::IncomingRefused { .. }))
        .count();
    assert_eq!(refused, 1);
}

// =============================================================================================
// Reconfigure: accounts compared by index
// =============================================================================================

/// The registration events of `addr`: (when, account, state, aor).
fn account_events(net: &Net, addr: SocketAddr) -> Vec<(Duration, u32, RegistrationState, String)> {
    net.uas[&addr]
        .events
        .iter()
        .filter_map(|(at, e)| match e {
            Event::Registration {
                account,
                state,
                aor,
                ..
            } => Some((*at, account.0, *state, aor.clone())),
            _ => None,
        })
        .collect()
}

fn reconfigure(net: &mut Net, addr: SocketAddr, accounts: Vec<Account>) {
    net.cmd(
        addr,
        Command::Reconfigure {
            settings: Box::new(Settings {
                accounts,
                ..Settings::default()
            }),
        },
    );
}

/// A with alice (and bob, if `two`) registered at a registrar that knows alice, bob and carol.
fn registered_accounts(two: bool) -> Net {
    let mut net = Net::new();
    net.add_registrar(Registrar::new(&[
        ("alice", "secret"),
        ("bob", "bobpw"),
        ("carol", "carolpw"),
    ]));
    let mut accounts = vec![account("alice", "secret", 600)];
    if two {
        accounts.push(account("bob", "bobpw", 600));
    }
    net.add(A, config(A), &accounts);
    net.settle();
    assert_eq!(
        net.registrar().bindings.len(),
        accounts.len(),
        "{}",
        net.dump()
    );
    net.run(secs(1));
    net
}

fn bindings(net: &mut Net) -> Vec<String> {
    net.registrar().bindings.keys().cloned().collect()
}

#[test]
fn reconfigure_leaves_unchanged_accounts_registered_and_sends_nothing() {
    let mut net = registered_accounts(true);
    let (regs, events) = (net.count(A, is_register), account_events(&net, A).len());
    reconfigure(
        &mut net,
        A,
        vec![
            account("alice", "secret", 600),
            account("bob", "bobpw", 600),
        ],
    );
    net.run(secs(5));
    assert_eq!(net.count(A, is_register), regs);
    assert_eq!(account_events(&net, A).len(), events);
    assert_eq!(bindings(&mut net).len(), 2);
}

#[test]
fn a_changed_account_is_unregistered_then_registered_anew_once_the_old_binding_is_gone() {
    let mut net = registered_accounts(false);
    let before = net.log.len();
    let since = net.elapsed();
    reconfigure(&mut net, A, vec![account("bob", "bobpw", 600)]);
    net.settle();
    assert_eq!(bindings(&mut net), ["sip:bob@127.0.0.1:5001"]);
    let regs: Vec<&Packet> = net.log[before..]
        .iter()
        .filter(|p| p.from == A && is_register(p))
        .collect();
    assert_eq!(regs[0].header("Expires"), Some("0"));
    assert!(regs[0].header("To").unwrap().contains("alice"));
    // Bob's first REGISTER leaves only after the registrar took alice's binding away.
    let unregistered_at = net.log[before..]
        .iter()
        .position(|p| p.from == REGISTRAR && p.status() == Some(200))
        .unwrap();
    let bob_first = net.log[before..]
        .iter()
        .position(|p| {
            p.from == A && is_register(p) && p.header("To").is_some_and(|t| t.contains("bob"))
        })
        .unwrap();
    assert!(bob_first > unregistered_at, "{}", net.dump());
    let states: Vec<(u32, RegistrationState, String)> = account_events(&net, A)
        .into_iter()
        .filter(|e| e.0 >= since)
        .map(|e| (e.1, e.2, e.3))
        .collect();
    let bob = "sip:bob@dialtone.test".to_string();
    assert_eq!(
        states,
        [
            (0, RegistrationState::Registering, bob.clone()),
            (0, RegistrationState::Registered, bob)
        ]
    );
}

#[test]
fn a_changed_account_with_the_same_binding_keeps_it() {
    // Only the lifetime changes: same AOR, same Contact. The old binding's removal must come
    // before the new registration, or it would remove the new binding.
    let mut net = registered_accounts(false);
    // The un-REGISTER is lost once: its retransmission comes T1 later.
    net.drop_nth(1, |p| is_register(p) && p.header("Expires") == Some("0"));
    reconfigure(&mut net, A, vec![account("alice", "secret", 300)]);
    net.run(secs(2));
    assert_eq!(
        net.registrar().bindings.get("sip:alice@127.0.0.1:5001"),
        Some(&300)
    );
    assert_eq!(net.reg_state(A), Some(RegistrationState::Registered));
}

#[test]
fn a_removed_account_is_unregistered_and_reported_so_and_its_call_goes_on() {
    let mut net = registered_accounts(true);
    net.add(B, config(B), &[]);
    // A call through bob (account 1), to a peer on this machine.
    net.cmd(
        A,
        Command::Call {
            uri: format!("sip:x@{B}"),
            account: Some(crate::api::AccountId(1)),
        },
    );
    net.settle();
    let b = net.incoming(B)[0];
    net.cmd(B, Command::Answer { call: b });
    net.settle();
    let a = net.outgoing(A)[0];
    assert_eq!(net.state(A, a), Some(CallState::Established));
    let since = net.elapsed();
    let alice_regs = net.count(A, |p| {
        is_register(p) && p.header("To").is_some_and(|t| t.contains("alice"))
    });
    reconfigure(&mut net, A, vec![account("alice", "secret", 600)]);
    net.settle();
    assert_eq!(bindings(&mut net), ["sip:alice@127.0.0.1:5001"]);
    let last = *net.sent(A, is_register).last().unwrap();
    assert_eq!(last.header("Expires"), Some("0"));
    assert!(last.header("To").unwrap().contains("bob"));
    let after: Vec<(u32, RegistrationState)> = account_events(&net, A)
        .into_iter()
        .filter(|e| e.0 >= since)
        .map(|e| (e.1, e.2))
        .collect();
    assert_eq!(after, [(1, RegistrationState::Unregistered)]);
    let alice_now = net.count(A, |p| {
        is_register(p) && p.header("To").is_some_and(|t| t.contains("alice"))
    });
    assert_eq!(alice_now, alice_regs, "alice is left alone");
    // The call of the removed account is still up and can be held (its Contact is direct now).
    net.cmd(A, Command::Hold { call: a });
    net.settle();
    let reinvite = *net.sent(A, |p| p.is_reinvite()).last().unwrap();
    assert_eq!(
        reinvite.header("Contact"),
        Some("<sip:dialtone@127.0.0.1:5001>")
    );
    assert_eq!(net.state(A, a), Some(CallState::Held));
}

#[test]
fn a_new_account_registers_and_one_turned_off_is_unregistered() {
    let mut net = registered_accounts(false);
    let since = net.elapsed();
    let off = Account {
        register: false,
        ..account("alice", "secret", 600)
    };
    reconfigure(&mut net, A, vec![off, account("carol", "carolpw", 600)]);
    net.settle();
    assert_eq!(bindings(&mut net), ["sip:carol@127.0.0.1:5001"]);
    let after: Vec<(u32, RegistrationState)> = account_events(&net, A)
        .into_iter()
        .filter(|e| e.0 >= since)
        .map(|e| (e.1, e.2))
        .collect();
    assert_eq!(
        after,
        [
            (0, RegistrationState::Unregistered),
            (1, RegistrationState::Registering),
            (1, RegistrationState::Registered),
        ]
    );
    // Account 0 stays off: no refresh of it later.
    let alice = |p: &Packet| is_register(p) && p.header("To").is_some_and(|t| t.contains("alice"));
    let n = net.count(A, alice);
    net.run(secs(1200));
    assert_eq!(net.count(A, alice), n);
    assert_eq!(bindings(&mut net), ["sip:carol@127.0.0.1:5001"]);
}

#[test]
fn quit_during_a_reconfiguration_waits_for_the_old_binding_to_go() {
    let mut net = registered_accounts(false);
    reconfigure(&mut net, A, vec![]);
    net.cmd(A, Command::Quit);
    net.settle();
    assert!(bindings(&mut net).is_empty());
    assert_eq!(net.events(A).last(), Some(&Event::Stopped));
}

#[test]
fn settings_with_a_bad_account_change_nothing() {
    let mut net = registered_accounts(false);
    let regs = net.count(A, is_register);
    let bad = Account {
        uri: "not a uri".into(),
        ..Account::default()
    };
    reconfigure(&mut net, A, vec![account("bob", "bobpw", 600), bad]);
    net.settle();
    assert_eq!(net.count(A, is_register), regs);
    assert!(
        net.errors(A)[0].contains("settings not applied"),
        "{:?}",
        net.errors(A)
    );
}

#[test]
fn a_loopback_address_is_dialled_directly_unless_the_account_server_is_local() {
    let mut net = Net::new();
    let remote = Account {
        uri: "sip:alice@example.net".into(),
        registrar: "192.0.2.10:5060".into(),
        outbound_proxy: "192.0.2.10:5060".into(),
        register: false,
        ..Account::default()
    };
    net.add(A, config(A), &[remote]);
    net.add(B, config(B), &[]);
    net.cmd(
        A,
        Command::Call {
            uri: format!("sip:echo@{B}"),
            account: None,
        },
    );
    net.settle();
    let invites = net.sent(A, |p| p.is_initial_invite());
    assert_eq!(invites.len(), 1);
    assert_eq!(
        invites[0].to_addr(),
        Some(B),
        "not through the account's proxy"
    );
    assert!(invites[0].header("From").unwrap().contains("dialtone@"));
    assert!(invites[0].header("Route").is_none());
    assert_eq!(net.incoming(B).len(), 1);
}
