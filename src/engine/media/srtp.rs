//! SDES-SRTP (RFC 4568) for `RTP/SAVP`: the `a=crypto` attribute (generate, parse, answer) and
//! an [`SrtpContext`] pair that protects what we send with our key and unprotects what we receive
//! with theirs. The cryptography is rtc-srtp's (webrtc-rs, ring-backed); nothing here is
//! hand-rolled crypto.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rtc_srtp::context::Context;
use rtc_srtp::option::{srtcp_replay_protection, srtp_replay_protection};
use rtc_srtp::protection_profile::ProtectionProfile;
use std::fmt;
use std::str::FromStr;

/// Master key length for the AES_CM_128 suites (bytes).
pub const MASTER_KEY_LEN: usize = 16;
/// Master salt length for the AES_CM_128 suites (bytes).
pub const MASTER_SALT_LEN: usize = 14;
/// Sliding replay window, in packets, for inbound SRTP and SRTCP.
pub const REPLAY_WINDOW: usize = 128;

#[derive(Debug, thiserror::Error)]
pub enum SrtpError {
    #[error("malformed a=crypto attribute: {0}")]
    Malformed(String),
    #[error("unsupported SRTP crypto suite {0}")]
    UnknownSuite(String),
    #[error("unsupported key method {0:?} (only inline: is defined for SDES)")]
    KeyMethod(String),
    #[error("a=crypto with an MKI is not supported")]
    Mki,
    #[error("a=crypto with more than one key is not supported")]
    MultipleKeys,
    #[error("unsupported SRTP session parameter {0:?}")]
    SessionParam(String),
    #[error("inline key must be 30 bytes (16 key + 14 salt) of base64: {0}")]
    BadKey(String),
    #[error("no acceptable a=crypto in the offer")]
    NoAcceptableOffer,
    #[error("the answer's a=crypto (tag {tag}, {suite}) matches none we offered")]
    AnswerMismatch { tag: u32, suite: String },
    #[error("local and remote crypto suites differ ({local} vs {remote})")]
    SuiteMismatch { local: String, remote: String },
    #[error("SRTP authentication failed")]
    AuthFailed,
    #[error("replayed or too old SRTP/SRTCP packet")]
    Replay,
    #[error("crypto provider: {0}")]
    Crypto(String),
    #[error("SRTP: {0}")]
    Srtp(String),
}

impl From<rtc_shared::error::Error> for SrtpError {
    fn from(e: rtc_shared::error::Error) -> Self {
        use rtc_shared::error::Error as E;
        match e {
            E::RtpFailedToVerifyAuthTag
            | E::RtcpFailedToVerifyAuthTag
            | E::ErrFailedToVerifyAuthTag => SrtpError::AuthFailed,
            E::SrtpSsrcDuplicated(..) | E::SrtcpSsrcDuplicated(..) | E::ErrDuplicated => {
                SrtpError::Replay
            }
            other => SrtpError::Srtp(other.to_string()),
        }
    }
}

/// The SDES crypto suites we speak (RFC 4568 section 6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CryptoSuite {
    AesCm128HmacSha1_80,
    AesCm128HmacSha1_32,
}

impl CryptoSuite {
    /// In order of preference.
    pub const ALL: [CryptoSuite; 2] = [
        CryptoSuite::AesCm128HmacSha1_80,
        CryptoSuite::AesCm128HmacSha1_32,
    ];

    pub fn name(self) -> &'static str {
        match self {
            CryptoSuite::AesCm128HmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            CryptoSuite::AesCm128HmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
        }
    }

    fn profile(self) -> ProtectionProfile {
        match self {
            CryptoSuite::AesCm128HmacSha1_80 => ProtectionProfile::Aes128CmHmacSha1_80,
            CryptoSuite::AesCm128HmacSha1_32 => ProtectionProfile::Aes128CmHmacSha1_32,
        }
    }
}

impl fmt::Display for CryptoSuite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for CryptoSuite {
    type Err = SrtpError;
    fn from_str(s: &str) -> Result<Self, SrtpError> {
        CryptoSuite::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| SrtpError::UnknownSuite(s.to_string()))
    }
}

/// A master key and salt. `Debug` never prints the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct SrtpKey {
    key: [u8; MASTER_KEY_LEN],
    salt: [u8; MASTER_SALT_LEN],
}

impl fmt::Debug for SrtpKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SrtpKey(..)")
    }
}

impl SrtpKey {
    /// A fresh key and salt from the crypto provider's CSPRNG.
    pub fn generate() -> Result<SrtpKey, SrtpError> {
        let provider =
            rtc_srtp::crypto::default_provider().map_err(|e| SrtpError::Crypto(e.to_string()))?;
        let mut bytes = [0u8; MASTER_KEY_LEN + MASTER_SALT_LEN];
        provider
            .random()
            .fill(&mut bytes)
            .map_err(|e| SrtpError::Crypto(e.to_string()))?;
        SrtpKey::from_bytes(&bytes)
    }

    /// From 30 bytes: key || salt.
    pub fn from_bytes(bytes: &[u8]) -> Result<SrtpKey, SrtpError> {
        if bytes.len() != MASTER_KEY_LEN + MASTER_SALT_LEN {
            return Err(SrtpError::BadKey(format!("{} bytes", bytes.len())));
        }
        let mut key = [0u8; MASTER_KEY_LEN];
        let mut salt = [0u8; MASTER_SALT_LEN];
        key.copy_from_slice(&bytes[..MASTER_KEY_LEN]);
        salt.copy_from_slice(&bytes[MASTER_KEY_LEN..]);
        Ok(SrtpKey { key, salt })
    }

    /// The `inline:` value: base64 of key || salt.
    pub fn to_base64(&self) -> String {
        let mut bytes = Vec::with_capacity(MASTER_KEY_LEN + MASTER_SALT_LEN);
        bytes.extend_from_slice(&self.key);
        bytes.extend_from_slice(&self.salt);
        BASE64.encode(bytes)
    }

    fn from_base64(s: &str) -> Result<SrtpKey, SrtpError> {
        let bytes = BASE64
            .decode(s)
            .map_err(|e| SrtpError::BadKey(e.to_string()))?;
        SrtpKey::from_bytes(&bytes)
    }
}

/// One `a=crypto` attribute: `<tag> <suite> inline:<key||salt>[|<lifetime>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CryptoAttribute {
    pub tag: u32,
    pub suite: CryptoSuite,
    pub key: SrtpKey,
    /// Master key lifetime in packets, when the peer gave one (we never send one).
    pub lifetime: Option<u64>,
}

impl CryptoAttribute {
    /// Our own attribute with a freshly generated key.
    pub fn generate(tag: u32, suite: CryptoSuite) -> Result<CryptoAttribute, SrtpError> {
        Ok(CryptoAttribute {
            tag,
            suite,
            key: SrtpKey::generate()?,
            lifetime: None,
        })
    }

    /// What an offer carries: one attribute per suite we support, tags 1, 2, … in order of
    /// preference, each with its own key.
    pub fn offer() -> Result<Vec<CryptoAttribute>, SrtpError> {
        CryptoSuite::ALL
            .into_iter()
            .zip(1u32..)
            .map(|(suite, tag)| CryptoAttribute::generate(tag, suite))
            .collect()
    }

    /// Parses an attribute value. Accepts `a=crypto:<value>`, `crypto:<value>` or the bare value.
    pub fn parse(line: &str) -> Result<CryptoAttribute, SrtpError> {
        let value = line.trim();
        let value = value.strip_prefix("a=").unwrap_or(value);
        let value = value.strip_prefix("crypto:").unwrap_or(value);
        let mut fields = value.split_ascii_whitespace();
        let tag_s = fields
            .next()
            .ok_or_else(|| SrtpError::Malformed("empty".into()))?;
        if tag_s.is_empty() || tag_s.len() > 9 || !tag_s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(SrtpError::Malformed(format!("tag {tag_s:?}")));
        }
        let tag: u32 = tag_s
            .parse()
            .map_err(|_| SrtpError::Malformed(format!("tag {tag_s:?}")))?;
        let suite: CryptoSuite = fields
            .next()
            .ok_or_else(|| SrtpError::Malformed("no crypto suite".into()))?
            .parse()?;
        let key_params = fields
            .next()
            .ok_or_else(|| SrtpError::Malformed("no key parameters".into()))?;
        if let Some(param) = fields.next() {
            return Err(SrtpError::SessionParam(param.to_string()));
        }
        let mut keys = key_params.split(';');
        let first = keys.next().unwrap_or_default();
        if keys.next().is_some() {
            return Err(SrtpError::MultipleKeys);
        }
        let (method, info) = first
            .split_once(':')
            .ok_or_else(|| SrtpError::Malformed(format!("key parameter {first:?}")))?;
        if method != "inline" {
            return Err(SrtpError::KeyMethod(method.to_string()));
        }
        let mut parts = info.split('|');
        let key = SrtpKey::from_base64(parts.next().unwrap_or_default())?;
        let mut lifetime = None;
        for part in parts {
            if part.contains(':') {
                return Err(SrtpError::Mki);
            }
            if lifetime.is_some() {
                return Err(SrtpError::Malformed(format!("extra key field {part:?}")));
            }
            lifetime = Some(parse_lifetime(part)?);
        }
        Ok(CryptoAttribute {
            tag,
            suite,
            key,
            lifetime,
        })
    }

    /// The attribute value, e.g. `1 AES_CM_128_HMAC_SHA1_80 inline:…`.
    pub fn value(&self) -> String {
        format!(
            "{} {} inline:{}",
            self.tag,
            self.suite,
            self.key.to_base64()
        )
    }

    /// The whole SDP line without line ending: `a=crypto:…`.
    pub fn sdp_line(&self) -> String {
        format!("a=crypto:{}", self.value())
    }
}

fn parse_lifetime(s: &str) -> Result<u64, SrtpError> {
    let bad = || SrtpError::Malformed(format!("key lifetime {s:?}"));
    if let Some(exp) = s.strip_prefix("2^") {
        let exp: u32 = exp.parse().map_err(|_| bad())?;
        // RFC 3711: at most 2^48 packets for SRTP.
        if exp > 48 {
            return Err(bad());
        }
        Ok(1u64 << exp)
    } else {
        let n: u64 = s.parse().map_err(|_| bad())?;
        if n == 0 { Err(bad()) } else { Ok(n) }
    }
}

/// The answerer's choice: the first offered attribute (in the offer's order) we can use, and
/// our own attribute for the answer (same tag and suite, our own fresh key). Returns
/// `(ours, theirs)`. Offer lines we cannot use (unknown suites, MKI, …) are skipped.
pub fn answer_offer<S: AsRef<str>>(
    offered: &[S],
) -> Result<(CryptoAttribute, CryptoAttribute), SrtpError> {
    let theirs = offered
        .iter()
        .filter_map(|l| CryptoAttribute::parse(l.as_ref()).ok())
        .next()
        .ok_or(SrtpError::NoAcceptableOffer)?;
    let ours = CryptoAttribute::generate(theirs.tag, theirs.suite)?;
    Ok((ours, theirs))
}

/// The offerer's side: which of our offered attributes the answer picked. Returns
/// `(ours, theirs)`.
pub fn accept_answer(
    offered: &[CryptoAttribute],
    answer: &str,
) -> Result<(CryptoAttribute, CryptoAttribute), SrtpError> {
    let theirs = CryptoAttribute::parse(answer)?;
    let ours = offered
        .iter()
        .find(|o| o.tag == theirs.tag && o.suite == theirs.suite)
        .ok_or_else(|| SrtpError::AnswerMismatch {
            tag: theirs.tag,
            suite: theirs.suite.to_string(),
        })?;
    Ok((ours.clone(), theirs))
}

/// One call's SRTP state: outbound keyed with our key, inbound with the peer's, replay
/// protection on the inbound side (RTP and RTCP).
pub struct SrtpContext {
    suite: CryptoSuite,
    outbound: Context,
    inbound: Context,
}

impl fmt::Debug for SrtpContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SrtpContext")
            .field("suite", &self.suite)
            .finish_non_exhaustive()
    }
}

impl SrtpContext {
    pub fn new(
        suite: CryptoSuite,
        local: &SrtpKey,
        remote: &SrtpKey,
    ) -> Result<SrtpContext, SrtpError> {
        let provider =
            rtc_srtp::crypto::default_provider().map_err(|e| SrtpError::Crypto(e.to_string()))?;
        let crypto = provider.crypto();
        let profile = suite.profile();
        let outbound = Context::new(&local.key, &local.salt, profile, None, None, crypto)?;
        let inbound = Context::new(
            &remote.key,
            &remote.salt,
            profile,
            Some(srtp_replay_protection(REPLAY_WINDOW)),
            Some(srtcp_replay_protection(REPLAY_WINDOW)),
            crypto,
        )?;
        Ok(SrtpContext {
            suite,
            outbound,
            inbound,
        })
    }

    /// From the negotiated pair (ours, theirs); their suites must agree.
    pub fn from_attributes(
        ours: &CryptoAttribute,
        theirs: &CryptoAttribute,
    ) -> Result<SrtpContext, SrtpError> {
        if ours.suite != theirs.suite {
            return Err(SrtpError::SuiteMismatch {
                local: ours.suite.to_string(),
                remote: theirs.suite.to_string(),
            });
        }
        SrtpContext::new(ours.suite, &ours.key, &theirs.key)
    }

    pub fn suite(&self) -> CryptoSuite {
        self.suite
    }

    /// RTP packet in, SRTP packet out.
    pub fn protect_rtp(&mut self, packet: &[u8]) -> Result<Vec<u8>, SrtpError> {
        if packet.len() < 12 {
            return Err(SrtpError::Srtp("RTP packet too short".into()));
        }
        Ok(self.outbound.encrypt_rtp(packet)?.to_vec())
    }

    /// SRTP packet in, RTP packet out; fails on a bad tag or a replay.
    pub fn unprotect_rtp(&mut self, packet: &[u8]) -> Result<Vec<u8>, SrtpError> {
        if packet.len() < 12 {
            return Err(SrtpError::Srtp("SRTP packet too short".into()));
        }
        Ok(self.inbound.decrypt_rtp(packet)?.to_vec())
    }

    /// (Compound) RTCP packet in, SRTCP packet out.
    pub fn protect_rtcp(&mut self, packet: &[u8]) -> Result<Vec<u8>, SrtpError> {
        Ok(self.outbound.encrypt_rtcp(packet)?.to_vec())
    }

    /// SRTCP packet in, RTCP packet out; fails on a bad tag or a replay.
    pub fn unprotect_rtcp(&mut self, packet: &[u8]) -> Result<Vec<u8>, SrtpError> {
        Ok(self.inbound.decrypt_rtcp(packet)?.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rtp_packet(seq: u16, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x80, 0x00];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&160u32.wrapping_mul(u32::from(seq)).to_be_bytes());
        p.extend_from_slice(&0x1234_5678u32.to_be_bytes());
        p.extend_from_slice(payload);
        p
    }

    /// A receiver report with no blocks (V=2, PT=201, length 1).
    fn rtcp_rr() -> Vec<u8> {
        vec![0x80, 201, 0x00, 0x01, 0xca, 0xfe, 0xba, 0xbe]
    }

    fn pair(suite: CryptoSuite) -> (SrtpContext, SrtpContext) {
        let a = SrtpKey::generate().unwrap();
        let b = SrtpKey::generate().unwrap();
        (
            SrtpContext::new(suite, &a, &b).unwrap(),
            SrtpContext::new(suite, &b, &a).unwrap(),
        )
    }

    #[test]
    fn srtp_context_is_send() {
        fn is_send<T: Send>() {}
        is_send::<SrtpContext>();
        is_send::<CryptoAttribute>();
    }

    #[test]
    fn generated_offer_line_round_trips_through_the_parser() {
        let offer = CryptoAttribute::offer().unwrap();
        assert_eq!(offer.len(), 2);
        assert_eq!(offer[0].tag, 1);
        let line = offer[0].sdp_line();
        assert!(line.starts_with("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"));
        assert_eq!(
            line.len(),
            "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:".len() + 40
        );
        assert_eq!(CryptoAttribute::parse(&line).unwrap(), offer[0]);
        assert_eq!(offer[1].suite, CryptoSuite::AesCm128HmacSha1_32);
        assert_ne!(offer[0].key, offer[1].key, "each line has its own key");
    }

    #[test]
    fn rfc4568_example_with_lifetime_parses() {
        let a = CryptoAttribute::parse(
            "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20",
        )
        .unwrap();
        assert_eq!(a.tag, 1);
        assert_eq!(a.suite, CryptoSuite::AesCm128HmacSha1_80);
        assert_eq!(a.lifetime, Some(1 << 20));
        assert_eq!(
            a.key.to_base64(),
            "PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR"
        );
    }

    #[test]
    fn mki_is_rejected_with_a_clear_error() {
        let e = CryptoAttribute::parse(
            "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:4",
        )
        .unwrap_err();
        assert!(matches!(e, SrtpError::Mki), "{e}");
        let e = CryptoAttribute::parse(
            "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|1:4",
        )
        .unwrap_err();
        assert!(matches!(e, SrtpError::Mki), "{e}");
    }

    #[test]
    fn unknown_suite_is_rejected_by_name() {
        let e = CryptoAttribute::parse(
            "2 AES_256_CM_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR",
        )
        .unwrap_err();
        assert!(matches!(&e, SrtpError::UnknownSuite(s) if s == "AES_256_CM_HMAC_SHA1_80"));
        assert!(e.to_string().contains("AES_256_CM_HMAC_SHA1_80"));
    }

    #[test]
    fn malformed_attributes_are_errors() {
        for bad in [
            "",
            "a=crypto:",
            "x AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR",
            "1234567890 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR",
            "1 AES_CM_128_HMAC_SHA1_80",
            "1 AES_CM_128_HMAC_SHA1_80 inline:short",
            "1 AES_CM_128_HMAC_SHA1_80 inline:!!!!",
            "1 AES_CM_128_HMAC_SHA1_80 uri:http://example.com/key",
            "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|0",
            "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^99",
            "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR UNENCRYPTED_SRTP",
            "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR;inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR",
        ] {
            assert!(CryptoAttribute::parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn no_input_truncation_panics_the_parser() {
        let line = "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:4";
        for i in 0..=line.len() {
            let _ = CryptoAttribute::parse(&line[..i]);
            let _ = CryptoAttribute::parse(&line[i..]);
        }
    }

    #[test]
    fn answer_takes_the_first_usable_offer_with_its_tag_and_our_own_key() {
        let offer = [
            "a=crypto:1 AES_256_CM_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR",
            "a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|1:4",
            "a=crypto:3 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR",
        ];
        let (ours, theirs) = answer_offer(&offer).unwrap();
        assert_eq!(ours.tag, 3);
        assert_eq!(ours.suite, CryptoSuite::AesCm128HmacSha1_80);
        assert_ne!(ours.key, theirs.key);
        assert!(matches!(
            answer_offer(&offer[..2]),
            Err(SrtpError::NoAcceptableOffer)
        ));
    }

    #[test]
    fn offer_answer_exchange_yields_working_contexts_both_ways() {
        let offered = CryptoAttribute::offer().unwrap();
        let lines: Vec<String> = offered.iter().map(|a| a.sdp_line()).collect();
        let (b_ours, b_theirs) = answer_offer(&lines).unwrap();
        let (a_ours, a_theirs) = accept_answer(&offered, &b_ours.sdp_line()).unwrap();
        let mut a = SrtpContext::from_attributes(&a_ours, &a_theirs).unwrap();
        let mut b = SrtpContext::from_attributes(&b_ours, &b_theirs).unwrap();
        let pkt = rtp_packet(1, b"hello");
        assert_eq!(b.unprotect_rtp(&a.protect_rtp(&pkt).unwrap()).unwrap(), pkt);
        let pkt = rtp_packet(7, b"world");
        assert_eq!(a.unprotect_rtp(&b.protect_rtp(&pkt).unwrap()).unwrap(), pkt);
    }

    #[test]
    fn answer_with_a_tag_we_never_offered_is_rejected() {
        let offered = CryptoAttribute::offer().unwrap();
        let e = accept_answer(
            &offered,
            "a=crypto:9 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR",
        )
        .unwrap_err();
        assert!(matches!(e, SrtpError::AnswerMismatch { tag: 9, .. }));
    }

    #[test]
    fn rtp_round_trips_with_an_80_bit_tag_and_is_encrypted() {
        let (mut a, mut b) = pair(CryptoSuite::AesCm128HmacSha1_80);
        for seq in [65530u16, 65531, 65535, 0, 1, 2] {
            let pkt = rtp_packet(seq, &[0xd5; 160]);
            let prot = a.protect_rtp(&pkt).unwrap();
            assert_eq!(prot.len(), pkt.len() + 10);
            assert_eq!(prot[..12], pkt[..12], "header stays clear");
            assert_ne!(prot[12..172], pkt[12..], "payload is encrypted");
            assert_eq!(b.unprotect_rtp(&prot).unwrap(), pkt);
        }
    }

    #[test]
    fn rtp_round_trips_with_a_32_bit_tag() {
        let (mut a, mut b) = pair(CryptoSuite::AesCm128HmacSha1_32);
        let pkt = rtp_packet(100, &[1, 2, 3]);
        let prot = a.protect_rtp(&pkt).unwrap();
        assert_eq!(prot.len(), pkt.len() + 4);
        assert_eq!(b.unprotect_rtp(&prot).unwrap(), pkt);
    }

    #[test]
    fn rtcp_round_trips_and_is_tagged() {
        let (mut a, mut b) = pair(CryptoSuite::AesCm128HmacSha1_80);
        let rr = rtcp_rr();
        for _ in 0..3 {
            let prot = a.protect_rtcp(&rr).unwrap();
            assert_eq!(prot.len(), rr.len() + 4 + 10, "E|index and an 80-bit tag");
            assert_eq!(b.unprotect_rtcp(&prot).unwrap(), rr);
        }
    }

    #[test]
    fn baresips_clear_rtcp_pinhole_packet_is_refused_and_its_srtcp_twin_accepted() {
        // As captured from baresip 1.0 with srtp-mand at the start of a call: an RTCP APP
        // packet (name PING, data PONG) in the clear, 16 bytes, then the same as SRTCP.
        let clear = [
            0x80, 0xcc, 0x00, 0x03, 0x46, 0xf4, 0x64, 0xc4, b'P', b'I', b'N', b'G', b'P', b'O',
            b'N', b'G',
        ];
        let (mut a, mut b) = pair(CryptoSuite::AesCm128HmacSha1_80);
        assert!(b.unprotect_rtcp(&clear).is_err());
        let twin = a.protect_rtcp(&clear).unwrap();
        assert_eq!(twin.len(), 30, "16 + E|index + 80-bit tag, as on the wire");
        assert_eq!(b.unprotect_rtcp(&twin).unwrap(), clear);
    }

    #[test]
    fn tampered_rtp_and_rtcp_fail_authentication() {
        let (mut a, mut b) = pair(CryptoSuite::AesCm128HmacSha1_80);
        let prot = a.protect_rtp(&rtp_packet(5, b"payload")).unwrap();
        for i in [1usize, 12, prot.len() - 1] {
            let mut bad = prot.clone();
            bad[i] ^= 0x01;
            assert!(
                matches!(b.unprotect_rtp(&bad), Err(SrtpError::AuthFailed)),
                "flip at {i}"
            );
        }
        assert!(
            b.unprotect_rtp(&prot).is_ok(),
            "the genuine one still passes"
        );
        let mut bad = a.protect_rtcp(&rtcp_rr()).unwrap();
        bad[9] ^= 0x80;
        assert!(matches!(b.unprotect_rtcp(&bad), Err(SrtpError::AuthFailed)));
    }

    #[test]
    fn replayed_rtp_and_rtcp_are_rejected() {
        let (mut a, mut b) = pair(CryptoSuite::AesCm128HmacSha1_80);
        let prot = a.protect_rtp(&rtp_packet(10, b"x")).unwrap();
        b.unprotect_rtp(&prot).unwrap();
        assert!(matches!(b.unprotect_rtp(&prot), Err(SrtpError::Replay)));
        // Out of order but new is fine.
        let p12 = a.protect_rtp(&rtp_packet(12, b"x")).unwrap();
        let p11 = a.protect_rtp(&rtp_packet(11, b"x")).unwrap();
        b.unprotect_rtp(&p12).unwrap();
        b.unprotect_rtp(&p11).unwrap();
        let rtcp = a.protect_rtcp(&rtcp_rr()).unwrap();
        b.unprotect_rtcp(&rtcp).unwrap();
        assert!(matches!(b.unprotect_rtcp(&rtcp), Err(SrtpError::Replay)));
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// Known answer: the RFC 3711 B.3 master key and salt (whose derived session keys the RFC
    /// lists), and the protected packet computed independently of rtc-srtp from those session
    /// keys with `openssl enc -aes-128-ecb` (AES-CM keystream, RFC 3711 4.1.1) and Python's
    /// hmac/sha1 (80-bit tag over header || ciphertext || ROC).
    #[test]
    fn protects_like_an_independent_implementation_with_rfc3711_b3_keys() {
        let master = hex("E1F97A0D3E018BE0D64FA32C06DE41390EC675AD498AFEEBB6960B3AABE6");
        let key = SrtpKey::from_bytes(&master).unwrap();
        let mut tx = SrtpContext::new(CryptoSuite::AesCm128HmacSha1_80, &key, &key).unwrap();
        let mut rx = SrtpContext::new(CryptoSuite::AesCm128HmacSha1_80, &key, &key).unwrap();
        let mut plain = hex("80001234000000a0cafebabe");
        plain.extend(0u8..20);
        let expected = hex(
            "80001234000000a0cafebabee5ff75e44837d5742f0673b5333b81a68f0181f1919486639f80a0b6d583",
        );
        assert_eq!(tx.protect_rtp(&plain).unwrap(), expected);
        assert_eq!(rx.unprotect_rtp(&expected).unwrap(), plain);
    }

    #[test]
    fn wrong_key_fails_authentication() {
        let (mut a, _) = pair(CryptoSuite::AesCm128HmacSha1_80);
        let (_, mut c) = pair(CryptoSuite::AesCm128HmacSha1_80);
        let prot = a.protect_rtp(&rtp_packet(1, b"x")).unwrap();
        assert!(matches!(c.unprotect_rtp(&prot), Err(SrtpError::AuthFailed)));
    }

    #[test]
    fn truncated_or_garbage_packets_never_panic() {
        let (mut a, mut b) = pair(CryptoSuite::AesCm128HmacSha1_80);
        let prot = a.protect_rtp(&rtp_packet(3, &[9; 40])).unwrap();
        let rtcp = a.protect_rtcp(&rtcp_rr()).unwrap();
        for i in 0..prot.len() {
            assert!(b.unprotect_rtp(&prot[..i]).is_err());
            let _ = b.protect_rtp(&prot[..i]);
        }
        for i in 0..rtcp.len() {
            assert!(b.unprotect_rtcp(&rtcp[..i]).is_err());
            let _ = b.protect_rtcp(&rtcp[..i]);
        }
        // RTP header claiming 15 CSRCs and an extension, on a short buffer.
        let _ = b.unprotect_rtp(&[
            0x9f, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0xbe, 0xde, 0xff, 0xff,
        ]);
        let _ = b.unprotect_rtcp(&[
            0x80, 200, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ]);
    }
}
