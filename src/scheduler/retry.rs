//! The retry schedule of SPEC §3: which failures are retried, and how long to wait.
//!
//! Kept apart from the run loop so the arithmetic (factor, cap, jitter, `max_elapsed`,
//! `Retry-After`) is tested on its own, on paused tokio time.

use std::time::Duration;

use rand::Rng;

use crate::model::{Jitter, RetryPolicy};

/// What the loop does after a failed attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Wait this long (no slot held), then start attempt `next`.
    Retry {
        /// The attempt number that comes next (2 = the first retry).
        next: u32,
        /// The wait chosen.
        wait: Duration,
    },
    /// The failure is final; `why` explains when it is not the attempt's own error.
    GiveUp {
        /// Why no further attempt is made (e.g. "3 of 3 attempts used").
        why: String,
    },
}

/// Facts about a failed attempt that decide whether it may be retried.
#[derive(Debug, Clone, Default)]
pub struct Failure {
    /// The attempt that failed (1-based).
    pub attempt: u32,
    /// Whether this kind of failure is retryable at all (timeouts and most exits are).
    pub retryable: bool,
    /// A command's exit code, checked against `exit_codes`.
    pub exit_code: Option<i32>,
    /// A command ended by a signal it was not sent by its timeout: no exit code to find in
    /// `exit_codes`, so not retried when they are listed.
    pub by_signal: bool,
    /// A server's `Retry-After`, which replaces the computed wait (capped, no jitter).
    pub retry_after: Option<Duration>,
}

/// The computed wait before attempt `next`, jittered.
pub fn wait_before(policy: &RetryPolicy, next: u32, rng: &mut impl Rng) -> Duration {
    let base = policy.base_delay(next);
    match policy.jitter {
        Jitter::None => base,
        Jitter::Full => mul(base, rng.random::<f64>()),
        Jitter::Equal => {
            let half = base / 2;
            half + mul(half, rng.random::<f64>())
        }
    }
}

fn mul(d: Duration, f: f64) -> Duration {
    Duration::try_from_secs_f64(d.as_secs_f64() * f).unwrap_or(d)
}

/// Decides what follows a failed attempt, `elapsed` after the first attempt started.
pub fn decide(
    policy: &RetryPolicy,
    failure: &Failure,
    elapsed: Duration,
    rng: &mut impl Rng,
) -> Decision {
    if !failure.retryable {
        return Decision::GiveUp {
            why: "not retryable".into(),
        };
    }
    if let (Some(codes), Some(code)) = (&policy.exit_codes, failure.exit_code)
        && !codes.contains(&code)
    {
        return Decision::GiveUp {
            why: format!("exit code {code} is not in retry.exit_codes"),
        };
    }
    if policy.exit_codes.is_some() && failure.by_signal {
        return Decision::GiveUp {
            why: "killed by a signal, not an exit code in retry.exit_codes".into(),
        };
    }
    if failure.attempt >= policy.max_attempts {
        return Decision::GiveUp {
            why: format!(
                "{} of {} attempts used",
                failure.attempt, policy.max_attempts
            ),
        };
    }
    let next = failure.attempt + 1;
    let wait = match failure.retry_after {
        Some(after) => after.min(policy.max_delay),
        None => wait_before(policy, next, rng),
    };
    if let Some(limit) = policy.max_elapsed
        && elapsed + wait > limit
    {
        return Decision::GiveUp {
            why: format!(
                "retry.max_elapsed ({}) would be exceeded",
                humantime::format_duration(limit)
            ),
        };
    }
    Decision::Retry { next, wait }
}

/// A retry wait in whole milliseconds (as reported in `wait_ms`).
pub fn retry_wait_ms(wait: std::time::Duration) -> u64 {
    super::state::millis(wait)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TaskKind;
    use rand::SeedableRng;
    use rand::rngs::StdRng;
    use tokio::time::Instant;

    fn policy(max: u32, jitter: Jitter) -> RetryPolicy {
        RetryPolicy {
            max_attempts: max,
            initial_delay: Duration::from_millis(500),
            factor: 2.0,
            max_delay: Duration::from_secs(3),
            jitter,
            ..RetryPolicy::default_for(TaskKind::Command)
        }
    }

    fn failed(attempt: u32) -> Failure {
        Failure {
            attempt,
            retryable: true,
            exit_code: Some(1),
            by_signal: false,
            retry_after: None,
        }
    }

    /// Drives the schedule the way the run loop does, on tokio's clock.
    async fn drive(p: &RetryPolicy, rng: &mut StdRng) -> (u32, Vec<Duration>) {
        let start = Instant::now();
        let mut attempt = 1;
        let mut waits = Vec::new();
        loop {
            match decide(p, &failed(attempt), start.elapsed(), rng) {
                Decision::Retry { next, wait } => {
                    waits.push(wait);
                    tokio::time::sleep(wait).await;
                    attempt = next;
                }
                Decision::GiveUp { .. } => return (attempt, waits),
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn exponential_without_jitter_is_capped() {
        let p = policy(6, Jitter::None);
        let start = Instant::now();
        let (attempts, waits) = drive(&p, &mut StdRng::seed_from_u64(1)).await;
        assert_eq!(attempts, 6);
        let ms: Vec<u128> = waits.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, vec![500, 1000, 2000, 3000, 3000]);
        assert_eq!(start.elapsed(), Duration::from_millis(9500));
    }

    #[tokio::test(start_paused = true)]
    async fn factor_one_is_constant() {
        let p = RetryPolicy {
            factor: 1.0,
            ..policy(4, Jitter::None)
        };
        let (_, waits) = drive(&p, &mut StdRng::seed_from_u64(1)).await;
        assert_eq!(waits, vec![Duration::from_millis(500); 3]);
    }

    #[tokio::test(start_paused = true)]
    async fn full_jitter_stays_below_the_base() {
        let p = policy(6, Jitter::Full);
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..50 {
            let (_, waits) = drive(&p, &mut rng).await;
            for (i, w) in waits.iter().enumerate() {
                assert!(*w <= p.base_delay(i as u32 + 2), "{w:?}");
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn equal_jitter_is_at_least_half() {
        let p = policy(6, Jitter::Equal);
        let mut rng = StdRng::seed_from_u64(9);
        for _ in 0..50 {
            let (_, waits) = drive(&p, &mut rng).await;
            for (i, w) in waits.iter().enumerate() {
                let base = p.base_delay(i as u32 + 2);
                assert!(*w >= base / 2 && *w <= base, "{w:?} vs {base:?}");
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn max_elapsed_stops_retrying() {
        // Waits 0.5, 1, 2 → elapsed 3.5 s; the next wait (3 s) would pass 5 s.
        let p = RetryPolicy {
            max_elapsed: Some(Duration::from_secs(5)),
            ..policy(10, Jitter::None)
        };
        let start = Instant::now();
        let (attempts, _) = drive(&p, &mut StdRng::seed_from_u64(1)).await;
        assert_eq!(attempts, 4);
        assert_eq!(start.elapsed(), Duration::from_millis(3500));
    }

    #[test]
    fn exit_codes_limit_what_is_retried() {
        let p = RetryPolicy {
            exit_codes: Some(vec![75]),
            ..policy(3, Jitter::None)
        };
        let mut rng = StdRng::seed_from_u64(1);
        let d = decide(&p, &failed(1), Duration::ZERO, &mut rng);
        assert!(matches!(d, Decision::GiveUp { why } if why.contains("exit code 1")));
        let killed = Failure {
            exit_code: None,
            by_signal: true,
            ..failed(1)
        };
        let d = decide(&p, &killed, Duration::ZERO, &mut rng);
        assert!(matches!(d, Decision::GiveUp { why } if why.contains("signal")));
        let unlisted = RetryPolicy {
            exit_codes: None,
            ..p.clone()
        };
        let d = decide(&unlisted, &killed, Duration::ZERO, &mut rng);
        assert!(matches!(d, Decision::Retry { .. }), "{d:?}");
        let f = Failure {
            exit_code: Some(75),
            ..failed(1)
        };
        assert!(matches!(
            decide(&p, &f, Duration::ZERO, &mut rng),
            Decision::Retry { next: 2, .. }
        ));
        // A timeout has no exit code: retried whatever exit_codes says.
        let t = Failure {
            exit_code: None,
            ..failed(1)
        };
        assert!(matches!(
            decide(&p, &t, Duration::ZERO, &mut rng),
            Decision::Retry { .. }
        ));
    }

    #[test]
    fn retry_after_replaces_the_wait_and_is_capped() {
        let p = policy(3, Jitter::Full);
        let mut rng = StdRng::seed_from_u64(1);
        let f = Failure {
            retry_after: Some(Duration::from_secs(2)),
            ..failed(1)
        };
        assert_eq!(
            decide(&p, &f, Duration::ZERO, &mut rng),
            Decision::Retry {
                next: 2,
                wait: Duration::from_secs(2)
            }
        );
        let f = Failure {
            retry_after: Some(Duration::from_secs(100)),
            ..failed(1)
        };
        assert_eq!(
            decide(&p, &f, Duration::ZERO, &mut rng),
            Decision::Retry {
                next: 2,
                wait: Duration::from_secs(3)
            }
        );
    }

    #[test]
    fn not_retryable_and_last_attempt_give_up() {
        let p = policy(2, Jitter::None);
        let mut rng = StdRng::seed_from_u64(1);
        let f = Failure {
            retryable: false,
            ..failed(1)
        };
        assert!(matches!(
            decide(&p, &f, Duration::ZERO, &mut rng),
            Decision::GiveUp { .. }
        ));
        assert!(matches!(
            decide(&p, &failed(2), Duration::ZERO, &mut rng),
            Decision::GiveUp { .. }
        ));
    }
}
