//! What a `sip:`/`sips:`/`tel:` link hands us (a command-line argument from the desktop's scheme
//! handler, or a line from a second instance) turned into a target the dialler accepts.
//!
//! The input is untrusted: any web page can make a browser open `sip:…` or `tel:…`. So only the
//! three schemes (and the `callto:` and `scheme://` spellings browsers and web pages produce) are
//! accepted, URI headers (`?Subject=…&Call-Info=…`, which would become INVITE headers) are dropped,
//! and whitespace, control characters and angle brackets are refused.

/// Longest argument accepted, in bytes (a SIP URI this long is an attack, not an address).
const MAX_LEN: usize = 2048;

/// The URI to dial for a link or command-line argument, normalised: `sip:user@host[;params]`,
/// `sips:…` or `tel:NUMBER[;params]` (visual separators `-`, `.`, `(`, `)` and spaces removed per
/// RFC 3966, a leading `+` kept). Accepts `callto:`, `sip://`, `tel://` and any case of the
/// scheme; returns `None` for anything else (other schemes, a bare name, garbage).
pub fn dial_target_from_arg(arg: &str) -> Option<String> {
    let arg = arg.trim();
    if arg.is_empty() || arg.len() > MAX_LEN {
        return None;
    }
    let (scheme, rest) = arg.split_once(':')?;
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    match scheme.to_ascii_lowercase().as_str() {
        "sip" => sip_target("sip", rest),
        "sips" => sip_target("sips", rest),
        "tel" => tel_target(rest),
        "callto" => callto_target(rest),
        _ => None,
    }
}

/// `user@host[;params]` (or just `host`) after `sip:`: headers and a trailing `/` dropped.
fn sip_target(scheme: &str, rest: &str) -> Option<String> {
    let rest = rest.split('?').next().unwrap_or_default();
    let rest = rest.trim_end_matches('/');
    if rest.is_empty()
        || rest
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "<>\"".contains(c))
    {
        return None;
    }
    let host = match rest.rsplit_once('@') {
        Some((user, host)) if !user.is_empty() => host,
        Some(_) => return None,
        None => rest,
    };
    let host = host.split(';').next().unwrap_or_default();
    if host.is_empty() || host.starts_with(':') {
        return None;
    }
    Some(format!("{scheme}:{rest}"))
}

/// `NUMBER[;params]` after `tel:`: percent-escapes decoded in the number, visual separators
/// removed; a global number is `+` and digits, a local one digits, `*`, `#` and hex letters.
fn tel_target(rest: &str) -> Option<String> {
    let rest = rest
        .split('?')
        .next()
        .unwrap_or_default()
        .trim_end_matches('/');
    let (number, params) = match rest.split_once(';') {
        Some((n, p)) => (n, Some(p)),
        None => (rest, None),
    };
    let number = normalise_number(&percent_decode(number)?)?;
    match params {
        Some(p) if !p.is_empty() => {
            if p.chars()
                .any(|c| c.is_whitespace() || c.is_control() || "<>\"".contains(c))
            {
                return None;
            }
            Some(format!("tel:{number};{p}"))
        }
        _ => Some(format!("tel:{number}")),
    }
}

/// `callto:` (Skype-era links): a phone number becomes `tel:`, `user@host` becomes `sip:`, an
/// embedded `sip:`/`tel:` URI is taken as such; a bare name has no address and is refused.
fn callto_target(rest: &str) -> Option<String> {
    let lower = rest.to_ascii_lowercase();
    if lower.starts_with("sip:") || lower.starts_with("sips:") || lower.starts_with("tel:") {
        return dial_target_from_arg(rest);
    }
    if rest.contains('@') {
        return sip_target("sip", rest);
    }
    tel_target(rest)
}

/// RFC 3966 number with visual separators (and spaces, which browsers leave in) removed.
fn normalise_number(number: &str) -> Option<String> {
    let (plus, digits) = match number.trim().strip_prefix('+') {
        Some(d) => ("+", d),
        None => ("", number.trim()),
    };
    let kept: String = digits
        .chars()
        .filter(|c| !matches!(c, '-' | '.' | '(' | ')' | ' '))
        .collect();
    let valid = if plus.is_empty() {
        kept.chars()
            .all(|c| c.is_ascii_hexdigit() || c == '*' || c == '#')
    } else {
        kept.chars().all(|c| c.is_ascii_digit())
    };
    if kept.is_empty() || !valid || !kept.chars().any(|c| c.is_ascii_digit()) {
        return None;
    }
    Some(format!("{plus}{}", kept.to_ascii_uppercase()))
}

/// `%XX` escapes decoded; `None` for a broken escape or bytes that are not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::dial_target_from_arg as target;

    #[test]
    fn sip_and_sips_uris_pass_through() {
        assert_eq!(
            target("sip:bob@example.com").as_deref(),
            Some("sip:bob@example.com")
        );
        assert_eq!(
            target("sips:bob@example.com:5061").as_deref(),
            Some("sips:bob@example.com:5061")
        );
        assert_eq!(
            target("sip:bob@127.0.0.1:5062;transport=tcp").as_deref(),
            Some("sip:bob@127.0.0.1:5062;transport=tcp")
        );
        assert_eq!(
            target("sip:example.com").as_deref(),
            Some("sip:example.com")
        );
        assert_eq!(target("sip:[::1]:5060").as_deref(), Some("sip:[::1]:5060"));
    }

    #[test]
    fn scheme_case_and_surrounding_whitespace_are_normalised() {
        assert_eq!(
            target("  SIP:bob@example.com\n").as_deref(),
            Some("sip:bob@example.com")
        );
        assert_eq!(target("Tel:+1-555-0100").as_deref(), Some("tel:+15550100"));
    }

    #[test]
    fn browser_double_slash_and_trailing_slash_are_dropped() {
        assert_eq!(
            target("sip://bob@example.com/").as_deref(),
            Some("sip:bob@example.com")
        );
        assert_eq!(
            target("tel://+44 20 7946 0000").as_deref(),
            Some("tel:+442079460000")
        );
    }

    #[test]
    fn uri_headers_from_a_link_are_dropped() {
        assert_eq!(
            target("sip:bob@example.com?Subject=hi&Call-Info=%3Chttp://evil%3E").as_deref(),
            Some("sip:bob@example.com")
        );
    }

    #[test]
    fn tel_visual_separators_are_removed_and_plus_kept() {
        assert_eq!(
            target("tel:+1 (555) 010-0199").as_deref(),
            Some("tel:+15550100199")
        );
        assert_eq!(
            target("tel:+1.555.010.0199").as_deref(),
            Some("tel:+15550100199")
        );
        assert_eq!(
            target("tel:+1%20555%20010").as_deref(),
            Some("tel:+1555010")
        );
        assert_eq!(
            target("tel:0800-123-456").as_deref(),
            Some("tel:0800123456")
        );
    }

    #[test]
    fn tel_parameters_and_local_numbers_are_kept() {
        assert_eq!(
            target("tel:7042;phone-context=example.com").as_deref(),
            Some("tel:7042;phone-context=example.com")
        );
        assert_eq!(
            target("tel:+1-555-0100;ext=22").as_deref(),
            Some("tel:+15550100;ext=22")
        );
        assert_eq!(target("tel:*31#1234").as_deref(), Some("tel:*31#1234"));
    }

    #[test]
    fn callto_becomes_tel_or_sip() {
        assert_eq!(
            target("callto:+49 30 1234567").as_deref(),
            Some("tel:+49301234567")
        );
        assert_eq!(
            target("callto://+4930-1234567").as_deref(),
            Some("tel:+49301234567")
        );
        assert_eq!(
            target("callto:alice@example.org").as_deref(),
            Some("sip:alice@example.org")
        );
        assert_eq!(
            target("callto:sip:alice@example.org").as_deref(),
            Some("sip:alice@example.org")
        );
        assert_eq!(target("callto:echo.skype.name"), None);
    }

    #[test]
    fn other_schemes_and_garbage_are_refused() {
        for bad in [
            "",
            "   ",
            "bob@example.com",
            "http://example.com",
            "javascript:alert(1)",
            "file:///etc/passwd",
            "mailto:bob@example.com",
            "sip:",
            "sip://",
            "sip:@example.com",
            "sip:bob@",
            "sip:bob smith@example.com",
            "sip:bob@example.com>\r\nVia: x",
            "tel:",
            "tel:+",
            "tel:+1-555-CALL",
            "tel:abc",
            "tel:%ZZ12",
            "tel:%FF",
            "tel:123;ext= 2",
            "--install-desktop",
        ] {
            assert_eq!(target(bad), None, "{bad:?} must be refused");
        }
        assert_eq!(
            target(&format!("sip:{}@example.com", "a".repeat(3000))),
            None
        );
    }
}
