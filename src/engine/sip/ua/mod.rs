//! The user agent: every account's registration, every call, and the transactions under them.
//!
//! Sans-IO in the str0m manner: the runtime feeds it datagrams/frames (`handle_packet`), user
//! commands (`handle_command`) and the time (`handle_timeout`), then drains `poll_output()` for
//! packets to send and events for the UI, and sleeps until `next_deadline()`. Nothing here
//! touches a socket or reads a clock, so every flow is testable with a fake clock.
//!
//! This file routes (packets to transactions, responses to their owners, commands) and keeps the
//! time; the SIP behaviour is split by concept: `register` (REGISTER), `outgoing` (dialling),
//! `incoming` (requests that belong to calls, answering), `in_dialog` (BYE, hold/resume, call
//! timers), `reconfigure` (new settings while running). Every call phase change still goes
//! through `Call::set_phase` / `Call::end`.

use super::call::{Call, PendingOk, PendingReinvite, Phase, RING_LIMIT};
use super::client_auth::ClientAuth;
use super::dialog::Dialog;
use super::message::{Message, Method};
use super::registration::{RegOutcome, Registration};
use super::sdp::{self, LocalMedia, MediaDirection, SessionDescription};
use super::transaction::{ClientTx, ServerTx, State as TxState, Timers, TxOutput};
use super::transport::Target;
use super::uri::{NameAddr, Uri};
use crate::api::{
    AccountId, CallId, CallState, Command, Direction, EndReason, Event, RegistrationState,
};
use crate::engine::media::stream::MediaParams;
use crate::store::settings::{Account, MediaEncryption, Settings, Transport};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

mod in_dialog;
mod incoming;
mod outgoing;
mod reconfigure;
mod register;

const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE";

/// What the user agent needs to know about its surroundings.
#[derive(Debug, Clone)]
pub struct Config {
    pub user_agent: String,
    pub timers: Timers,
    pub auto_answer: bool,
    pub rtp_ports: (u16, u16),
    /// The address we put in Via, Contact and SDP, with the port we listen on (UDP and TCP).
    pub local: SocketAddr,
    /// Audio codecs we offer and accept, in order of preference (`opus`, `PCMU`, `PCMA`).
    pub codecs: Vec<String>,
    /// SRTP for calls that belong to no account.
    pub media_encryption: MediaEncryption,
    /// Refuse every incoming call at once with 486 (do-not-disturb).
    pub do_not_disturb: bool,
}

impl Config {
    pub fn from_settings(s: &Settings, local: SocketAddr) -> Result<Config, String> {
        Ok(Config {
            user_agent: s.user_agent.clone(),
            timers: Timers::default(),
            auto_answer: s.auto_answer,
            rtp_ports: s.rtp_port_range().map_err(|e| e.to_string())?,
            local,
            codecs: s.codecs.clone(),
            media_encryption: s.media_encryption,
            do_not_disturb: s.do_not_disturb,
        })
    }
}

/// What the runtime must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    Transmit {
        target: Target,
        bytes: Vec<u8>,
    },
    Event(Event),
    /// A call's media starts or changes (hold, resume, new codec or address).
    Media {
        call: CallId,
        params: MediaParams,
    },
    /// Send these DTMF digits as RFC 4733 telephone-events in the call's RTP stream.
    Dtmf {
        call: CallId,
        digits: String,
    },
    /// Call progress sounds: ringback (an outgoing call rings without early media), ring tone
    /// (an incoming call rings).
    Alerts {
        ringback: bool,
        ring: bool,
    },
    /// A call's media stops.
    MediaStop {
        call: CallId,
    },
}

struct AccountEntry {
    id: AccountId,
    /// A REGISTER waits for the un-REGISTER of this account's previous settings (the
    /// `retiring` serial) to end, so the old binding's removal cannot remove the new one.
    after: Option<u64>,
    cfg: Account,
    aor: Uri,
    user: String,
    /// First hop for the account's requests (outbound proxy, else registrar, else domain).
    proxy: Target,
    reg: Registration,
}

impl AccountEntry {
    /// An account as the settings give it, not registered yet; Err says why it is unusable.
    fn new(id: AccountId, a: &Account) -> Result<AccountEntry, String> {
        let aor =
            Uri::parse(&a.uri).map_err(|_| format!("account {}: bad URI {:?}", id.0 + 1, a.uri))?;
        let user = if a.auth_user.is_empty() {
            aor.user.clone().unwrap_or_default()
        } else {
            a.auth_user.clone()
        };
        let domain = Target::for_uri(&aor, a.transport);
        let proxy = Target::parse(&a.outbound_proxy, a.transport)
            .or_else(|| Target::parse(&a.registrar, a.transport))
            .unwrap_or(domain);
        let reg = Registration::new(a.expires, ClientAuth::new(&user, &a.password));
        Ok(AccountEntry {
            id,
            after: None,
            cfg: a.clone(),
            aor,
            user,
            proxy,
            reg,
        })
    }
}

#[derive(Debug, Clone)]
enum Owner {
    Register(AccountId),
    /// The un-REGISTER of an account taken out by a reconfiguration (its `retiring` serial).
    Unregister(u64),
    Invite(CallId),
    Cancel,
    Bye(CallId),
    Reinvite(CallId),
    /// An INFO carrying DTMF: nothing to do with its response.
    Info,
}

struct ClientEntry {
    tx: ClientTx,
    owner: Owner,
    target: Target,
}

struct ServerEntry {
    tx: ServerTx,
    target: Target,
    /// A terminated INVITE transaction (2xx sent) is kept this long to absorb retransmissions.
    keep_until: Option<Instant>,
}

pub struct UserAgent {
    cfg: Config,
    accounts: Vec<AccountEntry>,
    /// Accounts removed or replaced by a reconfiguration, kept until their un-REGISTER ends.
    retiring: BTreeMap<u64, AccountEntry>,
    next_retiring: u64,
    calls: BTreeMap<CallId, Call>,
    next_call: u64,
    client: HashMap<String, ClientEntry>,
    server: HashMap<String, ServerEntry>,
    out: VecDeque<Output>,
    next_rtp: u16,
    quit_deadline: Option<Instant>,
    /// Media as last announced to the runtime, per call.
    media: BTreeMap<CallId, MediaParams>,
    /// Alerts as last announced (ringback, ring).
    alerts: (bool, bool),
    stopped: bool,
}

/// A host that is this machine's loopback (`127.0.0.0/8`, `::1`, `localhost`).
fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn tx_key(branch: &str, method: &Method) -> String {
    format!("{branch}|{method}")
}

fn new_branch() -> String {
    format!("z9hG4bK{:016x}", rand::random::<u64>())
}

fn reason_phrase(code: u16) -> &'static str {
    match code {
        100 => "Trying",
        180 => "Ringing",
        200 => "OK",
        400 => "Bad Request",
        405 => "Method Not Allowed",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        491 => "Request Pending",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        603 => "Decline",
        _ => "Unknown",
    }
}

impl UserAgent {
    pub fn new(cfg: Config, accounts: &[Account]) -> UserAgent {
        let next_rtp = cfg.rtp_ports.0 + (cfg.rtp_ports.0 % 2);
        let mut ua = UserAgent {
            cfg,
            accounts: Vec::new(),
            retiring: BTreeMap::new(),
            next_retiring: 0,
            calls: BTreeMap::new(),
            next_call: 1,
            client: HashMap::new(),
            server: HashMap::new(),
            out: VecDeque::new(),
            next_rtp,
            quit_deadline: None,
            media: BTreeMap::new(),
            alerts: (false, false),
            stopped: false,
        };
        for (i, a) in accounts.iter().enumerate() {
            match AccountEntry::new(AccountId(i as u32), a) {
                Ok(entry) => ua.accounts.push(entry),
                Err(message) => ua.emit(Event::Error { message }),
            }
        }
        ua
    }

    /// The position in `accounts` of the account `id`, if it (still) exists.
    fn account_index(&self, id: AccountId) -> Option<usize> {
        self.accounts.iter().position(|a| a.id == id)
    }

    /// Starts registrations; call once when the transports are up.
    pub fn start(&mut self, now: Instant) {
        for i in 0..self.accounts.len() {
            if self.accounts[i].cfg.register {
                self.send_register(i, now);
            }
        }
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        let txs = self.client.values().filter_map(|e| e.tx.next_deadline());
        let stx = self.server.values().filter_map(|e| {
            [e.tx.next_deadline(), e.keep_until]
                .into_iter()
                .flatten()
                .min()
        });
        let calls = self.calls.values().filter_map(Call::next_deadline);
        let regs = self.accounts.iter().filter_map(|a| a.reg.next_at);
        txs.chain(stx)
            .chain(calls)
            .chain(regs)
            .chain(self.quit_deadline)
            .min()
    }

    fn emit(&mut self, e: Event) {
        self.out.push_back(Output::Event(e));
    }

    fn transmit(&mut self, target: Target, bytes: Vec<u8>) {
        self.out.push_back(Output::Transmit { target, bytes });
    }

    fn error(&mut self, message: String) {
        tracing::warn!("{message}");
        self.emit(Event::Error { message });
    }

    // ------------------------------------------------------------------ commands

    pub fn handle_command(&mut self, cmd: Command, now: Instant) {
        if self.quit_deadline.is_some() && !matches!(cmd, Command::Stats | Command::Quit) {
            self.error("the engine is shutting down".into());
            return;
        }
        match cmd {
            Command::Call { uri, account } => self.dial(&uri, account, now),
            Command::Answer { call } => self.answer(call, now),
            Command::Reject { call, decline } => {
                self.reject(call, if decline { 603 } else { 486 }, now)
            }
            Command::Hangup { call } => self.hangup(call, now),
            Command::Hold { call } => self.set_hold(call, true, now),
            Command::Resume { call } => self.set_hold(call, false, now),
            Command::Dtmf { call, digits } => self.send_dtmf(call, &digits, now),
            Command::Mute { call, muted } => match self.calls.get_mut(&call) {
                Some(c) if c.phase != Phase::Ended => c.muted = muted,
                _ => self.error(format!("no call {call} to mute")),
            },
            // Handled by the runtime's media edge before they reach the SIP side.
            Command::SetAudioInput { .. }
            | Command::SetAudioOutput { .. }
            | Command::ListDevices
            | Command::MonitorInput { .. }
            | Command::PlayTestTone { .. } => {}
            Command::Reconfigure { settings } => self.reconfigure(&settings, now),
            Command::Register { account } => match self.account_index(account) {
                Some(i) => {
                    self.accounts[i].reg.failures = 0;
                    self.accounts[i].reg.unregistering = false;
                    self.accounts[i].after = None;
                    self.send_register(i, now);
                }
                None => self.error(format!("no account {account}")),
            },
            Command::Stats => {
                let calls = self
                    .calls
                    .values()
                    .filter(|c| c.phase != Phase::Ended)
                    .map(|c| c.stats(now))
                    .collect();
                self.emit(Event::Stats {
                    calls,
                    devices: None,
                });
            }
            Command::Quit => self.quit(now),
        }
        self.sweep(now);
    }

    fn quit(&mut self, now: Instant) {
        if self.quit_deadline.is_some() {
            return;
        }
        tracing::info!("shutting down: hanging up calls, un-registering");
        self.quit_deadline = Some(now + Duration::from_secs(3));
        let ids: Vec<CallId> = self.calls.keys().copied().collect();
        for id in ids {
            self.hangup_inner(id, now, false);
        }
        for i in 0..self.accounts.len() {
            let reg = &mut self.accounts[i].reg;
            reg.unregistering = true;
            reg.next_at = None;
            if reg.state == RegistrationState::Registered || reg.pending.is_some() {
                self.send_register(i, now);
            }
        }
        self.check_stopped(now);
    }

    fn check_stopped(&mut self, now: Instant) {
        let Some(deadline) = self.quit_deadline else {
            return;
        };
        if self.stopped {
            return;
        }
        let waiting = self.client.values().any(|e| {
            !e.tx.is_terminated()
                && e.tx.state() != TxState::Completed
                && matches!(
                    e.owner,
                    Owner::Register(_) | Owner::Unregister(_) | Owner::Bye(_) | Owner::Cancel
                )
        });
        if !waiting || now >= deadline {
            self.stopped = true;
            self.emit(Event::Stopped);
        }
    }

    /// Turns what the user typed into a URI and the account to call through.
    fn resolve_dial(
        &self,
        input: &str,
        account: Option<AccountId>,
    ) -> Result<(Uri, Option<usize>), String> {
        let s = input.trim();
        if s.is_empty() {
            return Err("nothing to dial".into());
        }
        let idx = match account {
            Some(id) => Some(
                self.account_index(id)
                    .ok_or_else(|| format!("no account {id}"))?,
            ),
            None => (!self.accounts.is_empty()).then_some(0),
        };
        let lower = s.to_ascii_lowercase();
        if lower.starts_with("sip:") || lower.starts_with("sips:") {
            let uri = Uri::parse(s).map_err(|e| e.to_string())?;
            // A loopback address (the built-in echo service, a peer on this machine) is only
            // reachable directly, unless the account's own server runs on this machine too: no
            // account is implied for it then.
            let direct = account.is_none()
                && is_loopback(&uri.host)
                && idx.is_some_and(|i| !is_loopback(&self.accounts[i].proxy.host));
            return Ok((uri, if direct { None } else { idx }));
        }
        let user = if let Some(number) = lower.strip_prefix("tel:") {
            number.split(';').next().unwrap_or_default().to_string()
        } else if s.contains('@') {
            return Uri::parse(&format!("sip:{s}"))
                .map(|u| (u, idx))
                .map_err(|e| e.to_string());
        } else {
            s.to_string()
        };
        // A phone number: drop the usual separators.
        let looks_like_number = user
            .chars()
            .all(|c| c.is_ascii_digit() || " -()./+*#".contains(c));
        let user: String = if looks_like_number {
            user.chars().filter(|c| !" -()./".contains(*c)).collect()
        } else {
            user
        };
        if user.is_empty()
            || user
                .chars()
                .any(|c| c.is_whitespace() || "<>\"@;:".contains(c))
        {
            return Err(format!("cannot dial {input:?}"));
        }
        let Some(i) = idx else {
            return Err(format!(
                "no account to dial {input:?} through; dial a full address like sip:user@host"
            ));
        };
        let aor = &self.accounts[i].aor;
        let mut uri = Uri::sip(Some(&user), &aor.host, aor.port);
        if looks_like_number && user.starts_with('+') {
            uri.params.push(("user".into(), Some("phone".into())));
        }
        Ok((uri, idx))
    }

    fn alloc_rtp_port(&mut self) -> u16 {
        let (lo, hi) = self.cfg.rtp_ports;
        let span = u32::from(hi.saturating_sub(lo)) / 2 + 1;
        for _ in 0..span {
            let p = self.next_rtp;
            self.next_rtp = if u32::from(p) + 2 > u32::from(hi) {
                lo + (lo % 2)
            } else {
                p + 2
            };
            if !self.calls.values().any(|c| c.local_media.port == p) {
                return p;
            }
        }
        self.next_rtp
    }

    /// Our side of a call's SDP: address, RTP port, and the codecs of the user's preference,
    /// each with telephone-event at its clock rate.
    fn local_media(&self, port: u16) -> LocalMedia {
        let mut media = LocalMedia::new(self.local_ip(), port);
        let all = std::mem::take(&mut media.codecs);
        let mut chosen: Vec<sdp::CodecSpec> = self
            .cfg
            .codecs
            .iter()
            .filter_map(|name| {
                all.iter()
                    .find(|c| !c.is_telephone_event() && c.name.eq_ignore_ascii_case(name))
                    .cloned()
            })
            .collect();
        let clocks: Vec<u32> = chosen.iter().map(|c| c.clock).collect();
        chosen.extend(
            all.into_iter()
                .filter(|c| c.is_telephone_event() && clocks.contains(&c.clock)),
        );
        media.codecs = chosen;
        media
    }

    /// The SRTP setting for a call of this account (or of none).
    fn encryption_for(&self, account: Option<usize>) -> MediaEncryption {
        account
            .and_then(|i| self.accounts.get(i))
            .map_or(self.cfg.media_encryption, |a| a.cfg.media_encryption)
    }

    /// Fresh `a=crypto` lines for an `RTP/SAVP` offer (one per suite, each with its own key).
    fn fresh_crypto(&mut self) -> Vec<String> {
        match crate::engine::media::srtp::CryptoAttribute::offer() {
            Ok(lines) => lines.iter().map(|a| a.value()).collect(),
            Err(e) => {
                self.error(format!("SRTP: cannot make keys: {e}"));
                Vec::new()
            }
        }
    }

    fn local_ip(&self) -> IpAddr {
        self.cfg.local.ip()
    }

    fn sent_by(&self) -> String {
        match self.cfg.local {
            SocketAddr::V4(a) => a.to_string(),
            SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
        }
    }

    /// Our Contact URI for requests of the account at `account` in `accounts` (or a direct
    /// call) over `transport`.
    fn contact(&self, account: Option<usize>, transport: Transport) -> Uri {
        self.contact_of(account.and_then(|i| self.accounts.get(i)), transport)
    }

    /// Our Contact URI for requests of `account` (or a direct call) over `transport`.
    fn contact_of(&self, account: Option<&AccountEntry>, transport: Transport) -> Uri {
        let (user, host, port) = match account {
            Some(a) => {
                let (h, p) = a
                    .reg
                    .public
                    .clone()
                    .unwrap_or_else(|| (self.local_ip().to_string(), self.cfg.local.port()));
                (a.aor.user.clone().unwrap_or_default(), h, p)
            }
            None => (
                "dialtone".to_string(),
                self.local_ip().to_string(),
                self.cfg.local.port(),
            ),
        };
        let mut uri = Uri::sip(Some(&user), &host, Some(port));
        if transport != Transport::Udp {
            uri.params
                .push(("transport".into(), Some(transport.to_string())));
        }
        uri
    }

    /// A new request outside (or the skeleton of one inside) a dialog, with a fresh Via branch.
    #[allow(clippy::too_many_arguments)]
    fn base_request(
        &self,
        method: Method,
        ruri: &str,
        from: &NameAddr,
        to: &NameAddr,
        call_id: &str,
        cseq: u32,
        transport: Transport,
    ) -> (Message, String) {
        let branch = new_branch();
        let mut req = Message::request(method.clone(), ruri);
        req.push_header("Via", self.via(transport, &branch));
        req.push_header("Max-Forwards", "70");
        req.push_header("From", from.to_string());
        req.push_header("To", to.to_string());
        req.push_header("Call-ID", call_id);
        req.push_header("CSeq", format!("{cseq} {method}"));
        req.push_header("User-Agent", self.cfg.user_agent.clone());
        (req, branch)
    }

    fn via(&self, transport: Transport, branch: &str) -> String {
        format!(
            "SIP/2.0/{} {};branch={branch};rport",
            transport.via_token(),
            self.sent_by()
        )
    }

    fn start_client(
        &mut self,
        req: Message,
        branch: &str,
        target: Target,
        owner: Owner,
        now: Instant,
    ) {
        let method = req
            .method()
            .cloned()
            .unwrap_or(Method::Other(String::new()));
        let (tx, first) =
            ClientTx::start(req, target.transport.is_reliable(), self.cfg.timers, now);
        if let TxOutput::Transmit(bytes) = first {
            self.transmit(target.clone(), bytes);
        }
        self.client
            .insert(tx_key(branch, &method), ClientEntry { tx, owner, target });
    }

    // ------------------------------------------------------------------ packets

    /// A datagram, or a frame from a stream connection, arrived from `source`.
    pub fn handle_packet(
        &mut self,
        transport: Transport,
        source: SocketAddr,
        bytes: &[u8],
        now: Instant,
    ) {
        let msg = match Message::parse(bytes) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!("dropping malformed SIP from {transport}:{source}: {e}");
                return;
            }
        };
        if let Err(e) = msg.validate() {
            tracing::warn!("dropping invalid {} from {source}: {e}", msg.summary());
            if msg.is_request() && msg.method() != Some(&Method::Ack) && msg.top_via().is_ok() {
                let mut resp = Message::response_to(&msg, 400, "Bad Request");
                resp.push_header("Warning", format!("399 dialtone \"{e}\""));
                self.transmit(Target::response_target(transport, source), resp.to_bytes());
            }
            return;
        }
        tracing::debug!("<- {} from {transport}:{source}", msg.summary());
        if msg.is_request() {
            self.on_request(transport, source, msg, now);
        } else {
            self.on_response(msg, now);
        }
        self.sweep(now);
    }

    fn on_response(&mut self, resp: Message, now: Instant) {
        let (Ok(via), Ok((_, method))) = (resp.top_via(), resp.cseq()) else {
            return;
        };
        let Some(branch) = via.branch() else { return };
        let key = tx_key(branch, &method);
        let Some(entry) = self.client.get_mut(&key) else {
            // A retransmitted 2xx after the INVITE transaction ended: ACK it again.
            if method == Method::Invite && resp.status().is_some_and(|c| (200..300).contains(&c)) {
                let ack = self
                    .calls
                    .values()
                    .find(|c| c.dialog.as_ref().is_some_and(|d| d.matches(&resp)))
                    .and_then(|c| c.ack.clone());
                if let Some((bytes, target)) = ack {
                    self.transmit(target, bytes);
                }
            } else {
                tracing::debug!("response {} matches no transaction", resp.summary());
            }
            return;
        };
        let owner = entry.owner.clone();
        let target = entry.target.clone();
        let outputs = entry.tx.on_response(resp, now);
        self.client_outputs(owner, target, outputs, now);
    }

    fn client_outputs(
        &mut self,
        owner: Owner,
        target: Target,
        outputs: Vec<TxOutput>,
        now: Instant,
    ) {
        // The transaction's own sends (an ACK for an error response) go out after what the
        // response leads to: after a 407 the re-sent INVITE is on the critical path, the ACK not.
        let mut own_sends = Vec::new();
        for o in outputs {
            match o {
                TxOutput::Transmit(bytes) => own_sends.push(bytes),
                TxOutput::Response(resp) => match owner {
                    Owner::Register(id) => self.on_register_response(id, Some(&resp), now),
                    Owner::Unregister(serial) => self.on_retired_response(serial, Some(&resp), now),
                    Owner::Invite(id) => self.on_invite_response(id, resp, now),
                    Owner::Reinvite(id) => self.on_reinvite_response(id, resp, now),
                    Owner::Cancel | Owner::Bye(_) | Owner::Info => {}
                },
                TxOutput::Timeout => match owner {
                    Owner::Register(id) => self.on_register_response(id, None, now),
                    Owner::Unregister(serial) => self.on_retired_response(serial, None, now),
                    Owner::Invite(id) => {
                        tracing::warn!(call = %id, "no final response to the INVITE from {target}");
                        self.end_call(id, EndReason::Timeout, None, now);
                    }
                    Owner::Reinvite(id) => {
                        self.error(format!("call {id}: no response to re-INVITE"));
                        if let Some(c) = self.calls.get_mut(&id) {
                            c.reinvite = None;
                        }
                        self.bye(id, EndReason::Timeout, now);
                    }
                    Owner::Cancel | Owner::Bye(_) | Owner::Info => {}
                },
            }
        }
        for bytes in own_sends {
            self.transmit(target.clone(), bytes);
        }
    }

    fn on_request(&mut self, transport: Transport, source: SocketAddr, req: Message, now: Instant) {
        let Some(method) = req.method().cloned() else {
            return;
        };
        let Some(branch) = req
            .top_via()
            .ok()
            .and_then(|v| v.branch().map(str::to_string))
        else {
            return;
        };
        let target = Target::response_target(transport, source);
        if method == Method::Ack {
            let key = tx_key(&branch, &Method::Invite);
            if let Some(e) = self.server.get_mut(&key)
                && e.tx.state() == TxState::Completed
            {
                e.tx.on_ack(now);
                return;
            }
            return self.on_ack(&req, now);
        }
        let key = tx_key(&branch, &method);
        if let Some(e) = self.server.get_mut(&key) {
            let target = e.target.clone();
            for o in e.tx.on_retransmission() {
                if let TxOutput::Transmit(b) = o {
                    self.transmit(target.clone(), b);
                }
            }
            return;
        }
        let tx = ServerTx::new(&req, transport.is_reliable(), self.cfg.timers);
        self.server.insert(
            key.clone(),
            ServerEntry {
                tx,
                target: target.clone(),
                keep_until: None,
            },
        );
        let in_dialog = req
            .to()
            .ok()
            .and_then(|t| t.tag().map(str::to_string))
            .is_some();
        match method {
            Method::Invite if in_dialog => self.on_reinvite(key, req, now),
            Method::Invite => self.on_new_invite(key, req, target, now),
            Method::Cancel => self.on_cancel(key, req, now),
            Method::Bye => self.on_bye(key, req, now),
            Method::Options => self.simple_response(&key, &req, 200, now),
            Method::Info if in_dialog => self.on_info(key, req, now),
            Method::Update | Method::Notify if in_dialog => {
                let code = if self.find_dialog_call(&req).is_some() {
                    200
                } else {
                    481
                };
                self.simple_response(&key, &req, code, now)
            }
            _ if in_dialog => {
                let code = if self.find_dialog_call(&req).is_some() {
                    501
                } else {
                    481
                };
                self.simple_response(&key, &req, code, now)
            }
            _ => self.simple_response(&key, &req, 405, now),
        }
    }

    /// Sending to `target` failed (connection refused, unreachable): fail its transactions.
    pub fn handle_transport_error(&mut self, target: &Target, why: &str, now: Instant) {
        tracing::warn!("transport to {target} failed: {why}");
        let keys: Vec<String> = self
            .client
            .iter()
            .filter(|(_, e)| &e.target == target && !e.tx.is_terminated())
            .map(|(k, _)| k.clone())
            .collect();
        for k in keys {
            if let Some(e) = self.client.get_mut(&k) {
                let owner = e.owner.clone();
                let t = e.target.clone();
                let outputs = e.tx.on_transport_error();
                // Say why, rather than let it look like an unanswered request (timeout).
                match owner {
                    Owner::Register(id) => {
                        if let Some(i) = self.account_index(id) {
                            self.accounts[i].reg.transport_error = Some(why.to_string());
                        }
                    }
                    Owner::Invite(id)
                        if self.calls.get(&id).is_some_and(|c| c.phase != Phase::Ended) =>
                    {
                        self.error(format!("call {id}: {why}"));
                        self.end_call(id, EndReason::Error, None, now);
                    }
                    _ => {}
                }
                self.client_outputs(owner, t, outputs, now);
            }
        }
        self.sweep(now);
    }

    // ------------------------------------------------------------------ time

    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<String> = self
            .client
            .iter()
            .filter(|(_, e)| e.tx.next_deadline().is_some_and(|d| d <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for k in due {
            if let Some(e) = self.client.get_mut(&k) {
                let owner = e.owner.clone();
                let target = e.target.clone();
                let outputs = e.tx.on_timer(now);
                self.client_outputs(owner, target, outputs, now);
            }
        }
        let mut sends = Vec::new();
        for e in self.server.values_mut() {
            if e.tx.next_deadline().is_some_and(|d| d <= now) {
                for o in e.tx.on_timer(now) {
                    if let TxOutput::Transmit(b) = o {
                        sends.push((e.target.clone(), b));
                    }
                }
            }
        }
        for (t, b) in sends {
            self.transmit(t, b);
        }
        let ids: Vec<CallId> = self.calls.keys().copied().collect();
        for id in ids {
            self.call_timers(id, now);
        }
        for i in 0..self.accounts.len() {
            if self.accounts[i].reg.next_at.is_some_and(|t| t <= now) {
                self.send_register(i, now);
            }
        }
        self.sweep(now);
    }

    /// Tells the runtime where a call's media changed: started (established with an agreed SDP),
    /// updated (hold, resume, re-negotiation) or stopped (ended, gone).
    fn sync_media(&mut self) {
        let wanted: BTreeMap<CallId, MediaParams> = self
            .calls
            .values()
            .filter_map(|c| c.media_params().map(|p| (c.id, p)))
            .collect();
        let stopped: Vec<CallId> = self
            .media
            .keys()
            .filter(|id| !wanted.contains_key(id))
            .copied()
            .collect();
        for call in stopped {
            self.media.remove(&call);
            self.out.push_back(Output::MediaStop { call });
        }
        for (call, params) in wanted {
            if self.media.get(&call) != Some(&params) {
                self.media.insert(call, params.clone());
                self.out.push_back(Output::Media { call, params });
            }
        }
        let ringing = |c: &&Call, d| c.phase == Phase::Ringing && c.direction == d;
        let ringback = self
            .calls
            .values()
            .any(|c| ringing(&c, Direction::Outgoing) && c.negotiated.is_none());
        let ring = self
            .calls
            .values()
            .any(|c| ringing(&c, Direction::Incoming));
        if (ringback, ring) != self.alerts {
            self.alerts = (ringback, ring);
            self.out.push_back(Output::Alerts { ringback, ring });
        }
    }

    /// Drops finished transactions and calls that nothing refers to any more.
    fn sweep(&mut self, now: Instant) {
        self.sync_media();
        // An INVITE transaction that only ever got provisional answers has no timer left; once
        // its call is over nothing will end it, so it goes with the call.
        let over: Vec<CallId> = self
            .calls
            .values()
            .filter(|c| c.phase == Phase::Ended && c.cancel_deadline.is_none())
            .map(|c| c.id)
            .collect();
        self.client.retain(|_, e| {
            let orphan = match e.owner {
                Owner::Invite(id) | Owner::Reinvite(id) => {
                    e.tx.next_deadline().is_none() && over.contains(&id)
                }
                _ => false,
            };
            !e.tx.is_terminated() && !orphan
        });
        self.server.retain(|_, e| match e.keep_until {
            Some(t) => now < t,
            None => !e.tx.is_terminated(),
        });
        let busy: Vec<CallId> = self
            .client
            .values()
            .filter_map(|e| match e.owner {
                Owner::Invite(id) | Owner::Bye(id) | Owner::Reinvite(id) => Some(id),
                _ => None,
            })
            .collect();
        self.calls.retain(|id, c| {
            c.phase != Phase::Ended || busy.contains(id) || c.next_deadline().is_some()
        });
        self.check_stopped(now);
    }

    /// Every live call's state (for tests and the UI's first paint).
    pub fn call_states(&self) -> Vec<(CallId, CallState)> {
        self.calls.values().map(|c| (c.id, c.ui_state())).collect()
    }
}

impl std::fmt::Debug for UserAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserAgent")
            .field("accounts", &self.accounts.len())
            .field("calls", &self.calls.len())
            .field("client_txs", &self.client.len())
            .field("server_txs", &self.server.len())
            .finish()
    }
}
