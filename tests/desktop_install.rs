//! `dialtone --install-desktop` / `--uninstall-desktop` run as a user would: the built binary (copied
//! into a directory whose name needs quoting in `Exec=`) as a child process with private XDG dirs.
//! `desktop-file-validate` and `update-desktop-database` (Debian `desktop-file-utils`, installed by
//! scripts/install-deps.sh) check the result; `gtk-update-icon-cache` is a recording stand-in.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const USER_MIMEAPPS: &str = "\
# kept as it is
[Added Associations]
text/html=firefox.desktop;

[Default Applications]
text/html=firefox.desktop;
x-scheme-handler/tel=linphone.desktop;
";

/// Fails the test with how to install `bin` when it is missing (these tests never skip).
fn require(bin: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(bin))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{bin}` not found: install Debian `desktop-file-utils` (scripts/install-deps.sh)"
            )
        })
}

/// A scratch home with XDG dirs, a copy of the binary under an awkward path, and a fake
/// `gtk-update-icon-cache` that records its arguments.
struct Sandbox {
    _dir: tempfile::TempDir,
    root: PathBuf,
    exe: PathBuf,
}

impl Sandbox {
    fn new() -> Sandbox {
        let dir = tempfile::Builder::new()
            .prefix("desktop-install")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .unwrap();
        let root = dir.path().to_path_buf();
        let bin_dir = root.join("My Apps (100% \"test\")");
        fs::create_dir_all(&bin_dir).unwrap();
        let exe = bin_dir.join("dialtone");
        if fs::hard_link(env!("CARGO_BIN_EXE_dialtone"), &exe).is_err() {
            fs::copy(env!("CARGO_BIN_EXE_dialtone"), &exe).unwrap();
        }
        let fake_bin = root.join("fakebin");
        fs::create_dir_all(&fake_bin).unwrap();
        let fake = fake_bin.join("gtk-update-icon-cache");
        fs::write(
            &fake,
            format!(
                "#!/bin/sh\necho \"$@\" >> '{}'\n",
                root.join("icon-cache-calls").display()
            ),
        )
        .unwrap();
        fs::set_permissions(&fake, fs::Permissions::from_mode(0o755)).unwrap();
        for d in ["home", "data", "config"] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        Sandbox {
            _dir: dir,
            root,
            exe,
        }
    }

    fn data(&self) -> PathBuf {
        self.root.join("data")
    }

    fn mimeapps(&self) -> PathBuf {
        self.root.join("config/mimeapps.list")
    }

    /// Runs the installed-to-be binary with `arg` and the sandbox's environment.
    fn run(&self, arg: &str, data_home: &str) -> Output {
        let path = std::env::join_paths(std::iter::once(self.root.join("fakebin")).chain(
            std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
        ))
        .unwrap();
        let out = Command::new(&self.exe)
            .arg(arg)
            .env("HOME", self.root.join("home"))
            .env("XDG_DATA_HOME", data_home)
            .env("XDG_CONFIG_HOME", self.root.join("config"))
            .env("PATH", path)
            .env("RUST_LOG", "info")
            .current_dir(&self.root)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "dialtone {arg}: {}\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Every installed file with the repository file it must equal.
    fn expected_files(&self, data: &Path) -> Vec<(PathBuf, PathBuf)> {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets");
        let mut files = vec![
            (
                data.join("icons/hicolor/scalable/apps/dialtone.svg"),
                repo.join("dialtone.svg"),
            ),
            (
                data.join("dialtone/ringtone.wav"),
                repo.join("ringtone.wav"),
            ),
        ];
        for size in [16, 24, 32, 48, 64, 128, 256, 512] {
            files.push((
                data.join(format!("icons/hicolor/{size}x{size}/apps/dialtone.png")),
                repo.join(format!("icons/dialtone-{size}.png")),
            ));
        }
        files
    }
}

/// The program of an `Exec=` value as a launcher reads it: string escapes, then quoting, then `%%`.
fn exec_program(value: &str) -> String {
    let value = value.replace("\\\\", "\\");
    let mut out = String::new();
    let mut chars = value.chars();
    if value.starts_with('"') {
        chars.next();
        while let Some(c) = chars.next() {
            match c {
                '"' => break,
                '\\' => out.push(chars.next().expect("escaped character")),
                c => out.push(c),
            }
        }
    } else {
        out.extend(chars.take_while(|&c| c != ' '));
    }
    out.replace("%%", "%")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `desktop-file-validate` finds no error or warning in `file`.
fn assert_valid_desktop_file(file: &Path) {
    let out = Command::new(require("desktop-file-validate"))
        .arg(file)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !text.contains("error:") && !text.contains("warning:"),
        "{} is not a valid desktop entry:\n{text}",
        file.display()
    );
}

#[test]
fn repository_desktop_entry_is_valid() {
    assert_valid_desktop_file(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/dialtone.desktop"),
    );
}

#[test]
fn install_writes_everything_is_idempotent_and_uninstall_restores_the_user_files() {
    require("update-desktop-database");
    let sb = Sandbox::new();
    let data = sb.data();
    fs::write(sb.mimeapps(), USER_MIMEAPPS).unwrap();
    // An existing icon cache must be refreshed, or it would hide the new icon.
    fs::create_dir_all(data.join("icons/hicolor")).unwrap();
    fs::write(data.join("icons/hicolor/icon-theme.cache"), b"old").unwrap();

    let out = sb.run("--install-desktop", data.to_str().unwrap());
    let printed = stdout(&out);

    // The desktop entry: valid, naming this very binary.
    let desktop = data.join("applications/dialtone.desktop");
    assert_valid_desktop_file(&desktop);
    let entry = fs::read_to_string(&desktop).unwrap();
    let exec = entry.lines().find_map(|l| l.strip_prefix("Exec=")).unwrap();
    assert!(exec.ends_with(" %u"), "{exec}");
    assert_eq!(Path::new(&exec_program(exec)), sb.exe, "Exec= is {exec}");
    for line in [
        "Icon=dialtone",
        "StartupWMClass=dialtone",
        "MimeType=x-scheme-handler/sip;x-scheme-handler/sips;x-scheme-handler/tel;",
    ] {
        assert!(entry.lines().any(|l| l == line), "{line} in\n{entry}");
    }
    assert!(
        printed.contains(&format!("wrote      {}", desktop.display())),
        "{printed}"
    );

    // Icons and ring tone: the repository's bytes.
    for (installed, original) in sb.expected_files(&data) {
        assert_eq!(
            fs::read(&installed).unwrap_or_else(|e| panic!("{}: {e}", installed.display())),
            fs::read(&original).unwrap(),
            "{}",
            installed.display()
        );
        assert!(
            printed.contains(&installed.display().to_string()),
            "{printed}"
        );
    }

    // mimeapps.list: the user's lines kept, Dialtone first for the three schemes.
    let mimeapps = fs::read_to_string(sb.mimeapps()).unwrap();
    for line in USER_MIMEAPPS.lines() {
        if line != "x-scheme-handler/tel=linphone.desktop;" {
            assert!(
                mimeapps.lines().any(|l| l == line),
                "{line:?} kept in\n{mimeapps}"
            );
        }
    }
    for line in [
        "x-scheme-handler/tel=dialtone.desktop;linphone.desktop;",
        "x-scheme-handler/sip=dialtone.desktop;",
        "x-scheme-handler/sips=dialtone.desktop;",
    ] {
        assert!(mimeapps.lines().any(|l| l == line), "{line} in\n{mimeapps}");
    }

    // The caches: the real desktop database lists the handler; the icon cache tool was called.
    let cache = fs::read_to_string(data.join("applications/mimeinfo.cache")).unwrap();
    assert!(
        cache.contains("x-scheme-handler/sip=dialtone.desktop;"),
        "{cache}"
    );
    assert!(
        printed.contains("ran        update-desktop-database"),
        "{printed}"
    );
    let calls = fs::read_to_string(sb.root.join("icon-cache-calls")).unwrap();
    assert!(
        calls
            .trim_end()
            .ends_with(&data.join("icons/hicolor").display().to_string()),
        "{calls}"
    );

    // Twice: nothing changes.
    let again = stdout(&sb.run("--install-desktop", data.to_str().unwrap()));
    assert!(
        !again.contains("wrote "),
        "second install rewrote something:\n{again}"
    );
    assert!(
        again.contains(&format!("unchanged  {}", sb.mimeapps().display())),
        "{again}"
    );
    assert_eq!(fs::read_to_string(sb.mimeapps()).unwrap(), mimeapps);

    // Uninstall: exactly what was added goes.
    let removed = stdout(&sb.run("--uninstall-desktop", data.to_str().unwrap()));
    assert!(!desktop.exists());
    for (installed, _) in sb.expected_files(&data) {
        assert!(!installed.exists(), "{} left behind", installed.display());
    }
    assert!(
        !data.join("dialtone").exists(),
        "our empty data dir removed"
    );
    assert!(
        !data.join("icons/hicolor/48x48").exists(),
        "empty icon dirs removed"
    );
    assert!(
        data.join("icons/hicolor/icon-theme.cache").exists(),
        "the user's cache kept"
    );
    assert_eq!(fs::read_to_string(sb.mimeapps()).unwrap(), USER_MIMEAPPS);
    assert!(
        removed.contains(&format!("removed    {}", desktop.display())),
        "{removed}"
    );
    let cache = fs::read_to_string(data.join("applications/mimeinfo.cache")).unwrap_or_default();
    assert!(!cache.contains("dialtone.desktop"), "{cache}");

    // Uninstalling again is harmless.
    let again = stdout(&sb.run("--uninstall-desktop", data.to_str().unwrap()));
    assert!(!again.contains("removed "), "{again}");
}

#[test]
fn install_into_a_fresh_home_creates_mimeapps_and_uninstall_deletes_it() {
    let sb = Sandbox::new();
    let data = sb.data();
    sb.run("--install-desktop", data.to_str().unwrap());
    assert_eq!(
        fs::read_to_string(sb.mimeapps()).unwrap(),
        "[Default Applications]\nx-scheme-handler/sip=dialtone.desktop;\n\
         x-scheme-handler/sips=dialtone.desktop;\nx-scheme-handler/tel=dialtone.desktop;\n"
    );
    sb.run("--uninstall-desktop", data.to_str().unwrap());
    assert!(!sb.mimeapps().exists());
}

#[test]
fn relative_xdg_data_home_is_ignored_for_home_local_share() {
    let sb = Sandbox::new();
    sb.run("--install-desktop", "relative/data");
    let local = sb.root.join("home/.local/share");
    assert!(local.join("applications/dialtone.desktop").is_file());
    assert!(
        !sb.root.join("relative").exists(),
        "a relative XDG_DATA_HOME must not be used"
    );
    sb.run("--uninstall-desktop", "relative/data");
    assert!(!local.join("applications/dialtone.desktop").exists());
}
