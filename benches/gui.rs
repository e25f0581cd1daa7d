//! The desktop app next to Twinkle, in one run, under one Xvfb with a private PulseAudio null sink,
//! both registered at the same Kamailio: the figures of issue #4's performance table. Prints a
//! Markdown table; not a pass/fail test.
//!
//! ```sh
//! cargo bench --bench gui        # BENCH_RUNS=5 runs per app (default), BENCH_CPU_SECS=30
//! ```
//!
//! Each run, for each app (the order alternates between runs; one warm-up start of each first):
//! 1. start → first window mapped: the wall clock right before the spawn → the X server's MapNotify
//!    of the app's main window (titled `Dialtone` / `Twinkle`), read by an X event thread
//!    (benches/common/xevents.rs: SubstructureNotify on the root window, stamped on arrival).
//! 2. idle: after [`SETTLE`], CPU (% of one core: utime + stime of all threads from /proc/PID/stat)
//!    over BENCH_CPU_SECS, and VmRSS at its end.
//! 3. INVITE arrival → popup mapped: a headless Dialtone (bob) calls the app through Kamailio; the
//!    INVITE's capture time at the app's SIP port (dumpcap on lo) → MapNotify of the app's incoming
//!    call window (Dialtone's `Incoming call from …`, Twinkle's override-redirect `twinkle` popup).
//! 4. click Answer → 200 OK sent: the popup's green button is found in a screenshot and clicked with
//!    xdotool; from the X server's XInput 2 raw button press → the app's 200 OK leaving its port.
//! 5. in the call (bob offers G.711 only, the codec both apps have, and sends a 440 Hz tone; the
//!    app plays it to the null sink and captures the sink's monitor): after [`SETTLE`], CPU over
//!    BENCH_CPU_SECS and VmRSS at its end.
//!
//! Both apps use the private PulseAudio server's default devices (Dialtone `--audio-in default
//! --audio-out default`, Twinkle ALSA `default` → the pulse plugin), private XDG / HOME dirs, no
//! session D-Bus. The app under test is the release build (`cargo bench` builds it) or
//! `BENCH_DIALTONE=PATH`. Twinkle (Debian package `twinkle`) is measured when installed; without it
//! its column says so (`BENCH_TWINKLE=off` leaves it out). Needs root (dumpcap), Xvfb, xdotool, ImageMagick, Kamailio, PulseAudio
//! (scripts/install-deps.sh). `BENCH_KEEP=1` keeps the work dir (capture, logs, screenshots).

#[path = "../tests/common/mod.rs"]
mod fixtures;

mod common;

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, anyhow, bail};
use common::capture::{Capture, Frame, ms, nanos};
use common::report::{Stats, load_average, machine, stats};
use common::usage::{Usage, measure};
use common::xevents::XEvents;
use fixtures::dialtone::{Dialtone, call_state, registration};
use fixtures::gui::Xvfb;
use fixtures::peers::{HOST, Kamailio, PortBlock, find_program};
use fixtures::pulse::Pulse;

/// Generous limit on any one step (they take milliseconds to a second).
const STEP: Duration = Duration::from_secs(20);
/// How long an app gets to settle before CPU and memory are sampled (registered, first frames
/// painted, the call's jitter buffer filled).
const SETTLE: Duration = Duration::from_secs(5);

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("gui: not run (no --bench); run it with `cargo bench --bench gui`");
        return;
    }
    if let Err(e) = run() {
        eprintln!("\ngui: FAILED: {e:#}");
        std::process::exit(1);
    }
}

// ---------------------------------------------------------------------------------------------------
// The apps

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Dialtone,
    Twinkle,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Dialtone => "Dialtone",
            Kind::Twinkle => "Twinkle",
        }
    }

    fn is_main_window(self, title: &str) -> bool {
        match self {
            Kind::Dialtone => title == "Dialtone",
            Kind::Twinkle => title == "Twinkle",
        }
    }

    fn is_popup(self, title: &str) -> bool {
        match self {
            Kind::Dialtone => title.starts_with("Incoming call from"),
            // An override-redirect QML window, named after the program.
            Kind::Twinkle => title == "twinkle",
        }
    }

    /// The colour of the popup's Answer / Accept button.
    fn accept_colour(self) -> [u8; 3] {
        match self {
            Kind::Dialtone => [0x22, 0xa5, 0x5a],
            Kind::Twinkle => [0x00, 0xaa, 0x00],
        }
    }
}

/// How to start one app: its program, account and ports.
struct Setup {
    kind: Kind,
    program: PathBuf,
    user: &'static str,
    sip_port: u16,
    rtp: (u16, u16),
    kam_port: u16,
}

impl Setup {
    fn uri(&self) -> String {
        format!("sip:{}@{HOST}:{}", self.user, self.kam_port)
    }

    /// Starts the app on `display` with fresh private directories under `work`.
    fn spawn(&self, display: &str, work: &Path, tag: &str) -> Result<App> {
        let dir = work.join(format!("{}-{tag}", self.kind.name().to_lowercase()));
        let runtime = dir.join("runtime");
        fs::create_dir_all(&runtime)?;
        fs::set_permissions(
            &runtime,
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )?;
        // Every desktop session has a PulseAudio cookie (libpulse writes one on first use); the
        // private server takes any. Without one, cpal's PulseAudio host fails its handshake and
        // Dialtone falls back to ALSA's `default` (the pulse plugin).
        let pulse_config = dir.join(".config/pulse");
        fs::create_dir_all(&pulse_config)?;
        fs::write(pulse_config.join("cookie"), [0x5a; 256])?;
        let log = dir.join("app.log");
        let mut cmd = Command::new(&self.program);
        cmd.env("DISPLAY", display)
            .env_remove("WAYLAND_DISPLAY")
            .env_remove("DBUS_SESSION_BUS_ADDRESS")
            .env_remove("RUST_LOG")
            .env("XDG_RUNTIME_DIR", &runtime)
            .env("XDG_CONFIG_HOME", dir.join("config"))
            .env("XDG_DATA_HOME", dir.join("data"))
            .env("HOME", &dir)
            .stdin(Stdio::null())
            .stdout(fs::File::create(dir.join("app.out"))?)
            .stderr(fs::File::create(&log)?);
        match self.kind {
            Kind::Dialtone => {
                cmd.args([
                    "--account",
                    &self.uri(),
                    "--password",
                    &format!("{}pw", self.user),
                    "--listen",
                    &format!("{HOST}:{}", self.sip_port),
                    "--rtp-ports",
                    &format!("{}-{}", self.rtp.0, self.rtp.1),
                    "--audio-in",
                    "default",
                    "--audio-out",
                    "default",
                ]);
            }
            Kind::Twinkle => {
                self.write_twinkle_config(&dir.join(".twinkle"))?;
                cmd.args(["-f", self.user]);
            }
        }
        fixtures::peers::die_with_parent(&mut cmd, libc::SIGKILL);
        let spawned = SystemTime::now();
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}: {cmd:?}", self.kind.name()))?;
        Ok(App {
            kind: self.kind,
            child,
            log,
            spawned,
        })
    }

    /// Twinkle's system settings and the user profile: the same account, ports and devices
    /// (ALSA `default`, which is the PulseAudio plugin), no system tray, and no voice activity
    /// detection: with its default VAD on, Twinkle stopped sending RTP a few seconds into the call
    /// (~100 packets in 30 s), so its figure covered less work than a call that sends 50 a second,
    /// as Dialtone does.
    fn write_twinkle_config(&self, dir: &Path) -> Result<()> {
        fs::create_dir_all(dir)?;
        let sys = format!(
            "dev_ringtone=alsa:default\ndev_speaker=alsa:default\ndev_mic=alsa:default\n\
             gui_use_systray=no\ngui_hide_on_close=no\ngui_show_call_osd=no\n\
             sip_port={}\nrtp_port={}\nstart_user_profile={}\n",
            self.sip_port, self.rtp.0, self.user
        );
        fs::write(dir.join("twinkle.sys"), sys)?;
        let profile = format!(
            "user_name={user}\nuser_domain={HOST}\nuser_display={user}\nauth_realm={HOST}\n\
             auth_name={user}\nauth_pass={user}pw\noutbound_proxy={HOST}:{kam}\n\
             registrar={HOST}:{kam}\nregister_at_startup=yes\nsip_transport=udp\n\
             speex_dsp_vad=no\n",
            user = self.user,
            kam = self.kam_port
        );
        fs::write(dir.join(format!("{}.cfg", self.user)), profile)?;
        Ok(())
    }
}

/// A running app.
struct App {
    kind: Kind,
    child: Child,
    log: PathBuf,
    spawned: SystemTime,
}

impl App {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "{} exited ({status}); its log:\n{}",
                self.kind.name(),
                self.log_tail()
            );
        }
        Ok(())
    }

    fn log_tail(&self) -> String {
        let log = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// SIGTERM (both un-register and close on it), SIGKILL after 5 s.
    fn stop(mut self) -> Result<()> {
        // SAFETY: kill(2) on our own child, not reaped yet.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        Ok(())
    }
}

impl Drop for App {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// One run of one app

/// What one run of one app measured directly; the wire times come from the capture afterwards.
struct RunResult {
    kind: Kind,
    sip_port: u16,
    start_ms: f64,
    /// Dialtone: spawn → both audio devices open, from the time stamps of its log.
    devices_open_ms: Option<f64>,
    idle: Usage,
    /// From before bob dialled to the popup's map.
    call_from: SystemTime,
    popup_at: SystemTime,
    press_at: SystemTime,
    answered_by: SystemTime,
    in_call: Usage,
    /// RTP packets bob received from the app during the call (it sends audio).
    packets_to_caller: u64,
}

struct Bench<'a> {
    x: &'a Xvfb,
    xev: &'a XEvents,
    bob: &'a mut Dialtone,
    work: &'a Path,
    cpu_window: Duration,
}

impl Bench<'_> {
    fn start(&self, setup: &Setup, tag: &str) -> Result<(App, f64)> {
        self.xev.drain();
        let mut app = setup.spawn(self.x.display(), self.work, tag)?;
        let kind = setup.kind;
        let main = self
            .xev
            .wait_map(app.pid(), |t| kind.is_main_window(t), STEP)
            .with_context(|| format!("{} main window; log:\n{}", kind.name(), app.log_tail()))?;
        app.check_alive()?;
        let start_ms = ms(nanos(main.at) - nanos(app.spawned));
        Ok((app, start_ms))
    }

    fn run(&mut self, setup: &Setup, tag: &str) -> Result<RunResult> {
        let kind = setup.kind;
        let (mut app, start_ms) = self.start(setup, tag)?;
        thread::sleep(SETTLE);
        let pid = app.pid();
        let idle = measure(pid, self.cpu_window, || {})?;
        app.check_alive()?;

        // The call: bob dials until the app rings (it may still be registering).
        self.xev.drain();
        let call_from = SystemTime::now();
        self.bob.call_until_ringing(&setup.uri(), STEP)?;
        let popup = self
            .xev
            .wait_map(pid, |t| kind.is_popup(t), STEP)
            .with_context(|| format!("{} popup; log:\n{}", kind.name(), app.log_tail()))?;
        let shot = self.work.join(format!("{}-{tag}-popup.png", kind.name()));
        let (bx, by) = self
            .x
            .wait_color(popup.window.into(), kind.accept_colour(), &shot, STEP)
            .with_context(|| format!("{}'s Answer button", kind.name()))?;
        self.x
            .xdotool(&["mousemove", &bx.to_string(), &by.to_string()])?;
        self.xev.drain();
        self.x.xdotool(&["click", "1"])?;
        let press_at = self.xev.wait_press(STEP)?;
        self.bob
            .wait_event(call_state("established"), STEP)
            .with_context(|| format!("{} did not answer; log:\n{}", kind.name(), app.log_tail()))?;
        let answered_by = SystemTime::now();

        thread::sleep(SETTLE);
        let in_call = measure(pid, self.cpu_window, || {})?;
        let stats = self.bob.stats(STEP)?;
        let packets_to_caller = stats["calls"][0]["media"]["packets_received"]
            .as_u64()
            .unwrap_or(0);
        app.check_alive()?;
        self.bob.send("hangup")?;
        self.bob.wait_event(call_state("ended"), STEP)?;
        thread::sleep(Duration::from_millis(300));
        let log = fs::read_to_string(&app.log).unwrap_or_default();
        let devices_open_ms = log_time(&log, "audio output opened")
            .zip(log_time(&log, "audio input opened"))
            .map(|(a, b)| ms(a.max(b) - nanos(app.spawned)));
        app.stop()?;
        Ok(RunResult {
            kind,
            sip_port: setup.sip_port,
            start_ms,
            devices_open_ms,
            idle,
            call_from,
            popup_at: popup.at,
            press_at,
            answered_by,
            in_call,
            packets_to_caller,
        })
    }
}

/// The time stamp (`2026-01-02T03:04:05.123456Z`, after any colour codes) of the first line of
/// a tracing log that contains `needle`, in nanoseconds since the epoch.
fn log_time(log: &str, needle: &str) -> Option<i128> {
    let line = log.lines().find(|l| l.contains(needle))?;
    // Without the colour codes (`ESC [ … m`).
    let mut plain = String::new();
    let mut in_escape = false;
    for c in line.chars() {
        match (in_escape, c) {
            (false, '\x1b') => in_escape = true,
            (false, c) => plain.push(c),
            (true, 'm') => in_escape = false,
            (true, _) => {}
        }
    }
    let stamp = plain.split_whitespace().next()?;
    let (date, time) = stamp.strip_suffix('Z')?.split_once('T')?;
    let mut d = date.split('-').map(|v| v.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.split(':').map(|v| v.parse::<i64>().ok());
    let (h, min, sec) = (t.next()??, t.next()??, t.next()??);
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + min * 60 + sec;
    let frac = frac_nanos(frac)?;
    Some(i128::from(secs) * 1_000_000_000 + frac)
}

/// `"123"` (fractional digits) → 123_000_000 ns.
fn frac_nanos(frac: &str) -> Option<i128> {
    let mut digits: String = frac.chars().take(9).collect();
    while digits.len() < 9 {
        digits.push('0');
    }
    digits.parse().ok()
}

/// The wire figures of a run: (INVITE arrival → popup mapped, click → 200 OK sent), in ms.
fn wire_figures(r: &RunResult, frames: &[Frame]) -> Result<(f64, f64)> {
    let (from, popup) = (nanos(r.call_from), nanos(r.popup_at));
    let invite = frames
        .iter()
        .rev()
        .find(|f| f.at >= from && f.at <= popup && f.dst == r.sip_port && f.is_request("INVITE"))
        .ok_or_else(|| anyhow!("{}: no INVITE to the app before its popup", r.kind.name()))?;
    let (press, by) = (nanos(r.press_at), nanos(r.answered_by));
    let ok = frames
        .iter()
        .find(|f| {
            f.at >= press && f.at <= by && f.src == r.sip_port && f.is_response(200, "INVITE")
        })
        .ok_or_else(|| anyhow!("{}: no 200 OK from the app after the click", r.kind.name()))?;
    Ok((ms(popup - invite.at), ms(ok.at - press)))
}

// ---------------------------------------------------------------------------------------------------
// The run

fn env_number(name: &str, default: u64) -> Result<u64> {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| anyhow!("{name}={v:?}: expected a positive whole number")),
        Err(_) => Ok(default),
    }
}

fn run() -> Result<()> {
    let runs = env_number("BENCH_RUNS", 5)? as usize;
    let cpu_window = Duration::from_secs(env_number("BENCH_CPU_SECS", 30)?);
    let dialtone_bin = std::env::var_os("BENCH_DIALTONE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_dialtone")));
    if !dialtone_bin.exists() {
        bail!("{} not found", dialtone_bin.display());
    }
    let twinkle_bin = match std::env::var("BENCH_TWINKLE").as_deref() {
        Ok("off") => None,
        _ => find_program("twinkle"),
    };
    let load_before = load_average();
    let begun = Instant::now();
    println!(
        "gui: the desktop app under Xvfb, {runs} runs per app (BENCH_RUNS), CPU over {} s (BENCH_CPU_SECS)",
        cpu_window.as_secs()
    );
    println!("  dialtone: {}", dialtone_bin.display());
    match &twinkle_bin {
        Some(t) => println!("  twinkle: {}", t.display()),
        None => println!(
            "  twinkle: not installed (apt-get install twinkle) or BENCH_TWINKLE=off: its column stays empty"
        ),
    }

    let ports = PortBlock::try_acquire()?;
    let kam = Kamailio::start(ports.port(), ports.port())?;
    let _pulse = Pulse::start();
    let x = Xvfb::start()?;
    let xev = XEvents::watch(x.display())?;
    let mut work = tempfile::Builder::new()
        .prefix("dialtone-bench-gui-")
        .tempdir()
        .context("creating a temp dir")?;
    let keep = std::env::var_os("BENCH_KEEP").is_some();
    work.disable_cleanup(keep);
    if keep {
        println!("  work dir kept: {}", work.path().display());
    }
    let mut setups = vec![Setup {
        kind: Kind::Dialtone,
        program: dialtone_bin,
        user: "alice",
        sip_port: ports.sip_port(),
        rtp: ports.rtp_ports(10),
        kam_port: kam.port(),
    }];
    if let Some(program) = twinkle_bin {
        setups.push(Setup {
            kind: Kind::Twinkle,
            program,
            user: "carol",
            sip_port: ports.sip_port(),
            rtp: ports.rtp_ports(10),
            kam_port: kam.port(),
        });
    }
    let bob_port = ports.sip_port();
    let bob_rtp = ports.rtp_ports(10);
    let mut bob = Dialtone::start(
        "bob",
        [
            "--account",
            &kam.uri("bob"),
            "--password",
            "bobpw",
            "--listen",
            &format!("{HOST}:{bob_port}"),
            "--rtp-ports",
            &format!("{}-{}", bob_rtp.0, bob_rtp.1),
            "--display-name",
            "Bob Builder",
            "--audio-in",
            "tone:440",
            "--audio-out",
            "null",
            // The codec both apps have (Twinkle has no Opus): the same call for each.
            "--codecs",
            "PCMU,PCMA",
        ],
    )?;
    bob.wait_event(registration("registered"), STEP)?;
    let mut capture = Capture::start(
        work.path(),
        "sip",
        &format!("udp port {}", kam.port()),
        kam.port(),
    )?;

    let mut bench = Bench {
        x: &x,
        xev: &xev,
        bob: &mut bob,
        work: work.path(),
        cpu_window,
    };
    // Warm-up: one start of each (page cache, Mesa's shader cache), not counted.
    for setup in &setups {
        let (app, _) = bench.start(setup, "warm-up")?;
        thread::sleep(Duration::from_secs(2));
        app.stop()?;
    }
    let mut results = Vec::new();
    for run in 0..runs {
        let mut order: Vec<&Setup> = setups.iter().collect();
        if run % 2 == 1 {
            order.reverse();
        }
        for setup in order {
            let r = bench.run(setup, &format!("run{run}"))?;
            println!(
                "  run {run} {}: start {:.1} ms, idle {:.1} MiB {:.2} %, call {:.1} MiB {:.2} % ({:.0} s)",
                setup.kind.name(),
                r.start_ms,
                r.idle.rss_mib,
                r.idle.cpu_percent,
                r.in_call.rss_mib,
                r.in_call.cpu_percent,
                begun.elapsed().as_secs_f64()
            );
            println!("    idle by thread: {}", top_threads(&r.idle));
            println!("    call by thread: {}", top_threads(&r.in_call));
            results.push(r);
        }
    }
    let frames = capture.finish()?;
    if keep {
        println!("  capture: {}", capture.file().display());
    }
    let _ = bob.send("quit");
    print_report(&results, &frames, runs, cpu_window, &load_before)?;
    drop(kam);
    Ok(())
}

// ---------------------------------------------------------------------------------------------------
// The report

/// The busiest threads: `name 12.3 %, …`.
fn top_threads(u: &Usage) -> String {
    u.by_thread
        .iter()
        .filter(|(_, p)| *p >= 0.05)
        .take(6)
        .map(|(n, p)| format!("{n} {p:.1} %"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The issue's figures (Twinkle 1.10, Linphone desktop 4.4; issue #4), per row.
struct Reference {
    twinkle: &'static str,
    linphone: &'static str,
    /// Linphone's value in the row's unit, for the ratio.
    linphone_value: f64,
}

fn cell(s: Option<Stats>, unit: &str, digits: usize) -> String {
    match s {
        Some(s) => format!(
            "{:.digits$} {unit} ({:.digits$}–{:.digits$})",
            s.median, s.min, s.max
        ),
        None => "–".into(),
    }
}

fn ratio(a: Option<Stats>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a.median / b),
        (Some(a), Some(b)) if b == 0.0 && a.median == 0.0 => "1.00".into(),
        (Some(_), Some(_)) => "∞".into(),
        _ => "–".into(),
    }
}

fn print_report(
    results: &[RunResult],
    frames: &[Frame],
    runs: usize,
    cpu_window: Duration,
    load_before: &str,
) -> Result<()> {
    let of = |kind: Kind, f: &dyn Fn(&RunResult) -> Result<f64>| -> Result<Option<Stats>> {
        let values = results
            .iter()
            .filter(|r| r.kind == kind)
            .map(f)
            .collect::<Result<Vec<f64>>>()?;
        Ok(stats(&values))
    };
    type Row<'a> = (
        String,
        &'a dyn Fn(&RunResult) -> Result<f64>,
        &'static str,
        usize,
        Reference,
    );
    let secs = cpu_window.as_secs();
    let rows: [Row; 7] = [
        (
            "start → first window mapped".into(),
            &|r| Ok(r.start_ms),
            "ms",
            0,
            Reference {
                twinkle: "106 ms",
                linphone: "544 ms",
                linphone_value: 544.0,
            },
        ),
        (
            "RSS idle with the main window open".into(),
            &|r| Ok(r.idle.rss_mib),
            "MiB",
            1,
            Reference {
                twinkle: "111.5 MiB",
                linphone: "254 MiB",
                linphone_value: 254.0,
            },
        ),
        (
            format!("CPU idle (% of one core, {secs} s)"),
            &|r| Ok(r.idle.cpu_percent),
            "%",
            2,
            Reference {
                twinkle: "0.0 %",
                linphone: "0.5 %",
                linphone_value: 0.5,
            },
        ),
        (
            "INVITE arrival → incoming popup mapped".into(),
            &|r| wire_figures(r, frames).map(|w| w.0),
            "ms",
            1,
            Reference {
                twinkle: "6 ms",
                linphone: "33 ms",
                linphone_value: 33.0,
            },
        ),
        (
            "click Answer → 200 OK sent".into(),
            &|r| wire_figures(r, frames).map(|w| w.1),
            "ms",
            1,
            Reference {
                twinkle: "1404 ms",
                linphone: "5 ms",
                linphone_value: 5.0,
            },
        ),
        (
            "RSS during a call".into(),
            &|r| Ok(r.in_call.rss_mib),
            "MiB",
            1,
            Reference {
                twinkle: "155 MiB",
                linphone: "351 MiB",
                linphone_value: 351.0,
            },
        ),
        (
            format!("CPU during a call (% of one core, {secs} s)"),
            &|r| Ok(r.in_call.cpu_percent),
            "%",
            2,
            Reference {
                twinkle: "2.1 %",
                linphone: "16 %",
                linphone_value: 16.0,
            },
        ),
    ];
    let mut out = String::new();
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "| figure (median, min–max of {runs}) | Dialtone | Twinkle 1.10, same run | Dialtone/Twinkle | \
         Twinkle 1.10 (issue #4) | Linphone 4.4 (issue #4) | Dialtone/Linphone |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|");
    for (label, f, unit, digits, reference) in &rows {
        let d = of(Kind::Dialtone, f)?;
        let t = of(Kind::Twinkle, f)?;
        let _ = writeln!(
            out,
            "| {label} | {} | {} | {} | {} | {} | {} |",
            cell(d, unit, *digits),
            cell(t, unit, *digits),
            ratio(d, t.map(|t| t.median)),
            reference.twinkle,
            reference.linphone,
            ratio(d, Some(reference.linphone_value)),
        );
    }
    let fine = |kind: Kind, idle: bool| -> Option<Stats> {
        let v: Vec<f64> = results
            .iter()
            .filter(|r| r.kind == kind)
            .map(|r| {
                if idle {
                    r.idle.cpu_fine_percent
                } else {
                    r.in_call.cpu_fine_percent
                }
            })
            .collect();
        stats(&v)
    };
    for (label, idle) in [("idle", true), ("during a call", false)] {
        let (d, t) = (fine(Kind::Dialtone, idle), fine(Kind::Twinkle, idle));
        let _ = writeln!(
            out,
            "| (CPU {label} from schedstat, live threads) | {} | {} | {} | | | |",
            cell(d, "%", 3),
            cell(t, "%", 3),
            ratio(d, t.map(|t| t.median)),
        );
    }
    let devices = stats(
        &results
            .iter()
            .filter_map(|r| r.devices_open_ms)
            .collect::<Vec<_>>(),
    );
    let _ = writeln!(
        out,
        "| (Dialtone: spawn → both audio devices open, from its log; the window does not wait for them) | {} | | | | | |",
        cell(devices, "ms", 0)
    );
    let _ = writeln!(out);
    for kind in [Kind::Dialtone, Kind::Twinkle] {
        for (label, idle) in [("idle", true), ("in a call", false)] {
            let mut names: Vec<&str> = Vec::new();
            for r in results.iter().filter(|r| r.kind == kind) {
                let u = if idle { &r.idle } else { &r.in_call };
                for (n, _) in &u.by_thread {
                    if !names.contains(&n.as_str()) {
                        names.push(n);
                    }
                }
            }
            let mut medians: Vec<(&str, f64)> = names
                .into_iter()
                .filter_map(|n| {
                    let v: Vec<f64> = results
                        .iter()
                        .filter(|r| r.kind == kind)
                        .map(|r| {
                            let u = if idle { &r.idle } else { &r.in_call };
                            u.by_thread
                                .iter()
                                .find(|(m, _)| m == n)
                                .map_or(0.0, |(_, p)| *p)
                        })
                        .collect();
                    stats(&v).map(|s| (n, s.median))
                })
                .filter(|(_, m)| *m >= 0.05)
                .collect();
            if medians.is_empty() {
                continue;
            }
            medians.sort_by(|a, b| b.1.total_cmp(&a.1));
            let text: Vec<String> = medians
                .iter()
                .map(|(n, m)| format!("{n} {m:.1} %"))
                .collect();
            let _ = writeln!(
                out,
                "{} CPU {label} by thread (medians, % of one core): {}.",
                kind.name(),
                text.join(", ")
            );
        }
    }
    let packets: Vec<String> = results
        .iter()
        .map(|r| format!("{} {}", r.kind.name(), r.packets_to_caller))
        .collect();
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "RTP packets the caller received from the app in each call (audio flowing): {}.",
        packets.join(", ")
    );
    let _ = writeln!(
        out,
        "Machine: {}; load average before {load_before}, after {}.",
        machine(),
        load_average()
    );
    print!("{out}");
    Ok(())
}
