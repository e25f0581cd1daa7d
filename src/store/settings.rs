//! Settings: accounts and engine options, persisted as TOML in the user's config directory.
//!
//! A broken file is an error the user sees (with the file name and the line), never a silent reset:
//! the caller decides what to show; nothing here overwrites a file it could not read.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};

/// SIP transport of an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    #[default]
    Udp,
    Tcp,
    Tls,
}

impl Transport {
    /// The token used in Via headers (`SIP/2.0/UDP`).
    pub fn via_token(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
        }
    }

    /// Connection-oriented transports have no retransmissions (RFC 3261 17.1.1.2).
    pub fn is_reliable(self) -> bool {
        !matches!(self, Transport::Udp)
    }

    pub fn default_port(self) -> u16 {
        match self {
            Transport::Tls => 5061,
            _ => 5060,
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "udp" => Some(Transport::Udp),
            "tcp" => Some(Transport::Tcp),
            "tls" => Some(Transport::Tls),
            _ => None,
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        })
    }
}

/// Media encryption of a call (SDES-SRTP, RFC 4568, `RTP/SAVP` with `a=crypto`).
///
/// Whatever the setting, an incoming `RTP/SAVP` offer with a usable `a=crypto` is answered with
/// SRTP. `Sdes` also offers `RTP/SAVP` (a peer without SRTP usually refuses such an offer, RFC
/// 4568 5) and accepts an unencrypted answer or offer; `SdesMandatory` never runs a call without
/// SRTP: a plain `RTP/AVP` offer gets 488, a plain answer ends the call with an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MediaEncryption {
    #[default]
    None,
    Sdes,
    SdesMandatory,
}

impl MediaEncryption {
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "none" => Some(MediaEncryption::None),
            "sdes" => Some(MediaEncryption::Sdes),
            "sdes-mandatory" => Some(MediaEncryption::SdesMandatory),
            _ => None,
        }
    }

    /// Our offers are `RTP/SAVP` with fresh keys.
    pub fn offers_srtp(self) -> bool {
        self != MediaEncryption::None
    }

    /// A call without SRTP is refused.
    pub fn mandatory(self) -> bool {
        self == MediaEncryption::SdesMandatory
    }
}

impl fmt::Display for MediaEncryption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MediaEncryption::None => "none",
            MediaEncryption::Sdes => "sdes",
            MediaEncryption::SdesMandatory => "sdes-mandatory",
        })
    }
}

/// One SIP account. Its `Debug` output never shows the password.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Account {
    /// Shown to the people we call (From display name).
    pub display_name: String,
    /// Address of record, e.g. `sip:carol@example.com`.
    pub uri: String,
    /// Digest user name; empty means the user part of `uri`.
    pub auth_user: String,
    /// Digest password (issue 4 moves it to the OS keyring).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub password: String,
    /// Where REGISTER goes (`host[:port]` or a SIP URI); empty means the domain of `uri`.
    pub registrar: String,
    /// Every request of this account goes here first (`host[:port]` or URI), if set.
    pub outbound_proxy: String,
    pub transport: Transport,
    /// Register at start (and keep the registration fresh).
    pub register: bool,
    /// Requested registration lifetime in seconds.
    pub expires: u32,
    /// Verify the TLS server certificate (on by default; turn off only for a lab server).
    pub tls_verify: bool,
    /// Extra PEM CA file trusted for TLS besides the system roots (a private PBX's CA).
    pub tls_ca: String,
    /// SRTP on this account's calls: `none`, `sdes` or `sdes-mandatory`.
    pub media_encryption: MediaEncryption,
}

impl Default for Account {
    fn default() -> Self {
        Account {
            display_name: String::new(),
            uri: String::new(),
            auth_user: String::new(),
            password: String::new(),
            registrar: String::new(),
            outbound_proxy: String::new(),
            transport: Transport::Udp,
            register: true,
            expires: 600,
            tls_verify: true,
            tls_ca: String::new(),
            media_encryption: MediaEncryption::None,
        }
    }
}

impl fmt::Debug for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Every field named, so a new one cannot be forgotten here.
        let Account {
            display_name,
            uri,
            auth_user,
            password,
            registrar,
            outbound_proxy,
            transport,
            register,
            expires,
            tls_verify,
            tls_ca,
            media_encryption,
        } = self;
        let password = if password.is_empty() { "" } else { "<hidden>" };
        f.debug_struct("Account")
            .field("display_name", display_name)
            .field("uri", uri)
            .field("auth_user", auth_user)
            .field("password", &password)
            .field("registrar", registrar)
            .field("outbound_proxy", outbound_proxy)
            .field("transport", transport)
            .field("register", register)
            .field("expires", expires)
            .field("tls_verify", tls_verify)
            .field("tls_ca", tls_ca)
            .field("media_encryption", media_encryption)
            .finish()
    }
}

/// Engine-wide options.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub accounts: Vec<Account>,
    /// Local SIP address for UDP and TCP (TLS uses the next port). Port 0 picks a free one.
    pub listen: String,
    /// RTP port range, `first-last`.
    pub rtp_ports: String,
    /// Answer every incoming call at once.
    pub auto_answer: bool,
    /// User-Agent header.
    pub user_agent: String,
    /// Microphone: `default`, `device:NAME`, `tone:HZ`, `wav:FILE` or `silence`.
    pub audio_in: String,
    /// Speaker: `default`, `device:NAME`, `wav:FILE` or `null`.
    pub audio_out: String,
    /// Audio codecs offered and accepted, in order of preference: `opus`, `PCMU`, `PCMA`.
    pub codecs: Vec<String>,
    /// Echo cancellation, noise suppression and automatic gain control on the microphone (on by
    /// default; applied to real inputs, `default` and `device:NAME`, never to tone/WAV/silence).
    pub audio_processing: bool,
    /// SRTP on calls that belong to no account (dialled as a full address with no account, or
    /// arriving for no account's user): `none`, `sdes` or `sdes-mandatory`.
    pub media_encryption: MediaEncryption,
    /// Do not disturb: every incoming call is refused at once with 486 Busy Here, without
    /// ringing (the UI still hears of it, for its missed calls).
    pub do_not_disturb: bool,
    /// Where incoming calls ring: empty for the call output, or another output (`default`,
    /// `device:NAME`, `wav:FILE`, `null`), opened once at start like the others.
    pub ring_out: String,
    /// The ring tone: empty for the built-in one, or `wav:FILE` (looped while ringing).
    pub ring_tone: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            accounts: Vec::new(),
            listen: "0.0.0.0:5060".into(),
            rtp_ports: "20000-20999".into(),
            auto_answer: false,
            user_agent: format!("Dialtone/{}", env!("CARGO_PKG_VERSION")),
            audio_in: "default".into(),
            audio_out: "default".into(),
            codecs: vec!["opus".into(), "PCMU".into(), "PCMA".into()],
            audio_processing: true,
            media_encryption: MediaEncryption::None,
            do_not_disturb: false,
            ring_out: String::new(),
            ring_tone: String::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot read settings file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("settings file {path} is broken: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("cannot write settings file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid setting: {0}")]
    Invalid(String),
}

impl Settings {
    /// The default settings file: `$XDG_CONFIG_HOME/dialtone/settings.toml`.
    pub fn default_path() -> Option<PathBuf> {
        directories::ProjectDirs::from("org", "dialtone", "dialtone")
            .map(|d| d.config_dir().join("settings.toml"))
    }

    /// Reads `path`; a missing file gives the defaults, a broken one an error naming the file.
    pub fn load(path: &Path) -> Result<Settings, SettingsError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Settings::default()),
            Err(source) => {
                return Err(SettingsError::Read {
                    path: path.into(),
                    source,
                });
            }
        };
        let settings: Settings = toml::from_str(&text).map_err(|source| SettingsError::Parse {
            path: path.into(),
            source: Box::new(source),
        })?;
        settings.validate()?;
        Ok(settings)
    }

    /// Like [`Settings::load`], but never fails: a missing file gives the defaults, and a file
    /// that cannot be read or is invalid is renamed aside (`settings.toml.corrupt-<unix time>`,
    /// never overwritten) so that saving later cannot destroy it. The defaults then come with a
    /// message for the user that names both files.
    pub fn load_or_recover(path: &Path) -> (Settings, Option<String>) {
        let err = match Settings::load(path) {
            Ok(s) => return (s, None),
            Err(e) => e,
        };
        let what = format!(
            "The settings file {} could not be used ({err}).",
            path.display()
        );
        let msg = match crate::store::files::move_aside(path, crate::store::files::unix_now()) {
            Ok(aside) => format!(
                "{what} It was moved to {} and Dialtone starts with default settings.",
                aside.display()
            ),
            Err(move_err) => format!(
                "{what} Dialtone starts with default settings; the file could not be moved \
                 aside ({move_err}), so fix or remove it before changing settings."
            ),
        };
        (Settings::default(), Some(msg))
    }

    /// Writes atomically: a fresh temporary file in the same directory, fsynced, renamed over
    /// `path`. An existing file keeps its permissions; a new one is readable only by the user
    /// (it may hold passwords).
    pub fn save(&self, path: &Path) -> Result<(), SettingsError> {
        let text = toml::to_string_pretty(self)
            .map_err(|e| SettingsError::Invalid(format!("cannot serialise settings: {e}")))?;
        crate::store::files::atomic_write(path, text.as_bytes(), 0o600).map_err(|source| {
            SettingsError::Write {
                path: path.into(),
                source,
            }
        })
    }

    /// A copy with every account's password cleared: what is saved when the passwords are kept
    /// in [`crate::store::Secrets`].
    pub fn without_passwords(&self) -> Settings {
        let mut s = self.clone();
        for a in &mut s.accounts {
            a.password.clear();
        }
        s
    }

    /// Checks what serde cannot: URIs, the port range, the listen address.
    pub fn validate(&self) -> Result<(), SettingsError> {
        self.rtp_port_range()?;
        if self.codecs.is_empty() {
            return Err(SettingsError::Invalid(
                "codecs: name at least one of opus, PCMU, PCMA".into(),
            ));
        }
        for c in &self.codecs {
            if !["opus", "pcmu", "pcma"].contains(&c.to_ascii_lowercase().as_str()) {
                return Err(SettingsError::Invalid(format!(
                    "codecs: unknown codec {c:?} (opus, PCMU, PCMA)"
                )));
            }
        }
        crate::engine::media::devices::InputSpec::parse(&self.audio_in)
            .map_err(|e| SettingsError::Invalid(e.to_string()))?;
        crate::engine::media::devices::OutputSpec::parse(&self.audio_out)
            .map_err(|e| SettingsError::Invalid(e.to_string()))?;
        self.ring_output()?;
        self.ring_tone_file()?;
        self.listen_addr()?;
        for (i, a) in self.accounts.iter().enumerate() {
            let uri = crate::engine::sip::uri::Uri::parse(&a.uri).map_err(|e| {
                SettingsError::Invalid(format!("account {} uri {:?}: {e}", i + 1, a.uri))
            })?;
            if uri.user.is_none() {
                return Err(SettingsError::Invalid(format!(
                    "account {} uri {:?} has no user part",
                    i + 1,
                    a.uri
                )));
            }
        }
        Ok(())
    }

    pub fn rtp_port_range(&self) -> Result<(u16, u16), SettingsError> {
        let bad =
            || SettingsError::Invalid(format!("rtp_ports {:?}: want FIRST-LAST", self.rtp_ports));
        let (a, b) = self.rtp_ports.split_once('-').ok_or_else(bad)?;
        let a: u16 = a.trim().parse().map_err(|_| bad())?;
        let b: u16 = b.trim().parse().map_err(|_| bad())?;
        if a == 0 || b < a.saturating_add(1) {
            return Err(bad());
        }
        Ok((a, b))
    }

    /// The ring device: None when incoming calls ring on the call output (`ring_out` empty, or
    /// the same as `audio_out`).
    pub fn ring_output(
        &self,
    ) -> Result<Option<crate::engine::media::devices::OutputSpec>, SettingsError> {
        use crate::engine::media::devices::OutputSpec;
        if self.ring_out.trim().is_empty() {
            return Ok(None);
        }
        let ring = OutputSpec::parse(&self.ring_out)
            .map_err(|e| SettingsError::Invalid(format!("ring_out: {e}")))?;
        let same = OutputSpec::parse(&self.audio_out).is_ok_and(|out| out == ring);
        Ok((!same).then_some(ring))
    }

    /// The ring tone file: None for the built-in ring tone.
    pub fn ring_tone_file(&self) -> Result<Option<PathBuf>, SettingsError> {
        let tone = self.ring_tone.trim();
        if tone.is_empty() {
            return Ok(None);
        }
        match tone.split_once(':') {
            Some(("wav", path)) if !path.is_empty() => Ok(Some(PathBuf::from(path))),
            _ => Err(SettingsError::Invalid(format!(
                "ring_tone {tone:?}: want wav:FILE, or nothing for the built-in ring tone"
            ))),
        }
    }

    pub fn listen_addr(&self) -> Result<std::net::SocketAddr, SettingsError> {
        self.listen
            .parse()
            .map_err(|_| SettingsError::Invalid(format!("listen {:?}: want IP:PORT", self.listen)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_file_gives_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let s = Settings::load(&dir.path().join("nope.toml")).unwrap();
        assert_eq!(s, Settings::default());
    }

    #[test]
    fn round_trip_keeps_accounts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("settings.toml");
        let mut s = Settings::default();
        s.accounts.push(Account {
            uri: "sip:carol@127.0.0.1".into(),
            password: "carolpw".into(),
            transport: Transport::Tcp,
            ..Account::default()
        });
        s.save(&path).unwrap();
        assert_eq!(Settings::load(&path).unwrap(), s);
    }

    #[test]
    fn media_encryption_reads_its_three_values_and_defaults_to_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("settings.toml");
        std::fs::write(
            &path,
            "media_encryption = \"sdes\"\n[[accounts]]\nuri = \"sip:carol@127.0.0.1\"\n\
             media_encryption = \"sdes-mandatory\"\n[[accounts]]\nuri = \"sip:dave@127.0.0.1\"\n",
        )
        .unwrap();
        let s = Settings::load(&path).unwrap();
        assert_eq!(s.media_encryption, MediaEncryption::Sdes);
        assert_eq!(
            s.accounts[0].media_encryption,
            MediaEncryption::SdesMandatory
        );
        assert_eq!(s.accounts[1].media_encryption, MediaEncryption::None);
        std::fs::write(&path, "media_encryption = \"zrtp\"\n").unwrap();
        assert!(Settings::load(&path).is_err());
        for m in [
            MediaEncryption::None,
            MediaEncryption::Sdes,
            MediaEncryption::SdesMandatory,
        ] {
            assert_eq!(MediaEncryption::parse(&m.to_string()), Some(m));
        }
    }

    #[test]
    fn audio_processing_is_on_unless_turned_off() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("settings.toml");
        std::fs::write(&path, "auto_answer = true\n").unwrap();
        assert!(Settings::load(&path).unwrap().audio_processing);
        std::fs::write(&path, "audio_processing = false\n").unwrap();
        assert!(!Settings::load(&path).unwrap().audio_processing);
    }

    #[test]
    fn broken_file_is_an_error_and_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("settings.toml");
        std::fs::write(&path, "accounts = [ { uri = ").unwrap();
        let err = Settings::load(&path).unwrap_err();
        assert!(err.to_string().contains("settings.toml"), "{err}");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "accounts = [ { uri = "
        );
    }

    fn files_in(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn load_or_recover_gives_defaults_without_a_message_for_a_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let (s, msg) = Settings::load_or_recover(&dir.path().join("settings.toml"));
        assert_eq!(s, Settings::default());
        assert_eq!(msg, None);
    }

    #[test]
    fn load_or_recover_reads_a_good_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("settings.toml");
        let s = Settings {
            auto_answer: true,
            ..Settings::default()
        };
        s.save(&path).unwrap();
        assert_eq!(Settings::load_or_recover(&path), (s, None));
    }

    #[test]
    fn a_corrupt_file_is_kept_aside_and_not_overwritten_by_the_next_save() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("settings.toml");
        let broken = "accounts = [ { uri = ";
        std::fs::write(&path, broken).unwrap();
        let (s, msg) = Settings::load_or_recover(&path);
        assert_eq!(s, Settings::default());
        let msg = msg.expect("a message for the user");
        let names = files_in(dir.path());
        assert_eq!(names.len(), 1, "{names:?}");
        assert!(names[0].starts_with("settings.toml.corrupt-"), "{names:?}");
        let aside = dir.path().join(&names[0]);
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains(&aside.display().to_string()), "{msg}");
        assert!(msg.contains("broken"), "{msg}");
        s.save(&path).unwrap();
        assert_eq!(std::fs::read_to_string(&aside).unwrap(), broken);
        // A second broken file in the same second gets its own name.
        std::fs::write(&path, "listen = 5").unwrap();
        let (_, msg) = Settings::load_or_recover(&path);
        assert!(msg.is_some());
        assert_eq!(files_in(dir.path()).len(), 2);
        assert_eq!(std::fs::read_to_string(&aside).unwrap(), broken);
    }

    #[test]
    fn an_invalid_setting_is_also_kept_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("settings.toml");
        std::fs::write(&path, "codecs = [\"g729\"]\n").unwrap();
        let (s, msg) = Settings::load_or_recover(&path);
        assert_eq!(s, Settings::default());
        assert!(msg.unwrap().contains("g729"));
        assert!(!path.exists());
    }

    #[test]
    fn save_leaves_no_temporary_file_and_keeps_the_file_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("settings.toml");
        Settings::default().save(&path).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        Settings::default().save(&path).unwrap();
        assert_eq!(mode(&path), 0o644);
        assert_eq!(files_in(dir.path()), ["settings.toml"]);
    }

    #[test]
    fn without_passwords_clears_only_the_passwords() {
        let s = Settings {
            accounts: vec![Account {
                uri: "sip:carol@127.0.0.1".into(),
                password: "carolpw".into(),
                ..Account::default()
            }],
            ..Settings::default()
        };
        let clean = s.without_passwords();
        assert_eq!(clean.accounts[0].password, "");
        assert_eq!(
            Settings {
                accounts: vec![Account {
                    password: "carolpw".into(),
                    ..clean.accounts[0].clone()
                }],
                ..clean.clone()
            },
            s
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("settings.toml");
        clean.save(&path).unwrap();
        assert!(!std::fs::read_to_string(&path).unwrap().contains("carolpw"));
    }

    #[test]
    fn account_debug_output_hides_the_password() {
        let a = Account {
            uri: "sip:carol@127.0.0.1".into(),
            password: "s3cr3t-pw".into(),
            ..Account::default()
        };
        let s = Settings {
            accounts: vec![a.clone()],
            ..Settings::default()
        };
        for shown in [format!("{a:?}"), format!("{a:#?}"), format!("{s:?}")] {
            assert!(!shown.contains("s3cr3t-pw"), "{shown}");
            assert!(shown.contains("<hidden>"), "{shown}");
            assert!(shown.contains("sip:carol@127.0.0.1"), "{shown}");
        }
    }

    #[test]
    fn account_without_user_is_rejected() {
        let s = Settings {
            accounts: vec![Account {
                uri: "sip:example.com".into(),
                ..Account::default()
            }],
            ..Settings::default()
        };
        assert!(s.validate().is_err());
    }

    #[test]
    fn ring_and_do_not_disturb_settings_read_with_defaults_and_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("settings.toml");
        std::fs::write(&path, "auto_answer = true\n").unwrap();
        let s = Settings::load(&path).unwrap();
        assert!(!s.do_not_disturb);
        assert_eq!(s.ring_output().unwrap(), None);
        assert_eq!(s.ring_tone_file().unwrap(), None);
        std::fs::write(
            &path,
            "do_not_disturb = true\nring_out = \"wav:/tmp/ring.wav\"\n\
             ring_tone = \"wav:/usr/share/sounds/ring.wav\"\n",
        )
        .unwrap();
        let s = Settings::load(&path).unwrap();
        assert!(s.do_not_disturb);
        assert_eq!(
            s.ring_output().unwrap().map(|o| o.to_string()),
            Some("wav:/tmp/ring.wav".into())
        );
        assert_eq!(
            s.ring_tone_file().unwrap(),
            Some(PathBuf::from("/usr/share/sounds/ring.wav"))
        );
        // The call output named again is no ring device of its own.
        let same = Settings {
            audio_out: "null".into(),
            ring_out: "null".into(),
            ..Settings::default()
        };
        assert_eq!(same.ring_output().unwrap(), None);
        for (ring_out, ring_tone) in [("speaker", ""), ("", "tone:440"), ("", "wav:")] {
            let bad = Settings {
                ring_out: ring_out.into(),
                ring_tone: ring_tone.into(),
                ..Settings::default()
            };
            assert!(bad.validate().is_err(), "{ring_out:?} {ring_tone:?}");
        }
    }

    #[test]
    fn debug_output_leaves_passwords_out() {
        let s = Settings {
            accounts: vec![Account {
                uri: "sip:carol@127.0.0.1".into(),
                password: "hunter2".into(),
                ..Account::default()
            }],
            ..Settings::default()
        };
        let shown = format!("{s:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("sip:carol@127.0.0.1"), "{shown}");
    }
}
