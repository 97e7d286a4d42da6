//! `retry = 4` or `retry = { ... }`, merged field by field over the defaults (SPEC §3).

use toml::de::DeValue;

use super::diagnostic::Problem;
use super::keys;
use super::walk::{Reader, Val, get};
use crate::model::{Jitter, RetryPolicy};

/// Applies a `retry` value (an int or a table) over `policy`, field by field.
pub fn apply_retry(
    r: &mut Reader<'_>,
    v: &Val<'_>,
    policy: &mut RetryPolicy,
    what: &(impl std::fmt::Display + ?Sized),
) {
    let max_attempts = |r: &mut Reader<'_>, v: &Val<'_>| -> Option<u32> {
        let n = r.integer(v, &format!("{what}.max_attempts"))?;
        if n < 1 {
            r.push(Problem::at(v.span(), format!("`max_attempts = {n}` would never run the task")).label("must be at least 1").help("max_attempts is the total number of attempts, including the first; 1 means no retry"));
            return None;
        }
        match u32::try_from(n) {
            Ok(n) => Some(n),
            Err(_) => {
                r.push(
                    Problem::at(
                        v.span(),
                        format!("`{what}.max_attempts` must be between 1 and {}", u32::MAX),
                    )
                    .label(format!("{n} is out of range")),
                );
                None
            }
        }
    };
    match v.get_ref() {
        DeValue::Integer(_) => {
            if let Some(n) = max_attempts(r, v) {
                policy.max_attempts = n;
            }
        }
        DeValue::Table(t) => {
            r.check_keys(t, keys::RETRY, &format!("`{what}`"));
            if let Some(n) = get(t, "max_attempts").and_then(|v| max_attempts(r, v)) {
                policy.max_attempts = n;
            }
            if let Some(d) = get(t, "initial_delay")
                .and_then(|v| r.duration(v, &format!("{what}.initial_delay")))
            {
                policy.initial_delay = d;
            }
            if let Some(d) =
                get(t, "max_delay").and_then(|v| r.duration(v, &format!("{what}.max_delay")))
            {
                policy.max_delay = d;
            }
            if let Some(d) =
                get(t, "max_elapsed").and_then(|v| r.duration(v, &format!("{what}.max_elapsed")))
            {
                policy.max_elapsed = Some(d);
            }
            if let Some(fv) = get(t, "factor")
                && let Some(f) = r.number(fv, &format!("{what}.factor"))
            {
                if f.is_finite() && f >= 1.0 {
                    policy.factor = f;
                } else if !f.is_finite() {
                    r.push(
                        Problem::at(fv.span(), format!("`factor = {f}` is not a finite number"))
                            .label("no wait can be computed from it")
                            .help(
                                "1.0 keeps the wait constant; 2.0 doubles it; `max_delay` caps it",
                            ),
                    );
                } else {
                    r.push(
                        Problem::at(fv.span(), format!("`factor = {f}` must be at least 1.0"))
                            .label("waits would shrink")
                            .help("1.0 keeps the wait constant; 2.0 doubles it"),
                    );
                }
            }
            if let Some((s, span)) =
                get(t, "jitter").and_then(|v| r.string(v, &format!("{what}.jitter")))
            {
                match s.as_str() {
                    "none" => policy.jitter = Jitter::None,
                    "full" => policy.jitter = Jitter::Full,
                    "equal" => policy.jitter = Jitter::Equal,
                    other => r.push(
                        Problem::at(
                            span,
                            format!(
                                "`jitter` must be \"none\", \"full\" or \"equal\", not \"{other}\""
                            ),
                        )
                        .label("unknown jitter"),
                    ),
                }
            }
            if let Some(ev) = get(t, "exit_codes") {
                match ev.get_ref() {
                    DeValue::Array(items) => {
                        let codes: Vec<i32> = items
                            .iter()
                            .filter_map(|i| r.integer_in(i, &format!("{what}.exit_codes"), 1, 255))
                            .map(|n| n as i32)
                            .collect();
                        policy.exit_codes = Some(codes);
                    }
                    _ => r.push(
                        Problem::at(
                            ev.span(),
                            "`exit_codes` must be an array of exit codes, e.g. [1, 75]",
                        )
                        .label("wrong type"),
                    ),
                }
            }
        }
        _ => r.push(
            Problem::at(
                v.span(),
                format!("`{what}` must be a number of attempts or a table"),
            )
            .label("wrong type")
            .help("e.g. `retry = 3` or `retry = { max_attempts = 3, initial_delay = \"1s\" }`"),
        ),
    }
}
