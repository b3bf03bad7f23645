//! Hangs (Android's ANR, Embrace's frozen UI): a UI or game loop calls
//! [`heartbeat`] once per frame or turn; a watchdog thread notices when no
//! heartbeat came for the hang threshold (`OTEL_SESSION_HANG_THRESHOLD`,
//! default 5 s) while the app is in the foreground.
//!
//! - While a hang lasts, the crash marker says so (with persistence): a
//!   process killed during it is reported by the next start, reason `hang`.
//! - When it ends (the next heartbeat), one `app.jank` record (type `frozen`,
//!   dated at the hang's start, with its duration) goes out with the session's
//!   `session.id`; the session counts it on its summary
//!   (`otel_session.hangs`) and as a handled error, so a hang degrades the
//!   session to `errored`: the user saw the app fail and it survived, which is
//!   what `errored` means (a hang that kills the app is `abnormal`, as a lost
//!   session; a crash stays the only `crashed`).
//!
//! [`heartbeat`] is one relaxed atomic increment; the first one ever starts
//! the watchdog thread, which reads the time itself (at a tenth of the
//! threshold) — no thread exists in a program that never calls it. The
//! watched manager is the one the panic hook reports to (`init()` installs
//! both; with your own providers, [`install_panic_hook`](crate::install_panic_hook)).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;
use std::time::{Duration, Instant, SystemTime};

use crate::model::attr;
use crate::model::exception::Exception;
use opentelemetry::KeyValue;

/// Heartbeats so far (process-wide).
static BEATS: AtomicU64 = AtomicU64::new(0);
static WATCHDOG: Once = Once::new();

/// Tells the hang watchdog that the calling loop is alive: call it once per
/// frame or loop turn of the thread whose stalls users see (a UI or game
/// loop). One relaxed atomic operation; no clock read.
///
/// ```
/// # let mut frames = 0;
/// loop {
///     otel_session::heartbeat();
///     // draw a frame, handle input…
/// #   frames += 1; if frames == 3 { break; }
/// }
/// ```
#[inline]
pub fn heartbeat() {
    if BEATS.fetch_add(1, Ordering::Relaxed) == 0 {
        start_watchdog();
    }
}

#[cold]
fn start_watchdog() {
    WATCHDOG.call_once(|| {
        let spawned = std::thread::Builder::new()
            .name("otel-session-watchdog".into())
            .spawn(watchdog);
        if let Err(e) = spawned {
            crate::warn::stderr(format_args!(
                "the hang watchdog thread could not start ({e}); hangs are not reported"
            ));
        }
    });
}

/// What a watchdog tick found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    /// No heartbeat since `since` (the last one), for the threshold or longer.
    Started { since: Duration },
    /// A heartbeat again: the hang that began at `since` lasted `lasted`.
    Ended { since: Duration, lasted: Duration },
}

/// The watchdog's rule, on a monotonic time line (pure: tests drive it).
#[derive(Debug, Clone, Default)]
pub(crate) struct Watch {
    beats: u64,
    last_beat: Duration,
    hung_since: Option<Duration>,
}

impl Watch {
    /// A tick at `now`, having seen `beats` heartbeats so far, in the
    /// foreground or not. A hang starts when no heartbeat came for
    /// `threshold` or longer in the foreground (the background never
    /// counts: going there restarts the wait) and ends at the next heartbeat.
    pub(crate) fn tick(
        &mut self,
        beats: u64,
        now: Duration,
        foreground: bool,
        threshold: Duration,
    ) -> Option<Change> {
        if beats != self.beats {
            self.beats = beats;
            self.last_beat = now;
            return self.hung_since.take().map(|since| Change::Ended {
                since,
                lasted: now.saturating_sub(since),
            });
        }
        if !foreground {
            if self.hung_since.is_none() {
                self.last_beat = now;
            }
            return None;
        }
        if self.hung_since.is_none() && now.saturating_sub(self.last_beat) >= threshold {
            self.hung_since = Some(self.last_beat);
            return Some(Change::Started {
                since: self.last_beat,
            });
        }
        None
    }
}

/// How often the watchdog looks, for `threshold`.
fn tick_every(threshold: Duration) -> Duration {
    (threshold / 10).clamp(Duration::from_millis(10), Duration::from_secs(1))
}

/// The `app.jank` record of a hang that began at `since` and lasted `lasted`
/// (`None`: the process died during it).
pub(crate) fn report(
    since: SystemTime,
    lasted: Option<Duration>,
    threshold: Duration,
) -> Exception {
    let threshold_ms = i64::try_from(threshold.as_millis()).unwrap_or(i64::MAX);
    let mut extra = vec![
        KeyValue::new(attr::APP_JANK_TYPE, "frozen"),
        KeyValue::new(attr::APP_JANK_THRESHOLD_MS, threshold_ms),
    ];
    let message = match lasted {
        Some(d) => {
            extra.push(KeyValue::new(
                attr::HANG_DURATION_MS,
                i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
            ));
            format!(
                "the app was frozen for {:.1} s (no heartbeat; threshold {} ms)",
                d.as_secs_f64(),
                threshold_ms
            )
        }
        None => "the process died during a hang (no heartbeat since this time)".to_string(),
    };
    Exception {
        event_name: attr::EVENT_APP_JANK,
        ty: "hang".to_string(),
        message,
        stacktrace: None,
        location: None,
        thread_name: None,
        thread_id: None,
        fatal: lasted.is_none(),
        at: since,
        span: None,
        extra,
        session_id: None,
    }
}

fn watchdog() {
    let mut watch = Watch::default();
    let origin = Instant::now();
    loop {
        let Some(shared) = crate::stability::panic::target() else {
            std::thread::sleep(Duration::from_secs(1));
            continue;
        };
        let Some(threshold) = shared.tracking.crash.hang_threshold else {
            drop(shared);
            std::thread::sleep(Duration::from_secs(1));
            continue;
        };
        let foreground = shared.in_foreground();
        let now = origin.elapsed();
        let beats = BEATS.load(Ordering::Relaxed);
        let wall = |at: Duration| {
            SystemTime::now()
                .checked_sub(now.saturating_sub(at))
                .unwrap_or(SystemTime::UNIX_EPOCH)
        };
        match watch.tick(beats, now, foreground, threshold) {
            Some(Change::Started { since }) => super::native::hang_started(wall(since)),
            Some(Change::Ended { since, lasted }) => {
                super::native::hang_ended();
                shared.hang(report(wall(since), Some(lasted), threshold));
            }
            None => {}
        }
        drop(shared);
        std::thread::sleep(tick_every(threshold));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(5);

    fn s(secs: f64) -> Duration {
        Duration::from_secs_f64(secs)
    }

    #[test]
    fn a_six_second_stall_is_one_hang_from_the_last_beat_to_the_next() {
        let mut w = Watch::default();
        let mut beats = 0;
        let mut changes = Vec::new();
        let mut t = 0.0;
        // 60 fps for a second, a 6 s stall, then 60 fps again.
        while t < 8.0 {
            if !(1.0..7.0).contains(&t) {
                beats += 1;
            }
            changes.extend(w.tick(beats, s(t), true, T));
            t += 0.5;
        }
        assert_eq!(
            changes,
            [
                Change::Started { since: s(0.5) },
                Change::Ended {
                    since: s(0.5),
                    lasted: s(6.5)
                }
            ]
        );
    }

    #[test]
    fn a_stall_shorter_than_the_threshold_or_in_the_background_is_none() {
        let mut w = Watch::default();
        assert_eq!(w.tick(1, s(0.0), true, T), None);
        assert_eq!(w.tick(1, s(4.9), true, T), None, "under the threshold");
        assert_eq!(w.tick(2, s(5.0), true, T), None);
        // In the background no heartbeat is expected.
        assert_eq!(w.tick(2, s(20.0), false, T), None);
        assert_eq!(w.tick(2, s(21.0), true, T), None, "the wait restarts");
        assert_eq!(
            w.tick(2, s(26.0), true, T),
            Some(Change::Started { since: s(20.0) }),
            "boundaries are inclusive"
        );
        assert_eq!(w.tick(2, s(27.0), true, T), None, "one start per hang");
    }

    #[test]
    fn the_watchdog_looks_ten_times_per_threshold_within_bounds() {
        assert_eq!(tick_every(T), Duration::from_millis(500));
        assert_eq!(
            tick_every(Duration::from_millis(20)),
            Duration::from_millis(10)
        );
        assert_eq!(tick_every(Duration::from_secs(60)), Duration::from_secs(1));
    }
}
