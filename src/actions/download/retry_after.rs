//! `Retry-After` parsing (RFC 9110 §10.2.3): delay-seconds or an HTTP date.

use std::time::{Duration, SystemTime};

/// The wait a server asked for, measured from `now`.
///
/// Accepts delay-seconds (`"120"`) or an HTTP date (`"Wed, 21 Oct 2015 07:28:00 GMT"`, and the
/// two obsolete date forms). A date in the past means "now" (zero). Anything else, including
/// negative or fractional seconds, is ignored (`None`) so the scheduler falls back to its own
/// backoff. The caller caps the result by `max_delay`.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    if value.bytes().all(|b| b.is_ascii_digit()) {
        // Absurdly long digit strings saturate rather than fail: the cap applies anyway.
        let secs = value.parse::<u64>().unwrap_or(u64::MAX);
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn seconds() {
        assert_eq!(parse_retry_after("0", at(0)), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after(" 120 ", at(0)),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("99999999999999999999999", at(0)),
            Some(Duration::from_secs(u64::MAX))
        );
    }

    #[test]
    fn http_date_in_the_future_and_past() {
        // Sun, 06 Nov 1994 08:49:37 GMT = 784111777
        let date = "Sun, 06 Nov 1994 08:49:37 GMT";
        assert_eq!(
            parse_retry_after(date, at(784_111_777 - 30)),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after(date, at(784_111_777 + 30)),
            Some(Duration::ZERO)
        );
        // The obsolete RFC 850 and asctime forms are accepted too.
        assert_eq!(
            parse_retry_after("Sunday, 06-Nov-94 08:49:37 GMT", at(784_111_777 - 5)),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            parse_retry_after("Sun Nov  6 08:49:37 1994", at(784_111_777 - 5)),
            Some(Duration::from_secs(5))
        );
    }

    #[test]
    fn a_date_far_ahead_is_a_long_wait_for_the_cap_to_bound() {
        let v = "Fri, 31 Dec 9999 23:59:59 GMT";
        let wait = parse_retry_after(v, at(1_800_000_000));
        let millennium = Duration::from_secs(86400 * 365 * 1000);
        assert!(wait.is_some_and(|w| w > millennium), "{wait:?}");
        // A weekday that is not the date's makes it no date (RFC 9110 §5.6.7): ignored.
        assert_eq!(
            parse_retry_after("Wed, 31 Dec 9999 23:59:59 GMT", at(0)),
            None
        );
    }

    #[test]
    fn garbage_is_ignored() {
        for v in [
            "",
            "  ",
            "-1",
            "1.5",
            "soon",
            "Sun, 99 Nov 1994 08:49:37 GMT",
            "12s",
        ] {
            assert_eq!(parse_retry_after(v, at(0)), None, "{v:?}");
        }
    }
}
