//! Strings that may still hold `${secret.NAME}` references after load-time interpolation.
//!
//! Secrets are resolved only when a task is about to run, so `check` and `plan` work without
//! them. A [`Template`] can only be shown redacted (`***`); the plain value comes out of
//! [`Template::expose`] (or, for a URL, [`Template::expose_url`], which percent-encodes each
//! secret for the component it lands in), which callers use only to hand it to a process or a
//! socket. What a task prints or reports passes through a [`Redactor`], which knows every form
//! of a secret's value (raw, percent-encoded, base64).

use std::fmt;

mod in_url;
mod redact;

pub use in_url::{COMPONENT, UrlPart, UrlSecretError};
pub use redact::{Redactor, secret_forms};

/// One piece of an interpolated string.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Segment {
    /// Text known at load time (vars and env already substituted).
    Literal(String),
    /// A `${secret.NAME}` reference, read from the environment at run time.
    Secret(String),
}

/// An interpolated string whose secrets are not yet resolved; `Display` redacts them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
pub struct Template {
    segments: Vec<Segment>,
}

/// A `${secret.NAME}` that is unset when a task needs it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("secret `{0}` is not set: export {0} in the environment taskrun runs in")]
pub struct MissingSecret(pub String);

impl Template {
    /// A template with no secrets.
    pub fn literal(text: impl Into<String>) -> Self {
        let text = text.into();
        if text.is_empty() {
            return Self::default();
        }
        Self {
            segments: vec![Segment::Literal(text)],
        }
    }

    /// Builds a template from pieces, merging adjacent literals.
    pub fn from_segments(segments: impl IntoIterator<Item = Segment>) -> Self {
        let mut out: Vec<Segment> = Vec::new();
        for seg in segments {
            match (out.last_mut(), seg) {
                (_, Segment::Literal(s)) if s.is_empty() => {}
                (Some(Segment::Literal(prev)), Segment::Literal(s)) => prev.push_str(&s),
                (_, seg) => out.push(seg),
            }
        }
        Self { segments: out }
    }

    /// The pieces, for code that must treat secrets specially (e.g. the cache key).
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// True when any `${secret.*}` appears; such values are left out of cache keys.
    pub fn has_secret(&self) -> bool {
        self.segments
            .iter()
            .any(|s| matches!(s, Segment::Secret(_)))
    }

    /// Names of the secrets this template needs.
    pub fn secret_names(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Secret(name) => Some(name.as_str()),
            Segment::Literal(_) => None,
        })
    }

    /// The text with secrets shown as `***`; what every log, plan and report prints.
    pub fn redacted(&self) -> String {
        self.to_string()
    }

    /// The text with each secret shown as its reference, `${secret.NAME}`: what may be
    /// written to a file meant to be committed (the lockfile), never a secret's value.
    pub fn with_secret_refs(&self) -> String {
        let mut out = String::new();
        for seg in &self.segments {
            match seg {
                Segment::Literal(s) => out.push_str(s),
                Segment::Secret(name) => {
                    out.push_str("${secret.");
                    out.push_str(name);
                    out.push('}');
                }
            }
        }
        out
    }

    /// The literal text when there is no secret; used where a secret is not allowed.
    pub fn as_literal(&self) -> Option<&str> {
        match self.segments.as_slice() {
            [] => Some(""),
            [Segment::Literal(s)] => Some(s),
            _ => None,
        }
    }

    /// The real value, secrets read through `lookup`; only for handing to a process or socket.
    pub fn expose_with(
        &self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<String, MissingSecret> {
        let mut out = String::new();
        for seg in &self.segments {
            match seg {
                Segment::Literal(s) => out.push_str(s),
                Segment::Secret(name) => {
                    out.push_str(&lookup(name).ok_or_else(|| MissingSecret(name.clone()))?)
                }
            }
        }
        Ok(out)
    }

    /// The real value with secrets read from the process environment.
    pub fn expose(&self) -> Result<String, MissingSecret> {
        self.expose_with(|name| std::env::var(name).ok())
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for seg in &self.segments {
            match seg {
                Segment::Literal(s) => f.write_str(s)?,
                Segment::Secret(_) => f.write_str("***")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_redacts_and_expose_resolves() {
        let t = Template::from_segments([
            Segment::Literal("Bearer ".into()),
            Segment::Secret("TOKEN".into()),
        ]);
        assert_eq!(t.to_string(), "Bearer ***");
        assert!(!format!("{t:?}").contains("hunter2"));
        let v = t.expose_with(|_| Some("hunter2".into())).unwrap();
        assert_eq!(v, "Bearer hunter2");
        assert_eq!(t.with_secret_refs(), "Bearer ${secret.TOKEN}");
        assert_eq!(
            t.expose_with(|_| None).unwrap_err(),
            MissingSecret("TOKEN".into())
        );
    }
}
