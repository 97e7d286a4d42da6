//! Following redirects above both transports, by the rules reqwest followed them with when it
//! did this itself (stricter with credentials: see [`send`]), so that a chain may move between
//! hyper (plain HTTP) and reqwest (HTTPS) with one budget of redirects.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};
use reqwest::{StatusCode, Url};
use url::Origin;

use super::transport::{Error, Response, Transport};

/// At most this many redirects per request (SPEC §4).
pub(crate) const MAX_REDIRECTS: usize = 10;

/// Sends a GET for `url` and follows up to [`MAX_REDIRECTS`] redirects (301, 302, 303, 307,
/// 308 with a `Location` that resolves against the URL that answered); any other answer,
/// including a redirect without a usable `Location`, is returned as it is.
///
/// Credentials in `url` become basic auth unless `headers` has an `Authorization`. Every hop
/// sends `headers`, minus the credentials when it is not on the origin (scheme, host, port)
/// of `url`: the manifest named that server, the next one is chosen by a server, and an https
/// → http hop would carry them in clear text. The credentials are `Authorization`, `Cookie`
/// and every value marked sensitive (a `${secret.*}` in the manifest, see `build_headers`);
/// other custom headers follow, as curl keeps them. A 303 drops the payload headers for the
/// rest of the chain. No `Referer` is sent: the previous URL may carry a `${secret.*}` in its
/// query, and the next hop is chosen by the server, not by the manifest.
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
    // Against the first URL, not the previous hop: after a hop to another server, that
    // server's redirect to itself is no more trusted than its first answer.
    let origin = current.origin();
    let mut followed = 0;
    loop {
        let hop = for_hop(&headers, &current, &origin);
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
        current = next;
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

/// `headers` for a request to `hop`: all of them on `origin` (the first URL's), without the
/// credentials anywhere else.
fn for_hop(headers: &HeaderMap, hop: &Url, origin: &Origin) -> HeaderMap {
    let mut out = headers.clone();
    if hop.origin() != *origin {
        strip_credentials(&mut out);
    }
    out
}

/// Drops the credentials of `headers`: the usual ones and every sensitive value.
fn strip_credentials(headers: &mut HeaderMap) {
    for name in [
        header::AUTHORIZATION,
        header::COOKIE,
        header::PROXY_AUTHORIZATION,
        header::WWW_AUTHENTICATE,
    ] {
        headers.remove(name);
    }
    headers.remove("cookie2");
    let secret: Vec<HeaderName> = headers
        .iter()
        .filter(|(_, value)| value.is_sensitive())
        .map(|(name, _)| name.clone())
        .collect();
    for name in secret {
        headers.remove(name);
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
    fn credentials_stay_on_the_first_origin() {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("a"));
        h.insert(header::COOKIE, HeaderValue::from_static("c"));
        let mut key = HeaderValue::from_static("k");
        key.set_sensitive(true);
        h.insert("x-api-key", key);
        h.insert("x-other", HeaderValue::from_static("o"));
        let origin = url("https://127.0.0.1:443/a").origin();
        let kept = |to: &str| {
            let mut names: Vec<String> = for_hop(&h, &url(to), &origin)
                .keys()
                .map(|n| n.to_string())
                .collect();
            names.sort();
            names
        };
        assert_eq!(kept("https://127.0.0.1/b").len(), 4);
        for elsewhere in [
            "https://127.0.0.1:444/b",
            "https://127.0.0.2/b",
            "http://127.0.0.1:443/b",
            "http://127.0.0.1/b",
        ] {
            assert_eq!(kept(elsewhere), ["x-other"], "{elsewhere}");
        }
    }
}
