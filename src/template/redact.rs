//! Every form a secret's value takes on its way out, and one [`Redactor`] that replaces them
//! all with `***` (SPEC §2, §13).
//!
//! A value leaves taskrun raw (a command echoes it), percent-encoded (a URL, by taskrun or by
//! the command: `%20` or `+` for a space, upper- or lower-case hex, with the safe characters
//! of RFC 3986, of HTML forms, of JavaScript's `encodeURIComponent` or of Python's `quote`),
//! or in base64 (standard or URL-safe, padded or not, also inside a longer base64 text such as
//! a basic-auth `user:password`, whatever its offset). [`secret_forms`] lists them;
//! everything taskrun prints or writes about a task passes through a [`Redactor`] built
//! from them.

use std::borrow::Cow;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::COMPONENT;

/// HTML forms (`application/x-www-form-urlencoded`): `*-._` stay.
const FORM: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'*')
    .remove(b'-')
    .remove(b'.')
    .remove(b'_');

/// JavaScript's `encodeURIComponent`: `-_.!~*'()` stay.
const JS: &AsciiSet = &COMPONENT
    .remove(b'!')
    .remove(b'*')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')');

/// Python's `urllib.parse.quote` with its default `safe="/"`.
const PATH: &AsciiSet = &COMPONENT.remove(b'/');

/// A base64 text found inside a longer one is redacted only from this many characters on:
/// shorter pieces would match unrelated base64 by chance.
const MIN_BASE64_PIECE: usize = 8;

/// `%2F` becomes `%2f`; the rest is kept.
fn lower_hex(encoded: &str) -> String {
    let mut out = String::with_capacity(encoded.len());
    let mut hex = 0;
    for c in encoded.chars() {
        if hex > 0 {
            hex -= 1;
            out.push(c.to_ascii_lowercase());
        } else {
            hex = if c == '%' { 2 } else { 0 };
            out.push(c);
        }
    }
    out
}

/// The base64 characters of `value` that do not depend on what surrounds it, when it starts
/// `offset` bytes (0-2) into a longer base64-encoded text.
fn base64_piece(engine: &impl base64::Engine, value: &[u8], offset: usize) -> Option<String> {
    let mut padded = vec![0u8; offset];
    padded.extend_from_slice(value);
    let text = engine.encode(&padded);
    // Character i holds bits 6i..6i+6; the value holds bits 8*offset..8*(offset+len).
    let first = (8 * offset).div_ceil(6);
    let end = (8 * (offset + value.len())) / 6;
    let piece = text.get(first..end)?;
    (piece.len() >= MIN_BASE64_PIECE).then(|| piece.to_string())
}

/// Every form of a secret's value that [`Redactor`] replaces: raw, percent-encoded and
/// base64 (see the module doc); longest first, no duplicates. Empty for an empty value.
pub fn secret_forms(value: &str) -> Vec<String> {
    if value.is_empty() {
        return Vec::new();
    }
    let mut out = vec![value.to_string()];
    for set in [COMPONENT, FORM, JS, PATH] {
        let encoded = utf8_percent_encode(value, set).to_string();
        let plus = encoded.replace("%20", "+");
        out.extend([lower_hex(&encoded), lower_hex(&plus), encoded, plus]);
    }
    let bytes = value.as_bytes();
    for engine in [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD] {
        out.push(engine.encode(bytes));
    }
    for offset in 0..3 {
        out.extend(base64_piece(&STANDARD, bytes, offset));
        out.extend(base64_piece(&URL_SAFE, bytes, offset));
    }
    out.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    out.dedup();
    out
}

/// A line of a multi-line secret is redacted on its own only from this many characters on
/// (surrounding blanks aside): a `{` line of a JSON key file is not a secret by itself, and
/// replacing every `{` would garble the output.
const MIN_SECRET_LINE: usize = 4;

/// The lines of a multi-line secret worth redacting on their own, trimmed of blanks.
fn secret_lines(value: &str) -> impl Iterator<Item = &str> {
    value
        .split(['\n', '\r'])
        .map(str::trim)
        .filter(|line| line.chars().count() >= MIN_SECRET_LINE)
}

/// Replaces every form of some secret values with `***`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Redactor {
    /// Longest first, so a form that contains another is replaced whole.
    forms: Vec<String>,
}

impl Redactor {
    /// A redactor for these values (empty ones are ignored). A value of several lines (a
    /// PEM key, a token read with its newline) is also redacted line by line: output is
    /// redacted a line at a time, so the whole value would never match.
    pub fn new<S: AsRef<str>>(values: impl IntoIterator<Item = S>) -> Self {
        let mut forms: Vec<String> = values
            .into_iter()
            .flat_map(|v| {
                let v = v.as_ref();
                let lines = v.contains(['\n', '\r']).then(|| secret_lines(v));
                let mut forms = secret_forms(v);
                forms.extend(lines.into_iter().flatten().flat_map(secret_forms));
                forms
            })
            .collect();
        forms.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        forms.dedup();
        Self { forms }
    }

    /// True when there is nothing to redact.
    pub fn is_empty(&self) -> bool {
        self.forms.is_empty()
    }

    /// `text` with every form of every value replaced by `***`.
    pub fn redact<'t>(&self, text: &'t str) -> Cow<'t, str> {
        let mut out = Cow::Borrowed(text);
        for form in &self.forms {
            if out.contains(form.as_str()) {
                out = Cow::Owned(out.replace(form.as_str(), "***"));
            }
        }
        out
    }

    /// `bytes` with every form replaced by `***`: a command's output line kept as the bytes
    /// it printed, for its log, when it is not UTF-8.
    pub fn redact_bytes<'t>(&self, bytes: &'t [u8]) -> Cow<'t, [u8]> {
        if let Ok(text) = std::str::from_utf8(bytes) {
            return match self.redact(text) {
                Cow::Borrowed(_) => Cow::Borrowed(bytes),
                Cow::Owned(s) => Cow::Owned(s.into_bytes()),
            };
        }
        let mut out = Cow::Borrowed(bytes);
        for form in self.forms.iter().map(String::as_bytes) {
            let mut i = 0;
            while i + form.len() <= out.len() {
                if out[i..].starts_with(form) {
                    out.to_mut().splice(i..i + form.len(), *b"***");
                    i += 3;
                } else {
                    i += 1;
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_of_several_lines_is_redacted_line_by_line() {
        let r = Redactor::new(["abc123\n"]);
        assert_eq!(r.redact("token: abc123"), "token: ***");
        let key = "-----BEGIN KEY-----\r\nb3BlbnNzaC1rZXk\n  }\n-----END KEY-----\n";
        let r = Redactor::new([key]);
        assert_eq!(r.redact("b3BlbnNzaC1rZXk"), "***");
        assert_eq!(r.redact("-----END KEY-----"), "***");
        // A short line alone is no secret: `}` stays readable elsewhere.
        assert_eq!(r.redact("fn main() {}"), "fn main() {}");
    }

    #[test]
    fn every_form_is_redacted() {
        let secret = "pa ss+w/rd@é:long enough";
        let r = Redactor::new([secret]);
        let basic = STANDARD.encode(format!("user:{secret}"));
        let texts = [
            secret.to_string(),
            utf8_percent_encode(secret, COMPONENT).to_string(),
            lower_hex(&utf8_percent_encode(secret, COMPONENT).to_string()),
            url::form_urlencoded::byte_serialize(secret.as_bytes()).collect(),
            STANDARD.encode(secret),
            URL_SAFE_NO_PAD.encode(secret),
        ];
        for t in texts {
            let line = format!("before {t} after");
            assert_eq!(r.redact(&line), "before *** after", "{t}");
        }
        let out = r.redact(&basic).into_owned();
        assert!(out.contains("***") && out.len() < basic.len() / 2, "{out}");
        assert_eq!(r.redact("nothing here"), "nothing here");
    }

    #[test]
    fn a_plain_value_has_its_raw_and_base64_forms_only() {
        let forms = secret_forms("token123");
        assert!(forms.contains(&"token123".to_string()));
        assert!(forms.contains(&"dG9rZW4xMjM=".to_string()));
        assert!(forms.iter().all(|f| f.len() >= 8), "{forms:?}");
        assert!(secret_forms("").is_empty());
        assert_eq!(Redactor::new([""]), Redactor::default());
    }
}
