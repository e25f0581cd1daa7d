//! One classic-SIP call's RTP stream, sans-IO: [`RtpSender`] builds packets (audio and RFC 4733
//! telephone-events), [`RtpReceiver`] validates what arrives, tracks the remote source (RFC 3550
//! A.1 sequence state, A.8 jitter) and reports DTMF digits, and [`RtpSession`] ties the two to
//! RTCP (compound SR/RR + SDES CNAME, BYE; RTT from LSR/DLSR) paced by an [`RtcpTimer`].
//! Time is always passed in.
//!
//! The RTP header is read here, from the RFC 3550 lengths, rather than with rtc-rtp's
//! `Header::unmarshal`: that one stops at a reserved one-byte extension ID (15) and lets an
//! element run past its block, which moves the payload boundary. RTCP is rtc-rtcp's.

use bytes::Bytes;
use rtc_rtcp::goodbye::Goodbye;
use rtc_rtcp::packet::Packet as RtcpPacket;
use rtc_rtcp::receiver_report::ReceiverReport;
use rtc_rtcp::reception_report::ReceptionReport;
use rtc_rtcp::sender_report::SenderReport;
use rtc_rtcp::source_description::{
    SdesType, SourceDescription, SourceDescriptionChunk, SourceDescriptionItem,
};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// RFC 3550 A.1 constants.
const MAX_DROPOUT: u16 = 3000;
const MAX_MISORDER: u16 = 100;
const MIN_SEQUENTIAL: u8 = 2;
const RTP_SEQ_MOD: u32 = 1 << 16;
/// Seconds from 1900-01-01 (NTP era 0) to 1970-01-01.
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RtpError {
    #[error("RTP packet too short ({0} bytes)")]
    TooShort(usize),
    #[error("RTP version {0}, expected 2")]
    Version(u8),
    #[error("RTP header (CSRC list or extension) runs past the datagram")]
    TruncatedHeader,
    #[error("bad RTP padding length")]
    Padding,
    #[error("payload type {0} was not negotiated")]
    PayloadType(u8),
    #[error("malformed RTCP: {0}")]
    Rtcp(String),
}

// ---------------------------------------------------------------------------------------------
// Time

/// The 64-bit NTP timestamp (32.32 fixed point since 1900) of a wall-clock time.
pub fn ntp_from_system_time(t: SystemTime) -> u64 {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs().wrapping_add(NTP_UNIX_OFFSET);
    let frac = (u64::from(since.subsec_nanos()) << 32) / 1_000_000_000;
    (secs << 32) | frac
}

/// The middle 32 bits of an NTP timestamp (RFC 3550 "compact" 16.16 form, used by LSR).
pub fn ntp_compact(ntp: u64) -> u32 {
    (ntp >> 16) as u32
}

/// A duration in 1/65536 s units (DLSR, RTT arithmetic), saturating.
fn to_compact(d: Duration) -> u32 {
    let units = (d.as_nanos() << 16) / 1_000_000_000;
    u32::try_from(units).unwrap_or(u32::MAX)
}

fn from_compact(units: u32) -> Duration {
    Duration::from_nanos((u64::from(units) * 1_000_000_000) >> 16)
}

/// Maps the monotonic clock the session is driven with to NTP wall-clock time, anchored once.
#[derive(Debug, Clone, Copy)]
pub struct NtpClock {
    anchor: Instant,
    anchor_ntp: u64,
}

impl NtpClock {
    /// `wall` is the wall-clock time at `now` (normally `SystemTime::now()`).
    pub fn new(now: Instant, wall: SystemTime) -> NtpClock {
        NtpClock {
            anchor: now,
            anchor_ntp: ntp_from_system_time(wall),
        }
    }

    /// The NTP timestamp of `at` (instants before the anchor map to the anchor).
    pub fn ntp(&self, at: Instant) -> u64 {
        let d = at.saturating_duration_since(self.anchor);
        let frac = (d.as_nanos() << 32) / 1_000_000_000;
        self.anchor_ntp
            .wrapping_add(u64::try_from(frac).unwrap_or(u64::MAX))
    }
}

// ---------------------------------------------------------------------------------------------
// DTMF (RFC 4733)

/// The RFC 4733 event code of a DTMF key: 0-9, * (10), # (11), A-D (12-15).
pub fn dtmf_event_code(key: char) -> Option<u8> {
    match key {
        '0'..='9' => Some(key as u8 - b'0'),
        '*' => Some(10),
        '#' => Some(11),
        'A'..='D' => Some(key as u8 - b'A' + 12),
        'a'..='d' => Some(key as u8 - b'a' + 12),
        _ => None,
    }
}

/// The DTMF key of an RFC 4733 event code (events above 15 are not DTMF).
pub fn dtmf_key(code: u8) -> Option<char> {
    match code {
        0..=9 => Some(char::from(b'0' + code)),
        10 => Some('*'),
        11 => Some('#'),
        12..=15 => Some(char::from(b'A' + code - 12)),
        _ => None,
    }
}

/// One telephone-event packet to send `at` after the first one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DtmfPacket {
    pub at: Duration,
    pub bytes: Vec<u8>,
}

/// A digit the peer pressed, reported once when its event ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DtmfDigit {
    pub key: char,
    pub duration: Duration,
    /// Power level in -dBm0 (0..=63).
    pub volume: u8,
}

// ---------------------------------------------------------------------------------------------
// Sender

fn rtp_header(marker: bool, pt: u8, seq: u16, ts: u32, ssrc: u32, cap: usize) -> Vec<u8> {
    let mut p = Vec::with_capacity(12 + cap);
    p.push(0x80);
    p.push((u8::from(marker) << 7) | (pt & 0x7f));
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p
}

/// Our outgoing stream: SSRC, sequence number and timestamp, and the SR counters.
#[derive(Debug, Clone)]
pub struct RtpSender {
    ssrc: u32,
    seq: u16,
    timestamp: u32,
    clock_rate: u32,
    packets: u32,
    octets: u32,
    /// RTP timestamp and instant of the last packet sent (the SR maps "now" from it).
    last_sent: Option<(u32, Instant)>,
    sent_since_report: bool,
}

impl RtpSender {
    /// Random SSRC, initial sequence number and timestamp (RFC 3550 5.1).
    pub fn new(clock_rate: u32) -> RtpSender {
        RtpSender::with_initial(rand::random(), rand::random(), rand::random(), clock_rate)
    }

    /// Fixed initial values (tests, or keeping an SSRC across a re-INVITE).
    pub fn with_initial(ssrc: u32, seq: u16, timestamp: u32, clock_rate: u32) -> RtpSender {
        RtpSender {
            ssrc,
            seq,
            timestamp,
            clock_rate: clock_rate.max(1),
            packets: 0,
            octets: 0,
            last_sent: None,
            sent_since_report: false,
        }
    }

    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// The sequence number the next packet gets.
    pub fn next_sequence(&self) -> u16 {
        self.seq
    }

    /// The timestamp the next packet gets.
    pub fn next_timestamp(&self) -> u32 {
        self.timestamp
    }

    pub fn packets_sent(&self) -> u32 {
        self.packets
    }

    pub fn octets_sent(&self) -> u32 {
        self.octets
    }

    /// One RTP packet for a frame, then advances the sequence number by one and the timestamp
    /// by `samples_per_frame`. `now` feeds the next Sender Report.
    pub fn packetize(
        &mut self,
        payload_type: u8,
        samples_per_frame: u32,
        payload: &[u8],
        marker: bool,
        now: Instant,
    ) -> Vec<u8> {
        let mut p = rtp_header(
            marker,
            payload_type,
            self.seq,
            self.timestamp,
            self.ssrc,
            payload.len(),
        );
        p.extend_from_slice(payload);
        self.count(payload.len(), now);
        self.timestamp = self.timestamp.wrapping_add(samples_per_frame);
        p
    }

    /// Advances the timestamp without sending (a frame not sent, e.g. while on hold).
    pub fn skip(&mut self, samples: u32) {
        self.timestamp = self.timestamp.wrapping_add(samples);
    }

    fn count(&mut self, payload_len: usize, now: Instant) {
        self.seq = self.seq.wrapping_add(1);
        self.packets = self.packets.wrapping_add(1);
        self.octets = self
            .octets
            .wrapping_add(u32::try_from(payload_len).unwrap_or(u32::MAX));
        self.last_sent = Some((self.timestamp, now));
        self.sent_since_report = true;
    }

    /// The RFC 4733 packets for one key press: a start packet (marker set), continuations
    /// every `packet_samples`, then three end packets (E bit) with the final duration, all
    /// carrying the event's start timestamp. Send each `at` after the first and send no audio
    /// in between; afterwards audio resumes at start + `duration_samples`. `None` for a key
    /// that is not DTMF. `volume` is in -dBm0 (10 is usual).
    pub fn dtmf(
        &mut self,
        event_payload_type: u8,
        key: char,
        duration_samples: u16,
        packet_samples: u16,
        volume: u8,
        now: Instant,
    ) -> Option<Vec<DtmfPacket>> {
        let code = dtmf_event_code(key)?;
        let step = packet_samples.max(1);
        let total = duration_samples.max(step);
        let start_ts = self.timestamp;
        let mut out = Vec::new();
        let make = |this: &mut RtpSender, duration: u16, end: bool, marker: bool| {
            let mut p = rtp_header(marker, event_payload_type, this.seq, start_ts, this.ssrc, 4);
            p.push(code);
            p.push((u8::from(end) << 7) | (volume & 0x3f));
            p.extend_from_slice(&duration.to_be_bytes());
            this.count(4, now);
            p
        };
        let rate = u64::from(self.clock_rate);
        let offset = |samples: u16| Duration::from_micros(u64::from(samples) * 1_000_000 / rate);
        let mut d = step;
        while d < total {
            let bytes = make(self, d, false, d == step);
            out.push(DtmfPacket {
                at: offset(d - step),
                bytes,
            });
            d = d.saturating_add(step);
        }
        for _ in 0..3 {
            let bytes = make(self, total, true, out.is_empty());
            out.push(DtmfPacket {
                at: offset(total.saturating_sub(step)),
                bytes,
            });
        }
        self.timestamp = start_ts.wrapping_add(u32::from(total));
        Some(out)
    }
}

// ---------------------------------------------------------------------------------------------
// Receiver

/// A validated RTP packet's fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpPacket {
    pub marker: bool,
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub csrc: Vec<u32>,
    /// The payload, header extension and padding removed.
    pub payload: Bytes,
}

impl RtpPacket {
    /// Parses and validates a datagram: version 2, CSRC list and extension inside the
    /// datagram, padding length 1..=payload.
    pub fn parse(data: &[u8]) -> Result<RtpPacket, RtpError> {
        if data.len() < 12 {
            return Err(RtpError::TooShort(data.len()));
        }
        let version = data[0] >> 6;
        if version != 2 {
            return Err(RtpError::Version(version));
        }
        let padding = data[0] & 0x20 != 0;
        let extension = data[0] & 0x10 != 0;
        let cc = usize::from(data[0] & 0x0f);
        let mut offset = 12 + 4 * cc;
        if data.len() < offset {
            return Err(RtpError::TruncatedHeader);
        }
        let csrc = data[12..offset]
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        if extension {
            let len_bytes = data
                .get(offset + 2..offset + 4)
                .ok_or(RtpError::TruncatedHeader)?;
            let words = usize::from(u16::from_be_bytes([len_bytes[0], len_bytes[1]]));
            offset += 4 + 4 * words;
            if data.len() < offset {
                return Err(RtpError::TruncatedHeader);
            }
        }
        let mut end = data.len();
        if padding {
            let pad = usize::from(data[end - 1]);
            if pad == 0 || pad > end - offset {
                return Err(RtpError::Padding);
            }
            end -= pad;
        }
        Ok(RtpPacket {
            marker: data[1] & 0x80 != 0,
            payload_type: data[1] & 0x7f,
            sequence: u16::from_be_bytes([data[2], data[3]]),
            timestamp: u32::from_be_bytes([data[4], data[5], data[6], data[7]]),
            ssrc: u32::from_be_bytes([data[8], data[9], data[10], data[11]]),
            csrc,
            payload: Bytes::copy_from_slice(&data[offset..end]),
        })
    }
}

/// Reception statistics for the current remote source.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReceiveStats {
    /// Valid packets counted (duplicates excluded).
    pub packets: u64,
    /// Payload octets of those packets.
    pub bytes: u64,
    /// Expected from the extended sequence numbers (RFC 3550 A.3).
    pub expected: u64,
    /// expected − received; negative when duplicates slipped past detection.
    pub lost: i64,
    pub duplicates: u64,
    /// Interarrival jitter in timestamp units (A.8).
    pub jitter: u32,
    /// Extended highest sequence number received (cycles << 16 | max).
    pub extended_max: u32,
    /// How many times the remote SSRC changed.
    pub ssrc_changes: u32,
}

/// What one received datagram meant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Received {
    /// Audio for the jitter buffer (`None` for telephone-events and duplicates).
    pub media: Option<RtpPacket>,
    /// A digit whose event just ended (reported once per event).
    pub dtmf: Option<DtmfDigit>,
    /// The first packet of a new remote SSRC: reset the decoder and jitter buffer.
    pub ssrc_changed: bool,
    pub duplicate: bool,
}

#[derive(Debug, Clone)]
struct Source {
    ssrc: u32,
    max_seq: u16,
    cycles: u32,
    base_seq: u32,
    bad_seq: u32,
    probation: u8,
    received: u64,
    bytes: u64,
    duplicates: u64,
    expected_prior: u64,
    received_prior: u64,
    /// Bit i set: extended_max − i was received (i < 128).
    recent: u128,
    transit: Option<i64>,
    jitter: f64,
    /// Compact NTP of the last SR from this source and when it arrived.
    last_sr: Option<(u32, Instant)>,
    dtmf: Option<EventState>,
}

#[derive(Debug, Clone, Copy)]
struct EventState {
    timestamp: u32,
    code: u8,
    duration: u16,
    volume: u8,
    reported: bool,
}

impl Source {
    fn new(ssrc: u32, seq: u16) -> Source {
        let mut s = Source {
            ssrc,
            max_seq: 0,
            cycles: 0,
            base_seq: 0,
            bad_seq: 0,
            probation: MIN_SEQUENTIAL,
            received: 0,
            bytes: 0,
            duplicates: 0,
            expected_prior: 0,
            received_prior: 0,
            recent: 0,
            transit: None,
            jitter: 0.0,
            last_sr: None,
            dtmf: None,
        };
        s.init_seq(seq);
        s.max_seq = seq.wrapping_sub(1);
        s
    }

    fn init_seq(&mut self, seq: u16) {
        self.base_seq = u32::from(seq);
        self.max_seq = seq;
        self.bad_seq = RTP_SEQ_MOD + 1;
        self.cycles = 0;
        self.received = 0;
        self.bytes = 0;
        self.received_prior = 0;
        self.expected_prior = 0;
        self.recent = 1;
    }

    fn extended_max(&self) -> u32 {
        self.cycles.wrapping_add(u32::from(self.max_seq))
    }

    fn expected(&self) -> u64 {
        let ext = u64::from(self.cycles) + u64::from(self.max_seq);
        (ext + 1).saturating_sub(u64::from(self.base_seq))
    }

    /// RFC 3550 A.1 `update_seq`, with a 128-packet window to tell duplicates from late
    /// packets. Returns (valid, duplicate).
    fn update_seq(&mut self, seq: u16) -> (bool, bool) {
        let udelta = seq.wrapping_sub(self.max_seq);
        if self.probation > 0 {
            if seq == self.max_seq.wrapping_add(1) {
                self.probation -= 1;
                self.max_seq = seq;
                if self.probation == 0 {
                    self.init_seq(seq);
                    self.received += 1;
                    return (true, false);
                }
            } else {
                self.probation = MIN_SEQUENTIAL - 1;
                self.max_seq = seq;
            }
            return (false, false);
        }
        if udelta == 0 {
            self.duplicates += 1;
            return (false, true);
        }
        if udelta < MAX_DROPOUT {
            if seq < self.max_seq {
                self.cycles = self.cycles.wrapping_add(RTP_SEQ_MOD);
            }
            self.max_seq = seq;
            self.recent = if udelta >= 128 {
                1
            } else {
                (self.recent << udelta) | 1
            };
        } else if u32::from(udelta) <= RTP_SEQ_MOD - u32::from(MAX_MISORDER) {
            if u32::from(seq) == self.bad_seq {
                // Two sequential packets after a big jump: the source restarted.
                self.init_seq(seq);
            } else {
                self.bad_seq = (u32::from(seq) + 1) & (RTP_SEQ_MOD - 1);
                return (false, false);
            }
        } else {
            // Late (reordered) or duplicate.
            let back = self.max_seq.wrapping_sub(seq);
            if back < 128 {
                let bit = 1u128 << back;
                if self.recent & bit != 0 {
                    self.duplicates += 1;
                    return (false, true);
                }
                self.recent |= bit;
            }
        }
        self.received += 1;
        (true, false)
    }

    fn update_jitter(&mut self, arrival: i64, timestamp: u32) {
        let transit = arrival.wrapping_sub(i64::from(timestamp));
        if let Some(prev) = self.transit {
            // Both are modulo 2^32 in the RFC; compare as 32-bit differences.
            let d = f64::from((transit.wrapping_sub(prev) as i32).unsigned_abs());
            self.jitter += (d - self.jitter) / 16.0;
        }
        self.transit = Some(transit);
    }

    /// RFC 3550 6.4.1 / A.3 report block about this source.
    fn report_block(&mut self, now: Instant) -> ReceptionReport {
        let expected = self.expected();
        let lost = expected as i64 - self.received as i64;
        let expected_interval = expected.saturating_sub(self.expected_prior);
        let received_interval = self.received.saturating_sub(self.received_prior);
        self.expected_prior = expected;
        self.received_prior = self.received;
        let lost_interval = expected_interval as i64 - received_interval as i64;
        let fraction_lost = if expected_interval == 0 || lost_interval <= 0 {
            0
        } else {
            u8::try_from(((lost_interval as u64) << 8) / expected_interval).unwrap_or(255)
        };
        let (last_sender_report, delay) = match self.last_sr {
            Some((lsr, at)) => (lsr, to_compact(now.saturating_duration_since(at))),
            None => (0, 0),
        };
        ReceptionReport {
            ssrc: self.ssrc,
            fraction_lost,
            total_lost: (lost.clamp(-0x80_0000, 0x7f_ffff) as i32 as u32) & 0xff_ffff,
            last_sequence_number: self.extended_max(),
            jitter: self.jitter as u32,
            last_sender_report,
            delay,
        }
    }
}

/// The remote stream: validation, statistics, DTMF.
#[derive(Debug, Clone)]
pub struct RtpReceiver {
    clock_rate: u32,
    payload_types: Vec<u8>,
    event_payload_type: Option<u8>,
    epoch: Option<Instant>,
    source: Option<Source>,
    ssrc_changes: u32,
}

impl RtpReceiver {
    /// `payload_types`: the negotiated audio formats; `event_payload_type`: telephone-event's.
    pub fn new(clock_rate: u32, payload_types: &[u8], event_payload_type: Option<u8>) -> Self {
        RtpReceiver {
            clock_rate: clock_rate.max(1),
            payload_types: payload_types.to_vec(),
            event_payload_type,
            epoch: None,
            source: None,
            ssrc_changes: 0,
        }
    }

    /// After a re-INVITE changed the formats.
    pub fn set_payload_types(&mut self, payload_types: &[u8], event_payload_type: Option<u8>) {
        self.payload_types = payload_types.to_vec();
        self.event_payload_type = event_payload_type;
    }

    pub fn remote_ssrc(&self) -> Option<u32> {
        self.source.as_ref().map(|s| s.ssrc)
    }

    pub fn stats(&self) -> ReceiveStats {
        let Some(s) = &self.source else {
            return ReceiveStats {
                ssrc_changes: self.ssrc_changes,
                ..ReceiveStats::default()
            };
        };
        let expected = s.expected();
        ReceiveStats {
            packets: s.received,
            bytes: s.bytes,
            expected,
            lost: expected as i64 - s.received as i64,
            duplicates: s.duplicates,
            jitter: s.jitter as u32,
            extended_max: s.extended_max(),
            ssrc_changes: self.ssrc_changes,
        }
    }

    /// Arrival time in timestamp units since the first packet (A.8 needs only differences).
    fn arrival(&mut self, now: Instant) -> i64 {
        let epoch = *self.epoch.get_or_insert(now);
        let d = now.saturating_duration_since(epoch);
        let units = d.as_nanos() * u128::from(self.clock_rate) / 1_000_000_000;
        i64::try_from(units).unwrap_or(i64::MAX)
    }

    /// One datagram from the media socket.
    pub fn receive(&mut self, datagram: &[u8], now: Instant) -> Result<Received, RtpError> {
        let packet = RtpPacket::parse(datagram)?;
        let is_event = Some(packet.payload_type) == self.event_payload_type;
        if !is_event && !self.payload_types.contains(&packet.payload_type) {
            return Err(RtpError::PayloadType(packet.payload_type));
        }
        let arrival = self.arrival(now);
        let mut out = Received::default();
        let source = match &mut self.source {
            Some(s) if s.ssrc == packet.ssrc => s,
            slot => {
                if slot.is_some() {
                    self.ssrc_changes += 1;
                    out.ssrc_changed = true;
                }
                slot.insert(Source::new(packet.ssrc, packet.sequence))
            }
        };
        let (valid, duplicate) = source.update_seq(packet.sequence);
        if duplicate {
            out.duplicate = true;
            return Ok(out);
        }
        if valid {
            source.bytes += packet.payload.len() as u64;
        }
        if is_event {
            out.dtmf = receive_event(source, &packet, self.clock_rate);
        } else {
            source.update_jitter(arrival, packet.timestamp);
            // An event whose end packets were all lost ends when audio resumes.
            out.dtmf = finish_pending_event(source, self.clock_rate);
            out.media = Some(packet);
        }
        Ok(out)
    }
}

fn digit_of(e: &EventState, clock_rate: u32) -> Option<DtmfDigit> {
    Some(DtmfDigit {
        key: dtmf_key(e.code)?,
        duration: Duration::from_micros(
            u64::from(e.duration) * 1_000_000 / u64::from(clock_rate.max(1)),
        ),
        volume: e.volume,
    })
}

fn finish_pending_event(source: &mut Source, clock_rate: u32) -> Option<DtmfDigit> {
    let e = source.dtmf.as_mut()?;
    if e.reported {
        return None;
    }
    e.reported = true;
    digit_of(e, clock_rate)
}

fn receive_event(source: &mut Source, packet: &RtpPacket, clock_rate: u32) -> Option<DtmfDigit> {
    let p = &packet.payload;
    if p.len() < 4 {
        return None;
    }
    let code = p[0];
    let end = p[1] & 0x80 != 0;
    let volume = p[1] & 0x3f;
    let duration = u16::from_be_bytes([p[2], p[3]]);
    match &mut source.dtmf {
        Some(e) if e.timestamp == packet.timestamp && e.code == code => {
            e.duration = e.duration.max(duration);
            if end && !e.reported {
                e.reported = true;
                return digit_of(e, clock_rate);
            }
            None
        }
        slot => {
            // A new event; an unfinished previous one (its ends all lost) is reported now.
            let previous = match slot {
                Some(prev) if !prev.reported => digit_of(prev, clock_rate),
                _ => None,
            };
            *slot = Some(EventState {
                timestamp: packet.timestamp,
                code,
                duration,
                volume,
                reported: end && previous.is_none(),
            });
            if previous.is_some() {
                return previous;
            }
            if end {
                slot.as_ref().and_then(|e| digit_of(e, clock_rate))
            } else {
                None
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// RTCP

/// RFC 3550 6.2, simplified for a two-party call: every ~5 s, randomised ×0.5–1.5; the first
/// report after half that.
#[derive(Debug, Clone, Copy)]
pub struct RtcpTimer {
    next: Instant,
}

/// The nominal RTCP interval.
pub const RTCP_INTERVAL: Duration = Duration::from_secs(5);

impl RtcpTimer {
    pub fn new(now: Instant) -> RtcpTimer {
        RtcpTimer {
            next: now + Self::interval(rand::random::<f64>()) / 2,
        }
    }

    /// The interval for a uniform random `r` in [0, 1).
    pub fn interval(r: f64) -> Duration {
        RTCP_INTERVAL.mul_f64(0.5 + r.clamp(0.0, 1.0))
    }

    /// When the next report is due.
    pub fn next_send(&self) -> Instant {
        self.next
    }

    /// True when a report is due at `now`; then schedules the next one.
    pub fn poll(&mut self, now: Instant) -> bool {
        if now < self.next {
            return false;
        }
        self.next = now + Self::interval(rand::random::<f64>());
        true
    }
}

/// What the peer told us in an RTCP compound packet.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RtcpInfo {
    /// The peer's Sender Report: (its packet count, octet count).
    pub sender_counts: Option<(u32, u32)>,
    /// The peer's report about our stream.
    pub report: Option<RemoteReport>,
    /// The peer sent BYE for its SSRC.
    pub bye: bool,
    /// SDES CNAME, if present.
    pub cname: Option<String>,
}

/// A report block about our stream.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RemoteReport {
    /// Fraction lost since its previous report, 0.0..=1.0.
    pub fraction_lost: f64,
    pub cumulative_lost: i32,
    pub extended_highest_seq: u32,
    /// In timestamp units.
    pub jitter: u32,
    /// Round-trip time from LSR/DLSR, when the peer has seen one of our SRs.
    pub rtt: Option<Duration>,
}

/// One call's RTP session: our stream, theirs, and RTCP.
#[derive(Debug, Clone)]
pub struct RtpSession {
    pub sender: RtpSender,
    pub receiver: RtpReceiver,
    cname: String,
    clock: NtpClock,
}

impl RtpSession {
    pub fn new(sender: RtpSender, receiver: RtpReceiver, cname: &str, clock: NtpClock) -> Self {
        RtpSession {
            sender,
            receiver,
            cname: cname.to_string(),
            clock,
        }
    }

    fn report_blocks(&mut self, now: Instant) -> Vec<ReceptionReport> {
        self.receiver
            .source
            .as_mut()
            .filter(|s| s.probation == 0)
            .map(|s| vec![s.report_block(now)])
            .unwrap_or_default()
    }

    fn reports(&mut self, now: Instant) -> Vec<Box<dyn RtcpPacket>> {
        let reports = self.report_blocks(now);
        let first: Box<dyn RtcpPacket> = if self.sender.sent_since_report {
            self.sender.sent_since_report = false;
            let ntp = self.clock.ntp(now);
            // The RTP timestamp that corresponds to `now`, from the last packet sent.
            let rtp_time = match self.sender.last_sent {
                Some((ts, at)) => {
                    let d = now.saturating_duration_since(at);
                    let units = d.as_nanos() * u128::from(self.sender.clock_rate) / 1_000_000_000;
                    ts.wrapping_add(units as u32)
                }
                None => self.sender.timestamp,
            };
            Box::new(SenderReport {
                ssrc: self.sender.ssrc,
                ntp_time: ntp,
                rtp_time,
                packet_count: self.sender.packets,
                octet_count: self.sender.octets,
                reports,
                profile_extensions: Bytes::new(),
            })
        } else {
            Box::new(ReceiverReport {
                ssrc: self.sender.ssrc,
                reports,
                profile_extensions: Bytes::new(),
            })
        };
        let sdes = SourceDescription {
            chunks: vec![SourceDescriptionChunk {
                source: self.sender.ssrc,
                items: vec![SourceDescriptionItem {
                    sdes_type: SdesType::SdesCname,
                    text: Bytes::copy_from_slice(self.cname.as_bytes()),
                }],
            }],
        };
        vec![first, Box::new(sdes)]
    }

    /// The compound report due now: SR (if we sent RTP since the last report) or RR, with a
    /// block about the remote source, then SDES CNAME.
    pub fn build_report(&mut self, now: Instant) -> Result<Vec<u8>, RtpError> {
        let packets = self.reports(now);
        marshal(&packets)
    }

    /// The report plus BYE, for hang-up.
    pub fn build_bye(&mut self, now: Instant) -> Result<Vec<u8>, RtpError> {
        let mut packets = self.reports(now);
        packets.push(Box::new(Goodbye {
            sources: vec![self.sender.ssrc],
            reason: Bytes::new(),
        }));
        marshal(&packets)
    }

    /// An RTCP datagram from the peer (already SRTCP-unprotected).
    pub fn receive_rtcp(&mut self, datagram: &[u8], now: Instant) -> Result<RtcpInfo, RtpError> {
        if datagram.len() < 4 || datagram[0] >> 6 != 2 {
            return Err(RtpError::Rtcp("not RTCP version 2".into()));
        }
        let mut buf = datagram;
        let packets =
            rtc_rtcp::packet::unmarshal(&mut buf).map_err(|e| RtpError::Rtcp(e.to_string()))?;
        let mut info = RtcpInfo::default();
        let now_compact = ntp_compact(self.clock.ntp(now));
        let our_ssrc = self.sender.ssrc;
        for p in &packets {
            let any = p.as_any();
            let blocks: &[ReceptionReport] = if let Some(sr) = any.downcast_ref::<SenderReport>() {
                info.sender_counts = Some((sr.packet_count, sr.octet_count));
                if let Some(s) = self.receiver.source.as_mut().filter(|s| s.ssrc == sr.ssrc) {
                    s.last_sr = Some((ntp_compact(sr.ntp_time), now));
                }
                &sr.reports
            } else if let Some(rr) = any.downcast_ref::<ReceiverReport>() {
                &rr.reports
            } else {
                if let Some(bye) = any.downcast_ref::<Goodbye>()
                    && self
                        .receiver
                        .remote_ssrc()
                        .is_none_or(|r| bye.sources.contains(&r))
                {
                    info.bye = true;
                }
                if let Some(sdes) = any.downcast_ref::<SourceDescription>() {
                    info.cname = sdes
                        .chunks
                        .iter()
                        .flat_map(|c| &c.items)
                        .find(|i| i.sdes_type == SdesType::SdesCname)
                        .map(|i| String::from_utf8_lossy(&i.text).into_owned());
                }
                &[]
            };
            if let Some(b) = blocks.iter().find(|b| b.ssrc == our_ssrc) {
                info.report = Some(remote_report(b, now_compact));
            }
        }
        Ok(info)
    }
}

fn marshal(packets: &[Box<dyn RtcpPacket>]) -> Result<Vec<u8>, RtpError> {
    rtc_rtcp::packet::marshal(packets)
        .map(|b| b.to_vec())
        .map_err(|e| RtpError::Rtcp(e.to_string()))
}

fn remote_report(b: &ReceptionReport, now_compact: u32) -> RemoteReport {
    // 24-bit two's complement.
    let lost = ((b.total_lost & 0xff_ffff) << 8) as i32 >> 8;
    let rtt = (b.last_sender_report != 0).then(|| {
        let units = now_compact
            .wrapping_sub(b.last_sender_report)
            .wrapping_sub(b.delay);
        // A "negative" RTT (clock glitch, bogus DLSR) reads as zero.
        if units > u32::MAX / 2 {
            Duration::ZERO
        } else {
            from_compact(units)
        }
    });
    RemoteReport {
        fraction_lost: f64::from(b.fraction_lost) / 256.0,
        cumulative_lost: lost,
        extended_highest_seq: b.last_sequence_number,
        jitter: b.jitter,
        rtt,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PCMU: u8 = 0;
    const TE: u8 = 101;

    fn t0() -> Instant {
        Instant::now()
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn receiver() -> RtpReceiver {
        RtpReceiver::new(8000, &[PCMU, 8], Some(TE))
    }

    /// A PCMU packet from SSRC 0xabc with the given sequence number (timestamp 160/packet).
    fn pkt(seq: u16) -> Vec<u8> {
        let mut s = RtpSender::with_initial(0xabc, seq, u32::from(seq) * 160, 8000);
        s.packetize(PCMU, 160, &[0xff; 160], false, t0())
    }

    #[test]
    fn session_types_are_send() {
        fn is_send<T: Send>() {}
        is_send::<RtpSession>();
        is_send::<RtcpTimer>();
        is_send::<RtpPacket>();
    }

    #[test]
    fn packetize_writes_the_header_and_advances_seq_and_timestamp() {
        let now = t0();
        let mut s = RtpSender::with_initial(0x1122_3344, 65535, u32::MAX - 80, 8000);
        let a = s.packetize(PCMU, 160, &[1, 2, 3], true, now);
        assert_eq!(
            a,
            [
                0x80, 0x80, 0xff, 0xff, 0xff, 0xff, 0xff, 0xaf, 0x11, 0x22, 0x33, 0x44, 1, 2, 3
            ]
        );
        let b = RtpPacket::parse(&s.packetize(8, 160, &[9], false, now)).unwrap();
        assert_eq!((b.sequence, b.timestamp, b.marker), (0, 79, false));
        assert_eq!(b.payload_type, 8);
        assert_eq!((s.packets_sent(), s.octets_sent()), (2, 4));
    }

    #[test]
    fn new_senders_pick_random_ssrc_sequence_and_timestamp() {
        let a = RtpSender::new(8000);
        let b = RtpSender::new(8000);
        assert!(
            a.ssrc() != b.ssrc()
                || a.next_sequence() != b.next_sequence()
                || a.next_timestamp() != b.next_timestamp()
        );
    }

    #[test]
    fn parse_skips_csrcs_extension_and_padding() {
        let mut p = vec![0xb2, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9]; // V2 P X CC=2
        p.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 2]); // CSRCs
        p.extend_from_slice(&[0xbe, 0xde, 0, 1, 0xf0, 0xaa, 0xbb, 0xcc]); // ext, reserved id 15
        p.extend_from_slice(b"abc");
        p.extend_from_slice(&[0, 0, 3]); // padding 3
        let r = RtpPacket::parse(&p).unwrap();
        assert_eq!(r.csrc, vec![1, 2]);
        assert_eq!(&r.payload[..], b"abc");
        assert_eq!(r.ssrc, 9);
    }

    #[test]
    fn parse_rejects_bad_version_padding_and_truncated_headers() {
        let mut good = pkt(1);
        assert!(RtpPacket::parse(&good).is_ok());
        good[0] = 0x40;
        assert_eq!(RtpPacket::parse(&good), Err(RtpError::Version(1)));
        let mut pad0 = pkt(1);
        pad0[0] |= 0x20;
        *pad0.last_mut().unwrap() = 0;
        assert_eq!(RtpPacket::parse(&pad0), Err(RtpError::Padding));
        let mut pad_big = pkt(1);
        pad_big[0] |= 0x20;
        *pad_big.last_mut().unwrap() = 200;
        assert_eq!(RtpPacket::parse(&pad_big), Err(RtpError::Padding));
        let csrc = [0x8f, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9, 1, 2, 3, 4];
        assert_eq!(RtpPacket::parse(&csrc), Err(RtpError::TruncatedHeader));
        let ext = [0x90, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9, 0xbe, 0xde, 0, 9];
        assert_eq!(RtpPacket::parse(&ext), Err(RtpError::TruncatedHeader));
    }

    #[test]
    fn no_truncation_or_bit_flip_of_valid_packets_panics() {
        let now = t0();
        let mut s = RtpSender::with_initial(1, 1, 1, 8000);
        let mut inputs = vec![s.packetize(PCMU, 160, &[7; 20], true, now)];
        inputs.extend(
            s.dtmf(TE, '5', 800, 160, 10, now)
                .unwrap()
                .into_iter()
                .map(|d| d.bytes),
        );
        let mut sess = session(2);
        inputs.push(sess.build_report(now).unwrap());
        sess.sender.packetize(PCMU, 160, &[1], false, now);
        inputs.push(sess.build_bye(now).unwrap());
        for input in &inputs {
            for i in 0..=input.len() {
                for variant in [input[..i].to_vec(), input[i..].to_vec()] {
                    let mut r = receiver();
                    let _ = r.receive(&variant, now);
                    let _ = RtpPacket::parse(&variant);
                    let _ = sess.receive_rtcp(&variant, now);
                }
                for bit in 0..8 {
                    let mut v = input.clone();
                    if let Some(b) = v.get_mut(i) {
                        *b ^= 1 << bit;
                    }
                    let _ = receiver().receive(&v, now);
                    let _ = sess.receive_rtcp(&v, now);
                }
            }
        }
    }

    #[test]
    fn unnegotiated_payload_type_is_rejected() {
        let mut s = RtpSender::with_initial(1, 1, 1, 8000);
        let p = s.packetize(18, 160, &[0; 10], false, t0());
        assert_eq!(receiver().receive(&p, t0()), Err(RtpError::PayloadType(18)));
    }

    #[test]
    fn in_order_stream_counts_packets_and_bytes_without_loss() {
        let mut r = receiver();
        let now = t0();
        for (i, seq) in (100u16..150).enumerate() {
            let got = r.receive(&pkt(seq), now + ms(20 * i as u64)).unwrap();
            assert!(got.media.is_some());
        }
        let st = r.stats();
        // The first packet is the probation packet (RFC 3550 A.1): 49 counted.
        assert_eq!((st.packets, st.expected, st.lost), (49, 49, 0));
        assert_eq!(st.bytes, 49 * 160);
        assert_eq!(st.extended_max, 149);
        assert_eq!(st.jitter, 0, "perfectly paced");
        assert_eq!(r.remote_ssrc(), Some(0xabc));
    }

    #[test]
    fn sequence_wrap_around_extends_the_highest_sequence() {
        let mut r = receiver();
        for seq in [65533u16, 65534, 65535, 0, 1, 2] {
            r.receive(&pkt(seq), t0()).unwrap();
        }
        let st = r.stats();
        assert_eq!(st.extended_max, 65536 + 2);
        assert_eq!((st.packets, st.expected, st.lost), (5, 5, 0));
    }

    #[test]
    fn gaps_count_as_lost_and_late_packets_recover_them() {
        let mut r = receiver();
        for seq in [1u16, 2, 3, 6, 7, 10] {
            r.receive(&pkt(seq), t0()).unwrap();
        }
        assert_eq!((r.stats().expected, r.stats().lost), (9, 4));
        let late = r.receive(&pkt(5), t0()).unwrap();
        assert!(late.media.is_some() && !late.duplicate);
        assert_eq!(r.stats().lost, 3);
    }

    #[test]
    fn duplicates_are_flagged_not_delivered_and_not_counted() {
        let mut r = receiver();
        for seq in [1u16, 2, 3, 4] {
            r.receive(&pkt(seq), t0()).unwrap();
        }
        for seq in [4u16, 3, 4] {
            let d = r.receive(&pkt(seq), t0()).unwrap();
            assert!(d.duplicate && d.media.is_none(), "seq {seq}");
        }
        let st = r.stats();
        assert_eq!((st.packets, st.duplicates, st.lost), (3, 3, 0));
    }

    #[test]
    fn huge_jump_is_ignored_once_then_taken_as_a_restart() {
        let mut r = receiver();
        for seq in [1u16, 2, 3] {
            r.receive(&pkt(seq), t0()).unwrap();
        }
        r.receive(&pkt(40000), t0()).unwrap();
        assert_eq!(
            r.stats().extended_max,
            3,
            "one stray packet does not move max"
        );
        r.receive(&pkt(40001), t0()).unwrap();
        let st = r.stats();
        assert_eq!(st.extended_max, 40001);
        assert_eq!((st.packets, st.lost), (1, 0));
    }

    #[test]
    fn ssrc_change_is_reported_once_and_resets_statistics() {
        let mut r = receiver();
        for seq in 1u16..5 {
            r.receive(&pkt(seq), t0()).unwrap();
        }
        let mut other = RtpSender::with_initial(0xdef, 500, 0, 8000);
        let first = r
            .receive(&other.packetize(PCMU, 160, &[0; 160], false, t0()), t0())
            .unwrap();
        assert!(first.ssrc_changed && first.media.is_some());
        let second = r
            .receive(&other.packetize(PCMU, 160, &[0; 160], false, t0()), t0())
            .unwrap();
        assert!(!second.ssrc_changed);
        assert_eq!(r.remote_ssrc(), Some(0xdef));
        let st = r.stats();
        assert_eq!((st.packets, st.ssrc_changes, st.extended_max), (1, 1, 501));
    }

    #[test]
    fn interarrival_jitter_follows_rfc3550_a8() {
        let mut r = receiver();
        let now = t0();
        // Packets 20 ms apart in media time, arriving alternately 0 and 10 ms late:
        // |D| = 80 timestamp units each time after the first.
        let mut expected = 0.0f64;
        for i in 0..40u64 {
            let late = if i % 2 == 1 { 10 } else { 0 };
            r.receive(&pkt(i as u16 + 1), now + ms(20 * i + late))
                .unwrap();
            if i > 0 {
                expected += (80.0 - expected) / 16.0;
            }
        }
        assert_eq!(r.stats().jitter, expected as u32);
        assert!(r.stats().jitter > 60);
    }

    #[test]
    fn dtmf_sender_emits_start_continuations_and_three_ends() {
        let now = t0();
        let mut s = RtpSender::with_initial(7, 10, 8000, 8000);
        let pkts = s.dtmf(TE, '#', 800, 160, 10, now).unwrap();
        assert_eq!(pkts.len(), 4 + 3);
        let parsed: Vec<RtpPacket> = pkts
            .iter()
            .map(|p| RtpPacket::parse(&p.bytes).unwrap())
            .collect();
        let durations: Vec<u16> = parsed
            .iter()
            .map(|p| u16::from_be_bytes([p.payload[2], p.payload[3]]))
            .collect();
        assert_eq!(durations, [160, 320, 480, 640, 800, 800, 800]);
        assert!(
            parsed
                .iter()
                .all(|p| p.timestamp == 8000 && p.payload[0] == 11)
        );
        assert!(parsed[0].marker && parsed[1..].iter().all(|p| !p.marker));
        let ends: Vec<bool> = parsed.iter().map(|p| p.payload[1] & 0x80 != 0).collect();
        assert_eq!(ends, [false, false, false, false, true, true, true]);
        let seqs: Vec<u16> = parsed.iter().map(|p| p.sequence).collect();
        assert_eq!(seqs, (10..17).collect::<Vec<_>>());
        assert_eq!(pkts[0].at, Duration::ZERO);
        assert_eq!(pkts[3].at, ms(60));
        assert_eq!(pkts[6].at, ms(80));
        assert_eq!(s.next_timestamp(), 8800, "audio resumes after the event");
        assert!(s.dtmf(TE, 'x', 800, 160, 10, now).is_none());
    }

    #[test]
    fn dtmf_digit_is_reported_once_with_its_duration() {
        let now = t0();
        let mut s = RtpSender::with_initial(7, 10, 8000, 8000);
        let mut r = receiver();
        r.receive(&s.packetize(PCMU, 160, &[0; 160], false, now), now)
            .unwrap();
        let mut digits = vec![];
        for p in s.dtmf(TE, '7', 800, 160, 10, now).unwrap() {
            let got = r.receive(&p.bytes, now + p.at).unwrap();
            assert!(got.media.is_none());
            digits.extend(got.dtmf);
        }
        assert_eq!(
            digits,
            [DtmfDigit {
                key: '7',
                duration: ms(100),
                volume: 10
            }]
        );
        // Same key pressed again: a new event (new timestamp), reported again.
        let again: Vec<DtmfDigit> = s
            .dtmf(TE, '7', 400, 160, 10, now)
            .unwrap()
            .into_iter()
            .filter_map(|p| r.receive(&p.bytes, now).unwrap().dtmf)
            .collect();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].duration, ms(50));
    }

    #[test]
    fn dtmf_whose_end_packets_are_lost_is_reported_when_audio_resumes() {
        let now = t0();
        let mut s = RtpSender::with_initial(7, 10, 8000, 8000);
        let mut r = receiver();
        let pkts = s.dtmf(TE, 'A', 800, 160, 10, now).unwrap();
        for p in &pkts[..4] {
            assert_eq!(r.receive(&p.bytes, now).unwrap().dtmf, None);
        }
        let audio = r
            .receive(&s.packetize(PCMU, 160, &[0; 160], false, now), now)
            .unwrap();
        assert_eq!(audio.dtmf.map(|d| (d.key, d.duration)), Some(('A', ms(80))));
        assert!(audio.media.is_some());
    }

    fn session(remote_ssrc: u32) -> RtpSession {
        let now = t0();
        RtpSession::new(
            RtpSender::with_initial(remote_ssrc ^ 0xffff, 1, 1, 8000),
            receiver(),
            "dialtone@test",
            NtpClock::new(now, SystemTime::now()),
        )
    }

    #[test]
    fn ntp_conversion_matches_the_epoch_offset() {
        let t = UNIX_EPOCH + Duration::from_millis(1500);
        assert_eq!(
            ntp_from_system_time(t),
            (2_208_988_801u64 << 32) | (1 << 31)
        );
        assert_eq!(ntp_compact(0x1234_5678_9abc_def0), 0x5678_9abc);
        let now = t0();
        let c = NtpClock::new(now, t);
        assert_eq!(c.ntp(now + ms(500)), 2_208_988_802u64 << 32);
    }

    #[test]
    fn receiver_only_session_sends_rr_with_loss_jitter_and_cname() {
        let now = t0();
        let mut a = session(0xabc);
        for seq in [1u16, 2, 3, 4, 6, 7, 8, 9, 10, 11] {
            a.receiver.receive(&pkt(seq), now).unwrap();
        }
        let report = a.build_report(now).unwrap();
        assert_eq!(report[1], 201, "RR");
        let mut buf = &report[..];
        let packets = rtc_rtcp::packet::unmarshal(&mut buf).unwrap();
        let rr = packets[0]
            .as_any()
            .downcast_ref::<ReceiverReport>()
            .unwrap();
        let b = &rr.reports[0];
        assert_eq!(b.ssrc, 0xabc);
        assert_eq!(b.last_sequence_number, 11);
        assert_eq!(b.total_lost, 1);
        assert_eq!(
            b.fraction_lost, 25,
            "1 of 10 expected (the probation packet excluded)"
        );
        assert_eq!((b.last_sender_report, b.delay), (0, 0));
        let sdes = packets[1]
            .as_any()
            .downcast_ref::<SourceDescription>()
            .unwrap();
        assert_eq!(&sdes.chunks[0].items[0].text[..], b"dialtone@test");
        // Nothing new since: fraction lost of the next interval is 0, cumulative stays.
        let again = a.build_report(now).unwrap();
        let mut buf = &again[..];
        let packets = rtc_rtcp::packet::unmarshal(&mut buf).unwrap();
        let rr = packets[0]
            .as_any()
            .downcast_ref::<ReceiverReport>()
            .unwrap();
        assert_eq!(
            (rr.reports[0].fraction_lost, rr.reports[0].total_lost),
            (0, 1)
        );
    }

    #[test]
    fn two_sessions_exchange_sr_and_rr_and_measure_rtt() {
        let start = t0();
        let wall = SystemTime::now();
        let mut a = RtpSession::new(
            RtpSender::with_initial(0xaaaa, 1, 1, 8000),
            receiver(),
            "a@x",
            NtpClock::new(start, wall),
        );
        let mut b = RtpSession::new(
            RtpSender::with_initial(0xbbbb, 1, 1, 8000),
            receiver(),
            "b@x",
            NtpClock::new(start, wall + Duration::from_secs(3600)),
        );
        // A sends media to B (one-way delay 30 ms); B only listens.
        for i in 0..10u64 {
            let p = a
                .sender
                .packetize(PCMU, 160, &[0; 160], false, start + ms(20 * i));
            b.receiver.receive(&p, start + ms(20 * i + 30)).unwrap();
        }
        let sr_at = start + ms(200);
        let sr = a.build_report(sr_at).unwrap();
        assert_eq!(sr[1], 200, "SR after sending");
        let got = b.receive_rtcp(&sr, sr_at + ms(30)).unwrap();
        assert_eq!(got.sender_counts, Some((10, 1600)));
        assert_eq!(got.cname.as_deref(), Some("a@x"));
        // B answers 1 s later; the RR takes 30 ms back: RTT 60 ms.
        let rr_at = sr_at + ms(1030);
        let rr = b.build_report(rr_at).unwrap();
        assert_eq!(rr[1], 201);
        let info = a.receive_rtcp(&rr, rr_at + ms(30)).unwrap();
        let report = info.report.unwrap();
        assert_eq!(report.cumulative_lost, 0);
        assert_eq!(report.extended_highest_seq, 10);
        let rtt = report.rtt.unwrap();
        assert!(rtt.abs_diff(ms(60)) < ms(1), "{rtt:?}");
        assert!(!info.bye);
        // A hangs up.
        let bye = a.build_bye(rr_at + ms(100)).unwrap();
        assert!(b.receive_rtcp(&bye, rr_at + ms(130)).unwrap().bye);
    }

    #[test]
    fn negative_cumulative_loss_round_trips_as_24_bit_signed() {
        let b = ReceptionReport {
            total_lost: 0xff_fffe,
            last_sender_report: 0,
            ..Default::default()
        };
        let r = remote_report(&b, 0);
        assert_eq!((r.cumulative_lost, r.rtt), (-2, None));
    }

    #[test]
    fn savp_call_carries_audio_dtmf_and_rtcp_through_srtp() {
        use crate::engine::media::srtp::{
            CryptoAttribute, SrtpContext, accept_answer, answer_offer,
        };
        let now = t0();
        let offer = CryptoAttribute::offer().unwrap();
        let lines: Vec<String> = offer.iter().map(|a| a.sdp_line()).collect();
        let (b_ours, b_theirs) = answer_offer(&lines).unwrap();
        let (a_ours, a_theirs) = accept_answer(&offer, &b_ours.sdp_line()).unwrap();
        let mut a_srtp = SrtpContext::from_attributes(&a_ours, &a_theirs).unwrap();
        let mut b_srtp = SrtpContext::from_attributes(&b_ours, &b_theirs).unwrap();
        let mut a = session(0x1);
        let mut b = session(0x2);
        for i in 0..5u64 {
            let p = a.sender.packetize(PCMU, 160, &[0x55; 160], false, now);
            let wire = a_srtp.protect_rtp(&p).unwrap();
            let got = b
                .receiver
                .receive(&b_srtp.unprotect_rtp(&wire).unwrap(), now + ms(20 * i))
                .unwrap();
            assert_eq!(&got.media.unwrap().payload[..], &[0x55; 160][..]);
        }
        let mut digits = vec![];
        for p in a.sender.dtmf(TE, '9', 480, 160, 10, now).unwrap() {
            let plain = b_srtp.unprotect_rtp(&a_srtp.protect_rtp(&p.bytes).unwrap());
            digits.extend(b.receiver.receive(&plain.unwrap(), now).unwrap().dtmf);
        }
        assert_eq!(digits.iter().map(|d| d.key).collect::<String>(), "9");
        let sr = a_srtp.protect_rtcp(&a.build_report(now).unwrap()).unwrap();
        let info = b
            .receive_rtcp(&b_srtp.unprotect_rtcp(&sr).unwrap(), now)
            .unwrap();
        // 5 audio packets, then 2 DTMF updates (160, 320) and 3 end packets (480).
        assert_eq!(info.sender_counts, Some((5 + 5, 5 * 160 + 5 * 4)));
    }

    #[test]
    fn garbage_rtcp_is_an_error() {
        let mut a = session(1);
        assert!(a.receive_rtcp(&[], t0()).is_err());
        assert!(a.receive_rtcp(&[0x40, 200, 0, 0], t0()).is_err());
        assert!(
            a.receive_rtcp(&[0x80, 200, 0, 9, 0, 0, 0, 0], t0())
                .is_err()
        );
    }

    #[test]
    fn rtcp_timer_randomises_between_half_and_one_and_a_half_intervals() {
        assert_eq!(RtcpTimer::interval(0.0), Duration::from_millis(2500));
        assert_eq!(RtcpTimer::interval(1.0), Duration::from_millis(7500));
        let now = t0();
        let mut t = RtcpTimer::new(now);
        assert!(t.next_send() <= now + ms(3750) && t.next_send() >= now + ms(1250));
        assert!(!t.poll(now));
        let due = t.next_send();
        assert!(t.poll(due));
        for _ in 0..100 {
            let at = t.next_send();
            assert!(at >= due + ms(2500) && at <= due + ms(7500));
            t = RtcpTimer { next: due };
            t.poll(due);
        }
    }
}
