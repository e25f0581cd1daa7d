//! An adaptive jitter buffer for one RTP stream, sans-IO: packets and the playout clock's ticks
//! come in with their `Instant`, nothing here reads a clock.
//!
//! Design:
//! - Playout is sequence-driven: the playout side calls [`JitterBuffer::pop`] once per frame
//!   (every `frame_ms`, from the audio device's clock) and gets the next sequence number's
//!   payload, [`Playout::Lost`] for a hole with later packets already here (the caller runs FEC
//!   with [`JitterBuffer::next_payload`], or PLC), or [`Playout::Empty`] while buffering. One
//!   packet is assumed to carry one frame (the negotiated ptime).
//! - Sequence numbers are extended to 64 bits around the highest seen, so the 16-bit wrap is
//!   invisible; slots live in a ring indexed from the next sequence to play.
//! - Buffering: playout starts (and restarts after an underrun, i.e. a new talkspurt or a network
//!   stall) once the first packet has waited the target delay, or as soon as that much audio is
//!   queued. The target starts at `initial_delay_ms`, rises at once to `frame + 4 × jitter`
//!   (RFC 3550 A.8 interarrival jitter) and falls back slowly, capped at `max_delay_ms`. A deeper
//!   target takes effect at the next (re)buffering; nothing is stretched mid-speech. When more
//!   than a frame above target stays queued for a while, one frame is dropped to catch up.
//! - Resynchronisation: after `resync_silence` with nothing queued, the next packet starts the
//!   stream afresh (any sequence, new delay); a sequence jump too far to place is confirmed by the
//!   following packet (RFC 3550 A.1 probation) and then restarts the stream; a timestamp jump
//!   (new talkspurt after silence suppression, source switched) resets the jitter estimator
//!   instead of being counted as jitter. The caller should call [`JitterBuffer::reset`] on an
//!   SSRC change it sees.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Tunables; the defaults suit 20 ms voice.
#[derive(Debug, Clone)]
pub struct JitterConfig {
    /// RTP clock rate of the stream (8000 for G.711, 48000 for Opus).
    pub clock_rate: u32,
    /// Audio per packet and per `pop` call.
    pub frame_ms: u32,
    /// Target delay at start, and the floor it shrinks back to.
    pub initial_delay_ms: u32,
    /// Cap on the target delay.
    pub max_delay_ms: u32,
    /// Silence after which the next packet starts the stream afresh.
    pub resync_silence: Duration,
}

impl Default for JitterConfig {
    fn default() -> Self {
        Self {
            clock_rate: 8000,
            frame_ms: 20,
            initial_delay_ms: 40,
            max_delay_ms: 300,
            resync_silence: Duration::from_secs(1),
        }
    }
}

/// What to play for one frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Playout {
    /// The payload of the next packet, to decode.
    Frame(Vec<u8>),
    /// The next packet is missing while later ones are here: conceal (FEC from
    /// [`JitterBuffer::next_payload`] if the codec has it, else PLC).
    Lost,
    /// Nothing to play: not started, buffering, or underrun. Play concealment or silence.
    Empty,
}

/// Counters and current figures, for the engine's call statistics.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct JitterStats {
    /// The playout delay aimed at.
    pub delay_ms: u32,
    /// Audio queued after the frame last popped.
    pub queued_ms: u32,
    /// RFC 3550 interarrival jitter.
    pub jitter_ms: f32,
    /// Packets accepted into the buffer.
    pub received: u64,
    /// Frames handed out.
    pub played: u64,
    /// Frames never received (reported as `Lost`, or skipped when playout restarted).
    pub lost: u64,
    /// Packets that came after their turn to play (dropped).
    pub late: u64,
    /// Packets received twice (dropped).
    pub duplicate: u64,
    /// Packets that came after a higher sequence number (kept if in time).
    pub reordered: u64,
    /// Frames dropped on purpose to bring the delay back down.
    pub dropped: u64,
    /// Packets too far from the stream to place, discarded while a jump was being confirmed.
    pub discarded: u64,
    /// Times playout ran dry and had to rebuffer.
    pub underruns: u64,
    /// Times the stream was started afresh (silence, sequence or timestamp jump).
    pub resyncs: u64,
}

#[derive(Debug)]
struct Slot {
    payload: Vec<u8>,
}

/// Ring capacity in frames (5 s at 20 ms): sequence jumps beyond it restart the stream.
const CAPACITY: u64 = 256;
/// A packet further behind the highest than this is a jump, not reordering (RFC 3550 A.1).
const MAX_MISORDER: u64 = 100;
/// Consecutive pops above target (plus a frame) before one frame is dropped.
const SHRINK_AFTER_POPS: u32 = 10;
/// How fast the target falls towards what the jitter asks for, per pop (5 ms per second).
const TARGET_DECAY_MS_PER_POP: f64 = 0.1;
/// A change in transit time this large is a timeline jump, not jitter.
const TIMESTAMP_JUMP: Duration = Duration::from_secs(1);

/// The jitter buffer. `Send`; one per received stream.
#[derive(Debug)]
pub struct JitterBuffer {
    cfg: JitterConfig,
    /// Slots from `base` on; `base` is the next sequence to play once `next_fixed`.
    slots: VecDeque<Option<Slot>>,
    base: u64,
    /// False until playout has started: packets older than `base` may still be put in front.
    next_fixed: bool,
    /// Highest extended sequence accepted; `None` before the first packet / after a resync.
    highest: Option<u64>,
    /// True while waiting for the target delay before (re)starting playout.
    buffering: bool,
    /// Arrival of the first packet of the current buffering period.
    buffering_since: Option<Instant>,
    last_arrival: Option<Instant>,
    /// Played-or-skipped history: bit i set = sequence `base - 1 - i` was received.
    received_mask: u64,
    /// RFC 3550 A.1 probation: the sequence a jumped stream must continue with.
    probation: Option<u16>,
    /// Jitter estimator state, in RTP clock units.
    epoch: Option<Instant>,
    last_transit: Option<f64>,
    jitter: f64,
    target_ms: f64,
    excess_pops: u32,
    stats: JitterStats,
}

impl JitterBuffer {
    pub fn new(cfg: JitterConfig) -> Self {
        let target_ms = f64::from(cfg.initial_delay_ms.min(cfg.max_delay_ms));
        Self {
            cfg,
            slots: VecDeque::with_capacity(32),
            base: 0,
            next_fixed: false,
            highest: None,
            buffering: true,
            buffering_since: None,
            last_arrival: None,
            received_mask: 0,
            probation: None,
            epoch: None,
            last_transit: None,
            jitter: 0.0,
            target_ms,
            excess_pops: 0,
            stats: JitterStats::default(),
        }
    }

    /// Forgets the stream (keeps the counters and the learnt target): the next packet starts it
    /// afresh. Call on an SSRC change.
    pub fn reset(&mut self) {
        self.slots.clear();
        self.next_fixed = false;
        self.highest = None;
        self.buffering = true;
        self.buffering_since = None;
        self.received_mask = 0;
        self.probation = None;
        self.last_transit = None;
        self.excess_pops = 0;
    }

    /// Starts afresh: holes still queued count as lost, packets still queued as dropped.
    fn resync(&mut self) {
        for s in &self.slots {
            match s {
                Some(_) => self.stats.dropped += 1,
                None => self.stats.lost += 1,
            }
        }
        self.reset();
        self.stats.resyncs += 1;
    }

    fn frame_ms(&self) -> f64 {
        f64::from(self.cfg.frame_ms.max(1))
    }

    /// Takes one received packet.
    pub fn push(&mut self, seq: u16, timestamp: u32, payload: Vec<u8>, arrival: Instant) {
        // A long silence with nothing queued: whatever comes next is a new start.
        if let Some(last) = self.last_arrival
            && arrival.saturating_duration_since(last) >= self.cfg.resync_silence
            && self.slots.iter().all(Option::is_none)
            && self.highest.is_some()
        {
            self.resync();
        }
        self.last_arrival = Some(arrival);

        let ext = match self.highest {
            None => (1u64 << 32) + u64::from(seq),
            Some(h) => h.wrapping_add_signed(i64::from(seq.wrapping_sub(h as u16) as i16)),
        };
        let highest = self.highest.unwrap_or(ext);
        let too_far_ahead = self.next_fixed && ext >= self.base + CAPACITY
            || !self.next_fixed && ext >= highest + CAPACITY;
        let too_far_behind = ext + MAX_MISORDER < highest;
        if too_far_ahead || too_far_behind {
            if self.probation == Some(seq) {
                self.resync();
                self.probation = None;
                return self.push(seq, timestamp, payload, arrival);
            }
            self.probation = Some(seq.wrapping_add(1));
            self.stats.discarded += 1;
            return;
        }
        self.probation = None;

        if ext < self.base && self.next_fixed {
            let back = self.base - ext - 1;
            if back < 64 && self.received_mask & (1 << back) != 0 {
                self.stats.duplicate += 1;
            } else {
                self.stats.late += 1;
                // Late packets are the best evidence that the delay is too short.
                self.update_jitter(timestamp, arrival);
            }
            return;
        }
        if self.highest.is_none() || self.slots.is_empty() && !self.next_fixed {
            self.base = ext;
        }
        while ext < self.base {
            // Not started yet: an earlier packet goes in front.
            self.slots.push_front(None);
            self.base -= 1;
        }
        let idx = (ext - self.base) as usize;
        if idx >= self.slots.len() {
            self.slots.resize_with(idx + 1, || None);
        }
        if self.slots[idx].is_some() {
            self.stats.duplicate += 1;
            return;
        }
        if ext < highest {
            self.stats.reordered += 1;
        }
        self.slots[idx] = Some(Slot { payload });
        self.highest = Some(highest.max(ext));
        self.stats.received += 1;
        if self.buffering && self.buffering_since.is_none() {
            self.buffering_since = Some(arrival);
        }
        self.update_jitter(timestamp, arrival);
    }

    /// RFC 3550 A.8: J += (|D| - J) / 16, D the change in transit time (arrival − timestamp).
    fn update_jitter(&mut self, timestamp: u32, arrival: Instant) {
        let clock = f64::from(self.cfg.clock_rate.max(1));
        let epoch = *self.epoch.get_or_insert(arrival);
        let arrival_units = arrival.saturating_duration_since(epoch).as_secs_f64() * clock;
        let transit = arrival_units - f64::from(timestamp);
        if let Some(last) = self.last_transit {
            // Timestamps wrap at 2^32: take the difference modulo that.
            let wrap = 4_294_967_296.0;
            let mut d = (transit - last) % wrap;
            if d > wrap / 2.0 {
                d -= wrap;
            } else if d < -wrap / 2.0 {
                d += wrap;
            }
            if d.abs() > TIMESTAMP_JUMP.as_secs_f64() * clock {
                // New timeline (talkspurt after silence suppression, switched source): restart
                // the estimator from here. Playout itself follows sequence numbers, and an
                // underrun during the silence already rebuffers from this packet.
                self.last_transit = Some(transit);
                return;
            }
            self.jitter += (d.abs() - self.jitter) / 16.0;
        }
        self.last_transit = Some(transit);
        let jitter_ms = self.jitter / clock * 1000.0;
        let wanted = self.wanted_ms(jitter_ms);
        if wanted > self.target_ms {
            self.target_ms = wanted;
        }
    }

    fn wanted_ms(&self, jitter_ms: f64) -> f64 {
        (self.frame_ms() + 4.0 * jitter_ms).clamp(
            f64::from(self.cfg.initial_delay_ms),
            f64::from(self.cfg.max_delay_ms),
        )
    }

    fn jitter_ms(&self) -> f64 {
        self.jitter / f64::from(self.cfg.clock_rate.max(1)) * 1000.0
    }

    fn queued_frames(&self) -> usize {
        self.slots.len()
    }

    /// The payload of the next packet to play, if it is here: after a [`Playout::Lost`], the
    /// packet whose in-band FEC can rebuild the lost frame.
    pub fn next_payload(&self) -> Option<&[u8]> {
        self.slots
            .front()
            .and_then(|s| s.as_ref())
            .map(|s| s.payload.as_slice())
    }

    /// Takes the next sequence's slot off the ring, recording whether it was received.
    fn advance(&mut self) -> Option<Slot> {
        let slot = self.slots.pop_front().flatten();
        self.received_mask = (self.received_mask << 1) | u64::from(slot.is_some());
        self.base += 1;
        slot
    }

    /// What to play for the frame due at `now`.
    pub fn pop(&mut self, now: Instant) -> Playout {
        // Target decays slowly towards what the jitter asks for.
        let wanted = self.wanted_ms(self.jitter_ms());
        if wanted < self.target_ms {
            self.target_ms = (self.target_ms - TARGET_DECAY_MS_PER_POP).max(wanted);
        }

        if self.buffering {
            let Some(since) = self.buffering_since else {
                return Playout::Empty;
            };
            let waited = now.saturating_duration_since(since).as_secs_f64() * 1000.0;
            let queued = self.queued_frames() as f64 * self.frame_ms();
            if waited + 0.5 < self.target_ms && queued < self.target_ms + self.frame_ms() {
                return Playout::Empty;
            }
            self.buffering = false;
            self.buffering_since = None;
            self.next_fixed = true;
            // Restarting: holes before the first packet here are gone for good, not concealed.
            while matches!(self.slots.front(), Some(None)) {
                self.advance();
                self.stats.lost += 1;
            }
        }

        if self.slots.is_empty() {
            self.stats.underruns += 1;
            self.buffering = true;
            return Playout::Empty;
        }

        // Catching up: well above target for a while, drop one frame.
        let queued_after = (self.queued_frames() - 1) as f64 * self.frame_ms();
        if queued_after > self.target_ms + self.frame_ms() {
            self.excess_pops += 1;
            if self.excess_pops >= SHRINK_AFTER_POPS && self.slots.len() > 1 {
                self.excess_pops = 0;
                if self.advance().is_some() {
                    self.stats.dropped += 1;
                } else {
                    self.stats.lost += 1;
                }
            }
        } else {
            self.excess_pops = 0;
        }

        match self.advance() {
            Some(slot) => {
                self.stats.played += 1;
                Playout::Frame(slot.payload)
            }
            None => {
                self.stats.lost += 1;
                Playout::Lost
            }
        }
    }

    pub fn stats(&self) -> JitterStats {
        JitterStats {
            delay_ms: self.target_ms.round() as u32,
            queued_ms: (self.queued_frames() as u32).saturating_mul(self.cfg.frame_ms),
            jitter_ms: self.jitter_ms() as f32,
            ..self.stats
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a pop gave, with frames named by the sequence number written in their payload.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Out {
        F(u16),
        Lost,
        Empty,
    }

    struct Sim {
        jb: JitterBuffer,
        t0: Instant,
        /// (arrival ms, seq, timestamp), pushed when the playout clock reaches them.
        pending: Vec<(u64, u16, u32)>,
        now_ms: u64,
    }

    impl Sim {
        fn new(cfg: JitterConfig) -> Self {
            Self {
                jb: JitterBuffer::new(cfg),
                t0: Instant::now(),
                pending: Vec::new(),
                now_ms: 0,
            }
        }

        fn at(&self, ms: u64) -> Instant {
            self.t0 + Duration::from_millis(ms)
        }

        /// Schedules a packet; 20 ms G.711 frames (160 ticks) unless `ts` says otherwise.
        fn send(&mut self, arrival_ms: u64, seq: u16, ts: u32) {
            self.pending.push((arrival_ms, seq, ts));
        }

        /// Runs the playout clock (a pop every 20 ms) until `end_ms`.
        fn run_until(&mut self, end_ms: u64) -> Vec<Out> {
            self.pending.sort_by_key(|p| p.0);
            let mut outs = Vec::new();
            while self.now_ms <= end_ms {
                let now = self.now_ms;
                let due: Vec<_> = self
                    .pending
                    .iter()
                    .filter(|p| p.0 <= now)
                    .copied()
                    .collect();
                self.pending.retain(|p| p.0 > now);
                for (a, seq, ts) in due {
                    let at = self.at(a);
                    self.jb.push(seq, ts, seq.to_be_bytes().to_vec(), at);
                }
                let at = self.at(now);
                outs.push(match self.jb.pop(at) {
                    Playout::Frame(p) => Out::F(u16::from_be_bytes([p[0], p[1]])),
                    Playout::Lost => Out::Lost,
                    Playout::Empty => Out::Empty,
                });
                self.now_ms += 20;
            }
            outs
        }
    }

    fn frames(outs: &[Out]) -> Vec<u16> {
        outs.iter()
            .filter_map(|o| match o {
                Out::F(s) => Some(*s),
                _ => None,
            })
            .collect()
    }

    /// A regular stream: packet k (seq `first + k`) arrives at `start + 20k` ms.
    fn regular(sim: &mut Sim, start_ms: u64, first: u16, count: u16) {
        for k in 0..count {
            let seq = first.wrapping_add(k);
            sim.send(start_ms + 20 * u64::from(k), seq, u32::from(seq) * 160);
        }
    }

    #[test]
    fn nothing_received_gives_empty_without_underruns() {
        let mut sim = Sim::new(JitterConfig::default());
        let outs = sim.run_until(200);
        assert!(outs.iter().all(|o| *o == Out::Empty));
        assert_eq!(sim.jb.stats().underruns, 0);
        assert_eq!(sim.jb.stats().delay_ms, 40);
    }

    #[test]
    fn in_order_stream_plays_every_frame_after_the_initial_delay() {
        let mut sim = Sim::new(JitterConfig::default());
        regular(&mut sim, 0, 1000, 50);
        let outs = sim.run_until(1040);
        assert_eq!(&outs[..3], &[Out::Empty, Out::Empty, Out::F(1000)]);
        assert_eq!(frames(&outs), (1000..1050).collect::<Vec<_>>());
        let st = sim.jb.stats();
        assert_eq!((st.received, st.played, st.lost, st.late), (50, 50, 0, 0));
        assert_eq!(st.delay_ms, 40);
        assert!(st.jitter_ms < 0.01);
    }

    #[test]
    fn sequence_numbers_wrap_around_without_a_glitch() {
        let mut sim = Sim::new(JitterConfig::default());
        regular(&mut sim, 0, 65500, 100);
        let outs = sim.run_until(2100);
        let expected: Vec<u16> = (0..100u16).map(|k| 65500u16.wrapping_add(k)).collect();
        assert_eq!(frames(&outs), expected);
        let st = sim.jb.stats();
        assert_eq!((st.lost, st.late, st.discarded, st.resyncs), (0, 0, 0, 0));
    }

    #[test]
    fn a_burst_of_reordering_within_the_delay_is_played_in_order() {
        let mut sim = Sim::new(JitterConfig {
            initial_delay_ms: 100,
            ..JitterConfig::default()
        });
        for seq in 0u16..40 {
            // Packets 10..=14 all arrive, last first, when 14 was due.
            let arrival = if (10..=14).contains(&seq) {
                20 * 14 + u64::from(14 - seq)
            } else {
                20 * u64::from(seq)
            };
            sim.send(arrival, seq, u32::from(seq) * 160);
        }
        let outs = sim.run_until(1000);
        assert_eq!(frames(&outs), (0..40).collect::<Vec<_>>());
        let st = sim.jb.stats();
        assert_eq!((st.reordered, st.lost, st.late), (4, 0, 0));
    }

    #[test]
    fn duplicates_are_dropped_and_counted_whether_queued_or_already_played() {
        let mut sim = Sim::new(JitterConfig::default());
        regular(&mut sim, 0, 0, 20);
        sim.send(45, 3, 3 * 160); // 3 is still queued
        sim.send(205, 2, 2 * 160); // 2 was played long ago
        let outs = sim.run_until(500);
        assert_eq!(frames(&outs), (0..20).collect::<Vec<_>>());
        let st = sim.jb.stats();
        assert_eq!((st.duplicate, st.late, st.received), (2, 0, 20));
    }

    #[test]
    fn a_late_packet_is_reported_lost_then_dropped_when_it_comes() {
        let mut sim = Sim::new(JitterConfig::default());
        for seq in 0u16..30 {
            let arrival = if seq == 10 { 400 } else { 20 * u64::from(seq) };
            sim.send(arrival, seq, u32::from(seq) * 160);
        }
        let outs = sim.run_until(700);
        let played = frames(&outs);
        assert!(!played.contains(&10));
        assert_eq!(played.len(), 29);
        let lost_at = outs.iter().position(|o| *o == Out::Lost).unwrap();
        assert_eq!(outs[lost_at - 1], Out::F(9));
        assert_eq!(outs[lost_at + 1], Out::F(11));
        let st = sim.jb.stats();
        assert_eq!((st.lost, st.late), (1, 1));
    }

    #[test]
    fn twenty_percent_loss_is_reported_frame_by_frame_with_the_next_packet_for_fec() {
        let mut sim = Sim::new(JitterConfig::default());
        for seq in 0u16..500 {
            if seq % 5 != 3 {
                sim.send(20 * u64::from(seq), seq, u32::from(seq) * 160);
            }
        }
        sim.pending.sort_by_key(|p| p.0);
        let mut outs = Vec::new();
        let mut fec_next = Vec::new();
        // Drive by hand to look at next_payload() right after each Lost.
        for tick in 0..=510u64 {
            let now = tick * 20;
            let due: Vec<_> = sim.pending.iter().filter(|p| p.0 <= now).copied().collect();
            sim.pending.retain(|p| p.0 > now);
            for (a, seq, ts) in due {
                let at = sim.at(a);
                sim.jb.push(seq, ts, seq.to_be_bytes().to_vec(), at);
            }
            let at = sim.at(now);
            match sim.jb.pop(at) {
                Playout::Frame(p) => outs.push(Out::F(u16::from_be_bytes([p[0], p[1]]))),
                Playout::Lost => {
                    outs.push(Out::Lost);
                    let p = sim.jb.next_payload().unwrap();
                    fec_next.push(u16::from_be_bytes([p[0], p[1]]));
                }
                Playout::Empty => outs.push(Out::Empty),
            }
        }
        let played: Vec<Out> = outs.into_iter().filter(|o| *o != Out::Empty).collect();
        let expected: Vec<Out> = (0u16..500)
            .map(|s| if s % 5 == 3 { Out::Lost } else { Out::F(s) })
            .collect();
        assert_eq!(played, expected);
        assert_eq!(fec_next, (0u16..100).map(|k| k * 5 + 4).collect::<Vec<_>>());
        let st = sim.jb.stats();
        assert_eq!((st.lost, st.played, st.underruns), (100, 400, 1));
    }

    #[test]
    fn jitter_grows_the_delay_and_a_calm_stream_shrinks_it_slowly() {
        let mut sim = Sim::new(JitterConfig::default());
        // 10 s of packets each delayed by a pseudo-random 0..60 ms.
        for seq in 0u16..500 {
            let delay = u64::from(seq) * 37 % 61;
            sim.send(20 * u64::from(seq) + delay, seq, u32::from(seq) * 160);
        }
        sim.run_until(10_000);
        let st = sim.jb.stats();
        assert!(st.jitter_ms > 10.0, "{st:?}");
        let grown = st.delay_ms;
        assert!(grown > 60 && grown < 300, "{st:?}");
        // Then 60 s of a perfectly regular stream.
        regular(&mut sim, 10_100, 500, 3000);
        sim.run_until(12_100);
        let after_2s = sim.jb.stats().delay_ms;
        assert!(
            after_2s < grown && after_2s + 20 >= grown,
            "{grown} -> {after_2s}"
        );
        sim.run_until(70_000);
        let st = sim.jb.stats();
        assert_eq!(st.delay_ms, 40, "{st:?}");
        assert!(st.queued_ms <= 60, "{st:?}");
        assert!(st.jitter_ms < 1.0, "{st:?}");
    }

    #[test]
    fn the_delay_is_capped() {
        let mut sim = Sim::new(JitterConfig::default());
        for seq in 0u16..200 {
            let delay = if seq % 2 == 0 { 0 } else { 400 };
            sim.send(20 * u64::from(seq) + delay, seq, u32::from(seq) * 160);
        }
        sim.run_until(5000);
        let st = sim.jb.stats();
        assert_eq!(st.delay_ms, 300, "{st:?}");
    }

    #[test]
    fn a_network_stall_underruns_rebuffers_and_catches_up_by_dropping_frames() {
        let mut sim = Sim::new(JitterConfig::default());
        for seq in 0u16..300 {
            // Packets 50..=64 are held up and all arrive at once, 300 ms late for the first.
            let arrival = if (50..65).contains(&seq) {
                20 * 50 + 300
            } else {
                20 * u64::from(seq)
            };
            sim.send(arrival, seq, u32::from(seq) * 160);
        }
        let outs = sim.run_until(8000);
        let st = sim.jb.stats();
        // One underrun in the stall, one when the stream ends.
        assert_eq!(st.underruns, 2, "{st:?}");
        assert_eq!((st.late, st.lost), (0, 0), "{st:?}");
        assert!(st.dropped > 0, "{st:?}");
        // Every frame played in order except the ones dropped to catch up.
        let played = frames(&outs);
        assert!(played.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(played.len() as u64 + st.dropped, 300);
        assert!(st.delay_ms <= 300);
    }

    #[test]
    fn after_a_long_silence_a_new_stream_starts_afresh() {
        let mut sim = Sim::new(JitterConfig::default());
        regular(&mut sim, 0, 100, 50);
        let first = sim.run_until(1100);
        assert_eq!(frames(&first).len(), 50);
        // 3 s later, a new source: unrelated sequence numbers and timestamps.
        for k in 0u16..20 {
            sim.send(
                4000 + 20 * u64::from(k),
                40_000 + k,
                9_999_999 + u32::from(k) * 160,
            );
        }
        let outs = sim.run_until(4600);
        let played = frames(&outs);
        assert_eq!(played, (40_000..40_020).collect::<Vec<_>>());
        let idx = outs.iter().position(|o| *o == Out::F(40_000)).unwrap();
        assert_eq!(&outs[idx - 2..idx], &[Out::Empty, Out::Empty]); // the initial delay again
        let st = sim.jb.stats();
        assert_eq!((st.resyncs, st.discarded, st.late, st.lost), (1, 0, 0, 0));
        assert!(st.jitter_ms < 1.0, "{st:?}");
    }

    #[test]
    fn a_sequence_jump_mid_stream_is_confirmed_by_the_next_packet_then_resyncs() {
        let mut sim = Sim::new(JitterConfig::default());
        regular(&mut sim, 0, 0, 30);
        regular(&mut sim, 600, 30_000, 30);
        let outs = sim.run_until(1400);
        let played = frames(&outs);
        // The first packet of the jump is the probation one; the second confirms it, which
        // flushes what was still queued of the old stream (packet 29), then the new one plays.
        assert_eq!(&played[..29], &(0..29).collect::<Vec<_>>()[..]);
        assert_eq!(&played[29..], &(30_001..30_030).collect::<Vec<_>>()[..]);
        let st = sim.jb.stats();
        assert_eq!((st.discarded, st.resyncs, st.dropped), (1, 1, 1));
    }

    #[test]
    fn a_single_stray_packet_far_away_does_not_disturb_the_stream() {
        let mut sim = Sim::new(JitterConfig::default());
        regular(&mut sim, 0, 5000, 40);
        sim.send(301, 40_000, 12345);
        let outs = sim.run_until(900);
        assert_eq!(frames(&outs), (5000..5040).collect::<Vec<_>>());
        let st = sim.jb.stats();
        assert_eq!((st.discarded, st.resyncs, st.lost), (1, 0, 0));
    }

    #[test]
    fn a_timestamp_jump_with_continuous_sequence_is_not_jitter() {
        let mut sim = Sim::new(JitterConfig::default());
        for seq in 0u16..100 {
            // From packet 50 the timestamps jump by 10 s (a new talkspurt / switched source).
            let ts = u32::from(seq) * 160 + if seq >= 50 { 80_000 } else { 0 };
            sim.send(20 * u64::from(seq), seq, ts);
        }
        let outs = sim.run_until(2100);
        assert_eq!(frames(&outs), (0..100).collect::<Vec<_>>());
        let st = sim.jb.stats();
        assert!(st.jitter_ms < 1.0, "{st:?}");
        assert_eq!(st.delay_ms, 40);
    }

    #[test]
    fn timestamps_wrapping_at_2_pow_32_are_not_jitter() {
        let mut sim = Sim::new(JitterConfig::default());
        for seq in 0u16..100 {
            let ts = (u32::MAX - 5000).wrapping_add(u32::from(seq) * 160);
            sim.send(20 * u64::from(seq), seq, ts);
        }
        sim.run_until(2100);
        assert!(sim.jb.stats().jitter_ms < 1.0);
    }

    #[test]
    fn the_buffer_is_send() {
        fn is_send<T: Send>() {}
        is_send::<JitterBuffer>();
    }
}
