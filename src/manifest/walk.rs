//! Typed reads from the spanned TOML tree that record a [`Problem`] instead of failing.
//!
//! The loader walks the document with these helpers so that one pass finds every problem;
//! a value of the wrong type yields `None` and a problem pointing at it.

use std::fmt::Display;
use std::ops::Range;
use std::time::Duration;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::diagnostic::Problem;
use super::suggest;

/// A value in the document with its byte range.
pub type Val<'i> = Spanned<DeValue<'i>>;

/// Collects problems while reading one manifest.
///
/// `what` arguments name the value for messages; they are anything displayable so that a
/// caller can pass a name it would have to format (`tasks.NAME.deps`) without formatting
/// it unless a problem is recorded.
pub struct Reader<'s> {
    /// The manifest text, for mapping spans inside strings.
    pub source: &'s str,
    /// Everything wrong so far.
    pub problems: Vec<Problem>,
}

/// The value under `key`, if present.
pub fn get<'a, 'i>(table: &'a DeTable<'i>, key: &str) -> Option<&'a Val<'i>> {
    table
        .iter()
        .find(|(k, _)| k.get_ref().as_ref() == key)
        .map(|(_, v)| v)
}

/// The span of `key` itself (for "unknown key" and "duplicate" carets).
pub fn key_span(table: &DeTable<'_>, key: &str) -> Option<Range<usize>> {
    table
        .iter()
        .find(|(k, _)| k.get_ref().as_ref() == key)
        .map(|(k, _)| k.span())
}

fn type_name(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a datetime",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

impl<'s> Reader<'s> {
    /// Records a problem.
    pub fn push(&mut self, p: Problem) {
        self.problems.push(p);
    }

    fn wrong_type(&mut self, v: &Val<'_>, what: &(impl Display + ?Sized), expected: &str) {
        self.push(
            Problem::at(v.span(), format!("`{what}` must be {expected}"))
                .label(format!("this is {}", type_name(v.get_ref()))),
        );
    }

    /// Reports keys not in `allowed`, with a "did you mean" hint, and `retries` specially.
    pub fn check_keys(
        &mut self,
        table: &DeTable<'_>,
        allowed: &[&str],
        context: &(impl Display + ?Sized),
    ) {
        for (k, _) in table.iter() {
            let key = k.get_ref().as_ref();
            if allowed.contains(&key) {
                continue;
            }
            let p = if key == "retries" || key == "retry_count" || key == "max_retries" {
                Problem::at(k.span(), format!("unknown key `{key}` in {context}"))
                    .label("not a taskrun key")
                    .help("use `retry.max_attempts`: the total number of attempts, including the first (e.g. `retry = { max_attempts = 3 }` or `retry = 3`)")
            } else {
                let p = Problem::at(k.span(), format!("unknown key `{key}` in {context}"))
                    .label("unknown key");
                match suggest(key, allowed.iter().copied()) {
                    Some(s) => p.help(format!("did you mean `{s}`?")),
                    None => p.help(format!("expected one of: {}", allowed.join(", "))),
                }
            };
            self.push(p);
        }
    }

    /// A table, or a problem.
    pub fn table<'a, 'i>(
        &mut self,
        v: &'a Val<'i>,
        what: &(impl Display + ?Sized),
    ) -> Option<&'a DeTable<'i>> {
        match v.get_ref() {
            DeValue::Table(t) => Some(t),
            _ => {
                self.wrong_type(v, what, "a table");
                None
            }
        }
    }

    /// A string with its span, or a problem.
    pub fn string(
        &mut self,
        v: &Val<'_>,
        what: &(impl Display + ?Sized),
    ) -> Option<(String, Range<usize>)> {
        match v.get_ref() {
            DeValue::String(s) => Some((s.to_string(), v.span())),
            _ => {
                self.wrong_type(v, what, "a string");
                None
            }
        }
    }

    /// A boolean, or a problem.
    pub fn boolean(&mut self, v: &Val<'_>, what: &(impl Display + ?Sized)) -> Option<bool> {
        match v.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            _ => {
                self.wrong_type(v, what, "true or false");
                None
            }
        }
    }

    /// An integer, or a problem.
    pub fn integer(&mut self, v: &Val<'_>, what: &(impl Display + ?Sized)) -> Option<i64> {
        match v.get_ref() {
            DeValue::Integer(i) => match parse_int(i.as_str(), i.radix()) {
                Some(n) => Some(n),
                None => {
                    self.push(Problem::at(v.span(), format!("`{what}` is out of range")));
                    None
                }
            },
            _ => {
                self.wrong_type(v, what, "an integer");
                None
            }
        }
    }

    /// An integer in `min..=max`, or a problem.
    pub fn integer_in(
        &mut self,
        v: &Val<'_>,
        what: &(impl Display + ?Sized),
        min: i64,
        max: i64,
    ) -> Option<i64> {
        let n = self.integer(v, what)?;
        if n < min || n > max {
            self.push(
                Problem::at(
                    v.span(),
                    format!("`{what}` must be between {min} and {max}"),
                )
                .label(format!("{n} is out of range")),
            );
            return None;
        }
        Some(n)
    }

    /// A number (integer or float), or a problem.
    pub fn number(&mut self, v: &Val<'_>, what: &(impl Display + ?Sized)) -> Option<f64> {
        match v.get_ref() {
            DeValue::Float(f) => f.as_str().replace('_', "").parse::<f64>().ok(),
            DeValue::Integer(_) => self.integer(v, what).map(|n| n as f64),
            _ => {
                self.wrong_type(v, what, "a number");
                None
            }
        }
    }

    /// A humantime duration string ("250ms", "1m 30s"), or a problem.
    pub fn duration(&mut self, v: &Val<'_>, what: &(impl Display + ?Sized)) -> Option<Duration> {
        let (s, span) = self.string(v, what)?;
        match humantime::parse_duration(&s) {
            Ok(d) => Some(d),
            Err(e) => {
                self.push(
                    Problem::at(span, format!("malformed duration `{s}` for `{what}`: {e}"))
                        .label("not a duration")
                        .help("write durations like \"250ms\", \"30s\", \"1m 30s\", \"2h\""),
                );
                None
            }
        }
    }

    /// An array of strings with spans, or a problem. A lone string counts as one element
    /// when `allow_single` is set.
    pub fn strings(
        &mut self,
        v: &Val<'_>,
        what: &(impl Display + ?Sized),
        allow_single: bool,
    ) -> Option<Vec<(String, Range<usize>)>> {
        match v.get_ref() {
            DeValue::String(s) if allow_single => Some(vec![(s.to_string(), v.span())]),
            DeValue::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                let mut ok = true;
                for item in items.iter() {
                    match self.string(item, what) {
                        Some(s) => out.push(s),
                        None => ok = false,
                    }
                }
                ok.then_some(out)
            }
            _ => {
                self.wrong_type(v, what, "an array of strings");
                None
            }
        }
    }

    /// A table of strings: (key, key span, value, value span).
    pub fn string_table(
        &mut self,
        v: &Val<'_>,
        what: &(impl Display + ?Sized),
    ) -> Option<Vec<StringEntry>> {
        let t = self.table(v, what)?;
        let mut out = Vec::with_capacity(t.len());
        for (k, val) in t.iter() {
            let name = format!("{what}.{}", k.get_ref());
            if let Some((s, span)) = self.string(val, &name) {
                out.push(StringEntry {
                    key: k.get_ref().to_string(),
                    key_span: k.span(),
                    value: s,
                    span,
                });
            }
        }
        Some(out)
    }

    /// Maps a byte range inside a string value back to the manifest text, escapes and line
    /// continuations included; the whole value when the text cannot be matched up.
    pub fn inner_span(
        &self,
        value_span: &Range<usize>,
        text: &str,
        inner: Range<usize>,
    ) -> Range<usize> {
        let raw = self.source.get(value_span.clone()).unwrap_or("");
        match super::string_offsets::decode(raw) {
            Some((decoded, offsets)) if decoded == text && inner.end < offsets.len() => {
                value_span.start + offsets[inner.start]..value_span.start + offsets[inner.end]
            }
            _ => value_span.clone(),
        }
    }
}

/// One entry of a string table.
#[derive(Debug, Clone)]
pub struct StringEntry {
    /// The key.
    pub key: String,
    /// Where the key is.
    pub key_span: Range<usize>,
    /// The value.
    pub value: String,
    /// Where the value is.
    pub span: Range<usize>,
}

fn parse_int(text: &str, radix: u32) -> Option<i64> {
    let cleaned: String = text.chars().filter(|c| *c != '_').collect();
    let (neg, digits) = match cleaned.strip_prefix('-') {
        Some(d) => (true, d.to_string()),
        None => (false, cleaned.trim_start_matches('+').to_string()),
    };
    let digits = if radix != 10 {
        digits.get(2..).unwrap_or("").to_string()
    } else {
        digits
    };
    let digits = if radix != 10 && i64::from_str_radix(&digits, radix).is_err() {
        cleaned
    } else {
        digits
    };
    let n = i64::from_str_radix(&digits, radix).ok()?;
    Some(if neg { -n } else { n })
}
