//! vCard (.vcf) import and export: 2.1, 3.0 and 4.0 as Google, Apple, Android, Thunderbird and
//! Outlook write them.
//!
//! Reading: line unfolding (and quoted-printable soft breaks), `group.NAME;params:value` lines,
//! `FN` (else `N`, else `ORG`), `TEL` (text or `tel:` URI), SIP addresses from `IMPP`, `X-SIP` or
//! a `sip:` `TEL`, labels from `TYPE` parameters (`TYPE=cell,voice`, 2.1's bare `;CELL`) or an
//! `itemN.X-ABLabel`, `NOTE`, favourites (`CATEGORIES:…starred`). Other properties are ignored.
//! A card that cannot be read is skipped with a reason and the others still import.
//!
//! Writing: vCard 3.0, escaped and folded at 75 octets, so that an export imports back to the
//! same contacts (ids aside, and a `tel:` URI comes back as its plain number).

use crate::store::contacts::{Contact, ContactNumber};
use std::collections::HashMap;

/// The contacts read from a file, and why the cards that could not be read were skipped.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VcardImport {
    pub contacts: Vec<Contact>,
    /// One sentence per skipped card, naming its line and (if known) its name.
    pub skipped: Vec<String>,
}

/// A file that is not vCard at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VcardError {
    #[error("this is not a vCard file: it has no BEGIN:VCARD line")]
    NoCards,
}

/// Reads a .vcf file's bytes: UTF-8 (with or without BOM), UTF-16 with a BOM, or else
/// Windows-1252 (Outlook's vCard 2.1 files), then [`parse_vcards`].
pub fn parse_vcard_bytes(bytes: &[u8]) -> Result<VcardImport, VcardError> {
    parse_vcards(&decode_file(bytes))
}

/// Reads every card in `text`.
pub fn parse_vcards(text: &str) -> Result<VcardImport, VcardError> {
    let mut import = VcardImport::default();
    let mut card: Option<CardBuilder> = None;
    let mut any = false;
    for (line_no, line) in unfold(text) {
        let Some(prop) = Property::parse(&line) else {
            continue; // not a property line (stray text, 2.1 base64 without indent)
        };
        match prop.name.as_str() {
            "BEGIN" if prop.value.trim().eq_ignore_ascii_case("VCARD") => {
                any = true;
                if let Some(open) = card.take() {
                    import
                        .skipped
                        .push(open.reason("it has no END:VCARD before the next card"));
                }
                card = Some(CardBuilder::new(line_no));
            }
            "END" if prop.value.trim().eq_ignore_ascii_case("VCARD") => {
                if let Some(done) = card.take() {
                    match done.finish() {
                        Ok(c) => import.contacts.push(c),
                        Err(why) => import.skipped.push(why),
                    }
                }
            }
            _ => {
                if let Some(open) = card.as_mut() {
                    open.add(&prop);
                }
            }
        }
    }
    if let Some(open) = card {
        import
            .skipped
            .push(open.reason("the file ends before its END:VCARD"));
    }
    if !any {
        return Err(VcardError::NoCards);
    }
    Ok(import)
}

/// Writes `contacts` as vCard 3.0 (CRLF line ends, lines folded at 75 octets).
pub fn write_vcards(contacts: &[Contact]) -> String {
    let mut out = String::new();
    for c in contacts {
        let mut put = |line: String| fold_into(&mut out, &line);
        put("BEGIN:VCARD".into());
        put("VERSION:3.0".into());
        put(format!("FN:{}", escape(&c.name)));
        let (family, given) = split_name(&c.name);
        put(format!("N:{};{};;;", escape(family), escape(given)));
        let mut item = 0;
        for n in &c.numbers {
            let prop = if is_sip(&n.uri) { "IMPP" } else { "TEL" };
            let value = n.uri.replace(['\r', '\n'], " ");
            match types_for_label(&n.label) {
                Some("") => put(format!("{prop}:{value}")),
                Some(types) => put(format!("{prop};TYPE={types}:{value}")),
                None => {
                    item += 1;
                    put(format!("item{item}.{prop}:{value}"));
                    put(format!("item{item}.X-ABLabel:{}", escape(&n.label)));
                }
            }
        }
        if !c.note.is_empty() {
            put(format!("NOTE:{}", escape(&c.note)));
        }
        if c.favourite {
            put("X-DIALTONE-FAVOURITE:TRUE".into());
        }
        put("END:VCARD".into());
    }
    out
}

/// Labels written as `TYPE` values, and read back from them. Any other label is written as an
/// `X-ABLabel` (what Apple and Google do for their users' own labels).
const LABEL_TYPES: &[(&str, &str)] = &[
    ("", ""),
    ("mobile", "CELL"),
    ("home", "HOME"),
    ("work", "WORK"),
    ("main", "MAIN"),
    ("fax", "FAX"),
    ("home fax", "HOME,FAX"),
    ("work fax", "WORK,FAX"),
    ("pager", "PAGER"),
    ("iPhone", "IPHONE,CELL"),
    ("car", "CAR"),
    ("isdn", "ISDN"),
    ("video", "VIDEO"),
    ("other", "OTHER"),
];

fn types_for_label(label: &str) -> Option<&'static str> {
    LABEL_TYPES
        .iter()
        .find(|(l, _)| *l == label)
        .map(|(_, t)| *t)
}

/// The label a set of `TYPE` values stands for (`cell,voice` → `mobile`); words that say
/// nothing to a person (`voice`, `pref`, `internet`) are ignored, and a 2.1 custom `X-Boat`
/// becomes `Boat`.
fn label_from_types(types: &[String]) -> String {
    let has = |t: &str| types.iter().any(|x| x.eq_ignore_ascii_case(t));
    let fax = has("fax");
    let label = if fax && has("home") {
        "home fax"
    } else if fax && has("work") {
        "work fax"
    } else if fax {
        "fax"
    } else if has("iphone") {
        "iPhone"
    } else if has("cell") || has("mobile") {
        "mobile"
    } else {
        [
            "pager", "main", "home", "work", "car", "isdn", "video", "other",
        ]
        .into_iter()
        .find(|t| has(t))
        .unwrap_or("")
    };
    if !label.is_empty() {
        return label.into();
    }
    types
        .iter()
        .find_map(|t| {
            let custom = t.get(2..).filter(|_| t[..2].eq_ignore_ascii_case("x-"))?;
            (!custom.is_empty() && custom.chars().all(|c| c.is_alphanumeric() || c == '-'))
                .then(|| custom.to_string())
        })
        .unwrap_or_default()
}

/// Apple's built-in labels come as `_$!<Mobile>!$_`; anything else is the user's own text.
fn label_from_ablabel(s: &str) -> String {
    let Some(inner) = s.strip_prefix("_$!<").and_then(|r| r.strip_suffix(">!$_")) else {
        return s.to_string();
    };
    match inner.to_ascii_lowercase().as_str() {
        "mobile" => "mobile".into(),
        "home" => "home".into(),
        "work" => "work".into(),
        "main" => "main".into(),
        "homefax" => "home fax".into(),
        "workfax" => "work fax".into(),
        "otherfax" => "fax".into(),
        "pager" => "pager".into(),
        "other" => "other".into(),
        "iphone" => "iPhone".into(),
        _ => inner.to_string(),
    }
}

/// One `group.NAME;params:value` line.
#[derive(Debug)]
struct Property {
    group: Option<String>,
    /// Upper case.
    name: String,
    /// Parameter names in upper case; values unquoted. A bare 2.1 parameter (`;CELL`) is a
    /// `TYPE`, or an `ENCODING` if it names one.
    params: Vec<(String, String)>,
    value: String,
}

impl Property {
    fn parse(line: &str) -> Option<Property> {
        let mut parts = Vec::new();
        let mut start = 0;
        let mut quoted = false;
        let mut value_at = None;
        for (i, c) in line.char_indices() {
            match c {
                '"' => quoted = !quoted,
                ';' if !quoted => {
                    parts.push(&line[start..i]);
                    start = i + 1;
                }
                ':' if !quoted => {
                    parts.push(&line[start..i]);
                    value_at = Some(i + 1);
                    break;
                }
                _ => {}
            }
        }
        let value = line[value_at?..].to_string();
        let mut parts = parts.into_iter();
        let full_name = parts.next()?.trim();
        let (group, name) = match full_name.split_once('.') {
            Some((g, n)) => (Some(g.to_string()), n),
            None => (None, full_name),
        };
        if name.is_empty() {
            return None;
        }
        let params = parts
            .filter(|p| !p.trim().is_empty())
            .map(|p| match p.split_once('=') {
                Some((k, v)) => (
                    k.trim().to_ascii_uppercase(),
                    v.trim().trim_matches('"').to_string(),
                ),
                None => {
                    let p = p.trim();
                    let key = match p.to_ascii_uppercase().as_str() {
                        "QUOTED-PRINTABLE" | "BASE64" | "B" | "8BIT" | "7BIT" => "ENCODING",
                        _ => "TYPE",
                    };
                    (key.to_string(), p.to_string())
                }
            })
            .collect();
        Some(Property {
            group,
            name: name.to_ascii_uppercase(),
            params,
            value,
        })
    }

    fn param(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every `TYPE` value, commas split (`TYPE=cell,voice;TYPE=pref` → cell, voice, pref).
    fn types(&self) -> Vec<String> {
        self.params
            .iter()
            .filter(|(k, _)| k == "TYPE")
            .flat_map(|(_, v)| v.split(','))
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .collect()
    }

    /// The value with its transfer encoding undone; `Ok(None)` for binary (base64) values.
    fn decoded_value(&self) -> Result<Option<String>, String> {
        match self
            .param("ENCODING")
            .map(str::to_ascii_uppercase)
            .as_deref()
        {
            Some("QUOTED-PRINTABLE") => {
                let bytes = decode_quoted_printable(&self.value)
                    .map_err(|e| format!("{}: {e}", self.name))?;
                // Encoded line breaks are CRLF (Outlook, Android); a Contact's text uses LF.
                decode_charset(bytes, self.param("CHARSET"))
                    .map(|text| Some(text.replace("\r\n", "\n")))
                    .map_err(|e| format!("{}: {e}", self.name))
            }
            Some("BASE64") | Some("B") => Ok(None),
            _ => Ok(Some(self.value.clone())),
        }
    }
}

/// One card being read.
struct CardBuilder {
    line: usize,
    full_name: Option<String>,
    structured_name: Option<String>,
    org: Option<String>,
    /// (group, label from TYPE, address)
    numbers: Vec<(Option<String>, String, String)>,
    ab_labels: HashMap<String, String>,
    notes: Vec<String>,
    favourite: bool,
    error: Option<String>,
}

impl CardBuilder {
    fn new(line: usize) -> CardBuilder {
        CardBuilder {
            line,
            full_name: None,
            structured_name: None,
            org: None,
            numbers: Vec::new(),
            ab_labels: HashMap::new(),
            notes: Vec::new(),
            favourite: false,
            error: None,
        }
    }

    fn add(&mut self, p: &Property) {
        let value = match p.decoded_value() {
            Ok(Some(v)) => v,
            Ok(None) => return,
            Err(e) => {
                self.error.get_or_insert(e);
                return;
            }
        };
        match p.name.as_str() {
            "FN" => self.full_name = Some(unescape(&value)),
            "N" => self.structured_name = Some(name_from_n(&value)),
            "ORG" => {
                let first = split_unescaped(&value, ';').into_iter().next();
                self.org = first.map(|o| unescape(&o));
            }
            "TEL" => {
                let v = unescape(value.trim());
                let v = strip_prefix_ci(&v, "tel:").unwrap_or(&v).trim().to_string();
                self.push_number(p, v);
            }
            "IMPP" => {
                let v = unescape(value.trim());
                let sip_service = p
                    .param("X-SERVICE-TYPE")
                    .is_some_and(|s| s.eq_ignore_ascii_case("sip"));
                if is_sip(&v) {
                    self.push_number(p, v);
                } else if sip_service && !v.contains(':') && !v.is_empty() {
                    self.push_number(p, format!("sip:{v}"));
                }
            }
            "X-SIP" | "X-SIP-URI" => {
                let v = unescape(value.trim());
                let v = if is_sip(&v) { v } else { format!("sip:{v}") };
                if v.len() > 4 {
                    self.push_number(p, v);
                }
            }
            "X-ABLABEL" => {
                if let Some(g) = &p.group {
                    self.ab_labels.insert(
                        g.to_ascii_lowercase(),
                        label_from_ablabel(&unescape(&value)),
                    );
                }
            }
            "NOTE" => self.notes.push(unescape(&value)),
            "CATEGORIES" => {
                self.favourite |= split_unescaped(&value, ',').iter().any(|c| {
                    ["starred", "favorites", "favourites"]
                        .iter()
                        .any(|f| c.trim().eq_ignore_ascii_case(f))
                })
            }
            "X-DIALTONE-FAVOURITE" => {
                self.favourite |= ["true", "1", "yes"]
                    .iter()
                    .any(|t| value.trim().eq_ignore_ascii_case(t))
            }
            _ => {}
        }
    }

    fn push_number(&mut self, p: &Property, uri: String) {
        if !uri.is_empty() {
            let group = p.group.as_ref().map(|g| g.to_ascii_lowercase());
            self.numbers
                .push((group, label_from_types(&p.types()), uri));
        }
    }

    fn name(&self) -> Option<String> {
        [&self.full_name, &self.structured_name, &self.org]
            .into_iter()
            .flatten()
            .find(|n| !n.trim().is_empty())
            .cloned()
    }

    fn reason(&self, why: &str) -> String {
        match self.name() {
            Some(name) => format!("card at line {} ({name}) skipped: {why}", self.line),
            None => format!("card at line {} skipped: {why}", self.line),
        }
    }

    fn finish(self) -> Result<Contact, String> {
        if let Some(e) = &self.error {
            return Err(self.reason(e));
        }
        let numbers: Vec<ContactNumber> = self
            .numbers
            .iter()
            .map(|(group, label, uri)| ContactNumber {
                label: group
                    .as_ref()
                    .and_then(|g| self.ab_labels.get(g))
                    .unwrap_or(label)
                    .clone(),
                uri: uri.clone(),
            })
            .collect();
        let Some(first) = numbers.first() else {
            return Err(self.reason("it has no phone number or SIP address"));
        };
        Ok(Contact {
            id: None,
            name: self.name().unwrap_or_else(|| first.uri.clone()),
            favourite: self.favourite,
            note: self.notes.join("\n"),
            numbers,
        })
    }
}

/// Logical lines with the number of their first physical line: folded lines (a leading space
/// or tab) joined, quoted-printable soft breaks (`=` at the end) joined, blank lines dropped.
fn unfold(text: &str) -> Vec<(usize, String)> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut out: Vec<(usize, String)> = Vec::new();
    for (i, line) in text.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        for piece in line.split('\r') {
            if piece.is_empty() {
                // A blank line closes a quoted-printable value left open by a trailing `=`.
                if let Some((_, last)) = out.last_mut()
                    && last.ends_with('=')
                    && is_quoted_printable(last)
                {
                    last.pop();
                }
                continue;
            }
            match out.last_mut() {
                Some((_, last)) if last.ends_with('=') && is_quoted_printable(last) => {
                    last.pop();
                    last.push_str(piece);
                }
                Some((_, last)) if piece.starts_with([' ', '\t']) => last.push_str(&piece[1..]),
                _ => out.push((i + 1, piece.to_string())),
            }
        }
    }
    out
}

fn is_quoted_printable(line: &str) -> bool {
    let head = line.split(':').next().unwrap_or_default();
    head.to_ascii_uppercase().contains("QUOTED-PRINTABLE")
}

fn decode_quoted_printable(s: &str) -> Result<Vec<u8>, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'=' {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        let hex = bytes.get(i + 1..i + 3);
        match hex.and_then(|h| std::str::from_utf8(h).ok()) {
            _ if i + 1 == bytes.len() => i += 1, // soft break at the very end
            Some(h) if h.chars().all(|c| c.is_ascii_hexdigit()) => {
                out.push(u8::from_str_radix(h, 16).map_err(|e| e.to_string())?);
                i += 3;
            }
            _ => {
                let bad: String = s[i..].chars().take(3).collect();
                return Err(format!("broken quoted-printable text near {bad:?}"));
            }
        }
    }
    Ok(out)
}

/// Bytes in a named character set (none given: UTF-8 if valid, else Windows-1252).
fn decode_charset(bytes: Vec<u8>, charset: Option<&str>) -> Result<String, String> {
    let cs = charset.unwrap_or("").to_ascii_lowercase().replace('_', "-");
    match cs.as_str() {
        "" => Ok(String::from_utf8(bytes).unwrap_or_else(|e| windows_1252(e.as_bytes()))),
        "utf-8" | "utf8" | "us-ascii" | "ascii" => String::from_utf8(bytes)
            .map_err(|_| format!("the text is not valid {charset:?}", charset = cs)),
        "iso-8859-1" | "iso8859-1" | "latin1" | "latin-1" => {
            Ok(bytes.iter().map(|&b| char::from(b)).collect())
        }
        "windows-1252" | "cp1252" | "iso-8859-15" => Ok(windows_1252(&bytes)),
        _ => Err(format!("the character set {cs:?} is not supported")),
    }
}

fn decode_file(bytes: &[u8]) -> String {
    if let Some(rest) = bytes.strip_prefix(b"\xEF\xBB\xBF") {
        return String::from_utf8_lossy(rest).into_owned(); // the BOM says UTF-8
    }
    if let Some(rest) = bytes.strip_prefix(b"\xFF\xFE") {
        return utf16(rest, u16::from_le_bytes);
    }
    if let Some(rest) = bytes.strip_prefix(b"\xFE\xFF") {
        return utf16(rest, u16::from_be_bytes);
    }
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_string(),
        Err(_) => windows_1252(bytes),
    }
}

fn utf16(bytes: &[u8], unit: fn([u8; 2]) -> u16) -> String {
    let units = bytes.chunks_exact(2).map(|c| unit([c[0], c[1]]));
    char::decode_utf16(units)
        .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect()
}

/// Windows-1252: Latin-1 with printable characters in 0x80–0x9F.
fn windows_1252(bytes: &[u8]) -> String {
    const HIGH: [u16; 32] = [
        0x20AC, 0x81, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160,
        0x2039, 0x0152, 0x8D, 0x017D, 0x8F, 0x90, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013,
        0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x9D, 0x017E, 0x0178,
    ];
    bytes
        .iter()
        .map(|&b| match b {
            0x80..=0x9F => char::from_u32(u32::from(HIGH[usize::from(b - 0x80)]))
                .unwrap_or(char::REPLACEMENT_CHARACTER),
            _ => char::from(b),
        })
        .collect()
}

/// `N:Family;Given;Additional;Prefix;Suffix` as a display name: `Prefix Given Additional
/// Family Suffix` (several values of one part, comma-separated, joined by spaces).
fn name_from_n(value: &str) -> String {
    let parts: Vec<String> = split_unescaped(value, ';')
        .iter()
        .map(|p| {
            split_unescaped(p, ',')
                .iter()
                .map(|v| unescape(v).trim().to_string())
                .filter(|v| !v.is_empty())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    let part = |i: usize| parts.get(i).map(String::as_str).unwrap_or("");
    [part(3), part(1), part(2), part(0), part(4)]
        .into_iter()
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Splits at `sep` where it is not escaped with a backslash; the parts keep their escapes.
fn split_unescaped(s: &str, sep: char) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        let cur = parts.last_mut().expect("starts non-empty");
        if c == '\\' {
            cur.push(c);
            if let Some(n) = chars.next() {
                cur.push(n);
            }
        } else if c == sep {
            parts.push(String::new());
        } else {
            cur.push(c);
        }
    }
    parts
}

/// Undoes vCard text escapes: `\\`, `\,`, `\;`, `\:` and `\n`/`\N` (a newline).
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') | Some('N') => out.push('\n'),
            Some(e @ ('\\' | ',' | ';' | ':')) => out.push(e),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// vCard 3.0 text escapes (RFC 2426 5.): backslash, comma, semicolon, newline.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push_str("\\\\"),
            ',' => out.push_str("\\,"),
            ';' => out.push_str("\\;"),
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' | '\r' => out.push_str("\\n"),
            _ => out.push(c),
        }
    }
    out
}

/// Appends `line` folded into pieces of at most 75 octets (continuations start with a space),
/// never splitting a character, each ended by CRLF.
fn fold_into(out: &mut String, line: &str) {
    const MAX: usize = 75;
    let mut rest = line;
    let mut first = true;
    loop {
        let room = if first { MAX } else { MAX - 1 };
        let mut cut = rest.len().min(room);
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        if !first {
            out.push(' ');
        }
        out.push_str(&rest[..cut]);
        out.push_str("\r\n");
        rest = &rest[cut..];
        first = false;
        if rest.is_empty() {
            break;
        }
    }
}

/// `Family`, `Given` for `N`: the last word is taken as the family name.
fn split_name(name: &str) -> (&str, &str) {
    match name.trim().rsplit_once(' ') {
        Some((given, family)) => (family, given.trim_end()),
        None => ("", name.trim()),
    }
}

fn is_sip(s: &str) -> bool {
    strip_prefix_ci(s, "sip:").is_some() || strip_prefix_ci(s, "sips:").is_some()
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Contact {
        let import = parse_vcards(text).unwrap();
        assert_eq!(import.skipped, Vec::<String>::new());
        assert_eq!(import.contacts.len(), 1, "{import:?}");
        import.contacts.into_iter().next().unwrap()
    }

    fn numbers(c: &Contact) -> Vec<(&str, &str)> {
        c.numbers
            .iter()
            .map(|n| (n.label.as_str(), n.uri.as_str()))
            .collect()
    }

    #[test]
    fn folded_lines_are_joined_with_crlf_lf_or_cr_endings() {
        for eol in ["\r\n", "\n", "\r"] {
            let text = format!(
                "BEGIN:VCARD{eol}VERSION:3.0{eol}FN:Alexandra{eol} Longname{eol}TEL;TYPE=CE{eol}\tLL:+1 555{eol} 0100{eol}END:VCARD{eol}"
            );
            let c = one(&text);
            assert_eq!(c.name, "AlexandraLongname");
            assert_eq!(numbers(&c), [("mobile", "+1 5550100")]);
        }
    }

    #[test]
    fn n_is_the_name_when_fn_is_missing_and_org_when_both_are() {
        let c = one("BEGIN:VCARD\nVERSION:3.0\nN:Doe;John;Q.,R.;Dr.;Jr.\nTEL:1\nEND:VCARD\n");
        assert_eq!(c.name, "Dr. John Q. R. Doe Jr.");
        let c = one("BEGIN:VCARD\nVERSION:3.0\nN:;;;;\nORG:ACME\\, Inc.;Sales\nTEL:1\nEND:VCARD\n");
        assert_eq!(c.name, "ACME, Inc.");
        let c = one("BEGIN:VCARD\nVERSION:3.0\nTEL:+1 555 0100\nEND:VCARD\n");
        assert_eq!(c.name, "+1 555 0100");
    }

    #[test]
    fn tel_labels_come_from_type_parameters_in_every_version() {
        let c = one(
            "BEGIN:VCARD\r\nVERSION:2.1\r\nFN:X\r\nTEL;CELL;VOICE:1\r\nTEL;WORK;FAX:2\r\n\
             TEL;HOME:3\r\nTEL;PREF:4\r\nTEL;X-Boat:5\r\nEND:VCARD\r\n",
        );
        assert_eq!(
            numbers(&c),
            [
                ("mobile", "1"),
                ("work fax", "2"),
                ("home", "3"),
                ("", "4"),
                ("Boat", "5")
            ]
        );
        let c = one(
            "BEGIN:VCARD\nVERSION:4.0\nFN:X\nTEL;VALUE=uri;TYPE=\"cell,voice\":tel:+1-555-555-0100\n\
             TEL;TYPE=work;TYPE=pref;VALUE=TEXT:+1 555 0101\ntel;type=IPHONE;type=CELL:7\nEND:VCARD\n",
        );
        assert_eq!(
            numbers(&c),
            [
                ("mobile", "+1-555-555-0100"),
                ("work", "+1 555 0101"),
                ("iPhone", "7")
            ]
        );
    }

    #[test]
    fn sip_addresses_come_from_impp_x_sip_and_tel() {
        let c = one(
            "BEGIN:VCARD\nVERSION:3.0\nFN:S\nIMPP;X-SERVICE-TYPE=Skype:skype:someone\n\
             IMPP;TYPE=work:sip:bob@example.com\nX-SIP:carol@example.org\nTEL:sips:dave@example.net\n\
             IMPP;X-SERVICE-TYPE=SIP:erin@example.com\nEND:VCARD\n",
        );
        assert_eq!(
            numbers(&c),
            [
                ("work", "sip:bob@example.com"),
                ("", "sip:carol@example.org"),
                ("", "sips:dave@example.net"),
                ("", "sip:erin@example.com"),
            ]
        );
    }

    #[test]
    fn grouped_ablabels_name_their_numbers() {
        let c = one(
            "BEGIN:VCARD\nVERSION:3.0\nFN:A\nitem1.TEL:1\nitem1.X-ABLabel:_$!<HomeFAX>!$_\n\
             ITEM2.TEL;TYPE=CELL:2\nitem2.X-ABLabel:Boat\\, blue\nitem3.TEL:3\nEND:VCARD\n",
        );
        assert_eq!(
            numbers(&c),
            [("home fax", "1"), ("Boat, blue", "2"), ("", "3")]
        );
    }

    #[test]
    fn quoted_printable_with_soft_breaks_and_charsets_is_decoded() {
        let c = one(
            "BEGIN:VCARD\r\nVERSION:2.1\r\nN;CHARSET=UTF-8;ENCODING=QUOTED-PRINTABLE:=E5=BC=A0;=E4=B8=89;;;\r\n\
             TEL;CELL:1\r\nNOTE;QUOTED-PRINTABLE;CHARSET=ISO-8859-1:Gr=FC=DFe=0D=0Aaus K=F6ln, eine lange =\r\n\
             Zeile\r\nTEL;HOME;ENCODING=QUOTED-PRINTABLE:2=\r\n\r\nEND:VCARD\r\n",
        );
        assert_eq!(c.name, "三 张");
        assert_eq!(c.note, "Grüße\naus Köln, eine lange Zeile");
        assert_eq!(numbers(&c), [("mobile", "1"), ("home", "2")]);
    }

    #[test]
    fn escapes_are_undone_and_notes_joined() {
        let c = one(
            "BEGIN:VCARD\nVERSION:3.0\nFN:Smith\\, John\\; Jr\\\\\nTEL:1\nNOTE:line one\\nline two\\, with comma\n\
             NOTE:second\nCATEGORIES:myContacts,starred\nEND:VCARD\n",
        );
        assert_eq!(c.name, "Smith, John; Jr\\");
        assert_eq!(c.note, "line one\nline two, with comma\nsecond");
        assert!(c.favourite);
    }

    #[test]
    fn a_bom_empty_lines_unknown_properties_and_photos_are_ignored() {
        let c = one(
            "\u{feff}\n\nBEGIN:VCARD\nVERSION:2.1\nFN:P\nPHOTO;ENCODING=BASE64;JPEG:/9j/4AAQSkZJRgAB\n  AQEASABIAAD\n\n\
             X-ANDROID-CUSTOM:vnd.android.cursor.item/nickname;Pete;1;;;;;;;;;;;;;\nEMAIL:p@example.com\n\
             TEL:1\nEND:VCARD\n",
        );
        assert_eq!(c.name, "P");
        assert_eq!(numbers(&c), [("", "1")]);
    }

    #[test]
    fn broken_cards_are_skipped_with_reasons_and_the_rest_imports() {
        let import = parse_vcards(
            "BEGIN:VCARD\nVERSION:3.0\nFN:Good One\nTEL:1\nEND:VCARD\n\
             BEGIN:VCARD\nVERSION:3.0\nFN:No End\nTEL:2\n\
             BEGIN:VCARD\nVERSION:2.1\nFN;ENCODING=QUOTED-PRINTABLE:Bad=ZZ\nTEL:3\nEND:VCARD\n\
             BEGIN:VCARD\nVERSION:2.1\nFN;CHARSET=SHIFT_JIS;ENCODING=QUOTED-PRINTABLE:=82=A0\nTEL:4\nEND:VCARD\n\
             BEGIN:VCARD\nVERSION:3.0\nFN:Only Email\nEMAIL:x@example.com\nEND:VCARD\n\
             BEGIN:VCARD\nVERSION:3.0\nFN:Good Two\nTEL:5\nEND:VCARD\n\
             BEGIN:VCARD\nVERSION:3.0\nFN:Cut Off\nTEL:6\n",
        )
        .unwrap();
        let names: Vec<&str> = import.contacts.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["Good One", "Good Two"]);
        assert_eq!(
            import.skipped,
            [
                "card at line 6 (No End) skipped: it has no END:VCARD before the next card",
                "card at line 10 skipped: FN: broken quoted-printable text near \"=ZZ\"",
                "card at line 15 skipped: FN: the character set \"shift-jis\" is not supported",
                "card at line 20 (Only Email) skipped: it has no phone number or SIP address",
                "card at line 30 (Cut Off) skipped: the file ends before its END:VCARD",
            ]
        );
    }

    #[test]
    fn text_without_cards_is_an_error() {
        assert_eq!(parse_vcards(""), Err(VcardError::NoCards));
        assert_eq!(
            parse_vcards("name,number\nBob,555\n"),
            Err(VcardError::NoCards)
        );
    }

    #[test]
    fn every_label_written_as_types_reads_back_as_itself() {
        for (label, types) in LABEL_TYPES {
            let types: Vec<String> = types.split(',').map(str::to_string).collect();
            assert_eq!(label_from_types(&types), *label);
        }
    }

    #[test]
    fn long_lines_fold_at_75_octets_without_splitting_characters() {
        let mut out = String::new();
        let line = format!("NOTE:{}", "é".repeat(100));
        fold_into(&mut out, &line);
        for l in out.split("\r\n").filter(|l| !l.is_empty()) {
            assert!(l.len() <= 75, "{} octets: {l}", l.len());
        }
        let back: Vec<(usize, String)> = unfold(&out);
        assert_eq!(back, [(1, line)]);
    }

    #[test]
    fn file_bytes_in_utf16_and_windows_1252_are_decoded() {
        let text = "BEGIN:VCARD\r\nVERSION:2.1\r\nFN:Jürgen – €\r\nTEL:1\r\nEND:VCARD\r\n";
        let mut le = vec![0xFF, 0xFE];
        le.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
        assert_eq!(
            parse_vcard_bytes(&le).unwrap().contacts[0].name,
            "Jürgen – €"
        );
        let mut be = vec![0xFE, 0xFF];
        be.extend(text.encode_utf16().flat_map(u16::to_be_bytes));
        assert_eq!(
            parse_vcard_bytes(&be).unwrap().contacts[0].name,
            "Jürgen – €"
        );
        let cp1252: Vec<u8> =
            b"BEGIN:VCARD\r\nFN:J\xFCrgen \x96 \x80\r\nTEL:1\r\nEND:VCARD\r\n".to_vec();
        assert_eq!(
            parse_vcard_bytes(&cp1252).unwrap().contacts[0].name,
            "Jürgen – €"
        );
    }
}
