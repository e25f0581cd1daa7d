//! X events with wall-clock times: which top-level window was mapped when, and when a mouse button
//! went down, as the X server reports them (not as a poller notices them).
//!
//! A reader thread holds its own connection, selects `SubstructureNotify` on the root window (every
//! top-level MapNotify, override-redirect popups included) and XInput 2 raw button presses on the
//! root (any client may select those; `ButtonPress` on an application's window could be selected by
//! one client only), and stamps each event with `SystemTime::now()` the moment it is read, before
//! anything else is asked of the server. The same wall clock as dumpcap's frame times.
//! Window properties (`_NET_WM_PID`, the title) are looked up afterwards on a second connection.

use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, anyhow, bail};
use x11rb::connection::Connection;
use x11rb::protocol::Event;
use x11rb::protocol::xinput::{self, ConnectionExt as _};
use x11rb::protocol::xproto::{AtomEnum, ChangeWindowAttributesAux, ConnectionExt as _, EventMask};
use x11rb::rust_connection::RustConnection;

/// What happened, and when it was read.
#[derive(Clone, Copy, Debug)]
pub enum XEvent {
    /// A child of the root window (a top-level window) was mapped.
    Map { window: u32, at: SystemTime },
    /// A mouse button went down (XInput 2 raw event).
    Press { at: SystemTime },
}

/// A mapped window, with what it says about itself.
#[derive(Clone, Debug)]
pub struct Mapped {
    pub window: u32,
    pub at: SystemTime,
    pub pid: Option<u32>,
    pub title: String,
}

/// The event watcher of one X display.
pub struct XEvents {
    rx: mpsc::Receiver<Result<XEvent, String>>,
    /// For property look-ups.
    conn: RustConnection,
    net_wm_pid: u32,
    net_wm_name: u32,
    utf8_string: u32,
}

impl XEvents {
    /// Connects to `display` (e.g. ":7") and starts watching; events before this returns are not
    /// seen.
    pub fn watch(display: &str) -> Result<XEvents> {
        let (conn, screen) =
            x11rb::connect(Some(display)).with_context(|| format!("connecting to X {display}"))?;
        let root = conn.setup().roots[screen].root;
        conn.change_window_attributes(
            root,
            &ChangeWindowAttributesAux::new().event_mask(EventMask::SUBSTRUCTURE_NOTIFY),
        )?
        .check()
        .context("selecting SubstructureNotify on the root window")?;
        let version = conn
            .xinput_xi_query_version(2, 2)?
            .reply()
            .context("the X server has no XInput 2")?;
        if version.major_version < 2 {
            bail!("the X server has XInput {}", version.major_version);
        }
        conn.xinput_xi_select_events(
            root,
            &[xinput::EventMask {
                deviceid: 0, // XIAllDevices
                mask: vec![xinput::XIEventMask::RAW_BUTTON_PRESS],
            }],
        )?
        .check()
        .context("selecting XInput 2 raw button presses")?;
        conn.flush()?;
        let (tx, rx) = mpsc::channel();
        thread::Builder::new()
            .name("x-events".into())
            .spawn(move || {
                loop {
                    let event = conn.wait_for_event();
                    let at = SystemTime::now();
                    let sent = match event {
                        Ok(Event::MapNotify(e)) => tx.send(Ok(XEvent::Map {
                            window: e.window,
                            at,
                        })),
                        Ok(Event::XinputRawButtonPress(_)) => tx.send(Ok(XEvent::Press { at })),
                        Ok(_) => Ok(()),
                        Err(e) => {
                            let _ = tx.send(Err(format!("X connection: {e}")));
                            return;
                        }
                    };
                    if sent.is_err() {
                        return;
                    }
                }
            })
            .context("starting the X event thread")?;
        let (conn, _) = x11rb::connect(Some(display))
            .with_context(|| format!("connecting to X {display} (queries)"))?;
        let atom = |name: &str| -> Result<u32> {
            Ok(conn.intern_atom(false, name.as_bytes())?.reply()?.atom)
        };
        let (net_wm_pid, net_wm_name, utf8_string) = (
            atom("_NET_WM_PID")?,
            atom("_NET_WM_NAME")?,
            atom("UTF8_STRING")?,
        );
        Ok(XEvents {
            rx,
            conn,
            net_wm_pid,
            net_wm_name,
            utf8_string,
        })
    }

    fn next(&self, deadline: Instant) -> Result<Option<XEvent>> {
        match self
            .rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            Ok(Ok(e)) => Ok(Some(e)),
            Ok(Err(e)) => Err(anyhow!(e)),
            Err(mpsc::RecvTimeoutError::Timeout) => Ok(None),
            Err(mpsc::RecvTimeoutError::Disconnected) => bail!("the X event thread ended"),
        }
    }

    /// Forgets the events read so far.
    pub fn drain(&self) {
        while let Ok(Ok(_)) = self.rx.try_recv() {}
    }

    /// Waits for the next top-level window of process `pid` to be mapped whose title satisfies
    /// `title`; other maps are skipped.
    pub fn wait_map(
        &self,
        pid: u32,
        title: impl Fn(&str) -> bool,
        timeout: Duration,
    ) -> Result<Mapped> {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            match self.next(deadline)? {
                Some(XEvent::Map { window, at }) => {
                    let mapped = self.describe(window, at);
                    if mapped.pid == Some(pid) && title(&mapped.title) {
                        return Ok(mapped);
                    }
                    seen.push(mapped);
                }
                Some(XEvent::Press { .. }) => {}
                None => bail!(
                    "no matching window of pid {pid} mapped within {timeout:?}; mapped meanwhile: {seen:?}"
                ),
            }
        }
    }

    /// Waits for the next mouse button press.
    pub fn wait_press(&self, timeout: Duration) -> Result<SystemTime> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.next(deadline)? {
                Some(XEvent::Press { at }) => return Ok(at),
                Some(XEvent::Map { .. }) => {}
                None => bail!("no mouse button press within {timeout:?}"),
            }
        }
    }

    /// The pid and title of `window` (a window gone by now has neither).
    fn describe(&self, window: u32, at: SystemTime) -> Mapped {
        let pid = self
            .conn
            .get_property(false, window, self.net_wm_pid, AtomEnum::CARDINAL, 0, 1)
            .ok()
            .and_then(|c| c.reply().ok())
            .and_then(|r| r.value32().and_then(|mut v| v.next()));
        let mut title = self
            .conn
            .get_property(false, window, self.net_wm_name, self.utf8_string, 0, 256)
            .ok()
            .and_then(|c| c.reply().ok())
            .map(|r| String::from_utf8_lossy(&r.value).into_owned())
            .unwrap_or_default();
        if title.is_empty() {
            title = self
                .conn
                .get_property(false, window, AtomEnum::WM_NAME, AtomEnum::STRING, 0, 256)
                .ok()
                .and_then(|c| c.reply().ok())
                .map(|r| String::from_utf8_lossy(&r.value).into_owned())
                .unwrap_or_default();
        }
        Mapped {
            window,
            at,
            pid,
            title,
        }
    }
}
