//! Media figures of Dialtone next to baresip, on loopback, in one run: the same Kamailio, the same
//! sipp echo UAS and sipp UAC, timed on the wire. Prints a table; not a pass/fail test.
//!
//! ```sh
//! cargo bench --bench media                  # BENCH_RUNS=20 for more latency runs (default 10)
//! ```
//!
//! Figures:
//! 1. incoming INVITE → first RTP sent (auto-answer): a sipp UAC (sending no media) calls the UA
//!    through Kamailio; from the INVITE arriving at the UA's SIP port to the first RTP packet
//!    leaving the UA's RTP ports.
//! 2. outgoing INVITE → first RTP received: the UA calls `sip:echo@…` (the sipp UAS, which echoes
//!    RTP) through Kamailio (407 first); from the INVITE with credentials leaving the UA to the
//!    first RTP packet arriving at its RTP ports.
//! 3. CPU (% of one core: utime + stime from /proc/PID/stat over [`CPU_WINDOW`]) and RSS (VmRSS at
//!    the end of the window), idle (registered, no call) and in one PCMU call to the sipp echo; for
//!    Dialtone also with 2, 4 and 5 calls at once, giving the marginal CPU of the 2nd and 5th call.
//! 4. Mouth-to-ear minus devices through two Dialtone engines (no registrar): A (`--audio-in
//!    wav:BURST`, silence then a 1 kHz burst, looped) calls B directly (`--auto-answer`, `--audio-out
//!    wav:OUT`). The media clock of each engine starts with its first RTP packet (captured on the
//!    wire), and file sources and sinks move 20 ms per tick from there: the burst is "spoken"
//!    at A during the 20 ms before the tick that takes it (A's first packet + onset − 20 ms), and
//!    "heard" at B when B's tick writes it (B's first packet + its offset in OUT.wav). Also B's own
//!    view: the jitter buffer delay from `stats` + one 20 ms frame.
//!
//! The capture is `dumpcap` on `lo` (Kamailio's port and the UAs' RTP ports), decoded with `tshark`
//! (needs root or CAP_NET_RAW); it is stopped before the CPU figures. Environment: `BENCH_RUNS`,
//! `BENCH_DIALTONE=PATH` (another build), `BENCH_KEEP_CAPTURE=1` (keeps the capture, prints its path).

#[path = "../tests/common/peers.rs"]
#[allow(dead_code)]
mod peers;

mod common;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, anyhow, bail};
use common::capture::{Capture, Frame, ms, nanos};
use common::report::{Stats, stats};
use common::usage::{Usage, measure};
use peers::{BaresipConfig, HOST, Kamailio, PortBlock, SippUac, SippUas, find_program};

/// How long any one step may take before the bench gives up.
const STEP: Duration = Duration::from_secs(10);
/// Pause after each call so that the BYE transactions are over.
const SETTLE: Duration = Duration::from_millis(50);
/// CPU is averaged over this long.
const CPU_WINDOW: Duration = Duration::from_secs(10);
/// The burst file of figure 4: silence, then a tone, looped (whole 20 ms frames).
const BURST_SILENCE_MS: u32 = 300;
const BURST_TONE_MS: u32 = 100;
/// How long the two engines talk in figure 4 (several bursts).
const TWO_ENGINES_TALK: Duration = Duration::from_millis(3500);

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("media: not run (no --bench); run it with `cargo bench --bench media`");
        return;
    }
    if let Err(e) = run() {
        eprintln!("\nmedia: FAILED: {e:#}");
        std::process::exit(1);
    }
}

// ---------------------------------------------------------------------------------------------------
// The user agents

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Dialtone,
    Baresip,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Dialtone => "dialtone",
            Kind::Baresip => "baresip",
        }
    }
}

struct UaSetup {
    kind: Kind,
    program: PathBuf,
    args: Vec<String>,
    user: &'static str,
    sip_port: u16,
    rtp: (u16, u16),
    _dir: Option<tempfile::TempDir>,
}

impl UaSetup {
    fn dialtone(
        program: PathBuf,
        user: &'static str,
        sip_port: u16,
        rtp: (u16, u16),
        kam: u16,
    ) -> UaSetup {
        let args = [
            "--headless".to_string(),
            "--account".into(),
            format!("sip:{user}@{HOST}:{kam}"),
            "--password".into(),
            format!("{user}pw"),
            "--listen".into(),
            format!("{HOST}:{sip_port}"),
            "--rtp-ports".into(),
            format!("{}-{}", rtp.0, rtp.1),
            "--auto-answer".into(),
            // Like baresip's aufile tone and aubridge: no sound card; the same codecs offered.
            "--audio-in".into(),
            "tone:440".into(),
            "--audio-out".into(),
            "null".into(),
            "--codecs".into(),
            "PCMU,PCMA".into(),
        ];
        UaSetup {
            kind: Kind::Dialtone,
            program,
            args: args.to_vec(),
            user,
            sip_port,
            rtp: rtp_pairs(rtp),
            _dir: None,
        }
    }

    fn baresip(
        program: PathBuf,
        user: &'static str,
        sip_port: u16,
        rtp: (u16, u16),
        kam: u16,
    ) -> Result<UaSetup> {
        let config = BaresipConfig::new(user, sip_port, rtp).registrar(kam);
        let dir = config.write_dir()?;
        Ok(UaSetup {
            kind: Kind::Baresip,
            program,
            args: vec!["-f".into(), dir.path().display().to_string()],
            user,
            sip_port,
            rtp: rtp_pairs(rtp),
            _dir: Some(dir),
        })
    }

    fn spawn(&self) -> Result<Ua> {
        spawn_ua(self.kind, &self.program, &self.args)
    }
}

/// The ports a UA given the RTP range `rtp` may send from: baresip 1.0 rounds an odd first port
/// down to an even one (its RTP on first − 1), so whole RTP/RTCP pairs around the range.
fn rtp_pairs(rtp: (u16, u16)) -> (u16, u16) {
    (rtp.0 & !1, rtp.1 | 1)
}

fn spawn_ua(kind: Kind, program: &Path, args: &[String]) -> Result<Ua> {
    let (reader, writer) = std::io::pipe().context("creating a pipe")?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(writer.try_clone().context("cloning a pipe")?)
        .stderr(writer)
        .process_group(0);
    peers::die_with_parent(&mut cmd, libc::SIGKILL);
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {}: {cmd:?}", kind.name()))?;
    drop(cmd);
    let stdin = child.stdin.take();
    let (tx, lines) = mpsc::channel();
    thread::Builder::new()
        .name(format!("{}-output", kind.name()))
        .spawn(move || {
            let mut reader = BufReader::new(reader);
            let mut line = Vec::new();
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let text = String::from_utf8_lossy(&line).trim_end().to_string();
                        if tx.send(text).is_err() {
                            break;
                        }
                    }
                }
            }
        })
        .context("spawning an output reader thread")?;
    Ok(Ua {
        kind,
        child,
        stdin,
        lines,
        log: Vec::new(),
        exited: false,
    })
}

struct Ua {
    kind: Kind,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    log: Vec<String>,
    exited: bool,
}

enum Seen {
    Nothing,
    Done,
    Failed,
}

impl Ua {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn command(&mut self, line: &str) -> Result<()> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| anyhow!("{}: stdin closed", self.kind.name()))?;
        writeln!(stdin, "{line}")
            .and_then(|()| stdin.flush())
            .map_err(|e| self.error(&format!("writing {line:?} to its stdin: {e}")))
    }

    /// Consumes output lines until `judge` says done; returns that line.
    fn wait(&mut self, what: &str, judge: impl Fn(&str) -> Seen) -> Result<String> {
        let deadline = Instant::now() + STEP;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let seen = judge(&line);
                    self.log.push(line.clone());
                    match seen {
                        Seen::Nothing => {}
                        Seen::Done => return Ok(line),
                        Seen::Failed => {
                            return Err(self.error(&format!("failed while waiting for {what}")));
                        }
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    return Err(self.error(&format!("no {what} within {STEP:?}")));
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait().ok();
                    self.exited = true;
                    return Err(
                        self.error(&format!("exited ({status:?}) while waiting for {what}"))
                    );
                }
            }
        }
    }

    /// Drops output read so far (baresip's status lines during long calls).
    fn drain(&mut self) {
        for line in self.lines.try_iter() {
            self.log.push(line);
        }
        let keep = self.log.len().saturating_sub(200);
        self.log.drain(..keep);
    }

    fn wait_registered(&mut self) -> Result<()> {
        match self.kind {
            Kind::Dialtone => {
                self.wait("`registration` `registered` event", |l| {
                    match json_field(l, "registration", "state").as_deref() {
                        Some("registered") => Seen::Done,
                        Some("failed") => Seen::Failed,
                        _ => Seen::Nothing,
                    }
                })
            }
            Kind::Baresip => self.wait("\"registered successfully\"", |l| {
                if l.contains("registered successfully") {
                    Seen::Done
                } else if l.contains("reg: ") {
                    Seen::Failed
                } else {
                    Seen::Nothing
                }
            }),
        }
        .map(|_| ())
    }

    fn dial(&mut self, uri: &str) -> Result<()> {
        match self.kind {
            Kind::Dialtone => self.command(&format!("call {uri}")),
            Kind::Baresip => self.command(&format!("/dial {uri}")),
        }
    }

    fn hangup(&mut self) -> Result<()> {
        match self.kind {
            Kind::Dialtone => self.command("hangup"),
            Kind::Baresip => self.command("/hangup"),
        }
    }

    fn wait_established(&mut self) -> Result<()> {
        match self.kind {
            Kind::Dialtone => self.wait("`call` `established` event", |l| {
                match json_field(l, "call", "state").as_deref() {
                    Some("established") => Seen::Done,
                    Some("ended") => Seen::Failed,
                    _ => Seen::Nothing,
                }
            }),
            Kind::Baresip => self.wait("\"Call established\"", |l| {
                if l.contains("Call established") {
                    Seen::Done
                } else if l.contains("session closed") {
                    Seen::Failed
                } else {
                    Seen::Nothing
                }
            }),
        }
        .map(|_| ())
    }

    fn wait_ended(&mut self, by_peer: bool) -> Result<()> {
        match self.kind {
            Kind::Dialtone => self.wait("`call` `ended` event", |l| {
                match json_field(l, "call", "state").as_deref() {
                    Some("ended") => Seen::Done,
                    _ => Seen::Nothing,
                }
            }),
            Kind::Baresip => {
                let needle = if by_peer {
                    "session closed"
                } else {
                    "terminate call"
                };
                self.wait(&format!("{needle:?}"), move |l| {
                    if l.contains(needle) {
                        Seen::Done
                    } else {
                        Seen::Nothing
                    }
                })
            }
        }
        .map(|_| ())
    }

    /// Dialtone: the `stats` event's calls.
    fn stats(&mut self) -> Result<Vec<serde_json::Value>> {
        self.command("stats")?;
        let line = self.wait("`stats` event", |l| {
            if json_value(l)
                .is_some_and(|v| v.get("event").and_then(|e| e.as_str()) == Some("stats"))
            {
                Seen::Done
            } else {
                Seen::Nothing
            }
        })?;
        let v = json_value(&line).ok_or_else(|| anyhow!("bad stats line {line:?}"))?;
        Ok(v.get("calls")
            .and_then(|c| c.as_array())
            .cloned()
            .unwrap_or_default())
    }

    fn quit(mut self) -> Result<()> {
        match self.kind {
            Kind::Dialtone => self.command("quit")?,
            Kind::Baresip => self.command("/quit")?,
        }
        self.stdin = None;
        let deadline = Instant::now() + STEP;
        loop {
            if let Some(status) = self.child.try_wait().context("waiting for a UA")? {
                self.exited = true;
                if !status.success() && self.kind == Kind::Dialtone {
                    return Err(self.error(&format!("exited with {status} after quit")));
                }
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(self.error("did not exit after quit"));
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    fn error(&self, what: &str) -> anyhow::Error {
        let mut log = self.log.clone();
        log.extend(self.lines.try_iter());
        let tail = log[log.len().saturating_sub(40)..].join("\n");
        anyhow!(
            "{}: {what}\n----- last output of {} -----\n{tail}\n----- end -----",
            self.kind.name(),
            self.kind.name()
        )
    }
}

impl Drop for Ua {
    fn drop(&mut self) {
        if !self.exited {
            // SAFETY: plain syscall on our own child's process group (not reaped yet).
            unsafe {
                libc::kill(-(self.child.id() as libc::pid_t), libc::SIGKILL);
            }
            let _ = self.child.wait();
        }
    }
}

fn json_value(line: &str) -> Option<serde_json::Value> {
    if !line.starts_with('{') {
        return None;
    }
    serde_json::from_str(line).ok()
}

/// `field` of a Dialtone JSON event line of kind `event`.
fn json_field(line: &str, event: &str, field: &str) -> Option<String> {
    let v = json_value(line)?;
    if v.get("event")?.as_str()? != event {
        return None;
    }
    Some(v.get(field)?.as_str()?.to_string())
}

// ---------------------------------------------------------------------------------------------------
// Latency windows

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    Incoming,
    Outgoing,
}

struct Window {
    kind: Kind,
    action: Action,
    sip_port: u16,
    rtp: (u16, u16),
    from: SystemTime,
    to: SystemTime,
}

const F_INCOMING: &str = "incoming INVITE → first RTP sent (auto-answer)";
const F_OUTGOING: &str = "outgoing INVITE with credentials → first RTP received";

type Samples = BTreeMap<(&'static str, Kind), Vec<f64>>;

fn analyse(windows: &[Window], frames: &[Frame]) -> Result<Samples> {
    let mut samples = Samples::new();
    for w in windows {
        let (from, to) = (nanos(w.from), nanos(w.to));
        let in_rtp = |p: u16| (w.rtp.0..=w.rtp.1).contains(&p);
        let inside: Vec<&Frame> = frames
            .iter()
            .filter(|f| f.at >= from && f.at <= to)
            .collect();
        let what = format!("{} {:?}", w.kind.name(), w.action);
        match w.action {
            Action::Incoming => {
                let invite = inside
                    .iter()
                    .find(|f| f.dst == w.sip_port && f.is_request("INVITE"))
                    .ok_or_else(|| anyhow!("{what}: no INVITE to the UA in the capture"))?;
                let rtp = inside
                    .iter()
                    .find(|f| f.rtp && in_rtp(f.src) && f.at >= invite.at)
                    .ok_or_else(|| anyhow!("{what}: no RTP from the UA in the capture"))?;
                samples
                    .entry((F_INCOMING, w.kind))
                    .or_default()
                    .push(ms(rtp.at - invite.at));
            }
            Action::Outgoing => {
                let ok = inside
                    .iter()
                    .find(|f| f.dst == w.sip_port && f.is_response(200, "INVITE"))
                    .ok_or_else(|| anyhow!("{what}: no 200 OK to the UA's INVITE"))?;
                let answered = inside
                    .iter()
                    .find(|f| f.src == w.sip_port && f.is_request("INVITE") && f.cseq == ok.cseq)
                    .ok_or_else(|| anyhow!("{what}: no answered INVITE"))?;
                let rtp = inside
                    .iter()
                    .find(|f| f.rtp && in_rtp(f.dst) && f.at >= answered.at)
                    .ok_or_else(|| anyhow!("{what}: no RTP to the UA in the capture"))?;
                samples
                    .entry((F_OUTGOING, w.kind))
                    .or_default()
                    .push(ms(rtp.at - answered.at));
            }
        }
    }
    Ok(samples)
}

// ---------------------------------------------------------------------------------------------------
// Two engines: mouth to ear

/// 8 kHz WAV: `BURST_SILENCE_MS` of silence, then `BURST_TONE_MS` of 1 kHz at half scale.
fn burst_wav() -> Vec<u8> {
    let silence = (8 * BURST_SILENCE_MS) as usize;
    let mut samples = vec![0i16; silence];
    let tone = peers::tone_samples(1000, 1);
    samples.extend_from_slice(&tone[..(8 * BURST_TONE_MS) as usize]);
    peers::wav_8k(&samples)
}

/// A 16-bit PCM WAV: (rate, first channel's samples).
fn read_wav(path: &Path) -> Result<(u32, Vec<i16>)> {
    let bytes = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if bytes.len() < 12 || &bytes[..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        bail!("{}: not a WAV file", path.display());
    }
    let (mut rate, mut channels, mut at) = (0u32, 1usize, 12usize);
    while at + 8 <= bytes.len() {
        let id = &bytes[at..at + 4];
        let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into()?) as usize;
        let body = &bytes[at + 8..(at + 8 + len).min(bytes.len())];
        if id == b"fmt " && body.len() >= 16 {
            channels = usize::from(u16::from_le_bytes([body[2], body[3]])).max(1);
            rate = u32::from_le_bytes(body[4..8].try_into()?);
        } else if id == b"data" {
            let samples = body
                .chunks_exact(2 * channels)
                .map(|c| i16::from_le_bytes([c[0], c[1]]))
                .collect();
            return Ok((rate, samples));
        }
        at += 8 + len + (len & 1);
    }
    bail!("{}: no data chunk", path.display())
}

/// Sample offsets where the signal rises above a quarter of full scale after at least 100 ms
/// below it.
fn onsets(samples: &[i16], rate: u32) -> Vec<usize> {
    let quiet_needed = rate as usize / 10;
    let mut quiet = quiet_needed; // the recording starts silent
    let mut found = Vec::new();
    for (i, &s) in samples.iter().enumerate() {
        if s.unsigned_abs() > 8192 {
            if quiet >= quiet_needed {
                found.push(i);
            }
            quiet = 0;
        } else {
            quiet += 1;
        }
    }
    found
}

struct MouthToEar {
    /// Per burst heard at B: from entering A's source to leaving B's sink, ms.
    measured: Vec<f64>,
    /// B's `stats`: jitter buffer delay, ms.
    jitter_buffer_ms: Option<f64>,
    /// Bursts A's source started during the call (about).
    bursts_sent: usize,
}

fn two_engines(program: &Path, ports: &PortBlock, work: &Path) -> Result<MouthToEar> {
    let (a_sip, b_sip) = (ports.sip_port(), ports.sip_port());
    let (a_rtp, b_rtp) = (ports.rtp_ports(10), ports.rtp_ports(10));
    let burst = work.join("burst.wav");
    fs::write(&burst, burst_wav()).context("writing burst.wav")?;
    let out = work.join("out.wav");
    let config = work.join("no-settings.toml"); // absent: default settings, not the user's
    let common = |sip: u16, rtp: (u16, u16)| {
        vec![
            "--headless".to_string(),
            "--config".into(),
            config.display().to_string(),
            "--listen".into(),
            format!("{HOST}:{sip}"),
            "--rtp-ports".into(),
            format!("{}-{}", rtp.0, rtp.1),
            "--codecs".into(),
            "PCMU".into(),
        ]
    };
    let mut b_args = common(b_sip, b_rtp);
    b_args.extend([
        "--auto-answer".into(),
        "--audio-in".into(),
        "silence".into(),
        "--audio-out".into(),
        format!("wav:{}", out.display()),
    ]);
    let mut a_args = common(a_sip, a_rtp);
    a_args.extend([
        "--audio-in".into(),
        format!("wav:{}", burst.display()),
        "--audio-out".into(),
        "null".into(),
    ]);
    let (a_rtp_any, b_rtp_any) = (rtp_pairs(a_rtp), rtp_pairs(b_rtp));
    let filter = format!(
        "udp portrange {}-{} or udp portrange {}-{}",
        a_rtp_any.0, a_rtp_any.1, b_rtp_any.0, b_rtp_any.1
    );
    let mut capture = Capture::start(work, "two-engines", &filter, a_sip)?;
    let mut b = spawn_ua(Kind::Dialtone, program, &b_args)?;
    let mut a = spawn_ua(Kind::Dialtone, program, &a_args)?;
    // Let both bind their sockets.
    let deadline = Instant::now() + STEP;
    while !(peers::udp_listening(a_sip) && peers::udp_listening(b_sip)) {
        if Instant::now() > deadline {
            bail!("the two engines did not listen on {a_sip} and {b_sip}");
        }
        thread::sleep(Duration::from_millis(5));
    }
    a.command(&format!("call sip:b@{HOST}:{b_sip}"))?;
    a.wait_established()?;
    b.wait_established()?;
    thread::sleep(TWO_ENGINES_TALK);
    let calls = b.stats()?;
    let jitter_buffer_ms = calls
        .first()
        .and_then(|c| c.pointer("/media/jitter_buffer_ms"))
        .and_then(|v| v.as_f64());
    a.hangup()?;
    a.wait_ended(false)?;
    b.wait_ended(true)?;
    a.quit()?;
    b.quit()?;
    let frames = capture.finish()?;
    let first_sent = |rtp: (u16, u16)| {
        frames
            .iter()
            .find(|f| f.rtp && (rtp.0..=rtp.1).contains(&f.src))
            .map(|f| f.at)
            .ok_or_else(|| anyhow!("no RTP from ports {rtp:?} in the capture"))
    };
    let (a0, b0) = (first_sent(a_rtp_any)?, first_sent(b_rtp_any)?);
    let (rate, rec) = read_wav(&out)?;
    let loop_ns = i128::from(BURST_SILENCE_MS + BURST_TONE_MS) * 1_000_000;
    let mut measured = Vec::new();
    for n in onsets(&rec, rate) {
        // Heard: B's clock start + the sample's offset in B's recording.
        let heard = b0 + n as i128 * 1_000_000_000 / i128::from(rate);
        // Spoken: during the 20 ms before A's tick that took the burst's first frame; the
        // burst starts a whole number of frames into each loop of the file.
        let onset_in_loop = i128::from(BURST_SILENCE_MS) * 1_000_000 - 20_000_000;
        // The latest burst onset at A before it was heard.
        let k = (heard - a0 - onset_in_loop).div_euclid(loop_ns);
        if k < 0 {
            continue;
        }
        let spoken = a0 + onset_in_loop + k * loop_ns;
        measured.push(ms(heard - spoken));
    }
    let bursts_sent =
        ((ms(nanos(SystemTime::now()) - a0) as u32) / (BURST_SILENCE_MS + BURST_TONE_MS)) as usize;
    Ok(MouthToEar {
        measured,
        jitter_buffer_ms,
        bursts_sent,
    })
}

// ---------------------------------------------------------------------------------------------------
// The run

fn run() -> Result<()> {
    let runs: usize = match std::env::var("BENCH_RUNS") {
        Ok(v) => v
            .parse()
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| anyhow!("BENCH_RUNS={v:?}: expected a positive whole number"))?,
        Err(_) => 10,
    };
    let dialtone_bin = std::env::var_os("BENCH_DIALTONE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_dialtone")));
    if !dialtone_bin.exists() {
        bail!("{} not found", dialtone_bin.display());
    }
    let baresip_bin = find_program("baresip")
        .ok_or_else(|| anyhow!("baresip not found: install it with scripts/install-deps.sh"))?;
    let load_before = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let begun = Instant::now();
    println!("media: Dialtone vs baresip on loopback, {runs} latency runs each (BENCH_RUNS)");
    println!("  dialtone: {}", dialtone_bin.display());

    let ports = PortBlock::try_acquire()?;
    let kam_port = ports.port();
    let echo_port = ports.sip_port();
    let kam = Kamailio::start(kam_port, echo_port)?;
    let _echo = SippUas::start(echo_port, ports.rtp_ports(4).0)?;
    let (uac_port, uac_rtp) = (ports.sip_port(), ports.rtp_ports(4).0);
    let mut work = tempfile::Builder::new()
        .prefix("dialtone-bench-media-")
        .tempdir()
        .context("creating a temp dir")?;
    let keep = std::env::var_os("BENCH_KEEP_CAPTURE").is_some();
    work.disable_cleanup(keep);
    if keep {
        println!("  work dir kept: {}", work.path().display());
    }
    let setups = [
        UaSetup::dialtone(
            dialtone_bin.clone(),
            "carol",
            ports.sip_port(),
            ports.rtp_ports(10),
            kam.port(),
        ),
        UaSetup::baresip(
            baresip_bin,
            "bob",
            ports.sip_port(),
            ports.rtp_ports(10),
            kam.port(),
        )?,
    ];
    let filter = format!(
        "udp port {} or udp portrange {}-{} or udp portrange {}-{}",
        kam.port(),
        setups[0].rtp.0,
        setups[0].rtp.1,
        setups[1].rtp.0,
        setups[1].rtp.1
    );
    let mut capture = Capture::start(work.path(), "sip-rtp", &filter, kam.port())?;
    let echo_uri = format!("sip:echo@{HOST}:{}", kam.port());

    let mut uas = Vec::new();
    for setup in &setups {
        let mut ua = setup.spawn()?;
        ua.wait_registered()?;
        uas.push(ua);
    }
    thread::sleep(SETTLE);
    let mut windows = Vec::new();
    // 1. incoming; run 0 is a warm-up.
    for run in 0..=runs {
        for i in order(run) {
            let (setup, ua) = (&setups[i], &mut uas[i]);
            let from = SystemTime::now();
            let call = SippUac::new(uac_port, uac_rtp)
                .without_media()
                .hold(Duration::from_millis(100))
                .run(kam.port(), setup.user)?;
            if !call.success() {
                bail!("sipp could not call {}:\n{call}", setup.kind.name());
            }
            ua.wait_established()?;
            ua.wait_ended(true)?;
            thread::sleep(SETTLE);
            if run > 0 {
                windows.push(Window {
                    kind: setup.kind,
                    action: Action::Incoming,
                    sip_port: setup.sip_port,
                    rtp: setup.rtp,
                    from,
                    to: SystemTime::now(),
                });
            }
        }
    }
    print!("  incoming calls done");
    std::io::stdout().flush().ok();
    // 2. outgoing.
    for run in 0..=runs {
        for i in order(run) {
            let (setup, ua) = (&setups[i], &mut uas[i]);
            let from = SystemTime::now();
            ua.dial(&echo_uri)?;
            ua.wait_established()?;
            // Until the echo is back for sure.
            thread::sleep(Duration::from_millis(150));
            ua.hangup()?;
            ua.wait_ended(false)?;
            thread::sleep(SETTLE);
            if run > 0 {
                windows.push(Window {
                    kind: setup.kind,
                    action: Action::Outgoing,
                    sip_port: setup.sip_port,
                    rtp: setup.rtp,
                    from,
                    to: SystemTime::now(),
                });
            }
        }
    }
    let frames = capture.finish()?;
    drop(capture);
    let samples = analyse(&windows, &frames)?;
    println!(
        ", outgoing calls done ({:.1} s)",
        begun.elapsed().as_secs_f64()
    );

    // 4. two engines (before the CPU figures: it captures too).
    let m2e = two_engines(&dialtone_bin, &ports, work.path())?;
    println!(
        "  two engines done ({:.1} s)",
        begun.elapsed().as_secs_f64()
    );

    // 3. CPU and RSS, one UA at a time, the other idle.
    let mut usage: BTreeMap<(Kind, usize), Usage> = BTreeMap::new();
    for (i, setup) in setups.iter().enumerate() {
        let ua = &mut uas[i];
        thread::sleep(Duration::from_millis(500));
        usage.insert(
            (setup.kind, 0),
            measure(ua.pid(), CPU_WINDOW, || ua.drain())?,
        );
        let counts: &[usize] = match setup.kind {
            Kind::Dialtone => &[1, 2, 4, 5],
            Kind::Baresip => &[1],
        };
        let mut calls = 0;
        for &n in counts {
            while calls < n {
                ua.dial(&echo_uri)?;
                ua.wait_established()?;
                calls += 1;
            }
            thread::sleep(Duration::from_millis(300));
            usage.insert(
                (setup.kind, n),
                measure(ua.pid(), CPU_WINDOW, || ua.drain())?,
            );
        }
        for _ in 0..calls {
            ua.hangup()?;
            ua.wait_ended(false)?;
        }
        print!("  {} CPU done", setup.kind.name());
        std::io::stdout().flush().ok();
    }
    println!(" ({:.1} s)", begun.elapsed().as_secs_f64());
    for ua in uas {
        ua.quit()?;
    }
    let load_after = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    print_report(&samples, runs, &usage, &m2e, &load_before, &load_after);
    drop(kam);
    Ok(())
}

fn order(run: usize) -> [usize; 2] {
    if run.is_multiple_of(2) {
        [0, 1]
    } else {
        [1, 0]
    }
}

// ---------------------------------------------------------------------------------------------------
// The report

fn cell(s: &Option<Stats>) -> String {
    match s {
        Some(s) => format!("{:.2} ms ({:.2}–{:.2})", s.median, s.min, s.max),
        None => "–".to_string(),
    }
}

fn ratio(d: Option<f64>, b: Option<f64>) -> String {
    match (d, b) {
        (Some(d), Some(b)) if b > 0.0 => format!("{:.2}", d / b),
        _ => "–".to_string(),
    }
}

fn print_report(
    samples: &Samples,
    runs: usize,
    usage: &BTreeMap<(Kind, usize), Usage>,
    m2e: &MouthToEar,
    load_before: &str,
    load_after: &str,
) {
    let mut out = String::new();
    let _ = writeln!(out);
    let _ = writeln!(out, "| figure | Dialtone | baresip | Dialtone/baresip |");
    let _ = writeln!(out, "|---|---|---|---|");
    for figure in [F_INCOMING, F_OUTGOING] {
        let d = stats(
            samples
                .get(&(figure, Kind::Dialtone))
                .map_or(&[][..], |v| v),
        );
        let b = stats(samples.get(&(figure, Kind::Baresip)).map_or(&[][..], |v| v));
        let r = ratio(d.as_ref().map(|s| s.median), b.as_ref().map(|s| s.median));
        let _ = writeln!(out, "| {figure} | {} | {} | {r} |", cell(&d), cell(&b));
    }
    let u = |k: Kind, n: usize| usage.get(&(k, n));
    let rss = |x: Option<&Usage>| x.map(|u| u.rss_mib);
    let mib = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.1} MiB"));
    let fine = |x: Option<&Usage>| x.map(|u| u.cpu_fine_percent);
    let both = |x: Option<&Usage>| match x {
        Some(u) => format!("{:.2} % ({:.3} %)", u.cpu_percent, u.cpu_fine_percent),
        None => "–".to_string(),
    };
    for (label, n) in [("idle", 0), ("one PCMU call", 1)] {
        let (d, b) = (u(Kind::Dialtone, n), u(Kind::Baresip, n));
        let _ = writeln!(
            out,
            "| CPU, {label}: stat (schedstat) | {} | {} | {} |",
            both(d),
            both(b),
            ratio(fine(d), fine(b))
        );
        let _ = writeln!(
            out,
            "| RSS, {label} | {} | {} | {} |",
            mib(rss(d)),
            mib(rss(b)),
            ratio(rss(d), rss(b))
        );
    }
    // From schedstat: stat's 10 ms ticks are ±0.1 % over the window, as much as a call costs.
    let marginal = |n: usize| match (fine(u(Kind::Dialtone, n)), fine(u(Kind::Dialtone, n - 1))) {
        (Some(a), Some(b)) => Some(a - b),
        _ => None,
    };
    let first = marginal(1);
    for n in [1, 2, 5] {
        let m = marginal(n);
        let _ = writeln!(
            out,
            "| marginal CPU of call {n}, schedstat (Dialtone at {n} calls: {}, RSS {}) | {} | – | {} × call 1's |",
            both(u(Kind::Dialtone, n)),
            mib(rss(u(Kind::Dialtone, n))),
            m.map_or("–".to_string(), |v| format!("{v:.3} %")),
            ratio(m, first)
        );
    }
    let measured = stats(&m2e.measured);
    let _ = writeln!(
        out,
        "| mouth-to-ear minus devices, two Dialtones (measured, {} of ~{} bursts) | {} | – | – |",
        m2e.measured.len(),
        m2e.bursts_sent,
        cell(&measured)
    );
    let _ = writeln!(
        out,
        "| (B's jitter buffer delay from `stats` + one 20 ms frame) | {} | – | – |",
        m2e.jitter_buffer_ms.map_or("–".to_string(), |j| format!(
            "{:.0} ms ({j:.0} + 20)",
            j + 20.0
        ))
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Method: {runs} latency runs per UA (+1 warm-up), UAs alternating, one Kamailio and one sipp \
         echo UAS on 127.0.0.1/UDP; times are dumpcap capture stamps on lo (RTP told from RTCP by \
         its header). Incoming: a sipp UAC without media calls the UA through Kamailio; INVITE at \
         the UA's SIP port → first RTP from its RTP ports. Outgoing: the UA calls the sipp echo \
         (407 first); INVITE with credentials leaving → first (echoed) RTP arriving. CPU: \
         utime+stime from /proc/PID/stat over {} s, RSS: VmRSS at the end; Dialtone with \
         tone:440 in and null out, baresip with an aufile tone and aubridge; calls to the sipp \
         echo (PCMU); in parentheses the same from /proc/PID/task/*/schedstat (ns); marginal CPU of call n = \
         schedstat CPU with n calls − with n−1. Mouth-to-ear: see the bench's doc comment.",
        CPU_WINDOW.as_secs()
    );
    let _ = writeln!(
        out,
        "{}",
        common::report::machine_line(load_before, load_after)
    );
    print!("{out}");
}
