//! Transport errors said as a person would: "connection refused by 127.0.0.1:8765", not
//! hyper's chain ("client error (Connect): tcp connect error: Connection refused (os error
//! 111)"). Only the words change; `classify` decides retryable or not from the error itself.

use std::error::Error as StdError;
use std::io::ErrorKind;

use super::transport::Error;

/// The error in plain words, naming `peer` (`host:port` of the URL asked); an error not
/// recognised keeps its chain (see [`super::classify::describe`]).
pub(crate) fn plain(err: &Error, host: &str, peer: &str) -> Option<String> {
    if matches!(err, Error::Invalid(_) | Error::ReadTimeout { .. }) {
        return None; // already written for people
    }
    if let Some(tls) = rustls_error(err) {
        return Some(match tls {
            rustls::Error::InvalidCertificate(why) => {
                format!("the TLS certificate of {peer} is not trusted ({why:?})")
            }
            other => format!("the TLS handshake with {peer} failed: {other}"),
        });
    }
    if is_timeout(err) {
        return Some(if is_connect(err) {
            format!("timed out connecting to {peer}")
        } else {
            format!("timed out waiting for {peer}")
        });
    }
    if chain(err).any(|e| e.to_string().contains("dns error")) {
        let why = chain(err)
            .filter_map(|e| e.downcast_ref::<std::io::Error>())
            .map(ToString::to_string)
            .last()
            .unwrap_or_else(|| "no such host".into());
        return Some(format!("cannot resolve host {host}: {why}"));
    }
    if let Some(kind) = chain(err)
        .filter_map(|e| e.downcast_ref::<std::io::Error>())
        .map(std::io::Error::kind)
        .find(|k| *k != ErrorKind::Other)
    {
        let text = match kind {
            ErrorKind::ConnectionRefused => format!("connection refused by {peer}"),
            ErrorKind::ConnectionReset => format!("connection reset by {peer}"),
            ErrorKind::ConnectionAborted => format!("connection aborted by {peer}"),
            ErrorKind::BrokenPipe | ErrorKind::UnexpectedEof => {
                format!("{peer} closed the connection")
            }
            ErrorKind::HostUnreachable => format!("{peer} is unreachable (no route to host)"),
            ErrorKind::NetworkUnreachable => format!("{peer} is unreachable (network down)"),
            ErrorKind::AddrNotAvailable => format!("cannot connect to {peer}: address unavailable"),
            _ => return None,
        };
        return Some(text);
    }
    let closed = chain(err)
        .filter_map(|e| e.downcast_ref::<hyper::Error>())
        .any(|e| e.is_incomplete_message() || e.is_closed());
    closed.then(|| format!("{peer} closed the connection before a complete response"))
}

/// The error and every cause, io errors' payloads included.
fn chain<'a>(err: &'a Error) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    let mut next: Option<&'a (dyn StdError + 'static)> = Some(err);
    std::iter::from_fn(move || {
        let cur = next?;
        // An io::Error's `source` skips its payload, which may hold the real cause.
        next = cur
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .map(|inner| inner as &(dyn StdError + 'static))
            .or_else(|| cur.source());
        Some(cur)
    })
}

fn rustls_error(err: &Error) -> Option<&rustls::Error> {
    chain(err).find_map(|e| e.downcast_ref::<rustls::Error>())
}

fn is_timeout(err: &Error) -> bool {
    if let Error::Proxied(e) = err
        && e.is_timeout()
    {
        return true;
    }
    chain(err).any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == ErrorKind::TimedOut)
            || e.downcast_ref::<hyper::Error>()
                .is_some_and(hyper::Error::is_timeout)
    })
}

fn is_connect(err: &Error) -> bool {
    match err {
        Error::Proxied(e) => e.is_connect(),
        Error::Direct(e) => e.is_connect(),
        _ => false,
    }
}
