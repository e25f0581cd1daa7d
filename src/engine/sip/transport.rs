//! Where a SIP message goes: transport, host and port (RFC 3263 reduced to A/AAAA records: the
//! transport comes from the URI or the account, the port from the URI or the transport's default).
//! The sockets themselves live in `engine::net`.

use super::uri::{Scheme, Uri};
use crate::store::settings::Transport;
use std::fmt;
use std::net::SocketAddr;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    pub transport: Transport,
    /// An IP literal or a name for the runtime to resolve (and, for TLS, to verify).
    pub host: String,
    pub port: u16,
}

impl Target {
    pub fn from_addr(transport: Transport, addr: SocketAddr) -> Target {
        Target {
            transport,
            host: addr.ip().to_string(),
            port: addr.port(),
        }
    }

    /// The next hop for a URI: `;transport=` wins, then `sips:` (TLS), then `default`.
    pub fn for_uri(uri: &Uri, default: Transport) -> Target {
        let transport = match uri.param("transport").flatten() {
            Some(t) => Transport::parse(t).unwrap_or(default),
            None if uri.scheme == Scheme::Sips => Transport::Tls,
            None => default,
        };
        let host = uri
            .param("maddr")
            .flatten()
            .map(str::to_string)
            .unwrap_or_else(|| uri.host.clone());
        Target {
            transport,
            port: uri.port.unwrap_or(transport.default_port()),
            host,
        }
    }

    /// Parses `host`, `host:port`, `[v6]:port` or a SIP URI (account settings).
    pub fn parse(s: &str, default: Transport) -> Option<Target> {
        let s = s.trim();
        if s.is_empty() {
            return None;
        }
        if s.contains("sip:") || s.contains("sips:") {
            return Uri::parse(s).ok().map(|u| Target::for_uri(&u, default));
        }
        Uri::parse(&format!("sip:{s}"))
            .ok()
            .map(|u| Target::for_uri(&u, default))
    }

    /// Responses go back where the request came from (RFC 3581 and 18.2.2 for streams).
    pub fn response_target(transport: Transport, source: SocketAddr) -> Target {
        Target::from_addr(transport, source)
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "{}:[{}]:{}", self.transport, self.host, self.port)
        } else {
            write!(f, "{}:{}:{}", self.transport, self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_transport_param_and_sips_choose_the_transport() {
        let u = Uri::parse("sip:bob@10.0.0.1;transport=tcp").unwrap();
        assert_eq!(
            Target::for_uri(&u, Transport::Udp),
            Target {
                transport: Transport::Tcp,
                host: "10.0.0.1".into(),
                port: 5060
            }
        );
        let u = Uri::parse("sips:bob@example.com").unwrap();
        assert_eq!(Target::for_uri(&u, Transport::Udp).port, 5061);
        assert_eq!(
            Target::parse("127.0.0.1:5070", Transport::Tcp)
                .unwrap()
                .port,
            5070
        );
        assert_eq!(
            Target::parse("[::1]:5070", Transport::Udp).unwrap().host,
            "::1"
        );
    }
}
