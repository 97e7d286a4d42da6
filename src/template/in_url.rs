//! `${secret.*}` inside a URL (SPEC §13): each value is percent-encoded for the component it
//! lands in, so no value can change the host, port or path a request goes to.
//!
//! Where a secret lands is decided by the text around it, never by its value: the literal
//! text before it (with earlier secrets already encoded, so they hold no delimiter) and, in
//! the authority, whether an `@` follows before the path starts. A secret in the scheme, host
//! or port is refused; so is one that would make a whole `.` or `..` path segment (which URL
//! parsers resolve, encoded or not).

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

use super::{MissingSecret, Segment, Template};

/// Everything but RFC 3986's unreserved characters (`A-Z a-z 0-9 - . _ ~`) becomes `%XX`:
/// safe in the user, password, a path segment, a query value and the fragment alike, and
/// decoded to the same bytes by percent- and form-decoders (a space is `%20`, `+` is `%2B`).
pub const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The component of a URL a secret lands in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UrlPart {
    /// User or password, before the authority's `@`.
    Userinfo,
    /// After the host, before `?` or `#`.
    Path,
    /// After `?`.
    Query,
    /// After `#` (never sent).
    Fragment,
}

/// A URL's secrets cannot be resolved safely.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlSecretError {
    /// A secret is not set.
    #[error(transparent)]
    Missing(#[from] MissingSecret),
    /// A secret sits where it would choose where the request goes.
    #[error(
        "`${{secret.{name}}}` is in the URL's {place}: a secret may only be in the user, \
         password, path, query or fragment, where it is percent-encoded"
    )]
    Misplaced {
        /// The secret's name.
        name: String,
        /// `scheme` or `host or port`.
        place: &'static str,
    },
    /// A secret's value would make a whole `.` or `..` path segment.
    #[error(
        "the value of `${{secret.{name}}}` makes a `.` or `..` path segment, which would change the path"
    )]
    DotSegment {
        /// The secret's name.
        name: String,
    },
}

/// The component at the end of `before` (the URL up to the secret), given the literal text
/// `after` it (other secrets there stand as plain letters).
fn part_at(before: &str, after: &str) -> Result<UrlPart, &'static str> {
    let ends = ['/', '\\', '?', '#'];
    let Some(sep) = before.find("://") else {
        return Err("scheme");
    };
    let rest = &before[sep + 3..];
    match rest.find(ends) {
        None => {
            let authority_rest = &after[..after.find(ends).unwrap_or(after.len())];
            if !rest.contains('@') && authority_rest.contains('@') {
                Ok(UrlPart::Userinfo)
            } else {
                Err("host or port")
            }
        }
        Some(i) if rest[i..].contains('#') => Ok(UrlPart::Fragment),
        Some(i) if rest[i..].contains('?') => Ok(UrlPart::Query),
        Some(_) => Ok(UrlPart::Path),
    }
}

/// The segments after `index`, secrets standing as a letter.
fn rest_text(segments: &[Segment], index: usize) -> String {
    segments[index + 1..]
        .iter()
        .map(|s| match s {
            Segment::Literal(t) => t.as_str(),
            Segment::Secret(_) => "x",
        })
        .collect()
}

/// Whether the path segment around `range` of `url` is `.` or `..` (in any encoding).
fn is_dot_segment(url: &str, range: std::ops::Range<usize>) -> bool {
    let start = url[..range.start].rfind(['/', '\\']).map_or(0, |i| i + 1);
    let end = url[range.end..]
        .find(['/', '\\', '?', '#'])
        .map_or(url.len(), |i| range.end + i);
    let decoded = percent_decode_str(&url[start..end]).collect::<Vec<u8>>();
    decoded == b"." || decoded == b".."
}

impl Template {
    /// Where each secret of this URL lands; an error for one in the scheme, host or port.
    /// Needs no secret values, so `check` reports it at load time.
    pub fn url_secret_parts(&self) -> Result<Vec<UrlPart>, UrlSecretError> {
        let mut before = String::new();
        let mut parts = Vec::new();
        for (i, seg) in self.segments.iter().enumerate() {
            match seg {
                Segment::Literal(t) => before.push_str(t),
                Segment::Secret(name) => {
                    let part =
                        part_at(&before, &rest_text(&self.segments, i)).map_err(|place| {
                            UrlSecretError::Misplaced {
                                name: name.clone(),
                                place,
                            }
                        })?;
                    parts.push(part);
                    before.push('x');
                }
            }
        }
        Ok(parts)
    }

    /// The URL to request: secrets read through `lookup`, each percent-encoded (see
    /// [`COMPONENT`]) for the component it lands in.
    pub fn expose_url_with(
        &self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<String, UrlSecretError> {
        let mut out = String::new();
        let mut in_path = Vec::new();
        for (i, seg) in self.segments.iter().enumerate() {
            match seg {
                Segment::Literal(t) => out.push_str(t),
                Segment::Secret(name) => {
                    let misplaced = |place| UrlSecretError::Misplaced {
                        name: name.clone(),
                        place,
                    };
                    let part = part_at(&out, &rest_text(&self.segments, i)).map_err(misplaced)?;
                    let value = lookup(name).ok_or_else(|| MissingSecret(name.clone()))?;
                    let start = out.len();
                    out.extend(utf8_percent_encode(&value, COMPONENT));
                    if part == UrlPart::Path {
                        in_path.push((name, start..out.len()));
                    }
                }
            }
        }
        match in_path
            .into_iter()
            .find(|(_, range)| is_dot_segment(&out, range.clone()))
        {
            Some((name, _)) => Err(UrlSecretError::DotSegment { name: name.clone() }),
            None => Ok(out),
        }
    }

    /// [`Template::expose_url_with`] with secrets read from the process environment.
    pub fn expose_url(&self) -> Result<String, UrlSecretError> {
        self.expose_url_with(|name| std::env::var(name).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tpl(parts: &[&str]) -> Template {
        // Odd positions are secrets named S0, S1, ...
        Template::from_segments(parts.iter().enumerate().map(|(i, p)| {
            if i % 2 == 1 {
                Segment::Secret((*p).to_string())
            } else {
                Segment::Literal((*p).to_string())
            }
        }))
    }

    fn expose(parts: &[&str], value: &str) -> Result<String, UrlSecretError> {
        tpl(parts).expose_url_with(|_| Some(value.to_string()))
    }

    #[test]
    fn each_secret_is_encoded_for_where_it_lands() {
        let v = "p@h:1/x?y#z %+";
        let enc = "p%40h%3A1%2Fx%3Fy%23z%20%25%2B";
        let cases = [
            (["http://u:", "S", "@127.0.0.1:1/ok"], UrlPart::Userinfo),
            (["http://", "S", ":pw@127.0.0.1/ok"], UrlPart::Userinfo),
            (["http://h/a/", "S", "/b"], UrlPart::Path),
            (["http://h/a?k=", "S", "&n=1"], UrlPart::Query),
            (["http://h/a#", "S", ""], UrlPart::Fragment),
            (["http://h/a#x?", "S", ""], UrlPart::Fragment),
        ];
        for (parts, want) in cases {
            assert_eq!(tpl(&parts).url_secret_parts().unwrap(), [want], "{parts:?}");
            let url = expose(&parts, v).unwrap();
            assert_eq!(url, format!("{}{enc}{}", parts[0], parts[2]));
            let parsed = url::Url::parse(&url).unwrap();
            assert_eq!(
                parsed.host_str(),
                Some(if parts[0].contains("//h") {
                    "h"
                } else {
                    "127.0.0.1"
                })
            );
        }
    }

    #[test]
    fn a_secret_in_the_scheme_host_or_port_is_refused() {
        for parts in [
            ["", "S", "://h/x"],
            ["http://", "S", "/x"],
            ["http://h:", "S", "/x"],
            ["http://u@", "S", "/x"],
            ["http://u:p@h", "S", ""],
            ["", "S", ""],
        ] {
            let err = tpl(&parts).url_secret_parts().unwrap_err();
            assert!(matches!(err, UrlSecretError::Misplaced { .. }), "{parts:?}");
            assert!(expose(&parts, "v").is_err(), "{parts:?}");
        }
    }

    #[test]
    fn a_secret_cannot_make_a_dot_segment() {
        for v in [".", "..", "%2e", ".%2E"] {
            let err = expose(&["http://h/a/", "S", "/b"], v);
            let ok = v.contains('%');
            // An encoded `%` stays data (`%252e`); a bare dot or two would be resolved.
            assert_eq!(err.is_ok(), ok, "{v}: {err:?}");
        }
        assert!(expose(&["http://h/a/", "S", "x/b"], "..").is_ok());
        assert!(expose(&["http://h/a?k=", "S", ""], "..").is_ok());
    }
}
