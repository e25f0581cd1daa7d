//! Digest authentication (RFC 2617, RFC 7616, RFC 8760).
//!
//! Sans-IO: this module parses `WWW-Authenticate` / `Proxy-Authenticate` values into a [`Challenge`],
//! computes the client's `Authorization` / `Proxy-Authorization` value with [`authorization`], and, for the
//! in-process test registrar, parses and checks such a value with [`Credentials`]. It keeps no clock and
//! does no I/O; the only state is the per-nonce counter a client keeps ([`NonceCounter`]).
//!
//! Written here rather than taken from rsip 0.4, which rejects `algorithm=SHA-256` and
//! `qop="auth,auth-int"` and reads `nc` as a decimal `u8` (../shared/FACTS.md).
//!
//! Nothing here panics, whatever the input: header values come straight off the network.

use std::fmt::{self, Write as _};
use std::str::FromStr;

use md5::{Digest, Md5};
use sha2::{Sha256, Sha512_256};

/// Why a digest header value could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The value names another scheme (`Basic`, `Bearer`, …) or none at all.
    #[error("authentication scheme `{0}` is not Digest")]
    NotDigest(String),
    /// The parameter list does not follow `name=value, name="quoted value", …`.
    #[error("malformed digest parameters: {0}")]
    Malformed(String),
    /// A parameter the header cannot do without is absent.
    #[error("digest parameter `{0}` is missing")]
    MissingParam(&'static str),
    /// A parameter this module reads is given twice, so its meaning is ambiguous.
    #[error("digest parameter `{0}` is given more than once")]
    DuplicateParam(&'static str),
    /// The algorithm is not one of MD5, SHA-256, SHA-512-256 (with or without `-sess`).
    #[error("unsupported digest algorithm `{0}`")]
    UnsupportedAlgorithm(String),
    /// The quality of protection is neither `auth` nor `auth-int`.
    #[error("unsupported digest qop `{0}`")]
    UnsupportedQop(String),
    /// `nc` is not 1 to 8 hexadecimal digits.
    #[error("invalid digest nonce count `{0}`")]
    InvalidNonceCount(String),
}

/// Hash algorithm of a digest challenge (RFC 7616 section 3.3, RFC 8760 for SHA-512-256).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Algorithm {
    /// `MD5`, the default when a challenge names no algorithm.
    #[default]
    Md5,
    /// `MD5-sess`
    Md5Sess,
    /// `SHA-256`
    Sha256,
    /// `SHA-256-sess`
    Sha256Sess,
    /// `SHA-512-256`
    Sha512_256,
    /// `SHA-512-256-sess`
    Sha512_256Sess,
}

impl Algorithm {
    /// Every supported algorithm, strongest last.
    pub const ALL: [Algorithm; 6] = [
        Algorithm::Md5,
        Algorithm::Md5Sess,
        Algorithm::Sha256,
        Algorithm::Sha256Sess,
        Algorithm::Sha512_256,
        Algorithm::Sha512_256Sess,
    ];

    /// The token as RFC 7616 spells it, e.g. `SHA-256-sess`.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Md5Sess => "MD5-sess",
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Sha256Sess => "SHA-256-sess",
            Algorithm::Sha512_256 => "SHA-512-256",
            Algorithm::Sha512_256Sess => "SHA-512-256-sess",
        }
    }

    /// Whether A1 is re-hashed with the nonce and cnonce (the `-sess` variants).
    pub fn is_sess(self) -> bool {
        matches!(
            self,
            Algorithm::Md5Sess | Algorithm::Sha256Sess | Algorithm::Sha512_256Sess
        )
    }

    /// Ranking used by [`best_challenge`]: higher is preferred.
    fn strength(self) -> u8 {
        match self {
            Algorithm::Md5 | Algorithm::Md5Sess => 1,
            Algorithm::Sha256 | Algorithm::Sha256Sess => 2,
            Algorithm::Sha512_256 | Algorithm::Sha512_256Sess => 3,
        }
    }

    /// `H(data)` as lowercase hex, the form every digest computation feeds on.
    fn hex_hash(self, data: &[u8]) -> String {
        match self {
            Algorithm::Md5 | Algorithm::Md5Sess => hex(&Md5::digest(data)),
            Algorithm::Sha256 | Algorithm::Sha256Sess => hex(&Sha256::digest(data)),
            Algorithm::Sha512_256 | Algorithm::Sha512_256Sess => hex(&Sha512_256::digest(data)),
        }
    }
}

impl FromStr for Algorithm {
    type Err = AuthError;

    /// Case-insensitive; hyphens inside the hash name are optional (`SHA256` is accepted for the
    /// servers that write it so), the `-sess` suffix is not.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let upper = s.trim().to_ascii_uppercase();
        let (base, sess) = match upper.strip_suffix("-SESS") {
            Some(base) => (base, true),
            None => (upper.as_str(), false),
        };
        let base: String = base.chars().filter(|c| *c != '-' && *c != '_').collect();
        match (base.as_str(), sess) {
            ("MD5", false) => Ok(Algorithm::Md5),
            ("MD5", true) => Ok(Algorithm::Md5Sess),
            ("SHA256", false) => Ok(Algorithm::Sha256),
            ("SHA256", true) => Ok(Algorithm::Sha256Sess),
            ("SHA512256", false) => Ok(Algorithm::Sha512_256),
            ("SHA512256", true) => Ok(Algorithm::Sha512_256Sess),
            _ => Err(AuthError::UnsupportedAlgorithm(clip(s))),
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Quality of protection (RFC 7616 section 3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Qop {
    /// `auth`: the request method and URI are covered.
    Auth,
    /// `auth-int`: the body is covered as well.
    AuthInt,
}

impl Qop {
    /// The token as sent on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Qop::Auth => "auth",
            Qop::AuthInt => "auth-int",
        }
    }
}

impl FromStr for Qop {
    type Err = AuthError;

    /// Case-insensitive `auth` or `auth-int`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("auth") {
            Ok(Qop::Auth)
        } else if t.eq_ignore_ascii_case("auth-int") {
            Ok(Qop::AuthInt)
        } else {
            Err(AuthError::UnsupportedQop(clip(s)))
        }
    }
}

impl fmt::Display for Qop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One parsed `WWW-Authenticate` / `Proxy-Authenticate` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// Protection space; shown to the user and part of A1.
    pub realm: String,
    /// Server nonce, echoed back and part of every response.
    pub nonce: String,
    /// Opaque server data, echoed back unchanged.
    pub opaque: Option<String>,
    /// `MD5` when the challenge names none.
    pub algorithm: Algorithm,
    /// The offered qualities of protection this module knows, in the server's order; empty when the
    /// challenge has no `qop` (an RFC 2069 style challenge, as Kamailio sends by default).
    pub qop: Vec<Qop>,
    /// `stale=true`: the nonce expired but the credentials were right; retry without asking the user.
    pub stale: bool,
    /// `domain`, the space-separated URIs the realm covers, as written.
    pub domain: Option<String>,
}

impl Challenge {
    /// Parses a header value such as `Digest realm="x", nonce="y", algorithm=MD5, qop="auth"`.
    ///
    /// The scheme is case-insensitive; parameters are comma-separated `name=token` or
    /// `name="quoted string"` (which may contain commas and `\"` escapes), with whitespace allowed
    /// around every separator. Unknown parameters and unknown `qop` options are ignored. Errors: another
    /// scheme, missing `realm` or `nonce`, an unsupported algorithm, a `qop` offering nothing known,
    /// or a parameter this function reads given twice.
    pub fn parse(header_value: &str) -> Result<Challenge, AuthError> {
        let params = Params::parse_digest(header_value)?;
        let algorithm = match params.get("algorithm")? {
            Some(a) => a.parse()?,
            None => Algorithm::Md5,
        };
        let qop = match params.get("qop")? {
            Some(list) => parse_qop_options(list)?,
            None => Vec::new(),
        };
        Ok(Challenge {
            realm: params.required("realm")?.to_owned(),
            nonce: params.required("nonce")?.to_owned(),
            opaque: params.get("opaque")?.map(str::to_owned),
            algorithm,
            qop,
            stale: params
                .get("stale")?
                .is_some_and(|s| s.trim().eq_ignore_ascii_case("true")),
            domain: params.get("domain")?.map(str::to_owned),
        })
    }

    /// The qop [`authorization`] answers with: `auth` when offered, else `auth-int`, else none.
    pub fn chosen_qop(&self) -> Option<Qop> {
        if self.qop.contains(&Qop::Auth) {
            Some(Qop::Auth)
        } else if self.qop.contains(&Qop::AuthInt) {
            Some(Qop::AuthInt)
        } else {
            None
        }
    }
}

/// Reads `qop="auth,auth-int"`: unknown options are skipped (RFC 7616 section 3.3), but an offer with
/// options and none of them known is unanswerable, so an error.
fn parse_qop_options(list: &str) -> Result<Vec<Qop>, AuthError> {
    let mut known = Vec::new();
    let mut any = false;
    for option in list.split(',').map(str::trim).filter(|o| !o.is_empty()) {
        any = true;
        if let Ok(q) = option.parse::<Qop>()
            && !known.contains(&q)
        {
            known.push(q);
        }
    }
    if any && known.is_empty() {
        return Err(AuthError::UnsupportedQop(clip(list)));
    }
    Ok(known)
}

/// Chooses the challenge to answer among several header values: the strongest hash
/// (SHA-512-256, then SHA-256, then MD5), the first such one on a tie. Values that do not parse or
/// use an unsupported algorithm are skipped; `None` when nothing is usable.
///
/// SIP proxies on a forked request may each add a challenge for their own realm
/// (RFC 3261 section 22.3); this picks one, so call it per realm when answering several.
pub fn best_challenge<'a>(values: impl IntoIterator<Item = &'a str>) -> Option<Challenge> {
    let mut best: Option<Challenge> = None;
    for ch in values.into_iter().filter_map(|v| Challenge::parse(v).ok()) {
        if best
            .as_ref()
            .is_none_or(|b| ch.algorithm.strength() > b.algorithm.strength())
        {
            best = Some(ch);
        }
    }
    best
}

/// A fresh client nonce: 128 random bits as 32 lowercase hex digits.
pub fn new_cnonce() -> String {
    let bytes: [u8; 16] = rand::random();
    hex(&bytes)
}

/// The client's answer to `ch`: the full `Authorization` / `Proxy-Authorization` value, e.g.
/// `Digest username="..", realm="..", nonce="..", uri="..", response="..", algorithm=MD5,
/// cnonce="..", qop=auth, nc=00000001, opaque=".."`.
///
/// `uri` is the Request-URI as sent, `body` the message body (hashed only for `auth-int`), `nc` the
/// nonce count for this nonce (1 on first use, see [`NonceCounter`]) and `cnonce` a random token
/// (see [`new_cnonce`]). With a `qop` offered it answers `auth`, or `auth-int` when only that is
/// offered; without one it gives the RFC 2069 compatible response and sends neither `qop`, `nc`
/// nor `cnonce` (except `cnonce` for a `-sess` algorithm, whose A1 needs it).
///
/// Quoted values are escaped; control characters, which a SIP quoted string cannot carry, are left
/// out of the header (a username or URI containing them cannot authenticate anyway).
#[allow(clippy::too_many_arguments)] // the signature mirrors the digest inputs one to one
pub fn authorization(
    ch: &Challenge,
    user: &str,
    password: &str,
    method: &str,
    uri: &str,
    body: &[u8],
    nc: u32,
    cnonce: &str,
) -> String {
    let qop = ch.chosen_qop();
    let send_cnonce = qop.is_some() || ch.algorithm.is_sess();
    let response = compute_response(&ResponseInput {
        algorithm: ch.algorithm,
        username: user,
        realm: &ch.realm,
        password,
        nonce: &ch.nonce,
        method,
        uri,
        body,
        qop,
        nc,
        cnonce: if send_cnonce { cnonce } else { "" },
    });

    let mut out = String::from("Digest ");
    push_quoted(&mut out, "username", user);
    out.push_str(", ");
    push_quoted(&mut out, "realm", &ch.realm);
    out.push_str(", ");
    push_quoted(&mut out, "nonce", &ch.nonce);
    out.push_str(", ");
    push_quoted(&mut out, "uri", uri);
    out.push_str(", ");
    push_quoted(&mut out, "response", &response);
    out.push_str(", algorithm=");
    out.push_str(ch.algorithm.as_str());
    if send_cnonce {
        out.push_str(", ");
        push_quoted(&mut out, "cnonce", cnonce);
    }
    if let Some(q) = qop {
        // Writing to a String cannot fail.
        let _ = write!(out, ", qop={q}, nc={nc:08x}");
    }
    if let Some(opaque) = &ch.opaque {
        out.push_str(", ");
        push_quoted(&mut out, "opaque", opaque);
    }
    out
}

/// A parsed `Authorization` / `Proxy-Authorization` value, as a server (the in-process test
/// registrar) receives it, or to check this module's own output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub realm: String,
    pub nonce: String,
    pub uri: String,
    /// The response digest, hex as sent.
    pub response: String,
    /// `MD5` when none is given.
    pub algorithm: Algorithm,
    pub cnonce: Option<String>,
    /// Nonce count, read as hexadecimal (`00000010` is 16).
    pub nc: Option<u32>,
    pub qop: Option<Qop>,
    pub opaque: Option<String>,
}

impl Credentials {
    /// Parses a header value (same syntax rules as [`Challenge::parse`]). `username`, `realm`,
    /// `nonce`, `uri` and `response` are required; with a `qop`, so are `cnonce` and `nc`
    /// (RFC 7616 section 3.4), and a `-sess` algorithm needs `cnonce`.
    pub fn parse(header_value: &str) -> Result<Credentials, AuthError> {
        let params = Params::parse_digest(header_value)?;
        let algorithm = match params.get("algorithm")? {
            Some(a) => a.parse()?,
            None => Algorithm::Md5,
        };
        let qop = params.get("qop")?.map(str::parse::<Qop>).transpose()?;
        let nc = params.get("nc")?.map(parse_nc).transpose()?;
        let cnonce = params.get("cnonce")?.map(str::to_owned);
        if qop.is_some() && cnonce.is_none() || algorithm.is_sess() && cnonce.is_none() {
            return Err(AuthError::MissingParam("cnonce"));
        }
        if qop.is_some() && nc.is_none() {
            return Err(AuthError::MissingParam("nc"));
        }
        Ok(Credentials {
            username: params.required("username")?.to_owned(),
            realm: params.required("realm")?.to_owned(),
            nonce: params.required("nonce")?.to_owned(),
            uri: params.required("uri")?.to_owned(),
            response: params.required("response")?.to_owned(),
            algorithm,
            cnonce,
            nc,
            qop,
            opaque: params.get("opaque")?.map(str::to_owned),
        })
    }

    /// Whether `response` is right for this password, request method and body (the body counts only
    /// with `qop=auth-int`). Compares in constant time.
    ///
    /// This checks the digest only: whether the nonce is one the server issued and still fresh, the
    /// realm its own, the `uri` the Request-URI, and `nc` higher than last time, is for the caller.
    /// The nonce count is hashed as 8 lowercase hex digits, as RFC 7616 writes it.
    pub fn verify(&self, password: &str, method: &str, body: &[u8]) -> bool {
        if self.qop.is_some() && (self.cnonce.is_none() || self.nc.is_none())
            || self.algorithm.is_sess() && self.cnonce.is_none()
        {
            return false;
        }
        let expected = compute_response(&ResponseInput {
            algorithm: self.algorithm,
            username: &self.username,
            realm: &self.realm,
            password,
            nonce: &self.nonce,
            method,
            uri: &self.uri,
            body,
            qop: self.qop,
            nc: self.nc.unwrap_or(0),
            cnonce: self.cnonce.as_deref().unwrap_or(""),
        });
        constant_time_eq_ignore_case(expected.as_bytes(), self.response.as_bytes())
    }
}

/// Reads `nc`: 1 to 8 hexadecimal digits.
fn parse_nc(s: &str) -> Result<u32, AuthError> {
    let t = s.trim();
    if t.is_empty() || t.len() > 8 || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(AuthError::InvalidNonceCount(clip(s)));
    }
    u32::from_str_radix(t, 16).map_err(|_| AuthError::InvalidNonceCount(clip(s)))
}

/// A challenge value as a server sends it, e.g.
/// `Digest realm="127.0.0.1", nonce="abc", algorithm=SHA-256, qop="auth"` (without `qop` when
/// `qop` is false). For the in-test registrar.
pub fn challenge_header(realm: &str, nonce: &str, algorithm: Algorithm, qop: bool) -> String {
    let mut out = String::from("Digest ");
    push_quoted(&mut out, "realm", realm);
    out.push_str(", ");
    push_quoted(&mut out, "nonce", nonce);
    out.push_str(", algorithm=");
    out.push_str(algorithm.as_str());
    if qop {
        out.push_str(", qop=\"auth\"");
    }
    out
}

/// The nonce count a client keeps (RFC 7616 section 3.4): 1 on the first use of a nonce, one more
/// on each reuse, back to 1 when the server hands out a new nonce. Keep one per challenge being
/// answered (e.g. one for the registrar's 401, one for the proxy's 407).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NonceCounter {
    nonce: String,
    count: u32,
}

impl NonceCounter {
    /// A counter that has not seen any nonce yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The `nc` to send with the next request using `nonce`. Stays at `u32::MAX` rather than wrap.
    pub fn next_nc(&mut self, nonce: &str) -> u32 {
        if self.count == 0 || self.nonce != nonce {
            nonce.clone_into(&mut self.nonce);
            self.count = 1;
        } else {
            self.count = self.count.saturating_add(1);
        }
        self.count
    }
}

/// Everything the response digest depends on (RFC 7616 section 3.4.1).
struct ResponseInput<'a> {
    algorithm: Algorithm,
    username: &'a str,
    realm: &'a str,
    password: &'a str,
    nonce: &'a str,
    method: &'a str,
    uri: &'a str,
    body: &'a [u8],
    qop: Option<Qop>,
    nc: u32,
    cnonce: &'a str,
}

/// `KD(H(A1), nonce:nc:cnonce:qop:H(A2))`, or `KD(H(A1), nonce:H(A2))` without qop (RFC 2069).
fn compute_response(i: &ResponseInput<'_>) -> String {
    let h = |s: &str| i.algorithm.hex_hash(s.as_bytes());
    let mut ha1 = h(&format!("{}:{}:{}", i.username, i.realm, i.password));
    if i.algorithm.is_sess() {
        ha1 = h(&format!("{ha1}:{}:{}", i.nonce, i.cnonce));
    }
    let ha2 = match i.qop {
        Some(Qop::AuthInt) => h(&format!(
            "{}:{}:{}",
            i.method,
            i.uri,
            i.algorithm.hex_hash(i.body)
        )),
        Some(Qop::Auth) | None => h(&format!("{}:{}", i.method, i.uri)),
    };
    match i.qop {
        Some(q) => h(&format!(
            "{ha1}:{}:{:08x}:{}:{q}:{ha2}",
            i.nonce, i.nc, i.cnonce
        )),
        None => h(&format!("{ha1}:{}:{ha2}", i.nonce)),
    }
}

/// The `name=value` parameters of a Digest header value, names lowercased, quoted values unescaped.
struct Params(Vec<(String, String)>);

impl Params {
    /// Checks the scheme is `Digest` and splits the parameters that follow it.
    fn parse_digest(header_value: &str) -> Result<Params, AuthError> {
        let value = header_value.trim();
        let (scheme, rest) = value
            .split_once(|c: char| c.is_whitespace())
            .unwrap_or((value, ""));
        if !scheme.eq_ignore_ascii_case("digest") {
            return Err(AuthError::NotDigest(clip(scheme)));
        }
        Ok(Params(split_params(rest)?))
    }

    /// The value of `name`, if present once; an error if present more than once.
    fn get(&self, name: &'static str) -> Result<Option<&str>, AuthError> {
        let mut found = self.0.iter().filter(|(n, _)| n == name);
        let first = found.next();
        if found.next().is_some() {
            return Err(AuthError::DuplicateParam(name));
        }
        Ok(first.map(|(_, v)| v.as_str()))
    }

    /// The value of `name`, which must be present once.
    fn required(&self, name: &'static str) -> Result<&str, AuthError> {
        self.get(name)?.ok_or(AuthError::MissingParam(name))
    }
}

/// Splits `a=b, c="d, \"e\"" ,f=g` into lowercased names and unescaped values. Empty list
/// elements (`a=b,,c=d`) are skipped, as RFC 7230's `#rule` allows. Values holding control
/// characters other than tab are refused: SIP allows none in a token or quoted string (folded lines
/// are unfolded before this), and they could not be echoed back in our own header.
fn split_params(mut rest: &str) -> Result<Vec<(String, String)>, AuthError> {
    let mut out = Vec::new();
    loop {
        rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == ',');
        if rest.is_empty() {
            return Ok(out);
        }
        let name_end = rest
            .find(|c: char| c == '=' || c == ',' || c == '"' || c.is_whitespace())
            .unwrap_or(rest.len());
        let (name, after) = split_at(rest, name_end)?;
        if name.is_empty() {
            return Err(AuthError::Malformed("parameter without a name".to_owned()));
        }
        let Some(after) = after.trim_start().strip_prefix('=') else {
            return Err(AuthError::Malformed(format!(
                "parameter `{}` has no `=`",
                clip(name)
            )));
        };
        let after = after.trim_start();
        let (value, after) = match after.strip_prefix('"') {
            Some(quoted) => unquote(quoted)?,
            None => {
                let end = after
                    .find(|c: char| c == ',' || c == '"' || c.is_whitespace())
                    .unwrap_or(after.len());
                let (token, after) = split_at(after, end)?;
                (token.to_owned(), after)
            }
        };
        if value.chars().any(|c| c.is_control() && c != '\t') {
            return Err(AuthError::Malformed(format!(
                "control character in parameter `{}`",
                clip(name)
            )));
        }
        let after = after.trim_start();
        rest = match after.strip_prefix(',') {
            Some(r) => r,
            None if after.is_empty() => after,
            None => {
                return Err(AuthError::Malformed(format!(
                    "unexpected text after parameter `{}`",
                    clip(name)
                )));
            }
        };
        out.push((name.to_ascii_lowercase(), value));
    }
}

/// Reads a quoted string whose opening quote is already consumed: returns the unescaped content
/// and what follows the closing quote.
fn unquote(s: &str) -> Result<(String, &str), AuthError> {
    let mut value = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some((_, escaped)) => value.push(escaped),
                None => break,
            },
            '"' => return Ok((value, s.get(i + 1..).unwrap_or(""))),
            _ => value.push(c),
        }
    }
    Err(AuthError::Malformed(
        "unterminated quoted string".to_owned(),
    ))
}

/// `str::split_at` without the panic (the index always comes from `find`, so this never fails).
fn split_at(s: &str, mid: usize) -> Result<(&str, &str), AuthError> {
    s.split_at_checked(mid)
        .ok_or_else(|| AuthError::Malformed("split inside a character".to_owned()))
}

/// Appends `name="value"`, escaping `"` and `\` and leaving out control characters (other than tab),
/// which could otherwise end the header line.
fn push_quoted(out: &mut String, name: &str, value: &str) {
    out.push_str(name);
    out.push_str("=\"");
    for c in value.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\t' => out.push(c),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Lowercase hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        // Writing to a String cannot fail.
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Compares two hex strings ignoring ASCII case, in time independent of where they differ.
fn constant_time_eq_ignore_case(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| {
        acc | (x.to_ascii_lowercase() ^ y.to_ascii_lowercase())
    }) == 0
}

/// At most 64 bytes of untrusted text for an error message, cut on a character boundary.
fn clip(s: &str) -> String {
    const MAX: usize = 64;
    if s.len() <= MAX {
        return s.to_owned();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = s.get(..end).unwrap_or("").to_owned();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 2617 section 3.5 (HTTP, but the digest computation is the same for SIP).
    const RFC2617_CHALLENGE: &str = "Digest\r\n realm=\"testrealm@host.com\",\r\n qop=\"auth,auth-int\",\r\n nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\",\r\n opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"";

    // RFC 7616 section 3.9.1, the SHA-256 challenge of the pair.
    const RFC7616_SHA256_CHALLENGE: &str = "Digest realm=\"http-auth@example.org\", qop=\"auth, auth-int\", algorithm=SHA-256, nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\"";
    const RFC7616_MD5_CHALLENGE: &str = "Digest realm=\"http-auth@example.org\", qop=\"auth, auth-int\", algorithm=MD5, nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\"";
    const RFC7616_CNONCE: &str = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";

    // Kamailio 5.6.3 401 to a REGISTER, from ../shared/sip-corpus/real.jsonl.
    const KAMAILIO_CHALLENGE: &str =
        "Digest realm=\"127.0.0.1\", nonce=\"awW5MmsFuAZJxMaZcYrJ/VDbZTDbKXSb\"";
    // baresip 1.0.0's answer to it (user alice, password alicepw in ../shared/peers).
    const BARESIP_REGISTER_AUTH: &str = "Digest username=\"alice\", realm=\"127.0.0.1\", nonce=\"awW5MmsFuAZJxMaZcYrJ/VDbZTDbKXSb\", uri=\"sip:127.0.0.1;transport=udp\", response=\"0e72c2f5b9968a720478b258d964c0e4\"";
    // baresip's ACK to a GRUU, with the `gr=urn:uuid:…` that rsip truncates inside `uri=`.
    const BARESIP_ACK_PROXY_AUTH: &str = "Digest username=\"alice\", realm=\"127.0.0.1\", nonce=\"awW5MmsFuAZJxMaZcYrJ/VDbZTDbKXSb\", uri=\"sip:bob@127.0.0.1;gr=urn:uuid:4867c68d-5ad3-0059-a95f-053418680d0b\", response=\"d96c7e1bdd32c173404ae98db80f05e3\"";
    // Twinkle 1.10.2 writes no spaces after the commas (user carol, password carolpw).
    const TWINKLE_REGISTER_AUTH: &str = "Digest username=\"carol\",realm=\"127.0.0.1\",nonce=\"awXBPWsFwBEo++PHIQSX8cx89Kjli7or\",uri=\"sip:127.0.0.1\",response=\"44b4b0d5d0bf9fef5812021275c526bc\",algorithm=MD5";

    fn response_of(header: &str) -> String {
        Credentials::parse(header)
            .map(|c| c.response)
            .unwrap_or_default()
    }

    #[test]
    fn rfc2617_section_3_5_mufasa_example_gives_the_published_response() {
        let ch = Challenge::parse(RFC2617_CHALLENGE).unwrap();
        assert_eq!(ch.realm, "testrealm@host.com");
        assert_eq!(ch.qop, vec![Qop::Auth, Qop::AuthInt]);
        assert_eq!(ch.algorithm, Algorithm::Md5);
        let header = authorization(
            &ch,
            "Mufasa",
            "Circle Of Life",
            "GET",
            "/dir/index.html",
            b"",
            1,
            "0a4f113b",
        );
        assert_eq!(
            header,
            "Digest username=\"Mufasa\", realm=\"testrealm@host.com\", \
             nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", uri=\"/dir/index.html\", \
             response=\"6629fae49393a05397450978507c4ef1\", algorithm=MD5, cnonce=\"0a4f113b\", \
             qop=auth, nc=00000001, opaque=\"5ccc069c403ebaf9f0171e9517f40e41\""
        );
    }

    #[test]
    fn rfc7616_section_3_9_1_sha256_and_md5_examples_give_the_published_responses() {
        let sha = Challenge::parse(RFC7616_SHA256_CHALLENGE).unwrap();
        assert_eq!(sha.algorithm, Algorithm::Sha256);
        assert_eq!(sha.qop, vec![Qop::Auth, Qop::AuthInt]);
        let header = authorization(
            &sha,
            "Mufasa",
            "Circle of Life",
            "GET",
            "/dir/index.html",
            b"",
            1,
            RFC7616_CNONCE,
        );
        assert_eq!(
            response_of(&header),
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
        assert!(header.contains(", algorithm=SHA-256, "));
        assert!(header.contains("opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\""));

        let md5 = Challenge::parse(RFC7616_MD5_CHALLENGE).unwrap();
        let header = authorization(
            &md5,
            "Mufasa",
            "Circle of Life",
            "GET",
            "/dir/index.html",
            b"",
            1,
            RFC7616_CNONCE,
        );
        assert_eq!(response_of(&header), "8ca523f5e9506fed4657c9700eebdbec");
    }

    #[test]
    fn sha512_256_matches_an_independent_computation() {
        // Expected value computed with Python's hashlib ("sha512_256") from the RFC 7616 section
        // 3.9.2 inputs, without username hashing.
        let ch = Challenge {
            realm: "api@example.org".to_owned(),
            nonce: "5TsQWLVdgBdmrQ0XsxbDODV+57QdFR34I9HAbC/RVvkK".to_owned(),
            opaque: None,
            algorithm: Algorithm::Sha512_256,
            qop: vec![Qop::Auth],
            stale: false,
            domain: None,
        };
        let header = authorization(
            &ch,
            "J\u{e4}s\u{f8}n Doe",
            "Secret, or not?",
            "GET",
            "/doe.json",
            b"",
            1,
            "NTg6RKcb9boFIAS3KrFK9BGeh+iDa/sm6jUMp2wds69v",
        );
        assert_eq!(
            response_of(&header),
            "3798d4131c277846293534c3edc11bd8a5e4cdcbff78b05db9d95eeb1cec68a5"
        );
        assert!(header.contains("username=\"J\u{e4}s\u{f8}n Doe\""));
    }

    #[test]
    fn kamailio_challenge_from_real_traffic_parses_with_md5_and_no_qop() {
        let ch = Challenge::parse(KAMAILIO_CHALLENGE).unwrap();
        assert_eq!(
            ch,
            Challenge {
                realm: "127.0.0.1".to_owned(),
                nonce: "awW5MmsFuAZJxMaZcYrJ/VDbZTDbKXSb".to_owned(),
                opaque: None,
                algorithm: Algorithm::Md5,
                qop: vec![],
                stale: false,
                domain: None,
            }
        );
        assert_eq!(ch.chosen_qop(), None);
    }

    #[test]
    fn our_answer_to_kamailio_matches_what_baresip_sent() {
        let ch = Challenge::parse(KAMAILIO_CHALLENGE).unwrap();
        let header = authorization(
            &ch,
            "alice",
            "alicepw",
            "REGISTER",
            "sip:127.0.0.1;transport=udp",
            b"",
            1,
            "unused-without-qop",
        );
        assert_eq!(
            header,
            "Digest username=\"alice\", realm=\"127.0.0.1\", \
             nonce=\"awW5MmsFuAZJxMaZcYrJ/VDbZTDbKXSb\", uri=\"sip:127.0.0.1;transport=udp\", \
             response=\"0e72c2f5b9968a720478b258d964c0e4\", algorithm=MD5"
        );
    }

    #[test]
    fn real_baresip_and_twinkle_credentials_verify_with_their_passwords() {
        let register = Credentials::parse(BARESIP_REGISTER_AUTH).unwrap();
        assert_eq!(register.uri, "sip:127.0.0.1;transport=udp");
        assert_eq!(register.qop, None);
        assert!(register.verify("alicepw", "REGISTER", b""));
        assert!(!register.verify("alicepw", "INVITE", b""));
        assert!(!register.verify("wrong", "REGISTER", b""));

        let ack = Credentials::parse(BARESIP_ACK_PROXY_AUTH).unwrap();
        assert_eq!(
            ack.uri,
            "sip:bob@127.0.0.1;gr=urn:uuid:4867c68d-5ad3-0059-a95f-053418680d0b"
        );
        assert!(ack.verify("alicepw", "ACK", b""));

        let twinkle = Credentials::parse(TWINKLE_REGISTER_AUTH).unwrap();
        assert_eq!(twinkle.username, "carol");
        assert_eq!(twinkle.algorithm, Algorithm::Md5);
        assert!(twinkle.verify("carolpw", "REGISTER", b""));
    }

    #[test]
    fn qop_auth_and_auth_int_offered_answers_auth() {
        let ch = Challenge::parse(
            r#"Digest realm="r", nonce="n", qop="auth,auth-int", algorithm=SHA-256"#,
        )
        .unwrap();
        assert_eq!(ch.qop, vec![Qop::Auth, Qop::AuthInt]);
        assert_eq!(ch.chosen_qop(), Some(Qop::Auth));
        let header = authorization(&ch, "u", "p", "INVITE", "sip:b@h", b"body", 1, "c");
        assert!(header.contains(", qop=auth, nc=00000001"));
        let cred = Credentials::parse(&header).unwrap();
        assert_eq!(cred.qop, Some(Qop::Auth));
        // `auth` does not cover the body.
        assert!(cred.verify("p", "INVITE", b"another body"));
    }

    #[test]
    fn auth_int_alone_covers_the_body() {
        let ch = Challenge::parse(r#"Digest realm="r", nonce="n", qop="auth-int""#).unwrap();
        assert_eq!(ch.chosen_qop(), Some(Qop::AuthInt));
        let body = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n";
        let header = authorization(&ch, "u", "p", "INVITE", "sip:b@h", body, 3, "c");
        assert!(header.contains(", qop=auth-int, nc=00000003"));
        let cred = Credentials::parse(&header).unwrap();
        assert!(cred.verify("p", "INVITE", body));
        assert!(!cred.verify("p", "INVITE", b"v=0\r\n"));
    }

    #[test]
    fn algorithm_names_parse_case_insensitively_and_tolerate_sha256_without_hyphen() {
        for (text, alg) in [
            ("MD5", Algorithm::Md5),
            ("md5", Algorithm::Md5),
            ("MD5-sess", Algorithm::Md5Sess),
            ("MD5-SESS", Algorithm::Md5Sess),
            ("SHA-256", Algorithm::Sha256),
            ("SHA256", Algorithm::Sha256),
            ("sha-256-sess", Algorithm::Sha256Sess),
            ("SHA-512-256", Algorithm::Sha512_256),
            ("SHA-512-256-sess", Algorithm::Sha512_256Sess),
        ] {
            assert_eq!(text.parse::<Algorithm>(), Ok(alg), "{text}");
        }
        for alg in Algorithm::ALL {
            assert_eq!(alg.as_str().parse::<Algorithm>(), Ok(alg));
        }
        let ch = Challenge::parse(r#"Digest realm="r", nonce="n", algorithm=SHA256"#).unwrap();
        assert_eq!(ch.algorithm, Algorithm::Sha256);
        let ch = Challenge::parse(r#"Digest realm="r", nonce="n", algorithm="SHA-256""#).unwrap();
        assert_eq!(ch.algorithm, Algorithm::Sha256);
    }

    #[test]
    fn unknown_algorithm_or_qop_is_an_error_so_another_challenge_is_picked() {
        assert_eq!(
            Challenge::parse(r#"Digest realm="r", nonce="n", algorithm=SHA-1"#),
            Err(AuthError::UnsupportedAlgorithm("SHA-1".to_owned()))
        );
        assert!(matches!(
            Challenge::parse(r#"Digest realm="r", nonce="n", algorithm=AKAv1-MD5"#),
            Err(AuthError::UnsupportedAlgorithm(_))
        ));
        assert!(matches!(
            Challenge::parse(r#"Digest realm="r", nonce="n", qop="auth-conf""#),
            Err(AuthError::UnsupportedQop(_))
        ));
        // An unknown option beside a known one is skipped.
        let ch = Challenge::parse(r#"Digest realm="r", nonce="n", qop="auth-conf, auth""#).unwrap();
        assert_eq!(ch.qop, vec![Qop::Auth]);
    }

    #[test]
    fn best_challenge_prefers_sha256_over_md5_and_skips_unusable_values() {
        let md5 = r#"Digest realm="r", nonce="md5", algorithm=MD5, qop="auth""#;
        let sha = r#"Digest realm="r", nonce="sha", algorithm=SHA-256, qop="auth""#;
        let odd = r#"Digest realm="r", nonce="odd", algorithm=SHA-1"#;
        let basic = r#"Basic realm="r""#;
        assert_eq!(
            best_challenge([md5, sha]).map(|c| c.nonce),
            Some("sha".to_owned())
        );
        assert_eq!(
            best_challenge([odd, basic, sha, md5]).map(|c| c.nonce),
            Some("sha".to_owned())
        );
        assert_eq!(
            best_challenge([basic, "garbage", md5]).map(|c| c.nonce),
            Some("md5".to_owned())
        );
        assert_eq!(best_challenge([odd, basic]), None);
        assert_eq!(best_challenge(std::iter::empty()), None);
        // Equal strength: the first one wins.
        let md5b = r#"Digest realm="r", nonce="md5b""#;
        assert_eq!(
            best_challenge([md5, md5b]).map(|c| c.nonce),
            Some("md5".to_owned())
        );
    }

    #[test]
    fn authorization_round_trips_through_parse_and_verify_for_every_algorithm_and_qop() {
        for alg in Algorithm::ALL {
            for qop in ["", r#", qop="auth""#, r#", qop="auth-int""#] {
                let value = format!(
                    r#"Digest realm="sip.example", nonce="N0nce", opaque="op", algorithm={alg}{qop}"#
                );
                let ch = Challenge::parse(&value).unwrap();
                let header = authorization(
                    &ch,
                    "bob",
                    "s3cret",
                    "REGISTER",
                    "sip:sip.example",
                    b"body",
                    7,
                    "cn",
                );
                let cred = Credentials::parse(&header).unwrap();
                assert_eq!(cred.algorithm, alg, "{header}");
                assert_eq!(cred.qop, ch.chosen_qop(), "{header}");
                assert_eq!(cred.opaque.as_deref(), Some("op"));
                assert_eq!(cred.nc, ch.chosen_qop().map(|_| 7));
                assert_eq!(
                    cred.cnonce.is_some(),
                    ch.chosen_qop().is_some() || alg.is_sess(),
                    "{header}"
                );
                assert!(cred.verify("s3cret", "REGISTER", b"body"), "{header}");
                assert!(!cred.verify("s3creT", "REGISTER", b"body"), "{header}");
                assert!(!cred.verify("s3cret", "INVITE", b"body"), "{header}");
            }
        }
    }

    #[test]
    fn challenge_header_output_parses_back() {
        let value = challenge_header("127.0.0.1", "abc", Algorithm::Sha256, true);
        assert_eq!(
            value,
            r#"Digest realm="127.0.0.1", nonce="abc", algorithm=SHA-256, qop="auth""#
        );
        let ch = Challenge::parse(&value).unwrap();
        assert_eq!(ch.algorithm, Algorithm::Sha256);
        assert_eq!(ch.qop, vec![Qop::Auth]);
        let ch = Challenge::parse(&challenge_header("r\"x", "n", Algorithm::Md5, false)).unwrap();
        assert_eq!(ch.realm, "r\"x");
        assert!(ch.qop.is_empty());
    }

    #[test]
    fn stale_true_is_read_in_any_case() {
        for (param, stale) in [
            ("stale=true", true),
            ("stale=TRUE", true),
            ("stale=\"true\"", true),
            ("stale=false", false),
            ("stale=FALSE", false),
            ("stale=maybe", false),
            ("x=y", false),
        ] {
            let ch =
                Challenge::parse(&format!("Digest realm=\"r\", nonce=\"n\", {param}")).unwrap();
            assert_eq!(ch.stale, stale, "{param}");
        }
    }

    #[test]
    fn scheme_is_case_insensitive_and_other_schemes_are_rejected() {
        assert!(Challenge::parse(r#"digest realm="r", nonce="n""#).is_ok());
        assert!(Challenge::parse(r#"DIGEST realm="r", nonce="n""#).is_ok());
        assert_eq!(
            Challenge::parse(r#"Basic realm="r""#),
            Err(AuthError::NotDigest("Basic".to_owned()))
        );
        assert!(matches!(
            Challenge::parse(r#"Digestrealm="r", nonce="n""#),
            Err(AuthError::NotDigest(_))
        ));
        assert!(matches!(Challenge::parse(""), Err(AuthError::NotDigest(_))));
        assert_eq!(
            Challenge::parse("Digest"),
            Err(AuthError::MissingParam("realm"))
        );
    }

    #[test]
    fn quoted_commas_escapes_odd_whitespace_and_unknown_params_are_handled() {
        let ch = Challenge::parse(
            "  Digest\tfoo=bar ,realm = \"a, \\\"quoted\\\" realm\\\\\" ,, \r\n\t NONCE=\"n,1\",\
             domain=\"sip:a.example sip:b.example\", ext=\"x, y=z\", Opaque=o ,stale = TRUE  ",
        )
        .unwrap();
        assert_eq!(ch.realm, r#"a, "quoted" realm\"#);
        assert_eq!(ch.nonce, "n,1");
        assert_eq!(ch.domain.as_deref(), Some("sip:a.example sip:b.example"));
        assert_eq!(ch.opaque.as_deref(), Some("o"));
        assert!(ch.stale);

        // Our own header escapes them again, and the server side reads back the same values.
        let header = authorization(&ch, "us\"er\\", "pw", "OPTIONS", "sip:x", b"", 1, "c");
        let cred = Credentials::parse(&header).unwrap();
        assert_eq!(cred.username, "us\"er\\");
        assert_eq!(cred.realm, ch.realm);
        assert_eq!(cred.nonce, "n,1");
        assert!(cred.verify("pw", "OPTIONS", b""));
    }

    #[test]
    fn malformed_parameter_lists_are_errors() {
        for value in [
            r#"Digest realm="r", nonce="n"#,
            r#"Digest realm="r" nonce="n""#,
            r#"Digest realm, nonce="n""#,
            r#"Digest ="r", nonce="n""#,
            r#"Digest realm="r"x, nonce="n""#,
            r#"Digest realm="r", nonce="n\"#,
        ] {
            assert!(
                matches!(Challenge::parse(value), Err(AuthError::Malformed(_))),
                "{value}"
            );
        }
    }

    #[test]
    fn control_characters_inside_values_are_refused() {
        for value in [
            "Digest realm=\"r\r\nVia: x\", nonce=\"n\"",
            "Digest realm=\"r\\\n\", nonce=\"n\"",
            "Digest realm=\"r\", nonce=n\u{0}",
        ] {
            assert!(
                matches!(Challenge::parse(value), Err(AuthError::Malformed(_))),
                "{value:?}"
            );
        }
        let ch = Challenge::parse("Digest realm=\"a\tb\", nonce=\"n\"").unwrap();
        assert_eq!(ch.realm, "a\tb");
    }

    #[test]
    fn duplicate_known_parameters_are_rejected_unknown_ones_are_not() {
        assert_eq!(
            Challenge::parse(r#"Digest realm="a", realm="b", nonce="n""#),
            Err(AuthError::DuplicateParam("realm"))
        );
        assert!(Challenge::parse(r#"Digest realm="a", x=1, x=2, nonce="n""#).is_ok());
    }

    #[test]
    fn credentials_read_nc_as_hex_and_require_cnonce_and_nc_with_qop() {
        let base = r#"Digest username="u", realm="r", nonce="n", uri="sip:h", response="00""#;
        let cred =
            Credentials::parse(&format!("{base}, qop=auth, nc=0000001A, cnonce=\"c\"")).unwrap();
        assert_eq!(cred.nc, Some(26));
        let cred = Credentials::parse(&format!("{base}, qop=\"auth\", nc=ffffffff, cnonce=\"c\""))
            .unwrap();
        assert_eq!(cred.nc, Some(u32::MAX));
        assert_eq!(cred.qop, Some(Qop::Auth));
        for bad in ["nc=100000000", "nc=", "nc=12g", "nc=-1", "nc=+1"] {
            assert!(
                matches!(
                    Credentials::parse(&format!("{base}, qop=auth, {bad}, cnonce=\"c\"")),
                    Err(AuthError::InvalidNonceCount(_))
                ),
                "{bad}"
            );
        }
        assert_eq!(
            Credentials::parse(&format!("{base}, qop=auth, nc=00000001")),
            Err(AuthError::MissingParam("cnonce"))
        );
        assert_eq!(
            Credentials::parse(&format!("{base}, qop=auth, cnonce=\"c\"")),
            Err(AuthError::MissingParam("nc"))
        );
        assert_eq!(
            Credentials::parse(&format!("{base}, algorithm=MD5-sess")),
            Err(AuthError::MissingParam("cnonce"))
        );
        assert!(matches!(
            Credentials::parse(&format!("{base}, qop=auth-conf, nc=1, cnonce=\"c\"")),
            Err(AuthError::UnsupportedQop(_))
        ));
        assert_eq!(
            Credentials::parse(r#"Digest username="u", realm="r", nonce="n", uri="sip:h""#),
            Err(AuthError::MissingParam("response"))
        );
    }

    #[test]
    fn nc_is_written_as_eight_lowercase_hex_digits() {
        let ch = Challenge::parse(r#"Digest realm="r", nonce="n", qop="auth""#).unwrap();
        let header = authorization(&ch, "u", "p", "INVITE", "sip:h", b"", 0xab, "c");
        assert!(header.contains(", nc=000000ab"), "{header}");
        let cred = Credentials::parse(&header).unwrap();
        assert_eq!(cred.nc, Some(0xab));
        assert!(cred.verify("p", "INVITE", b""));
        // A replayed response with another nc no longer matches.
        let tampered = Credentials {
            nc: Some(0xac),
            ..cred
        };
        assert!(!tampered.verify("p", "INVITE", b""));
    }

    #[test]
    fn response_comparison_ignores_hex_case() {
        let mut cred = Credentials::parse(BARESIP_REGISTER_AUTH).unwrap();
        cred.response = cred.response.to_ascii_uppercase();
        assert!(cred.verify("alicepw", "REGISTER", b""));
        cred.response.pop();
        assert!(!cred.verify("alicepw", "REGISTER", b""));
    }

    #[test]
    fn hand_built_credentials_missing_cnonce_do_not_verify() {
        let mut cred = Credentials::parse(BARESIP_REGISTER_AUTH).unwrap();
        cred.qop = Some(Qop::Auth);
        assert!(!cred.verify("alicepw", "REGISTER", b""));
        cred.qop = None;
        cred.algorithm = Algorithm::Md5Sess;
        assert!(!cred.verify("alicepw", "REGISTER", b""));
    }

    #[test]
    fn control_characters_cannot_break_the_header_line() {
        let ch = Challenge::parse(KAMAILIO_CHALLENGE).unwrap();
        let header = authorization(
            &ch,
            "eve\r\nVia: injected",
            "pw",
            "REGISTER",
            "sip:127.0.0.1\n",
            b"",
            1,
            "c\0",
        );
        assert!(!header.contains(['\r', '\n', '\0']), "{header:?}");
        assert!(header.contains("username=\"eveVia: injected\""));
    }

    #[test]
    fn nonce_counter_counts_per_nonce_and_restarts_on_a_new_one() {
        let mut counter = NonceCounter::new();
        assert_eq!(counter.next_nc("a"), 1);
        assert_eq!(counter.next_nc("a"), 2);
        assert_eq!(counter.next_nc("a"), 3);
        assert_eq!(counter.next_nc("b"), 1);
        assert_eq!(counter.next_nc("b"), 2);
        assert_eq!(counter.next_nc("a"), 1);
        let mut empty = NonceCounter::default();
        assert_eq!(empty.next_nc(""), 1);
        assert_eq!(empty.next_nc(""), 2);
    }

    #[test]
    fn new_cnonce_is_32_hex_digits_and_differs_each_time() {
        let a = new_cnonce();
        let b = new_cnonce();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn long_garbage_is_clipped_in_error_messages() {
        let scheme = "é".repeat(100);
        let Err(AuthError::NotDigest(shown)) = Challenge::parse(&scheme) else {
            panic!("expected NotDigest");
        };
        assert!(shown.len() <= 64 + '…'.len_utf8());
        assert!(shown.ends_with('…'));
    }

    /// Feeds every parse path and, where a value parses, the computations that follow.
    fn exercise(value: &str) {
        if let Ok(ch) = Challenge::parse(value) {
            let header = authorization(&ch, "u", "p", "INVITE", "sip:h", b"b", 1, "c");
            let cred = Credentials::parse(&header).unwrap();
            assert!(cred.verify("p", "INVITE", b"b"), "{value:?} -> {header}");
        }
        if let Ok(cred) = Credentials::parse(value) {
            let _ = cred.verify("p", "INVITE", b"b");
        }
        let _ = best_challenge([value, value]);
    }

    #[test]
    fn garbage_inputs_never_panic() {
        let valid = [
            RFC2617_CHALLENGE,
            RFC7616_SHA256_CHALLENGE,
            KAMAILIO_CHALLENGE,
            BARESIP_REGISTER_AUTH,
            TWINKLE_REGISTER_AUTH,
            "Digest realm=\"r\u{e9}alm \\\"\u{1f4de}\\\"\", nonce=\"n\", qop=\"auth,auth-int\", \
             algorithm=SHA-512-256-sess, stale=TRUE, domain=\"sip:x\", username=\"u\", uri=\"sip:h\", \
             response=\"ab\", cnonce=\"c\", nc=00000001, opaque=\"o\"",
        ];
        let inserts = [
            "\"", "\\", ",", "=", " ", "\r\n", "\u{e9}", "Digest ", "qop=", "\0",
        ];
        for value in valid {
            for (i, _) in value.char_indices().chain([(value.len(), ' ')]) {
                let (head, tail) = value.split_at(i);
                exercise(head);
                exercise(tail);
                for insert in inserts {
                    exercise(&format!("{head}{insert}{tail}"));
                }
                // Drop one character.
                let mut rest = tail.chars();
                rest.next();
                exercise(&format!("{head}{}", rest.as_str()));
            }
        }
        for value in [
            "",
            " ",
            "\"",
            "Digest \"",
            "Digest ,,,,",
            "Digest =",
            "Digest a=\"\\",
            "Digest a=\\\"",
            "Digest realm=\"\", nonce=\"\"",
            "Digest realm=, nonce=",
            "\u{1f4de} realm=\"x\"",
            "Digest \u{1f4de}=\u{1f4de}",
        ] {
            exercise(value);
        }
    }
}
