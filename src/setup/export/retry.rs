//! Retrying transient export failures: exponential backoff with jitter,
//! honouring `Retry-After`, for as long as the export timeout allows. Once the
//! guard shuts down, a collector that answers (503, `UNAVAILABLE`, a reset
//! connection) is retried only while the wait ends before the shutdown deadline
//! (less half a second for the last attempt and the warning), and one that cannot
//! be reached at all (connection refused, unknown host) is not retried: a program
//! whose collector is down exits at once and says why.
//!
//! `opentelemetry-otlp` 0.33 retries by itself too, but its loop cannot be cut
//! short at shutdown (it sleeps the export thread for up to the whole timeout, so
//! the guard gave up before any failure was seen or explained) and over gRPC it
//! hides each attempt's error. Its retries are therefore disabled and the
//! [`Counted`](super::Counted) decorator retries, with the classification of
//! [`Failure::retryable`].

use std::hash::{BuildHasher as _, Hasher as _};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use super::diagnose::Failure;

/// The first wait.
pub const INITIAL_DELAY: Duration = Duration::from_millis(250);
/// The longest wait of the backoff (a `Retry-After` may ask for more).
pub const MAX_DELAY: Duration = Duration::from_secs(2);
/// Up to this much is added to each wait, at random.
pub const MAX_JITTER: Duration = Duration::from_millis(250);
/// At shutdown, waits must end this long before the deadline.
pub const SHUTDOWN_MARGIN: Duration = Duration::from_millis(500);

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Wait this long, then try again.
    RetryAfter(Duration),
    /// A permanent failure: not retried.
    Permanent,
    /// Transient, but the export timeout does not leave room for another wait.
    OutOfTime,
    /// Transient, but the pipeline is shutting down and there is no time (or no
    /// point: nothing listens) for another attempt.
    ShuttingDown,
}

/// The wait before retry number `retry` (0 for the first), before jitter.
pub fn backoff(retry: u32) -> Duration {
    INITIAL_DELAY
        .saturating_mul(2u32.saturating_pow(retry.min(16)))
        .min(MAX_DELAY)
}

/// Whether a shutting-down pipeline may still wait `wait` after `failure`, with
/// `left` before the shutdown deadline.
pub fn fits_shutdown(failure: &Failure, wait: Duration, left: Duration) -> bool {
    let unreachable = matches!(failure, Failure::Refused | Failure::Unresolved);
    !unreachable && wait.saturating_add(SHUTDOWN_MARGIN) <= left
}

/// Decides what follows a failed attempt: `retry` retries were made so far,
/// `elapsed` of the export's `budget` (its timeout) is spent, the server asked
/// to wait `retry_after`, `jitter` is the random addition, and `shutdown_left`
/// is the time before the shutdown deadline once the pipeline shuts down.
pub fn decide(
    failure: &Failure,
    retry: u32,
    elapsed: Duration,
    budget: Duration,
    retry_after: Option<Duration>,
    jitter: Duration,
    shutdown_left: Option<Duration>,
) -> Decision {
    if !failure.retryable() {
        return Decision::Permanent;
    }
    // A `Retry-After` is the server's to choose: any number must not overflow.
    let wait = backoff(retry)
        .max(retry_after.unwrap_or_default())
        .saturating_add(jitter);
    if elapsed.saturating_add(wait) >= budget {
        return Decision::OutOfTime;
    }
    match shutdown_left {
        Some(left) if !fits_shutdown(failure, wait, left) => Decision::ShuttingDown,
        _ => Decision::RetryAfter(wait),
    }
}

/// A random wait in `[0, MAX_JITTER)`.
pub fn jitter() -> Duration {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    let max = MAX_JITTER.as_millis() as u64;
    Duration::from_millis(h.finish() % max.max(1))
}

/// Tells the exports of a pipeline that it is shutting down, and by when: waits
/// between retries that no longer fit end at once.
#[derive(Debug, Default)]
pub struct Stop {
    deadline: Mutex<Option<Instant>>,
    wake: Condvar,
}

impl Stop {
    /// The pipeline shuts down and must be done by `deadline`.
    pub fn stop_at(&self, deadline: Instant) {
        *self.deadline.lock().unwrap_or_else(|e| e.into_inner()) = Some(deadline);
        self.wake.notify_all();
    }

    /// The time left before the shutdown deadline, once shutting down.
    pub fn left(&self) -> Option<Duration> {
        let deadline = *self.deadline.lock().unwrap_or_else(|e| e.into_inner());
        deadline.map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// Sleeps `wait` after `failure`; `false` as soon as a shutdown leaves no
    /// room for it (see [`fits_shutdown`]).
    pub fn sleep(&self, wait: Duration, failure: &Failure) -> bool {
        let Some(end) = Instant::now().checked_add(wait) else {
            return false;
        };
        let mut deadline = self.deadline.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let now = Instant::now();
            if let Some(d) = *deadline {
                let rest = end.saturating_duration_since(now);
                if !fits_shutdown(failure, rest, d.saturating_duration_since(now)) {
                    return false;
                }
            }
            if now >= end {
                return true;
            }
            deadline = self
                .wake
                .wait_timeout(deadline, end - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;
    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn the_backoff_doubles_up_to_its_cap() {
        let waits: Vec<Duration> = (0..6).map(backoff).collect();
        assert_eq!(
            waits,
            [MS(250), MS(500), MS(1000), MS(2000), MS(2000), MS(2000)]
        );
        assert_eq!(backoff(u32::MAX), MAX_DELAY);
    }

    #[test]
    fn transient_failures_are_retried_within_the_budget() {
        let refused = Failure::Refused;
        assert_eq!(
            decide(&refused, 0, MS(10), S(10), None, MS(7), None),
            Decision::RetryAfter(MS(257))
        );
        assert_eq!(
            decide(&refused, 3, S(9), S(10), None, MS(0), None),
            Decision::OutOfTime,
            "2 s more would pass the 10 s timeout"
        );
        assert_eq!(
            decide(
                &Failure::Status(503),
                0,
                S(0),
                S(10),
                Some(S(3)),
                MS(0),
                None
            ),
            Decision::RetryAfter(S(3)),
            "Retry-After is honoured"
        );
        assert_eq!(
            decide(
                &Failure::Status(429),
                0,
                S(0),
                S(10),
                Some(S(30)),
                MS(0),
                None
            ),
            Decision::OutOfTime,
            "a Retry-After past the timeout ends the export"
        );
    }

    #[test]
    fn any_retry_after_a_server_sends_ends_the_export_without_overflowing() {
        let huge = super::super::observe::parse_retry_after(
            "18446744073709551615",
            std::time::SystemTime::now(),
        );
        assert_eq!(huge, Some(Duration::from_secs(u64::MAX)));
        for shutdown_left in [None, Some(S(5))] {
            assert_eq!(
                decide(
                    &Failure::Status(503),
                    2,
                    MS(1500),
                    S(10),
                    huge,
                    MAX_JITTER,
                    shutdown_left
                ),
                Decision::OutOfTime
            );
        }
        assert!(!fits_shutdown(&Failure::Status(503), Duration::MAX, S(5)));
        assert!(
            !Stop::default().sleep(Duration::MAX, &Failure::Status(503)),
            "a wait past the end of time is refused, not slept"
        );
    }

    #[test]
    fn at_shutdown_only_an_answering_collector_is_retried_and_only_before_the_deadline() {
        let unavailable = Failure::Grpc("Unavailable".into());
        assert_eq!(
            decide(&unavailable, 1, S(1), S(10), None, MS(0), Some(S(4))),
            Decision::RetryAfter(MS(500))
        );
        assert_eq!(
            decide(&unavailable, 3, S(1), S(10), None, MS(0), Some(S(2))),
            Decision::ShuttingDown,
            "2 s + the margin do not fit in 2 s"
        );
        assert_eq!(
            decide(&Failure::Refused, 0, S(0), S(10), None, MS(0), Some(S(5))),
            Decision::ShuttingDown,
            "nothing listens: no point"
        );
    }

    #[test]
    fn permanent_failures_are_not_retried() {
        for f in [
            Failure::Status(400),
            Failure::Status(401),
            Failure::Status(404),
            Failure::Status(413),
            Failure::Grpc("InvalidArgument".into()),
            Failure::Grpc("Unauthenticated".into()),
            Failure::Tls(super::super::diagnose::TlsProblem::Untrusted),
            Failure::Protocol,
            Failure::Other,
        ] {
            assert_eq!(
                decide(&f, 0, MS(0), S(10), None, MS(0), None),
                Decision::Permanent,
                "{f:?}"
            );
        }
        for f in [
            Failure::Status(502),
            Failure::Status(504),
            Failure::Grpc("ResourceExhausted".into()),
            Failure::Disconnected,
            Failure::TimedOut,
            Failure::Network,
        ] {
            assert!(f.retryable(), "{f:?}");
        }
    }

    #[test]
    fn jitter_stays_below_its_maximum() {
        assert!((0..100).map(|_| jitter()).all(|j| j < MAX_JITTER));
    }

    #[test]
    fn a_shutdown_ends_a_wait_that_no_longer_fits() {
        let stop = std::sync::Arc::new(Stop::default());
        let s = std::sync::Arc::clone(&stop);
        let t = std::thread::spawn(move || {
            std::thread::sleep(MS(50));
            s.stop_at(Instant::now() + S(1));
        });
        let started = Instant::now();
        assert!(!stop.sleep(S(10), &Failure::Status(503)), "interrupted");
        assert!(started.elapsed() < S(5));
        assert!(stop.left().is_some());
        t.join().unwrap();
        assert!(
            Stop::default().sleep(MS(1), &Failure::Refused),
            "a full wait"
        );
        let late = Stop::default();
        late.stop_at(Instant::now() + S(5));
        assert!(
            late.sleep(MS(20), &Failure::Status(503)),
            "fits before the deadline"
        );
        assert!(!late.sleep(MS(20), &Failure::Refused), "nothing listens");
    }
}
