//! A small but real SIP registrar and stateless proxy for the end-to-end tests.
//!
//! It listens on 127.0.0.1: UDP and TCP on one port, TLS on another (with a throw-away CA whose
//! PEM file an account can trust through `tls_ca`). REGISTER is challenged with digest auth (MD5
//! or SHA-256, a fresh nonce with every 401), checked against a user table, and the bindings are
//! kept with their expiry; `Expires: 0` removes one. The 200 lists every binding as
//! `Contact: <…>;expires=N`, and the Via of every request gets `received` (and `rport` when asked
//! for, RFC 3581). Options: Min-Expires (423 for shorter registrations), single-use nonces, and
//! a 407 challenge on initial INVITEs from our users.
//!
//! INVITE, ACK, BYE, CANCEL (and any other request not for the registrar itself) are proxied
//! statelessly (RFC 3261 16.11): a Request-URI on the registrar is looked up in the bindings and
//! rewritten to the Contact; the proxy adds its Via (branch derived from the incoming one, so a
//! CANCEL or a non-2xx ACK gets the INVITE's branch) and `Record-Route: <sip:IP:PORT;lr>` on
//! initial INVITEs (two of them when one leg is TLS, RFC 5658), pops its own Routes, and takes
//! its Via off responses before passing them on. Stream connections are reused both ways: a
//! binding made over TCP or TLS is reached over the very connection it registered on while that
//! connection lives (the registrar never dials TLS).
//!
//! Everything runs on its own thread with a current-thread tokio runtime; counters and the
//! bindings can be read from the test at any time. Nothing in here panics on what arrives.

use dialtone::engine::sip::auth::{Algorithm, Credentials, challenge_header};
use dialtone::engine::sip::message::{Contacts, Frame, Header, Message, Method, StreamFramer, Via};
use dialtone::engine::sip::uri::{NameAddr, Scheme, Uri, set_param, split_top, write_params};
use dialtone::store::settings::Transport;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, oneshot};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

/// Prefix of the Via branches this proxy writes (after the RFC 3261 magic cookie).
const BRANCH_PREFIX: &str = "z9hG4bK-dtreg-";
/// Prefix of the To tags of the final responses the registrar itself sends.
const TAG_PREFIX: &str = "dtreg";
/// Longest registration granted.
const MAX_EXPIRES: u32 = 3600;

/// How the registrar behaves.
#[derive(Debug, Clone)]
pub struct Options {
    /// User name → password.
    pub users: Vec<(String, String)>,
    pub realm: String,
    pub algorithm: Algorithm,
    /// Offer `qop="auth"` in the challenge.
    pub qop: bool,
    /// Answer shorter registrations with 423 Interval Too Brief and this Min-Expires.
    pub min_expires: Option<u32>,
    /// Accept each nonce once only: a refresh that reuses it is challenged again, without
    /// `stale=true` (as some servers do).
    pub single_use_nonces: bool,
    /// Challenge initial INVITEs from our users with 407 (Proxy-Authenticate), like a PBX.
    pub challenge_invites: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            users: Vec::new(),
            realm: "127.0.0.1".into(),
            algorithm: Algorithm::Md5,
            qop: true,
            min_expires: None,
            single_use_nonces: false,
            challenge_invites: false,
        }
    }
}

impl Options {
    pub fn user(mut self, name: &str, password: &str) -> Self {
        self.users.push((name.into(), password.into()));
        self
    }

    pub fn algorithm(mut self, algorithm: Algorithm) -> Self {
        self.algorithm = algorithm;
        self
    }

    pub fn min_expires(mut self, seconds: u32) -> Self {
        self.min_expires = Some(seconds);
        self
    }

    pub fn single_use_nonces(mut self) -> Self {
        self.single_use_nonces = true;
        self
    }

    pub fn challenge_invites(mut self) -> Self {
        self.challenge_invites = true;
        self
    }
}

/// One registered Contact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The Contact URI as registered.
    pub contact: String,
    pub expires_at: Instant,
    /// Where the REGISTER came from (the flow), and over what.
    pub transport: Transport,
    pub source: SocketAddr,
}

#[derive(Debug, Default)]
struct Counters {
    registers: AtomicUsize,
    challenges: AtomicUsize,
    auth_failures: AtomicUsize,
    unknown_nonces: AtomicUsize,
    too_brief: AtomicUsize,
    forwarded_requests: AtomicUsize,
    forwarded_responses: AtomicUsize,
    malformed: AtomicUsize,
    tls_handshake_failures: AtomicUsize,
}

#[derive(Debug, Default)]
struct State {
    nonces: HashSet<String>,
    /// AOR user → bindings.
    bindings: HashMap<String, Vec<Binding>>,
    /// Requests proxied on, by method.
    forwarded: HashMap<String, usize>,
}

type Writer = mpsc::UnboundedSender<Vec<u8>>;

/// What the runtime side and the test side share.
struct Shared {
    opts: Options,
    ip: IpAddr,
    /// UDP and TCP.
    port: u16,
    tls_port: u16,
    counters: Counters,
    state: Mutex<State>,
    /// Open stream connections by (transport, peer address).
    conns: Mutex<HashMap<(Transport, SocketAddr), Writer>>,
}

/// A bytes-to-send decision of the (synchronous) message handler.
struct Out {
    transport: Transport,
    addr: SocketAddr,
    bytes: Vec<u8>,
}

/// A running registrar; dropping it stops it.
pub struct Registrar {
    shared: Arc<Shared>,
    ca: tempfile::NamedTempFile,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking test thread must not take the registrar down with it.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Registrar {
    /// Starts a registrar on fresh ports of 127.0.0.1.
    pub fn start(opts: Options) -> Registrar {
        let (ca_pem, server_config) = test_pki();
        let mut ca = tempfile::NamedTempFile::new().expect("temp file for the test CA");
        std::io::Write::write_all(&mut ca, ca_pem.as_bytes()).expect("write the test CA");
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("test-registrar".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("registrar runtime");
                rt.block_on(async move {
                    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
                    let (udp, tcp) = bind_udp_and_tcp(ip).await;
                    let tls = TcpListener::bind((ip, 0))
                        .await
                        .expect("registrar TLS port");
                    let port = udp.local_addr().expect("udp address").port();
                    let tls_port = tls.local_addr().expect("tls address").port();
                    let shared = Arc::new(Shared {
                        opts,
                        ip,
                        port,
                        tls_port,
                        counters: Counters::default(),
                        state: Mutex::new(State::default()),
                        conns: Mutex::new(HashMap::new()),
                    });
                    let net = Arc::new(Net {
                        shared: shared.clone(),
                        udp: Arc::new(udp),
                    });
                    tokio::spawn(udp_loop(net.clone()));
                    tokio::spawn(tcp_accept(net.clone(), tcp));
                    let acceptor = TlsAcceptor::from(Arc::new(server_config));
                    tokio::spawn(tls_accept(net.clone(), tls, acceptor));
                    let _ = ready_tx.send(shared);
                    let _ = stop_rx.await;
                });
            })
            .expect("registrar thread");
        let shared = ready_rx.recv().expect("registrar failed to start");
        Registrar {
            shared,
            ca,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// The UDP and TCP port.
    pub fn port(&self) -> u16 {
        self.shared.port
    }

    pub fn tls_port(&self) -> u16 {
        self.shared.tls_port
    }

    /// `127.0.0.1:PORT` (UDP and TCP).
    pub fn addr(&self) -> String {
        format!("{}:{}", self.shared.ip, self.shared.port)
    }

    /// `127.0.0.1:TLSPORT`.
    pub fn tls_addr(&self) -> String {
        format!("{}:{}", self.shared.ip, self.shared.tls_port)
    }

    /// The PEM file of the CA that signed the TLS certificate (for `Account::tls_ca`).
    pub fn ca_file(&self) -> String {
        self.ca.path().display().to_string()
    }

    /// REGISTER requests seen (challenged ones included).
    pub fn registers(&self) -> usize {
        self.shared.counters.registers.load(Ordering::SeqCst)
    }

    /// 401 and 407 challenges sent.
    pub fn challenges(&self) -> usize {
        self.shared.counters.challenges.load(Ordering::SeqCst)
    }

    /// Requests whose credentials were wrong (bad digest, unknown user or nonce).
    pub fn auth_failures(&self) -> usize {
        self.shared.counters.auth_failures.load(Ordering::SeqCst)
    }

    /// REGISTERs answering a nonce we no longer accept (challenged again, not a failure).
    pub fn unknown_nonces(&self) -> usize {
        self.shared.counters.unknown_nonces.load(Ordering::SeqCst)
    }

    /// 423 Interval Too Brief answers.
    pub fn too_brief(&self) -> usize {
        self.shared.counters.too_brief.load(Ordering::SeqCst)
    }

    /// Requests proxied on.
    pub fn forwarded_requests(&self) -> usize {
        self.shared
            .counters
            .forwarded_requests
            .load(Ordering::SeqCst)
    }

    /// Requests of `method` proxied on.
    pub fn forwarded(&self, method: &str) -> usize {
        lock(&self.shared.state)
            .forwarded
            .get(method)
            .copied()
            .unwrap_or(0)
    }

    /// Responses passed back.
    pub fn forwarded_responses(&self) -> usize {
        self.shared
            .counters
            .forwarded_responses
            .load(Ordering::SeqCst)
    }

    /// Messages that did not parse or lacked mandatory headers.
    pub fn malformed(&self) -> usize {
        self.shared.counters.malformed.load(Ordering::SeqCst)
    }

    /// TLS clients that gave up during the handshake (e.g. our certificate was not trusted).
    pub fn tls_handshake_failures(&self) -> usize {
        self.shared
            .counters
            .tls_handshake_failures
            .load(Ordering::SeqCst)
    }

    /// The live bindings of `user`.
    pub fn bindings(&self, user: &str) -> Vec<Binding> {
        let now = Instant::now();
        lock(&self.shared.state)
            .bindings
            .get(user)
            .map(|v| v.iter().filter(|b| b.expires_at > now).cloned().collect())
            .unwrap_or_default()
    }

    /// Live bindings over all users.
    pub fn binding_count(&self) -> usize {
        let now = Instant::now();
        lock(&self.shared.state)
            .bindings
            .values()
            .flatten()
            .filter(|b| b.expires_at > now)
            .count()
    }

    /// Polls `cond` until it holds or `timeout` passes; returns whether it held.
    pub fn wait(&self, timeout: Duration, cond: impl Fn(&Registrar) -> bool) -> bool {
        let end = Instant::now() + timeout;
        loop {
            if cond(self) {
                return true;
            }
            if Instant::now() >= end {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Registrar {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl std::fmt::Debug for Registrar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registrar")
            .field("port", &self.shared.port)
            .field("tls_port", &self.shared.tls_port)
            .field("bindings", &lock(&self.shared.state).bindings)
            .field("counters", &self.shared.counters)
            .finish()
    }
}

/// A CA, and a server certificate for 127.0.0.1 / localhost signed by it: (CA PEM, TLS config).
fn test_pki() -> (String, rustls::ServerConfig) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Dialtone test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("CA key"))
        .expect("CA certificate");
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".into()])
        .expect("server params");
    params
        .distinguished_name
        .push(DnType::CommonName, "127.0.0.1");
    let key = KeyPair::generate().expect("server key");
    let cert = params.signed_by(&key, &ca).expect("server certificate");
    let key_der = rustls::pki_types::PrivateKeyDer::Pkcs8(
        rustls::pki_types::PrivatePkcs8KeyDer::from(key.serialize_der()),
    );
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key_der)
        .expect("TLS server config");
    (ca.pem(), config)
}

/// UDP on a free port, and TCP on the same port (retried if that TCP port is taken).
async fn bind_udp_and_tcp(ip: IpAddr) -> (UdpSocket, TcpListener) {
    for _ in 0..20 {
        let udp = UdpSocket::bind((ip, 0)).await.expect("registrar UDP port");
        let Ok(addr) = udp.local_addr() else { continue };
        if let Ok(tcp) = TcpListener::bind(addr).await {
            return (udp, tcp);
        }
    }
    panic!("no port free for both UDP and TCP");
}

// ---------------------------------------------------------------------------------- network

struct Net {
    shared: Arc<Shared>,
    udp: Arc<UdpSocket>,
}

impl Net {
    async fn deliver(self: &Arc<Self>, outs: Vec<Out>) {
        for out in outs {
            match out.transport {
                Transport::Udp => {
                    let _ = self.udp.send_to(&out.bytes, out.addr).await;
                }
                t => {
                    let key = (t, out.addr);
                    let existing = lock(&self.shared.conns).get(&key).cloned();
                    let bytes = match existing {
                        Some(w) => match w.send(out.bytes) {
                            Ok(()) => continue,
                            Err(e) => {
                                lock(&self.shared.conns).remove(&key);
                                e.0
                            }
                        },
                        None => out.bytes,
                    };
                    if t != Transport::Tcp {
                        // The registrar never dials TLS: a TLS peer is reached on its own flow.
                        continue;
                    }
                    let (w, r) = mpsc::unbounded_channel();
                    let _ = w.send(bytes);
                    lock(&self.shared.conns).insert(key, w);
                    tokio::spawn(dial(self.clone(), key, r));
                }
            }
        }
    }
}

/// Connects to a TCP peer and serves the connection. Boxed: serving a stream may dial another.
fn dial(
    net: Arc<Net>,
    key: (Transport, SocketAddr),
    writes: mpsc::UnboundedReceiver<Vec<u8>>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
    Box::pin(async move {
        match TcpStream::connect(key.1).await {
            Ok(s) => serve_stream(net, s, key, writes).await,
            Err(_) => {
                lock(&net.shared.conns).remove(&key);
            }
        }
    })
}

async fn udp_loop(net: Arc<Net>) {
    let mut buf = vec![0u8; 65_535];
    loop {
        let Ok((n, source)) = net.udp.recv_from(&mut buf).await else {
            continue;
        };
        let outs = net.shared.handle(Transport::Udp, source, &buf[..n]);
        net.deliver(outs).await;
    }
}

async fn tcp_accept(net: Arc<Net>, listener: TcpListener) {
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let key = (Transport::Tcp, peer);
        let (w, r) = mpsc::unbounded_channel();
        lock(&net.shared.conns).insert(key, w);
        tokio::spawn(serve_stream(net.clone(), stream, key, r));
    }
}

async fn tls_accept(net: Arc<Net>, listener: TcpListener, acceptor: TlsAcceptor) {
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let net = net.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let stream = match acceptor.accept(stream).await {
                Ok(s) => s,
                Err(_) => {
                    net.shared
                        .counters
                        .tls_handshake_failures
                        .fetch_add(1, Ordering::SeqCst);
                    return;
                }
            };
            let key = (Transport::Tls, peer);
            let (w, r) = mpsc::unbounded_channel();
            lock(&net.shared.conns).insert(key, w);
            serve_stream(net, stream, key, r).await;
        });
    }
}

async fn serve_stream<S: AsyncRead + AsyncWrite + Unpin>(
    net: Arc<Net>,
    stream: S,
    key: (Transport, SocketAddr),
    mut writes: mpsc::UnboundedReceiver<Vec<u8>>,
) {
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut framer = StreamFramer::default();
    let mut buf = vec![0u8; 16 * 1024];
    'conn: loop {
        tokio::select! {
            n = rd.read(&mut buf) => {
                let n = match n {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                framer.push(&buf[..n]);
                loop {
                    match framer.next_frame() {
                        Ok(Some(Frame::Message(bytes))) => {
                            let outs = net.shared.handle(key.0, key.1, &bytes);
                            net.deliver(outs).await;
                        }
                        Ok(Some(Frame::Ping)) => {
                            if wr.write_all(b"\r\n").await.is_err() {
                                break 'conn;
                            }
                        }
                        Ok(None) => break,
                        Err(_) => {
                            net.shared.counters.malformed.fetch_add(1, Ordering::SeqCst);
                            break 'conn;
                        }
                    }
                }
            }
            msg = writes.recv() => {
                let Some(msg) = msg else { break };
                if wr.write_all(&msg).await.is_err() {
                    break;
                }
            }
        }
    }
    lock(&net.shared.conns).remove(&key);
}

// ---------------------------------------------------------------------------------- SIP

impl Shared {
    /// One datagram or stream frame from `source`: what to send where.
    fn handle(&self, transport: Transport, source: SocketAddr, bytes: &[u8]) -> Vec<Out> {
        let Ok(msg) = Message::parse(bytes) else {
            self.counters.malformed.fetch_add(1, Ordering::SeqCst);
            return Vec::new();
        };
        if msg.validate().is_err() {
            self.counters.malformed.fetch_add(1, Ordering::SeqCst);
            if msg.is_request() && msg.method() != Some(&Method::Ack) && msg.top_via().is_ok() {
                let resp = Message::response_to(&msg, 400, "Bad Request");
                return vec![Out {
                    transport,
                    addr: source,
                    bytes: resp.to_bytes(),
                }];
            }
            return Vec::new();
        }
        if msg.is_request() {
            self.on_request(transport, source, msg)
        } else {
            self.on_response(msg)
        }
    }

    fn reply(&self, transport: Transport, source: SocketAddr, resp: Message) -> Vec<Out> {
        vec![Out {
            transport,
            addr: source,
            bytes: resp.to_bytes(),
        }]
    }

    fn on_request(&self, transport: Transport, source: SocketAddr, mut req: Message) -> Vec<Out> {
        stamp_via(&mut req, source);
        match req.method() {
            Some(Method::Register) => {
                let resp = self.register(&req, transport, source);
                self.reply(transport, source, resp)
            }
            _ => self.proxy(transport, source, req),
        }
    }

    /// A final response with a To tag (for requests that end here).
    fn final_response(&self, req: &Message, code: u16, reason: &str) -> Message {
        let mut resp = Message::response_to(req, code, reason);
        if let Ok(to) = req.to()
            && to.tag().is_none()
        {
            let tag = format!("{TAG_PREFIX}{:08x}", rand::random::<u32>());
            resp.set_header("To", to.with_tag(&tag).to_string());
        }
        resp.push_header("Server", "dialtone-test-registrar");
        resp
    }

    /// A 401 (registrar) or 407 (proxy) with a fresh nonce.
    fn challenge(&self, req: &Message, proxy: bool) -> Message {
        self.counters.challenges.fetch_add(1, Ordering::SeqCst);
        let nonce = format!("{:032x}", rand::random::<u128>());
        lock(&self.state).nonces.insert(nonce.clone());
        let (code, reason, header) = if proxy {
            (407, "Proxy Authentication Required", "Proxy-Authenticate")
        } else {
            (401, "Unauthorized", "WWW-Authenticate")
        };
        let mut resp = self.final_response(req, code, reason);
        resp.push_header(
            header,
            challenge_header(&self.opts.realm, &nonce, self.opts.algorithm, self.opts.qop),
        );
        resp
    }

    /// Whether the (Proxy-)Authorization of a request is right: Some(true/false), or None without
    /// one (or with a nonce we do not accept any more).
    fn check_credentials(&self, req: &Message, proxy: bool) -> Option<bool> {
        let name = if proxy {
            "Proxy-Authorization"
        } else {
            "Authorization"
        };
        let value = req.header(name)?;
        let Ok(creds) = Credentials::parse(value) else {
            return Some(false);
        };
        let known_nonce = {
            let mut state = lock(&self.state);
            if self.opts.single_use_nonces {
                state.nonces.remove(&creds.nonce)
            } else {
                state.nonces.contains(&creds.nonce)
            }
        };
        if !known_nonce {
            self.counters.unknown_nonces.fetch_add(1, Ordering::SeqCst);
            return None;
        }
        let password = self
            .opts
            .users
            .iter()
            .find(|(u, _)| *u == creds.username)
            .map(|(_, p)| p.as_str());
        let ok = creds.realm == self.opts.realm
            && creds.algorithm == self.opts.algorithm
            && Some(creds.uri.as_str()) == req.request_uri()
            && password.is_some_and(|p| {
                let method = req.method().map(|m| m.as_str()).unwrap_or_default();
                creds.verify(p, method, &req.body)
            });
        Some(ok)
    }

    fn register(&self, req: &Message, transport: Transport, source: SocketAddr) -> Message {
        self.counters.registers.fetch_add(1, Ordering::SeqCst);
        let Some(user) = req.to().ok().and_then(|t| t.uri.user) else {
            return self.final_response(req, 400, "No User In To");
        };
        match self.check_credentials(req, false) {
            None => return self.challenge(req, false),
            Some(false) => {
                self.counters.auth_failures.fetch_add(1, Ordering::SeqCst);
                return self.challenge(req, false);
            }
            Some(true) => {}
        }
        let default_expiry = req.header("Expires").map(|v| v.trim().parse::<u32>().ok());
        let default_expiry = match default_expiry {
            None => MAX_EXPIRES,
            Some(Some(e)) => e,
            Some(None) => return self.final_response(req, 400, "Bad Expires"),
        };
        let Ok(contacts) = req.contacts() else {
            return self.final_response(req, 400, "Bad Contact");
        };
        let now = Instant::now();
        match contacts {
            Contacts::Star => {
                if default_expiry != 0 {
                    return self.final_response(req, 400, "Star Needs Expires 0");
                }
                lock(&self.state).bindings.remove(&user);
            }
            Contacts::List(list) => {
                let mut wanted = Vec::new();
                for c in &list {
                    let expiry = match c.param("expires") {
                        Some(Some(e)) => match e.trim().parse::<u32>() {
                            Ok(e) => e,
                            Err(_) => return self.final_response(req, 400, "Bad Contact Expires"),
                        },
                        _ => default_expiry,
                    };
                    if let Some(min) = self.opts.min_expires
                        && expiry != 0
                        && expiry < min
                    {
                        self.counters.too_brief.fetch_add(1, Ordering::SeqCst);
                        let mut resp = self.final_response(req, 423, "Interval Too Brief");
                        resp.push_header("Min-Expires", min.to_string());
                        return resp;
                    }
                    wanted.push((c.uri.to_string(), expiry.min(MAX_EXPIRES)));
                }
                let mut state = lock(&self.state);
                let list = state.bindings.entry(user.clone()).or_default();
                for (contact, expiry) in wanted {
                    list.retain(|b| b.contact != contact);
                    if expiry > 0 {
                        list.push(Binding {
                            contact,
                            expires_at: now + Duration::from_secs(u64::from(expiry)),
                            transport,
                            source,
                        });
                    }
                }
            }
        }
        let mut resp = self.final_response(req, 200, "OK");
        let mut state = lock(&self.state);
        if let Some(list) = state.bindings.get_mut(&user) {
            list.retain(|b| b.expires_at > now);
            for b in list.iter() {
                let left = b.expires_at.saturating_duration_since(now).as_secs();
                resp.push_header("Contact", format!("<{}>;expires={left}", b.contact));
            }
        }
        resp
    }

    fn is_us(&self, uri: &Uri) -> bool {
        let port = uri.port.unwrap_or(match uri.scheme {
            Scheme::Sips => 5061,
            _ => 5060,
        });
        uri.host.parse::<IpAddr>().ok() == Some(self.ip)
            && (port == self.port || port == self.tls_port)
    }

    /// Where a URI points: transport from `;transport=` (or `sips:`), an IP literal host.
    fn hop(uri: &Uri) -> Option<(Transport, SocketAddr)> {
        let transport = match uri.param("transport").flatten() {
            Some(t) => Transport::parse(t)?,
            None if uri.scheme == Scheme::Sips => Transport::Tls,
            None => Transport::Udp,
        };
        let ip: IpAddr = uri.host.parse().ok()?;
        Some((
            transport,
            SocketAddr::new(ip, uri.port.unwrap_or(transport.default_port())),
        ))
    }

    /// Where to reach a binding: its registration flow while that stream lives, else its Contact.
    fn binding_hop(&self, b: &Binding) -> Option<(Transport, SocketAddr)> {
        let uri = Uri::parse(&b.contact).ok()?;
        let hop = Self::hop(&uri)?;
        if hop.0 != Transport::Udp
            && hop.0 == b.transport
            && lock(&self.conns).contains_key(&(b.transport, b.source))
        {
            return Some((b.transport, b.source));
        }
        Some(hop)
    }

    fn lookup(&self, user: &str) -> Option<Binding> {
        let now = Instant::now();
        lock(&self.state)
            .bindings
            .get(user)?
            .iter()
            .filter(|b| b.expires_at > now)
            .max_by_key(|b| b.expires_at)
            .cloned()
    }

    fn proxy(&self, transport: Transport, source: SocketAddr, mut req: Message) -> Vec<Out> {
        let Some(method) = req.method().cloned() else {
            return Vec::new();
        };
        let is_ack = method == Method::Ack;
        let refuse = |req: &Message, code: u16, reason: &str| {
            if is_ack {
                Vec::new()
            } else {
                self.reply(transport, source, self.final_response(req, code, reason))
            }
        };
        let max_forwards = match req.header("Max-Forwards") {
            Some(v) => match v.trim().parse::<u32>() {
                Ok(n) => n,
                Err(_) => return refuse(&req, 400, "Bad Max-Forwards"),
            },
            None => 70,
        };
        if max_forwards == 0 {
            return refuse(&req, 483, "Too Many Hops");
        }
        let to_tag = req.to().ok().and_then(|t| t.tag().map(str::to_string));
        if is_ack && to_tag.as_deref().is_some_and(|t| t.starts_with(TAG_PREFIX)) {
            // The ACK of a final response we sent ourselves (a 407, a 404): it ends here.
            return Vec::new();
        }
        let from_user = req.from().ok().and_then(|f| f.uri.user);
        let ours = from_user
            .as_deref()
            .is_some_and(|u| self.opts.users.iter().any(|(n, _)| n == u));
        if self.opts.challenge_invites && method == Method::Invite && to_tag.is_none() && ours {
            match self.check_credentials(&req, true) {
                Some(true) => {}
                Some(false) => {
                    self.counters.auth_failures.fetch_add(1, Ordering::SeqCst);
                    return self.reply(transport, source, self.challenge(&req, true));
                }
                None => return self.reply(transport, source, self.challenge(&req, true)),
            }
        }
        // Our own Route (we record-routed this dialog) is popped (loose routing, 16.4).
        let mut routes: Vec<String> = req
            .header_values("Route")
            .into_iter()
            .map(str::to_string)
            .collect();
        while routes
            .first()
            .and_then(|r| NameAddr::parse(r).ok())
            .is_some_and(|r| self.is_us(&r.uri))
        {
            routes.remove(0);
        }
        let Some(ruri) = req.request_uri().and_then(|u| Uri::parse(u).ok()) else {
            return refuse(&req, 400, "Bad Request-URI");
        };
        let dest = if let Some(first) = routes.first() {
            let Some(hop) = NameAddr::parse(first).ok().and_then(|r| Self::hop(&r.uri)) else {
                return refuse(&req, 502, "Bad Route");
            };
            hop
        } else if self.is_us(&ruri) {
            let user = ruri.user.clone().unwrap_or_default();
            let Some(binding) = self.lookup(&user) else {
                return match method {
                    Method::Options => {
                        let mut ok = self.final_response(&req, 200, "OK");
                        ok.push_header("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER");
                        self.reply(transport, source, ok)
                    }
                    _ => refuse(&req, 404, "Not Found"),
                };
            };
            let Some(hop) = self.binding_hop(&binding) else {
                return refuse(&req, 480, "Temporarily Unavailable");
            };
            if let dialtone::engine::sip::message::StartLine::Request { uri, .. } = &mut req.start {
                *uri = binding.contact.clone();
            }
            hop
        } else {
            let Some(hop) = Self::hop(&ruri) else {
                return refuse(&req, 502, "Cannot Reach Request-URI");
            };
            hop
        };
        if dest.1.ip() == self.ip && (dest.1.port() == self.port || dest.1.port() == self.tls_port)
        {
            return refuse(&req, 482, "Loop Detected");
        }
        req.set_header("Max-Forwards", (max_forwards - 1).to_string());
        req.remove_header("Route");
        for r in routes {
            req.push_header("Route", r);
        }
        let initial_invite = method == Method::Invite && to_tag.is_none();
        if initial_invite {
            // One Record-Route, or two when the legs differ in TLS (RFC 5658): the top one for
            // the callee's side, the next for the caller's; each side's route set starts with its own.
            let mut rr = vec![self.record_route(dest.0)];
            if (transport == Transport::Tls) != (dest.0 == Transport::Tls) {
                rr.push(self.record_route(transport));
            }
            let at = req
                .headers
                .iter()
                .position(|h| h.name == "Record-Route")
                .unwrap_or(req.headers.len());
            for (k, value) in rr.into_iter().enumerate() {
                let h = Header {
                    name: "Record-Route".into(),
                    value,
                };
                req.headers.insert(at + k, h);
            }
        }
        // Stateless: the branch is a function of the incoming one (16.11), so a retransmission,
        // the CANCEL and the ACK of a non-2xx all get the branch of their INVITE.
        let incoming = req
            .top_via()
            .ok()
            .map(|v| v.branch().unwrap_or_default().to_string())
            .unwrap_or_default();
        let mut h = std::collections::hash_map::DefaultHasher::new();
        incoming.hash(&mut h);
        let our_port = if dest.0 == Transport::Tls {
            self.tls_port
        } else {
            self.port
        };
        req.headers.insert(
            0,
            Header {
                name: "Via".into(),
                value: format!(
                    "SIP/2.0/{} {}:{our_port};branch={BRANCH_PREFIX}{:016x}",
                    dest.0.via_token(),
                    self.ip,
                    h.finish()
                ),
            },
        );
        self.counters
            .forwarded_requests
            .fetch_add(1, Ordering::SeqCst);
        *lock(&self.state)
            .forwarded
            .entry(method.to_string())
            .or_default() += 1;
        vec![Out {
            transport: dest.0,
            addr: dest.1,
            bytes: req.to_bytes(),
        }]
    }

    /// Our Record-Route for a leg over `transport` (UDP and TCP share a port).
    fn record_route(&self, transport: Transport) -> String {
        match transport {
            Transport::Tls => format!("<sip:{}:{};transport=tls;lr>", self.ip, self.tls_port),
            _ => format!("<sip:{}:{};lr>", self.ip, self.port),
        }
    }

    fn on_response(&self, mut resp: Message) -> Vec<Out> {
        let Ok(vias) = resp.vias() else {
            return Vec::new();
        };
        let ours = vias
            .first()
            .and_then(Via::branch)
            .is_some_and(|b| b.starts_with(BRANCH_PREFIX));
        if !ours {
            return Vec::new();
        }
        let Some(next) = vias.get(1) else {
            return Vec::new();
        };
        let Some(transport) = Transport::parse(&next.transport) else {
            return Vec::new();
        };
        let host = next.received().unwrap_or(&next.host);
        let Ok(ip) = host.parse::<IpAddr>() else {
            return Vec::new();
        };
        let port = next
            .rport()
            .or(next.port)
            .unwrap_or(transport.default_port());
        remove_top_via(&mut resp);
        self.counters
            .forwarded_responses
            .fetch_add(1, Ordering::SeqCst);
        vec![Out {
            transport,
            addr: SocketAddr::new(ip, port),
            bytes: resp.to_bytes(),
        }]
    }
}

/// Writes a Via value back (`SIP/2.0/UDP host:port;params`).
fn via_to_string(v: &Via) -> String {
    let host = if v.host.contains(':') {
        format!("[{}]", v.host)
    } else {
        v.host.clone()
    };
    let mut s = format!("SIP/2.0/{} {host}", v.transport);
    if let Some(p) = v.port {
        s.push_str(&format!(":{p}"));
    }
    let _ = write_params(&mut s, &v.params);
    s
}

/// Index of the first Via line and its comma-separated values.
fn first_via_line(msg: &Message) -> Option<(usize, Vec<String>)> {
    let i = msg.headers.iter().position(|h| h.name == "Via")?;
    let values = split_top(&msg.headers[i].value, ',')
        .into_iter()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect();
    Some((i, values))
}

/// Fills `received` (and `rport`, when the client asked for it) into the top Via (RFC 3581).
fn stamp_via(req: &mut Message, source: SocketAddr) {
    let Some((i, mut values)) = first_via_line(req) else {
        return;
    };
    let Some(mut via) = values.first().and_then(|v| Via::parse(v)) else {
        return;
    };
    set_param(&mut via.params, "received", Some(source.ip().to_string()));
    if via.param("rport").is_some() {
        set_param(&mut via.params, "rport", Some(source.port().to_string()));
    }
    values[0] = via_to_string(&via);
    req.headers[i].value = values.join(", ");
}

fn remove_top_via(resp: &mut Message) {
    let Some((i, values)) = first_via_line(resp) else {
        return;
    };
    if values.len() > 1 {
        resp.headers[i].value = values[1..].join(", ");
    } else {
        resp.headers.remove(i);
    }
}
