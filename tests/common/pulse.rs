//! A private PulseAudio server with a null sink, for tests of the real device path (cpal's
//! PulseAudio host).
//!
//! [`Pulse::start`] runs `pulseaudio` in the foreground as a child of the test's thread (killed by
//! the guard's drop, and by PR_SET_PDEATHSIG if the test dies), with its own runtime directory and
//! HOME in a temp dir, no default script and no hardware modules, so it never touches a user's
//! session. It loads a null sink `loop` and makes it the default sink and `loop.monitor` the
//! default source: what is played to the default output comes back on the default input.
//!
//! The client side finds the server through this process's environment (`XDG_RUNTIME_DIR`,
//! `PULSE_SERVER`), which is process-wide; so one server runs at a time per test process: the
//! guard holds a process-wide lock, and parallel tests in the same binary take turns. Each test
//! process uses its own directory (`dialtone-pulse-PID`), so test binaries run side by side.
//! A missing `pulseaudio` fails the test (install it with scripts/install-deps.sh); it never skips.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// The null sink's name; its monitor is `loop.monitor`.
pub const SINK: &str = "loop";

/// A running private PulseAudio server; dropping it stops the server and frees the turn.
pub struct Pulse {
    child: Child,
    dir: PathBuf,
    _turn: MutexGuard<'static, ()>,
}

fn runtime_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("dialtone-pulse-{}", std::process::id()));
        let socket = dir.join("pulse").join("native");
        // SAFETY: set once, before any server exists, by the first test to take a turn; every
        // test of the binary that uses audio goes through here first, and the values never
        // change afterwards.
        unsafe {
            std::env::set_var("XDG_RUNTIME_DIR", &dir);
            std::env::set_var("PULSE_SERVER", format!("unix:{}", socket.display()));
            std::env::set_var("PULSE_RUNTIME_PATH", dir.join("pulse"));
            std::env::remove_var("PULSE_COOKIE");
        }
        dir
    })
}

fn pactl(dir: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new("pactl")
        .args(args)
        .env("XDG_RUNTIME_DIR", dir)
        .env("HOME", dir)
        .env(
            "PULSE_SERVER",
            format!("unix:{}", dir.join("pulse/native").display()),
        )
        .output()
        .map_err(|e| format!("running pactl (install pulseaudio-utils): {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "pactl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Runs `pulseaudio` in `dir` (emptied first), not waiting for it.
fn spawn(dir: &Path) -> Child {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir.join("pulse")).expect("creating the PulseAudio runtime dir");
    let log = dir.join("pulse.log");
    let mut cmd = Command::new("pulseaudio");
    cmd.args([
        "--daemonize=no",
        "--exit-idle-time=-1",
        "--disallow-exit=yes",
        "--disallow-module-loading=no",
        "--use-pid-file=no",
        "--system=no",
        "-n",
        "--load=module-native-protocol-unix auth-anonymous=1",
        &format!("--log-target=file:{}", log.display()),
    ])
    .env("XDG_RUNTIME_DIR", dir)
    .env("HOME", dir)
    .env_remove("PULSE_SERVER")
    .env("PULSE_RUNTIME_PATH", dir.join("pulse"))
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    super::peers::die_with_parent(&mut cmd, libc::SIGTERM);
    cmd.spawn().unwrap_or_else(|e| {
        panic!(
            "cannot run pulseaudio ({e}): install it with scripts/install-deps.sh \
             (Debian packages pulseaudio and pulseaudio-utils)"
        )
    })
}

impl Pulse {
    /// Starts the server (waiting for it to answer) with the null sink as default sink and its
    /// monitor as default source. Panics with the server's log if anything fails.
    pub fn start() -> Pulse {
        static TURN: Mutex<()> = Mutex::new(());
        let turn = TURN.lock().unwrap_or_else(|p| p.into_inner());
        let dir = runtime_dir().to_path_buf();
        let mut pulse = Pulse {
            child: spawn(&dir),
            dir,
            _turn: turn,
        };
        pulse.set_up();
        pulse
    }

    /// Stops the server and starts a new one in its place (same socket, null sink and defaults),
    /// as a desktop's sound server restarts.
    pub fn restart(&mut self) {
        self.kill_server();
        self.child = spawn(&self.dir);
        self.set_up();
    }

    /// Waits for the server to answer, then loads the null sink and makes it the default.
    fn set_up(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if pactl(&self.dir, &["info"]).is_ok() {
                break;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                self.fail(&format!("pulseaudio exited at start ({status})"));
            }
            if Instant::now() > deadline {
                self.fail("pulseaudio did not answer within 20 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let sink = format!("sink_name={SINK}");
        let props = format!("sink_properties=device.description={SINK}");
        let monitor = format!("{SINK}.monitor");
        for args in [
            &["load-module", "module-null-sink", &sink, &props][..],
            &["set-default-sink", SINK],
            &["set-default-source", &monitor],
        ] {
            if let Err(e) = pactl(&self.dir, args) {
                self.fail(&e);
            }
        }
    }

    fn fail(&mut self, what: &str) -> ! {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut stderr = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut stderr);
        }
        let log = std::fs::read_to_string(self.dir.join("pulse.log")).unwrap_or_default();
        panic!("{what}\n--- pulseaudio stderr ---\n{stderr}\n--- pulse.log ---\n{log}");
    }

    /// `pactl` against this server, for a test's own checks.
    pub fn pactl(&self, args: &[&str]) -> Result<String, String> {
        pactl(&self.dir, args)
    }

    /// Stops the server (its clients lose their connection), keeping this test's turn: no other
    /// test's server can take the socket path while the test checks what happens without one.
    /// Dropping stops it too.
    pub fn kill_server(&mut self) {
        // SIGTERM, then the kill if it lingers.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Pulse {
    fn drop(&mut self) {
        self.kill_server();
        if std::env::var_os("DIALTONE_PEER_LOGS").is_some() {
            eprintln!(
                "--- pulse.log ---\n{}",
                std::fs::read_to_string(self.dir.join("pulse.log")).unwrap_or_default()
            );
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
