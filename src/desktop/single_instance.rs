//! One Dialtone per user session: the first process becomes the primary and listens on a Unix
//! socket; a later one (`dialtone sip:bob@example.com` from a browser link) hands its request to the
//! primary as one line and exits.
//!
//! Who is primary is decided by an advisory lock (`flock`) on `dialtone.lock` next to the socket,
//! held for the primary's whole life: the kernel drops it when the process dies, so a socket file
//! left behind by a crash is recognised as stale (nobody holds the lock) and replaced, and two
//! processes starting at the same moment cannot both become primary.
//!
//! Protocol, one request per connection: the client writes `dial <uri>\n` or `raise\n`; the primary
//! answers `ok\n` or `error <reason>\n` and closes. Each connection is served on its own short-lived
//! thread with a deadline ([`CLIENT_DEADLINE`]) and a line limit ([`MAX_LINE`]), at most
//! [`MAX_CLIENTS`] at once, so garbage, huge lines and stalled clients never hold up the primary or
//! the UI; requests reach the UI through a channel and a waker.

use super::dial_target::dial_target_from_arg;
use crate::engine::Waker;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// File name of the socket inside the instance directory.
pub const SOCKET_NAME: &str = "dialtone.sock";
/// File name of the lock the primary holds.
const LOCK_NAME: &str = "dialtone.lock";
/// Longest request line accepted (bytes, newline included).
pub const MAX_LINE: usize = 4096;
/// Time a client gets to send its line, and a secondary waits for the answer.
pub const CLIENT_DEADLINE: Duration = Duration::from_secs(2);
/// Connections served at once; more are closed at once.
pub const MAX_CLIENTS: usize = 8;

/// What a second `dialtone` asks the running one to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Dial this URI (already normalised by [`dial_target_from_arg`]).
    Dial(String),
    /// Show and raise the main window.
    Raise,
}

impl Request {
    /// The request for a command line's URI argument, if any: `Dial` when it is a URI we dial,
    /// `Raise` when there is none. `None` when the argument is not a dialable URI.
    pub fn from_arg(arg: Option<&str>) -> Option<Request> {
        match arg {
            None => Some(Request::Raise),
            Some(a) => dial_target_from_arg(a).map(Request::Dial),
        }
    }

    /// The request as one protocol line, newline included.
    fn to_line(&self) -> String {
        match self {
            Request::Dial(uri) => format!("dial {uri}\n"),
            Request::Raise => "raise\n".to_string(),
        }
    }

    /// Parses one protocol line (without its newline); the URI is checked again here, as the
    /// client is any local process.
    fn parse_line(line: &str) -> Result<Request, &'static str> {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line == "raise" {
            return Ok(Request::Raise);
        }
        let Some(arg) = line.strip_prefix("dial ") else {
            return Err("unknown request");
        };
        dial_target_from_arg(arg)
            .map(Request::Dial)
            .ok_or("not a sip:, sips: or tel: URI")
    }
}

/// The outcome of [`acquire`].
#[derive(Debug)]
pub enum Instance {
    /// This process is the only Dialtone: it serves requests until the server is dropped.
    Primary(InstanceServer),
    /// Another Dialtone runs and has accepted the request; this process should exit (status 0).
    Secondary,
}

/// The directory for the socket: `$XDG_RUNTIME_DIR` when set (absolute, existing), otherwise a
/// private `/tmp/dialtone-<uid>` (created with mode 0700; refused if it is not ours or is open to
/// others).
pub fn default_dir() -> io::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from)
        && dir.is_absolute()
        && dir.is_dir()
    {
        return Ok(dir);
    }
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    let dir = std::env::temp_dir().join(format!("dialtone-{uid}"));
    private_dir(&dir, uid)?;
    Ok(dir)
}

/// Creates `dir` with mode 0700 or checks that the existing one is a directory owned by `uid`
/// that nobody else can enter.
fn private_dir(dir: &Path, uid: u32) -> io::Result<()> {
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let meta = fs::symlink_metadata(dir)?;
    if !meta.is_dir() || meta.uid() != uid || meta.permissions().mode() & 0o077 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} is not a private directory of this user (owner, type or mode is wrong)",
                dir.display()
            ),
        ));
    }
    Ok(())
}

/// Becomes the primary instance in `dir`, or hands `request` to the running one.
///
/// A primary starts serving at once (requests queue in its channel until the UI sets a waker and
/// reads them). A secondary returns only after the primary answered `ok`; an `error` answer or no
/// answer within [`CLIENT_DEADLINE`] is an error.
pub fn acquire(dir: &Path, request: &Request) -> io::Result<Instance> {
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(LOCK_NAME))?;
    let socket_path = dir.join(SOCKET_NAME);
    match lock.try_lock() {
        Ok(()) => InstanceServer::start(lock, socket_path).map(Instance::Primary),
        Err(TryLockError::WouldBlock) => {
            hand_over(&socket_path, request)?;
            Ok(Instance::Secondary)
        }
        Err(TryLockError::Error(e)) => Err(e),
    }
}

/// Sends `request` to the primary listening on `socket_path` and waits for its answer. The
/// primary takes its lock a moment before it binds, so a missing socket is retried briefly.
fn hand_over(socket_path: &Path, request: &Request) -> io::Result<()> {
    let deadline = Instant::now() + CLIENT_DEADLINE;
    let mut stream = loop {
        match UnixStream::connect(socket_path) {
            Ok(s) => break s,
            Err(e) if Instant::now() < deadline => {
                tracing::debug!("waiting for the running Dialtone's socket: {e}");
                thread::sleep(Duration::from_millis(20));
            }
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!(
                        "Dialtone is running but its socket {} does not answer: {e}",
                        socket_path.display()
                    ),
                ));
            }
        }
    };
    stream.set_read_timeout(Some(CLIENT_DEADLINE))?;
    stream.set_write_timeout(Some(CLIENT_DEADLINE))?;
    stream.write_all(request.to_line().as_bytes())?;
    let mut answer = String::new();
    BufReader::new(stream.take(MAX_LINE as u64))
        .read_line(&mut answer)
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("the running Dialtone did not answer: {e}"),
            )
        })?;
    match answer.trim_end() {
        "ok" => Ok(()),
        "" => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the running Dialtone closed the connection without answering",
        )),
        other => Err(io::Error::other(format!(
            "the running Dialtone refused the request: {}",
            other.strip_prefix("error ").unwrap_or(other)
        ))),
    }
}

/// The primary's side: a thread accepting connections on the socket. Dropping it stops the
/// thread, removes the socket and releases the lock.
pub struct InstanceServer {
    socket_path: PathBuf,
    requests: mpsc::Receiver<Request>,
    shared: Arc<Shared>,
    accept_thread: Option<JoinHandle<()>>,
    /// The listening socket (a second handle), shut down on drop to wake the blocked accept().
    listener: UnixListener,
    /// Held (locked) for the primary's life; closing it releases the lock.
    _lock: File,
}

impl std::fmt::Debug for InstanceServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstanceServer")
            .field("socket_path", &self.socket_path)
            .finish_non_exhaustive()
    }
}

/// State the accept thread and the connection threads share with the server.
struct Shared {
    stopping: AtomicBool,
    clients: AtomicUsize,
    waker: Mutex<Option<Waker>>,
}

impl Shared {
    fn wake(&self) {
        let waker = self.waker.lock().ok().and_then(|w| w.clone());
        if let Some(w) = waker {
            w();
        }
    }
}

impl InstanceServer {
    /// Binds the socket (replacing a stale one: we hold the lock, so nobody listens on it) and
    /// starts the accept thread.
    fn start(lock: File, socket_path: PathBuf) -> io::Result<InstanceServer> {
        match fs::remove_file(&socket_path) {
            Ok(()) => tracing::debug!("removed stale socket {}", socket_path.display()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let listener = UnixListener::bind(&socket_path)?;
        fs::set_permissions(&socket_path, fs::Permissions::from_mode(0o600))?;
        let (tx, requests) = mpsc::channel();
        let shared = Arc::new(Shared {
            stopping: AtomicBool::new(false),
            clients: AtomicUsize::new(0),
            waker: Mutex::new(None),
        });
        let thread_shared = shared.clone();
        let wake_handle = listener.try_clone()?;
        let accept_thread = thread::Builder::new()
            .name("single-instance".into())
            .spawn(move || accept_loop(listener, tx, thread_shared))?;
        Ok(InstanceServer {
            socket_path,
            requests,
            shared,
            accept_thread: Some(accept_thread),
            listener: wake_handle,
            _lock: lock,
        })
    }

    /// The socket this primary listens on.
    pub fn socket_path(&self) -> &Path {
        &self.socket_path
    }

    /// Requests from other instances, in arrival order.
    pub fn requests(&self) -> &mpsc::Receiver<Request> {
        &self.requests
    }

    /// Called after each request is queued (e.g. `ctx.request_repaint()`); called once at once
    /// when requests are already waiting.
    pub fn set_waker(&self, waker: Waker) {
        if let Ok(mut w) = self.shared.waker.lock() {
            *w = Some(waker.clone());
        }
        waker();
    }
}

impl Drop for InstanceServer {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        // accept() blocks; shutting the listening socket down makes it return (EINVAL on Linux)
        // even when the socket file is gone.
        // SAFETY: the fd belongs to `self.listener`, which is alive for this call.
        unsafe { libc::shutdown(self.listener.as_raw_fd(), libc::SHUT_RDWR) };
        if let Some(t) = self.accept_thread.take() {
            let _ = t.join();
        }
        if let Err(e) = fs::remove_file(&self.socket_path) {
            tracing::debug!("removing {}: {e}", self.socket_path.display());
        }
    }
}

fn accept_loop(listener: UnixListener, tx: mpsc::Sender<Request>, shared: Arc<Shared>) {
    for conn in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let stream = match conn {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!("single-instance accept: {e}");
                if shared.stopping.load(Ordering::SeqCst) {
                    return;
                }
                thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        if shared.clients.fetch_add(1, Ordering::SeqCst) >= MAX_CLIENTS {
            shared.clients.fetch_sub(1, Ordering::SeqCst);
            tracing::debug!("single-instance: too many connections, one closed");
            continue;
        }
        let tx = tx.clone();
        let client_shared = shared.clone();
        let spawned = thread::Builder::new()
            .name("single-instance-client".into())
            .spawn(move || {
                serve_client(stream, &tx, &client_shared);
                client_shared.clients.fetch_sub(1, Ordering::SeqCst);
            });
        if let Err(e) = spawned {
            shared.clients.fetch_sub(1, Ordering::SeqCst);
            tracing::warn!("single-instance: cannot start a thread for a connection: {e}");
        }
    }
}

/// Reads one line within the deadline, answers it, queues a valid request and wakes the UI.
fn serve_client(mut stream: UnixStream, tx: &mpsc::Sender<Request>, shared: &Shared) {
    let answer = match read_line(&mut stream, Instant::now() + CLIENT_DEADLINE) {
        Ok(line) => match Request::parse_line(&line) {
            Ok(request) => {
                tracing::info!("request from another instance: {request:?}");
                if tx.send(request).is_err() {
                    return;
                }
                shared.wake();
                "ok\n".to_string()
            }
            Err(reason) => {
                tracing::debug!("single-instance: refused {line:?}: {reason}");
                format!("error {reason}\n")
            }
        },
        Err(e) => {
            tracing::debug!("single-instance: bad client: {e}");
            format!("error {e}\n")
        }
    };
    let _ = stream.set_write_timeout(Some(CLIENT_DEADLINE));
    let _ = stream.write_all(answer.as_bytes());
}

/// One `\n`-terminated UTF-8 line of at most [`MAX_LINE`] bytes, before `deadline`.
fn read_line(stream: &mut UnixStream, deadline: Instant) -> io::Result<String> {
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 512];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "too slow"));
        }
        stream.set_read_timeout(Some(left))?;
        let n = match stream.read(&mut chunk) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "no complete line",
                ));
            }
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "too slow"));
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.iter().position(|&b| b == b'\n') {
            buf.truncate(end);
            return String::from_utf8(buf)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not UTF-8"));
        }
        if buf.len() >= MAX_LINE {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "line too long"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn counting_waker() -> (Waker, Arc<AtomicUsize>) {
        let count = Arc::new(AtomicUsize::new(0));
        let c = count.clone();
        (
            Arc::new(move || {
                c.fetch_add(1, Ordering::SeqCst);
            }),
            count,
        )
    }

    fn primary(dir: &Path) -> InstanceServer {
        match acquire(dir, &Request::Raise).expect("acquire") {
            Instance::Primary(s) => s,
            Instance::Secondary => panic!("expected to be the primary"),
        }
    }

    /// Sends raw bytes as a client and returns the primary's answer line.
    fn raw_exchange(socket: &Path, bytes: &[u8]) -> String {
        let mut s = UnixStream::connect(socket).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = s.write_all(bytes);
        let _ = s.shutdown(std::net::Shutdown::Write);
        let mut answer = String::new();
        let _ = BufReader::new(s).read_line(&mut answer);
        answer
    }

    #[test]
    fn second_instance_hands_its_uri_to_the_primary_and_wakes_it() {
        let dir = tempfile::tempdir().unwrap();
        let server = primary(dir.path());
        let (waker, wakes) = counting_waker();
        server.set_waker(waker);
        let woken_at_set = wakes.load(Ordering::SeqCst);

        let req = Request::from_arg(Some("sip://bob@example.com/")).unwrap();
        assert!(matches!(
            acquire(dir.path(), &req).unwrap(),
            Instance::Secondary
        ));
        assert!(matches!(
            acquire(dir.path(), &Request::Raise).unwrap(),
            Instance::Secondary
        ));

        let got = server
            .requests()
            .recv_timeout(Duration::from_secs(5))
            .unwrap();
        assert_eq!(got, Request::Dial("sip:bob@example.com".into()));
        assert_eq!(
            server
                .requests()
                .recv_timeout(Duration::from_secs(5))
                .unwrap(),
            Request::Raise
        );
        assert_eq!(wakes.load(Ordering::SeqCst), woken_at_set + 2);
    }

    #[test]
    fn requests_before_the_waker_is_set_wait_in_the_channel() {
        let dir = tempfile::tempdir().unwrap();
        let server = primary(dir.path());
        let req = Request::Dial("tel:+15550100".into());
        assert!(matches!(
            acquire(dir.path(), &req).unwrap(),
            Instance::Secondary
        ));
        let (waker, wakes) = counting_waker();
        server.set_waker(waker);
        assert_eq!(
            wakes.load(Ordering::SeqCst),
            1,
            "set_waker wakes once for waiting requests"
        );
        assert_eq!(server.requests().try_recv().unwrap(), req);
    }

    #[test]
    fn stale_socket_from_a_dead_primary_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join(SOCKET_NAME);
        // A crashed primary leaves its socket file (and lock file) behind with nobody listening.
        drop(UnixListener::bind(&sock).unwrap());
        File::create(dir.path().join(LOCK_NAME)).unwrap();
        assert!(sock.exists());
        assert!(
            UnixStream::connect(&sock).is_err(),
            "nobody listens on the stale socket"
        );

        let server = primary(dir.path());
        assert!(matches!(
            acquire(dir.path(), &Request::Raise).unwrap(),
            Instance::Secondary
        ));
        assert_eq!(
            server
                .requests()
                .recv_timeout(Duration::from_secs(5))
                .unwrap(),
            Request::Raise
        );
    }

    #[test]
    fn dropping_the_primary_frees_the_place_for_the_next_one() {
        let dir = tempfile::tempdir().unwrap();
        let first = primary(dir.path());
        drop(first);
        assert!(
            !dir.path().join(SOCKET_NAME).exists(),
            "socket removed on drop"
        );
        let second = primary(dir.path());
        assert!(matches!(
            acquire(dir.path(), &Request::Raise).unwrap(),
            Instance::Secondary
        ));
        assert_eq!(
            second
                .requests()
                .recv_timeout(Duration::from_secs(5))
                .unwrap(),
            Request::Raise
        );
    }

    #[test]
    fn garbage_and_long_lines_are_refused_and_the_primary_keeps_serving() {
        let dir = tempfile::tempdir().unwrap();
        let server = primary(dir.path());
        let sock = server.socket_path().to_path_buf();
        assert_eq!(
            raw_exchange(&sock, b"hello there\n"),
            "error unknown request\n"
        );
        assert_eq!(
            raw_exchange(&sock, b"dial javascript:alert(1)\n"),
            "error not a sip:, sips: or tel: URI\n"
        );
        assert_eq!(raw_exchange(&sock, b"dial \xff\xfe\n"), "error not UTF-8\n");
        assert_eq!(
            raw_exchange(&sock, &vec![b'a'; 100_000]),
            "error line too long\n"
        );
        assert_eq!(raw_exchange(&sock, b"raise"), "error no complete line\n");
        assert_eq!(raw_exchange(&sock, b"raise\r\n"), "ok\n");
        assert_eq!(
            server
                .requests()
                .recv_timeout(Duration::from_secs(5))
                .unwrap(),
            Request::Raise
        );
        assert!(
            server.requests().try_recv().is_err(),
            "nothing but the one good request"
        );
    }

    #[test]
    fn stalled_clients_do_not_hold_up_a_good_one() {
        let dir = tempfile::tempdir().unwrap();
        let server = primary(dir.path());
        // Clients that connect and send nothing (or half a line) and keep the connection open.
        let mut stalled = Vec::new();
        for i in 0..3 {
            let mut s = UnixStream::connect(server.socket_path()).unwrap();
            if i == 0 {
                s.write_all(b"dial sip:bob@exa").unwrap();
            }
            stalled.push(s);
        }
        let start = Instant::now();
        let req = Request::Dial("sip:carol@example.com".into());
        assert!(matches!(
            acquire(dir.path(), &req).unwrap(),
            Instance::Secondary
        ));
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "took {:?}",
            start.elapsed()
        );
        assert_eq!(
            server
                .requests()
                .recv_timeout(Duration::from_secs(5))
                .unwrap(),
            req
        );

        // The stalled ones are cut off at the deadline with an answer.
        let mut answer = String::new();
        stalled[0]
            .set_read_timeout(Some(CLIENT_DEADLINE * 3))
            .unwrap();
        BufReader::new(&stalled[0]).read_line(&mut answer).unwrap();
        assert_eq!(answer, "error too slow\n");
    }

    #[test]
    fn a_flood_of_connections_is_capped_and_drop_still_returns() {
        let dir = tempfile::tempdir().unwrap();
        let server = primary(dir.path());
        let open: Vec<UnixStream> = (0..MAX_CLIENTS * 3)
            .filter_map(|_| UnixStream::connect(server.socket_path()).ok())
            .collect();
        assert!(open.len() > MAX_CLIENTS);
        let start = Instant::now();
        drop(server);
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "drop took {:?}",
            start.elapsed()
        );
    }

    #[test]
    fn fallback_directory_must_be_private_and_ours() {
        let base = tempfile::tempdir().unwrap();
        // SAFETY: getuid has no preconditions.
        let uid = unsafe { libc::getuid() };
        let dir = base.path().join("dialtone-test");
        private_dir(&dir, uid).unwrap();
        assert_eq!(
            fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        private_dir(&dir, uid).expect("existing private dir is fine");
        assert!(
            private_dir(&dir, uid.wrapping_add(1)).is_err(),
            "someone else's dir"
        );
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(
            private_dir(&dir, uid).unwrap_err().kind(),
            io::ErrorKind::PermissionDenied
        );
        let file = base.path().join("a-file");
        File::create(&file).unwrap();
        assert!(private_dir(&file, uid).is_err(), "not a directory");
    }

    #[test]
    fn request_lines_round_trip() {
        for r in [
            Request::Raise,
            Request::Dial("sips:bob@example.com;transport=tls".into()),
        ] {
            let line = r.to_line();
            assert_eq!(Request::parse_line(line.trim_end_matches('\n')), Ok(r));
        }
        assert_eq!(Request::from_arg(None), Some(Request::Raise));
        assert_eq!(Request::from_arg(Some("https://example.com")), None);
    }
}
