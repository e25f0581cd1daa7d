//! SIP latency of Dialtone next to baresip, on loopback, in one run: the same Kamailio, the same sipp
//! echo UAS, the same sipp UAC, the same way of starting and driving both user agents, timed on the
//! wire. Prints a table; not a pass/fail test.
//!
//! ```sh
//! cargo bench --bench sip_latency            # BENCH_RUNS=20 for more runs (default 10)
//! ```
//!
//! Figures (each run alternates which UA goes first):
//! 1. process start → REGISTER 200 OK: the parent stamps the wall clock right before it spawns the
//!    UA; the end is the capture time stamp of the 200 OK to the authenticated REGISTER arriving at
//!    the UA's port (REGISTER → 401 → REGISTER with credentials → 200, for both).
//! 2. incoming INVITE → 200 OK, auto-answer: a sipp UAC calls the UA's user through Kamailio; from
//!    the INVITE arriving at the UA's port to the UA's 200 OK leaving it.
//! 3. outgoing INVITE → 200 OK: the UA calls `sip:echo@127.0.0.1:PORT` (the sipp UAS) through
//!    Kamailio, which challenges the first INVITE with 407; from the INVITE that is answered (the one
//!    with credentials) leaving the UA to the 200 OK arriving at it, and from the first INVITE.
//!
//! The capture is `dumpcap` on `lo`, filtered to Kamailio's UDP port (every SIP message here goes
//! through Kamailio), decoded afterwards with `tshark` (Debian package `tshark`; needs root or
//! CAP_NET_RAW). The UAs are spawned by the same code with the same pipes, and each gets one warm-up
//! run that is not counted. Rows in parentheses break the figures down (the UA's own share of an
//! auth round trip, start-up until the first message, the parent reading the "registered" line).
//!
//! Environment: `BENCH_RUNS` (default 10); `BENCH_DIALTONE=PATH` measures another `dialtone`
//! binary (an older build, or a wrapper script running it under strace/perf);
//! `BENCH_KEEP_CAPTURE=1` keeps the capture file and prints its path.

#[path = "../tests/common/peers.rs"]
#[allow(dead_code)]
mod peers;

mod common;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, anyhow, bail};
use common::capture::{Capture, Frame, ms, nanos};
use common::report::{Stats, stats};
use peers::{BaresipConfig, HOST, Kamailio, PortBlock, SippUac, SippUas, find_program};

/// How long any one step may take before the bench gives up (they take milliseconds).
const STEP: Duration = Duration::from_secs(10);
/// Pause after each call and start-up, so that the BYE / un-REGISTER transactions are over and the
/// next measurement starts on a quiet machine.
const SETTLE: Duration = Duration::from_millis(50);

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` (or `--all-targets`) runs the binary
    // without it, only to see that it builds: no peers then.
    if !std::env::args().any(|a| a == "--bench") {
        println!(
            "sip_latency: not run (no --bench); run it with `cargo bench --bench sip_latency`"
        );
        return;
    }
    match run() {
        Ok(()) => {}
        Err(e) => {
            eprintln!("\nsip_latency: FAILED: {e:#}");
            std::process::exit(1);
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// The two user agents

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

/// Everything needed to start one UA, again and again, on the same ports.
struct UaSetup {
    kind: Kind,
    program: PathBuf,
    args: Vec<String>,
    user: &'static str,
    sip_port: u16,
    /// baresip's config directory (config, accounts, tone.wav); kept for the whole run.
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
            // Like baresip's aufile tone: a synthetic microphone, no sound card.
            "--audio-in".into(),
            "tone:440".into(),
            "--audio-out".into(),
            "null".into(),
        ];
        UaSetup {
            kind: Kind::Dialtone,
            program,
            args: args.to_vec(),
            user,
            sip_port,
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
        // The harness's config (tests/peers/baresip-config.in): auto-answer, PCMU/PCMA, a tone file
        // as microphone, no DTLS module.
        let config = BaresipConfig::new(user, sip_port, rtp).registrar(kam);
        let dir = config.write_dir()?;
        Ok(UaSetup {
            kind: Kind::Baresip,
            program,
            args: vec!["-f".into(), dir.path().display().to_string()],
            user,
            sip_port,
            _dir: Some(dir),
        })
    }

    /// Starts the UA; returns it and the wall-clock time taken right before the spawn.
    fn spawn(&self) -> Result<(Ua, SystemTime)> {
        let (reader, writer) = std::io::pipe().context("creating a pipe")?;
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .env_remove("RUST_LOG") // Dialtone's default log level (info), as a user runs it
            .stdin(Stdio::piped())
            .stdout(writer.try_clone().context("cloning a pipe")?)
            .stderr(writer)
            .process_group(0);
        peers::die_with_parent(&mut cmd, libc::SIGKILL);
        let started = SystemTime::now();
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {}: {cmd:?}", self.kind.name()))?;
        drop(cmd); // our copies of the pipe's write end: EOF once the UA has exited
        let stdin = child.stdin.take();
        let (tx, lines) = mpsc::channel();
        thread::Builder::new()
            .name(format!("{}-output", self.kind.name()))
            .spawn(move || {
                let mut reader = BufReader::new(reader);
                let mut line = Vec::new();
                loop {
                    line.clear();
                    match reader.read_until(b'\n', &mut line) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {
                            let at = SystemTime::now();
                            let text = String::from_utf8_lossy(&line).trim_end().to_string();
                            if tx.send((at, text)).is_err() {
                                break;
                            }
                        }
                    }
                }
            })
            .context("spawning an output reader thread")?;
        Ok((
            Ua {
                kind: self.kind,
                child,
                stdin,
                lines,
                log: Vec::new(),
                exited: false,
            },
            started,
        ))
    }
}

/// A running UA: its output, line by line, as the parent reads it.
struct Ua {
    kind: Kind,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<(SystemTime, String)>,
    /// Every line consumed so far (for error messages).
    log: Vec<String>,
    exited: bool,
}

/// What a line means to a wait: go on, done, or a failure.
enum Seen {
    Nothing,
    Done,
    Failed,
}

impl Ua {
    fn command(&mut self, line: &str) -> Result<()> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| anyhow!("{}: stdin closed", self.kind.name()))?;
        writeln!(stdin, "{line}")
            .and_then(|()| stdin.flush())
            .map_err(|e| self.error(&format!("writing {line:?} to its stdin: {e}")))
    }

    /// Consumes output lines until `judge` says done (returns when the parent read that line) or
    /// failed; fails on timeout and on exit too.
    fn wait(&mut self, what: &str, judge: impl Fn(&str) -> Seen) -> Result<SystemTime> {
        let deadline = Instant::now() + STEP;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok((at, line)) => {
                    let seen = judge(&line);
                    self.log.push(line);
                    match seen {
                        Seen::Nothing => {}
                        Seen::Done => return Ok(at),
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

    fn wait_registered(&mut self) -> Result<SystemTime> {
        match self.kind {
            Kind::Dialtone => {
                self.wait("`registration` `registered` event", |l| {
                    match json_event(l, "registration").as_deref() {
                        Some("registered") => Seen::Done,
                        Some("failed") => Seen::Failed,
                        _ => Seen::Nothing,
                    }
                })
            }
            // "All 1 useragent registered successfully!"; a failure logs "reg: <aor>: 401 …".
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

    fn wait_established(&mut self) -> Result<SystemTime> {
        match self.kind {
            Kind::Dialtone => self.wait("`call` `established` event", |l| {
                match json_event(l, "call").as_deref() {
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
    }

    /// Waits for the end of the current call (ours or the far end's hang-up).
    fn wait_ended(&mut self, by_peer: bool) -> Result<SystemTime> {
        match self.kind {
            Kind::Dialtone => self.wait("`call` `ended` event", |l| {
                match json_event(l, "call").as_deref() {
                    Some("ended") => Seen::Done,
                    _ => Seen::Nothing,
                }
            }),
            // The side that hangs up logs "call: terminate call" (before its BYE); the other side
            // "session closed: Connection reset by peer".
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
    }

    /// Asks the UA to quit (it un-registers first) and waits for it to exit.
    fn quit(mut self) -> Result<()> {
        match self.kind {
            Kind::Dialtone => self.command("quit")?,
            Kind::Baresip => self.command("/quit")?,
        }
        // End of input too: `dialtone --headless` at 159ed99 only exits once its stdin reader
        // returns (tokio's blocking stdin read holds the runtime's shutdown), i.e. at the next line
        // or EOF. Done for both UAs alike; it does not touch any figure (they end before the quit).
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
            thread::sleep(Duration::from_millis(2));
        }
    }

    fn error(&self, what: &str) -> anyhow::Error {
        // Lines still in the pipe help too.
        let mut log = self.log.clone();
        log.extend(self.lines.try_iter().map(|(_, l)| l));
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

/// The `state` of a Dialtone JSON event line of kind `event`.
fn json_event(line: &str, event: &str) -> Option<String> {
    if !line.starts_with('{') {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    if v.get("event")?.as_str()? != event {
        return None;
    }
    Some(v.get("state")?.as_str()?.to_string())
}

// ---------------------------------------------------------------------------------------------------
// What was done, to be matched with the capture afterwards

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    /// Process start; `register` waits for the registration and quits.
    Start,
    Incoming,
    Outgoing,
}

#[derive(Clone, Debug)]
struct Window {
    kind: Kind,
    action: Action,
    port: u16,
    /// Spawn time (Start) or when the call was set off.
    from: SystemTime,
    to: SystemTime,
    /// Start: when the parent read the UA's "registered" line.
    line_at: Option<SystemTime>,
}

const F_REGISTER: &str = "process start → REGISTER 200 OK";
const F_FIRST_REGISTER: &str = "  (process start → first REGISTER sent)";
const F_REGISTER_LINE: &str = "  (process start → \"registered\" line read)";
const F_INCOMING: &str = "incoming INVITE → 200 OK (auto-answer)";
const F_OUTGOING: &str = "outgoing INVITE with credentials → 200 OK";
const F_REGISTER_AUTH: &str = "  (401 in → REGISTER with credentials out)";
const F_OUTGOING_FIRST: &str = "  (outgoing first INVITE → 200 OK, via 407)";
const F_OUTGOING_AUTH: &str = "  (407 in → INVITE with credentials out)";
const FIGURES: [&str; 8] = [
    F_REGISTER,
    F_FIRST_REGISTER,
    F_REGISTER_AUTH,
    F_REGISTER_LINE,
    F_INCOMING,
    F_OUTGOING,
    F_OUTGOING_FIRST,
    F_OUTGOING_AUTH,
];

type Samples = BTreeMap<(&'static str, Kind), Vec<f64>>;

/// Turns each window into its figures, from the capture.
fn analyse(windows: &[Window], frames: &[Frame]) -> Result<Samples> {
    let mut samples = Samples::new();
    for w in windows {
        let (from, to) = (nanos(w.from), nanos(w.to));
        let inside: Vec<&Frame> = frames
            .iter()
            .filter(|f| f.at >= from && f.at <= to && (f.src == w.port || f.dst == w.port))
            .collect();
        let what = format!("{} {:?} at {:?}", w.kind.name(), w.action, w.from);
        let missing = |m: &str| {
            anyhow!(
                "{what}: no {m} in the capture ({} SIP messages of this UA in its window)",
                inside.len()
            )
        };
        let mut add = |figure: &'static str, value: f64| {
            samples.entry((figure, w.kind)).or_default().push(value)
        };
        match w.action {
            Action::Start => {
                let ok = inside
                    .iter()
                    .find(|f| f.dst == w.port && f.is_response(200, "REGISTER"))
                    .ok_or_else(|| missing("200 OK to a REGISTER"))?;
                let first = inside
                    .iter()
                    .find(|f| f.src == w.port && f.is_request("REGISTER"))
                    .ok_or_else(|| missing("REGISTER"))?;
                add(F_REGISTER, ms(ok.at - from));
                add(F_FIRST_REGISTER, ms(first.at - from));
                // The challenge of the first REGISTER and the REGISTER that answers it.
                let challenge = inside
                    .iter()
                    .find(|f| {
                        f.dst == w.port && f.status == Some(401) && f.call_id == first.call_id
                    })
                    .ok_or_else(|| missing("401 to the first REGISTER"))?;
                let retry = inside
                    .iter()
                    .find(|f| f.src == w.port && f.is_request("REGISTER") && f.at >= challenge.at)
                    .ok_or_else(|| missing("REGISTER with credentials"))?;
                add(F_REGISTER_AUTH, ms(retry.at - challenge.at));
                if let Some(line) = w.line_at {
                    add(F_REGISTER_LINE, ms(nanos(line) - from));
                }
            }
            Action::Incoming => {
                let invite = inside
                    .iter()
                    .find(|f| f.dst == w.port && f.is_request("INVITE"))
                    .ok_or_else(|| missing("INVITE to the UA"))?;
                let ok = inside
                    .iter()
                    .find(|f| {
                        f.src == w.port
                            && f.is_response(200, "INVITE")
                            && f.call_id == invite.call_id
                    })
                    .ok_or_else(|| missing("200 OK to the INVITE from the UA"))?;
                add(F_INCOMING, ms(ok.at - invite.at));
            }
            Action::Outgoing => {
                let ok = inside
                    .iter()
                    .find(|f| f.dst == w.port && f.is_response(200, "INVITE"))
                    .ok_or_else(|| missing("200 OK to the UA's INVITE"))?;
                let mine = |f: &&&Frame| {
                    f.src == w.port && f.is_request("INVITE") && f.call_id == ok.call_id
                };
                let first = inside
                    .iter()
                    .find(mine)
                    .ok_or_else(|| missing("INVITE from the UA"))?;
                let answered = inside
                    .iter()
                    .filter(mine)
                    .find(|f| f.cseq == ok.cseq)
                    .ok_or_else(|| missing("answered INVITE"))?;
                add(F_OUTGOING, ms(ok.at - answered.at));
                add(F_OUTGOING_FIRST, ms(ok.at - first.at));
                let challenge = inside
                    .iter()
                    .find(|f| f.dst == w.port && f.status == Some(407) && f.call_id == ok.call_id)
                    .ok_or_else(|| missing("407 to the first INVITE"))?;
                add(F_OUTGOING_AUTH, ms(answered.at - challenge.at));
            }
        }
    }
    Ok(samples)
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
    // cargo builds the release `dialtone` for the bench; BENCH_DIALTONE compares another build.
    let dialtone_bin = std::env::var_os("BENCH_DIALTONE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_dialtone")));
    if !dialtone_bin.exists() {
        bail!(
            "{} not found: run the bench with `cargo bench --bench sip_latency`, which builds it",
            dialtone_bin.display()
        );
    }
    let baresip_bin = find_program("baresip")
        .ok_or_else(|| anyhow!("baresip not found: install it with scripts/install-deps.sh"))?;
    let load_before = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let begun = Instant::now();

    println!(
        "sip_latency: Dialtone vs baresip on loopback, {runs} runs each (BENCH_RUNS), plus one warm-up"
    );
    println!("  dialtone: {}", dialtone_bin.display());

    let ports = PortBlock::try_acquire()?;
    let kam_port = ports.port();
    let echo_port = ports.sip_port();
    let kam = Kamailio::start(kam_port, echo_port)?;
    let _echo = SippUas::start(echo_port, ports.rtp_ports(4).0)?;
    let (uac_port, uac_rtp) = (ports.sip_port(), ports.rtp_ports(4).0);
    let mut work = tempfile::Builder::new()
        .prefix("dialtone-bench-")
        .tempdir()
        .context("creating a temp dir")?;
    work.disable_cleanup(std::env::var_os("BENCH_KEEP_CAPTURE").is_some());
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
    let mut capture = Capture::start(
        work.path(),
        "sip",
        &format!("udp port {}", kam.port()),
        kam.port(),
    )?;
    if std::env::var_os("BENCH_KEEP_CAPTURE").is_some() {
        let kept = work.path().join("sip.pcapng");
        println!(
            "  capture kept: {} (decode with -d udp.port=={},sip)",
            kept.display(),
            kam.port()
        );
    }
    let echo_uri = format!("sip:echo@{HOST}:{}", kam.port());
    let mut windows: Vec<Window> = Vec::new();

    // Run 0 is the warm-up (page cache, baresip's uuid file, Kamailio's first transactions).
    // 1. process start → registered; then quit (un-REGISTER) before the next start.
    for run in 0..=runs {
        for setup in ordered(&setups, run) {
            let (mut ua, from) = setup.spawn()?;
            let line_at = ua.wait_registered()?;
            thread::sleep(SETTLE);
            let to = SystemTime::now();
            ua.quit()?;
            thread::sleep(SETTLE);
            if run > 0 {
                windows.push(Window {
                    kind: setup.kind,
                    action: Action::Start,
                    port: setup.sip_port,
                    from,
                    to,
                    line_at: Some(line_at),
                });
            }
        }
    }
    print!("  start-up runs done");
    std::io::stdout().flush().ok();

    // 2 and 3: one long-lived process of each UA, calls alternating between them.
    let mut uas = Vec::new();
    for setup in &setups {
        let (mut ua, _) = setup.spawn()?;
        ua.wait_registered()?;
        uas.push(ua);
    }
    thread::sleep(SETTLE);
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
                    port: setup.sip_port,
                    from,
                    to: SystemTime::now(),
                    line_at: None,
                });
            }
        }
    }
    print!(", incoming calls done");
    std::io::stdout().flush().ok();
    for run in 0..=runs {
        for i in order(run) {
            let (setup, ua) = (&setups[i], &mut uas[i]);
            let from = SystemTime::now();
            ua.dial(&echo_uri)?;
            ua.wait_established()?;
            ua.hangup()?;
            ua.wait_ended(false)?;
            thread::sleep(SETTLE);
            if run > 0 {
                windows.push(Window {
                    kind: setup.kind,
                    action: Action::Outgoing,
                    port: setup.sip_port,
                    from,
                    to: SystemTime::now(),
                    line_at: None,
                });
            }
        }
    }
    println!(
        ", outgoing calls done ({:.1} s)",
        begun.elapsed().as_secs_f64()
    );
    for ua in uas {
        ua.quit()?;
    }
    let frames = capture.finish()?;
    let samples = analyse(&windows, &frames)?;
    let load_after = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    print_report(&samples, runs, &load_before, &load_after);
    drop(kam);
    Ok(())
}

/// Which UA goes first alternates from run to run.
fn order(run: usize) -> [usize; 2] {
    if run.is_multiple_of(2) {
        [0, 1]
    } else {
        [1, 0]
    }
}

fn ordered(setups: &[UaSetup; 2], run: usize) -> [&UaSetup; 2] {
    order(run).map(|i| &setups[i])
}

// ---------------------------------------------------------------------------------------------------
// The report

fn cell(s: &Option<Stats>) -> String {
    match s {
        Some(s) => format!("{:.2} ms ({:.2}–{:.2})", s.median, s.min, s.max),
        None => "–".to_string(),
    }
}

fn print_report(samples: &Samples, runs: usize, load_before: &str, load_after: &str) {
    let mut out = String::new();
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "| figure | Dialtone median (min–max) | baresip median (min–max) | Dialtone/baresip |"
    );
    let _ = writeln!(out, "|---|---|---|---|");
    for figure in FIGURES {
        let d = stats(
            samples
                .get(&(figure, Kind::Dialtone))
                .map_or(&[][..], |v| v),
        );
        let b = stats(samples.get(&(figure, Kind::Baresip)).map_or(&[][..], |v| v));
        let ratio = match (&d, &b) {
            (Some(d), Some(b)) if b.median > 0.0 => format!("{:.2}", d.median / b.median),
            _ => "–".to_string(),
        };
        for s in [&d, &b].into_iter().flatten() {
            if s.n != runs {
                let _ = writeln!(out, "(warning: {figure}: {} samples, not {runs})", s.n);
            }
        }
        let _ = writeln!(
            out,
            "| {} | {} | {} | {ratio} |",
            figure.trim(),
            cell(&d),
            cell(&b)
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Method: {runs} runs per UA (+1 warm-up), UAs alternating, one Kamailio 5.6 (registrar + proxy, \
         digest auth) and one sipp echo UAS, all on 127.0.0.1 over UDP. Times are capture stamps of a \
         dumpcap on lo filtered to Kamailio's port, decoded by tshark; process start is the parent's \
         wall clock right before spawn. Registration = REGISTER, 401, REGISTER with credentials, 200. \
         Incoming: a sipp UAC calls the UA through Kamailio (no challenge for sipp); auto-answer. \
         Outgoing: the UA calls the sipp UAS through Kamailio, which answers the first INVITE with \
         407. Rows in parentheses are for diagnosis; the \"registered\" line is Dialtone's JSON \
         `registration` event, baresip's \"registered successfully\", as read from the UA's stdout \
         pipe by the parent."
    );
    let _ = writeln!(
        out,
        "{}",
        common::report::machine_line(load_before, load_after)
    );
    print!("{out}");
}
