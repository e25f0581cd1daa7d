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

#[path = "../tests/common/mod.rs"]
mod fixtures;

mod common;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io::Write;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, anyhow, bail};
use common::capture::{Capture, Frame, ms, nanos};
use common::report::{cell, ratio, stats};
use common::testbed::{
    Samples, Span, Testbed, baresip_program, dialtone_program, figure_stats, rounds, runs_from_env,
};
use common::ua::{Kind, STEP, rtp_pairs, spawn};
use common::usage::{Usage, measure};
use fixtures::peers::{self, HOST, PortBlock};

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
    let (mut b, _) = spawn(Kind::Dialtone, program, &b_args)?;
    let (mut a, _) = spawn(Kind::Dialtone, program, &a_args)?;
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
    let runs = runs_from_env()?;
    let dialtone_bin = dialtone_program("media")?;
    let baresip_bin = baresip_program()?;
    let load_before = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let begun = Instant::now();
    println!("media: Dialtone vs baresip on loopback, {runs} latency runs each (BENCH_RUNS)");
    println!("  dialtone: {}", dialtone_bin.display());

    // Dialtone offers what baresip does (its harness config: PCMU, PCMA).
    let bed = Testbed::start(dialtone_bin.clone(), baresip_bin, Some("PCMU,PCMA"))?;
    let setups = &bed.setups;
    let mut work = tempfile::Builder::new()
        .prefix("dialtone-bench-media-")
        .tempdir()
        .context("creating a temp dir")?;
    let keep = std::env::var_os("BENCH_KEEP_CAPTURE").is_some();
    work.disable_cleanup(keep);
    if keep {
        println!("  work dir kept: {}", work.path().display());
    }
    let filter = format!(
        "udp port {} or udp portrange {}-{} or udp portrange {}-{}",
        bed.kam.port(),
        setups[0].rtp.0,
        setups[0].rtp.1,
        setups[1].rtp.0,
        setups[1].rtp.1
    );
    let mut capture = Capture::start(work.path(), "sip-rtp", &filter, bed.kam.port())?;

    let mut uas = bed.start_uas()?;
    thread::sleep(SETTLE);
    let window = |action, span: Span| Window {
        kind: setups[span.ua].kind,
        action,
        sip_port: setups[span.ua].sip_port,
        rtp: setups[span.ua].rtp,
        from: span.from,
        to: span.to,
    };
    // 1. incoming; run 0 is a warm-up.
    let incoming = rounds(runs, SETTLE, &mut uas, |i, ua| bed.incoming_call(i, ua))?;
    let mut windows: Vec<Window> = incoming
        .into_iter()
        .map(|s| window(Action::Incoming, s))
        .collect();
    print!("  incoming calls done");
    std::io::stdout().flush().ok();
    // 2. outgoing, each call held until the echo is back for sure.
    let outgoing = rounds(runs, SETTLE, &mut uas, |_, ua| {
        ua.call(&bed.echo_uri, Duration::from_millis(150))
    })?;
    windows.extend(outgoing.into_iter().map(|s| window(Action::Outgoing, s)));
    let frames = capture.finish()?;
    drop(capture);
    let samples = analyse(&windows, &frames)?;
    println!(
        ", outgoing calls done ({:.1} s)",
        begun.elapsed().as_secs_f64()
    );

    // 4. two engines (before the CPU figures: it captures too).
    let m2e = two_engines(&dialtone_bin, &bed.ports, work.path())?;
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
                ua.dial(&bed.echo_uri)?;
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
    drop(bed);
    Ok(())
}

// ---------------------------------------------------------------------------------------------------
// The report

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
        let (d, b) = figure_stats(samples, figure);
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
