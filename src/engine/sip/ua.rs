//! The user agent: every account's registration, every call, and the transactions under them.
//!
//! Sans-IO in the str0m manner: the runtime feeds it datagrams/frames (`handle_packet`), user
//! commands (`handle_command`) and the time (`handle_timeout`), then drains `poll_output()` for
//! packets to send and events for the UI, and sleeps until `next_deadline()`. Nothing here
//! touches a socket or reads a clock, so every flow is testable with a fake clock.

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
use crate::store::settings::{Account, Settings, Transport};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

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
}

impl Config {
    pub fn from_settings(s: &Settings, local: SocketAddr) -> Result<Config, String> {
        Ok(Config {
            user_agent: s.user_agent.clone(),
            timers: Timers::default(),
            auto_answer: s.auto_answer,
            rtp_ports: s.rtp_port_range().map_err(|e| e.to_string())?,
            local,
        })
    }
}

/// What the runtime must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    Transmit { target: Target, bytes: Vec<u8> },
    Event(Event),
}

struct AccountEntry {
    id: AccountId,
    cfg: Account,
    aor: Uri,
    user: String,
    /// First hop for the account's requests (outbound proxy, else registrar, else domain).
    proxy: Target,
    reg: Registration,
}

#[derive(Debug, Clone)]
enum Owner {
    Register(usize),
    Invite(CallId),
    Cancel,
    Bye(CallId),
    Reinvite(CallId),
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
    calls: BTreeMap<CallId, Call>,
    next_call: u64,
    client: HashMap<String, ClientEntry>,
    server: HashMap<String, ServerEntry>,
    out: VecDeque<Output>,
    next_rtp: u16,
    quit_deadline: Option<Instant>,
    stopped: bool,
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
            calls: BTreeMap::new(),
            next_call: 1,
            client: HashMap::new(),
            server: HashMap::new(),
            out: VecDeque::new(),
            next_rtp,
            quit_deadline: None,
            stopped: false,
        };
        for (i, a) in accounts.iter().enumerate() {
            let id = AccountId(i as u32);
            let Ok(aor) = Uri::parse(&a.uri) else {
                ua.emit(Event::Error {
                    message: format!("account {}: bad URI {:?}", i + 1, a.uri),
                });
                continue;
            };
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
            ua.accounts.push(AccountEntry {
                id,
                cfg: a.clone(),
                aor,
                user,
                proxy,
                reg,
            });
        }
        ua
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
            Command::Register { account } => {
                match self.accounts.iter().position(|a| a.id == account) {
                    Some(i) => {
                        self.accounts[i].reg.failures = 0;
                        self.accounts[i].reg.unregistering = false;
                        self.send_register(i, now);
                    }
                    None => self.error(format!("no account {account}")),
                }
            }
            Command::Stats => {
                let calls = self
                    .calls
                    .values()
                    .filter(|c| c.phase != Phase::Ended)
                    .map(|c| c.stats(now))
                    .collect();
                self.emit(Event::Stats { calls });
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
                && matches!(e.owner, Owner::Register(_) | Owner::Bye(_) | Owner::Cancel)
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
                self.accounts
                    .iter()
                    .position(|a| a.id == id)
                    .ok_or_else(|| format!("no account {id}"))?,
            ),
            None => (!self.accounts.is_empty()).then_some(0),
        };
        let lower = s.to_ascii_lowercase();
        if lower.starts_with("sip:") || lower.starts_with("sips:") {
            return Uri::parse(s).map(|u| (u, idx)).map_err(|e| e.to_string());
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

    fn local_ip(&self) -> IpAddr {
        self.cfg.local.ip()
    }

    fn sent_by(&self) -> String {
        match self.cfg.local {
            SocketAddr::V4(a) => a.to_string(),
            SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
        }
    }

    /// Our Contact URI for requests of `account` (or a direct call) over `transport`.
    fn contact(&self, account: Option<usize>, transport: Transport) -> Uri {
        let (user, host, port) = match account {
            Some(i) => {
                let a = &self.accounts[i];
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

    // ------------------------------------------------------------------ registration

    fn send_register(&mut self, i: usize, now: Instant) {
        let a = &self.accounts[i];
        let transport = a.cfg.transport;
        let contact = self.contact(Some(i), transport);
        let ruri = {
            let mut u = Uri::sip(None, &a.aor.host, a.aor.port);
            u.scheme = a.aor.scheme.clone();
            u.to_string()
        };
        let aor = NameAddr {
            display: (!a.cfg.display_name.is_empty()).then(|| a.cfg.display_name.clone()),
            uri: Uri::parse(&a.aor.aor()).unwrap_or_else(|_| a.aor.clone()),
            params: Vec::new(),
        };
        let from = aor.clone().with_tag(&a.reg.from_tag);
        let expires = if a.reg.unregistering {
            0
        } else {
            a.reg.expires
        };
        let (call_id, cseq, target) = (a.reg.call_id.clone(), a.reg.cseq + 1, a.proxy.clone());
        let stale = a.reg.stale_contact.clone();
        let (mut req, branch) = self.base_request(
            Method::Register,
            &ruri,
            &from,
            &aor,
            &call_id,
            cseq,
            transport,
        );
        req.push_header("Contact", format!("<{contact}>"));
        if let Some(old) = stale {
            req.push_header("Contact", format!("<{old}>;expires=0"));
        }
        req.push_header("Expires", expires.to_string());
        req.push_header("Allow", ALLOW);
        let a = &mut self.accounts[i];
        a.reg.cseq = cseq;
        if a.reg.auth.has_challenges() {
            a.reg.auth.apply(&mut req);
        }
        if let Some(old) = a.reg.pending.take() {
            self.client.remove(&tx_key(&old, &Method::Register));
        }
        let a = &mut self.accounts[i];
        a.reg.pending = Some(branch.clone());
        a.reg.next_at = None;
        let announce = !a.reg.unregistering && a.reg.state != RegistrationState::Registered;
        if announce && a.reg.state != RegistrationState::Registering {
            a.reg.state = RegistrationState::Registering;
            let e = Event::Registration {
                account: a.id,
                aor: a.aor.aor(),
                state: RegistrationState::Registering,
                code: None,
                reason: None,
            };
            self.emit(e);
        }
        self.start_client(req, &branch, target, Owner::Register(i), now);
    }

    fn on_register_response(&mut self, i: usize, resp: Option<&Message>, now: Instant) {
        let contact = self.contact(Some(i), self.accounts[i].cfg.transport);
        let a = &mut self.accounts[i];
        let outcome = match resp {
            Some(r) => a.reg.on_response(r, &contact, now),
            None => a.reg.on_timeout(now),
        };
        let (id, aor) = (a.id, a.aor.aor());
        let event = |state, code, reason| Event::Registration {
            account: id,
            aor: aor.clone(),
            state,
            code,
            reason,
        };
        match outcome {
            RegOutcome::Nothing => {}
            RegOutcome::Resend => self.send_register(i, now),
            RegOutcome::Registered { expires } => {
                tracing::info!("{aor} registered for {expires} s");
                self.emit(event(RegistrationState::Registered, Some(200), None));
            }
            RegOutcome::Unregistered => {
                let code = resp.and_then(Message::status);
                self.emit(event(RegistrationState::Unregistered, code, None));
            }
            RegOutcome::Failed { code, reason } => {
                tracing::warn!("{aor} registration failed: {reason}");
                self.emit(event(RegistrationState::Failed, code, Some(reason)));
            }
        }
    }

    // ------------------------------------------------------------------ outgoing calls

    fn dial(&mut self, input: &str, account: Option<AccountId>, now: Instant) {
        let (uri, idx) = match self.resolve_dial(input, account) {
            Ok(x) => x,
            Err(e) => return self.error(format!("cannot call: {e}")),
        };
        let (transport, target) = match idx {
            Some(i) => {
                let a = &self.accounts[i];
                let t = a.cfg.transport;
                let via_proxy =
                    !a.cfg.outbound_proxy.is_empty() || uri.host.eq_ignore_ascii_case(&a.aor.host);
                let target = if via_proxy {
                    a.proxy.clone()
                } else {
                    Target::for_uri(&uri, t)
                };
                (target.transport, target)
            }
            None => {
                let target = Target::for_uri(&uri, Transport::Udp);
                (target.transport, target)
            }
        };
        let from = match idx {
            Some(i) => {
                let a = &self.accounts[i];
                NameAddr {
                    display: (!a.cfg.display_name.is_empty()).then(|| a.cfg.display_name.clone()),
                    uri: Uri::parse(&a.aor.aor()).unwrap_or_else(|_| a.aor.clone()),
                    params: Vec::new(),
                }
            }
            None => NameAddr::new(Uri::sip(
                Some("dialtone"),
                &self.local_ip().to_string(),
                None,
            )),
        };
        let id = CallId(self.next_call);
        self.next_call += 1;
        let port = self.alloc_rtp_port();
        let media = LocalMedia::new(self.local_ip(), port);
        let mut call = Call::new(
            id,
            Direction::Outgoing,
            idx,
            uri.to_string(),
            target.clone(),
            media,
            now,
        );
        let from = from.with_tag(&call.local_tag);
        let to = NameAddr::new(uri.clone());
        let call_id = format!("{:016x}@{}", rand::random::<u64>(), self.local_ip());
        let (mut req, branch) = self.base_request(
            Method::Invite,
            &uri.to_string(),
            &from,
            &to,
            &call_id,
            1,
            transport,
        );
        if let Some(i) = idx {
            let a = &self.accounts[i];
            if let Some(proxy) = Target::parse(&a.cfg.outbound_proxy, a.cfg.transport) {
                let host = if proxy.host.contains(':') {
                    format!("[{}]", proxy.host)
                } else {
                    proxy.host.clone()
                };
                req.push_header(
                    "Route",
                    format!(
                        "<sip:{host}:{};transport={};lr>",
                        proxy.port, proxy.transport
                    ),
                );
            }
            call.auth = Some(ClientAuth::new(&a.user, &a.cfg.password));
        }
        req.push_header("Contact", format!("<{}>", self.contact(idx, transport)));
        req.push_header("Allow", ALLOW);
        let offer = sdp::create_offer(&call.local_media, &mut call.sdp, MediaDirection::SendRecv);
        req.set_body("application/sdp", offer.into_bytes());
        call.invite = Some(req.clone());
        call.invite_branch = Some(branch.clone());
        tracing::info!(call = %id, "calling {uri} via {target}");
        let event = call.event();
        self.calls.insert(id, call);
        self.emit(event);
        self.start_client(req, &branch, target, Owner::Invite(id), now);
    }

    fn on_invite_response(&mut self, id: CallId, resp: Message, now: Instant) {
        let Some(code) = resp.status() else { return };
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        match code {
            100..=199 => {
                // Any provisional response, 100 included, allows a CANCEL (RFC 3261 9.1).
                call.provisional_seen = true;
                call.ring_deadline.get_or_insert(now + RING_LIMIT);
                if resp
                    .header("Content-Type")
                    .is_some_and(|t| t.contains("sdp"))
                    && !resp.body.is_empty()
                {
                    // Early media (183 with SDP): keep what was agreed for the media layer.
                    if let Some(n) = std::str::from_utf8(&resp.body)
                        .ok()
                        .and_then(|b| SessionDescription::parse(b).ok())
                        .and_then(|d| sdp::negotiate_answer(&call.local_media, &d).ok())
                    {
                        call.negotiated = Some(n);
                    }
                }
                let pending_cancel = call.cancel_pending;
                if code > 100
                    && let Some(e) = call.set_phase(Phase::Ringing, Some(code), now)
                {
                    self.emit(e);
                }
                if pending_cancel {
                    self.send_cancel(id, now);
                }
            }
            200..=299 => self.on_invite_ok(id, resp, now),
            401 | 407 => {
                let retry = if call.phase == Phase::Ended {
                    Err(super::client_auth::AuthFailure::Rejected)
                } else {
                    call.auth
                        .as_mut()
                        .map(|a| a.on_challenge(&resp))
                        .unwrap_or(Err(super::client_auth::AuthFailure::NoCredentials))
                };
                match retry {
                    Ok(()) => self.resend_invite_with_auth(id, now),
                    Err(why) => {
                        let msg = format!("call {id}: {}", why.describe());
                        self.error(msg);
                        self.end_call(id, EndReason::Error, Some(code), now);
                    }
                }
            }
            _ => {
                let reason = match code {
                    486 | 600 => EndReason::Busy,
                    603 => EndReason::Declined,
                    487 => EndReason::Cancelled,
                    408 | 480 => EndReason::Timeout,
                    _ => EndReason::Error,
                };
                self.end_call(id, reason, Some(code), now);
            }
        }
    }

    fn resend_invite_with_auth(&mut self, id: CallId, now: Instant) {
        let sent_by = self.sent_by();
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(old) = call.invite.clone() else {
            return;
        };
        let Ok((seq, _)) = old.cseq() else { return };
        let branch = new_branch();
        let mut req = old;
        let transport = call.target.transport;
        req.remove_header("Via");
        req.headers.insert(
            0,
            super::message::Header {
                name: "Via".into(),
                value: format!(
                    "SIP/2.0/{} {};branch={branch};rport",
                    transport.via_token(),
                    sent_by
                ),
            },
        );
        req.set_header("CSeq", format!("{} INVITE", seq + 1));
        if let Some(a) = call.auth.as_mut() {
            a.apply(&mut req);
        }
        call.invite = Some(req.clone());
        call.invite_branch = Some(branch.clone());
        call.provisional_seen = false;
        let target = call.target.clone();
        self.start_client(req, &branch, target, Owner::Invite(id), now);
    }

    fn on_invite_ok(&mut self, id: CallId, resp: Message, now: Instant) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(invite) = call.invite.clone() else {
            return;
        };
        let Some(mut dialog) = Dialog::from_uac(&invite, &resp) else {
            tracing::warn!(call = %id, "2xx without the headers a dialog needs; ignored");
            return;
        };
        let seq = invite.cseq().map(|(n, _)| n).unwrap_or(1);
        let second_fork = call
            .dialog
            .as_ref()
            .is_some_and(|d| d.remote_tag != dialog.remote_tag);
        // ACK every 2xx, also a late one for a call we already gave up on.
        let ack_target = Target::for_uri(&dialog.next_hop(), call.target.transport);
        let (ack, _) = self.in_dialog_skeleton(&mut dialog, Method::Ack, Some(seq), &ack_target);
        let ack_bytes = ack.to_bytes();
        self.transmit(ack_target.clone(), ack_bytes.clone());
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if second_fork || call.phase == Phase::Ended {
            // A fork we do not want, or a call the user already hung up: end that dialog too.
            tracing::info!(call = %id, "ending an unwanted 2xx dialog with BYE");
            let keep = !second_fork;
            self.send_bye_on(&mut dialog, id, now);
            if keep && let Some(call) = self.calls.get_mut(&id) {
                // Kept so that a retransmission of this 2xx is ACKed again.
                call.dialog = Some(dialog);
                call.ack = Some((ack_bytes, ack_target));
            }
            return;
        }
        call.ack = Some((ack_bytes, ack_target));
        let negotiated = std::str::from_utf8(&resp.body)
            .ok()
            .filter(|b| !b.trim().is_empty())
            .ok_or_else(|| "the 200 OK has no SDP answer".to_string())
            .and_then(|b| SessionDescription::parse(b).map_err(|e| e.to_string()))
            .and_then(|d| sdp::negotiate_answer(&call.local_media, &d).map_err(|e| e.to_string()));
        call.dialog = Some(dialog);
        match negotiated {
            Ok(n) => {
                call.negotiated = Some(n);
                if let Some(e) = call.set_phase(Phase::Established, Some(200), now) {
                    self.emit(e);
                }
            }
            Err(why) => {
                self.error(format!("call {id}: bad answer: {why}"));
                self.bye(id, EndReason::Error, now);
            }
        }
    }

    fn send_cancel(&mut self, id: CallId, now: Instant) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        call.cancel_pending = false;
        call.cancel_deadline = Some(now + self.cfg.timers.timeout());
        let Some(inv) = call.invite.clone() else {
            return;
        };
        let Some(branch) = call.invite_branch.clone() else {
            return;
        };
        let target = call.target.clone();
        self.cancel_request(&inv, &branch, target, now);
    }

    /// CANCEL for a pending INVITE (9.1): same Request-URI, top Via, From, To, Call-ID, Route.
    fn cancel_request(&mut self, inv: &Message, branch: &str, target: Target, now: Instant) {
        let mut cancel = Message::request(Method::Cancel, inv.request_uri().unwrap_or_default());
        for name in ["Via", "Route", "From", "To", "Call-ID"] {
            for h in inv.headers.iter().filter(|h| h.name == name) {
                if name == "Via" && cancel.header("Via").is_some() {
                    continue;
                }
                cancel.push_header(name, h.value.clone());
            }
        }
        let seq = inv.cseq().map(|(n, _)| n).unwrap_or(1);
        cancel.push_header("CSeq", format!("{seq} CANCEL"));
        cancel.push_header("Max-Forwards", "70");
        self.start_client(cancel, branch, target, Owner::Cancel, now);
    }

    // ------------------------------------------------------------------ in-dialog requests

    /// An in-dialog request with its Via. `seq` is for ACK (the INVITE's CSeq number).
    fn in_dialog_skeleton(
        &self,
        dialog: &mut Dialog,
        method: Method,
        seq: Option<u32>,
        target: &Target,
    ) -> (Message, String) {
        let branch = new_branch();
        let mut req = match seq {
            Some(n) => dialog.ack(n),
            None => dialog.request(method.clone()),
        };
        req.headers.insert(
            0,
            super::message::Header {
                name: "Via".into(),
                value: self.via(target.transport, &branch),
            },
        );
        if method != Method::Ack {
            req.push_header("User-Agent", self.cfg.user_agent.clone());
        }
        (req, branch)
    }

    fn send_bye_on(&mut self, dialog: &mut Dialog, id: CallId, now: Instant) {
        let transport = self
            .calls
            .get(&id)
            .map(|c| c.target.transport)
            .unwrap_or(Transport::Udp);
        let target = Target::for_uri(&dialog.next_hop(), transport);
        let (req, branch) = self.in_dialog_skeleton(dialog, Method::Bye, None, &target);
        self.start_client(req, &branch, target, Owner::Bye(id), now);
    }

    /// Sends BYE on the call's dialog and ends the call with `reason`.
    fn bye(&mut self, id: CallId, reason: EndReason, now: Instant) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if let Some(mut dialog) = call.dialog.take() {
            self.send_bye_on(&mut dialog, id, now);
            if let Some(call) = self.calls.get_mut(&id) {
                call.dialog = Some(dialog);
            }
        }
        self.end_call(id, reason, None, now);
    }

    fn end_call(&mut self, id: CallId, reason: EndReason, code: Option<u16>, now: Instant) {
        if let Some(call) = self.calls.get_mut(&id)
            && let Some(e) = call.end(reason, code, now)
        {
            self.emit(e);
        }
    }

    fn hangup(&mut self, id: CallId, now: Instant) {
        if !self.calls.get(&id).is_some_and(|c| c.phase != Phase::Ended) {
            return self.error(format!("no call {id} to hang up"));
        }
        self.hangup_inner(id, now, true);
    }

    fn hangup_inner(&mut self, id: CallId, now: Instant, _user: bool) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        match (call.phase, call.direction) {
            (Phase::Ended, _) => {}
            (Phase::Calling | Phase::Ringing, Direction::Outgoing) => {
                call.cancelled = true;
                if call.provisional_seen {
                    self.send_cancel(id, now);
                } else {
                    // RFC 3261 9.1: CANCEL only once a provisional response came.
                    call.cancel_pending = true;
                    call.cancel_deadline = Some(now + self.cfg.timers.timeout());
                }
                self.end_call(id, EndReason::Cancelled, None, now);
            }
            (Phase::Calling | Phase::Ringing, Direction::Incoming) => {
                self.reject(id, 603, now);
            }
            (Phase::Established, _) => self.bye(id, EndReason::LocalHangup, now),
        }
    }

    fn set_hold(&mut self, id: CallId, hold: bool, now: Instant) {
        let Some(call) = self.calls.get(&id) else {
            return self.error(format!("no call {id}"));
        };
        if call.phase != Phase::Established {
            return self.error(format!("call {id} is not established"));
        }
        // Our 2xx may still wait for its ACK: that matters only when the 2xx carried our offer
        // (the answer comes in the ACK); otherwise the exchange is complete (RFC 3261 14.1).
        if call.reinvite.is_some() || call.awaiting_ack_answer {
            return self.error(format!(
                "call {id}: an offer/answer exchange is already in progress"
            ));
        }
        if call.hold.local == hold {
            return;
        }
        self.send_reinvite(id, hold, now);
    }

    fn send_reinvite(&mut self, id: CallId, hold: bool, now: Instant) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        call.reinvite_retry = None;
        let Some(mut dialog) = call.dialog.take() else {
            return;
        };
        let target = Target::for_uri(&dialog.next_hop(), call.target.transport);
        let dir = if hold {
            MediaDirection::SendOnly
        } else {
            MediaDirection::SendRecv
        };
        let (mut req, branch) = self.in_dialog_skeleton(&mut dialog, Method::Invite, None, &target);
        let account = self.calls.get(&id).and_then(|c| c.account);
        req.push_header(
            "Contact",
            format!("<{}>", self.contact(account, target.transport)),
        );
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let offer = sdp::create_offer(&call.local_media, &mut call.sdp, dir);
        req.push_header("Allow", ALLOW);
        req.set_body("application/sdp", offer.into_bytes());
        if let Some(a) = call.auth.as_mut().filter(|a| a.has_challenges()) {
            a.apply(&mut req);
        }
        call.dialog = Some(dialog);
        call.reinvite = Some(PendingReinvite {
            branch: branch.clone(),
            hold,
            request: req.clone(),
            deadline: now + self.cfg.timers.timeout(),
        });
        tracing::info!(call = %id, "{} (re-INVITE)", if hold { "holding" } else { "resuming" });
        self.start_client(req, &branch, target, Owner::Reinvite(id), now);
    }

    fn on_reinvite_response(&mut self, id: CallId, resp: Message, now: Instant) {
        let Some(code) = resp.status() else { return };
        if code < 200 {
            return;
        }
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(pending) = call.reinvite.take() else {
            return;
        };
        match code {
            200..=299 => {
                let seq = pending.request.cseq().map(|(n, _)| n).unwrap_or(1);
                let Some(mut dialog) = call.dialog.take() else {
                    return;
                };
                dialog.refresh_target(&resp);
                let target = Target::for_uri(&dialog.next_hop(), call.target.transport);
                let (ack, _) =
                    self.in_dialog_skeleton(&mut dialog, Method::Ack, Some(seq), &target);
                let bytes = ack.to_bytes();
                self.transmit(target.clone(), bytes.clone());
                let Some(call) = self.calls.get_mut(&id) else {
                    return;
                };
                call.dialog = Some(dialog);
                call.ack = Some((bytes, target));
                match std::str::from_utf8(&resp.body)
                    .map_err(|e| e.to_string())
                    .and_then(|b| SessionDescription::parse(b).map_err(|e| e.to_string()))
                    .and_then(|d| {
                        sdp::negotiate_answer(&call.local_media, &d).map_err(|e| e.to_string())
                    }) {
                    Ok(n) => call.negotiated = Some(n),
                    Err(e) => tracing::warn!(call = %id, "re-INVITE answer unusable: {e}"),
                }
                call.hold.local = pending.hold;
                let e = call.event();
                self.emit(e);
            }
            401 | 407 => {
                let ok = call
                    .auth
                    .as_mut()
                    .map(|a| a.on_challenge(&resp).is_ok())
                    .unwrap_or(false);
                if ok {
                    self.send_reinvite(id, pending.hold, now);
                } else {
                    self.error(format!("call {id}: re-INVITE rejected ({code})"));
                }
            }
            491 => {
                // Glare: both sides sent a re-INVITE. Try again after a random 2.1–4 s (14.1).
                let wait = Duration::from_millis(2100 + u64::from(rand::random::<u16>() % 1900));
                call.reinvite_retry = Some((now + wait, pending.hold));
            }
            408 | 481 => {
                self.error(format!("call {id}: the dialog is gone ({code})"));
                let reason = if code == 408 {
                    EndReason::Timeout
                } else {
                    EndReason::Error
                };
                self.bye(id, reason, now);
            }
            _ => {
                let what = if pending.hold { "hold" } else { "resume" };
                self.error(format!("call {id}: {what} refused by the far end ({code})"));
            }
        }
    }

    // ------------------------------------------------------------------ incoming calls

    fn answer(&mut self, id: CallId, now: Instant) {
        let Some(call) = self.calls.get_mut(&id) else {
            return self.error(format!("no call {id} to answer"));
        };
        if call.direction != Direction::Incoming || call.phase != Phase::Ringing {
            return self.error(format!("call {id} is not ringing"));
        }
        let Some((invite, target)) = call.invite_in.clone() else {
            return;
        };
        let body = match offer_of(&invite) {
            Some(Ok(offer)) => {
                match sdp::create_answer(
                    &offer,
                    &call.local_media,
                    &mut call.sdp,
                    MediaDirection::SendRecv,
                ) {
                    Ok((text, n)) => {
                        call.negotiated = Some(n);
                        text
                    }
                    Err(e) => {
                        let msg = format!("call {id}: cannot answer the offer: {e}");
                        self.error(msg);
                        return self.reject(id, 488, now);
                    }
                }
            }
            Some(Err(e)) => {
                self.error(format!("call {id}: bad SDP offer: {e}"));
                return self.reject(id, 488, now);
            }
            None => {
                // No offer in the INVITE: we offer in the 200, the answer comes in the ACK.
                call.awaiting_ack_answer = true;
                sdp::create_offer(&call.local_media, &mut call.sdp, MediaDirection::SendRecv)
            }
        };
        let mut ok = self.dialog_response(&invite, id, 200);
        ok.push_header("Allow", ALLOW);
        ok.push_header("Supported", "replaces");
        ok.set_body("application/sdp", body.into_bytes());
        let cseq = invite.cseq().map(|(n, _)| n).unwrap_or(0);
        self.send_ok_reliably(id, ok, target, cseq, now);
        if let Some(call) = self.calls.get_mut(&id)
            && let Some(e) = call.set_phase(Phase::Established, Some(200), now)
        {
            self.emit(e);
        }
    }

    /// Sends a 2xx to an INVITE through its transaction and retransmits it until the ACK.
    fn send_ok_reliably(
        &mut self,
        id: CallId,
        ok: Message,
        target: Target,
        cseq: u32,
        now: Instant,
    ) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let key = call.server_key.clone();
        let bytes = ok.to_bytes();
        let t1 = self.cfg.timers.t1;
        call.pending_ok = Some(PendingOk {
            bytes: bytes.clone(),
            target: target.clone(),
            next_at: now + t1,
            interval: t1,
            give_up_at: now + self.cfg.timers.timeout(),
            cseq,
        });
        let keep = now + self.cfg.timers.timeout();
        match key.and_then(|k| self.server.get_mut(&k)) {
            Some(entry) => {
                for o in entry.tx.respond(&ok, now) {
                    if let TxOutput::Transmit(b) = o {
                        self.out.push_back(Output::Transmit {
                            target: entry.target.clone(),
                            bytes: b,
                        });
                    }
                }
                entry.keep_until = Some(keep);
            }
            None => self.transmit(target, bytes),
        }
    }

    /// A response to `req` that belongs to call `id`'s dialog: To tag, Contact.
    fn dialog_response(&self, req: &Message, id: CallId, code: u16) -> Message {
        let mut resp = Message::response_to(req, code, reason_phrase(code));
        if let Some(call) = self.calls.get(&id) {
            if let Ok(to) = req.to()
                && to.tag().is_none()
            {
                resp.set_header("To", to.with_tag(&call.local_tag).to_string());
            }
            let transport = call.target.transport;
            if code > 100 && code < 300 {
                resp.push_header(
                    "Contact",
                    format!("<{}>", self.contact(call.account, transport)),
                );
            }
        }
        resp.push_header("Server", self.cfg.user_agent.clone());
        resp
    }

    /// Responds through the server transaction `key` (which must exist).
    fn respond(&mut self, key: &str, resp: Message, now: Instant) {
        if let Some(entry) = self.server.get_mut(key) {
            let target = entry.target.clone();
            for o in entry.tx.respond(&resp, now) {
                if let TxOutput::Transmit(b) = o {
                    self.out.push_back(Output::Transmit {
                        target: target.clone(),
                        bytes: b,
                    });
                }
            }
        }
    }

    fn simple_response(&mut self, key: &str, req: &Message, code: u16, now: Instant) {
        let mut resp = Message::response_to(req, code, reason_phrase(code));
        if let Ok(to) = req.to()
            && to.tag().is_none()
            && code > 100
        {
            resp.set_header(
                "To",
                to.with_tag(&format!("{:08x}", rand::random::<u32>()))
                    .to_string(),
            );
        }
        if code == 405 || code == 200 {
            resp.push_header("Allow", ALLOW);
        }
        resp.push_header("Server", self.cfg.user_agent.clone());
        self.respond(key, resp, now);
    }

    fn reject(&mut self, id: CallId, code: u16, now: Instant) {
        let Some(call) = self.calls.get(&id) else {
            return self.error(format!("no call {id} to reject"));
        };
        if call.direction != Direction::Incoming || call.phase != Phase::Ringing {
            return self.error(format!("call {id} is not ringing"));
        }
        let (Some((invite, _)), Some(key)) = (call.invite_in.clone(), call.server_key.clone())
        else {
            return;
        };
        let resp = self.dialog_response(&invite, id, code);
        self.respond(&key, resp, now);
        let reason = if code == 488 {
            EndReason::Error
        } else {
            EndReason::Declined
        };
        self.end_call(id, reason, Some(code), now);
    }

    fn account_for(&self, req: &Message) -> Option<usize> {
        let ruri_user = req
            .request_uri()
            .and_then(|u| Uri::parse(u).ok())
            .and_then(|u| u.user);
        let to_user = req.to().ok().and_then(|t| t.uri.user);
        self.accounts.iter().position(|a| {
            let user = a.aor.user.as_deref();
            user.is_some() && (ruri_user.as_deref() == user || to_user.as_deref() == user)
        })
    }

    fn on_new_invite(&mut self, key: String, req: Message, target: Target, now: Instant) {
        if self.quit_deadline.is_some() {
            return self.simple_response(&key, &req, 486, now);
        }
        // The same INVITE again on another branch (a forking proxy sent it twice): 8.2.2.2.
        let merged = self.calls.values().any(|c| {
            c.invite_in
                .as_ref()
                .is_some_and(|(first, _)| same_request(first, &req))
        });
        if merged {
            return self.simple_response(&key, &req, 482, now);
        }
        let offer = offer_of(&req);
        let id = CallId(self.next_call);
        let port = self.alloc_rtp_port();
        let media = LocalMedia::new(self.local_ip(), port);
        if let Some(check) = &offer {
            let usable = check.as_ref().map_err(|e| e.to_string()).and_then(|o| {
                let mut scratch = sdp::SdpSession { id: 0, version: 0 };
                sdp::create_answer(o, &media, &mut scratch, MediaDirection::SendRecv)
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            });
            if let Err(e) = usable {
                tracing::warn!("incoming INVITE with unusable SDP: {e}");
                return self.simple_response(&key, &req, 488, now);
            }
        }
        let account = self.account_for(&req);
        let from = req.from().map(|f| f.pretty()).unwrap_or_default();
        let mut call = Call::new(
            id,
            Direction::Incoming,
            account,
            from.clone(),
            target.clone(),
            media,
            now,
        );
        let Some(dialog) = Dialog::from_uas(&req, &call.local_tag) else {
            return self.simple_response(&key, &req, 400, now);
        };
        self.next_call += 1;
        call.dialog = Some(dialog);
        call.invite_in = Some((req.clone(), target));
        call.server_key = Some(key.clone());
        tracing::info!(call = %id, "incoming call from {from}");
        self.calls.insert(id, call);
        self.respond(&key, Message::response_to(&req, 100, "Trying"), now);
        let ringing = self.dialog_response(&req, id, 180);
        self.respond(&key, ringing, now);
        self.emit(Event::Incoming {
            call: id,
            from,
            account: account.map(|i| self.accounts[i].id),
        });
        if let Some(c) = self.calls.get(&id) {
            let e = c.event();
            self.emit(e);
        }
        if self.cfg.auto_answer {
            self.answer(id, now);
        }
    }

    fn find_dialog_call(&self, req: &Message) -> Option<CallId> {
        self.calls
            .values()
            .find(|c| c.dialog.as_ref().is_some_and(|d| d.matches(req)))
            .map(|c| c.id)
    }

    fn on_reinvite(&mut self, key: String, req: Message, now: Instant) {
        let Some(id) = self.find_dialog_call(&req) else {
            return self.simple_response(&key, &req, 481, now);
        };
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if call.phase != Phase::Established {
            return self.simple_response(&key, &req, 481, now);
        }
        let in_order = call
            .dialog
            .as_mut()
            .is_some_and(|d| d.accept_remote_cseq(&req));
        if !in_order {
            return self.simple_response(&key, &req, 500, now);
        }
        if call.reinvite.is_some() {
            return self.simple_response(&key, &req, 491, now);
        }
        if call.pending_ok.is_some() {
            let mut resp = Message::response_to(&req, 500, "Server Internal Error");
            resp.push_header("Retry-After", "1");
            return self.respond(&key, resp, now);
        }
        let dir = call.local_direction();
        let body = match offer_of(&req) {
            Some(Ok(offer)) => {
                match sdp::create_answer(&offer, &call.local_media, &mut call.sdp, dir) {
                    Ok((text, n)) => {
                        call.hold.remote = !n.remote_direction.receives();
                        call.negotiated = Some(n);
                        text
                    }
                    Err(e) => {
                        tracing::warn!(call = %id, "re-INVITE offer refused: {e}");
                        return self.simple_response(&key, &req, 488, now);
                    }
                }
            }
            Some(Err(e)) => {
                tracing::warn!(call = %id, "re-INVITE with bad SDP: {e}");
                return self.simple_response(&key, &req, 488, now);
            }
            None => {
                call.awaiting_ack_answer = true;
                sdp::create_offer(&call.local_media, &mut call.sdp, dir)
            }
        };
        if let Some(d) = call.dialog.as_mut() {
            d.refresh_target(&req);
        }
        let target = self
            .server
            .get(&key)
            .map(|e| e.target.clone())
            .unwrap_or_else(|| call.target.clone());
        let mut ok = self.dialog_response(&req, id, 200);
        ok.push_header("Allow", ALLOW);
        ok.set_body("application/sdp", body.into_bytes());
        let cseq = req.cseq().map(|(n, _)| n).unwrap_or(0);
        if let Some(call) = self.calls.get_mut(&id) {
            call.server_key = Some(key);
        }
        self.send_ok_reliably(id, ok, target, cseq, now);
        if let Some(call) = self.calls.get(&id) {
            tracing::info!(call = %id, "re-INVITE: remote hold {}", call.hold.remote);
            let e = call.event();
            self.emit(e);
        }
    }

    fn on_ack(&mut self, req: &Message, now: Instant) {
        let Some(id) = self.find_dialog_call(req) else {
            tracing::debug!("ACK for no dialog; dropped");
            return;
        };
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let seq = req.cseq().map(|(n, _)| n).unwrap_or(0);
        if call.pending_ok.as_ref().is_some_and(|p| p.cseq == seq) {
            call.pending_ok = None;
        }
        if call.awaiting_ack_answer {
            call.awaiting_ack_answer = false;
            let result = std::str::from_utf8(&req.body)
                .map_err(|e| e.to_string())
                .and_then(|b| SessionDescription::parse(b).map_err(|e| e.to_string()))
                .and_then(|d| {
                    sdp::negotiate_answer(&call.local_media, &d).map_err(|e| e.to_string())
                });
            match result {
                Ok(n) => {
                    let held = !n.remote_direction.receives();
                    let changed = call.hold.remote != held;
                    call.hold.remote = held;
                    call.negotiated = Some(n);
                    if changed {
                        let e = call.event();
                        self.emit(e);
                    }
                }
                Err(e) => {
                    self.error(format!("call {id}: the ACK carried no usable answer: {e}"));
                    self.bye(id, EndReason::Error, now);
                }
            }
        }
    }

    fn on_cancel(&mut self, key: String, req: Message, now: Instant) {
        let branch = req
            .top_via()
            .ok()
            .and_then(|v| v.branch().map(str::to_string));
        let invite_key = branch.map(|b| tx_key(&b, &Method::Invite));
        let call = invite_key.as_ref().and_then(|k| {
            self.calls
                .values()
                .find(|c| c.server_key.as_ref() == Some(k) && c.direction == Direction::Incoming)
                .map(|c| c.id)
        });
        let Some(id) = call else {
            return self.simple_response(&key, &req, 481, now);
        };
        self.simple_response(&key, &req, 200, now);
        let ringing = self
            .calls
            .get(&id)
            .is_some_and(|c| c.phase == Phase::Ringing);
        if ringing {
            if let (Some(k), Some(Some((invite, _)))) =
                (invite_key, self.calls.get(&id).map(|c| c.invite_in.clone()))
            {
                let resp = self.dialog_response(&invite, id, 487);
                self.respond(&k, resp, now);
            }
            self.end_call(id, EndReason::Cancelled, Some(487), now);
        }
    }

    fn on_bye(&mut self, key: String, req: Message, now: Instant) {
        let Some(id) = self.find_dialog_call(&req) else {
            return self.simple_response(&key, &req, 481, now);
        };
        if let Some(d) = self.calls.get_mut(&id).and_then(|c| c.dialog.as_mut()) {
            d.accept_remote_cseq(&req);
        }
        self.simple_response(&key, &req, 200, now);
        self.end_call(id, EndReason::RemoteHangup, None, now);
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
                    Owner::Register(i) => self.on_register_response(i, Some(&resp), now),
                    Owner::Invite(id) => self.on_invite_response(id, resp, now),
                    Owner::Reinvite(id) => self.on_reinvite_response(id, resp, now),
                    Owner::Cancel | Owner::Bye(_) => {}
                },
                TxOutput::Timeout => match owner {
                    Owner::Register(i) => self.on_register_response(i, None, now),
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
                    Owner::Cancel | Owner::Bye(_) => {}
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
            Method::Info | Method::Update | Method::Notify if in_dialog => {
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
                    Owner::Register(i) => {
                        if let Some(a) = self.accounts.get_mut(i) {
                            a.reg.transport_error = Some(why.to_string());
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

    fn call_timers(&mut self, id: CallId, now: Instant) {
        let t2 = self.cfg.timers.t2;
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let mut resend = None;
        let mut no_ack = false;
        if let Some(p) = call.pending_ok.as_mut() {
            if now >= p.give_up_at {
                no_ack = true;
            } else if now >= p.next_at {
                p.interval = (p.interval * 2).min(t2);
                p.next_at = now + p.interval;
                resend = Some((p.target.clone(), p.bytes.clone()));
            }
        }
        let mut give_up_invite = None;
        if call.cancel_deadline.is_some_and(|t| now >= t) {
            call.cancel_deadline = None;
            call.cancel_pending = false;
            // No final response 64*T1 after the CANCEL: the INVITE is given up too (9.1).
            give_up_invite = call
                .invite_branch
                .as_ref()
                .map(|b| tx_key(b, &Method::Invite));
        }
        let retry = call
            .reinvite_retry
            .filter(|(t, _)| now >= *t)
            .map(|(_, h)| h);
        let ring_expired = call.ring_deadline.is_some_and(|t| now >= t)
            && matches!(call.phase, Phase::Calling | Phase::Ringing);
        if ring_expired {
            call.ring_deadline = None;
        }
        let stuck_reinvite = match &call.reinvite {
            Some(r) if now >= r.deadline => call
                .reinvite
                .take()
                .map(|r| (r.request, r.branch, call.target.transport)),
            _ => None,
        };
        if let Some((t, b)) = resend {
            self.transmit(t, b);
        }
        if let Some(k) = give_up_invite {
            self.client.remove(&k);
        }
        if ring_expired {
            tracing::info!(call = %id, "no answer within {} s: cancelling", RING_LIMIT.as_secs());
            if let Some(c) = self.calls.get_mut(&id) {
                c.cancelled = true;
            }
            self.send_cancel(id, now);
            self.end_call(id, EndReason::Timeout, None, now);
        }
        if let Some((req, branch, transport)) = stuck_reinvite {
            // Only provisional answers for 64*T1: withdraw the offer, keep the call as it was.
            self.error(format!(
                "call {id}: the far end did not answer the re-INVITE"
            ));
            let target = self
                .calls
                .get(&id)
                .and_then(|c| c.dialog.as_ref())
                .map(|d| Target::for_uri(&d.next_hop(), transport));
            if let Some(target) = target {
                self.cancel_request(&req, &branch, target, now);
            }
        }
        if no_ack {
            self.error(format!("call {id}: no ACK for our 200 OK"));
            if let Some(c) = self.calls.get_mut(&id) {
                c.pending_ok = None;
            }
            self.bye(id, EndReason::Timeout, now);
        }
        if let Some(hold) = retry {
            let established = self
                .calls
                .get(&id)
                .is_some_and(|c| c.phase == Phase::Established);
            if established {
                self.send_reinvite(id, hold, now);
            } else if let Some(c) = self.calls.get_mut(&id) {
                c.reinvite_retry = None;
            }
        }
    }

    /// Drops finished transactions and calls that nothing refers to any more.
    fn sweep(&mut self, now: Instant) {
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

/// Same Call-ID, From tag and CSeq: one request, whatever the branch (a merged request).
fn same_request(a: &Message, b: &Message) -> bool {
    let from_tag = |m: &Message| m.from().ok().and_then(|f| f.tag().map(str::to_string));
    a.call_id().ok() == b.call_id().ok()
        && a.cseq().ok() == b.cseq().ok()
        && from_tag(a).is_some()
        && from_tag(a) == from_tag(b)
}

/// The SDP offer in a request body: None without a body, Some(Err) when it does not parse.
fn offer_of(req: &Message) -> Option<Result<SessionDescription, String>> {
    if req.body.is_empty() {
        return None;
    }
    if let Some(ct) = req.header("Content-Type")
        && !ct.to_ascii_lowercase().contains("application/sdp")
    {
        return Some(Err(format!("unsupported body type {ct}")));
    }
    Some(
        std::str::from_utf8(&req.body)
            .map_err(|e| e.to_string())
            .and_then(|b| SessionDescription::parse(b).map_err(|e| e.to_string())),
    )
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
