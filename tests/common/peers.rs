//! Real SIP peers for integration tests: Kamailio (registrar + proxy with digest auth), sipp (an echo
//! UAS and a calling UAC) and baresip (a complete user agent), each a child process on 127.0.0.1.
//!
//! ```ignore
//! let ports = PortBlock::acquire();                // first: dropped last, after the peers
//! let kam = Kamailio::start(ports.port(), ports.port())?;   // SIP port, echo UAS port
//! let mut bob = Baresip::start(BaresipConfig::from_ports("bob", &ports).registrar(kam.port()))?;
//! let uac = SippUac::new(ports.sip_port(), ports.rtp_ports(4).0).run(kam.port(), "bob")?;
//! assert!(uac.success(), "{uac}");
//! bob.wait_for(baresip_log::CALL_ESTABLISHED, WAIT)?;
//! ```
//!
//! - Ports: every test takes its own [`PortBlock`] of [`PORT_BLOCK_SIZE`] ports, locked (flock) for the
//!   life of the block so parallel tests and parallel test processes never share ports. Hold it for as
//!   long as the peers run (declare it first). A SIP UA needs two ports ([`PortBlock::sip_port`]):
//!   baresip also listens for TLS on port + 1, sipp puts its control socket there.
//! - Cleanup: dropping a peer stops it (Kamailio: SIGTERM so it takes its worker processes down;
//!   baresip: `/quit`; sipp: SIGTERM; SIGKILL after a grace period), SIGKILLs its process group
//!   (whatever it forked) and reaps it, also while a test panics. Peers also get SIGTERM when the
//!   thread that started them ends (PR_SET_PDEATHSIG), so a killed test run leaves nothing behind:
//!   start peers on the test's own thread, never in a static.
//! - Debugging: a panicking test prints each dropped peer's output; errors returned by the harness end
//!   with the peer's last output. `DIALTONE_PEER_LOGS=1` prints every peer's output when it is
//!   dropped, `DIALTONE_KEEP_PEER_DIRS=1` keeps each peer's temp dir (generated configs, sipp error
//!   logs) and prints its path.
//! - Missing peer software fails the test ([`require`]), it never skips: run `scripts/install-deps.sh`.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU16, AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use tempfile::TempDir;

/// Has `signal` sent to the spawned process when the thread that spawned it ends
/// (PR_SET_PDEATHSIG): a killed test or bench run leaves no process behind.
pub fn die_with_parent(cmd: &mut Command, signal: libc::c_int) {
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong) == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// The only address peers bind and send to.
pub const HOST: &str = "127.0.0.1";
/// A generous default for waits on peers (they normally answer within milliseconds).
pub const WAIT: Duration = Duration::from_secs(10);
/// Ports handed out per [`PortBlock`].
pub const PORT_BLOCK_SIZE: u16 = 100;
/// Ports the allocator hands out: below Linux's ephemeral range (32768-60999, where the kernel picks
/// source ports) and above the shared example peers (5060-5069, 20000-20599).
const PORT_RANGE: (u16, u16) = (21000, 32000);

const KAMAILIO_CFG: &str = include_str!("../peers/kamailio.cfg.in");
const SIPP_UAS_XML: &str = include_str!("../peers/sipp/uas-echo.xml");
const SIPP_UAC_XML: &str = include_str!("../peers/sipp/uac-call.xml.in");
const BARESIP_CONFIG: &str = include_str!("../peers/baresip-config.in");
const BARESIP_MODULES: &str = "/usr/lib/baresip/modules";
/// How long a stopped peer gets to exit before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(3);

// ---------------------------------------------------------------------------------------------------
// Peer software

/// Path of the peer program `bin`; fails the test (panics) with how to install it when it is missing.
/// Searches PATH, then the sbin directories (kamailio is in /usr/sbin, not on a user's PATH).
pub fn require(bin: &str) -> PathBuf {
    find_program(bin).unwrap_or_else(|| {
        panic!(
            "required test peer `{bin}` not found on PATH or in /usr/sbin: install it with \
             scripts/install-deps.sh (Debian package `{}`); peer tests never skip",
            package_of(bin)
        )
    })
}

/// Like [`require`] for a data file or directory a peer needs.
fn require_path(path: &str, package: &str) -> PathBuf {
    let path = PathBuf::from(path);
    assert!(
        path.exists(),
        "{} not found: install it with scripts/install-deps.sh (Debian package `{package}`)",
        path.display()
    );
    path
}

pub fn find_program(bin: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(bin))
        .find(|candidate| {
            fs::metadata(candidate)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

fn package_of(bin: &str) -> &str {
    match bin {
        "sipp" => "sip-tester",
        "Xvfb" => "xvfb",
        "import" => "imagemagick",
        "xwininfo" => "x11-utils",
        other => other,
    }
}

// ---------------------------------------------------------------------------------------------------
// Ports

/// A block of [`PORT_BLOCK_SIZE`] consecutive ports, free for UDP and TCP on 127.0.0.1 when acquired
/// and reserved for this block's owner until it is dropped: a lock file under
/// `$TMPDIR/dialtone-test-ports/` is held (flock), so other tests and other test processes (another
/// checkout running its tests at the same time) pick other blocks.
pub struct PortBlock {
    base: u16,
    next: AtomicU16,
    _lock: File,
}

impl PortBlock {
    /// Reserves a free block; panics when none is left.
    pub fn acquire() -> PortBlock {
        Self::try_acquire().expect("no free block of test ports")
    }

    pub fn try_acquire() -> Result<PortBlock> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join("dialtone-test-ports");
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        // Shared by every user of the machine; best effort.
        let _ = fs::set_permissions(&dir, fs::Permissions::from_mode(0o1777));
        let blocks = u32::from((PORT_RANGE.1 - PORT_RANGE.0) / PORT_BLOCK_SIZE);
        // Spread processes and tests over the range so that the first try usually succeeds.
        let seed = std::process::id()
            .wrapping_mul(7919)
            .wrapping_add(COUNTER.fetch_add(1, Ordering::Relaxed).wrapping_mul(13));
        for i in 0..blocks {
            let index = (seed.wrapping_add(i) % blocks) as u16;
            let base = PORT_RANGE.0 + index * PORT_BLOCK_SIZE;
            let path = dir.join(format!("block-{base}.lock"));
            let Ok(lock) = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .or_else(|_| File::open(&path))
            else {
                continue;
            };
            let _ = fs::set_permissions(&path, fs::Permissions::from_mode(0o666));
            if lock.try_lock().is_err() {
                continue;
            }
            if (base..base + PORT_BLOCK_SIZE).all(port_is_free) {
                return Ok(PortBlock {
                    base,
                    next: AtomicU16::new(0),
                    _lock: lock,
                });
            }
        }
        bail!(
            "no free block of {PORT_BLOCK_SIZE} ports in {}-{}",
            PORT_RANGE.0,
            PORT_RANGE.1
        )
    }

    /// The first of `n` consecutive unused ports of the block.
    pub fn take(&self, n: u16) -> u16 {
        let offset = self.next.fetch_add(n, Ordering::Relaxed);
        assert!(
            offset + n <= PORT_BLOCK_SIZE,
            "port block {} exhausted: a test may use {PORT_BLOCK_SIZE} ports",
            self.base
        );
        self.base + offset
    }

    /// One port (for Kamailio, the sipp UAS's echo port target, or your own socket).
    pub fn port(&self) -> u16 {
        self.take(1)
    }

    /// A SIP port for a sipp or baresip peer, which also uses the port above it (baresip: SIP over
    /// TLS; sipp: its control socket).
    pub fn sip_port(&self) -> u16 {
        self.take(2)
    }

    /// `n` consecutive ports as an inclusive range (RTP + RTCP pairs: take an even `n`).
    pub fn rtp_ports(&self, n: u16) -> (u16, u16) {
        let first = self.take(n);
        (first, first + n - 1)
    }

    /// The block's ports: `first..first + PORT_BLOCK_SIZE`.
    pub fn first(&self) -> u16 {
        self.base
    }
}

/// True when `port` can be bound on 127.0.0.1 for both UDP and TCP right now.
pub fn port_is_free(port: u16) -> bool {
    std::net::UdpSocket::bind((HOST, port)).is_ok()
        && std::net::TcpListener::bind((HOST, port)).is_ok()
}

/// True when something has a UDP socket bound to 127.0.0.1 (or any address) on `port`.
pub fn udp_listening(port: u16) -> bool {
    proc_net_has("/proc/net/udp", port, None)
}

/// True when something listens for TCP on 127.0.0.1 (or any address) on `port`.
pub fn tcp_listening(port: u16) -> bool {
    proc_net_has("/proc/net/tcp", port, Some("0A"))
}

/// True when a TCP connection on 127.0.0.1 has `port` as its local port (e.g. one a client opened
/// to a server listening there).
pub fn tcp_connected(port: u16) -> bool {
    proc_net_has("/proc/net/tcp", port, Some("01"))
}

/// Reads the kernel's socket table rather than probing, which could steal the port from the peer.
fn proc_net_has(table: &str, port: u16, state: Option<&str>) -> bool {
    let Ok(text) = fs::read_to_string(table) else {
        return false;
    };
    let local = [
        format!("0100007F:{port:04X}"),
        format!("00000000:{port:04X}"),
    ];
    text.lines().skip(1).any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.len() > 3
            && local.iter().any(|l| l == fields[1])
            && state.is_none_or(|s| s == fields[3])
    })
}

// ---------------------------------------------------------------------------------------------------
// Child processes and their output

/// Everything a child wrote to stdout and stderr, as it arrives.
#[derive(Clone, Default)]
struct Output(Arc<(Mutex<OutputState>, Condvar)>);

#[derive(Default)]
struct OutputState {
    bytes: Vec<u8>,
    open_streams: usize,
}

enum WaitError {
    Timeout,
    Closed,
}

impl Output {
    fn attach(&self, name: &str, mut stream: impl Read + Send + 'static) {
        self.0.0.lock().unwrap().open_streams += 1;
        let out = self.clone();
        thread::Builder::new()
            .name(format!("{name}-output"))
            .spawn(move || {
                let (state, changed) = &*out.0;
                let mut buf = [0u8; 8192];
                loop {
                    match stream.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => {
                            state.lock().unwrap().bytes.extend_from_slice(&buf[..n]);
                            changed.notify_all();
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(_) => break,
                    }
                }
                state.lock().unwrap().open_streams -= 1;
                changed.notify_all();
            })
            .expect("spawning an output reader thread");
    }

    /// The output as a terminal would show it: of a line rewritten with carriage returns (baresip's
    /// call status line, its echo of typed commands) only the last version is kept.
    fn text(&self) -> String {
        let state = self.0.0.lock().unwrap();
        String::from_utf8_lossy(&state.bytes)
            .split('\n')
            .map(|line| {
                line.rsplit('\r')
                    .find(|version| !version.trim().is_empty())
                    .unwrap_or("")
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn len(&self) -> usize {
        self.0.0.lock().unwrap().bytes.len()
    }

    fn tail(&self, max: usize) -> String {
        let text = self.text();
        let mut start = text.len().saturating_sub(max);
        while !text.is_char_boundary(start) {
            start += 1;
        }
        text[start..].to_string()
    }

    /// Waits until one of `needles` occurs in the output at or after byte `from`. Returns the index of
    /// the needle that occurs first and the offset just past it.
    fn wait_any(
        &self,
        from: usize,
        needles: &[&str],
        timeout: Duration,
    ) -> Result<(usize, usize), WaitError> {
        let deadline = Instant::now() + timeout;
        let (state, changed) = &*self.0;
        let mut guard = state.lock().unwrap();
        loop {
            let hay = guard.bytes.get(from..).unwrap_or_default();
            let hit = needles
                .iter()
                .enumerate()
                .filter_map(|(i, n)| find(hay, n.as_bytes()).map(|at| (at, i, n.len())))
                .min();
            if let Some((at, i, len)) = hit {
                return Ok((i, from + at + len));
            }
            if guard.open_streams == 0 {
                return Err(WaitError::Closed);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(WaitError::Timeout);
            }
            guard = changed.wait_timeout(guard, deadline - now).unwrap().0;
        }
    }

    /// Waits until the child closed stdout and stderr (its output is complete).
    fn wait_closed(&self, timeout: Duration) {
        let (state, changed) = &*self.0;
        let guard = state.lock().unwrap();
        let _ = changed
            .wait_timeout_while(guard, timeout, |s| s.open_streams > 0)
            .unwrap();
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A running peer: the child, its output, its temp dir; stopped and waited for on drop. It leads
/// its own process group, which is SIGKILLed once the peer has exited, before the peer is reaped
/// (so the group id cannot have been reused): nothing it forked outlives it, e.g. a Kamailio worker
/// its main process left behind.
struct Peer {
    name: String,
    child: Child,
    /// Set once the child has been reaped.
    status: Option<ExitStatus>,
    output: Output,
    /// Sent first on stop; SIGKILL follows after [`STOP_GRACE`].
    stop_signal: libc::c_int,
    /// A line written to stdin (if piped) instead of `stop_signal`, e.g. baresip's `/quit`.
    stop_command: Option<&'static str>,
    stdin: Option<ChildStdin>,
    dir: Option<TempDir>,
}

impl Peer {
    fn spawn(name: &str, mut cmd: Command, dir: TempDir, stop_signal: libc::c_int) -> Result<Peer> {
        // One pipe for stdout and stderr keeps the lines in the order the peer wrote them.
        let (reader, writer) = io::pipe().context("creating an output pipe")?;
        cmd.current_dir(dir.path())
            .stdout(writer.try_clone().context("duplicating the output pipe")?)
            .stderr(writer)
            .process_group(0);
        die_with_parent(&mut cmd, libc::SIGTERM);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {name}: {cmd:?}"))?;
        drop(cmd); // our copies of the pipe's write end: the reader sees EOF when the peer's close
        let output = Output::default();
        output.attach(name, reader);
        let stdin = child.stdin.take();
        Ok(Peer {
            name: name.to_string(),
            child,
            status: None,
            output,
            stop_signal,
            stop_command: None,
            stdin,
            dir: Some(dir),
        })
    }

    fn dir(&self) -> &Path {
        self.dir.as_ref().expect("peer dir").path()
    }

    /// Whether the peer's main process has exited, without reaping it.
    fn has_exited(&self) -> bool {
        if self.status.is_some() {
            return true;
        }
        // SAFETY: waitid only writes the siginfo_t we own; WNOWAIT leaves the child unreaped.
        unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            let flags = libc::WEXITED | libc::WNOHANG | libc::WNOWAIT;
            libc::waitid(libc::P_PID, self.child.id(), &mut info, flags) != 0 || info.si_pid() != 0
        }
    }

    /// Waits up to `timeout` for the peer to exit; then kills its process group and reaps it.
    fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while !self.has_exited() {
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(5));
        }
        Some(self.reap())
    }

    /// SIGKILLs the process group (the main process if still there, whatever it forked), reaps.
    fn reap(&mut self) -> ExitStatus {
        if let Some(status) = self.status {
            return status;
        }
        // SAFETY: plain syscall; the group id is still ours since its leader is not reaped yet.
        unsafe {
            libc::kill(-(self.child.id() as libc::pid_t), libc::SIGKILL);
        }
        let status = self.child.wait().expect("waiting for a peer");
        self.status = Some(status);
        status
    }

    fn signal(&self, signal: libc::c_int) {
        // SAFETY: plain syscall on our own child's pid (not yet reaped, so not reused).
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, signal);
        }
    }

    /// Asks the peer to stop, then kills it; waits for it either way.
    fn stop(&mut self) -> ExitStatus {
        if self.has_exited() {
            return self.reap();
        }
        let asked = match (self.stop_command, self.stdin.as_mut()) {
            (Some(line), Some(stdin)) => writeln!(stdin, "{line}").is_ok(),
            _ => false,
        };
        if !asked {
            self.signal(self.stop_signal);
        }
        self.wait_exit(STOP_GRACE).unwrap_or_else(|| self.reap())
    }

    /// Polls `ready` until it holds; fails early when the peer exits.
    fn wait_until(
        &mut self,
        what: &str,
        timeout: Duration,
        ready: impl Fn() -> bool,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if ready() {
                return Ok(());
            }
            if self.has_exited() {
                let status = self.reap();
                self.output.wait_closed(Duration::from_millis(500));
                return Err(self.error(&format!("exited ({status}) before {what}")));
            }
            if Instant::now() >= deadline {
                return Err(self.error(&format!("not {what} after {timeout:?}")));
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits for one of `needles` in the output after byte `from`; see [`Output::wait_any`].
    fn wait_output(
        &mut self,
        from: usize,
        needles: &[&str],
        timeout: Duration,
    ) -> Result<(usize, usize)> {
        match self.output.wait_any(from, needles, timeout) {
            Ok(hit) => Ok(hit),
            Err(WaitError::Closed) => {
                let status = self.wait_exit(Duration::from_secs(1));
                Err(self.error(&format!(
                    "exited ({status:?}) while waiting for {needles:?}"
                )))
            }
            Err(WaitError::Timeout) => {
                Err(self.error(&format!("no {needles:?} in its output within {timeout:?}")))
            }
        }
    }

    /// An error about this peer that carries the end of its output.
    fn error(&self, what: &str) -> anyhow::Error {
        anyhow!(
            "{}: {what}\n----- last output of {} -----\n{}\n----- end of {} output -----",
            self.name,
            self.name,
            self.output.tail(4000),
            self.name
        )
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.stop();
        if thread::panicking() || std::env::var_os("DIALTONE_PEER_LOGS").is_some() {
            self.output.wait_closed(Duration::from_millis(200));
            eprintln!(
                "----- output of {} -----\n{}\n----- end of {} output -----",
                self.name,
                self.output.text(),
                self.name
            );
        }
        if std::env::var_os("DIALTONE_KEEP_PEER_DIRS").is_some()
            && let Some(dir) = self.dir.take()
        {
            eprintln!("{}: kept {}", self.name, dir.keep().display());
        }
    }
}

fn peer_dir(name: &str) -> Result<TempDir> {
    tempfile::Builder::new()
        .prefix(&format!("dialtone-{name}-"))
        .tempdir()
        .context("creating a temp dir for a peer")
}

// ---------------------------------------------------------------------------------------------------
// Kamailio

/// Kamailio 5.6 as registrar + proxy on 127.0.0.1, UDP and TCP, from `tests/peers/kamailio.cfg.in`:
/// users alice/bob/carol (passwords alicepw/bobpw/carolpw) authenticate with digest (realm 127.0.0.1);
/// `sip:USER@127.0.0.1:PORT` reaches a registered USER; `sip:echo@…` goes to a sipp UAS on
/// `echo_port` (start one with [`SippUas::start`]); record-route is on.
pub struct Kamailio {
    peer: Peer,
    port: u16,
    echo_port: u16,
}

impl Kamailio {
    /// Starts Kamailio on `port` (UDP and TCP) and waits until it listens on both (~20 ms).
    pub fn start(port: u16, echo_port: u16) -> Result<Kamailio> {
        Self::start_with(port, echo_port, "")
    }

    /// Like [`Kamailio::start`], with more core parameters (lines of `name=value`) in its config,
    /// e.g. `tcp_connection_lifetime=2` to have it close idle TCP connections after 2 s.
    pub fn start_with(port: u16, echo_port: u16, extra_core: &str) -> Result<Kamailio> {
        let bin = require("kamailio");
        let dir = peer_dir("kamailio")?;
        let cfg = KAMAILIO_CFG
            .replace("@SIP_PORT@", &port.to_string())
            .replace("@TCP_LISTEN@", &format!("listen=tcp:{HOST}:{port}"))
            .replace("@ECHO_PORT@", &echo_port.to_string())
            .replace("@EXTRA_CORE@", extra_core);
        let cfg_path = dir.path().join("kamailio.cfg");
        fs::write(&cfg_path, cfg).context("writing kamailio.cfg")?;
        let mut cmd = Command::new(bin);
        // -DD: stay in the foreground (the workers are still forked), -E: log to stderr,
        // -m/-M: shared/private memory in MB, -w: working directory (core files).
        cmd.arg("-f")
            .arg(&cfg_path)
            .args(["-DD", "-E", "-m", "64", "-M", "8", "-w"])
            .arg(dir.path())
            .stdin(Stdio::null());
        // SIGTERM: the main process then stops its workers; SIGKILL would orphan them.
        let mut peer = Peer::spawn("kamailio", cmd, dir, libc::SIGTERM)?;
        peer.wait_until("listening on UDP and TCP", WAIT, || {
            udp_listening(port) && tcp_listening(port)
        })?;
        Ok(Kamailio {
            peer,
            port,
            echo_port,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Where `sip:echo@…` is relayed to: the port to give [`SippUas::start`].
    pub fn echo_port(&self) -> u16 {
        self.echo_port
    }

    /// `sip:USER@127.0.0.1:PORT`: USER's address of record here (append `;transport=tcp` for TCP).
    pub fn uri(&self, user: &str) -> String {
        format!("sip:{user}@{HOST}:{}", self.port)
    }

    /// Kamailio's log so far.
    pub fn log(&self) -> String {
        self.peer.output.text()
    }

    /// Waits until `needle` is in Kamailio's log (e.g. an `xlog` line of the config).
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> Result<()> {
        self.peer.wait_output(0, &[needle], timeout).map(|_| ())
    }

    /// Process id of the main process (for CPU/RSS figures).
    pub fn pid(&self) -> u32 {
        self.peer.child.id()
    }

    /// Kills Kamailio and its workers at once (SIGKILL to the process group, no clean shutdown),
    /// as a crashed or vanished server: its UDP and TCP ports close (TCP connections are reset or
    /// closed by the kernel). Returns when they are gone.
    pub fn kill(&mut self) -> Result<()> {
        self.peer.reap();
        let deadline = Instant::now() + WAIT;
        while udp_listening(self.port) || tcp_listening(self.port) {
            if Instant::now() >= deadline {
                return Err(self.peer.error("its ports are still open after SIGKILL"));
            }
            thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------------
// sipp

/// A sipp UAS (`tests/peers/sipp/uas-echo.xml`) that answers every INVITE with PCMU and echoes all
/// RTP back to its sender, until dropped.
pub struct SippUas {
    peer: Peer,
    port: u16,
    rtp_port: u16,
}

impl SippUas {
    /// Listens for SIP on UDP `port` (control socket on `port + 1`: take it with
    /// [`PortBlock::sip_port`]) and echoes RTP on `rtp_port` and `rtp_port + 2` (take 4 ports).
    pub fn start(port: u16, rtp_port: u16) -> Result<SippUas> {
        Self::start_with(port, rtp_port, None)
    }

    /// Like [`SippUas::start`], but sipp exits after `calls` calls (`-m`): exit status 0 when every
    /// one completed as scripted (INVITE, ACK, BYE answered), see [`SippUas::wait_exit`]. It exits
    /// 2 s after the last BYE (the scenario keeps the call to absorb a retransmitted BYE).
    pub fn start_for_calls(port: u16, rtp_port: u16, calls: u32) -> Result<SippUas> {
        Self::start_with(port, rtp_port, Some(calls))
    }

    fn start_with(port: u16, rtp_port: u16, calls: Option<u32>) -> Result<SippUas> {
        let bin = require("sipp");
        let dir = peer_dir("sipp-uas")?;
        let scenario = dir.path().join("uas-echo.xml");
        fs::write(&scenario, SIPP_UAS_XML).context("writing uas-echo.xml")?;
        let mut cmd = Command::new(bin);
        cmd.arg("-sf")
            .arg(&scenario)
            .args(sipp_local_args(port, rtp_port))
            .args([
                "-rtp_echo",
                "-nostdin",
                "-trace_err",
                "-error_file",
                "errors.log",
            ])
            .stdin(Stdio::null());
        if let Some(calls) = calls {
            cmd.args(["-m", &calls.to_string()]);
        }
        let mut peer = Peer::spawn("sipp-uas", cmd, dir, libc::SIGTERM)?;
        peer.wait_until("listening", WAIT, || {
            udp_listening(port) && udp_listening(rtp_port)
        })?;
        Ok(SippUas {
            peer,
            port,
            rtp_port,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn rtp_port(&self) -> u16 {
        self.rtp_port
    }

    /// sipp's error log (unexpected messages, retransmission timeouts…); empty when all went well.
    pub fn errors(&self) -> String {
        fs::read_to_string(self.peer.dir().join("errors.log")).unwrap_or_default()
    }

    pub fn log(&self) -> String {
        self.peer.output.text()
    }

    /// Waits for sipp to exit by itself (started with [`SippUas::start_for_calls`]); 0 means every
    /// call completed as scripted.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let status = self
            .peer
            .wait_exit(timeout)
            .ok_or_else(|| self.peer.error(&format!("still running after {timeout:?}")))?;
        self.peer.output.wait_closed(Duration::from_secs(1));
        Ok(status)
    }
}

/// Addresses and ports of a sipp instance: all on 127.0.0.1, the control socket (which sipp would
/// otherwise bind on 0.0.0.0:8888 and up) on `sip_port + 1`.
fn sipp_local_args(sip_port: u16, rtp_port: u16) -> Vec<String> {
    [
        "-i",
        HOST,
        "-p",
        &sip_port.to_string(),
        "-ci",
        HOST,
        "-cp",
        &(sip_port + 1).to_string(),
        "-mi",
        HOST,
        "-mp",
        &rtp_port.to_string(),
    ]
    .map(String::from)
    .to_vec()
}

/// A sipp UAC making one call (`tests/peers/sipp/uac-call.xml.in`): INVITE offering PCMA/PCMU,
/// ACK, PCMA RTP (or silence) for the hold time, BYE.
#[derive(Clone, Debug)]
pub struct SippUac {
    local_port: u16,
    rtp_port: u16,
    media: bool,
    hold: Duration,
    transport: Transport,
}

/// How a [`SippUac`] call went.
#[derive(Debug)]
pub struct SippOutcome {
    /// sipp's exit status: 0 when the call completed as scripted (200 to the INVITE and the BYE).
    pub status: ExitStatus,
    /// sipp's error log (`-trace_err`).
    pub errors: String,
    /// sipp's stdout/stderr (final statistics screen).
    pub output: String,
    /// From start to exit.
    pub elapsed: Duration,
}

impl SippOutcome {
    pub fn success(&self) -> bool {
        self.status.success()
    }
}

impl fmt::Display for SippOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sipp UAC: {} after {:?}\n----- sipp errors -----\n{}\n----- sipp output -----\n{}",
            self.status, self.elapsed, self.errors, self.output
        )
    }
}

impl SippUac {
    /// A UAC on SIP port `local_port` (control socket on `local_port + 1`: take it with
    /// [`PortBlock::sip_port`]) and RTP port `rtp_port` (take 4), sending a 440 Hz tone as PCMA
    /// for 2 s.
    pub fn new(local_port: u16, rtp_port: u16) -> SippUac {
        SippUac {
            local_port,
            rtp_port,
            media: true,
            hold: Duration::from_secs(2),
            transport: Transport::Udp,
        }
    }

    /// SIP over `transport`: UDP (the default) or TCP (sipp's `-t t1`: one connection to the
    /// target, which carries the whole call, responses and requests both ways).
    pub fn transport(mut self, transport: Transport) -> SippUac {
        self.transport = transport;
        self
    }

    /// Sends no RTP, only holds the call.
    pub fn without_media(mut self) -> SippUac {
        self.media = false;
        self
    }

    /// How long the call lasts between ACK and BYE (the tone loops until the BYE).
    pub fn hold(mut self, hold: Duration) -> SippUac {
        self.hold = hold;
        self
    }

    /// Calls `sip:USER@127.0.0.1:TARGET_PORT` (Kamailio, or a UA directly) over UDP or TCP (see
    /// [`SippUac::transport`]) and waits for sipp to finish. A failed call is an `Ok` outcome with a failure status; `Err` means sipp could
    /// not run or hung.
    pub fn run(&self, target_port: u16, user: &str) -> Result<SippOutcome> {
        let bin = require("sipp");
        let dir = peer_dir("sipp-uac")?;
        let media = if self.media {
            // rtp_stream sends from the -mp socket; play_pcap_audio would need a raw socket (root).
            let tone = dir.path().join("tone.pcma");
            fs::write(&tone, pcma(&tone_samples(440, 10))).context("writing tone.pcma")?;
            format!(
                r#"<nop><action><exec rtp_stream="{},-1,8"/></action></nop>"#,
                tone.display()
            )
        } else {
            String::new()
        };
        let scenario = dir.path().join("uac-call.xml");
        let xml = SIPP_UAC_XML
            .replace("@HOLD_MS@", &self.hold.as_millis().to_string())
            .replace("@MEDIA@", &media);
        fs::write(&scenario, xml).context("writing uac-call.xml")?;
        let timeout = self.hold + Duration::from_secs(10);
        let mut cmd = Command::new(bin);
        cmd.arg(format!("{HOST}:{target_port}"))
            .arg("-sf")
            .arg(&scenario)
            .args(["-s", user])
            .args(match self.transport {
                Transport::Udp => ["-t", "u1"],
                Transport::Tcp => ["-t", "t1"],
            })
            .args(sipp_local_args(self.local_port, self.rtp_port))
            .args(["-m", "1", "-nostdin", "-timeout_error", "-timeout"])
            .arg(format!("{}s", timeout.as_secs()))
            .args(["-trace_err", "-error_file", "errors.log"])
            .stdin(Stdio::null());
        let started = Instant::now();
        let mut peer = Peer::spawn("sipp-uac", cmd, dir, libc::SIGTERM)?;
        let Some(status) = peer.wait_exit(timeout + Duration::from_secs(5)) else {
            return Err(peer.error(&format!("still running after {timeout:?}")));
        };
        let elapsed = started.elapsed();
        peer.output.wait_closed(Duration::from_secs(1));
        Ok(SippOutcome {
            status,
            errors: fs::read_to_string(peer.dir().join("errors.log")).unwrap_or_default(),
            output: peer.output.text(),
            elapsed,
        })
    }
}

// ---------------------------------------------------------------------------------------------------
// baresip

/// SIP transport of a baresip account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        }
    }
}

/// Whether baresip answers incoming calls by itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnswerMode {
    /// Answers at once.
    Auto,
    /// Rings until `/accept`.
    Manual,
}

/// One baresip user agent; see [`Baresip::start`].
#[derive(Clone, Debug)]
pub struct BaresipConfig {
    pub user: String,
    /// Defaults to `{user}pw` (Kamailio's test passwords).
    pub password: String,
    /// SIP over UDP and TCP; baresip also listens for TLS on `sip_port + 1`.
    pub sip_port: u16,
    /// Inclusive RTP/RTCP port range.
    pub rtp_ports: (u16, u16),
    /// Register at Kamailio on this port (every 600 s); `None`: no registration.
    pub registrar_port: Option<u16>,
    pub transport: Transport,
    pub answer_mode: AnswerMode,
    /// baresip's `audio_codecs` account parameter; default `pcmu,pcma` (the tone microphone is
    /// 8 kHz and baresip 1.0 does not resample); `None` offers every loaded codec (opus, G.722…).
    pub audio_codecs: Option<String>,
    /// `mediaenc`: `srtp`, `srtp-mand`, `dtls_srtp` (SDES-SRTP / DTLS-SRTP); `None`: plain RTP.
    pub media_enc: Option<String>,
    /// VP8 video from a fake source (needs more RTP ports).
    pub video: bool,
    /// Appended to the account line, e.g. `;ptime=30`.
    pub extra_account_params: String,
}

impl BaresipConfig {
    pub fn new(user: &str, sip_port: u16, rtp_ports: (u16, u16)) -> BaresipConfig {
        BaresipConfig {
            user: user.to_string(),
            password: format!("{user}pw"),
            sip_port,
            rtp_ports,
            registrar_port: None,
            transport: Transport::Udp,
            answer_mode: AnswerMode::Auto,
            audio_codecs: Some("pcmu,pcma".to_string()),
            media_enc: None,
            video: false,
            extra_account_params: String::new(),
        }
    }

    /// Takes a SIP port pair and 10 RTP ports from `ports`.
    pub fn from_ports(user: &str, ports: &PortBlock) -> BaresipConfig {
        BaresipConfig::new(user, ports.sip_port(), ports.rtp_ports(10))
    }

    pub fn registrar(mut self, port: u16) -> BaresipConfig {
        self.registrar_port = Some(port);
        self
    }

    pub fn transport(mut self, transport: Transport) -> BaresipConfig {
        self.transport = transport;
        self
    }

    pub fn answer_mode(mut self, mode: AnswerMode) -> BaresipConfig {
        self.answer_mode = mode;
        self
    }

    pub fn password(mut self, password: &str) -> BaresipConfig {
        self.password = password.to_string();
        self
    }

    pub fn audio_codecs(mut self, codecs: Option<&str>) -> BaresipConfig {
        self.audio_codecs = codecs.map(str::to_string);
        self
    }

    pub fn media_enc(mut self, media_enc: &str) -> BaresipConfig {
        self.media_enc = Some(media_enc.to_string());
        self
    }

    pub fn video(mut self, video: bool) -> BaresipConfig {
        self.video = video;
        self
    }

    /// The `config` file (from `tests/peers/baresip-config.in`).
    pub fn config_file(&self, tone_wav: &Path) -> String {
        let mut extra = String::new();
        if self.media_enc.as_deref() == Some("dtls_srtp") {
            extra.push_str("module dtls_srtp.so\n");
        }
        if self.video {
            extra.push_str(
                "module vp8.so\nmodule fakevideo.so\n\
                 video_source fakevideo,nil\nvideo_display fakevideo,nil\n",
            );
        }
        BARESIP_CONFIG
            .replace("@SIP_PORT@", &self.sip_port.to_string())
            .replace("@TONE_WAV@", &tone_wav.display().to_string())
            .replace("@RTP_FIRST@", &self.rtp_ports.0.to_string())
            .replace("@RTP_LAST@", &self.rtp_ports.1.to_string())
            .replace("@EXTRA_MODULES@", &extra)
    }

    /// The `accounts` file: one account line.
    /// A fresh temp dir with this config, its accounts and a 440 Hz tone file as microphone: what
    /// `baresip -f DIR` reads (the harness and the benches start baresip from it).
    pub fn write_dir(&self) -> Result<TempDir> {
        let dir = peer_dir(&format!("baresip-{}", self.user))?;
        let tone = dir.path().join("tone.wav");
        fs::write(&tone, wav_8k(&tone_samples(440, 60))).context("writing tone.wav")?;
        fs::write(dir.path().join("config"), self.config_file(&tone))
            .context("writing baresip config")?;
        fs::write(dir.path().join("accounts"), self.accounts_file())
            .context("writing baresip accounts")?;
        Ok(dir)
    }

    pub fn accounts_file(&self) -> String {
        let (host, regint) = match self.registrar_port {
            Some(port) => (format!("{HOST}:{port}"), 600),
            None => (HOST.to_string(), 0),
        };
        let mut line = format!(
            "<sip:{}@{host};transport={}>;auth_pass={};answermode={};regint={regint}",
            self.user,
            self.transport.as_str(),
            self.password,
            match self.answer_mode {
                AnswerMode::Auto => "auto",
                AnswerMode::Manual => "manual",
            },
        );
        if let Some(codecs) = &self.audio_codecs {
            line.push_str(&format!(";audio_codecs={codecs}"));
        }
        if let Some(enc) = &self.media_enc {
            line.push_str(&format!(";mediaenc={enc}"));
        }
        line.push_str(&self.extra_account_params);
        line.push('\n');
        line
    }
}

/// What baresip 1.0 logs, for [`Baresip::wait_for`].
pub mod baresip_log {
    /// `All 1 useragent registered successfully! (1 ms)`
    pub const REGISTERED: &str = "registered successfully";
    /// `sip:bob@127.0.0.1:PORT: Incoming call from:  sip:alice@… - (press 'a' to accept)` (manual
    /// answer mode; auto answer logs `call: answering call on line 1 from sip:alice@… with 200`).
    pub const INCOMING_CALL: &str = "Incoming call from:";
    /// `bob@127.0.0.1: Call established: sip:alice@…` (both sides).
    pub const CALL_ESTABLISHED: &str = "Call established";
    /// `stream: incoming rtp for 'audio' established, receiving from 127.0.0.1:PORT`: media arrives.
    /// The caller can log it before `Call established`.
    pub const AUDIO_RECEIVED: &str = "incoming rtp for 'audio' established";
    /// `call: terminate call '…' with sip:…`: this UA hung up (`/hangup`); logged before the BYE.
    pub const HUNG_UP: &str = "call: terminate call";
    /// `sip:alice@…: session closed: Connection reset by peer`: the far end hung up (libre reports a
    /// received BYE as ECONNRESET) or rejected the call (`session closed: 486 Busy Here`).
    pub const CLOSED_BY_PEER: &str = "session closed:";
    /// `… Call with sip:… terminated (duration: 1 sec)`: only for calls that lasted 1 s or more.
    pub const TERMINATED: &str = "terminated (duration";
}

/// baresip 1.0, headless: a 440 Hz tone (8 kHz WAV) as microphone, a paced null player, commands on
/// stdin. Wait for its log lines with [`Baresip::wait_for`] and the texts in [`baresip_log`].
pub struct Baresip {
    peer: Peer,
    config: BaresipConfig,
}

/// A position in a peer's log: see [`Baresip::mark`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct LogMark(usize);

impl Baresip {
    /// Writes the config into a fresh temp dir, starts baresip and waits until it is ready and, with a
    /// registrar, registered (~30 ms); a rejected registration fails at once.
    pub fn start(config: BaresipConfig) -> Result<Baresip> {
        let bin = require("baresip");
        require_path(BARESIP_MODULES, "baresip-core");
        let dir = config.write_dir()?;
        let mut cmd = Command::new(bin);
        cmd.arg("-f").arg(dir.path()).stdin(Stdio::piped());
        let name = format!("baresip-{}", config.user);
        let mut peer = Peer::spawn(&name, cmd, dir, libc::SIGTERM)?;
        peer.stop_command = Some("/quit");
        let mut ua = Baresip { peer, config };
        ua.wait_for("baresip is ready.", WAIT)?;
        if ua.config.registrar_port.is_some() {
            // Success: "All 1 useragent registered successfully!"; failure: "reg: <aor>: 401 …".
            if ua.wait_for_any(&[baresip_log::REGISTERED, "reg: "], WAIT)? == 1 {
                thread::sleep(Duration::from_millis(50)); // the rest of the line
                return Err(ua.peer.error("registration failed"));
            }
        }
        Ok(ua)
    }

    pub fn user(&self) -> &str {
        &self.config.user
    }

    pub fn config(&self) -> &BaresipConfig {
        &self.config
    }

    pub fn sip_port(&self) -> u16 {
        self.config.sip_port
    }

    /// `sip:USER@127.0.0.1:SIP_PORT`: this UA directly, without Kamailio.
    pub fn uri(&self) -> String {
        format!("sip:{}@{HOST}:{}", self.config.user, self.config.sip_port)
    }

    /// Types a command line into baresip (`/dial sip:…`, `/accept`, `/hangup`, `/quit`…).
    pub fn command(&mut self, line: &str) -> Result<()> {
        let stdin = self.peer.stdin.as_mut().context("baresip stdin closed")?;
        writeln!(stdin, "{line}")
            .and_then(|()| stdin.flush())
            .map_err(|e| {
                self.peer
                    .error(&format!("writing {line:?} to its stdin: {e}"))
            })
    }

    pub fn dial(&mut self, uri: &str) -> Result<()> {
        self.command(&format!("/dial {uri}"))
    }

    pub fn accept(&mut self) -> Result<()> {
        self.command("/accept")
    }

    pub fn hangup(&mut self) -> Result<()> {
        self.command("/hangup")
    }

    /// Waits until `needle` is in the log (anywhere: baresip's lines for one event do not come in a
    /// fixed order, e.g. the caller logs `incoming rtp` before `Call established`). For an event
    /// that happens more than once (a second call), take a [`Baresip::mark`] before causing it and
    /// use [`Baresip::wait_for_after`].
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> Result<()> {
        self.wait_for_after(LogMark(0), needle, timeout)
    }

    /// Like [`Baresip::wait_for`], looking only at the log written after `mark`.
    pub fn wait_for_after(&mut self, mark: LogMark, needle: &str, timeout: Duration) -> Result<()> {
        self.peer
            .wait_output(mark.0, &[needle], timeout)
            .map(|_| ())
    }

    /// Waits for the first of several needles; returns the index of the one found first in the log.
    pub fn wait_for_any(&mut self, needles: &[&str], timeout: Duration) -> Result<usize> {
        self.peer
            .wait_output(0, needles, timeout)
            .map(|(index, _)| index)
    }

    /// The current end of the log.
    pub fn mark(&self) -> LogMark {
        LogMark(self.peer.output.len())
    }

    /// Whether `needle` occurs anywhere in the log so far, without waiting.
    pub fn log_contains(&self, needle: &str) -> bool {
        self.log().contains(needle)
    }

    /// baresip's whole log so far.
    pub fn log(&self) -> String {
        self.peer.output.text()
    }

    /// Process id (for CPU/RSS figures).
    pub fn pid(&self) -> u32 {
        self.peer.child.id()
    }

    /// `/quit` and wait for baresip to exit (it unregisters first).
    pub fn quit(mut self) -> Result<ExitStatus> {
        self.command("/quit")?;
        self.peer
            .wait_exit(WAIT)
            .ok_or_else(|| self.peer.error("did not exit after /quit"))
    }
}

// ---------------------------------------------------------------------------------------------------
// Audio files for the peers

/// 8 kHz samples of a `freq` Hz sine at half scale, `seconds` long.
pub fn tone_samples(freq: u16, seconds: u32) -> Vec<i16> {
    // One second holds whole periods of a whole-Hz tone: compute it once, repeat it.
    let second: Vec<i16> = (0..8000u32)
        .map(|n| {
            let phase = 2.0 * std::f64::consts::PI * f64::from(freq) * f64::from(n) / 8000.0;
            (0.5 * f64::from(i16::MAX) * phase.sin()) as i16
        })
        .collect();
    second.repeat(seconds as usize)
}

/// A 16-bit mono 8 kHz WAV file of `samples` (baresip's microphone).
pub fn wav_8k(samples: &[i16]) -> Vec<u8> {
    const RATE: u32 = 8000;
    let data_len = u32::try_from(samples.len() * 2).expect("WAV under 4 GiB");
    let mut wav = Vec::with_capacity(44 + data_len as usize);
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + data_len).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes()); // fmt chunk size
    wav.extend_from_slice(&1u16.to_le_bytes()); // PCM
    wav.extend_from_slice(&1u16.to_le_bytes()); // mono
    wav.extend_from_slice(&RATE.to_le_bytes());
    wav.extend_from_slice(&(RATE * 2).to_le_bytes()); // bytes per second
    wav.extend_from_slice(&2u16.to_le_bytes()); // bytes per frame
    wav.extend_from_slice(&16u16.to_le_bytes()); // bits per sample
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&data_len.to_le_bytes());
    for sample in samples {
        wav.extend_from_slice(&sample.to_le_bytes());
    }
    wav
}

/// Raw G.711 A-law (PCMA) bytes of `samples` (sipp's `rtp_stream` file format).
pub fn pcma(samples: &[i16]) -> Vec<u8> {
    samples.iter().map(|&s| alaw(s)).collect()
}

/// G.711 A-law: sign, 3-bit segment (the position of the magnitude's top bit), 4-bit mantissa, of
/// the 13-bit magnitude; even bits inverted.
fn alaw(sample: i16) -> u8 {
    let (sign, magnitude) = if sample >= 0 {
        (0x80u8, sample as u16 >> 3)
    } else {
        (0x00, (-(i32::from(sample)) - 1) as u16 >> 3)
    };
    let (segment, mantissa) = if magnitude < 32 {
        (0u8, (magnitude >> 1) as u8)
    } else {
        let segment = (15 - magnitude.leading_zeros() - 4) as u8;
        (segment, ((magnitude >> segment) & 0x0F) as u8)
    };
    (sign | segment << 4 | mantissa) ^ 0x55
}
