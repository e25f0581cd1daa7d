//! Dialtone (`--headless`) and baresip as the SIP benches start and drive them: the same spawn, the
//! same pipe (stdout and stderr on one, read line by line by a thread that stamps each line), the
//! same waits on their output, so that the two UAs are measured alike.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, anyhow};

use crate::fixtures::peers::{self, BaresipConfig, HOST};

/// How long any one step may take before the bench gives up (they take milliseconds).
pub const STEP: Duration = Duration::from_secs(10);

/// Which user agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Dialtone,
    Baresip,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Dialtone => "dialtone",
            Kind::Baresip => "baresip",
        }
    }
}

/// Everything needed to start one UA, again and again, on the same ports, registering at the
/// Kamailio on `kam` as `user` (password `{user}pw`) and answering calls at once.
pub struct UaSetup {
    pub kind: Kind,
    pub program: PathBuf,
    pub args: Vec<String>,
    pub user: &'static str,
    pub sip_port: u16,
    /// The ports it may send RTP and RTCP from: [`rtp_pairs`] of the range it was given.
    pub rtp: (u16, u16),
    /// baresip's config directory (config, accounts, tone.wav); kept for the whole run.
    _dir: Option<tempfile::TempDir>,
}

impl UaSetup {
    /// `codecs`: `--codecs LIST` (e.g. `PCMU,PCMA`, what baresip offers); `None`: Dialtone's own.
    pub fn dialtone(
        program: PathBuf,
        user: &'static str,
        sip_port: u16,
        rtp: (u16, u16),
        kam: u16,
        codecs: Option<&str>,
    ) -> UaSetup {
        let mut args = vec![
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
            // Like baresip's aufile tone and aubridge: a synthetic microphone, no sound card.
            "--audio-in".into(),
            "tone:440".into(),
            "--audio-out".into(),
            "null".into(),
        ];
        if let Some(codecs) = codecs {
            args.extend(["--codecs".into(), codecs.to_string()]);
        }
        UaSetup {
            kind: Kind::Dialtone,
            program,
            args,
            user,
            sip_port,
            rtp: rtp_pairs(rtp),
            _dir: None,
        }
    }

    /// The harness's config (tests/peers/baresip-config.in): auto-answer, PCMU/PCMA, a tone file as
    /// microphone, aubridge as a player that plays nowhere, no DTLS module.
    pub fn baresip(
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

    /// Starts the UA; returns it and the wall-clock time taken right before the spawn.
    pub fn spawn(&self) -> Result<(Ua, SystemTime)> {
        spawn(self.kind, &self.program, &self.args)
    }
}

/// The ports a UA given the RTP range `rtp` may send from: baresip 1.0 rounds an odd first port
/// down to an even one (its RTP on first − 1), so whole RTP/RTCP pairs around the range.
pub fn rtp_pairs(rtp: (u16, u16)) -> (u16, u16) {
    (rtp.0 & !1, rtp.1 | 1)
}

/// Starts `program args` as a UA of `kind`; returns it and the wall-clock time taken right before
/// the spawn.
pub fn spawn(kind: Kind, program: &Path, args: &[String]) -> Result<(Ua, SystemTime)> {
    let (reader, writer) = std::io::pipe().context("creating a pipe")?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_remove("RUST_LOG") // Dialtone's default log level (info), as a user runs it
        .stdin(Stdio::piped())
        .stdout(writer.try_clone().context("cloning a pipe")?)
        .stderr(writer)
        .process_group(0);
    peers::die_with_parent(&mut cmd, libc::SIGKILL);
    let started = SystemTime::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {}: {cmd:?}", kind.name()))?;
    drop(cmd); // our copies of the pipe's write end: EOF once the UA has exited
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
    let ua = Ua {
        kind,
        child,
        stdin,
        lines,
        log: Vec::new(),
        exited: false,
    };
    Ok((ua, started))
}

/// A running UA: its output, line by line, as the parent reads it. Dropping it kills its process
/// group unless it has exited.
pub struct Ua {
    kind: Kind,
    child: Child,
    stdin: Option<ChildStdin>,
    /// Each line with the time the reader thread read it.
    lines: mpsc::Receiver<(SystemTime, String)>,
    /// Every line consumed so far (for error messages).
    log: Vec<String>,
    exited: bool,
}

/// What a line means to a wait: go on, done, or a failure.
pub enum Seen {
    Nothing,
    Done,
    Failed,
}

impl Ua {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Writes one command line to its stdin.
    pub fn command(&mut self, line: &str) -> Result<()> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| anyhow!("{}: stdin closed", self.kind.name()))?;
        writeln!(stdin, "{line}")
            .and_then(|()| stdin.flush())
            .map_err(|e| self.error(&format!("writing {line:?} to its stdin: {e}")))
    }

    /// Consumes output lines until `judge` says done or failed; fails on timeout and on exit too.
    /// Returns the line that was done and when the reader thread read it.
    pub fn wait(
        &mut self,
        what: &str,
        judge: impl Fn(&str) -> Seen,
    ) -> Result<(SystemTime, String)> {
        let deadline = Instant::now() + STEP;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok((at, line)) => match judge(&line) {
                    Seen::Nothing => self.log.push(line),
                    Seen::Done => {
                        self.log.push(line.clone());
                        return Ok((at, line));
                    }
                    Seen::Failed => {
                        self.log.push(line);
                        return Err(self.error(&format!("failed while waiting for {what}")));
                    }
                },
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

    /// Drops output read so far (baresip's status lines during long calls), keeping the last 200
    /// lines for error messages.
    pub fn drain(&mut self) {
        self.log.extend(self.lines.try_iter().map(|(_, l)| l));
        let keep = self.log.len().saturating_sub(200);
        self.log.drain(..keep);
    }

    /// Waits for what says that something happened: Dialtone's JSON event `event` in `state`
    /// (failing on `failed_state`), or a baresip line containing `line` (failing on one
    /// containing `failed_line`). Returns when the parent read that line.
    fn wait_for(
        &mut self,
        (event, state, failed_state): (&str, &str, Option<&str>),
        (line, failed_line): (&str, Option<&str>),
    ) -> Result<SystemTime> {
        let (at, _) = match self.kind {
            Kind::Dialtone => self.wait(
                &format!("`{event}` `{state}` event"),
                |l| match json_field(l, event, "state") {
                    Some(s) if s == state => Seen::Done,
                    Some(s) if Some(s.as_str()) == failed_state => Seen::Failed,
                    _ => Seen::Nothing,
                },
            ),
            Kind::Baresip => self.wait(&format!("{line:?}"), |l| {
                if l.contains(line) {
                    Seen::Done
                } else if failed_line.is_some_and(|f| l.contains(f)) {
                    Seen::Failed
                } else {
                    Seen::Nothing
                }
            }),
        }?;
        Ok(at)
    }

    /// Waits until it has registered; returns when the parent read that line.
    pub fn wait_registered(&mut self) -> Result<SystemTime> {
        // baresip: "All 1 useragent registered successfully!"; a failure logs "reg: <aor>: 401 …".
        self.wait_for(
            ("registration", "registered", Some("failed")),
            ("registered successfully", Some("reg: ")),
        )
    }

    pub fn dial(&mut self, uri: &str) -> Result<()> {
        match self.kind {
            Kind::Dialtone => self.command(&format!("call {uri}")),
            Kind::Baresip => self.command(&format!("/dial {uri}")),
        }
    }

    pub fn hangup(&mut self) -> Result<()> {
        match self.kind {
            Kind::Dialtone => self.command("hangup"),
            Kind::Baresip => self.command("/hangup"),
        }
    }

    /// Waits until the current call is established; returns when the parent read that line.
    pub fn wait_established(&mut self) -> Result<SystemTime> {
        self.wait_for(
            ("call", "established", Some("ended")),
            ("Call established", Some("session closed")),
        )
    }

    /// Waits for the end of the current call (ours or the far end's hang-up).
    pub fn wait_ended(&mut self, by_peer: bool) -> Result<SystemTime> {
        // baresip: the side that hangs up logs "call: terminate call" (before its BYE); the other
        // side "session closed: Connection reset by peer".
        let line = if by_peer {
            "session closed"
        } else {
            "terminate call"
        };
        self.wait_for(("call", "ended", None), (line, None))
    }

    /// Calls `uri`, keeps the call up for `hold` once established, hangs up and waits for the end.
    pub fn call(&mut self, uri: &str, hold: Duration) -> Result<()> {
        self.dial(uri)?;
        self.wait_established()?;
        thread::sleep(hold);
        self.hangup()?;
        self.wait_ended(false)?;
        Ok(())
    }

    /// Dialtone: the `stats` event's calls.
    pub fn stats(&mut self) -> Result<Vec<serde_json::Value>> {
        self.command("stats")?;
        let (_, line) = self.wait("`stats` event", |l| {
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

    /// Asks the UA to quit (it un-registers first) and waits for it to exit.
    pub fn quit(mut self) -> Result<()> {
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

/// A Dialtone JSON event line, parsed; `None` for other lines.
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
