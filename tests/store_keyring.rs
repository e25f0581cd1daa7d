//! Passwords against a real Secret Service: a private `dbus-daemon` with `gnome-keyring-daemon`
//! (unlocked with a throw-away password, its keyrings in a temporary directory), and the
//! fall-back to the private file where there is no bus or no keyring on the bus.
//!
//! zbus finds the session bus through `DBUS_SESSION_BUS_ADDRESS`, so each test points that
//! variable at its own bus. The tests of this file take turns (one lock) and nothing else in this
//! process reads the environment meanwhile.

use dialtone::store::{Paths, SecretBackend, Secrets};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

static ENV: Mutex<()> = Mutex::new(());

/// Failing over must not hold up start-up.
const FAST: Duration = Duration::from_secs(1);

fn set_bus(address: &str) {
    // SAFETY: the ENV lock is held by the caller; no other thread of this test process reads or
    // writes the environment while it is (the other tests wait for the lock).
    unsafe { std::env::set_var("DBUS_SESSION_BUS_ADDRESS", address) };
}

fn require(program: &str) -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{program} is missing: run scripts/install-deps.sh"))
}

/// A child process killed and reaped when dropped (and sent SIGTERM if this thread dies).
struct Daemon(Child);

impl Daemon {
    fn spawn(cmd: &mut Command) -> Daemon {
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        Daemon(cmd.spawn().unwrap_or_else(|e| panic!("{cmd:?}: {e}")))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A session bus of our own, without service activation (so nothing starts behind our back).
fn private_bus(dir: &Path) -> (Daemon, String) {
    let config = dir.join("bus.conf");
    std::fs::write(
        &config,
        format!(
            r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={}</listen>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"#,
            dir.join("bus").display()
        ),
    )
    .unwrap();
    let mut daemon = Daemon::spawn(
        Command::new(require("dbus-daemon"))
            .arg(format!("--config-file={}", config.display()))
            .args(["--nofork", "--print-address=1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
    );
    let mut address = String::new();
    BufReader::new(daemon.0.stdout.take().unwrap())
        .read_line(&mut address)
        .unwrap();
    assert!(address.starts_with("unix:"), "dbus-daemon said {address:?}");
    (daemon, address.trim().to_string())
}

/// gnome-keyring's Secret Service on `bus`, its login keyring created and unlocked.
fn keyring_daemon(dir: &Path, bus: &str) -> Daemon {
    let run = dir.join("run");
    std::fs::create_dir_all(&run).unwrap();
    std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o700)).unwrap();
    let mut daemon = Daemon::spawn(
        Command::new(require("gnome-keyring-daemon"))
            .args(["--foreground", "--unlock", "--components=secrets"])
            .env("DBUS_SESSION_BUS_ADDRESS", bus)
            .env("HOME", dir)
            .env("XDG_DATA_HOME", dir.join("data"))
            .env("XDG_RUNTIME_DIR", &run)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    let mut stdin = daemon.0.stdin.take().unwrap();
    stdin.write_all(b"throw-away keyring password").unwrap();
    drop(stdin);
    daemon
}

/// What another Secret Service client (libsecret's `secret-tool`) finds for our item.
fn secret_tool_lookup(bus: &str, key: &str) -> Option<String> {
    let out = Command::new(require("secret-tool"))
        .args(["lookup", "service", "dialtone", "username", key])
        .env("DBUS_SESSION_BUS_ADDRESS", bus)
        .output()
        .unwrap();
    out.status
        .success()
        .then(|| String::from_utf8(out.stdout).unwrap())
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn without_a_session_bus_passwords_go_to_the_private_file_at_once() {
    let _env = ENV.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    set_bus(&format!(
        "unix:path={}",
        dir.path().join("no-bus-here").display()
    ));
    let paths = Paths::at(dir.path());
    let start = Instant::now();
    let secrets = Secrets::open(&paths);
    assert!(
        start.elapsed() < FAST,
        "fail-over took {:?}",
        start.elapsed()
    );
    let file = paths.passwords_file();
    assert_eq!(secrets.backend(), SecretBackend::File(file.clone()));
    assert_eq!(
        secrets.backend().describe(),
        format!(
            "Passwords are stored in {} (readable only by you) because no keyring service is running.",
            file.display()
        )
    );
    assert!(secrets.keyring_problem().is_some());
    secrets.set("sip:alice@example.com", "alicepw").unwrap();
    assert_eq!(mode(&file), 0o600);
    assert_eq!(
        Secrets::open(&paths)
            .get("sip:alice@example.com")
            .unwrap()
            .as_deref(),
        Some("alicepw")
    );
}

#[test]
fn a_bus_without_a_keyring_service_falls_back_to_the_file_at_once() {
    let _env = ENV.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let (_bus, address) = private_bus(dir.path());
    set_bus(&address);
    let paths = Paths::at(dir.path());
    let start = Instant::now();
    let secrets = Secrets::open(&paths);
    assert!(
        start.elapsed() < FAST,
        "fail-over took {:?}",
        start.elapsed()
    );
    assert_eq!(
        secrets.backend(),
        SecretBackend::File(paths.passwords_file())
    );
}

#[test]
fn a_running_keyring_holds_the_passwords_and_takes_over_the_files() {
    let _env = ENV.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let paths = Paths::at(dir.path());
    // An earlier session without a keyring left a password in the file.
    Secrets::file_only(paths.passwords_file())
        .set("sip:old@example.com", "from the file")
        .unwrap();

    let (_bus, address) = private_bus(dir.path());
    set_bus(&address);
    let _keyring = keyring_daemon(dir.path(), &address);
    let deadline = Instant::now() + Duration::from_secs(10);
    let secrets = loop {
        let s = Secrets::open(&paths);
        if s.backend() == SecretBackend::Keyring {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "gnome-keyring did not come up: {:?}",
            s.keyring_problem()
        );
        std::thread::sleep(Duration::from_millis(50));
    };

    assert_eq!(
        secrets.get("sip:old@example.com").unwrap().as_deref(),
        Some("from the file")
    );
    assert!(
        !paths.passwords_file().exists(),
        "the file was moved into the keyring"
    );
    assert_eq!(
        secret_tool_lookup(&address, "sip:old@example.com").as_deref(),
        Some("from the file")
    );

    secrets.set("sip:carol@example.com", "pä ss:wörd").unwrap();
    assert_eq!(
        secrets.get("sip:carol@example.com").unwrap().as_deref(),
        Some("pä ss:wörd")
    );
    assert_eq!(
        secret_tool_lookup(&address, "sip:carol@example.com").as_deref(),
        Some("pä ss:wörd")
    );
    secrets.set("sip:carol@example.com", "changed").unwrap();
    // A second instance (another Dialtone process) sees the same keyring.
    let other = Secrets::open(&paths);
    assert_eq!(other.backend(), SecretBackend::Keyring);
    assert_eq!(
        other.get("sip:carol@example.com").unwrap().as_deref(),
        Some("changed")
    );
    secrets.delete("sip:carol@example.com").unwrap();
    secrets.delete("sip:never-set@example.com").unwrap();
    assert_eq!(other.get("sip:carol@example.com").unwrap(), None);
    assert_eq!(secret_tool_lookup(&address, "sip:carol@example.com"), None);
    assert!(
        !paths.passwords_file().exists(),
        "nothing was written to the file"
    );
}
