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

/// One SIP account. Its `Debug` leaves the password out (commands carrying settings may be
/// logged).
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

impl fmt::Debug for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let password = if self.password.is_empty() { "" } else { "***" };
        f.debug_struct("Account")
            .field("display_name", &self.display_name)
            .field("uri", &self.uri)
            .field("auth_user", &self.auth_user)
            .field("password", &password)
            .field("registrar", &self.registrar)
            .field("outbound_proxy", &self.outbound_proxy)
            .field("transport", &self.transport)
            .field("register", &self.register)
            .field("expires", &self.expires)
            .field("tls_verify", &self.tls_verify)
            .field("tls_ca", &self.tls_ca)
            .field("media_encryption", &self.media_encryption)
            .finish()
    }
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

    /// Writes atomically: a temporary file in the same directory, then a rename.
    pub fn save(&self, path: &Path) -> Result<(), SettingsError> {
        let write_err = |source| SettingsError::Write {
            path: path.into(),
            source,
        };
        let text = toml::to_string_pretty(self)
            .map_err(|e| SettingsError::Invalid(format!("cannot serialise settings: {e}")))?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(write_err)?;
        }
        let tmp = path.with_extension("toml.tmp");
        std::fs::write(&tmp, text).map_err(write_err)?;
        std::fs::rename(&tmp, path).map_err(write_err)
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
