//! The SIP transports: one UDP socket, a TCP listener on the same port, and TCP/TLS connections
//! that are reused for every message to the same peer (RFC 3261 18). Stream framing is done by
//! `sip::message::StreamFramer`; everything that arrives reaches the runtime as a `NetEvent`.

use super::sip::message::{Frame, StreamFramer};
use super::sip::transport::Target;
use crate::store::settings::{Settings, Transport};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::{self, pki_types::ServerName};

/// What the network tells the runtime.
#[derive(Debug)]
pub enum NetEvent {
    Packet {
        transport: Transport,
        source: SocketAddr,
        bytes: Vec<u8>,
    },
    /// A stream connection is up (accepted or connected): where to write to it.
    Connected {
        key: (Transport, SocketAddr),
        writer: mpsc::UnboundedSender<Vec<u8>>,
    },
    Closed {
        key: (Transport, SocketAddr),
    },
    /// Sending to a target failed for good (connect refused, TLS handshake failed, no address).
    Failed {
        target: Target,
        why: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

pub struct Net {
    udp: Arc<UdpSocket>,
    /// The address we tell others about (Via, Contact, SDP), with our listening port.
    advertised: SocketAddr,
    conns: HashMap<(Transport, SocketAddr), mpsc::UnboundedSender<Vec<u8>>>,
    /// The targets messages went to over each stream connection: whose requests fail if it closes.
    conn_targets: HashMap<(Transport, SocketAddr), Vec<Target>>,
    events_tx: mpsc::UnboundedSender<NetEvent>,
    pub events: mpsc::UnboundedReceiver<NetEvent>,
    dns: HashMap<(String, u16), SocketAddr>,
    tls: TlsSettings,
}

/// TLS client settings: the system roots plus any CA files the accounts name; verification is
/// on unless an account for that host turned it off.
struct TlsSettings {
    verified: Option<Arc<rustls::ClientConfig>>,
    insecure_hosts: Vec<String>,
}

impl Net {
    /// Binds UDP (and TCP on the same port) on `settings.listen`.
    pub async fn bind(settings: &Settings) -> Result<Net, NetError> {
        let listen = settings
            .listen_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 5060)));
        let udp = match UdpSocket::bind(listen).await {
            Ok(s) => s,
            // The default port is often taken (another softphone, a local PBX): take any free one
            // rather than not starting. A port the user chose is never swapped silently.
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && listen.port() == 5060 => {
                tracing::warn!("{listen} is in use; listening on a free port instead");
                UdpSocket::bind(SocketAddr::new(listen.ip(), 0))
                    .await
                    .map_err(|source| NetError::Bind {
                        addr: listen,
                        source,
                    })?
            }
            Err(source) => {
                return Err(NetError::Bind {
                    addr: listen,
                    source,
                });
            }
        };
        let bound = udp.local_addr().map_err(|source| NetError::Bind {
            addr: listen,
            source,
        })?;
        let advertised = SocketAddr::new(advertised_ip(bound.ip(), settings).await, bound.port());
        let (events_tx, events) = mpsc::unbounded_channel();
        let udp = Arc::new(udp);
        tokio::spawn(udp_reader(udp.clone(), events_tx.clone()));
        match TcpListener::bind(bound).await {
            Ok(listener) => {
                tokio::spawn(tcp_acceptor(listener, events_tx.clone()));
            }
            Err(e) => tracing::warn!("no TCP listener on {bound} ({e}); incoming TCP disabled"),
        }
        tracing::info!("SIP on udp+tcp {bound}, advertised as {advertised}");
        Ok(Net {
            udp,
            advertised,
            conns: HashMap::new(),
            conn_targets: HashMap::new(),
            events_tx,
            events,
            dns: HashMap::new(),
            tls: TlsSettings::new(settings),
        })
    }

    pub fn advertised(&self) -> SocketAddr {
        self.advertised
    }

    pub fn connection_up(
        &mut self,
        key: (Transport, SocketAddr),
        writer: mpsc::UnboundedSender<Vec<u8>>,
    ) {
        self.conns.insert(key, writer);
    }

    /// Forgets a closed connection; returns the targets that were sent to over it (the runtime fails
    /// their transactions: no response can come on a closed connection).
    pub fn connection_closed(&mut self, key: &(Transport, SocketAddr)) -> Vec<Target> {
        self.conns.remove(key);
        self.conn_targets.remove(key).unwrap_or_default()
    }

    /// Resolves a target's host (IP literals at once, names through the system resolver).
    async fn resolve(&mut self, target: &Target) -> Result<SocketAddr, String> {
        if let Ok(ip) = target.host.parse::<IpAddr>() {
            return Ok(SocketAddr::new(ip, target.port));
        }
        let key = (target.host.to_ascii_lowercase(), target.port);
        if let Some(a) = self.dns.get(&key) {
            return Ok(*a);
        }
        let want_v4 = self.advertised.is_ipv4();
        let lookup = tokio::net::lookup_host((target.host.as_str(), target.port));
        let addrs: Vec<SocketAddr> = tokio::time::timeout(Duration::from_secs(5), lookup)
            .await
            .map_err(|_| format!("looking up {} timed out", target.host))?
            .map_err(|e| format!("cannot resolve {}: {e}", target.host))?
            .collect();
        let addr = addrs
            .iter()
            .find(|a| a.is_ipv4() == want_v4)
            .or(addrs.first())
            .copied()
            .ok_or_else(|| format!("{} has no address", target.host))?;
        self.dns.insert(key, addr);
        Ok(addr)
    }

    /// Sends a message. Errors that come later (a refused connection) arrive as `NetEvent::Failed`.
    pub async fn send(&mut self, target: &Target, bytes: Vec<u8>) -> Result<(), String> {
        let addr = self.resolve(target).await?;
        match target.transport {
            Transport::Udp => self
                .udp
                .send_to(&bytes, addr)
                .await
                .map(|_| ())
                .map_err(|e| format!("udp send to {addr}: {e}")),
            t @ (Transport::Tcp | Transport::Tls) => {
                let key = (t, addr);
                let targets = self.conn_targets.entry(key).or_default();
                if !targets.contains(target) {
                    targets.push(target.clone());
                }
                if let Some(w) = self.conns.get(&key) {
                    if w.send(bytes.clone()).is_ok() {
                        return Ok(());
                    }
                    self.conns.remove(&key);
                }
                let (w, r) = mpsc::unbounded_channel();
                // Queue the message; the connection task writes it once connected.
                let _ = w.send(bytes);
                self.conns.insert(key, w);
                let tls = match t {
                    Transport::Tls => Some(self.tls.connector(&target.host)?),
                    _ => None,
                };
                tokio::spawn(connect(
                    target.clone(),
                    addr,
                    tls,
                    r,
                    self.events_tx.clone(),
                ));
                Ok(())
            }
        }
    }
}

impl TlsSettings {
    fn new(settings: &Settings) -> TlsSettings {
        let mut insecure_hosts = Vec::new();
        let mut roots = rustls::RootCertStore::empty();
        let uses_tls = settings
            .accounts
            .iter()
            .any(|a| a.transport == Transport::Tls);
        if uses_tls {
            let native = rustls_native_certs::load_native_certs();
            for e in &native.errors {
                tracing::warn!("system CA certificates: {e}");
            }
            let (added, _) = roots.add_parsable_certificates(native.certs);
            tracing::debug!("{added} system CA certificates");
        }
        for a in settings
            .accounts
            .iter()
            .filter(|a| a.transport == Transport::Tls)
        {
            if !a.tls_ca.is_empty() {
                match std::fs::read(&a.tls_ca) {
                    Ok(pem) => {
                        let certs = rustls_pemfile_certs(&pem);
                        if certs.is_empty() {
                            tracing::error!("no certificate in CA file {}", a.tls_ca);
                        }
                        roots.add_parsable_certificates(certs);
                    }
                    Err(e) => tracing::error!("cannot read CA file {}: {e}", a.tls_ca),
                }
            }
            if !a.tls_verify {
                for s in [&a.registrar, &a.outbound_proxy, &a.uri] {
                    if let Some(t) = Target::parse(s, Transport::Tls) {
                        insecure_hosts.push(t.host.to_ascii_lowercase());
                    }
                }
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verified = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .ok()
            .map(|b| Arc::new(b.with_root_certificates(roots).with_no_client_auth()));
        TlsSettings {
            verified,
            insecure_hosts,
        }
    }

    fn connector(&self, host: &str) -> Result<(TlsConnector, ServerName<'static>), String> {
        let name = ServerName::try_from(host.to_string())
            .map_err(|e| format!("bad TLS server name {host}: {e}"))?;
        let config = if self
            .insecure_hosts
            .iter()
            .any(|h| h.eq_ignore_ascii_case(host))
        {
            tracing::warn!(
                "TLS certificate of {host} is NOT verified (account setting tls_verify = false)"
            );
            insecure_config()?
        } else {
            self.verified.clone().ok_or("TLS is not available")?
        };
        Ok((TlsConnector::from(config), name))
    }
}

/// PEM certificates from a file's bytes.
fn rustls_pemfile_certs(pem: &[u8]) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .filter_map(Result::ok)
        .collect()
}

fn insecure_config() -> Result<Arc<rustls::ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

/// Accepts any certificate: only for accounts that explicitly set `tls_verify = false`.
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The IP to advertise: the bound one, or for a wildcard bind the interface that routes to the
/// first account's server (a connected UDP socket sends nothing), else loopback.
async fn advertised_ip(bound: IpAddr, settings: &Settings) -> IpAddr {
    if !bound.is_unspecified() {
        return bound;
    }
    let probe_host = settings
        .accounts
        .iter()
        .find_map(|a| {
            Target::parse(&a.outbound_proxy, a.transport)
                .or_else(|| Target::parse(&a.registrar, a.transport))
                .or_else(|| Target::parse(&a.uri, a.transport))
        })
        .map(|t| (t.host, t.port));
    if let Some((host, port)) = probe_host
        && let Ok(mut addrs) = tokio::net::lookup_host((host.as_str(), port)).await
        && let Some(addr) = addrs.next()
    {
        let any: SocketAddr = if addr.is_ipv4() {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        if let Ok(s) = UdpSocket::bind(any).await
            && s.connect(addr).await.is_ok()
            && let Ok(local) = s.local_addr()
        {
            return local.ip();
        }
    }
    IpAddr::V4(Ipv4Addr::LOCALHOST)
}

async fn udp_reader(sock: Arc<UdpSocket>, tx: mpsc::UnboundedSender<NetEvent>) {
    let mut buf = vec![0u8; 65_535];
    loop {
        match sock.recv_from(&mut buf).await {
            Ok((n, source)) => {
                let bytes = buf[..n].to_vec();
                // Keep-alives (CRLF) carry no message.
                if bytes.iter().all(|b| b.is_ascii_whitespace()) {
                    continue;
                }
                if tx
                    .send(NetEvent::Packet {
                        transport: Transport::Udp,
                        source,
                        bytes,
                    })
                    .is_err()
                {
                    return;
                }
            }
            // A receive error (not ICMP: an unconnected socket does not report those) is logged;
            // a peer that is gone is noticed by the transaction timers.
            Err(e) => tracing::debug!("udp receive: {e}"),
        }
    }
}

async fn tcp_acceptor(listener: TcpListener, tx: mpsc::UnboundedSender<NetEvent>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                let (w, r) = mpsc::unbounded_channel();
                let key = (Transport::Tcp, peer);
                if tx.send(NetEvent::Connected { key, writer: w }).is_err() {
                    return;
                }
                tokio::spawn(serve_stream(stream, key, Side::Accepted, r, tx.clone()));
            }
            Err(e) => {
                tracing::warn!("tcp accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn connect(
    target: Target,
    addr: SocketAddr,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    writes: mpsc::UnboundedReceiver<Vec<u8>>,
    tx: mpsc::UnboundedSender<NetEvent>,
) {
    let key = (target.transport, addr);
    let fail = |why: String, writes: mpsc::UnboundedReceiver<Vec<u8>>| {
        // Nothing more can be queued here (the next send opens a new connection); the failure with
        // its reason comes before the close, so the transactions on it fail with that reason.
        drop(writes);
        let _ = tx.send(NetEvent::Failed {
            target: target.clone(),
            why,
        });
        let _ = tx.send(NetEvent::Closed { key });
    };
    let stream = match tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(addr)).await
    {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return fail(format!("connect to {addr}: {e}"), writes),
        Err(_) => return fail(format!("connect to {addr} timed out"), writes),
    };
    let _ = stream.set_nodelay(true);
    match tls {
        None => serve_stream(stream, key, Side::Opened, writes, tx).await,
        Some((connector, name)) => match connector.connect(name, stream).await {
            Ok(s) => serve_stream(s, key, Side::Opened, writes, tx).await,
            Err(e) => fail(
                format!("TLS handshake with {} failed: {e}", target.host),
                writes,
            ),
        },
    }
}

/// How often we ping a connection we opened (RFC 5626 4.4.1 double-CRLF keep-alive), so that a
/// server or NAT does not close the flow it reaches us on.
const KEEPALIVE: Duration = Duration::from_secs(30);

/// Who opened a stream connection: we answer keep-alive pings on the ones we accepted, and send
/// pings (ignoring the pongs) on the ones we opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Accepted,
    Opened,
}

/// Reads frames from a stream and writes queued messages to it, until either side closes.
async fn serve_stream<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    key: (Transport, SocketAddr),
    side: Side,
    mut writes: mpsc::UnboundedReceiver<Vec<u8>>,
    tx: mpsc::UnboundedSender<NetEvent>,
) {
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut framer = StreamFramer::default();
    let mut buf = vec![0u8; 16 * 1024];
    let mut keepalive =
        tokio::time::interval_at(tokio::time::Instant::now() + KEEPALIVE, KEEPALIVE);
    loop {
        tokio::select! {
            _ = keepalive.tick(), if side == Side::Opened => {
                if wr.write_all(b"\r\n\r\n").await.is_err() {
                    break;
                }
            }
            n = rd.read(&mut buf) => {
                let n = match n {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                framer.push(&buf[..n]);
                loop {
                    match framer.next_frame() {
                        Ok(Some(Frame::Message(bytes))) => {
                            let ev = NetEvent::Packet { transport: key.0, source: key.1, bytes };
                            if tx.send(ev).is_err() {
                                return;
                            }
                        }
                        Ok(Some(Frame::Ping)) if side == Side::Accepted => {
                            // RFC 5626 keep-alive: answer the ping with a pong.
                            if wr.write_all(b"\r\n").await.is_err() {
                                break;
                            }
                        }
                        // Pongs to our own pings.
                        Ok(Some(Frame::Ping)) => {}
                        Ok(None) => break,
                        Err(e) => {
                            tracing::warn!("closing {}:{}: unframeable stream: {e}", key.0, key.1);
                            let _ = tx.send(NetEvent::Closed { key });
                            return;
                        }
                    }
                }
            }
            msg = writes.recv() => {
                let Some(msg) = msg else { break };
                if let Err(e) = wr.write_all(&msg).await {
                    tracing::warn!("write to {}:{}: {e}", key.0, key.1);
                    break;
                }
            }
        }
    }
    let _ = tx.send(NetEvent::Closed { key });
}
