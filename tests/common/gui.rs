//! Real windows for the tests: a private Xvfb server, the Dialtone app as a child process on it,
//! and the X tools a person's hands would be (xdotool to find and click windows, ImageMagick's
//! `import` for screenshots). Nothing here skips: a missing tool fails the test with the Debian
//! package to install (scripts/install-deps.sh installs them all).

use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

use super::peers::require;

/// A private X server (`Xvfb`, 1280×800, no TCP), on a display number it picks itself.
pub struct Xvfb {
    child: Child,
    display: String,
}

impl Xvfb {
    pub fn start() -> Result<Xvfb> {
        // One start at a time in this process: Xvfb's own choice of a free display (lock files in
        // /tmp) can race between servers starting together.
        static STARTING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one = STARTING.lock().unwrap_or_else(|e| e.into_inner());
        let mut cmd = Command::new(require("Xvfb"));
        // `-noreset`: by default the server resets whenever its last client disconnects, and
        // the window polls (an `xdotool` run every few ms) are such clients: an app connecting
        // during a reset could not open its display (~1 run in 10 of gui_window with two tests
        // at once; the server answered again right after).
        cmd.args([
            "-noreset",
            "-displayfd",
            "1",
            "-screen",
            "0",
            "1280x800x24",
            "-nolisten",
            "tcp",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
        super::peers::die_with_parent(&mut cmd, libc::SIGTERM);
        let mut child = cmd.spawn().context("starting Xvfb")?;
        let stdout = child.stdout.take().context("Xvfb stdout")?;
        // Xvfb writes the display number once the server accepts connections.
        let (tx, rx) = std::sync::mpsc::channel();
        thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| anyhow!("Xvfb did not report its display within 10 s"))?;
        let n: u32 = line
            .trim()
            .parse()
            .with_context(|| format!("Xvfb printed {line:?} instead of a display number"))?;
        Ok(Xvfb {
            child,
            display: format!(":{n}"),
        })
    }

    pub fn display(&self) -> &str {
        &self.display
    }

    fn tool(&self, bin: &str) -> Command {
        let mut cmd = Command::new(require(bin));
        cmd.env("DISPLAY", &self.display);
        cmd
    }

    /// Runs xdotool; its stdout.
    pub fn xdotool(&self, args: &[&str]) -> Result<String> {
        let out = self
            .tool("xdotool")
            .args(args)
            .output()
            .context("running xdotool")?;
        if !out.status.success() {
            bail!(
                "xdotool {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The visible windows of process `pid` whose title matches `title` (a regex), polling every
    /// 5 ms until one appears; returns its X window id and when it was found.
    pub fn wait_window(&self, pid: u32, title: &str, timeout: Duration) -> Result<(u64, Instant)> {
        let deadline = Instant::now() + timeout;
        loop {
            // `search --pid P --name RE` matches windows of P *or* named RE: filter by pid here.
            let out = self
                .tool("xdotool")
                .args(["search", "--onlyvisible", "--name", title])
                .output()
                .context("running xdotool search")?;
            let ids: Vec<u64> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect();
            for id in ids {
                let owner = self
                    .xdotool(&["getwindowpid", &id.to_string()])
                    .unwrap_or_default();
                if owner.trim().parse::<u32>().ok() == Some(pid) {
                    return Ok((id, Instant::now()));
                }
            }
            if Instant::now() >= deadline {
                // Whether the server itself answers now: tells a dead display from an app that
                // could not (or did not) map its window.
                let server = match self.xdotool(&["getdisplaygeometry"]) {
                    Ok(geometry) => format!("answers (screen {})", geometry.trim()),
                    Err(e) => format!("does not answer: {e:#}"),
                };
                bail!(
                    "no visible window titled /{title}/ of pid {pid} within {timeout:?}; the X \
                     server on {} {server}",
                    self.display
                );
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Is a visible window of `pid` titled /title/ there now?
    pub fn has_window(&self, pid: u32, title: &str) -> bool {
        self.wait_window(pid, title, Duration::ZERO).is_ok()
    }

    /// The window's position and size on the screen.
    pub fn geometry(&self, window: u64) -> Result<(i32, i32, u32, u32)> {
        let out = self.xdotool(&["getwindowgeometry", "--shell", &window.to_string()])?;
        let get = |k: &str| -> Result<i64> {
            out.lines()
                .find_map(|l| l.strip_prefix(&format!("{k}=")))
                .and_then(|v| v.trim().parse().ok())
                .ok_or_else(|| anyhow!("no {k} in xdotool's geometry: {out}"))
        };
        Ok((
            get("X")? as i32,
            get("Y")? as i32,
            get("WIDTH")? as u32,
            get("HEIGHT")? as u32,
        ))
    }

    /// A PNG of the whole screen, cut to one window's rectangle with `Some(window)` (cutting from
    /// the root works whatever the window's depth or stacking).
    pub fn screenshot(&self, window: Option<u64>, path: &Path) -> Result<Image> {
        // Let a window that just appeared settle (map, move, first paint) before looking.
        thread::sleep(Duration::from_millis(100));
        let mut cmd = self.tool("import");
        cmd.args(["-window", "root"]);
        if let Some(w) = window {
            let (x, y, width, height) = self.geometry(w)?;
            cmd.args(["-crop", &format!("{width}x{height}+{x}+{y}"), "+repage"]);
        }
        let out = cmd.arg(path).output().context("running import")?;
        if !out.status.success() {
            bail!("import failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Image::load(path)
    }

    /// Waits until the window shows something of colour `rgb` (± 12 per channel), e.g. the green
    /// Accept button once the popup has painted; returns the centre of that region, in screen
    /// coordinates.
    pub fn wait_color(
        &self,
        window: u64,
        rgb: [u8; 3],
        shot: &Path,
        timeout: Duration,
    ) -> Result<(i32, i32)> {
        let deadline = Instant::now() + timeout;
        loop {
            // A new window may still be moving or resizing: only trust a shot taken while its
            // geometry stayed the same.
            let before = self.geometry(window)?;
            let img = self.screenshot(Some(window), shot)?;
            let after = self.geometry(window)?;
            if before == after
                && let Some((x, y)) = img.center_of(rgb, 12)
            {
                return Ok((after.0 + x as i32, after.1 + y as i32));
            }
            if Instant::now() >= deadline {
                bail!("window {window} showed no {rgb:?} pixels within {timeout:?} (see {shot:?})");
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Clicks what shows colour `rgb` in the window, as a person finds the green Accept button.
    pub fn click_color(&self, window: u64, rgb: [u8; 3], shot: &Path) -> Result<(i32, i32)> {
        let (x, y) = self.wait_color(window, rgb, shot, Duration::from_secs(10))?;
        self.xdotool(&["mousemove", &x.to_string(), &y.to_string(), "click", "1"])?;
        Ok((x, y))
    }
}

impl Drop for Xvfb {
    fn drop(&mut self) {
        // SIGTERM lets Xvfb remove its lock file and socket: a killed server leaves them behind,
        // and the next servers' takeover of a stale display number can race.
        // SAFETY: kill(2) with our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An RGB screenshot.
pub struct Image {
    pub width: u32,
    pub height: u32,
    rgb: Vec<u8>,
}

impl Image {
    pub fn load(path: &Path) -> Result<Image> {
        let file = std::fs::File::open(path).with_context(|| format!("opening {path:?}"))?;
        let mut decoder = png::Decoder::new(io::BufReader::new(file));
        decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
        let mut reader = decoder.read_info().context("reading PNG header")?;
        let mut buf = vec![0; reader.output_buffer_size().context("PNG too large")?];
        let info = reader.next_frame(&mut buf).context("decoding PNG")?;
        let channels = info.color_type.samples();
        let rgb = buf[..info.buffer_size()]
            .chunks(channels)
            .flat_map(|p| [p[0], p[1.min(channels - 1)], p[2.min(channels - 1)]])
            .collect();
        Ok(Image {
            width: info.width,
            height: info.height,
            rgb,
        })
    }

    fn pixel(&self, x: u32, y: u32) -> [u8; 3] {
        let i = ((y * self.width + x) * 3) as usize;
        [self.rgb[i], self.rgb[i + 1], self.rgb[i + 2]]
    }

    /// How many pixels are within `tol` of `rgb`.
    pub fn count(&self, rgb: [u8; 3], tol: u8) -> usize {
        (0..self.height)
            .flat_map(|y| (0..self.width).map(move |x| (x, y)))
            .filter(|&(x, y)| close(self.pixel(x, y), rgb, tol))
            .count()
    }

    /// The centre of the bounding box of the first connected run of `rgb`-coloured rows.
    pub fn center_of(&self, rgb: [u8; 3], tol: u8) -> Option<(u32, u32)> {
        let mut bbox: Option<(u32, u32, u32, u32)> = None;
        for y in 0..self.height {
            let xs: Vec<u32> = (0..self.width)
                .filter(|&x| close(self.pixel(x, y), rgb, tol))
                .collect();
            match (xs.first(), xs.last(), &mut bbox) {
                (Some(&x0), Some(&x1), None) => bbox = Some((x0, y, x1, y)),
                (Some(&x0), Some(&x1), Some(b)) => {
                    b.0 = b.0.min(x0);
                    b.2 = b.2.max(x1);
                    b.3 = y;
                }
                (None, _, Some(_)) => break,
                _ => {}
            }
        }
        bbox.map(|(x0, y0, x1, y1)| ((x0 + x1) / 2, (y0 + y1) / 2))
    }
}

fn close(a: [u8; 3], b: [u8; 3], tol: u8) -> bool {
    a.iter().zip(b).all(|(&p, q)| p.abs_diff(q) <= tol)
}

/// The desktop app as a child process on an [`Xvfb`] display, with private XDG directories (so no
/// user data is touched) and its log kept in a file shown when a test fails.
pub struct Gui {
    child: Child,
    pub dir: tempfile::TempDir,
    log: PathBuf,
    pub started: Instant,
    display: String,
}

impl Gui {
    pub fn start(x: &Xvfb, args: &[&str]) -> Result<Gui> {
        Gui::start_with(x, args, |_| Ok(()))
    }

    /// Like [`Gui::start`], after `setup` prepared the app's home (e.g. a contacts database under
    /// `data/dialtone/`; the XDG dirs are `config/`, `data/` and `runtime/` in it).
    pub fn start_with(
        x: &Xvfb,
        args: &[&str],
        setup: impl FnOnce(&Path) -> Result<()>,
    ) -> Result<Gui> {
        let dir = tempfile::Builder::new()
            .prefix("dialtone-gui-")
            .tempdir()
            .context("temp dir for the app")?;
        let runtime = dir.path().join("runtime");
        std::fs::create_dir_all(&runtime)?;
        std::fs::set_permissions(
            &runtime,
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )?;
        setup(dir.path())?;
        let log = dir.path().join("dialtone.log");
        let mut cmd = app_command(dir.path(), x.display());
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?);
        super::peers::die_with_parent(&mut cmd, libc::SIGTERM);
        let started = Instant::now();
        let child = cmd.spawn().context("starting the dialtone app")?;
        Ok(Gui {
            child,
            dir,
            log,
            started,
            display: x.display().to_string(),
        })
    }

    /// Runs a second `dialtone ARGS` in the same session (same XDG dirs and display) to its end,
    /// as a click on a `sip:` link would; its exit status and stderr.
    pub fn run_second(&self, args: &[&str]) -> Result<(std::process::ExitStatus, String)> {
        let out = app_command(self.dir.path(), &self.display)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .context("running a second dialtone")?;
        Ok((
            out.status,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM (a session logout) and waits up to `timeout` for the app to exit.
    pub fn terminate(&mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        // SAFETY: kill(2) with our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                bail!("the app did not exit within {timeout:?} of SIGTERM");
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Has the app exited (and how)?
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

/// `dialtone` with the session's private environment under `dir`.
fn app_command(dir: &Path, display: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dialtone"));
    cmd.env("DISPLAY", display)
        .env_remove("WAYLAND_DISPLAY")
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .env("XDG_CONFIG_HOME", dir.join("config"))
        .env("XDG_DATA_HOME", dir.join("data"))
        .env("XDG_RUNTIME_DIR", dir.join("runtime"))
        .env("RUST_LOG", "dialtone=debug");
    cmd
}

impl Drop for Gui {
    fn drop(&mut self) {
        // SIGTERM first: the app hangs up and un-registers on it.
        // SAFETY: kill(2) with our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() || std::env::var_os("DIALTONE_PEER_LOGS").is_some() {
            eprintln!("---- dialtone app log ----\n{}", self.log());
        }
    }
}
