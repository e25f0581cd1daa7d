//! `dialtone --install-desktop` / `--uninstall-desktop`: the desktop entry, the icons, the ring tone
//! and the `sip:`/`sips:`/`tel:` scheme handlers in the user's XDG directories, so Dialtone starts
//! from the application menu and links dial.
//!
//! What is written (all from the assets embedded in the binary):
//! - `$XDG_DATA_HOME/applications/dialtone.desktop`, its `Exec=` naming this executable's absolute
//!   path, quoted per the Desktop Entry spec;
//! - `$XDG_DATA_HOME/icons/hicolor/<N>x<N>/apps/dialtone.png` and `…/scalable/apps/dialtone.svg`;
//! - `$XDG_DATA_HOME/dialtone/ringtone.wav`;
//! - `dialtone.desktop` first in the `[Default Applications]` entries for the three schemes in
//!   `$XDG_CONFIG_HOME/mimeapps.list`, any handler already there kept after it, every other line
//!   left as it was.
//!
//! Installing twice changes nothing the second time. Uninstalling removes those files and only
//! `dialtone.desktop` from the `mimeapps.list` entries (an entry that had only it goes; a handler
//! that was there before becomes the default again). Afterwards `update-desktop-database` runs,
//! and `gtk-update-icon-cache` when the user's hicolor theme already has a cache (a stale cache would
//! hide the icon; without one, icons are found by scanning); a missing tool is skipped.
//!
//! The text transformations (`desktop_entry`, `exec_quote`, `mimeapps_with`, `mimeapps_without`)
//! are pure functions; the file and process work is in `install`/`uninstall`.

use super::assets;
use anyhow::{Context, Result, bail};
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The desktop file id (file name) the entry is installed as.
pub const DESKTOP_ID: &str = "dialtone.desktop";
/// The icon name (`Icon=`), also the file name of the installed icons.
pub const ICON_NAME: &str = "dialtone";
/// The URI schemes Dialtone handles, as MIME types.
pub const SCHEME_MIME_TYPES: [&str; 3] = [
    "x-scheme-handler/sip",
    "x-scheme-handler/sips",
    "x-scheme-handler/tel",
];
const DEFAULT_APPS: &str = "[Default Applications]";

/// The user's XDG base directories that the installer writes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XdgDirs {
    /// `$XDG_DATA_HOME` (default `~/.local/share`).
    pub data_home: PathBuf,
    /// `$XDG_CONFIG_HOME` (default `~/.config`).
    pub config_home: PathBuf,
}

impl XdgDirs {
    /// From the environment; a relative `XDG_*` value is ignored, as the base-dir spec says.
    pub fn from_env() -> Result<XdgDirs> {
        let home = std::env::var_os("HOME").map(PathBuf::from);
        let pick = |var: &str, fallback: &str| -> Result<PathBuf> {
            if let Some(p) = std::env::var_os(var).map(PathBuf::from)
                && p.is_absolute()
            {
                return Ok(p);
            }
            match &home {
                Some(h) if h.is_absolute() => Ok(h.join(fallback)),
                _ => bail!("neither ${var} nor $HOME is set to an absolute path"),
            }
        };
        Ok(XdgDirs {
            data_home: pick("XDG_DATA_HOME", ".local/share")?,
            config_home: pick("XDG_CONFIG_HOME", ".config")?,
        })
    }

    fn desktop_file(&self) -> PathBuf {
        self.data_home.join("applications").join(DESKTOP_ID)
    }

    fn hicolor(&self) -> PathBuf {
        self.data_home.join("icons/hicolor")
    }

    fn ringtone(&self) -> PathBuf {
        self.data_home.join("dialtone/ringtone.wav")
    }

    fn mimeapps(&self) -> PathBuf {
        self.config_home.join("mimeapps.list")
    }

    /// Every file the installer owns, with its contents (not `mimeapps.list`, which is edited).
    fn owned_files(&self, desktop_entry: String) -> Vec<(PathBuf, Vec<u8>)> {
        let mut files = vec![(self.desktop_file(), desktop_entry.into_bytes())];
        for (size, png) in assets::ICON_PNGS {
            let path = self
                .hicolor()
                .join(format!("{size}x{size}/apps/{ICON_NAME}.png"));
            files.push((path, png.to_vec()));
        }
        files.push((
            self.hicolor()
                .join(format!("scalable/apps/{ICON_NAME}.svg")),
            assets::ICON_SVG.to_vec(),
        ));
        files.push((self.ringtone(), assets::RINGTONE_WAV.to_vec()));
        files
    }
}

/// One thing the installer did, printed one per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A file was created or its contents replaced.
    Wrote(PathBuf),
    /// A file already had the right contents.
    Unchanged(PathBuf),
    /// A file was deleted.
    Removed(PathBuf),
    /// An empty directory the installer made was deleted.
    RemovedDir(PathBuf),
    /// A cache tool was run (its command line).
    Ran(String),
    /// A cache tool failed; installing still succeeded.
    ToolFailed(String),
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Wrote(p) => write!(f, "wrote      {}", p.display()),
            Change::Unchanged(p) => write!(f, "unchanged  {}", p.display()),
            Change::Removed(p) => write!(f, "removed    {}", p.display()),
            Change::RemovedDir(p) => write!(f, "removed    {}/", p.display()),
            Change::Ran(c) => write!(f, "ran        {c}"),
            Change::ToolFailed(c) => write!(f, "warning:   {c}"),
        }
    }
}

/// Installs for the executable at `exe` (an absolute path) into `dirs`.
pub fn install(exe: &Path, dirs: &XdgDirs) -> Result<Vec<Change>> {
    let entry = desktop_entry(exe)?;
    let mut changes = Vec::new();
    for (path, contents) in dirs.owned_files(entry) {
        changes.push(write_if_changed(&path, &contents)?);
    }
    let mimeapps = dirs.mimeapps();
    let old = read_or_empty(&mimeapps)?;
    changes.push(write_if_changed(&mimeapps, mimeapps_with(&old).as_bytes())?);
    changes.extend(refresh_caches(dirs));
    Ok(changes)
}

/// Removes what [`install`] added to `dirs`.
pub fn uninstall(dirs: &XdgDirs) -> Result<Vec<Change>> {
    let mut changes = Vec::new();
    // The entry's text does not matter for removal, only the paths.
    for (path, _) in dirs.owned_files(String::new()) {
        match fs::remove_file(&path) {
            Ok(()) => changes.push(Change::Removed(path)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", path.display())),
        }
    }
    let mimeapps = dirs.mimeapps();
    let old = read_or_empty(&mimeapps)?;
    let new = mimeapps_without(&old);
    if new != old {
        if new.trim().is_empty() {
            fs::remove_file(&mimeapps)
                .with_context(|| format!("removing {}", mimeapps.display()))?;
            changes.push(Change::Removed(mimeapps));
        } else {
            changes.push(write_if_changed(&mimeapps, new.as_bytes())?);
        }
    }
    changes.extend(refresh_caches(dirs));
    // Directories left empty (they held only our files): removing a non-empty one fails.
    let mut dirs_to_prune = vec![dirs.data_home.join("dialtone")];
    for (size, _) in assets::ICON_PNGS {
        let size_dir = dirs.hicolor().join(format!("{size}x{size}"));
        dirs_to_prune.extend([size_dir.join("apps"), size_dir]);
    }
    dirs_to_prune.extend([
        dirs.hicolor().join("scalable/apps"),
        dirs.hicolor().join("scalable"),
        dirs.hicolor(),
        dirs.data_home.join("icons"),
    ]);
    for dir in dirs_to_prune {
        if fs::remove_dir(&dir).is_ok() {
            changes.push(Change::RemovedDir(dir));
        }
    }
    Ok(changes)
}

/// `dialtone --install-desktop` (or `--uninstall-desktop` when `remove`): does it for the running
/// executable and the environment's XDG dirs, prints what changed, returns the exit status.
pub fn run_cli(remove: bool) -> i32 {
    let result = XdgDirs::from_env().and_then(|dirs| {
        if remove {
            uninstall(&dirs)
        } else {
            let exe = std::env::current_exe().context("finding this executable's path")?;
            install(&exe, &dirs)
        }
    });
    match result {
        Ok(changes) => {
            for c in &changes {
                println!("{c}");
            }
            if remove {
                println!(
                    "Dialtone's desktop entry, icons and sip:/sips:/tel: handlers are removed."
                );
            } else {
                println!(
                    "Dialtone is in the application menu and handles sip:, sips: and tel: links."
                );
            }
            0
        }
        Err(e) => {
            eprintln!("dialtone: {e:#}");
            1
        }
    }
}

/// The desktop entry for the executable at `exe`: the template with `Exec=` naming `exe`.
pub fn desktop_entry(exe: &Path) -> Result<String> {
    if !exe.is_absolute() {
        bail!("the executable path {} is not absolute", exe.display());
    }
    let exe_str = exe
        .to_str()
        .with_context(|| format!("the executable path {} is not UTF-8", exe.display()))?;
    let program = exec_quote(exe_str).with_context(|| {
        format!("the executable path {exe_str:?} has control characters; move the binary")
    })?;
    let mut out = String::with_capacity(assets::DESKTOP_ENTRY.len() + program.len());
    let mut replaced = false;
    for line in assets::DESKTOP_ENTRY.lines() {
        if line.starts_with("Exec=") {
            out.push_str(&format!("Exec={program} %u"));
            replaced = true;
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    if !replaced {
        bail!("the built-in desktop entry has no Exec= line");
    }
    Ok(out)
}

/// One Exec argument, written as the Desktop Entry spec wants it inside the `Exec=` value:
/// double-quoted when it has a reserved character (`"`, `` ` ``, `$` and `\` then escaped with a
/// backslash), `%` doubled, and the value's own string escaping (`\` → `\\`) applied on top.
/// `None` for control characters, which cannot be written.
pub fn exec_quote(arg: &str) -> Option<String> {
    const RESERVED: &str = " \t\n\"'\\><~|&;$*?#()`";
    if arg.chars().any(char::is_control) {
        return None;
    }
    let needs_quotes = arg.is_empty() || arg.chars().any(|c| RESERVED.contains(c));
    let mut quoted = String::with_capacity(arg.len() + 2);
    if needs_quotes {
        quoted.push('"');
    }
    for c in arg.chars() {
        match c {
            '"' | '`' | '$' | '\\' if needs_quotes => {
                quoted.push('\\');
                quoted.push(c);
            }
            '%' => quoted.push_str("%%"),
            _ => quoted.push(c),
        }
    }
    if needs_quotes {
        quoted.push('"');
    }
    // The Exec value is a `string`: its backslashes are escaped once more.
    Some(quoted.replace('\\', "\\\\"))
}

/// `mimeapps.list` with `dialtone.desktop` as the default for each scheme: put first in an existing
/// entry (other handlers kept after it), or added to `[Default Applications]` (created at the end
/// when missing). Every other line is kept as it was.
pub fn mimeapps_with(text: &str) -> String {
    edit_default_apps(text, |values| {
        values.retain(|v| v != DESKTOP_ID);
        values.insert(0, DESKTOP_ID.to_string());
    })
}

/// `mimeapps.list` without `dialtone.desktop` in the scheme entries: an entry left empty is
/// removed, and so is a `[Default Applications]` section left with no lines at all.
pub fn mimeapps_without(text: &str) -> String {
    edit_default_apps(text, |values| values.retain(|v| v != DESKTOP_ID))
}

/// Applies `edit` to the handler list of each scheme's `[Default Applications]` entry (an empty
/// list for a missing one), writing back entries whose list changed.
fn edit_default_apps(text: &str, edit: impl Fn(&mut Vec<String>)) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let section = lines.iter().position(|l| l.trim() == DEFAULT_APPS);
    let (start, mut end) = match section {
        Some(s) => {
            let e = lines[s + 1..]
                .iter()
                .position(|l| l.trim_start().starts_with('['))
                .map_or(lines.len(), |i| s + 1 + i);
            (s, e)
        }
        None => {
            if lines.last().is_some_and(|l| !l.trim().is_empty()) {
                lines.push(String::new());
            }
            lines.push(DEFAULT_APPS.to_string());
            (lines.len() - 1, lines.len())
        }
    };
    for mime in SCHEME_MIME_TYPES {
        let found = (start + 1..end).find(|&i| entry_key(&lines[i]) == Some(mime));
        let mut values: Vec<String> = found
            .map(|i| {
                let (_, v) = lines[i].split_once('=').unwrap_or_default();
                v.split(';')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let before = values.clone();
        edit(&mut values);
        if values == before {
            continue;
        }
        let line = format!("{mime}={};", values.join(";"));
        match (found, values.is_empty()) {
            (Some(i), true) => {
                lines.remove(i);
                end -= 1;
            }
            (Some(i), false) => lines[i] = line,
            (None, true) => {}
            (None, false) => {
                // After the section's last non-blank line, so a blank line before the next
                // section stays where it is.
                let at = (start + 1..end)
                    .rev()
                    .find(|&i| !lines[i].trim().is_empty())
                    .map_or(start + 1, |i| i + 1);
                lines.insert(at, line);
                end += 1;
            }
        }
    }
    if lines[start + 1..end].iter().all(|l| l.trim().is_empty()) {
        lines.drain(start..end);
        // The blank line that separated the removed section from the one before it.
        if start > 0 && start == lines.len() && lines[start - 1].trim().is_empty() {
            lines.pop();
        }
    }
    let mut out = lines.join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    out
}

/// The key of a `key=value` line (not a comment or a group header).
fn entry_key(line: &str) -> Option<&str> {
    let line = line.trim_start();
    if line.starts_with('#') || line.starts_with('[') {
        return None;
    }
    line.split_once('=').map(|(k, _)| k.trim())
}

fn read_or_empty(path: &Path) -> Result<String> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(s),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Writes `contents` to `path` (through a temporary file and a rename, so a crash never leaves a
/// half-written `mimeapps.list`) unless it already holds exactly that.
fn write_if_changed(path: &Path, contents: &[u8]) -> Result<Change> {
    if fs::read(path).is_ok_and(|old| old == contents) {
        return Ok(Change::Unchanged(path.to_path_buf()));
    }
    let parent = path
        .parent()
        .with_context(|| format!("{} has no parent directory", path.display()))?;
    fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let file_name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = parent.join(format!(".{file_name}.dialtone-tmp"));
    fs::write(&tmp, contents).with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(Change::Wrote(path.to_path_buf()))
}

/// Runs the desktop's cache tools where present; their absence is not an error.
fn refresh_caches(dirs: &XdgDirs) -> Vec<Change> {
    let mut changes = Vec::new();
    let applications = dirs.data_home.join("applications");
    if applications.is_dir() {
        changes.extend(run_tool(
            "update-desktop-database",
            &["-q".as_ref(), applications.as_os_str()],
        ));
    }
    let hicolor = dirs.hicolor();
    if hicolor.join("icon-theme.cache").exists() {
        changes.extend(run_tool(
            "gtk-update-icon-cache",
            &[
                "-q".as_ref(),
                "-f".as_ref(),
                "-t".as_ref(),
                hicolor.as_os_str(),
            ],
        ));
    }
    changes
}

fn run_tool(program: &str, args: &[&std::ffi::OsStr]) -> Option<Change> {
    let shown = std::iter::once(program.to_string())
        .chain(args.iter().map(|a| a.to_string_lossy().into_owned()))
        .collect::<Vec<_>>()
        .join(" ");
    match Command::new(program).args(args).output() {
        Ok(out) if out.status.success() => Some(Change::Ran(shown)),
        Ok(out) => Some(Change::ToolFailed(format!(
            "{shown}: {} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => Some(Change::ToolFailed(format!("{shown}: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The program of an `Exec=` value, read back the way a launcher does: the value's string
    /// escapes first, then the quoting rules, then `%%`. Written apart from `exec_quote` as its
    /// oracle.
    pub(crate) fn exec_program(value: &str) -> String {
        let mut unescaped = String::new();
        let mut chars = value.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                match chars.next() {
                    Some('\\') => unescaped.push('\\'),
                    Some('s') => unescaped.push(' '),
                    Some(o) => panic!("unexpected escape \\{o}"),
                    None => panic!("dangling backslash"),
                }
            } else {
                unescaped.push(c);
            }
        }
        let mut out = String::new();
        let mut chars = unescaped.chars().peekable();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') => break,
                    Some('\\') => out.push(chars.next().expect("escaped char")),
                    Some(c) => out.push(c),
                    None => panic!("unterminated quote"),
                }
            }
        } else {
            for c in chars.by_ref() {
                if c == ' ' {
                    break;
                }
                out.push(c);
            }
        }
        out.replace("%%", "%")
    }

    #[test]
    fn plain_paths_are_not_quoted() {
        assert_eq!(
            exec_quote("/usr/local/bin/dialtone").unwrap(),
            "/usr/local/bin/dialtone"
        );
    }

    #[test]
    fn awkward_paths_are_quoted_and_read_back_exactly() {
        for path in [
            "/home/me/My Apps/dialtone",
            "/opt/it's \"quoted\"/dialtone",
            "/tmp/$HOME/`x`/a\\b/dialtone",
            "/tmp/100%/dialtone",
            "/tmp/a;b&c|d<e>f~g*h?i#j(k)/dialtone",
            "/tmp/tab\there/dialtone",
        ] {
            if path.contains('\t') {
                assert_eq!(exec_quote(path), None, "control characters are refused");
                continue;
            }
            let quoted = exec_quote(path).unwrap();
            assert_eq!(exec_program(&format!("{quoted} %u")), path, "{quoted}");
        }
        assert!(exec_quote("/tmp/a b").unwrap().starts_with('"'));
        assert_eq!(exec_quote("/tmp/100%/x").unwrap(), "/tmp/100%%/x");
    }

    #[test]
    fn desktop_entry_names_the_executable_and_keeps_the_rest() {
        let entry = desktop_entry(Path::new("/opt/Dial Tone/dialtone")).unwrap();
        let exec = entry.lines().find_map(|l| l.strip_prefix("Exec=")).unwrap();
        assert_eq!(exec, "\"/opt/Dial Tone/dialtone\" %u");
        assert_eq!(exec_program(exec), "/opt/Dial Tone/dialtone");
        for line in assets::DESKTOP_ENTRY
            .lines()
            .filter(|l| !l.starts_with("Exec="))
        {
            assert!(entry.lines().any(|l| l == line), "{line} kept");
        }
        assert!(desktop_entry(Path::new("relative/dialtone")).is_err());
    }

    #[test]
    fn mimeapps_created_from_nothing() {
        assert_eq!(
            mimeapps_with(""),
            "[Default Applications]\nx-scheme-handler/sip=dialtone.desktop;\n\
             x-scheme-handler/sips=dialtone.desktop;\nx-scheme-handler/tel=dialtone.desktop;\n"
        );
        assert_eq!(mimeapps_without(&mimeapps_with("")), "");
    }

    const USER_FILE: &str = "\
# my associations
[Added Associations]
text/html=firefox.desktop;

[Default Applications]
text/html=firefox.desktop;
x-scheme-handler/tel=linphone.desktop;
# sips is not set

[Removed Associations]
image/png=gimp.desktop;
";

    #[test]
    fn mimeapps_other_lines_and_sections_are_kept_and_an_old_handler_stays_second() {
        let with = mimeapps_with(USER_FILE);
        assert_eq!(
            with,
            "\
# my associations
[Added Associations]
text/html=firefox.desktop;

[Default Applications]
text/html=firefox.desktop;
x-scheme-handler/tel=dialtone.desktop;linphone.desktop;
# sips is not set
x-scheme-handler/sip=dialtone.desktop;
x-scheme-handler/sips=dialtone.desktop;

[Removed Associations]
image/png=gimp.desktop;
"
        );
        assert_eq!(mimeapps_with(&with), with, "idempotent");
        assert_eq!(
            mimeapps_without(&with),
            USER_FILE,
            "uninstall restores the file exactly"
        );
    }

    #[test]
    fn mimeapps_section_added_after_the_existing_ones() {
        let text = "[Added Associations]\ntext/plain=gedit.desktop;\n";
        let with = mimeapps_with(text);
        assert!(with.starts_with(
            "[Added Associations]\ntext/plain=gedit.desktop;\n\n[Default Applications]\n"
        ));
        assert_eq!(mimeapps_without(&with), text);
    }

    #[test]
    fn mimeapps_dialtone_already_second_is_moved_first_and_uninstall_leaves_the_other() {
        let text = "[Default Applications]\nx-scheme-handler/sip=other.desktop;dialtone.desktop\n";
        let with = mimeapps_with(text);
        assert!(with.contains("\nx-scheme-handler/sip=dialtone.desktop;other.desktop;\n"));
        let without = mimeapps_without(&with);
        assert!(without.contains("\nx-scheme-handler/sip=other.desktop;\n"));
        assert!(!without.contains("dialtone"));
    }

    #[test]
    fn installed_paths_follow_the_xdg_layout() {
        let dirs = XdgDirs {
            data_home: "/d".into(),
            config_home: "/c".into(),
        };
        let files: Vec<PathBuf> = dirs
            .owned_files(String::new())
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        assert!(files.contains(&PathBuf::from("/d/applications/dialtone.desktop")));
        assert!(files.contains(&PathBuf::from("/d/icons/hicolor/48x48/apps/dialtone.png")));
        assert!(files.contains(&PathBuf::from(
            "/d/icons/hicolor/scalable/apps/dialtone.svg"
        )));
        assert!(files.contains(&PathBuf::from("/d/dialtone/ringtone.wav")));
        assert_eq!(dirs.mimeapps(), PathBuf::from("/c/mimeapps.list"));
    }
}
