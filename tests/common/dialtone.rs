//! `dialtone --headless` as a child process for integration tests: its JSON events (stdout) are
//! collected with timestamps by a reader thread, commands go to its stdin, its log (stderr, with
//! `RUST_LOG=dialtone=debug`: every SIP message) is kept and shown when a test fails.
//!
//! ```ignore
//! let mut carol = Dialtone::start("carol", ["--account", &kam.uri("carol"), "--password", "carolpw",
//!                                            "--listen", &format!("127.0.0.1:{port}")])?;
//! carol.wait_event(registration("registered"), WAIT)?;
//! carol.send("call sip:echo@127.0.0.1:5060")?;
//! let established = carol.wait_event(call_state("established"), WAIT)?;
//! ```
//!
//! - [`Dialtone::wait_event`] waits for the next event (after the previous match) that satisfies a
//!   predicate, so consecutive waits also check the order of events; [`Dialtone::wait_event_any`]
//!   searches every event seen so far. Failures carry every event and the end of the log.
//! - Nothing can hang a test: every wait has a timeout, and dropping a `Dialtone` sends `quit`, gives
//!   it [`QUIT_GRACE`] to un-register and exit, then SIGKILLs it. It also gets SIGTERM when the
//!   thread that started it ends (PR_SET_PDEATHSIG), so a killed test run leaves no `dialtone`.
//! - A panicking test prints the events and log of every `Dialtone` it drops;
//!   `DIALTONE_PEER_LOGS=1` prints them always.

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use serde_json::Value;

use super::peers::{HOST, tcp_listening, udp_listening};

/// How long a dropped `Dialtone` gets after `quit` (the engine gives un-registering 3 s).
pub const QUIT_GRACE: Duration = Duration::from_secs(5);

/// One event from stdout, with when it arrived (since start). A stdout line that is not JSON is
/// kept as `{"event": "non_json", "line": …}` so that tests can notice it.
#[derive(Clone, Debug)]
pub struct Received {
    pub at: Duration,
    pub event: Value,
}

#[derive(Default)]
struct EventLog {
    events: Vec<Received>,
    /// stdout reached EOF (the process exited or closed it).
    closed: bool,
}

#[derive(Default)]
struct StderrLog {
    bytes: Vec<u8>,
}

type Shared<T> = Arc<(Mutex<T>, Condvar)>;

/// A running `dialtone --headless`; see the module docs.
pub struct Dialtone {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    status: Option<ExitStatus>,
    started: Instant,
    events: Shared<EventLog>,
    stderr: Shared<StderrLog>,
    /// Index of the first event [`Dialtone::wait_event`] looks at.
    cursor: usize,
}

impl Dialtone {
    /// Starts `dialtone --headless ARGS` with `RUST_LOG=dialtone=debug`. With `--listen IP:PORT`
    /// among the args it waits (up to 10 s) until Dialtone listens there on UDP and TCP, so the
    /// peers can reach it as soon as this returns.
    pub fn start<I, S>(name: &str, args: I) -> Result<Dialtone>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<_> = args
            .into_iter()
            .map(|a| a.as_ref().to_os_string())
            .collect();
        let listen_port = args
            .iter()
            .position(|a| a == "--listen")
            .and_then(|i| args.get(i + 1))
            .and_then(|a| a.to_str())
            .and_then(|a| a.rsplit_once(':'))
            .and_then(|(_, port)| port.parse::<u16>().ok());
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dialtone"));
        cmd.arg("--headless").args(&args);
        // Synthetic devices unless the test chose its own: there is no sound card here.
        if !args.iter().any(|a| a == "--audio-in") {
            cmd.args(["--audio-in", "tone:440"]);
        }
        if !args.iter().any(|a| a == "--audio-out") {
            cmd.args(["--audio-out", "null"]);
        }
        cmd.env("RUST_LOG", "dialtone=debug")
            .env_remove("XDG_CONFIG_HOME")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        super::peers::die_with_parent(&mut cmd, libc::SIGTERM);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting dialtone ({name}): {cmd:?}"))?;
        let started = Instant::now();
        let events: Shared<EventLog> = Arc::default();
        let stderr: Shared<StderrLog> = Arc::default();
        let stdout = child.stdout.take().context("dialtone stdout")?;
        let err = child.stderr.take().context("dialtone stderr")?;
        spawn_event_reader(name, stdout, events.clone(), started);
        spawn_stderr_reader(name, err, stderr.clone());
        let stdin = child.stdin.take();
        let mut dialtone = Dialtone {
            name: format!("dialtone-{name}"),
            child,
            stdin,
            status: None,
            started,
            events,
            stderr,
            cursor: 0,
        };
        if let Some(port) = listen_port {
            let deadline = Instant::now() + Duration::from_secs(10);
            while !(udp_listening(port) && tcp_listening(port)) {
                if dialtone.has_exited() || Instant::now() >= deadline {
                    return Err(dialtone.failure(&format!("not listening on {HOST}:{port}")));
                }
                thread::sleep(Duration::from_millis(5));
            }
        }
        Ok(dialtone)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Writes one command line to Dialtone's stdin (`call URI`, `hold 1`, `stats`, `quit`…).
    pub fn send(&mut self, line: &str) -> Result<()> {
        let Some(stdin) = self.stdin.as_mut() else {
            return Err(self.failure(&format!("stdin closed; cannot send {line:?}")));
        };
        match writeln!(stdin, "{line}").and_then(|()| stdin.flush()) {
            Ok(()) => Ok(()),
            Err(e) => Err(self.failure(&format!("writing {line:?} to stdin: {e}"))),
        }
    }

    /// Waits for the first event after the last one a `wait_event` returned that satisfies `pred`,
    /// and returns it; later waits start after it. Fails after `timeout`, or when stdout closes,
    /// with every event seen and the end of the log.
    pub fn wait_event(
        &mut self,
        pred: impl Fn(&Value) -> bool,
        timeout: Duration,
    ) -> Result<Value> {
        let (index, event) = self.wait_from(self.cursor, &pred, timeout)?;
        self.cursor = index + 1;
        Ok(event)
    }

    /// Like [`Dialtone::wait_event`], but searches every event since the start and leaves the
    /// position of `wait_event` alone (for events whose order does not matter).
    pub fn wait_event_any(
        &mut self,
        pred: impl Fn(&Value) -> bool,
        timeout: Duration,
    ) -> Result<Value> {
        self.wait_from(0, &pred, timeout).map(|(_, event)| event)
    }

    /// Calls `to` until the call rings (the callee may still be registering), retrying every
    /// 200 ms until `within` has passed.
    pub fn call_until_ringing(&mut self, to: &str, within: Duration) -> Result<()> {
        let deadline = Instant::now() + within;
        loop {
            self.send(&format!("call {to}"))?;
            let ev = self.wait_event(
                |e| {
                    call_state("ringing")(e)
                        || call_state("ended")(e)
                        || call_state("established")(e)
                },
                within,
            )?;
            if ev["state"] == "ringing" {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(anyhow!("{to} never rang: last event {ev}"));
            }
            thread::sleep(Duration::from_millis(200));
        }
    }

    /// Sends `stats` and returns the next `stats` event.
    pub fn stats(&mut self, timeout: Duration) -> Result<Value> {
        // Only a stats event that comes after this request answers it.
        let from = self.events.0.lock().unwrap().events.len();
        self.send("stats")?;
        let (_, event) = self.wait_from(from, &is_event("stats"), timeout)?;
        Ok(event)
    }

    /// Fails if an event after the `wait_event` position satisfies `pred`, now or within `within`.
    pub fn expect_no_event(
        &mut self,
        pred: impl Fn(&Value) -> bool,
        within: Duration,
    ) -> Result<()> {
        match self.wait_from(self.cursor, &pred, within) {
            Ok((_, event)) => Err(self.failure(&format!("unexpected event {event}"))),
            Err(_) => Ok(()),
        }
    }

    fn wait_from(
        &mut self,
        from: usize,
        pred: &dyn Fn(&Value) -> bool,
        timeout: Duration,
    ) -> Result<(usize, Value)> {
        let deadline = Instant::now() + timeout;
        let events = self.events.clone();
        let (state, changed) = &*events;
        let mut log = state.lock().unwrap();
        loop {
            if let Some((i, r)) = log
                .events
                .iter()
                .enumerate()
                .skip(from)
                .find(|(_, r)| pred(&r.event))
            {
                return Ok((i, r.event.clone()));
            }
            let now = Instant::now();
            if log.closed || now >= deadline {
                let why = if log.closed {
                    "stdout closed (exited?)"
                } else {
                    "timed out"
                };
                drop(log);
                return Err(self.failure(&format!(
                    "no matching event after event #{from} within {timeout:?}: {why}"
                )));
            }
            log = changed.wait_timeout(log, deadline - now).unwrap().0;
        }
    }

    /// Every event so far.
    pub fn events(&self) -> Vec<Value> {
        let log = self.events.0.lock().unwrap();
        log.events.iter().map(|r| r.event.clone()).collect()
    }

    /// Every event so far with its arrival time.
    pub fn received(&self) -> Vec<Received> {
        self.events.0.lock().unwrap().events.clone()
    }

    /// Dialtone's log (stderr) so far.
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&self.stderr.0.lock().unwrap().bytes).into_owned()
    }

    /// Waits up to `timeout` for Dialtone to exit by itself (after `quit`, `--duration`).
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait() {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                return Err(self.failure(&format!("still running after {timeout:?}")));
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Process id (to signal it, or for CPU/RSS figures).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    fn has_exited(&mut self) -> bool {
        self.try_wait().is_some()
    }

    /// Everything a failure message needs: every event with its time, the end of the log.
    pub fn report(&self) -> String {
        let mut text = String::new();
        let log = self.events.0.lock().unwrap();
        let _ = writeln!(text, "----- events of {} -----", self.name);
        for r in &log.events {
            let _ = writeln!(text, "+{:>8.3}s {}", r.at.as_secs_f64(), r.event);
        }
        drop(log);
        let stderr = self.log();
        let mut start = stderr.len().saturating_sub(12_000);
        while !stderr.is_char_boundary(start) {
            start += 1;
        }
        let _ = writeln!(
            text,
            "----- log of {} (last {} bytes) -----\n{}\n----- end of {} -----",
            self.name,
            stderr.len() - start,
            &stderr[start..],
            self.name
        );
        text
    }

    fn failure(&self, what: &str) -> anyhow::Error {
        anyhow!(
            "{} (+{:.3}s, {}): {what}\n{}",
            self.name,
            self.started.elapsed().as_secs_f64(),
            match self.status {
                Some(s) => format!("exited: {s}"),
                None => "running".to_string(),
            },
            self.report()
        )
    }
}

impl Drop for Dialtone {
    fn drop(&mut self) {
        if !self.has_exited() {
            let _ = self.send("quit");
            if self.wait_exit(QUIT_GRACE).is_err() {
                eprintln!(
                    "{}: no exit {QUIT_GRACE:?} after quit; killing it",
                    self.name
                );
                let _ = self.child.kill();
                self.status = self.child.wait().ok();
            }
        }
        if thread::panicking() || std::env::var_os("DIALTONE_PEER_LOGS").is_some() {
            // Let the readers take the last output.
            let (state, changed) = &*self.events;
            let log = state.lock().unwrap();
            drop(
                changed
                    .wait_timeout_while(log, Duration::from_millis(200), |l| !l.closed)
                    .unwrap(),
            );
            eprintln!("{}", self.report());
        }
    }
}

fn spawn_event_reader(
    name: &str,
    stdout: impl Read + Send + 'static,
    events: Shared<EventLog>,
    started: Instant,
) {
    thread::Builder::new()
        .name(format!("dialtone-{name}-events"))
        .spawn(move || {
            let (state, changed) = &*events;
            for line in BufReader::new(stdout).split(b'\n') {
                let Ok(line) = line else { break };
                let text = String::from_utf8_lossy(&line);
                let text = text.trim();
                if text.is_empty() {
                    continue;
                }
                let event = serde_json::from_str::<Value>(text)
                    .unwrap_or_else(|_| serde_json::json!({"event": "non_json", "line": text}));
                state.lock().unwrap().events.push(Received {
                    at: started.elapsed(),
                    event,
                });
                changed.notify_all();
            }
            state.lock().unwrap().closed = true;
            changed.notify_all();
        })
        .expect("spawning the dialtone event reader");
}

fn spawn_stderr_reader(name: &str, mut stderr: impl Read + Send + 'static, log: Shared<StderrLog>) {
    thread::Builder::new()
        .name(format!("dialtone-{name}-stderr"))
        .spawn(move || {
            let mut buf = [0u8; 8192];
            loop {
                match stderr.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => log.0.lock().unwrap().bytes.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
        })
        .expect("spawning the dialtone stderr reader");
}

// ---------------------------------------------------------------------------------------------------
// Event predicates

/// The `"event"` field is `name`.
pub fn is_event(name: &str) -> impl Fn(&Value) -> bool + '_ {
    move |e| e["event"] == name
}

/// A `registration` event in `state` (`registering`, `registered`, `failed`, `unregistered`).
pub fn registration(state: &str) -> impl Fn(&Value) -> bool + '_ {
    move |e| e["event"] == "registration" && e["state"] == state
}

/// A `call` event of any call in `state` (`calling`, `ringing`, `established`, `held`, `ended`).
pub fn call_state(state: &str) -> impl Fn(&Value) -> bool + '_ {
    move |e| e["event"] == "call" && e["state"] == state
}

/// A `call` event of call `id` in `state`.
pub fn call_state_of(id: u64, state: &str) -> impl Fn(&Value) -> bool + '_ {
    move |e| e["event"] == "call" && e["call"] == id && e["state"] == state
}

/// The call id of an `incoming` or `call` event.
pub fn call_id(event: &Value) -> u64 {
    event["call"]
        .as_u64()
        .unwrap_or_else(|| panic!("no call id in {event}"))
}
