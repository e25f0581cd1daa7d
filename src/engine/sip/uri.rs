//! SIP/SIPS/TEL URIs and name-addr values (`"Bob" <sip:bob@host>;tag=x`).
//!
//! Written here rather than taken from rsip 0.4, which cuts `;gr=urn:uuid:…` to `;gr=urn`, rejects
//! `tel:` and `[::1]` and loses parameters after an IPv6 `received=` (../shared/FACTS.md).
//! Parameters keep their exact text, so a URI read from a message is written back byte for byte.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scheme {
    Sip,
    Sips,
    Tel,
    Other(String),
}

impl Scheme {
    fn as_str(&self) -> &str {
        match self {
            Scheme::Sip => "sip",
            Scheme::Sips => "sips",
            Scheme::Tel => "tel",
            Scheme::Other(s) => s,
        }
    }
}

/// `;name=value` parameters in their order, values exactly as written (quotes kept).
pub type Params = Vec<(String, Option<String>)>;

/// Looks a parameter up by name (case-insensitive); `Some(None)` for a flag like `;lr`.
pub fn param<'a>(params: &'a Params, name: &str) -> Option<Option<&'a str>> {
    params
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_deref())
}

pub fn set_param(params: &mut Params, name: &str, value: Option<String>) {
    match params
        .iter_mut()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
    {
        Some(slot) => slot.1 = value,
        None => params.push((name.to_string(), value)),
    }
}

/// Parses `;a=b;c` (the leading `;` optional), honouring quoted values.
pub fn parse_params(s: &str) -> Params {
    split_top(s, ';')
        .into_iter()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((n, v)) => (n.trim().to_string(), Some(v.trim().to_string())),
            None => (p.to_string(), None),
        })
        .collect()
}

pub fn write_params(f: &mut impl fmt::Write, params: &Params) -> fmt::Result {
    for (n, v) in params {
        match v {
            Some(v) => write!(f, ";{n}={v}")?,
            None => write!(f, ";{n}")?,
        }
    }
    Ok(())
}

/// The characters of `s` that stand outside double-quoted strings (quotes themselves excluded),
/// with their byte index.
fn unquoted(s: &str) -> impl Iterator<Item = (usize, char)> + '_ {
    let (mut quoted, mut escaped) = (false, false);
    s.char_indices().filter(move |&(_, c)| {
        if quoted {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => quoted = false,
                _ => {}
            }
            return false;
        }
        if c == '"' {
            quoted = true;
            return false;
        }
        true
    })
}

/// Splits at `sep` outside double quotes and angle brackets.
pub fn split_top(s: &str, sep: char) -> Vec<&str> {
    let mut out = Vec::new();
    let mut angle = 0u32;
    let mut start = 0;
    for (i, c) in unquoted(s) {
        match c {
            '<' => angle += 1,
            '>' => angle = angle.saturating_sub(1),
            _ if c == sep && angle == 0 => {
                out.push(&s[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

/// Removes surrounding double quotes and backslash escapes.
pub fn unquote(s: &str) -> String {
    let s = s.trim();
    if s.len() >= 2 && s.starts_with('"') && s.ends_with('"') {
        let mut out = String::with_capacity(s.len());
        let mut esc = false;
        for c in s[1..s.len() - 1].chars() {
            if esc {
                out.push(c);
                esc = false;
            } else if c == '\\' {
                esc = true;
            } else {
                out.push(c);
            }
        }
        out
    } else {
        s.to_string()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad URI {uri:?}: {why}")]
pub struct UriError {
    pub uri: String,
    pub why: &'static str,
}

/// A parsed URI. `host` is empty for `tel:`; an IPv6 host is kept without brackets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uri {
    pub scheme: Scheme,
    pub user: Option<String>,
    pub password: Option<String>,
    pub host: String,
    pub port: Option<u16>,
    pub params: Params,
    /// `?header=value&…` after the parameters, without the `?`.
    pub headers: Option<String>,
}

impl Uri {
    pub fn parse(s: &str) -> Result<Uri, UriError> {
        let err = |why| UriError {
            uri: s.to_string(),
            why,
        };
        let s = s.trim();
        let (scheme, rest) = s.split_once(':').ok_or_else(|| err("no scheme"))?;
        if scheme.is_empty()
            || !scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        {
            return Err(err("bad scheme"));
        }
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "sip" => Scheme::Sip,
            "sips" => Scheme::Sips,
            "tel" => Scheme::Tel,
            other => Scheme::Other(other.to_string()),
        };
        let (rest, headers) = match rest.split_once('?') {
            Some((r, h)) => (r, Some(h.to_string())),
            None => (rest, None),
        };
        if scheme == Scheme::Tel {
            let (number, params) = rest.split_once(';').unwrap_or((rest, ""));
            if number.is_empty() {
                return Err(err("empty telephone number"));
            }
            return Ok(Uri {
                scheme,
                user: Some(number.to_string()),
                password: None,
                host: String::new(),
                port: None,
                params: parse_params(params),
                headers,
            });
        }
        let (userinfo, hostpart) = match rest.find('@') {
            Some(i) => (Some(&rest[..i]), &rest[i + 1..]),
            None => (None, rest),
        };
        let (user, password) = match userinfo {
            Some("") => return Err(err("empty user")),
            Some(u) => match u.split_once(':') {
                Some((u, p)) => (Some(u.to_string()), Some(p.to_string())),
                None => (Some(u.to_string()), None),
            },
            None => (None, None),
        };
        let (hostport, params) = hostpart.split_once(';').unwrap_or((hostpart, ""));
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| err("unclosed IPv6 bracket"))?;
            let port = match after {
                "" => None,
                p => Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| err("junk after IPv6 host"))?,
                ),
            };
            (h, port)
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        if host.is_empty() {
            return Err(err("empty host"));
        }
        if host
            .chars()
            .any(|c| !(c.is_ascii_alphanumeric() || "-._:".contains(c)))
        {
            return Err(err("bad character in host"));
        }
        let port = match port {
            Some(p) => Some(p.parse::<u16>().map_err(|_| err("bad port"))?),
            None => None,
        };
        Ok(Uri {
            scheme,
            user,
            password,
            host: host.to_string(),
            port,
            params: parse_params(params),
            headers,
        })
    }

    /// A `sip:` URI for a user at a host and port.
    pub fn sip(user: Option<&str>, host: &str, port: Option<u16>) -> Uri {
        Uri {
            scheme: Scheme::Sip,
            user: user.map(str::to_string),
            password: None,
            host: host.to_string(),
            port,
            params: Vec::new(),
            headers: None,
        }
    }

    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        param(&self.params, name)
    }

    /// `host` or `[v6]`, with `:port` when there is one.
    pub fn host_port(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        match self.port {
            Some(p) => format!("{host}:{p}"),
            None => host,
        }
    }

    /// The address of record: scheme, user and host without port, parameters or headers.
    pub fn aor(&self) -> String {
        let mut u = Uri::sip(self.user.as_deref(), &self.host, None);
        u.scheme = self.scheme.clone();
        u.to_string()
    }
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.scheme.as_str())?;
        if self.scheme == Scheme::Tel {
            write!(f, "{}", self.user.as_deref().unwrap_or(""))?;
        } else {
            if let Some(u) = &self.user {
                f.write_str(u)?;
                if let Some(p) = &self.password {
                    write!(f, ":{p}")?;
                }
                f.write_str("@")?;
            }
            f.write_str(&self.host_port())?;
        }
        write_params(f, &self.params)?;
        if let Some(h) = &self.headers {
            write!(f, "?{h}")?;
        }
        Ok(())
    }
}

/// `display-name <uri>;params` or `uri;params` (From, To, Contact, Route, Record-Route).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    /// Unquoted display name, if any.
    pub display: Option<String>,
    pub uri: Uri,
    /// Header parameters (after `>`, or after the URI when there are no brackets).
    pub params: Params,
}

impl NameAddr {
    pub fn new(uri: Uri) -> NameAddr {
        NameAddr {
            display: None,
            uri,
            params: Vec::new(),
        }
    }

    pub fn parse(s: &str) -> Result<NameAddr, UriError> {
        let s = s.trim();
        let lt = unquoted(s).find(|&(_, c)| c == '<').map(|(i, _)| i);
        match lt {
            Some(i) => {
                let display = unquote(&s[..i]);
                let inner = &s[i + 1..];
                let gt = inner.find('>').ok_or_else(|| UriError {
                    uri: s.to_string(),
                    why: "missing '>'",
                })?;
                Ok(NameAddr {
                    display: (!display.is_empty()).then_some(display),
                    uri: Uri::parse(&inner[..gt])?,
                    params: parse_params(&inner[gt + 1..]),
                })
            }
            None => {
                // addr-spec: parameters after the URI belong to the header (RFC 3261 20.10).
                let (uri, params) = s.split_once(';').unwrap_or((s, ""));
                Ok(NameAddr {
                    display: None,
                    uri: Uri::parse(uri)?,
                    params: parse_params(params),
                })
            }
        }
    }

    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        param(&self.params, name)
    }

    pub fn tag(&self) -> Option<&str> {
        self.param("tag").flatten()
    }

    pub fn with_tag(mut self, tag: &str) -> NameAddr {
        set_param(&mut self.params, "tag", Some(tag.to_string()));
        self
    }

    /// `Display Name <sip:…>` for people (no parameters).
    pub fn pretty(&self) -> String {
        match &self.display {
            Some(d) => format!("{d} <{}>", self.uri),
            None => self.uri.to_string(),
        }
    }
}

impl fmt::Display for NameAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(d) = &self.display {
            write!(f, "\"{}\" ", d.replace('\\', "\\\\").replace('"', "\\\""))?;
        }
        write!(f, "<{}>", self.uri)?;
        write_params(f, &self.params)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gruu_parameter_with_colons_survives() {
        let u =
            Uri::parse("sip:bob@127.0.0.1:5063;gr=urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6")
                .unwrap();
        assert_eq!(u.user.as_deref(), Some("bob"));
        assert_eq!(u.port, Some(5063));
        assert_eq!(
            u.param("gr"),
            Some(Some("urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6"))
        );
        assert_eq!(
            u.to_string(),
            "sip:bob@127.0.0.1:5063;gr=urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6"
        );
    }

    #[test]
    fn ipv6_and_tel_uris_parse() {
        let u = Uri::parse("sip:[::1]:5060;transport=tcp").unwrap();
        assert_eq!(u.host, "::1");
        assert_eq!(u.port, Some(5060));
        assert_eq!(u.to_string(), "sip:[::1]:5060;transport=tcp");
        let t = Uri::parse("tel:+15551234;phone-context=example.com").unwrap();
        assert_eq!(t.scheme, Scheme::Tel);
        assert_eq!(t.user.as_deref(), Some("+15551234"));
    }

    #[test]
    fn contact_with_quoted_instance_and_gruu() {
        let n = NameAddr::parse(
            "<sip:alice@127.0.0.1:5061;gr=urn:uuid:1234-ab>;+sip.instance=\"<urn:uuid:1234-ab>\";reg-id=1;expires=600",
        )
        .unwrap();
        assert_eq!(n.uri.param("gr"), Some(Some("urn:uuid:1234-ab")));
        assert_eq!(
            n.param("+sip.instance"),
            Some(Some("\"<urn:uuid:1234-ab>\""))
        );
        assert_eq!(n.param("expires"), Some(Some("600")));
    }

    #[test]
    fn display_names_quoted_and_bare() {
        let n = NameAddr::parse("\"Bob \\\"B\\\" <x>\" <sip:bob@h>;tag=1").unwrap();
        assert_eq!(n.display.as_deref(), Some("Bob \"B\" <x>"));
        assert_eq!(n.tag(), Some("1"));
        let n = NameAddr::parse("Alice <sip:alice@h>").unwrap();
        assert_eq!(n.display.as_deref(), Some("Alice"));
        let n = NameAddr::parse("sip:carol@h;tag=abc").unwrap();
        assert_eq!(n.tag(), Some("abc"));
        assert!(n.uri.params.is_empty());
    }

    #[test]
    fn bad_uris_are_errors() {
        for bad in [
            "",
            "nocolon",
            "sip:",
            "sip:@host",
            "sip:bob@",
            "sip:h:99999",
            "sip:[::1",
        ] {
            assert!(Uri::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn split_respects_quotes_and_brackets() {
        assert_eq!(
            split_top("<sip:a;x=1,2>;q=1, \"a,b\" <sip:b>", ','),
            vec!["<sip:a;x=1,2>;q=1", " \"a,b\" <sip:b>"]
        );
    }
}
