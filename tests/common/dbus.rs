//! A private D-Bus message bus for tests: `dbus-daemon` in the foreground as a child of the test
//! (killed by the guard's drop, and by PR_SET_PDEATHSIG if the test dies), listening on a socket in
//! its own temp dir, with a config that allows everything and activates no services, so a test
//! never reaches the user's session bus. Clients connect with [`PrivateBus::address`] (nothing
//! process-wide is changed, so tests run in parallel). A missing `dbus-daemon` fails the test
//! (Debian `dbus`, scripts/install-deps.sh); it never skips. The daemon's stderr is dropped (as
//! root it warns that it cannot raise its fd limit); a daemon that fails to start prints no address,
//! which fails the test.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// A running private bus; dropping it stops the daemon.
pub struct PrivateBus {
    child: Child,
    address: String,
    _dir: tempfile::TempDir,
}

impl PrivateBus {
    /// Starts the daemon and waits for its address.
    pub fn start() -> PrivateBus {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("bus.conf");
        std::fs::write(
            &config,
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:dir={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"#,
                dir.path().display()
            ),
        )
        .expect("writing the bus config");
        let mut cmd = Command::new("dbus-daemon");
        cmd.arg(format!("--config-file={}", config.display()))
            .args(["--nofork", "--print-address=1", "--nopidfile"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        super::peers::die_with_parent(&mut cmd, libc::SIGTERM);
        let mut child = cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot start dbus-daemon ({e}): install Debian `dbus` (scripts/install-deps.sh)"
            )
        });
        let mut line = String::new();
        let stdout = child.stdout.take().expect("dbus-daemon stdout");
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("reading the bus address");
        let address = line.trim().to_string();
        assert!(address.starts_with("unix:"), "dbus-daemon printed {line:?}");
        PrivateBus {
            child,
            address,
            _dir: dir,
        }
    }

    /// The bus address, e.g. `unix:path=/tmp/.../dbus-XXXX,guid=...`.
    pub fn address(&self) -> &str {
        &self.address
    }
}

impl Drop for PrivateBus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
