//! SDP offer/answer (RFC 3264) for the audio stream.
//!
//! Three layers, all pure functions with no I/O and no clock:
//! - the SDP model ([`SessionDescription`], RFC 4566): every line of a body is kept, unknown
//!   attributes and line types included, so what is parsed can be written back;
//! - codecs and directions ([`CodecSpec`], [`MediaDirection`]);
//! - offer/answer: [`create_offer`], [`create_answer`] (answer a remote offer) and
//!   [`negotiate_answer`] (read the answer to our offer), each giving a [`Negotiated`] that tells the
//!   media side what to send where.
//!
//! Parsing is lenient where real peers are sloppy (LF-only line endings, blank lines, trailing
//! whitespace, no `s=` or `t=` line) and strict on structure: a line that is not `x=value`, a
//! malformed `o=`, `c=`, `m=` or `b=`, or a body not starting with `v=0` is an [`SdpError`].
//! Attributes (`a=rtpmap`, `a=rtcp`, `a=ptime`...) are read only when used, and a malformed one is
//! ignored rather than failing the body. No input panics.
//!
//! Only plain RTP is negotiated here: an audio stream is usable when its proto is `RTP/AVP` or
//! `RTP/SAVP`. WebRTC offers (`UDP/TLS/RTP/SAVPF`, from SIP.js or baresip's WebRTC mode) are for the
//! WebRTC media profile and are answered with port 0 here, which makes [`create_answer`] fail with
//! [`SdpError::NoCommonCodec`] when nothing else is offered.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// Why an SDP body was refused, or why no answer could be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    /// The body holds no line at all.
    #[error("empty SDP body")]
    Empty,
    /// The body is not UTF-8 (RFC 4566 5: UTF-8 unless `a=charset` says otherwise; nobody does).
    #[error("SDP body is not UTF-8")]
    NotUtf8,
    /// The first line is not `v=`: this is not SDP.
    #[error("SDP body does not start with v=")]
    NoVersion,
    /// A line that cannot be read; `line` counts from 1, `text` is the line (cut to 200 chars).
    #[error("bad SDP line {line} ({why}): {text:?}")]
    BadLine {
        line: usize,
        why: &'static str,
        text: String,
    },
    /// No audio stream with a usable transport and a codec we have: the answerer sends 488, the
    /// offerer ends the call.
    #[error("no usable audio stream with a codec in common")]
    NoCommonCodec,
}

fn bad(line: usize, text: &str, why: &'static str) -> SdpError {
    SdpError::BadLine {
        line,
        why,
        text: text.chars().take(200).collect(),
    }
}

// ---------------------------------------------------------------------------------------------
// Codecs and directions
// ---------------------------------------------------------------------------------------------

/// An RTP payload format: payload type number plus the `a=rtpmap` encoding and `a=fmtp` parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodecSpec {
    /// RTP payload type number (0..=127).
    pub pt: u8,
    /// Encoding name as we spell it: `"PCMU"`, `"PCMA"`, `"opus"`, `"telephone-event"`.
    pub name: String,
    /// RTP clock rate in Hz.
    pub clock: u32,
    /// Audio channels (1 unless the rtpmap says otherwise; opus is always 2).
    pub channels: u8,
    /// The `a=fmtp` parameters, without the payload number.
    pub fmtp: Option<String>,
}

impl CodecSpec {
    /// G.711 µ-law, static payload type 0.
    pub fn pcmu() -> Self {
        Self::plain(0, "PCMU", 8000, 1)
    }

    /// G.711 A-law, static payload type 8.
    pub fn pcma() -> Self {
        Self::plain(8, "PCMA", 8000, 1)
    }

    /// Opus on payload type 111 (`opus/48000/2`, RFC 7587) with in-band FEC asked for.
    pub fn opus() -> Self {
        Self {
            fmtp: Some("useinbandfec=1".into()),
            ..Self::plain(111, "opus", 48000, 2)
        }
    }

    /// RFC 4733 DTMF events 0-16 at `clock` Hz on payload type `pt`.
    pub fn telephone_event(pt: u8, clock: u32) -> Self {
        Self {
            fmtp: Some("0-16".into()),
            ..Self::plain(pt, "telephone-event", clock, 1)
        }
    }

    fn plain(pt: u8, name: &str, clock: u32, channels: u8) -> Self {
        Self {
            pt,
            name: name.into(),
            clock,
            channels,
            fmtp: None,
        }
    }

    /// The encoding as written in `a=rtpmap`: `"PCMU/8000"`, `"opus/48000/2"`.
    pub fn label(&self) -> String {
        if self.channels > 1 {
            format!("{}/{}/{}", self.name, self.clock, self.channels)
        } else {
            format!("{}/{}", self.name, self.clock)
        }
    }

    /// True for RFC 4733 `telephone-event` (DTMF), which is never a voice codec.
    pub fn is_telephone_event(&self) -> bool {
        self.name.eq_ignore_ascii_case("telephone-event")
    }

    /// Same encoding, ignoring payload numbers: name (case-insensitive), clock and channels.
    /// Opus matches whatever channel count is written, since RFC 7587 fixes it at 2 anyway.
    pub fn same_encoding(&self, other: &CodecSpec) -> bool {
        self.name.eq_ignore_ascii_case(&other.name)
            && self.clock == other.clock
            && (self.channels == other.channels || self.name.eq_ignore_ascii_case("opus"))
    }
}

/// The static audio payload types of RFC 3551 table 4, used when an m-line lists one without
/// an `a=rtpmap`.
fn static_payload(pt: u8) -> Option<(&'static str, u32, u8)> {
    Some(match pt {
        0 => ("PCMU", 8000, 1),
        3 => ("GSM", 8000, 1),
        4 => ("G723", 8000, 1),
        5 => ("DVI4", 8000, 1),
        6 => ("DVI4", 16000, 1),
        7 => ("LPC", 8000, 1),
        8 => ("PCMA", 8000, 1),
        9 => ("G722", 8000, 1),
        10 => ("L16", 44100, 2),
        11 => ("L16", 44100, 1),
        12 => ("QCELP", 8000, 1),
        13 => ("CN", 8000, 1),
        14 => ("MPA", 90000, 1),
        15 => ("G728", 8000, 1),
        16 => ("DVI4", 11025, 1),
        17 => ("DVI4", 22050, 1),
        18 => ("G729", 8000, 1),
        _ => return None,
    })
}

/// Which way media flows on a stream, from the point of view of whoever wrote the SDP
/// (RFC 3264 5.1): `sendonly` means "I send, I do not receive".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum MediaDirection {
    /// `a=sendrecv`, the default when nothing is said.
    #[default]
    SendRecv,
    /// `a=sendonly`: the writer puts the other side on hold.
    SendOnly,
    /// `a=recvonly`: the writer only listens.
    RecvOnly,
    /// `a=inactive`: no media either way.
    Inactive,
}

impl MediaDirection {
    /// The direction that sends and receives as told.
    pub fn from_flags(sends: bool, receives: bool) -> Self {
        match (sends, receives) {
            (true, true) => Self::SendRecv,
            (true, false) => Self::SendOnly,
            (false, true) => Self::RecvOnly,
            (false, false) => Self::Inactive,
        }
    }

    /// Whether the writer sends media.
    pub fn sends(self) -> bool {
        matches!(self, Self::SendRecv | Self::SendOnly)
    }

    /// Whether the writer receives media.
    pub fn receives(self) -> bool {
        matches!(self, Self::SendRecv | Self::RecvOnly)
    }

    /// The mirror image the other side answers with when it agrees: sendonly → recvonly,
    /// recvonly → sendonly, sendrecv and inactive unchanged.
    pub fn answer_to(self) -> Self {
        Self::from_flags(self.receives(), self.sends())
    }

    /// Both restrictions at once: sends only if both send, receives only if both receive.
    pub fn intersect(self, other: Self) -> Self {
        Self::from_flags(
            self.sends() && other.sends(),
            self.receives() && other.receives(),
        )
    }

    /// The attribute name: `"sendrecv"`, `"sendonly"`, `"recvonly"`, `"inactive"`.
    pub fn attribute(self) -> &'static str {
        match self {
            Self::SendRecv => "sendrecv",
            Self::SendOnly => "sendonly",
            Self::RecvOnly => "recvonly",
            Self::Inactive => "inactive",
        }
    }

    /// Reads a direction attribute name (case-insensitive); `None` for any other attribute.
    pub fn from_attribute(name: &str) -> Option<Self> {
        [
            Self::SendRecv,
            Self::SendOnly,
            Self::RecvOnly,
            Self::Inactive,
        ]
        .into_iter()
        .find(|d| d.attribute().eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for MediaDirection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.attribute())
    }
}

// ---------------------------------------------------------------------------------------------
// The SDP model (RFC 4566)
// ---------------------------------------------------------------------------------------------

/// `o=<username> <sess-id> <sess-version> <nettype> <addrtype> <unicast-address>`, values as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub username: String,
    pub session_id: String,
    /// Unchanged between two bodies of a dialog means the session did not change (RFC 3264 8).
    pub session_version: String,
    pub net_type: String,
    pub addr_type: String,
    pub address: String,
}

/// `c=<nettype> <addrtype> <connection-address>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    pub net_type: String,
    /// `IP4` or `IP6`.
    pub addr_type: String,
    /// As written: an IP address, possibly with `/ttl[/count]` (multicast), or a host name.
    pub address: String,
}

impl Connection {
    /// `IN IP4 a.b.c.d` or `IN IP6 x::y`.
    pub fn new(ip: IpAddr) -> Self {
        Self {
            net_type: "IN".into(),
            addr_type: if ip.is_ipv4() { "IP4" } else { "IP6" }.into(),
            address: ip.to_string(),
        }
    }

    /// The IP address, without any `/ttl` suffix; `None` for a host name (this layer does no DNS).
    pub fn ip(&self) -> Option<IpAddr> {
        let addr = self.address.split('/').next().unwrap_or_default().trim();
        let addr = addr
            .strip_prefix('[')
            .and_then(|a| a.strip_suffix(']'))
            .unwrap_or(addr);
        addr.parse().ok()
    }

    /// `0.0.0.0` (or `::`): the RFC 2543 way of putting the other side on hold.
    pub fn is_hold(&self) -> bool {
        self.ip().is_some_and(|ip| ip.is_unspecified())
    }
}

/// `b=<bwtype>:<bandwidth>` (`AS`, `CT`, `TIAS`, `RR`, `RS` ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bandwidth {
    pub kind: String,
    pub value: u64,
}

/// `a=<name>` (a flag) or `a=<name>:<value>`; the value is kept exactly as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    pub name: String,
    pub value: Option<String>,
}

impl Attribute {
    /// `a=name:value`.
    pub fn new(name: &str, value: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            value: Some(value.into()),
        }
    }

    /// `a=name`.
    pub fn flag(name: &str) -> Self {
        Self {
            name: name.into(),
            value: None,
        }
    }
}

/// One media section: the `m=` line and the lines up to the next `m=`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaDescription {
    /// `audio`, `video`, `application` ...
    pub media: String,
    /// 0 means the stream is disabled or rejected.
    pub port: u16,
    /// The `/2` of `m=audio 49170/2 ...`.
    pub port_count: Option<u16>,
    /// `RTP/AVP`, `RTP/SAVP`, `UDP/TLS/RTP/SAVPF` ...
    pub proto: String,
    /// The format list; RTP payload type numbers for RTP protos.
    pub formats: Vec<String>,
    /// The media-level `c=`, which wins over the session-level one.
    pub connection: Option<Connection>,
    pub bandwidths: Vec<Bandwidth>,
    pub attributes: Vec<Attribute>,
    /// Any other line (`i=`, `k=`, a second `c=`, unknown types), type letter and value, in order.
    pub other_lines: Vec<(char, String)>,
}

fn attr_values<'a>(attrs: &'a [Attribute], name: &str) -> impl Iterator<Item = &'a str> {
    attrs
        .iter()
        .filter(move |a| a.name.eq_ignore_ascii_case(name))
        .map(|a| a.value.as_deref().unwrap_or(""))
}

fn direction_in(attrs: &[Attribute]) -> Option<MediaDirection> {
    attrs
        .iter()
        .find_map(|a| MediaDirection::from_attribute(&a.name))
}

fn ptime_in(attrs: &[Attribute]) -> Option<u32> {
    attr_values(attrs, "ptime").find_map(|v| {
        let v = v.trim();
        // "20" normally; "20.0" from a few devices.
        v.split('.').next().and_then(|whole| whole.parse().ok())
    })
}

/// Splits `"<first> <rest>"` at the first run of whitespace.
fn first_word(v: &str) -> Option<(&str, &str)> {
    v.trim()
        .split_once(|c: char| c.is_ascii_whitespace())
        .map(|(a, b)| (a, b.trim()))
}

/// Reads `name/clock[/channels]`.
fn parse_encoding(enc: &str) -> Option<(String, u32, u8)> {
    let mut parts = enc.trim().split('/');
    let name = parts.next().filter(|n| !n.is_empty())?;
    let clock = parts.next()?.trim().parse().ok()?;
    let channels = match parts.next() {
        Some(c) => c.trim().parse().ok()?,
        None => 1,
    };
    Some((name.to_string(), clock, channels))
}

impl MediaDescription {
    /// Values of every attribute called `name` (case-insensitive), `""` for flags.
    pub fn attribute_values<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a str> {
        attr_values(&self.attributes, name)
    }

    /// The first value of attribute `name`, `Some("")` for a flag.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attribute_values(name).next()
    }

    /// Whether attribute `name` is present.
    pub fn has_attribute(&self, name: &str) -> bool {
        self.attribute(name).is_some()
    }

    /// The media-level direction attribute, if any (see [`SessionDescription::direction_of`]).
    pub fn direction(&self) -> Option<MediaDirection> {
        direction_in(&self.attributes)
    }

    /// `a=rtcp-mux` (RFC 5761): RTCP shares the RTP port.
    pub fn rtcp_mux(&self) -> bool {
        self.has_attribute("rtcp-mux")
    }

    /// The media-level `a=ptime` in milliseconds.
    pub fn ptime(&self) -> Option<u32> {
        ptime_in(&self.attributes)
    }

    /// `a=rtcp:<port> [IN IP4 <addr>]` (RFC 3605): the port and, when given, the address.
    pub fn rtcp(&self) -> Option<(u16, Option<IpAddr>)> {
        self.attribute_values("rtcp").find_map(|v| {
            let mut words = v.split_ascii_whitespace();
            let port = words.next()?.parse().ok()?;
            let addr = match (words.next(), words.next(), words.next()) {
                (Some(net_type), Some(addr_type), Some(address)) => Connection {
                    net_type: net_type.into(),
                    addr_type: addr_type.into(),
                    address: address.into(),
                }
                .ip(),
                _ => None,
            };
            Some((port, addr))
        })
    }

    /// The raw `a=crypto` values (RFC 4568 SDES: `tag suite key-params`).
    pub fn crypto(&self) -> Vec<String> {
        self.attribute_values("crypto")
            .map(str::to_string)
            .collect()
    }

    /// `media` is `audio` (case-insensitive).
    pub fn is_audio(&self) -> bool {
        self.media.eq_ignore_ascii_case("audio")
    }

    /// `proto` is `RTP/SAVP` (SRTP with SDES keys).
    pub fn is_savp(&self) -> bool {
        self.proto.eq_ignore_ascii_case("RTP/SAVP")
    }

    /// An enabled audio stream on plain RTP (`RTP/AVP` or `RTP/SAVP`): what the classic media
    /// profile can carry.
    pub fn is_usable_audio(&self) -> bool {
        self.is_audio()
            && self.port != 0
            && (self.proto.eq_ignore_ascii_case("RTP/AVP") || self.is_savp())
    }

    /// The `a=rtpmap` encoding of payload type `pt`.
    fn rtpmap(&self, pt: u8) -> Option<(String, u32, u8)> {
        self.attribute_values("rtpmap").find_map(|v| {
            let (p, enc) = first_word(v)?;
            (p.parse::<u8>().ok()? == pt)
                .then(|| parse_encoding(enc))
                .flatten()
        })
    }

    /// The `a=fmtp` parameters of payload type `pt`.
    pub fn fmtp(&self, pt: u8) -> Option<&str> {
        self.attribute_values("fmtp").find_map(|v| {
            let v = v.trim();
            let (p, params) = first_word(v).unwrap_or((v, ""));
            (p.parse::<u8>().ok()? == pt).then_some(params)
        })
    }

    /// The RTP formats of this m-line, in its order, each resolved through `a=rtpmap` or the
    /// static payload table; formats that are neither (or not numbers) are left out.
    pub fn codecs(&self) -> Vec<CodecSpec> {
        self.formats
            .iter()
            .filter_map(|f| {
                let pt = f.parse::<u8>().ok().filter(|pt| *pt < 128)?;
                let (name, clock, channels) = match self.rtpmap(pt) {
                    Some(enc) => enc,
                    None => {
                        let (name, clock, channels) = static_payload(pt)?;
                        (name.to_string(), clock, channels)
                    }
                };
                Some(CodecSpec {
                    pt,
                    name,
                    clock,
                    channels,
                    fmtp: self.fmtp(pt).map(str::to_string),
                })
            })
            .collect()
    }
}

/// A parsed SDP body: session-level lines and every media section, unknown lines kept.
/// `Display` writes it back in RFC 4566 order with CRLF line endings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionDescription {
    /// `o=`; required by RFC 4566 but tolerated missing.
    pub origin: Option<Origin>,
    /// `s=`; `"-"` when the body has none.
    pub session_name: String,
    /// The session-level `c=`, used by media sections that have none.
    pub connection: Option<Connection>,
    pub bandwidths: Vec<Bandwidth>,
    /// The `t=` values; `["0 0"]` when the body has none.
    pub timing: Vec<String>,
    pub attributes: Vec<Attribute>,
    /// Any other session-level line (`i=`, `u=`, `e=`, `p=`, `r=`, `z=`, `k=`, a second `c=`,
    /// unknown types), type letter and value, in order.
    pub other_lines: Vec<(char, String)>,
    pub media: Vec<MediaDescription>,
}

impl SessionDescription {
    /// Parses an SDP body (CRLF or LF line endings).
    pub fn parse(text: &str) -> Result<Self, SdpError> {
        let mut lines = text
            .split('\n')
            .enumerate()
            .map(|(i, l)| (i + 1, l.trim()))
            .filter(|(_, l)| !l.is_empty());
        let Some((no, first)) = lines.next() else {
            return Err(SdpError::Empty);
        };
        match split_line(no, first) {
            Ok(('v', "0")) => {}
            Ok(('v', _)) => return Err(bad(no, first, "unsupported SDP version")),
            _ => return Err(SdpError::NoVersion),
        }
        let mut sd = SessionDescription {
            origin: None,
            session_name: String::new(),
            connection: None,
            bandwidths: Vec::new(),
            timing: Vec::new(),
            attributes: Vec::new(),
            other_lines: Vec::new(),
            media: Vec::new(),
        };
        let mut have_name = false;
        for (no, line) in lines {
            let (kind, value) = split_line(no, line)?;
            if kind == 'm' {
                sd.media.push(parse_media_line(no, line, value)?);
                continue;
            }
            match (sd.media.last_mut(), kind) {
                (_, 'v') => return Err(bad(no, line, "repeated v=")),
                (Some(_), 'o' | 's') => {
                    return Err(bad(no, line, "session-level line in a media section"));
                }
                (None, 'o') if sd.origin.is_some() => return Err(bad(no, line, "repeated o=")),
                (None, 'o') => sd.origin = Some(parse_origin(no, line, value)?),
                (None, 's') if have_name => return Err(bad(no, line, "repeated s=")),
                (None, 's') => {
                    sd.session_name = value.to_string();
                    have_name = true;
                }
                (None, 'c') if sd.connection.is_none() => {
                    sd.connection = Some(parse_connection(no, line, value)?);
                }
                (None, 'b') => sd.bandwidths.push(parse_bandwidth(no, line, value)?),
                (None, 't') => sd.timing.push(value.to_string()),
                (None, 'a') => sd.attributes.push(parse_attribute(no, line, value)?),
                (None, _) => sd.other_lines.push((kind, value.to_string())),
                (Some(m), 'c') if m.connection.is_none() => {
                    m.connection = Some(parse_connection(no, line, value)?);
                }
                (Some(m), 'b') => m.bandwidths.push(parse_bandwidth(no, line, value)?),
                (Some(m), 'a') => m.attributes.push(parse_attribute(no, line, value)?),
                (Some(m), _) => m.other_lines.push((kind, value.to_string())),
            }
        }
        if !have_name {
            sd.session_name = "-".into();
        }
        if sd.timing.is_empty() {
            sd.timing.push("0 0".into());
        }
        Ok(sd)
    }

    /// Parses a body given as bytes (a SIP message body).
    pub fn parse_bytes(bytes: &[u8]) -> Result<Self, SdpError> {
        let text = std::str::from_utf8(bytes).map_err(|_| SdpError::NotUtf8)?;
        Self::parse(text)
    }

    /// Values of every session-level attribute called `name` (case-insensitive), `""` for flags.
    pub fn attribute_values<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a str> {
        attr_values(&self.attributes, name)
    }

    /// The `c=` that applies to `m`: its own, else the session-level one.
    pub fn connection_for<'a>(&'a self, m: &'a MediaDescription) -> Option<&'a Connection> {
        m.connection.as_ref().or(self.connection.as_ref())
    }

    /// The direction written for `m`: media-level attribute, else session-level, else sendrecv.
    /// A `c=0.0.0.0` hold is not folded in here (see [`Negotiated::remote_direction`]).
    pub fn direction_of(&self, m: &MediaDescription) -> MediaDirection {
        m.direction()
            .or_else(|| direction_in(&self.attributes))
            .unwrap_or_default()
    }

    /// `a=ptime` for `m`: media-level, else session-level.
    pub fn ptime_of(&self, m: &MediaDescription) -> Option<u32> {
        m.ptime().or_else(|| ptime_in(&self.attributes))
    }
}

/// Splits `x=value` into its type letter and value.
fn split_line(no: usize, line: &str) -> Result<(char, &str), SdpError> {
    let (kind, value) = line
        .split_once('=')
        .ok_or_else(|| bad(no, line, "not a <type>=<value> line"))?;
    let mut chars = kind.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) if c.is_ascii_alphabetic() => Ok((c, value)),
        _ => Err(bad(no, line, "not a <type>=<value> line")),
    }
}

fn parse_origin(no: usize, line: &str, value: &str) -> Result<Origin, SdpError> {
    let words: Vec<&str> = value.split_ascii_whitespace().collect();
    match words.as_slice() {
        [username, id, version, net_type, addr_type, address] => Ok(Origin {
            username: username.to_string(),
            session_id: id.to_string(),
            session_version: version.to_string(),
            net_type: net_type.to_string(),
            addr_type: addr_type.to_string(),
            address: address.to_string(),
        }),
        _ => Err(bad(no, line, "o= needs six fields")),
    }
}

fn parse_connection(no: usize, line: &str, value: &str) -> Result<Connection, SdpError> {
    let words: Vec<&str> = value.split_ascii_whitespace().collect();
    match words.as_slice() {
        [net_type, addr_type, address] => Ok(Connection {
            net_type: net_type.to_string(),
            addr_type: addr_type.to_string(),
            address: address.to_string(),
        }),
        _ => Err(bad(no, line, "c= needs three fields")),
    }
}

fn parse_bandwidth(no: usize, line: &str, value: &str) -> Result<Bandwidth, SdpError> {
    let (kind, bw) = value
        .split_once(':')
        .ok_or_else(|| bad(no, line, "b= needs <type>:<value>"))?;
    let value = bw
        .trim()
        .parse()
        .map_err(|_| bad(no, line, "b= value is not a number"))?;
    Ok(Bandwidth {
        kind: kind.trim().to_string(),
        value,
    })
}

fn parse_attribute(no: usize, line: &str, value: &str) -> Result<Attribute, SdpError> {
    let (name, value) = match value.split_once(':') {
        Some((name, v)) => (name, Some(v.to_string())),
        None => (value, None),
    };
    let name = name.trim();
    if name.is_empty() || name.contains(char::is_whitespace) {
        return Err(bad(no, line, "bad attribute name"));
    }
    Ok(Attribute {
        name: name.to_string(),
        value,
    })
}

fn parse_media_line(no: usize, line: &str, value: &str) -> Result<MediaDescription, SdpError> {
    let mut words = value.split_ascii_whitespace();
    let media = words.next().ok_or_else(|| bad(no, line, "empty m= line"))?;
    let port = words
        .next()
        .ok_or_else(|| bad(no, line, "m= has no port"))?;
    let proto = words
        .next()
        .ok_or_else(|| bad(no, line, "m= has no proto"))?;
    let (port, count) = match port.split_once('/') {
        Some((p, c)) => (p, Some(c)),
        None => (port, None),
    };
    let port = port
        .parse()
        .map_err(|_| bad(no, line, "m= port is not a number"))?;
    let port_count = count
        .map(str::parse)
        .transpose()
        .map_err(|_| bad(no, line, "m= port count is not a number"))?;
    Ok(MediaDescription {
        media: media.to_string(),
        port,
        port_count,
        proto: proto.to_string(),
        formats: words.map(str::to_string).collect(),
        connection: None,
        bandwidths: Vec::new(),
        attributes: Vec::new(),
        other_lines: Vec::new(),
    })
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} {} {} {}",
            self.username,
            self.session_id,
            self.session_version,
            self.net_type,
            self.addr_type,
            self.address
        )
    }
}

impl fmt::Display for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.net_type, self.addr_type, self.address)
    }
}

impl fmt::Display for Bandwidth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self.value)
    }
}

impl fmt::Display for Attribute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(v) => write!(f, "{}:{}", self.name, v),
            None => f.write_str(&self.name),
        }
    }
}

/// Writes the `other_lines` whose type is one of `kinds`, or (with `kinds` empty) those whose type
/// is not in `known`.
fn write_other(
    f: &mut fmt::Formatter<'_>,
    lines: &[(char, String)],
    kinds: &[char],
    known: &[char],
) -> fmt::Result {
    for (kind, value) in lines {
        let wanted = if kinds.is_empty() {
            !known.contains(kind)
        } else {
            kinds.contains(kind)
        };
        if wanted {
            write!(f, "{kind}={value}\r\n")?;
        }
    }
    Ok(())
}

impl fmt::Display for MediaDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "m={} {}", self.media, self.port)?;
        if let Some(count) = self.port_count {
            write!(f, "/{count}")?;
        }
        write!(f, " {}", self.proto)?;
        for fmt in &self.formats {
            write!(f, " {fmt}")?;
        }
        f.write_str("\r\n")?;
        let known = ['i', 'c', 'k'];
        write_other(f, &self.other_lines, &['i'], &known)?;
        if let Some(c) = &self.connection {
            write!(f, "c={c}\r\n")?;
        }
        write_other(f, &self.other_lines, &['c'], &known)?;
        for b in &self.bandwidths {
            write!(f, "b={b}\r\n")?;
        }
        write_other(f, &self.other_lines, &['k'], &known)?;
        for a in &self.attributes {
            write!(f, "a={a}\r\n")?;
        }
        write_other(f, &self.other_lines, &[], &known)
    }
}

impl fmt::Display for SessionDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("v=0\r\n")?;
        if let Some(o) = &self.origin {
            write!(f, "o={o}\r\n")?;
        }
        write!(f, "s={}\r\n", self.session_name)?;
        let known = ['i', 'u', 'e', 'p', 'c', 'r', 'z', 'k'];
        write_other(f, &self.other_lines, &['i', 'u', 'e', 'p'], &known)?;
        if let Some(c) = &self.connection {
            write!(f, "c={c}\r\n")?;
        }
        write_other(f, &self.other_lines, &['c'], &known)?;
        for b in &self.bandwidths {
            write!(f, "b={b}\r\n")?;
        }
        for t in &self.timing {
            write!(f, "t={t}\r\n")?;
        }
        write_other(f, &self.other_lines, &['r', 'z', 'k'], &known)?;
        for a in &self.attributes {
            write!(f, "a={a}\r\n")?;
        }
        write_other(f, &self.other_lines, &[], &known)?;
        for m in &self.media {
            write!(f, "{m}")?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Offer/answer (RFC 3264)
// ---------------------------------------------------------------------------------------------

/// What we offer/answer with: our address, RTP port, codecs in preference order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalMedia {
    /// The address written in `c=` and `o=`; where we receive RTP.
    pub addr: IpAddr,
    /// Our RTP port (RTCP on port + 1).
    pub port: u16,
    /// Voice codecs and `telephone-event`s, most preferred first.
    pub codecs: Vec<CodecSpec>,
    /// Our SDES `a=crypto` values (`tag suite inline:key`, RFC 4568), made by the media side.
    /// Empty (the default): offers are `RTP/AVP`, and an `RTP/SAVP` offer is answered `RTP/SAVP`
    /// with no `a=crypto` — the caller must add one. Not empty: offers are `RTP/SAVP` with these
    /// lines, and an `RTP/SAVP` offer is answered with the first of ours whose suite the offer
    /// has, re-tagged with the offer's tag (the stream is rejected if no suite matches).
    pub crypto: Vec<String>,
}

impl LocalMedia {
    /// Default codecs: opus (111), PCMU (0), PCMA (8), telephone-event/48000 (110) and
    /// telephone-event/8000 (101); no SRTP.
    pub fn new(addr: IpAddr, port: u16) -> Self {
        Self {
            addr,
            port,
            codecs: vec![
                CodecSpec::opus(),
                CodecSpec::pcmu(),
                CodecSpec::pcma(),
                CodecSpec::telephone_event(110, 48000),
                CodecSpec::telephone_event(101, 8000),
            ],
            crypto: Vec::new(),
        }
    }
}

/// `o=` line state: session id fixed per call, version bumped on every new offer/answer we send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SdpSession {
    /// Fixed for the call; best below 2^63 (some parsers read it as a signed 64-bit number).
    pub id: u64,
    /// The version of the last body written; [`create_offer`]/[`create_answer`] add 1 first.
    pub version: u64,
}

impl SdpSession {
    /// A session with the given id and version 0, so the first body written has version 1.
    pub fn new(id: u64) -> Self {
        Self { id, version: 0 }
    }
}

/// The outcome of an offer/answer exchange for the audio stream: what the media side needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// The voice codec, with the payload number to SEND with (the peer's number) and the peer's
    /// `a=fmtp` for it (how it wants to receive it); name, clock and channels are ours.
    pub codec: CodecSpec,
    /// `telephone-event` at the codec's clock, with the payload number to send, if both have it.
    pub dtmf: Option<CodecSpec>,
    /// Where to send RTP; `None` when the port is 0, the address is `0.0.0.0`/`::` (hold) or a
    /// host name.
    pub remote_rtp: Option<SocketAddr>,
    /// Where to send RTCP: the RTP address with `a=rtcp-mux`, else `a=rtcp:PORT [IN IP4 addr]`,
    /// else the RTP port + 1.
    pub remote_rtcp: Option<SocketAddr>,
    /// RTCP shares the RTP port (RFC 5761): offered by the peer and accepted by our answer, or
    /// present in the peer's answer.
    pub rtcp_mux: bool,
    /// How we should act on this stream.
    pub local_direction: MediaDirection,
    /// How the peer will act: its direction attribute, with a `c=0.0.0.0` hold read as "does not
    /// receive".
    pub remote_direction: MediaDirection,
    /// The stream is `RTP/SAVP`.
    pub srtp: bool,
    /// The peer's raw `a=crypto` values on the chosen m-line, for the media side (keys are not
    /// handled here). When our answer used one of [`LocalMedia::crypto`], only the offer line it
    /// accepted is listed.
    pub srtp_crypto: Vec<String>,
    /// The peer's `a=ptime` (media-level, else session-level), in milliseconds.
    pub ptime: Option<u32>,
}

/// Writes an offer for one audio stream with `local`'s codecs, direction `dir` (`SendOnly` to
/// hold, `Inactive` to hold a peer that holds us), bumping `sess.version`.
pub fn create_offer(local: &LocalMedia, sess: &mut SdpSession, dir: MediaDirection) -> String {
    let mut attributes = Vec::new();
    for c in &local.codecs {
        push_codec_attributes(&mut attributes, c.pt, c);
    }
    for crypto in &local.crypto {
        attributes.push(Attribute::new("crypto", crypto.clone()));
    }
    attributes.push(Attribute::flag(dir.attribute()));
    let audio = MediaDescription {
        media: "audio".into(),
        port: local.port,
        port_count: None,
        proto: if local.crypto.is_empty() {
            "RTP/AVP"
        } else {
            "RTP/SAVP"
        }
        .into(),
        formats: local.codecs.iter().map(|c| c.pt.to_string()).collect(),
        connection: None,
        bandwidths: Vec::new(),
        attributes,
        other_lines: Vec::new(),
    };
    local_session(local, sess, vec!["0 0".into()], vec![audio]).to_string()
}

/// Answer a remote offer. Codec chosen = first of the offer's audio formats that we support (matched
/// by name/clock/channels, never by payload number). The answer uses the offerer's payload numbers
/// and lists the chosen codec plus `telephone-event` at the same clock if offered. Every other
/// m-line (non-audio, other protos, a second audio stream, nothing in common) is answered with port
/// 0, keeping the offer's number and order of m-lines (RFC 3264 6).
///
/// Direction: what the offer allows combined with `dir` (offer sendonly → recvonly, recvonly →
/// sendonly, inactive → inactive; `dir` sendonly, i.e. we hold, turns sendrecv into sendonly). An
/// offer with `c=0.0.0.0` holds us, as sendonly would. `sess.version` is bumped.
///
/// `Err(SdpError::NoCommonCodec)` when no audio stream can be accepted: the caller sends 488.
pub fn create_answer(
    offer: &SessionDescription,
    local: &LocalMedia,
    sess: &mut SdpSession,
    dir: MediaDirection,
) -> Result<(String, Negotiated), SdpError> {
    let mut negotiated = None;
    let mut media = Vec::with_capacity(offer.media.len());
    for m in &offer.media {
        if negotiated.is_none()
            && let Some((answer, n)) = answer_stream(offer, m, local, dir)
        {
            media.push(answer);
            negotiated = Some(n);
            continue;
        }
        media.push(rejected(m));
    }
    let negotiated = negotiated.ok_or(SdpError::NoCommonCodec)?;
    let sd = local_session(local, sess, offer.timing.clone(), media);
    Ok((sd.to_string(), negotiated))
}

/// Read the peer's answer to our offer: the first usable audio stream of the answer that lists a
/// codec we offered. The codec is the first such one in the answer's order, sent with the answer's
/// payload number. `local_direction` mirrors the answer's direction; intersect it with the
/// direction we offered ([`MediaDirection::intersect`]) if the peer might not have honoured it.
///
/// `Err(SdpError::NoCommonCodec)` when the answer rejects the audio stream (port 0) or has nothing
/// we offered.
pub fn negotiate_answer(
    offer_we_sent: &LocalMedia,
    answer: &SessionDescription,
) -> Result<Negotiated, SdpError> {
    answer
        .media
        .iter()
        .find_map(|m| {
            if !m.is_usable_audio() {
                return None;
            }
            let listed = m.codecs();
            let (codec, dtmf) = choose_codecs(&listed, &offer_we_sent.codecs)?;
            let remote_direction = remote_direction(answer, m);
            Some(finish(
                answer,
                m,
                codec,
                dtmf,
                (remote_direction.answer_to(), remote_direction),
                m.rtcp_mux(),
                m.crypto(),
            ))
        })
        .ok_or(SdpError::NoCommonCodec)
}

/// The session around our m-lines: `o=`/`c=` with our address, `sess.version` bumped.
fn local_session(
    local: &LocalMedia,
    sess: &mut SdpSession,
    timing: Vec<String>,
    media: Vec<MediaDescription>,
) -> SessionDescription {
    sess.version = sess.version.wrapping_add(1);
    let connection = Connection::new(local.addr);
    SessionDescription {
        origin: Some(Origin {
            username: "-".into(),
            session_id: sess.id.to_string(),
            session_version: sess.version.to_string(),
            net_type: connection.net_type.clone(),
            addr_type: connection.addr_type.clone(),
            address: connection.address.clone(),
        }),
        session_name: "-".into(),
        connection: Some(connection),
        bandwidths: Vec::new(),
        timing,
        attributes: Vec::new(),
        other_lines: Vec::new(),
        media,
    }
}

/// `a=rtpmap` (and `a=fmtp` when `ours` has parameters) for `ours` under payload number `pt`.
fn push_codec_attributes(attributes: &mut Vec<Attribute>, pt: u8, ours: &CodecSpec) {
    attributes.push(Attribute::new("rtpmap", format!("{pt} {}", ours.label())));
    if let Some(fmtp) = &ours.fmtp {
        attributes.push(Attribute::new("fmtp", format!("{pt} {fmtp}")));
    }
}

/// A chosen payload format: the peer's entry (its number and fmtp) and our matching codec.
type Choice<'a> = (CodecSpec, &'a CodecSpec);

/// The first of `listed` (the peer's formats, in its order) that `ours` has, and the
/// `telephone-event` of both at that codec's clock.
fn choose_codecs<'a>(
    listed: &[CodecSpec],
    ours: &'a [CodecSpec],
) -> Option<(Choice<'a>, Option<Choice<'a>>)> {
    let find = |want_dtmf: bool, clock: Option<u32>| {
        listed
            .iter()
            .filter(|c| c.is_telephone_event() == want_dtmf)
            .filter(|c| clock.is_none_or(|clock| c.clock == clock))
            .find_map(|theirs| {
                ours.iter()
                    .find(|o| o.is_telephone_event() == want_dtmf && o.same_encoding(theirs))
                    .map(|o| (theirs.clone(), o))
            })
    };
    let codec = find(false, None)?;
    let dtmf = find(true, Some(codec.0.clock));
    Some((codec, dtmf))
}

/// The peer's direction for `m`, with a `c=0.0.0.0` hold read as "does not receive".
fn remote_direction(sd: &SessionDescription, m: &MediaDescription) -> MediaDirection {
    let dir = sd.direction_of(m);
    if sd.connection_for(m).is_some_and(Connection::is_hold) {
        MediaDirection::from_flags(dir.sends(), false)
    } else {
        dir
    }
}

/// Splits an `a=crypto` value into its tag and suite.
fn crypto_tag_suite(value: &str) -> Option<(&str, &str)> {
    let mut words = value.split_ascii_whitespace();
    Some((words.next()?, words.next()?))
}

/// For an `RTP/SAVP` offer and our own `a=crypto` lines: the first offered line whose suite we
/// have, and our line re-tagged with its tag.
fn match_crypto(offered: &[String], ours: &[String]) -> Option<(String, String)> {
    offered.iter().find_map(|theirs| {
        let (tag, suite) = crypto_tag_suite(theirs)?;
        ours.iter().find_map(|o| {
            let (_, our_suite) = crypto_tag_suite(o)?;
            if !our_suite.eq_ignore_ascii_case(suite) {
                return None;
            }
            let (_, rest) = first_word(o)?;
            Some((theirs.clone(), format!("{tag} {rest}")))
        })
    })
}

/// Accepts offered stream `m` if it can be: our answer m-line and the negotiated result.
fn answer_stream(
    offer: &SessionDescription,
    m: &MediaDescription,
    local: &LocalMedia,
    dir: MediaDirection,
) -> Option<(MediaDescription, Negotiated)> {
    if !m.is_usable_audio() {
        return None;
    }
    let offered = m.codecs();
    let (codec, dtmf) = choose_codecs(&offered, &local.codecs)?;
    let (srtp_crypto, our_crypto) = if m.is_savp() && !local.crypto.is_empty() {
        let (theirs, ours) = match_crypto(&m.crypto(), &local.crypto)?;
        (vec![theirs], Some(ours))
    } else {
        (m.crypto(), None)
    };
    let remote_direction = remote_direction(offer, m);
    let local_direction = MediaDirection::from_flags(
        remote_direction.receives() && dir.sends(),
        remote_direction.sends() && dir.receives(),
    );

    let mut formats = vec![codec.0.pt.to_string()];
    let mut attributes = Vec::new();
    push_codec_attributes(&mut attributes, codec.0.pt, codec.1);
    if let Some((theirs, ours)) = &dtmf {
        formats.push(theirs.pt.to_string());
        push_codec_attributes(&mut attributes, theirs.pt, ours);
    }
    if let Some(crypto) = our_crypto {
        attributes.push(Attribute::new("crypto", crypto));
    }
    if let Some(mid) = m.attribute("mid") {
        attributes.push(Attribute::new("mid", mid));
    }
    let rtcp_mux = m.rtcp_mux();
    if rtcp_mux {
        attributes.push(Attribute::flag("rtcp-mux"));
    }
    attributes.push(Attribute::flag(local_direction.attribute()));
    let answer = MediaDescription {
        media: m.media.clone(),
        port: local.port,
        port_count: None,
        proto: m.proto.clone(),
        formats,
        connection: None,
        bandwidths: Vec::new(),
        attributes,
        other_lines: Vec::new(),
    };
    let negotiated = finish(
        offer,
        m,
        codec,
        dtmf,
        (local_direction, remote_direction),
        rtcp_mux,
        srtp_crypto,
    );
    Some((answer, negotiated))
}

/// Builds the [`Negotiated`] for the peer's stream `m` of `sd`; `directions` is (local, remote).
fn finish(
    sd: &SessionDescription,
    m: &MediaDescription,
    codec: Choice<'_>,
    dtmf: Option<Choice<'_>>,
    (local_direction, remote_direction): (MediaDirection, MediaDirection),
    rtcp_mux: bool,
    srtp_crypto: Vec<String>,
) -> Negotiated {
    // Payload number and fmtp are the peer's; the encoding as we name it.
    let sending = |(theirs, ours): Choice<'_>| CodecSpec {
        pt: theirs.pt,
        fmtp: theirs.fmtp,
        ..ours.clone()
    };
    let remote_rtp = sd
        .connection_for(m)
        .and_then(Connection::ip)
        .filter(|ip| !ip.is_unspecified() && m.port != 0)
        .map(|ip| SocketAddr::new(ip, m.port));
    let remote_rtcp = remote_rtp.and_then(|rtp| {
        if rtcp_mux {
            return Some(rtp);
        }
        match m.rtcp() {
            Some((port, ip)) => Some(SocketAddr::new(
                ip.filter(|ip| !ip.is_unspecified()).unwrap_or(rtp.ip()),
                port,
            )),
            None => rtp
                .port()
                .checked_add(1)
                .map(|p| SocketAddr::new(rtp.ip(), p)),
        }
    });
    Negotiated {
        codec: sending(codec),
        dtmf: dtmf.map(sending),
        remote_rtp,
        remote_rtcp,
        rtcp_mux,
        local_direction,
        remote_direction,
        srtp: m.is_savp(),
        srtp_crypto,
        ptime: sd.ptime_of(m),
    }
}

/// Our answer line for an offered stream we do not take: same media, proto and formats, port 0.
fn rejected(m: &MediaDescription) -> MediaDescription {
    MediaDescription {
        media: m.media.clone(),
        port: 0,
        port_count: None,
        proto: m.proto.clone(),
        formats: m.formats.clone(),
        connection: None,
        bandwidths: Vec::new(),
        attributes: Vec::new(),
        other_lines: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// baresip 1.0 INVITE (tests/data/sip-corpus.jsonl).
    const BARESIP_OFFER: &str = "v=0\r\n\
o=- 269509085 1080191743 IN IP4 127.0.0.1\r\n\
s=-\r\n\
c=IN IP4 127.0.0.1\r\n\
t=0 0\r\n\
a=tool:baresip 1.0.0\r\n\
m=audio 20038 RTP/AVP 0 8 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\n\
a=sendrecv\r\n\
a=label:1\r\n\
a=rtcp-rsize\r\n\
a=ssrc:611872663 cname:sip:alice@127.0.0.1\r\n\
a=minptime:20\r\n\
a=ptime:20\r\n";

    /// baresip 1.0 INVITE with every codec module loaded: opus on 96, stereo asked for.
    const BARESIP_FULL_OFFER: &str = "v=0\r\n\
o=- 3139002411 1495240857 IN IP4 127.0.0.1\r\n\
s=-\r\n\
c=IN IP4 127.0.0.1\r\n\
t=0 0\r\n\
a=tool:baresip 1.0.0\r\n\
m=audio 20032 RTP/AVP 0 8 9 96 97 98 99 100 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:9 G722/8000\r\n\
a=rtpmap:96 opus/48000/2\r\n\
a=fmtp:96 stereo=1;sprop-stereo=1\r\n\
a=rtpmap:97 G726-40/8000\r\n\
a=rtpmap:98 G726-32/8000\r\n\
a=rtpmap:99 G726-24/8000\r\n\
a=rtpmap:100 G726-16/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\n\
a=sendrecv\r\n\
a=label:1\r\n\
a=rtcp-rsize\r\n\
a=ssrc:1567876659 cname:sip:alice@127.0.0.1\r\n\
a=minptime:20\r\n\
a=ptime:20\r\n";

    /// SIPp 3.6 UAC INVITE as relayed by Kamailio 5.6 (sent from its port 5060).
    const SIPP_OFFER_VIA_KAMAILIO: &str = "v=0\r\n\
o=sipp 53655765 2353687637 IN IP4 127.0.0.1\r\n\
s=-\r\n\
c=IN IP4 127.0.0.1\r\n\
t=0 0\r\n\
m=audio 20500 RTP/AVP 8 0 101\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n";

    /// Twinkle 1.10 200 OK: no direction attribute.
    const TWINKLE_ANSWER: &str = "v=0\r\n\
o=twinkle 1257583512 679951982 IN IP4 127.0.0.1\r\n\
s=-\r\n\
c=IN IP4 127.0.0.1\r\n\
t=0 0\r\n\
m=audio 20200 RTP/AVP 8 101\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\n\
a=ptime:20\r\n";

    /// baresip 1.0 200 OK on an SRTP account (SDES).
    const BARESIP_SAVP: &str = "v=0\r\n\
o=- 3256491258 940882625 IN IP4 127.0.0.1\r\n\
s=-\r\n\
c=IN IP4 127.0.0.1\r\n\
t=0 0\r\n\
a=tool:baresip 1.0.0\r\n\
m=audio 20034 RTP/SAVP 0 8 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\n\
a=sendrecv\r\n\
a=label:1\r\n\
a=ssrc:2638243601 cname:sip:alice@127.0.0.1\r\n\
a=minptime:20\r\n\
a=ptime:20\r\n\
a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:iVeRk43SX1Z8oPeumJcHH2ZNUxZNGcLJH7FH1Qpe\r\n";

    /// SIP.js 0.21 (Chrome) INVITE: WebRTC, no session-level c=.
    const SIPJS_OFFER: &str = "v=0\r\n\
o=- 4373030702288303790 2 IN IP4 127.0.0.1\r\n\
s=-\r\n\
t=0 0\r\n\
a=group:BUNDLE 0\r\n\
a=extmap-allow-mixed\r\n\
a=msid-semantic: WMS 392ba890-002d-42bd-8eab-6416b143752b\r\n\
m=audio 52514 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126\r\n\
c=IN IP4 127.0.0.1\r\n\
a=rtcp:9 IN IP4 0.0.0.0\r\n\
a=candidate:1632464247 1 udp 2122194687 127.0.0.1 52514 typ host generation 0 network-id 3 network-cost 50\r\n\
a=ice-ufrag:bLYK\r\n\
a=ice-pwd:Y0uSE+yHKlK+zNVXr8aQzqKw\r\n\
a=ice-options:trickle\r\n\
a=fingerprint:sha-256 24:E0:B7:16:45:6D:7D:99:21:46:DC:DF:FD:25:7A:90:18:54:BC:0D:14:0D:01:98:A5:9F:6D:E3:A5:FD:85:6D\r\n\
a=setup:actpass\r\n\
a=mid:0\r\n\
a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n\
a=sendrecv\r\n\
a=msid:392ba890-002d-42bd-8eab-6416b143752b 3848900d-ca84-47ec-aeb9-b28be353ec7e\r\n\
a=rtcp-mux\r\n\
a=rtcp-rsize\r\n\
a=rtcp-xr:rcvr-rtt=all\r\n\
a=rtpmap:111 opus/48000/2\r\n\
a=rtcp-fb:111 transport-cc\r\n\
a=fmtp:111 minptime=10;useinbandfec=1\r\n\
a=rtpmap:63 red/48000/2\r\n\
a=fmtp:63 111/111\r\n\
a=rtpmap:9 G722/8000\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:13 CN/8000\r\n\
a=rtpmap:110 telephone-event/48000\r\n\
a=rtpmap:126 telephone-event/8000\r\n\
a=ssrc:1166443108 cname:gW00wogc6bUq3GBd\r\n";

    fn parse(text: &str) -> SessionDescription {
        SessionDescription::parse(text).expect("parses")
    }

    fn local() -> LocalMedia {
        LocalMedia::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)), 40000)
    }

    fn answer(offer: &str, dir: MediaDirection) -> (SessionDescription, Negotiated) {
        let mut sess = SdpSession::new(7);
        let (text, neg) = create_answer(&parse(offer), &local(), &mut sess, dir).expect("answers");
        assert!(text.ends_with("\r\n"));
        assert!(!text.replace("\r\n", "").contains('\n'), "CRLF only");
        (parse(&text), neg)
    }

    fn sock(s: &str) -> Option<SocketAddr> {
        Some(s.parse().expect("socket address"))
    }

    // --- parsing -------------------------------------------------------------------------------

    #[test]
    fn baresip_offer_parses_every_field() {
        let sd = parse(BARESIP_OFFER);
        let o = sd.origin.as_ref().expect("origin");
        assert_eq!(o.username, "-");
        assert_eq!(o.session_id, "269509085");
        assert_eq!(o.session_version, "1080191743");
        assert_eq!(sd.session_name, "-");
        assert_eq!(
            sd.connection.as_ref().and_then(Connection::ip),
            Some(IpAddr::V4(Ipv4Addr::LOCALHOST))
        );
        assert_eq!(sd.timing, ["0 0"]);
        assert_eq!(sd.attribute_values("tool").next(), Some("baresip 1.0.0"));
        let [m] = sd.media.as_slice() else {
            panic!("one m-line")
        };
        assert_eq!(
            (m.media.as_str(), m.port, m.proto.as_str()),
            ("audio", 20038, "RTP/AVP")
        );
        assert_eq!(m.formats, ["0", "8", "101"]);
        let codecs = m.codecs();
        assert_eq!(codecs.len(), 3);
        assert_eq!(codecs[0], CodecSpec::pcmu());
        assert_eq!(codecs[1], CodecSpec::pcma());
        assert_eq!(codecs[2].label(), "telephone-event/8000");
        assert_eq!(codecs[2].fmtp.as_deref(), Some("0-15"));
        assert_eq!(m.direction(), Some(MediaDirection::SendRecv));
        assert_eq!(m.ptime(), Some(20));
        assert_eq!(
            m.attribute("ssrc"),
            Some("611872663 cname:sip:alice@127.0.0.1")
        );
        assert!(m.has_attribute("rtcp-rsize"));
        assert!(!m.rtcp_mux());
    }

    #[test]
    fn baresip_offer_written_back_is_byte_identical() {
        assert_eq!(parse(BARESIP_OFFER).to_string(), BARESIP_OFFER);
        assert_eq!(parse(SIPJS_OFFER).to_string(), SIPJS_OFFER);
    }

    #[test]
    fn unknown_lines_and_bandwidth_survive_a_round_trip() {
        let text = "v=0\r\no=x 1 1 IN IP4 10.0.0.1\r\ns=call\r\ni=info\r\nu=http://x\r\n\
e=a@b\r\nc=IN IP4 10.0.0.1\r\nb=AS:128\r\nb=TIAS:64000\r\nt=0 0\r\nr=604800 3600 0\r\n\
k=prompt\r\na=recvonly\r\ny=unknown\r\nm=audio 4000/2 RTP/AVP 0\r\ni=voice\r\n\
c=IN IP4 10.0.0.2\r\nc=IN IP4 10.0.0.3\r\nb=AS:64\r\nk=clear:x\r\na=x-custom:1 2\r\n\
q=odd\r\n";
        let sd = parse(text);
        assert_eq!(
            sd.bandwidths[0],
            Bandwidth {
                kind: "AS".into(),
                value: 128
            }
        );
        assert_eq!(sd.bandwidths[1].value, 64000);
        assert_eq!(sd.media[0].port_count, Some(2));
        assert_eq!(sd.media[0].bandwidths[0].value, 64);
        assert_eq!(sd.media[0].attribute("x-custom"), Some("1 2"));
        assert!(sd.media[0].other_lines.contains(&('q', "odd".into())));
        assert_eq!(sd.to_string(), text);
    }

    #[test]
    fn lf_only_trailing_whitespace_and_missing_s_are_tolerated() {
        let text = "v=0 \n\no=- 1 2 IN IP4 10.0.0.1\t\nc=IN IP4 10.0.0.1  \nt=0 0\n\
m=audio 4000 RTP/AVP 0 \na=sendonly   \n";
        let sd = parse(text);
        assert_eq!(sd.session_name, "-");
        assert_eq!(sd.media[0].formats, ["0"]);
        assert_eq!(sd.media[0].direction(), Some(MediaDirection::SendOnly));
        // No s= nor t= at all either.
        let sd = parse("v=0\nm=audio 4000 RTP/AVP 8\n");
        assert_eq!(
            (sd.session_name.as_str(), sd.timing.as_slice()),
            ("-", &["0 0".to_string()][..])
        );
        assert!(sd.origin.is_none());
        assert!(sd.to_string().starts_with("v=0\r\ns=-\r\nt=0 0\r\nm=audio"));
    }

    #[test]
    fn malformed_bodies_are_errors_not_panics() {
        for (text, want) in [
            ("", SdpError::Empty),
            ("\r\n \r\n", SdpError::Empty),
            ("hello", SdpError::NoVersion),
            ("o=- 1 1 IN IP4 1.2.3.4\r\nv=0\r\n", SdpError::NoVersion),
        ] {
            assert_eq!(SessionDescription::parse(text), Err(want), "{text:?}");
        }
        // Each bad at the line number given.
        for (text, line) in [
            ("v=1\r\n", 1),
            ("v=0\r\nno equals sign\r\n", 2),
            ("v=0\r\nab=c\r\n", 2),
            ("v=0\r\n=x\r\n", 2),
            ("v=0\r\nv=0\r\n", 2),
            ("v=0\r\no=- 1 IN IP4 1.2.3.4\r\n", 2),
            ("v=0\r\nc=IN IP4\r\n", 2),
            ("v=0\r\nb=AS\r\n", 2),
            ("v=0\r\nb=AS:lots\r\n", 2),
            ("v=0\r\na=\r\n", 2),
            ("v=0\r\nm=audio\r\n", 2),
            ("v=0\r\nm=audio 4000\r\n", 2),
            ("v=0\r\nm=audio abc RTP/AVP 0\r\n", 2),
            ("v=0\r\nm=audio 70000 RTP/AVP 0\r\n", 2),
            ("v=0\r\nm=audio 4000/x RTP/AVP 0\r\n", 2),
            ("v=0\r\n\r\nm=audio 4000 RTP/AVP 0\r\ns=late\r\n", 4),
            ("v=0\r\nm=audio 4000 RTP/AVP 0\r\nc=IN IP4 1.2.3.4 x\r\n", 3),
        ] {
            match SessionDescription::parse(text) {
                Err(SdpError::BadLine { line: got, .. }) => assert_eq!(got, line, "{text:?}"),
                other => panic!("{text:?} gave {other:?}"),
            }
        }
        assert_eq!(
            SessionDescription::parse_bytes(b"v=0\r\ns=\xff\r\n"),
            Err(SdpError::NotUtf8)
        );
    }

    #[test]
    fn malformed_attributes_are_ignored_not_fatal() {
        let sd = parse(
            "v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 4000 RTP/AVP 0 96 97 abc 200\r\n\
a=rtpmap:96\r\na=rtpmap:97 opus/notanumber\r\na=rtpmap:x PCMA/8000\r\na=ptime:lots\r\n\
a=rtcp:99999\r\na=fmtp:\r\n",
        );
        let m = &sd.media[0];
        assert_eq!(m.codecs(), [CodecSpec::pcmu()]);
        assert_eq!(m.ptime(), None);
        assert_eq!(m.rtcp(), None);
        let (_, neg) = create_answer(
            &sd,
            &local(),
            &mut SdpSession::new(1),
            MediaDirection::SendRecv,
        )
        .expect("PCMU still usable");
        assert_eq!(neg.remote_rtcp, sock("10.0.0.1:4001"));
    }

    #[test]
    fn every_sdp_body_in_the_real_corpus_parses() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/sip-corpus.jsonl");
        let corpus = std::fs::read_to_string(path).expect("corpus file");
        let mut bodies = 0;
        let mut answered = 0;
        for line in corpus.lines().filter(|l| !l.trim().is_empty()) {
            let json: serde_json::Value = serde_json::from_str(line).expect("json line");
            let bytes = unhex(json["hex"].as_str().expect("hex field"));
            let Some(start) = bytes.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            let body = &bytes[start + 4..];
            if !body.starts_with(b"v=") {
                continue;
            }
            bodies += 1;
            let sd = SessionDescription::parse_bytes(body)
                .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(body)));
            assert!(!sd.media.is_empty());
            assert_eq!(parse(&sd.to_string()), sd, "round trip");
            let webrtc = sd.media.iter().all(|m| m.proto.contains("TLS"));
            let result = create_answer(
                &sd,
                &local(),
                &mut SdpSession::new(1),
                MediaDirection::SendRecv,
            );
            if webrtc {
                assert_eq!(result.err(), Some(SdpError::NoCommonCodec));
            } else {
                let (_, neg) = result.expect("every plain RTP body has G.711");
                assert!(neg.remote_rtp.is_some());
                answered += 1;
            }
        }
        assert!(bodies >= 280, "only {bodies} SDP bodies found");
        assert!(answered >= 200, "only {answered} answered");
    }

    #[test]
    fn truncated_and_mangled_real_bodies_never_panic() {
        let local = local();
        for body in [
            BARESIP_FULL_OFFER,
            SIPJS_OFFER,
            BARESIP_SAVP,
            TWINKLE_ANSWER,
        ] {
            let mut variants: Vec<String> = (0..=body.len())
                .filter(|&n| body.is_char_boundary(n))
                .map(|n| body[..n].to_string())
                .collect();
            let lines: Vec<&str> = body.split("\r\n").collect();
            for skip in 0..lines.len() {
                let mut v = lines.clone();
                v.remove(skip);
                variants.push(v.join("\r\n"));
            }
            for (i, c) in body.char_indices() {
                for replacement in [' ', '=', ':', '/', '0', '\n', 'x'] {
                    if c != replacement {
                        let mut v = body.to_string();
                        v.replace_range(i..i + c.len_utf8(), &replacement.to_string());
                        variants.push(v);
                    }
                }
            }
            for text in &variants {
                if let Ok(sd) = SessionDescription::parse(text) {
                    let _ = sd.to_string();
                    let _ = create_answer(
                        &sd,
                        &local,
                        &mut SdpSession::new(1),
                        MediaDirection::SendRecv,
                    );
                    let _ = create_answer(
                        &sd,
                        &local,
                        &mut SdpSession::new(1),
                        MediaDirection::SendOnly,
                    );
                    let _ = negotiate_answer(&local, &sd);
                }
            }
        }
    }

    fn unhex(s: &str) -> Vec<u8> {
        s.as_bytes()
            .chunks(2)
            .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
            .collect()
    }

    // --- codecs and directions -----------------------------------------------------------------

    #[test]
    fn codec_constructors_and_labels() {
        assert_eq!(CodecSpec::pcmu().label(), "PCMU/8000");
        assert_eq!(CodecSpec::pcma().pt, 8);
        let opus = CodecSpec::opus();
        assert_eq!((opus.pt, opus.label().as_str()), (111, "opus/48000/2"));
        assert_eq!(opus.fmtp.as_deref(), Some("useinbandfec=1"));
        let te = CodecSpec::telephone_event(101, 8000);
        assert_eq!(
            (te.label().as_str(), te.fmtp.as_deref()),
            ("telephone-event/8000", Some("0-16"))
        );
        assert!(te.is_telephone_event());
        let local = LocalMedia::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 4000);
        let labels: Vec<(u8, String)> = local.codecs.iter().map(|c| (c.pt, c.label())).collect();
        assert_eq!(
            labels,
            [
                (111, "opus/48000/2".to_string()),
                (0, "PCMU/8000".into()),
                (8, "PCMA/8000".into()),
                (110, "telephone-event/48000".into()),
                (101, "telephone-event/8000".into())
            ]
        );
    }

    #[test]
    fn direction_answers_and_flags() {
        use MediaDirection::*;
        assert_eq!(SendOnly.answer_to(), RecvOnly);
        assert_eq!(RecvOnly.answer_to(), SendOnly);
        assert_eq!(SendRecv.answer_to(), SendRecv);
        assert_eq!(Inactive.answer_to(), Inactive);
        assert!(SendRecv.sends() && SendRecv.receives());
        assert!(SendOnly.sends() && !SendOnly.receives());
        assert!(!Inactive.sends() && !Inactive.receives());
        assert_eq!(SendRecv.intersect(RecvOnly), RecvOnly);
        assert_eq!(SendOnly.intersect(RecvOnly), Inactive);
        for d in [SendRecv, SendOnly, RecvOnly, Inactive] {
            assert_eq!(MediaDirection::from_attribute(d.attribute()), Some(d));
            assert_eq!(d.to_string(), d.attribute());
        }
        assert_eq!(MediaDirection::from_attribute("SENDONLY"), Some(SendOnly));
        assert_eq!(MediaDirection::from_attribute("ptime"), None);
    }

    // --- our offers ----------------------------------------------------------------------------

    #[test]
    fn offer_lists_default_codecs_and_bumps_version() {
        let local = local();
        let mut sess = SdpSession::new(4242);
        let text = create_offer(&local, &mut sess, MediaDirection::SendRecv);
        assert_eq!(
            text,
            "v=0\r\no=- 4242 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n\
m=audio 40000 RTP/AVP 111 0 8 110 101\r\n\
a=rtpmap:111 opus/48000/2\r\na=fmtp:111 useinbandfec=1\r\n\
a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:110 telephone-event/48000\r\na=fmtp:110 0-16\r\n\
a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=sendrecv\r\n"
        );
        let hold = parse(&create_offer(&local, &mut sess, MediaDirection::SendOnly));
        assert_eq!(
            sess,
            SdpSession {
                id: 4242,
                version: 2
            }
        );
        let o = hold.origin.as_ref().expect("origin");
        assert_eq!(
            (o.session_id.as_str(), o.session_version.as_str()),
            ("4242", "2")
        );
        assert_eq!(hold.media[0].direction(), Some(MediaDirection::SendOnly));
    }

    #[test]
    fn ipv6_offer_uses_ip6_lines() {
        let local = LocalMedia::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 5000);
        let sd = parse(&create_offer(
            &local,
            &mut SdpSession::new(1),
            MediaDirection::SendRecv,
        ));
        let c = sd.connection.as_ref().expect("c=");
        assert_eq!((c.addr_type.as_str(), c.address.as_str()), ("IP6", "::1"));
        assert_eq!(
            sd.origin.as_ref().map(|o| o.addr_type.as_str()),
            Some("IP6")
        );
    }

    #[test]
    fn offer_with_local_crypto_is_savp() {
        let mut local = local();
        local.crypto = vec![
            "1 AES_CM_128_HMAC_SHA1_80 inline:AAAABBBBCCCCDDDDEEEEFFFFGGGGHHHHIIIIJJJJ".into(),
        ];
        let sd = parse(&create_offer(
            &local,
            &mut SdpSession::new(1),
            MediaDirection::SendRecv,
        ));
        assert_eq!(sd.media[0].proto, "RTP/SAVP");
        assert_eq!(sd.media[0].crypto(), local.crypto);
    }

    #[test]
    fn our_offer_answered_by_our_answer_agrees_both_ways() {
        let alice = local();
        let bob = LocalMedia::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 20)), 50000);
        let offer = parse(&create_offer(
            &alice,
            &mut SdpSession::new(1),
            MediaDirection::SendRecv,
        ));
        let (answer, at_bob) = create_answer(
            &offer,
            &bob,
            &mut SdpSession::new(2),
            MediaDirection::SendRecv,
        )
        .expect("answer");
        let at_alice = negotiate_answer(&alice, &parse(&answer)).expect("negotiated");
        assert_eq!(at_bob.codec.label(), "opus/48000/2");
        assert_eq!(at_alice.codec.label(), "opus/48000/2");
        assert_eq!(
            at_alice.dtmf.as_ref().map(|d| (d.pt, d.clock)),
            Some((110, 48000))
        );
        assert_eq!(at_bob.remote_rtp, sock("192.0.2.10:40000"));
        assert_eq!(at_alice.remote_rtp, sock("192.0.2.20:50000"));
        assert_eq!(at_alice.remote_rtcp, sock("192.0.2.20:50001"));
        assert_eq!(at_alice.local_direction, MediaDirection::SendRecv);
    }

    // --- answering real offers -----------------------------------------------------------------

    #[test]
    fn answer_to_baresip_offer_picks_pcmu() {
        let (sd, neg) = answer(BARESIP_OFFER, MediaDirection::SendRecv);
        assert_eq!(neg.codec, CodecSpec::pcmu());
        assert_eq!(
            neg.dtmf,
            Some(CodecSpec {
                fmtp: Some("0-15".into()),
                ..CodecSpec::telephone_event(101, 8000)
            })
        );
        assert_eq!(neg.remote_rtp, sock("127.0.0.1:20038"));
        assert_eq!(neg.remote_rtcp, sock("127.0.0.1:20039"));
        assert_eq!(neg.ptime, Some(20));
        assert_eq!(
            (neg.local_direction, neg.remote_direction),
            (MediaDirection::SendRecv, MediaDirection::SendRecv)
        );
        assert!(!neg.srtp && neg.srtp_crypto.is_empty() && !neg.rtcp_mux);
        assert_eq!(
            sd.to_string(),
            "v=0\r\no=- 7 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n\
m=audio 40000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=sendrecv\r\n"
        );
    }

    #[test]
    fn answer_to_sipp_offer_relayed_by_kamailio_follows_offer_order_to_pcma() {
        let (sd, neg) = answer(SIPP_OFFER_VIA_KAMAILIO, MediaDirection::SendRecv);
        assert_eq!(neg.codec, CodecSpec::pcma());
        assert_eq!(neg.dtmf.as_ref().map(|d| d.pt), Some(101));
        assert_eq!(sd.media[0].formats, ["8", "101"]);
        assert_eq!(neg.remote_rtp, sock("127.0.0.1:20500"));
    }

    #[test]
    fn answer_to_baresip_full_offer_prefers_offer_order_over_ours() {
        // We prefer opus, but the offerer lists PCMU first: RFC 3264 lets the offer's order win.
        let (sd, neg) = answer(BARESIP_FULL_OFFER, MediaDirection::SendRecv);
        assert_eq!(neg.codec, CodecSpec::pcmu());
        assert_eq!(sd.media[0].formats, ["0", "101"]);
    }

    #[test]
    fn dynamic_payload_numbers_are_matched_by_name_never_by_number() {
        // Opus on 96, and 111 (our opus number) meaning something else entirely.
        let offer = "v=0\r\nc=IN IP4 10.0.0.5\r\nm=audio 6000 RTP/AVP 111 96 0 101\r\n\
a=rtpmap:111 iLBC/8000\r\na=rtpmap:96 OPUS/48000/2\r\na=fmtp:96 stereo=1;sprop-stereo=1\r\n\
a=rtpmap:101 telephone-event/8000\r\n";
        let (sd, neg) = answer(offer, MediaDirection::SendRecv);
        assert_eq!(
            neg.codec,
            CodecSpec {
                pt: 96,
                fmtp: Some("stereo=1;sprop-stereo=1".into()),
                ..CodecSpec::opus()
            }
        );
        // telephone-event only at 8000 Hz: none to go with 48 kHz opus.
        assert_eq!(neg.dtmf, None);
        let m = &sd.media[0];
        assert_eq!(m.formats, ["96"]);
        assert_eq!(m.attribute("rtpmap"), Some("96 opus/48000/2"));
        assert_eq!(m.fmtp(96), Some("useinbandfec=1"));
    }

    #[test]
    fn static_payloads_without_rtpmap_are_understood() {
        let (sd, neg) = answer(
            "v=0\r\nc=IN IP4 10.0.0.5\r\nm=audio 6000 RTP/AVP 18 8 0\r\n",
            MediaDirection::SendRecv,
        );
        assert_eq!(neg.codec, CodecSpec::pcma());
        assert_eq!(sd.media[0].formats, ["8"]);
    }

    #[test]
    fn opus_offer_with_48k_telephone_event_is_answered_with_both() {
        let offer = "v=0\r\no=- 1 1 IN IP4 10.0.0.5\r\ns=-\r\nc=IN IP4 10.0.0.5\r\nt=0 0\r\n\
m=audio 6000 RTP/AVP 109 0 104 101\r\na=rtpmap:109 opus/48000/2\r\na=rtpmap:104 telephone-event/48000\r\n\
a=rtpmap:101 telephone-event/8000\r\n";
        let (sd, neg) = answer(offer, MediaDirection::SendRecv);
        assert_eq!((neg.codec.pt, neg.codec.name.as_str()), (109, "opus"));
        assert_eq!(
            neg.dtmf.as_ref().map(|d| (d.pt, d.clock)),
            Some((104, 48000))
        );
        assert_eq!(sd.media[0].formats, ["109", "104"]);
        assert_eq!(sd.media[0].fmtp(104), Some("0-16"));
    }

    #[test]
    fn offer_with_no_common_codec_is_refused() {
        let offer = "v=0\r\nc=IN IP4 10.0.0.5\r\nm=audio 6000 RTP/AVP 18 9 101\r\na=rtpmap:101 telephone-event/8000\r\n";
        let err = create_answer(
            &parse(offer),
            &local(),
            &mut SdpSession::new(1),
            MediaDirection::SendRecv,
        );
        assert_eq!(err.err(), Some(SdpError::NoCommonCodec));
        let no_media = parse("v=0\r\no=- 1 1 IN IP4 10.0.0.5\r\ns=-\r\nt=0 0\r\n");
        let err = create_answer(
            &no_media,
            &local(),
            &mut SdpSession::new(1),
            MediaDirection::SendRecv,
        );
        assert_eq!(err.err(), Some(SdpError::NoCommonCodec));
    }

    #[test]
    fn sipjs_webrtc_offer_is_refused_with_no_common_codec() {
        let err = create_answer(
            &parse(SIPJS_OFFER),
            &local(),
            &mut SdpSession::new(1),
            MediaDirection::SendRecv,
        );
        assert_eq!(err.err(), Some(SdpError::NoCommonCodec));
    }

    #[test]
    fn video_and_second_audio_are_rejected_with_port_zero_in_offer_order() {
        let offer = "v=0\r\no=- 1 1 IN IP4 10.0.0.5\r\ns=-\r\nc=IN IP4 10.0.0.5\r\nt=0 0\r\n\
m=video 7000 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n\
m=audio 0 RTP/AVP 0\r\n\
m=audio 6000 UDP/TLS/RTP/SAVPF 0\r\n\
m=audio 6002 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n\
m=audio 6004 RTP/AVP 0\r\n\
m=application 5000 UDP/DTLS/SCTP webrtc-datachannel\r\n";
        let (sd, neg) = answer(offer, MediaDirection::SendRecv);
        let lines: Vec<String> = sd
            .media
            .iter()
            .map(|m| format!("{} {} {} {}", m.media, m.port, m.proto, m.formats.join(" ")))
            .collect();
        assert_eq!(
            lines,
            [
                "video 0 RTP/AVP 96",
                "audio 0 RTP/AVP 0",
                "audio 0 UDP/TLS/RTP/SAVPF 0",
                "audio 40000 RTP/AVP 8",
                "audio 0 RTP/AVP 0",
                "application 0 UDP/DTLS/SCTP webrtc-datachannel",
            ]
        );
        assert_eq!(neg.codec, CodecSpec::pcma());
        assert_eq!(neg.remote_rtp, sock("10.0.0.5:6002"));
    }

    #[test]
    fn savp_offer_keeps_proto_and_passes_crypto_out() {
        let (sd, neg) = answer(BARESIP_SAVP, MediaDirection::SendRecv);
        assert_eq!(sd.media[0].proto, "RTP/SAVP");
        assert!(
            sd.media[0].crypto().is_empty(),
            "no key of ours invented here"
        );
        assert!(neg.srtp);
        assert_eq!(
            neg.srtp_crypto,
            ["1 AES_CM_128_HMAC_SHA1_80 inline:iVeRk43SX1Z8oPeumJcHH2ZNUxZNGcLJH7FH1Qpe"]
        );
    }

    #[test]
    fn savp_offer_answered_with_our_key_under_the_offer_tag() {
        let offer = "v=0\r\nc=IN IP4 10.0.0.5\r\nm=audio 6000 RTP/SAVP 0\r\n\
a=crypto:1 AES_256_CM_HMAC_SHA1_80 inline:LONGKEY\r\n\
a=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:THEIRKEY\r\n";
        let mut local = local();
        local.crypto = vec!["1 AES_CM_128_HMAC_SHA1_80 inline:OURKEY".into()];
        let (text, neg) = create_answer(
            &parse(offer),
            &local,
            &mut SdpSession::new(1),
            MediaDirection::SendRecv,
        )
        .expect("answer");
        let sd = parse(&text);
        assert_eq!(
            sd.media[0].crypto(),
            ["2 AES_CM_128_HMAC_SHA1_80 inline:OURKEY"]
        );
        assert_eq!(
            neg.srtp_crypto,
            ["2 AES_CM_128_HMAC_SHA1_80 inline:THEIRKEY"]
        );
        // No suite in common: the SRTP stream cannot be accepted.
        local.crypto = vec!["1 AEAD_AES_128_GCM inline:OURKEY".into()];
        let err = create_answer(
            &parse(offer),
            &local,
            &mut SdpSession::new(1),
            MediaDirection::SendRecv,
        );
        assert_eq!(err.err(), Some(SdpError::NoCommonCodec));
    }

    // --- directions and hold -------------------------------------------------------------------

    #[test]
    fn hold_offer_sendonly_is_answered_recvonly() {
        let offer = SIPP_OFFER_VIA_KAMAILIO.replace("a=sendrecv", "a=sendonly");
        let (sd, neg) = answer(&offer, MediaDirection::SendRecv);
        assert_eq!(sd.media[0].direction(), Some(MediaDirection::RecvOnly));
        assert_eq!(neg.local_direction, MediaDirection::RecvOnly);
        assert_eq!(neg.remote_direction, MediaDirection::SendOnly);
        assert_eq!(neg.remote_rtp, sock("127.0.0.1:20500"), "RTCP still flows");
    }

    #[test]
    fn hold_offer_with_zero_address_is_answered_recvonly_without_remote_address() {
        let offer = BARESIP_OFFER.replace("c=IN IP4 127.0.0.1", "c=IN IP4 0.0.0.0");
        let (sd, neg) = answer(&offer, MediaDirection::SendRecv);
        assert_eq!(sd.media[0].direction(), Some(MediaDirection::RecvOnly));
        assert_eq!(neg.remote_direction, MediaDirection::SendOnly);
        assert_eq!((neg.remote_rtp, neg.remote_rtcp), (None, None));
    }

    #[test]
    fn inactive_offer_is_answered_inactive() {
        let offer = SIPP_OFFER_VIA_KAMAILIO.replace("a=sendrecv", "a=inactive");
        let (sd, neg) = answer(&offer, MediaDirection::SendRecv);
        assert_eq!(sd.media[0].direction(), Some(MediaDirection::Inactive));
        assert_eq!(neg.local_direction, MediaDirection::Inactive);
    }

    #[test]
    fn recvonly_offer_is_answered_sendonly() {
        let offer = SIPP_OFFER_VIA_KAMAILIO.replace("a=sendrecv", "a=recvonly");
        let (sd, neg) = answer(&offer, MediaDirection::SendRecv);
        assert_eq!(sd.media[0].direction(), Some(MediaDirection::SendOnly));
        assert_eq!(neg.local_direction, MediaDirection::SendOnly);
    }

    #[test]
    fn we_hold_while_answering_sendrecv_offer_answers_sendonly() {
        let (sd, neg) = answer(BARESIP_OFFER, MediaDirection::SendOnly);
        assert_eq!(sd.media[0].direction(), Some(MediaDirection::SendOnly));
        assert_eq!(neg.local_direction, MediaDirection::SendOnly);
        // Both holding: nothing flows.
        let offer = BARESIP_OFFER.replace("a=sendrecv", "a=sendonly");
        let (sd, _) = answer(&offer, MediaDirection::SendOnly);
        assert_eq!(sd.media[0].direction(), Some(MediaDirection::Inactive));
    }

    #[test]
    fn media_level_direction_and_connection_win_over_session_level() {
        let offer = "v=0\r\no=- 1 1 IN IP4 10.0.0.5\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\na=inactive\r\n\
m=audio 6000 RTP/AVP 0\r\nc=IN IP4 10.0.0.6\r\na=sendrecv\r\n";
        let (_, neg) = answer(offer, MediaDirection::SendRecv);
        assert_eq!(neg.local_direction, MediaDirection::SendRecv);
        assert_eq!(neg.remote_rtp, sock("10.0.0.6:6000"));
        // Session-level values apply when the media section says nothing.
        let offer =
            "v=0\r\nc=IN IP4 10.0.0.5\r\na=sendonly\r\na=ptime:30\r\nm=audio 6000 RTP/AVP 0\r\n";
        let (_, neg) = answer(offer, MediaDirection::SendRecv);
        assert_eq!(neg.local_direction, MediaDirection::RecvOnly);
        assert_eq!(neg.ptime, Some(30));
        assert_eq!(neg.remote_rtp, sock("10.0.0.5:6000"));
    }

    // --- addresses -----------------------------------------------------------------------------

    #[test]
    fn ipv6_offer_gives_ipv6_remote_addresses() {
        let offer = "v=0\r\no=- 1 1 IN IP6 2001:db8::1\r\ns=-\r\nc=IN IP6 2001:db8::1\r\nt=0 0\r\n\
m=audio 6000 RTP/AVP 0\r\n";
        let (_, neg) = answer(offer, MediaDirection::SendRecv);
        assert_eq!(neg.remote_rtp, sock("[2001:db8::1]:6000"));
        assert_eq!(neg.remote_rtcp, sock("[2001:db8::1]:6001"));
    }

    #[test]
    fn rtcp_attribute_sets_remote_rtcp() {
        let offer = "v=0\r\nc=IN IP4 10.0.0.5\r\nm=audio 6000 RTP/AVP 0\r\na=rtcp:7000\r\n";
        assert_eq!(
            answer(offer, MediaDirection::SendRecv).1.remote_rtcp,
            sock("10.0.0.5:7000")
        );
        let offer =
            "v=0\r\nc=IN IP4 10.0.0.5\r\nm=audio 6000 RTP/AVP 0\r\na=rtcp:7000 IN IP4 10.0.0.9\r\n";
        assert_eq!(
            answer(offer, MediaDirection::SendRecv).1.remote_rtcp,
            sock("10.0.0.9:7000")
        );
        let offer = "v=0\r\nc=IN IP4 10.0.0.5\r\nm=audio 65535 RTP/AVP 0\r\n";
        assert_eq!(answer(offer, MediaDirection::SendRecv).1.remote_rtcp, None);
    }

    #[test]
    fn rtcp_mux_offer_is_accepted_and_rtcp_goes_to_the_rtp_port() {
        let offer = "v=0\r\nc=IN IP4 10.0.0.5\r\nm=audio 6000 RTP/AVP 0\r\na=rtcp:9 IN IP4 0.0.0.0\r\n\
a=rtcp-mux\r\na=mid:audio\r\n";
        let (sd, neg) = answer(offer, MediaDirection::SendRecv);
        assert!(neg.rtcp_mux);
        assert_eq!(neg.remote_rtcp, sock("10.0.0.5:6000"));
        assert!(sd.media[0].rtcp_mux());
        assert_eq!(sd.media[0].attribute("mid"), Some("audio"));
    }

    #[test]
    fn host_name_connection_gives_no_remote_address() {
        let offer = "v=0\r\nc=IN IP4 pbx.example.com\r\nm=audio 6000 RTP/AVP 0\r\n";
        let (_, neg) = answer(offer, MediaDirection::SendRecv);
        assert_eq!(neg.remote_rtp, None);
        let c = Connection {
            net_type: "IN".into(),
            addr_type: "IP4".into(),
            address: "224.2.1.1/127/3".into(),
        };
        assert_eq!(c.ip(), Some(IpAddr::V4(Ipv4Addr::new(224, 2, 1, 1))));
    }

    // --- reading answers to our offer ----------------------------------------------------------

    #[test]
    fn twinkle_answer_gives_pcma_sendrecv() {
        let neg = negotiate_answer(&local(), &parse(TWINKLE_ANSWER)).expect("negotiated");
        assert_eq!(neg.codec, CodecSpec::pcma());
        assert_eq!(
            neg.dtmf.as_ref().map(|d| (d.pt, d.clock)),
            Some((101, 8000))
        );
        assert_eq!(neg.remote_rtp, sock("127.0.0.1:20200"));
        assert_eq!(neg.remote_rtcp, sock("127.0.0.1:20201"));
        assert_eq!(neg.local_direction, MediaDirection::SendRecv);
        assert_eq!(neg.ptime, Some(20));
    }

    #[test]
    fn answer_payload_numbers_are_the_ones_we_send_with() {
        let answer = "v=0\r\nc=IN IP4 10.0.0.5\r\nm=audio 6000 RTP/AVP 98 97\r\n\
a=rtpmap:98 opus/48000/2\r\na=fmtp:98 maxplaybackrate=16000\r\na=rtpmap:97 telephone-event/48000\r\n";
        let neg = negotiate_answer(&local(), &parse(answer)).expect("negotiated");
        assert_eq!(
            (neg.codec.pt, neg.codec.fmtp.as_deref()),
            (98, Some("maxplaybackrate=16000"))
        );
        assert_eq!(neg.dtmf.map(|d| d.pt), Some(97));
    }

    #[test]
    fn recvonly_answer_means_we_only_send() {
        let answer = TWINKLE_ANSWER.replace("a=ptime:20", "a=recvonly");
        let neg = negotiate_answer(&local(), &parse(&answer)).expect("negotiated");
        assert_eq!(neg.local_direction, MediaDirection::SendOnly);
        assert_eq!(neg.remote_direction, MediaDirection::RecvOnly);
        assert_eq!(
            neg.local_direction.intersect(MediaDirection::SendOnly),
            MediaDirection::SendOnly
        );
    }

    #[test]
    fn rejected_or_foreign_answers_give_no_common_codec() {
        let port_zero = TWINKLE_ANSWER.replace("m=audio 20200", "m=audio 0");
        assert_eq!(
            negotiate_answer(&local(), &parse(&port_zero)),
            Err(SdpError::NoCommonCodec)
        );
        let g729 = "v=0\r\nc=IN IP4 10.0.0.5\r\nm=audio 6000 RTP/AVP 18\r\n";
        assert_eq!(
            negotiate_answer(&local(), &parse(g729)),
            Err(SdpError::NoCommonCodec)
        );
        let mut only_opus = local();
        only_opus.codecs = vec![CodecSpec::opus()];
        assert_eq!(
            negotiate_answer(&only_opus, &parse(TWINKLE_ANSWER)),
            Err(SdpError::NoCommonCodec)
        );
    }

    #[test]
    fn savp_answer_passes_its_crypto_out() {
        let neg = negotiate_answer(&local(), &parse(BARESIP_SAVP)).expect("negotiated");
        assert!(neg.srtp);
        assert_eq!(neg.srtp_crypto.len(), 1);
        assert_eq!(neg.codec, CodecSpec::pcmu());
    }
}
