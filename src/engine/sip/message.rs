//! SIP messages: framing, normalising, parsing, building and serialising.
//!
//! This module is the only one that sees raw SIP bytes. rsip 0.4 alone rejects or misreads real
//! traffic (../shared/FACTS.md: GRUU request URIs, compact header names, folding, LF-only lines,
//! unknown methods, quoted Contact parameters, multi-value Via lines, no Content-Length check), so
//! framing, normalising and the structure are done here; rsip serves as a cross-checking oracle in the
//! corpus tests. Headers keep their raw values: responses copy them byte for byte (RFC 3261 8.2.6).
//!
//! Nothing in here panics on any input; every malformed message is a `ParseError`.

use super::uri::{NameAddr, Params, Uri, param, parse_params, split_top};
use std::fmt;

/// Largest message accepted (a UDP datagram cannot be larger; streams are held to the same bound).
pub const MAX_MESSAGE: usize = 65_535;
/// Most header lines accepted in one message.
pub const MAX_HEADERS: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("empty message")]
    Empty,
    #[error("message larger than {MAX_MESSAGE} bytes")]
    TooLarge,
    #[error("no blank line after the headers")]
    Incomplete,
    #[error("bad start line {0:?}")]
    StartLine(String),
    #[error("bad header line {0:?}")]
    HeaderLine(String),
    #[error("too many headers")]
    TooManyHeaders,
    #[error("bad Content-Length {0:?}")]
    ContentLength(String),
    #[error("body shorter than Content-Length ({have} < {want})")]
    Truncated { have: usize, want: usize },
    #[error("missing or bad {0} header")]
    Missing(&'static str),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    Invite,
    Ack,
    Bye,
    Cancel,
    Register,
    Options,
    Info,
    Update,
    Prack,
    Subscribe,
    Notify,
    Refer,
    Message,
    Publish,
    Other(String),
}

impl Method {
    pub fn parse(s: &str) -> Method {
        match s {
            "INVITE" => Method::Invite,
            "ACK" => Method::Ack,
            "BYE" => Method::Bye,
            "CANCEL" => Method::Cancel,
            "REGISTER" => Method::Register,
            "OPTIONS" => Method::Options,
            "INFO" => Method::Info,
            "UPDATE" => Method::Update,
            "PRACK" => Method::Prack,
            "SUBSCRIBE" => Method::Subscribe,
            "NOTIFY" => Method::Notify,
            "REFER" => Method::Refer,
            "MESSAGE" => Method::Message,
            "PUBLISH" => Method::Publish,
            other => Method::Other(other.to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Register => "REGISTER",
            Method::Options => "OPTIONS",
            Method::Info => "INFO",
            Method::Update => "UPDATE",
            Method::Prack => "PRACK",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Refer => "REFER",
            Method::Message => "MESSAGE",
            Method::Publish => "PUBLISH",
            Method::Other(s) => s,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartLine {
    /// The Request-URI is kept as text: it is parsed where it is needed (and may be a tel: or GRUU).
    Request {
        method: Method,
        uri: String,
    },
    Response {
        code: u16,
        reason: String,
    },
}

/// One header line; `name` is the canonical long form (compact forms expanded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub start: StartLine,
    pub headers: Vec<Header>,
    pub body: Vec<u8>,
}

/// Compact header forms (RFC 3261 7.3.3 and later RFCs) and canonical spellings.
fn canonical_name(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    let canon = match lower.as_str() {
        "v" | "via" => "Via",
        "f" | "from" => "From",
        "t" | "to" => "To",
        "i" | "call-id" => "Call-ID",
        "m" | "contact" => "Contact",
        "l" | "content-length" => "Content-Length",
        "c" | "content-type" => "Content-Type",
        "e" | "content-encoding" => "Content-Encoding",
        "k" | "supported" => "Supported",
        "s" | "subject" => "Subject",
        "o" | "event" => "Event",
        "r" | "refer-to" => "Refer-To",
        "b" | "referred-by" => "Referred-By",
        "u" | "allow-events" => "Allow-Events",
        "x" | "session-expires" => "Session-Expires",
        "a" | "accept-contact" => "Accept-Contact",
        "j" | "reject-contact" => "Reject-Contact",
        "d" | "request-disposition" => "Request-Disposition",
        "cseq" => "CSeq",
        "www-authenticate" => "WWW-Authenticate",
        "proxy-authenticate" => "Proxy-Authenticate",
        "authorization" => "Authorization",
        "proxy-authorization" => "Proxy-Authorization",
        "record-route" => "Record-Route",
        "route" => "Route",
        "max-forwards" => "Max-Forwards",
        "expires" => "Expires",
        "min-expires" => "Min-Expires",
        "user-agent" => "User-Agent",
        "server" => "Server",
        "allow" => "Allow",
        "accept" => "Accept",
        "require" => "Require",
        "unsupported" => "Unsupported",
        "proxy-require" => "Proxy-Require",
        "retry-after" => "Retry-After",
        _ => return name.to_string(),
    };
    canon.to_string()
}

/// Headers whose values may be comma-separated lists on one line (RFC 3261 7.3.1).
fn is_list_header(name: &str) -> bool {
    matches!(
        name,
        "Via"
            | "Route"
            | "Record-Route"
            | "Contact"
            | "Allow"
            | "Supported"
            | "Require"
            | "Unsupported"
            | "Proxy-Require"
            | "Accept"
    )
}

fn find_subslice(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Where the header block ends: (index of the blank line's start, index of the body).
fn header_end(buf: &[u8]) -> Option<(usize, usize)> {
    let crlf = find_subslice(buf, b"\r\n\r\n").map(|i| (i, i + 4));
    let lf = find_subslice(buf, b"\n\n").map(|i| (i, i + 2));
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

fn skip_leading_blank(buf: &[u8]) -> usize {
    buf.iter()
        .take_while(|b| matches!(b, b'\r' | b'\n'))
        .count()
}

/// Reads Content-Length from a raw header block (for stream framing), compact form included.
///
/// Header lines are unfolded the way `Message::parse` does, so framing and parsing read the same
/// value: a folded `Content-Length:` CRLF SP `5` is 5, and ` l: 5` inside a folded value is no
/// Content-Length at all.
fn raw_content_length(head: &str) -> Result<Option<usize>, ParseError> {
    let mut value: Option<String> = None;
    for line in head.lines().skip(1) {
        if line.starts_with([' ', '\t']) {
            if let Some(v) = value.as_mut() {
                v.push(' ');
                v.push_str(line);
            }
            continue;
        }
        if value.is_some() {
            break;
        }
        if let Some((n, v)) = line.split_once(':') {
            let n = n.trim();
            if n.eq_ignore_ascii_case("content-length") || n.eq_ignore_ascii_case("l") {
                value = Some(v.to_string());
            }
        }
    }
    match value {
        None => Ok(None),
        Some(v) => {
            let v = v.trim();
            v.parse::<usize>()
                .map(Some)
                .map_err(|_| ParseError::ContentLength(v.to_string()))
        }
    }
}

impl Message {
    /// Parses one complete message (a datagram, or a frame from `StreamFramer`).
    ///
    /// Accepts what real implementations send: a leading CRLF, LF-only line endings, folded
    /// headers, compact names, a space before the colon, non-UTF-8 bytes in header values
    /// (replaced), unknown methods. A body longer than Content-Length is cut to it (extra bytes
    /// in a datagram); a shorter one is an error.
    pub fn parse(buf: &[u8]) -> Result<Message, ParseError> {
        if buf.len() > MAX_MESSAGE {
            return Err(ParseError::TooLarge);
        }
        let buf = &buf[skip_leading_blank(buf)..];
        if buf.is_empty() {
            return Err(ParseError::Empty);
        }
        let (head_end, body_start) = match header_end(buf) {
            Some(x) => x,
            // A datagram that ends right after the last header line, with no blank line.
            None if buf.ends_with(b"\n") => (buf.len(), buf.len()),
            None => return Err(ParseError::Incomplete),
        };
        let head = String::from_utf8_lossy(&buf[..head_end]);
        let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
        let first = lines.next().ok_or(ParseError::Empty)?;
        let start = parse_start_line(first)?;

        let mut headers: Vec<Header> = Vec::new();
        for line in lines {
            if line.is_empty() {
                continue;
            }
            if line.starts_with([' ', '\t']) {
                // Folded continuation of the previous header (RFC 3261 7.3.1): one space between
                // words, none before a value that starts on the next line, none for a blank fold.
                let Some(last) = headers.last_mut() else {
                    return Err(ParseError::HeaderLine(line.to_string()));
                };
                let more = line.trim();
                if !last.value.is_empty() && !more.is_empty() {
                    last.value.push(' ');
                }
                last.value.push_str(more);
                continue;
            }
            let Some((name, value)) = line.split_once(':') else {
                return Err(ParseError::HeaderLine(line.to_string()));
            };
            let name = name.trim();
            if name.is_empty() || !name.bytes().all(is_token_byte) {
                return Err(ParseError::HeaderLine(line.to_string()));
            }
            if headers.len() >= MAX_HEADERS {
                return Err(ParseError::TooManyHeaders);
            }
            headers.push(Header {
                name: canonical_name(name),
                value: value.trim().to_string(),
            });
        }

        let rest = &buf[body_start..];
        let body = match headers.iter().find(|h| h.name == "Content-Length") {
            Some(h) => {
                let want: usize = h
                    .value
                    .parse()
                    .map_err(|_| ParseError::ContentLength(h.value.clone()))?;
                if rest.len() < want {
                    return Err(ParseError::Truncated {
                        have: rest.len(),
                        want,
                    });
                }
                rest[..want].to_vec()
            }
            None => rest.to_vec(),
        };
        Ok(Message {
            start,
            headers,
            body,
        })
    }

    pub fn request(method: Method, uri: impl Into<String>) -> Message {
        Message {
            start: StartLine::Request {
                method,
                uri: uri.into(),
            },
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// A response to `req` with its Via, From, To, Call-ID and CSeq copied verbatim (RFC 3261 8.2.6).
    pub fn response_to(req: &Message, code: u16, reason: &str) -> Message {
        let mut headers = Vec::new();
        for h in &req.headers {
            if matches!(h.name.as_str(), "Via" | "From" | "To" | "Call-ID" | "CSeq")
                || (h.name == "Record-Route" && (101..300).contains(&code))
            {
                headers.push(h.clone());
            }
        }
        Message {
            start: StartLine::Response {
                code,
                reason: reason.to_string(),
            },
            headers,
            body: Vec::new(),
        }
    }

    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }

    pub fn method(&self) -> Option<&Method> {
        match &self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    pub fn request_uri(&self) -> Option<&str> {
        match &self.start {
            StartLine::Request { uri, .. } => Some(uri),
            StartLine::Response { .. } => None,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match &self.start {
            StartLine::Response { code, .. } => Some(*code),
            StartLine::Request { .. } => None,
        }
    }

    /// The first value of a header (the whole line for list headers).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
    }

    /// Every value of a header, across lines and (for list headers) commas, in order.
    pub fn header_values(&self, name: &str) -> Vec<&str> {
        let mut out = Vec::new();
        for h in self
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
        {
            if is_list_header(&h.name) {
                out.extend(
                    split_top(&h.value, ',')
                        .into_iter()
                        .map(str::trim)
                        .filter(|v| !v.is_empty()),
                );
            } else {
                out.push(h.value.as_str());
            }
        }
        out
    }

    pub fn push_header(&mut self, name: &str, value: impl Into<String>) {
        self.headers.push(Header {
            name: canonical_name(name),
            value: value.into(),
        });
    }

    /// Puts a header line first (a Via we add on top of the ones a request carries).
    pub fn push_top_header(&mut self, name: &str, value: impl Into<String>) {
        self.headers.insert(
            0,
            Header {
                name: canonical_name(name),
                value: value.into(),
            },
        );
    }

    /// Replaces every line of a header with one value.
    pub fn set_header(&mut self, name: &str, value: impl Into<String>) {
        let name = canonical_name(name);
        match self.headers.iter().position(|h| h.name == name) {
            Some(i) => {
                self.headers[i].value = value.into();
                let mut seen = false;
                self.headers.retain(|h| {
                    if h.name != name {
                        return true;
                    }
                    let keep = !seen;
                    seen = true;
                    keep
                });
            }
            None => self.headers.push(Header {
                name,
                value: value.into(),
            }),
        }
    }

    pub fn remove_header(&mut self, name: &str) {
        self.headers.retain(|h| !h.name.eq_ignore_ascii_case(name));
    }

    pub fn set_body(&mut self, content_type: &str, body: Vec<u8>) {
        self.set_header("Content-Type", content_type);
        self.body = body;
    }

    // ---- typed views of the headers a user agent needs ----

    pub fn call_id(&self) -> Result<&str, ParseError> {
        self.header("Call-ID")
            .filter(|v| !v.is_empty())
            .ok_or(ParseError::Missing("Call-ID"))
    }

    pub fn cseq(&self) -> Result<(u32, Method), ParseError> {
        let v = self.header("CSeq").ok_or(ParseError::Missing("CSeq"))?;
        let mut it = v.split_whitespace();
        let n = it
            .next()
            .and_then(|n| n.parse::<u32>().ok())
            .ok_or(ParseError::Missing("CSeq"))?;
        let m = it.next().ok_or(ParseError::Missing("CSeq"))?;
        Ok((n, Method::parse(m)))
    }

    pub fn from(&self) -> Result<NameAddr, ParseError> {
        self.name_addr("From")
    }

    pub fn to(&self) -> Result<NameAddr, ParseError> {
        self.name_addr("To")
    }

    fn name_addr(&self, name: &'static str) -> Result<NameAddr, ParseError> {
        self.header(name)
            .and_then(|v| NameAddr::parse(v).ok())
            .ok_or(ParseError::Missing(name))
    }

    /// Every Via value, topmost first.
    pub fn vias(&self) -> Result<Vec<Via>, ParseError> {
        let vals = self.header_values("Via");
        if vals.is_empty() {
            return Err(ParseError::Missing("Via"));
        }
        vals.into_iter()
            .map(|v| Via::parse(v).ok_or(ParseError::Missing("Via")))
            .collect()
    }

    pub fn top_via(&self) -> Result<Via, ParseError> {
        let v = self
            .header_values("Via")
            .into_iter()
            .next()
            .ok_or(ParseError::Missing("Via"))?;
        Via::parse(v).ok_or(ParseError::Missing("Via"))
    }

    /// Contact values; `Contact: *` gives `Contacts::Star`.
    pub fn contacts(&self) -> Result<Contacts, ParseError> {
        let vals = self.header_values("Contact");
        if vals.len() == 1 && vals[0] == "*" {
            return Ok(Contacts::Star);
        }
        vals.into_iter()
            .map(|v| NameAddr::parse(v).map_err(|_| ParseError::Missing("Contact")))
            .collect::<Result<Vec<_>, _>>()
            .map(Contacts::List)
    }

    /// Every Record-Route (or Route) value, in order.
    pub fn routes(&self, name: &'static str) -> Result<Vec<NameAddr>, ParseError> {
        self.header_values(name)
            .into_iter()
            .map(|v| NameAddr::parse(v).map_err(|_| ParseError::Missing(name)))
            .collect()
    }

    pub fn expires(&self) -> Option<u32> {
        self.header("Expires").and_then(|v| v.trim().parse().ok())
    }

    /// `Min-Expires` of a 423 Interval Too Brief (RFC 3261 10.3): the interval to retry with.
    pub fn min_expires(&self) -> Option<u32> {
        self.header("Min-Expires")
            .and_then(|v| v.trim().parse().ok())
    }

    pub fn max_forwards(&self) -> Option<u32> {
        self.header("Max-Forwards")
            .and_then(|v| v.trim().parse().ok())
    }

    /// `Content-Type` as written (`application/sdp`), parameters included.
    pub fn content_type(&self) -> Option<&str> {
        self.header("Content-Type")
    }

    /// Option tags of `Supported` (compact `k`), across lines and commas: `gruu`, `outbound`…
    pub fn supported(&self) -> Vec<&str> {
        self.header_values("Supported")
    }

    /// Option tags the peer requires us to understand (RFC 3261 20.32).
    pub fn require(&self) -> Vec<&str> {
        self.header_values("Require")
    }

    /// Option tags a 420 Bad Extension names, to retry without them (RFC 3261 20.40).
    pub fn unsupported(&self) -> Vec<&str> {
        self.header_values("Unsupported")
    }

    /// Methods from `Allow`, in order.
    pub fn allow(&self) -> Vec<Method> {
        self.header_values("Allow")
            .into_iter()
            .map(Method::parse)
            .collect()
    }

    /// Checks the headers every request and response must have (RFC 3261 8.1.1).
    pub fn validate(&self) -> Result<(), ParseError> {
        self.call_id()?;
        let (_, cseq_method) = self.cseq()?;
        self.from()?;
        self.to()?;
        self.top_via()?;
        if let StartLine::Request { method, uri } = &self.start {
            if *method != cseq_method {
                return Err(ParseError::Missing("CSeq"));
            }
            Uri::parse(uri).map_err(|_| ParseError::StartLine(uri.clone()))?;
        }
        Ok(())
    }

    /// Serialises with a correct Content-Length (any given one is replaced).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut s = String::with_capacity(512);
        match &self.start {
            StartLine::Request { method, uri } => {
                s.push_str(method.as_str());
                s.push(' ');
                s.push_str(uri);
                s.push_str(" SIP/2.0\r\n");
            }
            StartLine::Response { code, reason } => {
                s.push_str(&format!("SIP/2.0 {code} {reason}\r\n"));
            }
        }
        for h in self.headers.iter().filter(|h| h.name != "Content-Length") {
            s.push_str(&h.name);
            s.push_str(": ");
            s.push_str(&h.value);
            s.push_str("\r\n");
        }
        s.push_str(&format!("Content-Length: {}\r\n\r\n", self.body.len()));
        let mut out = s.into_bytes();
        out.extend_from_slice(&self.body);
        out
    }

    /// A one-line summary for logs: `INVITE sip:bob@h` or `180 Ringing (INVITE)`.
    pub fn summary(&self) -> String {
        match &self.start {
            StartLine::Request { method, uri } => format!("{method} {uri}"),
            StartLine::Response { code, reason } => {
                let m = self.cseq().map(|(_, m)| m.to_string()).unwrap_or_default();
                format!("{code} {reason} ({m})")
            }
        }
    }
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

fn parse_start_line(line: &str) -> Result<StartLine, ParseError> {
    let bad = || ParseError::StartLine(line.chars().take(200).collect());
    if let Some(rest) = line.strip_prefix("SIP/2.0 ") {
        let rest = rest.trim_start();
        let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
        let code: u16 = code.parse().map_err(|_| bad())?;
        if !(100..700).contains(&code) {
            return Err(bad());
        }
        return Ok(StartLine::Response {
            code,
            reason: reason.trim().to_string(),
        });
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(uri), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    if !version.eq_ignore_ascii_case("SIP/2.0") || !method.bytes().all(is_token_byte) {
        return Err(bad());
    }
    if !uri.contains(':') {
        return Err(bad());
    }
    Ok(StartLine::Request {
        method: Method::parse(method),
        uri: uri.to_string(),
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Contacts {
    Star,
    List(Vec<NameAddr>),
}

/// One Via value: `SIP/2.0/UDP host:port;branch=…;rport=…;received=…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    /// `UDP`, `TCP`, `TLS`, `WS`, `WSS` as written.
    pub transport: String,
    pub host: String,
    pub port: Option<u16>,
    pub params: Params,
}

impl Via {
    pub fn parse(v: &str) -> Option<Via> {
        let v = v.trim();
        let (proto, rest) = v.split_once(|c: char| c.is_whitespace())?;
        let mut p = proto.split('/').map(str::trim);
        let (Some(name), Some(_ver), Some(transport)) = (p.next(), p.next(), p.next()) else {
            return None;
        };
        if !name.eq_ignore_ascii_case("SIP") {
            return None;
        }
        let rest = rest.trim();
        let (sent_by, params) = rest.split_once(';').unwrap_or((rest, ""));
        let sent_by = sent_by.trim();
        let (host, port) = if let Some(v6) = sent_by.strip_prefix('[') {
            let (h, after) = v6.split_once(']')?;
            (h, after.strip_prefix(':'))
        } else {
            match sent_by.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (sent_by, None),
            }
        };
        let port = match port {
            Some(p) => Some(p.trim().parse().ok()?),
            None => None,
        };
        if host.is_empty() {
            return None;
        }
        Some(Via {
            transport: transport.to_ascii_uppercase(),
            host: host.to_string(),
            port,
            params: parse_params(params),
        })
    }

    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        param(&self.params, name)
    }

    pub fn branch(&self) -> Option<&str> {
        self.param("branch").flatten()
    }

    pub fn received(&self) -> Option<&str> {
        self.param("received").flatten()
    }

    /// The `rport` value the server filled in (RFC 3581), if any.
    pub fn rport(&self) -> Option<u16> {
        self.param("rport").flatten().and_then(|p| p.parse().ok())
    }
}

/// Splits a byte stream (TCP, TLS) into messages using Content-Length (RFC 3261 18.3).
///
/// Bare CRLFs between messages are keep-alives (RFC 5626 3.5.1): a double CRLF "ping" is reported
/// so the caller can answer it with a single CRLF "pong".
#[derive(Debug, Default)]
pub struct StreamFramer {
    buf: Vec<u8>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    Message(Vec<u8>),
    /// A CRLFCRLF keep-alive ping.
    Ping,
}

impl StreamFramer {
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next complete frame, `Ok(None)` when more bytes are needed, or an error after which
    /// the stream cannot be resynchronised and should be closed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, ParseError> {
        if self.buf.starts_with(b"\r\n\r\n") {
            self.buf.drain(..4);
            return Ok(Some(Frame::Ping));
        }
        let lead = skip_leading_blank(&self.buf);
        if lead == self.buf.len() {
            // Only CRLFs so far: wait (a ping may still be forming) but never grow unbounded.
            if lead > 4 {
                self.buf.clear();
            }
            return Ok(None);
        }
        if lead > 0 {
            self.buf.drain(..lead);
        }
        let Some((head_end, body_start)) = header_end(&self.buf) else {
            if self.buf.len() > MAX_MESSAGE {
                return Err(ParseError::TooLarge);
            }
            return Ok(None);
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]);
        // Content-Length is mandatory on streams; treat its absence as an empty body.
        let len = raw_content_length(&head)?.unwrap_or(0);
        // Checked: a Content-Length near usize::MAX must not overflow (a panic in debug builds, a
        // wrapped, too short frame in release).
        let total = body_start
            .checked_add(len)
            .filter(|&t| t <= MAX_MESSAGE)
            .ok_or(ParseError::TooLarge)?;
        if self.buf.len() < total {
            return Ok(None);
        }
        let msg: Vec<u8> = self.buf.drain(..total).collect();
        Ok(Some(Frame::Message(msg)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &str = "INVITE sip:bob@127.0.0.1;gr=urn:uuid:aa-bb SIP/2.0\r\n\
v: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK1;rport, SIP/2.0/TCP [::1]:5062;branch=z9hG4bK0;received=::1\r\n\
Via : SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKx\r\n\
f: \"Alice\" <sip:alice@127.0.0.1>;tag=a1\r\n\
t: <sip:bob@127.0.0.1>\r\n\
i: call-1@host\r\n\
CSeq: 1 INVITE\r\n\
m: <sip:alice@127.0.0.1:5061>;+sip.instance=\"<urn:uuid:x,y>\"\r\n\
Subject: folded\r\n  continues here\r\n\
c: application/sdp\r\n\
l: 4\r\n\r\nv=0\r\nEXTRA";

    #[test]
    fn compact_folded_multi_via_invite_parses() {
        let m = Message::parse(INVITE.as_bytes()).unwrap();
        assert_eq!(m.method(), Some(&Method::Invite));
        assert_eq!(m.request_uri(), Some("sip:bob@127.0.0.1;gr=urn:uuid:aa-bb"));
        let vias = m.vias().unwrap();
        assert_eq!(vias.len(), 3);
        assert_eq!(vias[0].branch(), Some("z9hG4bK1"));
        assert_eq!(vias[0].param("rport"), Some(None));
        assert_eq!(vias[1].host, "::1");
        assert_eq!(vias[1].received(), Some("::1"));
        assert_eq!(vias[2].port, None);
        assert_eq!(m.from().unwrap().tag(), Some("a1"));
        assert_eq!(m.call_id().unwrap(), "call-1@host");
        assert_eq!(m.cseq().unwrap(), (1, Method::Invite));
        let Contacts::List(c) = m.contacts().unwrap() else {
            panic!("star")
        };
        assert_eq!(
            c[0].param("+sip.instance"),
            Some(Some("\"<urn:uuid:x,y>\""))
        );
        assert_eq!(m.header("Subject"), Some("folded continues here"));
        assert_eq!(m.body, b"v=0\r");
        m.validate().unwrap();
    }

    #[test]
    fn option_tag_and_number_accessors() {
        let raw = "SIP/2.0 423 Interval Too Brief\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKa\r\n\
From: <sip:a@h>;tag=1\r\nTo: <sip:a@h>;tag=2\r\nCall-ID: c\r\nCSeq: 1 REGISTER\r\n\
Min-Expires: 3600\r\nk: gruu, outbound\r\nSupported: path\r\nRequire: outbound\r\n\
Unsupported: foo, bar\r\nAllow: INVITE,ACK, FOO\r\nMax-Forwards: 69\r\n\
Content-Type: application/sdp\r\nContent-Length: 0\r\n\r\n";
        let m = Message::parse(raw.as_bytes()).unwrap();
        assert_eq!(m.min_expires(), Some(3600));
        assert_eq!(m.supported(), ["gruu", "outbound", "path"]);
        assert_eq!(m.require(), ["outbound"]);
        assert_eq!(m.unsupported(), ["foo", "bar"]);
        assert_eq!(
            m.allow(),
            [Method::Invite, Method::Ack, Method::Other("FOO".into())]
        );
        assert_eq!(m.max_forwards(), Some(69));
        assert_eq!(m.content_type(), Some("application/sdp"));
    }

    #[test]
    fn a_value_folded_onto_the_next_line_has_no_stray_space() {
        let raw = "BYE sip:b@h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKa\r\n\
From: <sip:a@h>;tag=1\r\nTo:\r\n <sip:b@h>;tag=2\r\nCall-ID:\r\n\tc-1\r\n \r\n\
CSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n";
        let m = Message::parse(raw.as_bytes()).unwrap();
        assert_eq!(m.call_id().unwrap(), "c-1");
        assert_eq!(m.header("To"), Some("<sip:b@h>;tag=2"));
        let back = Message::parse(&m.to_bytes()).unwrap();
        assert_eq!(back.headers, m.headers);
    }

    #[test]
    fn lf_only_and_leading_crlf_parse() {
        let raw = "\r\nSIP/2.0 200 OK\nVia: SIP/2.0/UDP h;branch=z9hG4bKq\nFrom: <sip:a@h>;tag=1\nTo: <sip:b@h>;tag=2\nCall-ID: c\nCSeq: 2 BYE\nContent-Length: 0\n\n";
        let m = Message::parse(raw.as_bytes()).unwrap();
        assert_eq!(m.status(), Some(200));
        m.validate().unwrap();
    }

    #[test]
    fn truncated_body_is_an_error() {
        let raw = "MESSAGE sip:a@h SIP/2.0\r\nContent-Length: 10\r\n\r\nabc";
        assert!(matches!(
            Message::parse(raw.as_bytes()),
            Err(ParseError::Truncated { have: 3, want: 10 })
        ));
    }

    #[test]
    fn garbage_never_panics() {
        let inputs: Vec<&[u8]> = vec![
            b"",
            b"\r\n\r\n",
            b"SIP/2.0",
            b"SIP/2.0 99 x\r\n\r\n",
            b"INVITE\r\n\r\n",
            b"INVITE sip:a@b SIP/2.0\r\n : x\r\n\r\n",
            b"\xff\xfe\x00garbage\r\n\r\n",
            b"INVITE sip:a@b SIP/2.0\r\nContent-Length: -1\r\n\r\n",
        ];
        for i in inputs {
            let _ = Message::parse(i);
        }
        // Every prefix of a real message.
        for n in 0..INVITE.len() {
            let _ = Message::parse(&INVITE.as_bytes()[..n]);
            let mut f = StreamFramer::default();
            f.push(&INVITE.as_bytes()[..n]);
            let _ = f.next_frame();
        }
    }

    #[test]
    fn stream_framer_splits_and_reports_pings() {
        let one = "OPTIONS sip:a@h SIP/2.0\r\nContent-Length: 2\r\n\r\nhi";
        let mut f = StreamFramer::default();
        f.push(b"\r\n\r\n");
        f.push(one.as_bytes());
        f.push(&one.as_bytes()[..10]);
        assert_eq!(f.next_frame().unwrap(), Some(Frame::Ping));
        assert_eq!(
            f.next_frame().unwrap(),
            Some(Frame::Message(one.as_bytes().to_vec()))
        );
        assert_eq!(f.next_frame().unwrap(), None);
        f.push(&one.as_bytes()[10..]);
        assert_eq!(
            f.next_frame().unwrap(),
            Some(Frame::Message(one.as_bytes().to_vec()))
        );
    }

    #[test]
    fn stream_with_a_huge_content_length_is_an_error() {
        let mut f = StreamFramer::default();
        f.push(b"OPTIONS sip:a@h SIP/2.0\r\nContent-Length: 18446744073709551615\r\n\r\n");
        assert_eq!(f.next_frame(), Err(ParseError::TooLarge));
    }

    #[test]
    fn response_copies_headers_and_serialises_length() {
        let req = Message::parse(INVITE.as_bytes()).unwrap();
        let mut resp = Message::response_to(&req, 180, "Ringing");
        resp.body = b"xyz".to_vec();
        let bytes = resp.to_bytes();
        let back = Message::parse(&bytes).unwrap();
        assert_eq!(back.vias().unwrap().len(), 3);
        assert_eq!(back.header("Content-Length"), Some("3"));
        assert_eq!(back.body, b"xyz");
        assert_eq!(back.header("From"), req.header("From"));
    }
}
