//! The media clock: one tick per hub frame (20 ms) while the engine has media work, nothing
//! otherwise.
//!
//! On Linux a timerfd: the kernel wakes the engine on each tick and nothing else.
//! `tokio::time::interval` cost more wake-ups than ticks: tokio's timer wheel has 1 ms slots for
//! the next 64 ms only, and a tick due beyond the current 64 ms span sits a level up until the
//! runtime wakes at that span's start to move it down — about 16 extra wake-ups a second at
//! 20 ms periods (66 instead of 50 in a call, each a few tens of µs on a virtual machine). A tick
//! the engine was late for is counted by the kernel and made up at once, as tokio's
//! `MissedTickBehavior::Burst` did (up to a second's worth: what the capture ring holds).
//! Elsewhere, or if the timerfd fails, tokio's interval with that behaviour.

use std::time::Duration;
use tokio::time::{Interval, MissedTickBehavior};

/// Ticks made up at most after a stall: a second of frames.
#[cfg(target_os = "linux")]
const MAX_BURST: u64 = 50;

pub struct MediaClock {
    timer: Timer,
    period: Duration,
    running: bool,
    /// Expirations the kernel counted that [`Self::tick`] has not returned yet.
    owed: u64,
}

enum Timer {
    #[cfg(target_os = "linux")]
    Fd(tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>),
    /// Elsewhere, or where the kernel would not make, set or read a timerfd.
    Interval(Interval),
}

impl MediaClock {
    /// A stopped clock ticking every `period` once running.
    pub fn new(period: Duration) -> MediaClock {
        #[cfg(target_os = "linux")]
        let timer = match timerfd::new() {
            Ok(fd) => Timer::Fd(fd),
            Err(e) => {
                tracing::warn!("media clock: no timerfd ({e}): tokio's timer instead");
                Timer::Interval(interval(period))
            }
        };
        #[cfg(not(target_os = "linux"))]
        let timer = Timer::Interval(interval(period));
        MediaClock {
            timer,
            period,
            running: false,
            owed: 0,
        }
    }

    /// Starts the clock (first tick at once, then every period) or stops it; nothing if it
    /// already runs or is stopped.
    pub fn set_running(&mut self, on: bool) {
        if on == self.running {
            return;
        }
        self.running = on;
        self.owed = 0;
        match &mut self.timer {
            #[cfg(target_os = "linux")]
            Timer::Fd(fd) => {
                if let Err(e) = timerfd::arm(fd.get_ref(), on.then_some(self.period)) {
                    // A new interval: its first tick comes at once.
                    self.fall_back(&e);
                }
            }
            // A stopped interval is not polled (the engine's loop asks for ticks only while
            // there is media work), so it costs nothing.
            Timer::Interval(i) if on => i.reset_immediately(),
            Timer::Interval(_) => {}
        }
    }

    /// Waits for the next tick. Cancel-safe: a tick is taken only when it is returned. Only for
    /// a running clock (a stopped timerfd never ticks).
    pub async fn tick(&mut self) {
        if self.owed > 0 {
            self.owed -= 1;
            return;
        }
        #[cfg(target_os = "linux")]
        if let Timer::Fd(fd) = &self.timer {
            match timerfd::expirations(fd).await {
                Ok(n) => {
                    self.owed = n.saturating_sub(1).min(MAX_BURST);
                    return;
                }
                Err(e) => self.fall_back(&e),
            }
        }
        if let Timer::Interval(i) = &mut self.timer {
            i.tick().await;
        }
    }

    /// A timerfd that failed: tokio's timer from now on, its first tick at once.
    #[cfg(target_os = "linux")]
    fn fall_back(&mut self, e: &std::io::Error) {
        tracing::warn!("media clock: timerfd failed ({e}): tokio's timer instead");
        self.timer = Timer::Interval(interval(self.period));
    }
}

/// tokio's interval with the timerfd's behaviour: a late tick is made up at once.
fn interval(period: Duration) -> Interval {
    let mut i = tokio::time::interval(period);
    i.set_missed_tick_behavior(MissedTickBehavior::Burst);
    i
}

#[cfg(target_os = "linux")]
mod timerfd {
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::time::Duration;
    use tokio::io::Interest;
    use tokio::io::unix::AsyncFd;

    /// A disarmed timerfd on the monotonic clock, registered with the runtime.
    pub fn new() -> io::Result<AsyncFd<OwnedFd>> {
        // SAFETY: a plain system call with constant arguments; it returns a new descriptor or -1.
        let raw = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a descriptor just made, owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: the AsyncFd owns the OwnedFd, which keeps the descriptor open and returns the
        // same one from as_raw_fd for as long as it lives.
        unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
            .map_err(|e| e.into_parts().1)
    }

    fn timespec(d: Duration) -> libc::timespec {
        libc::timespec {
            tv_sec: d.as_secs() as libc::time_t,
            tv_nsec: d.subsec_nanos() as libc::c_long,
        }
    }

    /// Arms the timer to expire at once, then every `period`; disarms it with `None`. Either
    /// clears the count of expirations.
    pub fn arm(fd: &OwnedFd, period: Option<Duration>) -> io::Result<()> {
        let spec = libc::itimerspec {
            it_interval: timespec(period.unwrap_or_default()),
            // 1 ns: at once (0 would disarm).
            it_value: timespec(period.map_or(Duration::ZERO, |_| Duration::from_nanos(1))),
        };
        // SAFETY: `fd` is an open timerfd; `spec` lives across the call; the old value is not
        // asked for (null).
        let r = unsafe { libc::timerfd_settime(fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits until the timer has expired; how many times since the last call.
    pub async fn expirations(fd: &AsyncFd<OwnedFd>) -> io::Result<u64> {
        loop {
            let mut guard = fd.readable().await?;
            match guard.try_io(|fd| read_count(fd.get_ref())) {
                Ok(r) => return r,
                // Not due yet (readiness was stale): wait again.
                Err(_would_block) => continue,
            }
        }
    }

    /// The expirations since the last read; `WouldBlock` when there are none.
    fn read_count(fd: &OwnedFd) -> io::Result<u64> {
        let mut count = [0u8; 8];
        // SAFETY: reads at most 8 bytes into an 8-byte buffer that lives across the call.
        let n = unsafe { libc::read(fd.as_raw_fd(), count.as_mut_ptr().cast(), count.len()) };
        match n {
            8 => Ok(u64::from_ne_bytes(count)),
            n if n < 0 => Err(io::Error::last_os_error()),
            n => Err(io::Error::other(format!("timerfd read {n} bytes"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    const PERIOD: Duration = Duration::from_millis(20);

    #[tokio::test]
    async fn a_started_clock_ticks_at_once_then_every_period() {
        let mut clock = MediaClock::new(PERIOD);
        clock.set_running(true);
        let start = Instant::now();
        clock.tick().await;
        assert!(
            start.elapsed() < PERIOD,
            "first tick after {:?}",
            start.elapsed()
        );
        for _ in 0..5 {
            clock.tick().await;
        }
        let took = start.elapsed();
        assert!(took >= PERIOD * 5, "six ticks in {took:?}");
        assert!(
            took < PERIOD * 5 + Duration::from_millis(500),
            "six ticks in {took:?}"
        );
    }

    #[tokio::test]
    async fn ticks_missed_while_busy_are_made_up_at_once() {
        let mut clock = MediaClock::new(PERIOD);
        clock.set_running(true);
        clock.tick().await;
        five_missed_ticks_come_at_once(&mut clock).await;
    }

    /// Busy for five periods (blocking the thread, as a stalled engine would): the five ticks
    /// missed meanwhile come at once.
    async fn five_missed_ticks_come_at_once(clock: &mut MediaClock) {
        std::thread::sleep(PERIOD * 5 + PERIOD / 2);
        let late = Instant::now();
        for _ in 0..5 {
            clock.tick().await;
        }
        assert!(
            late.elapsed() < PERIOD / 2,
            "made up in {:?}",
            late.elapsed()
        );
    }

    #[tokio::test]
    async fn tokios_timer_in_place_of_a_timerfd_ticks_the_same_way() {
        let mut clock = MediaClock {
            timer: Timer::Interval(interval(PERIOD)),
            period: PERIOD,
            running: false,
            owed: 0,
        };
        clock.set_running(true);
        let start = Instant::now();
        clock.tick().await;
        assert!(
            start.elapsed() < PERIOD / 2,
            "first tick after {:?}",
            start.elapsed()
        );
        clock.tick().await;
        assert!(start.elapsed() >= PERIOD - Duration::from_millis(1));
        five_missed_ticks_come_at_once(&mut clock).await;
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_stopped_clock_does_not_tick_and_restarts_afresh() {
        let mut clock = MediaClock::new(PERIOD);
        clock.set_running(true);
        clock.tick().await;
        clock.set_running(false);
        let quiet = tokio::time::timeout(PERIOD * 3, clock.tick()).await;
        assert!(quiet.is_err(), "a stopped clock ticked");
        // Stopped for a while: no burst of old ticks, the first comes at once, the next a
        // period later.
        clock.set_running(true);
        let start = Instant::now();
        clock.tick().await;
        assert!(start.elapsed() < PERIOD / 2);
        clock.tick().await;
        assert!(start.elapsed() >= PERIOD - Duration::from_millis(1));
    }
}
