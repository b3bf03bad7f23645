//! Retries are `opentelemetry-otlp`'s own (its `RetryPolicy`, set by
//! [`policy`]): it retries what the OTLP specification calls transient (HTTP
//! 429, 502, 503, 504 and transport errors; gRPC `UNAVAILABLE`, `CANCELLED`,
//! `DEADLINE_EXCEEDED`, `ABORTED`, `OUT_OF_RANGE`, `DATA_LOSS`, and
//! `RESOURCE_EXHAUSTED` only when the server sends `RetryInfo`), honours
//! `Retry-After` and `RetryInfo`, and stops once the next wait would pass the
//! export timeout. Its waits are tokio sleeps on the export runtime's timers
//! (its `tokio` feature; without it, a thread sleep no one could cut short).
//!
//! What this module adds are the bounds around it ([`bounded`]): the export
//! timeout ends the export with its retries (the library does not cancel an
//! attempt under way), and once the guard shuts down ([`Stop`]) an export is cut
//! (dropped, which cancels the library's sleep) at the shutdown deadline, or at
//! once when its last attempt found nothing listening (a program whose collector
//! is down exits at once). An attempt that failed for a reason retrying cannot
//! fix (a TLS verification failure, the wrong protocol; over HTTP the library
//! retries every transport error) ends the export at once too.

// Without an OTLP transport only `Stop` is used (by the guard).
#![cfg_attr(
    not(any(feature = "otlp-grpc", feature = "otlp-http")),
    allow(dead_code, unused_imports)
)]

use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::failure::Failure;

/// At shutdown, an export still under way ends this long before the deadline,
/// so that its warning comes before the guard's report.
pub const SHUTDOWN_MARGIN: Duration = Duration::from_millis(100);

/// The retry policy of every OTLP exporter: exponential backoff from 250 ms
/// doubling to 2 s (a `Retry-After` or `RetryInfo` may ask for more, up to
/// 30 s), up to 250 ms of jitter added to each wait, as many retries as the
/// export timeout allows.
#[cfg(any(feature = "otlp-grpc", feature = "otlp-http"))]
pub(crate) fn policy() -> opentelemetry_otlp::RetryPolicy {
    let ms = Duration::from_millis;
    opentelemetry_otlp::RetryPolicy::default()
        .with_max_retries(usize::MAX)
        .with_initial_delay(ms(250))
        .with_max_delay(ms(2000))
        .with_max_jitter(ms(250))
}

/// Tells the exports of a pipeline that it is shutting down, and by when.
#[derive(Debug, Default)]
pub struct Stop {
    deadline: Mutex<Option<Instant>>,
    #[cfg(any(feature = "otlp-grpc", feature = "otlp-http"))]
    wake: tokio::sync::Notify,
}

impl Stop {
    /// The pipeline shuts down and must be done by `deadline` (an earlier
    /// deadline given before stays).
    pub fn stop_at(&self, deadline: Instant) {
        {
            let mut d = self.deadline.lock().unwrap_or_else(|e| e.into_inner());
            *d = Some(d.map_or(deadline, |earlier| earlier.min(deadline)));
        }
        #[cfg(any(feature = "otlp-grpc", feature = "otlp-http"))]
        self.wake.notify_waiters();
    }

    /// The shutdown deadline, once shutting down.
    pub fn deadline(&self) -> Option<Instant> {
        *self.deadline.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// How a bounded export ended.
#[derive(Debug)]
pub(crate) enum Ended<T> {
    /// The exporter returned (delivered, or failed after its retries).
    Done(T),
    /// The export timeout ran out first.
    TimedOut,
    /// Cut short: at shutdown, or because the last attempt's failure will not
    /// heal by retrying.
    Cut,
}

/// Whether an export whose last attempt failed with `failure` is ended now:
/// always when retrying cannot help, and at shutdown when nothing listens.
pub fn cut_now(failure: &Failure, shutting_down: bool) -> bool {
    !failure.heals() || shutting_down && failure.unreachable()
}

/// Runs `export` within `timeout`, cut at the shutdown `stop` announces (less
/// [`SHUTDOWN_MARGIN`]) or when `last_failure` (what the last attempt got, when
/// it is seen) says retrying is pointless (see [`cut_now`]). Polled on the
/// export runtime (its timers).
#[cfg(any(feature = "otlp-grpc", feature = "otlp-http"))]
pub(crate) async fn bounded<F: Future>(
    export: F,
    timeout: Duration,
    stop: &Stop,
    last_failure: impl Fn() -> Option<Failure>,
) -> Ended<F::Output> {
    use std::pin::pin;
    use std::task::Poll;

    let mut export = pin!(tokio::time::timeout(timeout, export));
    let mut stopping = pin!(stop.wake.notified());
    let mut cut_at: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
    std::future::poll_fn(|cx| {
        if let Poll::Ready(done) = export.as_mut().poll(cx) {
            return Poll::Ready(done.map_or(Ended::TimedOut, Ended::Done));
        }
        // Registered before the deadline is read: a shutdown in between wakes us.
        let _ = stopping.as_mut().poll(cx);
        let deadline = stop.deadline();
        if last_failure().is_some_and(|f| cut_now(&f, deadline.is_some())) {
            return Poll::Ready(Ended::Cut);
        }
        let Some(deadline) = deadline else {
            return Poll::Pending;
        };
        let end = deadline.checked_sub(SHUTDOWN_MARGIN).unwrap_or(deadline);
        let end = tokio::time::Instant::from_std(end);
        let sleep = cut_at.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(end)));
        if sleep.deadline() != end {
            // An earlier deadline came later (the exporter's own shutdown).
            sleep.as_mut().reset(end);
        }
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Ended::Cut),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

#[cfg(all(test, any(feature = "otlp-grpc", feature = "otlp-http")))]
mod tests {
    use super::*;
    use std::sync::Arc;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime")
    }

    #[test]
    fn the_timeout_ends_an_export_and_a_shutdown_cuts_one_at_its_deadline() {
        let rt = rt();
        let stop = Stop::default();
        let never = std::future::pending::<()>;
        let started = Instant::now();
        let ended = rt.block_on(bounded(never(), MS(50), &stop, || None));
        assert!(matches!(ended, Ended::TimedOut), "{ended:?}");
        assert!(started.elapsed() < MS(1000));

        let stop = Arc::new(Stop::default());
        let s = Arc::clone(&stop);
        let started = Instant::now();
        let ended = rt.block_on(async {
            tokio::spawn(async move {
                tokio::time::sleep(MS(30)).await;
                s.stop_at(Instant::now() + MS(250));
            });
            bounded(never(), Duration::from_secs(60), &stop, || None).await
        });
        assert!(matches!(ended, Ended::Cut), "{ended:?}");
        let took = started.elapsed();
        assert!(took >= MS(150) && took < MS(1000), "{took:?}");
        assert!(matches!(
            rt.block_on(bounded(async { 7 }, MS(50), &stop, || None)),
            Ended::Done(7)
        ));
    }

    #[test]
    fn what_retrying_cannot_fix_ends_at_once_and_nothing_listening_at_shutdown() {
        let rt = rt();
        let never = std::future::pending::<()>;
        let long = Duration::from_secs(60);
        let running = Stop::default();
        let untrusted = || Some(Failure::Tls(super::super::failure::TlsProblem::Untrusted));
        assert!(matches!(
            rt.block_on(bounded(never(), long, &running, untrusted)),
            Ended::Cut
        ));
        assert!(cut_now(&Failure::Protocol, false));
        assert!(!cut_now(&Failure::Refused, false), "retried while running");
        assert!(cut_now(&Failure::Refused, true), "not at shutdown");
        assert!(cut_now(&Failure::Unresolved, true));
        assert!(
            !cut_now(&Failure::Status(503), true),
            "a collector that answers is retried until the deadline"
        );
        let stopping = Stop::default();
        stopping.stop_at(Instant::now() + long);
        let started = Instant::now();
        let ended = rt.block_on(bounded(never(), long, &stopping, || Some(Failure::Refused)));
        assert!(matches!(ended, Ended::Cut) && started.elapsed() < MS(1000));
    }

    #[test]
    fn an_earlier_deadline_stays() {
        let stop = Stop::default();
        let soon = Instant::now() + MS(10);
        stop.stop_at(soon);
        stop.stop_at(soon + Duration::from_secs(5));
        assert_eq!(stop.deadline(), Some(soon));
    }
}
