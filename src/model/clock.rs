//! Time source. Sessions read the time through a [`Clock`] so that tests (ours and
//! yours) can move time by hand with [`ManualClock`] instead of sleeping.
//!
//! Timeouts (inactivity, maximum duration) are enforced by a timer that sleeps in
//! real time until the next deadline. A manual clock has no real time to sleep
//! on: it wakes the managers that use it instead, each time it is moved, and they
//! check their deadlines right then, on the thread that moved it. So after
//! `clock.advance(..)` returns, every session that expired by then has ended.

use std::fmt;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime};

/// A source of wall-clock time.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current time.
    fn now(&self) -> SystemTime;

    /// Offers the clock a way to wake a session manager when time jumps.
    ///
    /// Return `true` if this clock calls [`ClockWaker::wake`] after every change
    /// of its time (a manual clock): the manager then relies on it and sleeps on
    /// no real timer. The default, `false`, is right for any clock that follows
    /// real time.
    fn subscribe(&self, _waker: ClockWaker) -> bool {
        false
    }
}

/// Something that must re-check its deadlines when a manual clock moves.
pub(crate) trait TimeJump: Send + Sync {
    fn time_jumped(&self);
}

/// A handle a [`Clock`] calls after its time changed (see [`Clock::subscribe`]).
/// It holds its manager weakly: a dropped manager is not kept alive.
#[derive(Clone)]
pub struct ClockWaker(Weak<dyn TimeJump>);

impl ClockWaker {
    pub(crate) fn new(target: Weak<dyn TimeJump>) -> Self {
        ClockWaker(target)
    }

    /// Lets the manager check its deadlines now. `false` once the manager is gone
    /// (the clock may forget this waker).
    pub fn wake(&self) -> bool {
        match self.0.upgrade() {
            Some(target) => {
                target.time_jumped();
                true
            }
            None => false,
        }
    }
}

impl fmt::Debug for ClockWaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClockWaker")
            .field("alive", &(self.0.strong_count() > 0))
            .finish()
    }
}

/// The real clock ([`opentelemetry::time::now`], i.e. `SystemTime::now()`).
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        opentelemetry::time::now()
    }
}

/// A clock that only moves when told to; for tests.
///
/// Moving it wakes the session managers that use it: sessions whose inactivity
/// timeout or maximum duration has passed end before `advance` returns.
///
/// ```
/// use otel_session::{Clock, ManualClock};
/// use std::time::{Duration, UNIX_EPOCH};
/// let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(1_000));
/// clock.advance(Duration::from_secs(30));
/// assert_eq!(clock.now(), UNIX_EPOCH + Duration::from_secs(1_030));
/// ```
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<SystemTime>,
    wakers: Mutex<Vec<ClockWaker>>,
}

impl ManualClock {
    /// A clock stopped at `start`.
    pub fn new(start: SystemTime) -> Self {
        ManualClock {
            now: Mutex::new(start),
            wakers: Mutex::new(Vec::new()),
        }
    }

    /// A shared clock stopped at `start`, ready for
    /// [`SessionManagerBuilder::with_clock`](crate::SessionManagerBuilder::with_clock).
    pub fn shared(start: SystemTime) -> Arc<Self> {
        Arc::new(Self::new(start))
    }

    /// Moves the clock forward by `by`, then lets the managers using it end the
    /// sessions that expired.
    pub fn advance(&self, by: Duration) {
        {
            let mut now = self.now.lock().unwrap_or_else(|e| e.into_inner());
            *now += by;
        }
        self.wake_all();
    }

    /// Sets the clock to `to`, then lets the managers using it end the sessions
    /// that expired.
    pub fn set(&self, to: SystemTime) {
        *self.now.lock().unwrap_or_else(|e| e.into_inner()) = to;
        self.wake_all();
    }

    fn wake_all(&self) {
        // Woken outside our own lock: a manager reads the time while it checks.
        let wakers = self
            .wakers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let gone = wakers.iter().filter(|w| !w.wake()).count();
        if gone > 0 {
            self.wakers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|w| w.0.strong_count() > 0);
        }
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self.now.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn subscribe(&self, waker: ClockWaker) -> bool {
        self.wakers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(waker);
        true
    }
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now(&self) -> SystemTime {
        (**self).now()
    }
    fn subscribe(&self, waker: ClockWaker) -> bool {
        (**self).subscribe(waker)
    }
}

/// The instant `wait` from now; a wait too long to represent (a timeout of
/// `Duration::MAX`) is a year, not an overflow panic.
pub(crate) fn deadline_in(wait: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(wait)
        .or_else(|| now.checked_add(Duration::from_secs(86_400 * 365)))
        .unwrap_or(now)
}
