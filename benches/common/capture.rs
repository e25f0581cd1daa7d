//! A wire capture on loopback: `dumpcap` writes it (needs root or CAP_NET_RAW), `tshark` decodes
//! it afterwards into [`Frame`]s with capture time stamps (the kernel's wall clock, nanoseconds
//! since the epoch: comparable with `SystemTime::now()` of any process on the machine).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};

/// How long dumpcap may take to start capturing.
const START: Duration = Duration::from_secs(10);

/// A running `dumpcap -i lo`.
pub struct Capture {
    child: Child,
    file: PathBuf,
    /// UDP port decoded as SIP whatever its number.
    sip_port: u16,
    stopped: bool,
}

impl Capture {
    /// Starts capturing `filter` (BPF) on `lo` into `DIR/NAME.pcapng`; returns once dumpcap
    /// captures. `sip_port` is decoded as SIP (the registrar's port: every message passes it).
    pub fn start(dir: &Path, name: &str, filter: &str, sip_port: u16) -> Result<Capture> {
        let dumpcap = which("dumpcap").ok_or_else(|| {
            anyhow!("dumpcap not found: install it with scripts/install-deps.sh (package `tshark`)")
        })?;
        let file = dir.join(format!("{name}.pcapng"));
        let mut child = Command::new(dumpcap)
            .args(["-i", "lo", "-f", filter, "-w"])
            .arg(&file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting dumpcap")?;
        let stderr = child.stderr.take().context("dumpcap stderr")?;
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + START;
        let mut said = Vec::new();
        loop {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) if line.contains("Capturing on") => break,
                Ok(line) => said.push(line),
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    bail!(
                        "dumpcap did not start capturing on lo (it needs root or CAP_NET_RAW): {}",
                        said.join("\n")
                    );
                }
            }
        }
        thread::sleep(Duration::from_millis(200));
        Ok(Capture {
            child,
            file,
            sip_port,
            stopped: false,
        })
    }

    /// The capture file.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// Stops dumpcap (it writes out what it has) and decodes every frame.
    pub fn finish(&mut self) -> Result<Vec<Frame>> {
        thread::sleep(Duration::from_millis(200));
        // SAFETY: plain syscall on our own child (not reaped yet).
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let status = self.child.wait().context("waiting for dumpcap")?;
        self.stopped = true;
        if !status.success() {
            bail!("dumpcap exited with {status}");
        }
        let tshark = which("tshark").ok_or_else(|| anyhow!("tshark not found"))?;
        let out = Command::new(tshark)
            .arg("-r")
            .arg(&self.file)
            .args(["-n", "-d", &format!("udp.port=={},sip", self.sip_port)])
            .args(["-T", "fields", "-E", "separator=/t", "-E", "occurrence=f"])
            .args(FIELDS.iter().flat_map(|f| ["-e", f]))
            .stdin(Stdio::null())
            .output()
            .context("running tshark")?;
        if !out.status.success() {
            bail!(
                "tshark failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(Frame::parse)
            .collect()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if !self.stopped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn which(bin: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(bin))
        .find(|p| p.is_file())
}

const FIELDS: [&str; 9] = [
    "frame.time_epoch",
    "udp.srcport",
    "udp.dstport",
    "sip.Method",
    "sip.Status-Code",
    "sip.CSeq.method",
    "sip.CSeq.seq",
    "udp.payload",
    "sip.Call-ID",
];

/// One UDP datagram of the capture.
#[derive(Clone, Debug)]
pub struct Frame {
    /// Capture time, nanoseconds since the epoch.
    pub at: i128,
    pub src: u16,
    pub dst: u16,
    /// The request's method (empty for a response or a non-SIP frame).
    pub method: String,
    pub status: Option<u16>,
    pub cseq_method: String,
    pub cseq: u32,
    /// The SIP message's Call-ID (empty for a non-SIP frame).
    pub call_id: String,
    /// An RTP packet (version 2, not an RTCP packet type), not SIP.
    pub rtp: bool,
}

impl Frame {
    fn parse(line: &str) -> Result<Frame> {
        let f: Vec<&str> = line.split('\t').collect();
        let bad = || anyhow!("unexpected tshark line {line:?}");
        if f.len() != FIELDS.len() {
            return Err(bad());
        }
        let payload = f[7].replace(':', "");
        let byte = |i: usize| {
            payload
                .get(2 * i..2 * i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        };
        let is_sip = !f[3].is_empty() || !f[4].is_empty();
        let rtp = !is_sip
            && payload.len() >= 24
            && byte(0).is_some_and(|b| b & 0xC0 == 0x80)
            && byte(1).is_some_and(|b| !(192..=223).contains(&b));
        Ok(Frame {
            at: epoch_nanos(f[0]).ok_or_else(bad)?,
            src: f[1].parse().map_err(|_| bad())?,
            dst: f[2].parse().map_err(|_| bad())?,
            method: f[3].to_string(),
            status: if f[4].is_empty() {
                None
            } else {
                Some(f[4].parse().map_err(|_| bad())?)
            },
            cseq_method: f[5].to_string(),
            cseq: f[6].parse().unwrap_or(0),
            call_id: f[8].to_string(),
            rtp,
        })
    }

    /// A `method` request.
    pub fn is_request(&self, method: &str) -> bool {
        self.status.is_none() && self.method == method
    }

    /// A `status` response to a `method` request.
    pub fn is_response(&self, status: u16, method: &str) -> bool {
        self.status == Some(status) && self.cseq_method == method
    }
}

/// `1700000000.123456789` → nanoseconds.
pub fn epoch_nanos(s: &str) -> Option<i128> {
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let mut digits: String = frac.chars().take(9).collect();
    while digits.len() < 9 {
        digits.push('0');
    }
    Some(secs.parse::<i128>().ok()? * 1_000_000_000 + digits.parse::<i128>().ok()?)
}

/// Nanoseconds since the epoch.
pub fn nanos(t: SystemTime) -> i128 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

/// Nanoseconds → milliseconds.
pub fn ms(nanos: i128) -> f64 {
    nanos as f64 / 1e6
}
