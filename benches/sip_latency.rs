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

#[path = "../tests/common/mod.rs"]
mod fixtures;

mod common;

use std::fmt::Write as _;
use std::fs;
use std::io::Write;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, anyhow};
use common::capture::{Capture, Frame, ms, nanos};
use common::report::{cell, ratio};
use common::testbed::{
    Samples, Span, Testbed, baresip_program, dialtone_program, figure_stats, order, rounds,
    runs_from_env,
};
use common::ua::Kind;

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
    let runs = runs_from_env()?;
    let dialtone_bin = dialtone_program("sip_latency")?;
    let baresip_bin = baresip_program()?;
    let load_before = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let begun = Instant::now();

    println!(
        "sip_latency: Dialtone vs baresip on loopback, {runs} runs each (BENCH_RUNS), plus one warm-up"
    );
    println!("  dialtone: {}", dialtone_bin.display());

    let bed = Testbed::start(dialtone_bin, baresip_bin, None)?;
    let setups = &bed.setups;
    let mut work = tempfile::Builder::new()
        .prefix("dialtone-bench-")
        .tempdir()
        .context("creating a temp dir")?;
    work.disable_cleanup(std::env::var_os("BENCH_KEEP_CAPTURE").is_some());
    let mut capture = Capture::start(
        work.path(),
        "sip",
        &format!("udp port {}", bed.kam.port()),
        bed.kam.port(),
    )?;
    if std::env::var_os("BENCH_KEEP_CAPTURE").is_some() {
        let kept = work.path().join("sip.pcapng");
        println!(
            "  capture kept: {} (decode with -d udp.port=={},sip)",
            kept.display(),
            bed.kam.port()
        );
    }
    let mut windows: Vec<Window> = Vec::new();

    // Run 0 is the warm-up (page cache, baresip's uuid file, Kamailio's first transactions).
    // 1. process start → registered; then quit (un-REGISTER) before the next start.
    for run in 0..=runs {
        for setup in order(run).map(|i| &setups[i]) {
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
    let mut uas = bed.start_uas()?;
    thread::sleep(SETTLE);
    let window = |action, span: Span| Window {
        kind: setups[span.ua].kind,
        action,
        port: setups[span.ua].sip_port,
        from: span.from,
        to: span.to,
        line_at: None,
    };
    let incoming = rounds(runs, SETTLE, &mut uas, |i, ua| bed.incoming_call(i, ua))?;
    windows.extend(incoming.into_iter().map(|s| window(Action::Incoming, s)));
    print!(", incoming calls done");
    std::io::stdout().flush().ok();
    let outgoing = rounds(runs, SETTLE, &mut uas, |_, ua| {
        ua.call(&bed.echo_uri, Duration::ZERO)
    })?;
    windows.extend(outgoing.into_iter().map(|s| window(Action::Outgoing, s)));
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
    drop(bed);
    Ok(())
}

// ---------------------------------------------------------------------------------------------------
// The report

fn print_report(samples: &Samples, runs: usize, load_before: &str, load_after: &str) {
    let mut out = String::new();
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "| figure | Dialtone median (min–max) | baresip median (min–max) | Dialtone/baresip |"
    );
    let _ = writeln!(out, "|---|---|---|---|");
    for figure in FIGURES {
        let (d, b) = figure_stats(samples, figure);
        let ratio = ratio(d.map(|s| s.median), b.map(|s| s.median));
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
