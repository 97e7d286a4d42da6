//! Which failures are worth another attempt (SPEC §3), and how transport errors read.

use std::error::Error as StdError;

use super::transport::Error;

/// Why an attempt (or one mirror within it) failed; the scheduler logs it as the reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// DNS, refused or reset connection, TLS handshake, or an error while sending.
    Connection,
    /// The server's TLS certificate failed verification (unknown issuer, expired, another
    /// name): not retried, the same certificate would come back.
    Certificate,
    /// The attempt's `timeout` elapsed (connect, headers or a stalled body), or
    /// `[http] read_timeout` passed without a byte.
    Timeout,
    /// The body ended (or the connection broke) before all announced bytes arrived.
    Truncated,
    /// The received bytes do not match the `sha256` pin.
    Checksum,
    /// The server answered with a status that is not a success.
    HttpStatus,
    /// The body is larger than `max_bytes`.
    TooLarge,
    /// A `${secret.*}` the request needs is not set.
    MissingSecret,
    /// A URL or header that cannot be sent, more than 10 redirects, or a malformed answer.
    Invalid,
    /// Reading or writing local files failed.
    Io,
}

impl FailureKind {
    /// A short word for logs and the report.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Connection => "connection error",
            FailureKind::Certificate => "certificate refused",
            FailureKind::Timeout => "timed out",
            FailureKind::Truncated => "truncated body",
            FailureKind::Checksum => "checksum mismatch",
            FailureKind::HttpStatus => "http status",
            FailureKind::TooLarge => "too large",
            FailureKind::MissingSecret => "missing secret",
            FailureKind::Invalid => "invalid request",
            FailureKind::Io => "i/o error",
        }
    }
}

/// True for the statuses SPEC §3 retries: 408, 425, 429, 500, 502, 503, 504.
///
/// Every other non-success status (any other 4xx, 501, 505, an unfollowed 3xx) fails at once:
/// asking again would get the same answer.
pub fn is_retryable_status(status: u16) -> bool {
    matches!(status, 408 | 425 | 429 | 500 | 502 | 503 | 504)
}

/// Classifies a transport error into a kind and whether it is retryable; both transports'
/// errors read the same.
///
/// `during_body` marks errors raised while reading the body: those are truncations (the
/// connection was cut or reset mid-transfer) unless they are timeouts.
pub(crate) fn classify_transport(err: &Error, during_body: bool) -> (FailureKind, bool) {
    let invalid = match err {
        Error::Proxied(e) => e.is_redirect() || e.is_builder(),
        Error::Invalid(_) => true,
        Error::Direct(_) | Error::DirectBody(_) | Error::ReadTimeout { .. } => false,
    };
    let body = match err {
        Error::Proxied(e) => e.is_body() || e.is_decode(),
        Error::DirectBody(_) => true,
        Error::Direct(_) | Error::Invalid(_) | Error::ReadTimeout { .. } => false,
    };
    if is_timeout(err) {
        (FailureKind::Timeout, true)
    } else if is_certificate_refusal(err) {
        (FailureKind::Certificate, false)
    } else if invalid {
        (FailureKind::Invalid, false)
    } else if during_body || body {
        (FailureKind::Truncated, true)
    } else {
        // Connect errors, resets while sending, protocol errors from a flaky peer.
        (FailureKind::Connection, true)
    }
}

/// reqwest's own verdict, or for hyper's errors (which have no such flag on the client
/// side) a timed-out I/O error anywhere in the chain: the connect timeout.
fn is_timeout(err: &Error) -> bool {
    match err {
        Error::Proxied(e) => return e.is_timeout(),
        Error::ReadTimeout { .. } => return true,
        _ => {}
    }
    let mut source: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::TimedOut
        {
            return true;
        }
        if cause
            .downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_timeout)
        {
            return true;
        }
        source = cause.source();
    }
    false
}

/// rustls refused the server's certificate. rustls' error travels inside (nested)
/// `io::Error`s, whose `source` skips their payload, so each payload is unwrapped too.
fn is_certificate_refusal(err: &Error) -> bool {
    fn refused(mut e: &(dyn StdError + 'static)) -> bool {
        loop {
            if let Some(rustls::Error::InvalidCertificate(_)) = e.downcast_ref::<rustls::Error>() {
                return true;
            }
            match e
                .downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
            {
                Some(inner) => e = inner,
                None => return false,
            }
        }
    }
    let mut source: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(cause) = source {
        if refused(cause) {
            return true;
        }
        source = cause.source();
    }
    false
}

/// The error and its causes on one line, without the URL (callers name the redacted mirror).
pub(crate) fn describe(err: Error) -> String {
    let err = match err {
        Error::Proxied(e) => Error::Proxied(e.without_url()),
        other => other,
    };
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_retryable_statuses() {
        for s in [408, 425, 429, 500, 502, 503, 504] {
            assert!(is_retryable_status(s), "{s}");
        }
        for s in [
            300, 304, 400, 401, 403, 404, 405, 410, 413, 416, 418, 451, 501, 505, 599,
        ] {
            assert!(!is_retryable_status(s), "{s}");
        }
    }
}
