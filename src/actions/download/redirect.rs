//! Following redirects above both transports, by the rules reqwest followed them with when it
//! did this itself, so that a chain may move between hyper (plain HTTP) and reqwest (HTTPS)
//! with one budget of redirects.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{StatusCode, Url};

use super::transport::{Error, Response, Transport};

/// At most this many redirects per request (SPEC §4).
pub(crate) const MAX_REDIRECTS: usize = 10;

/// Sends a GET for `url` and follows up to [`MAX_REDIRECTS`] redirects (301, 302, 303, 307,
/// 308 with a `Location` that resolves against the URL that answered); any other answer,
/// including a redirect without a usable `Location`, is returned as it is.
///
/// Credentials in `url` become basic auth unless `headers` has an `Authorization`. Every hop
/// sends `headers`, minus the credentials (`Authorization`, `Cookie`, ...) when its host or
/// port differs from the previous hop's; a 303 drops the payload headers for the rest of the
/// chain. No `Referer` is sent: the previous URL may carry a `${secret.*}` in its query, and
/// the next hop is chosen by the server, not by the manifest.
///
/// `asked` ends as the URL of the last request sent (a redirect's target): messages name
/// the server that failed, not the one that redirected.
pub(crate) async fn send(
    transport: &Transport,
    url: &Url,
    mut headers: HeaderMap,
    asked: &mut Url,
) -> Result<Response, Error> {
    let mut current = url.clone();
    if let Some(auth) = take_credentials(&mut current)
        && let header::Entry::Vacant(slot) = headers.entry(header::AUTHORIZATION)
    {
        slot.insert(auth);
    }
    let mut previous: Option<Url> = None;
    let mut followed = 0;
    loop {
        let mut hop = headers.clone();
        if let Some(prev) = &previous {
            strip_credentials(&mut hop, &current, prev);
        }
        asked.clone_from(&current);
        let resp = transport.get(&current, hop).await?;
        let Some(next) = location(&resp, &current) else {
            return Ok(resp);
        };
        if followed >= MAX_REDIRECTS {
            return Err(Error::Invalid(
                "error following redirect: too many redirects".into(),
            ));
        }
        if !matches!(next.scheme(), "http" | "https") {
            let msg = format!(
                "error following redirect: unsupported URL scheme `{}`",
                next.scheme()
            );
            return Err(Error::Invalid(msg));
        }
        if resp.status() == StatusCode::SEE_OTHER {
            for name in [
                header::CONTENT_TYPE,
                header::CONTENT_LENGTH,
                header::CONTENT_ENCODING,
                header::TRANSFER_ENCODING,
            ] {
                headers.remove(name);
            }
        }
        followed += 1;
        previous = Some(std::mem::replace(&mut current, next));
    }
}

/// Where a redirect points, resolved against `base`; `None` when `resp` is not one to follow.
fn location(resp: &Response, base: &Url) -> Option<Url> {
    let code = resp.status().as_u16();
    if !matches!(code, 301 | 302 | 303 | 307 | 308) {
        return None;
    }
    let value = resp.headers().get(header::LOCATION)?;
    base.join(std::str::from_utf8(value.as_bytes()).ok()?).ok()
}

/// Removes the user and password from `url`, returning them as a basic-auth value (marked
/// sensitive).
fn take_credentials(url: &mut Url) -> Option<HeaderValue> {
    if url.username().is_empty() && url.password().is_none() {
        return None;
    }
    let user = percent_encoding::percent_decode_str(url.username())
        .decode_utf8()
        .ok()?
        .into_owned();
    let password = url.password().and_then(|p| {
        percent_encoding::percent_decode_str(p)
            .decode_utf8()
            .ok()
            .map(|p| p.into_owned())
    });
    url.set_username("").ok()?;
    url.set_password(None).ok()?;
    let pair = format!("{user}:{}", password.unwrap_or_default());
    let mut value = HeaderValue::from_str(&format!("Basic {}", BASE64.encode(pair))).ok()?;
    value.set_sensitive(true);
    Some(value)
}

/// Drops the credentials of `headers` when `next` is on another host or port than `prev`.
fn strip_credentials(headers: &mut HeaderMap, next: &Url, prev: &Url) {
    if next.host_str() != prev.host_str()
        || next.port_or_known_default() != prev.port_or_known_default()
    {
        for name in [
            header::AUTHORIZATION,
            header::COOKIE,
            header::PROXY_AUTHORIZATION,
            header::WWW_AUTHENTICATE,
        ] {
            headers.remove(name);
        }
        headers.remove("cookie2");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn credentials_become_basic_auth() {
        let mut u = url("http://us%20er:p%40ss@127.0.0.1:8/x");
        let auth = take_credentials(&mut u).unwrap();
        assert_eq!(u.as_str(), "http://127.0.0.1:8/x");
        // base64("us er:p@ss")
        assert_eq!(auth.to_str().unwrap(), "Basic dXMgZXI6cEBzcw==");
        assert!(auth.is_sensitive());
        let mut user_only = url("http://me@127.0.0.1/");
        let auth = take_credentials(&mut user_only).unwrap();
        assert_eq!(auth.to_str().unwrap(), "Basic bWU6");
        assert!(take_credentials(&mut url("http://127.0.0.1/")).is_none());
    }

    #[test]
    fn credentials_stay_on_the_same_host_and_port() {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("a"));
        h.insert(header::COOKIE, HeaderValue::from_static("c"));
        h.insert("x-other", HeaderValue::from_static("o"));
        let from = url("http://127.0.0.1:80/a");
        let mut same = h.clone();
        strip_credentials(&mut same, &url("http://127.0.0.1/b"), &from);
        assert_eq!(same.len(), 3);
        let mut other_port = h.clone();
        strip_credentials(&mut other_port, &url("http://127.0.0.1:81/b"), &from);
        assert_eq!(other_port.len(), 1);
        let mut other_host = h;
        strip_credentials(&mut other_host, &url("http://127.0.0.2/b"), &from);
        assert!(other_host.contains_key("x-other") && other_host.len() == 1);
    }
}
