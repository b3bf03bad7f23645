//! The session state machine of one manager ([`Shared`]) and the one place its
//! lock rules live.
//!
//! # Locks and who may run where
//! - `state` (a `Mutex<State>`) guards the current session, pause, the last
//!   reported id, the user, the background mark and the single-flight start
//!   flag. It is held only for short sections that run **no user code**: no
//!   `Clock::now()`, no `IdGenerator`, no `on_session` callback, no observer, no
//!   span or log processor, no SDK call that may emit `tracing` events. Times are
//!   read before taking it; candidates are built (ids, callbacks) before taking
//!   it; everything a change produces is queued as an [`Effect`] under it and
//!   delivered after it is released (see `outbox`).
//! - A session's `detail` mutex (user, timeline) is taken only under `state` or
//!   alone, never the other way round.
//! - The hot path takes no lock: it reads `stamp` (an `ArcSwapOption`), the
//!   `restart` flag and the [`Activity`] atomics.
//! - Starting "a session if there is none" (the next activity after a timeout,
//!   a resume or foreground with no session, the app session at build) is
//!   single-flight: one caller builds the candidate with the lock released, the
//!   others wait on `started` (bounded) and get the same session. An explicit
//!   `start_session()` always starts its own.
//! - A verb returns once its effects were handed to the exporting processors
//!   (`Outbox::flush_through`), bounded by the outbox's wait limit.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, SystemTime};

use arc_swap::{ArcSwap, ArcSwapOption};

use crate::core::callbacks::{
    catching, panic_message, RegisteredCallback, RegisteredObserver, SessionCandidate,
};
use crate::core::effects::{Effect, SessionCounter};
use crate::core::outbox::{Outbox, VERB_WAIT};
use crate::core::persist::{PendingEnd, Store};
use crate::core::sinks::Sinks;
use crate::core::state::{Activity, SessionState};
use crate::model::clock::{Clock, TimeJump};
use crate::model::id::{IdGenerator, UuidV4Generator};
use crate::model::session::{ErrorSources, SessionId, SessionMode, User};

/// How sessions of a manager track themselves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Tracking {
    pub(crate) mode: SessionMode,
    pub(crate) inactivity: Option<Duration>,
    pub(crate) max_duration: Option<Duration>,
    pub(crate) background_timeout: Duration,
    pub(crate) propagate: bool,
    pub(crate) request_ids: bool,
    pub(crate) errors: ErrorSources,
    pub(crate) sample_ratio: f64,
}

impl Default for Tracking {
    fn default() -> Self {
        Tracking {
            mode: SessionMode::App,
            inactivity: Some(Duration::from_secs(15 * 60)),
            max_duration: Some(Duration::from_secs(4 * 3600)),
            background_timeout: Duration::from_secs(30),
            propagate: false,
            request_ids: false,
            errors: ErrorSources::default(),
            sample_ratio: 1.0,
        }
    }
}

/// Where a state change is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Site {
    /// A verb, the timer thread, a manual clock's `advance`: user code may run.
    Safe,
    /// Inside a span or log processor: the SDK may hold the thread's context
    /// borrowed (attaching one would panic), so no callback and no delivery runs
    /// here; the timer thread does them right after.
    Processor,
    /// The guard's shutdown: no next session is prepared (no callback runs) and
    /// the caller delivers, within the shutdown timeout.
    Shutdown,
}

pub(crate) struct State {
    pub(crate) current: Option<Arc<SessionState>>,
    pub(crate) paused: bool,
    last_reported: Option<SessionId>,
    pub(crate) user: Option<User>,
    user_version: u64,
    /// The next activity starts a session (app mode, after a timeout).
    restart: bool,
    /// A single-flight start is building its candidate.
    starting: bool,
    /// The next session's candidate, prepared when the last one timed out.
    next: Option<Prepared>,
    /// When the app went to the background (cleared on foreground).
    pub(crate) background_since: Option<SystemTime>,
    /// Ends reported and not yet confirmed delivered (with persistence), with
    /// the outbox sequence number of their effects.
    pending_ends: Vec<(u64, PendingEnd)>,
    /// A clean exit put the session aside (persistence): saves say `suspended`.
    suspended: bool,
    /// Ends of the last run are being sent again (persistence): not counted or
    /// notified twice.
    resending: bool,
}

/// When a transition happens.
#[derive(Debug, Clone, Copy)]
pub(crate) enum When {
    /// Now. The system clock is read at the moment of the change, after new
    /// telemetry stopped being stamped with the old state (so no span stamped
    /// with a session starts after its end); a custom clock was read before the
    /// lock was taken (it is user code), and that reading is used.
    Now(SystemTime),
    /// At this time (a timeout's end, dated at the last activity).
    At(SystemTime),
}

/// A candidate built outside the lock, ready to commit.
pub(crate) struct Prepared {
    candidate: SessionCandidate,
    keep: bool,
    user_version: u64,
}

/// The shared heart of a [`SessionManager`](crate::SessionManager).
pub(crate) struct Shared {
    /// This manager's number (callback handles name it).
    pub(crate) id: u64,
    /// The session to stamp on new telemetry: `Some` only while a reported app
    /// session is current and not paused. What the hot path reads.
    pub(crate) stamp: ArcSwapOption<SessionState>,
    /// Mirrors `State::restart` for the hot path.
    restart: AtomicBool,
    pub(crate) activity: Activity,
    state: Mutex<State>,
    started: Condvar,
    pub(crate) outbox: Outbox,
    pub(crate) sinks: Sinks,
    pub(crate) callbacks: ArcSwap<Vec<RegisteredCallback>>,
    pub(crate) observers: ArcSwap<Vec<RegisteredObserver>>,
    pub(crate) next_handle: std::sync::atomic::AtomicU64,
    id_generator: Arc<dyn IdGenerator>,
    clock: Arc<dyn Clock>,
    /// The clock is the system clock: telemetry timestamps are activity times.
    pub(crate) system_clock: bool,
    /// Where sessions are persisted (`OTEL_SESSION_PERSIST_PATH`), if anywhere.
    pub(crate) store: Option<Arc<dyn Store>>,
    /// When the store was last written (nanoseconds), for throttling.
    last_save: std::sync::atomic::AtomicU64,
    /// An activity or count change asked for a save (the timer thread does it).
    save_requested: AtomicBool,
    /// Session sampling's threshold (`None`: every session is kept).
    pub(crate) sample_threshold: Option<u64>,
    /// An inactivity timeout or a maximum duration is set, or sessions are
    /// persisted (their last activity is saved): telemetry is activity worth
    /// noting (else the processors skip it).
    pub(crate) timed: bool,
    /// The clock wakes us when it moves: no real timer.
    manual_clock: AtomicBool,
    pub(crate) tracking: Tracking,
    pub(crate) counter: Option<Arc<dyn SessionCounter>>,
    /// This manager's own handle (for the clock's waker and timer targets).
    me: Weak<Shared>,
    warned_clock: AtomicBool,
    warned_ids: AtomicBool,
    warned_start_wait: AtomicBool,
    /// A malformed `session.id` in incoming baggage was reported.
    pub(crate) warned_baggage: AtomicBool,
    /// A request began (request mode's layer is in place).
    pub(crate) saw_request: AtomicBool,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Lock-free: Debug may be called from anywhere, even under our locks.
        f.debug_struct("SessionManager")
            .field("mode", &self.tracking.mode)
            .field(
                "stamping",
                &self.stamp.load().as_ref().map(|s| s.id.clone()),
            )
            .finish_non_exhaustive()
    }
}

pub(crate) struct SharedParts {
    pub(crate) id: u64,
    pub(crate) user: Option<User>,
    pub(crate) callbacks: Vec<RegisteredCallback>,
    pub(crate) observers: Vec<RegisteredObserver>,
    pub(crate) next_handle: u64,
    pub(crate) id_generator: Option<Arc<dyn IdGenerator>>,
    pub(crate) clock: Option<Arc<dyn Clock>>,
    pub(crate) tracking: Tracking,
    pub(crate) counter: Option<Arc<dyn SessionCounter>>,
    pub(crate) sinks: Sinks,
    pub(crate) store: Option<Arc<dyn Store>>,
}

impl Shared {
    pub(crate) fn new(p: SharedParts) -> Arc<Shared> {
        let system_clock = p.clock.is_none();
        let clock = p
            .clock
            .unwrap_or_else(|| Arc::new(crate::model::clock::SystemClock));
        let shared = Arc::new_cyclic(|me| Shared {
            id: p.id,
            stamp: ArcSwapOption::empty(),
            restart: AtomicBool::new(false),
            activity: Activity::default(),
            state: Mutex::new(State {
                current: None,
                paused: false,
                last_reported: None,
                user: p.user,
                user_version: 0,
                restart: false,
                starting: false,
                next: None,
                pending_ends: Vec::new(),
                suspended: false,
                resending: false,
                background_since: None,
            }),
            started: Condvar::new(),
            outbox: Outbox::default(),
            sinks: p.sinks,
            callbacks: ArcSwap::from_pointee(p.callbacks),
            observers: ArcSwap::from_pointee(p.observers),
            next_handle: std::sync::atomic::AtomicU64::new(p.next_handle),
            id_generator: p.id_generator.unwrap_or_else(|| Arc::new(UuidV4Generator)),
            clock,
            system_clock,
            timed: p.tracking.inactivity.is_some()
                || p.tracking.max_duration.is_some()
                || p.store.is_some(),
            sample_threshold: crate::model::id::threshold(p.tracking.sample_ratio),
            store: p.store,
            last_save: std::sync::atomic::AtomicU64::new(0),
            save_requested: AtomicBool::new(false),
            manual_clock: AtomicBool::new(false),
            tracking: p.tracking,
            counter: p.counter,
            me: me.clone(),
            warned_clock: AtomicBool::new(false),
            warned_ids: AtomicBool::new(false),
            warned_start_wait: AtomicBool::new(false),
            warned_baggage: AtomicBool::new(false),
            saw_request: AtomicBool::new(false),
        });
        let target: Weak<dyn TimeJump> = shared.me.clone();
        let manual = catching(|| {
            shared
                .clock
                .subscribe(crate::model::clock::ClockWaker::new(target))
        })
        .unwrap_or(false);
        shared.manual_clock.store(manual, Ordering::Relaxed);
        // A new manager may live where a dropped one did: no stale thread caches.
        crate::core::stamp::bump();
        shared
    }

    /// The state lock if it is free right now (for the panic hook: never wait).
    pub(crate) fn state_try_lock(
        &self,
    ) -> Result<MutexGuard<'_, State>, std::sync::TryLockError<MutexGuard<'_, State>>> {
        match self.state.try_lock() {
            Err(std::sync::TryLockError::Poisoned(p)) => Ok(p.into_inner()),
            other => other,
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The time, from the user's clock, outside our locks; a panicking clock is
    /// reported once and the system time used.
    pub(crate) fn now(&self) -> SystemTime {
        if self.system_clock {
            return opentelemetry::time::now();
        }
        thread_local! {
            static IN_CLOCK: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
        }
        // A clock that calls back into the manager gets the system time there
        // instead of recursing.
        if IN_CLOCK.with(|c| c.replace(true)) {
            return opentelemetry::time::now();
        }
        let read = catching(|| self.clock.now());
        IN_CLOCK.with(|c| c.set(false));
        match read {
            Ok(t) => t,
            Err(p) => {
                crate::warn::once(
                    &self.warned_clock,
                    format_args!(
                        "the session clock panicked ({}); the system time is used instead \
                         (reported once)",
                        panic_message(p.as_ref())
                    ),
                );
                opentelemetry::time::now()
            }
        }
    }

    pub(crate) fn new_id(&self) -> SessionId {
        match catching(|| self.id_generator.new_session_id()) {
            Ok(id) if !id.as_str().is_empty() => id,
            Ok(_) => {
                crate::warn::once(
                    &self.warned_ids,
                    format_args!(
                        "the session IdGenerator returned an empty id; a UUID v4 is used \
                         instead (reported once)"
                    ),
                );
                UuidV4Generator.new_session_id()
            }
            Err(p) => {
                crate::warn::once(
                    &self.warned_ids,
                    format_args!(
                        "the session IdGenerator panicked ({}); a UUID v4 is used instead \
                         (reported once)",
                        panic_message(p.as_ref())
                    ),
                );
                UuidV4Generator.new_session_id()
            }
        }
    }

    pub(crate) fn restart_pending(&self) -> bool {
        self.restart.load(Ordering::Acquire)
    }

    pub(super) fn set_restart(&self, st: &mut State, on: bool) {
        st.restart = on;
        self.restart.store(on, Ordering::Release);
    }

    /// Changes what new telemetry is stamped with, then invalidates the threads'
    /// caches. Only under the state lock.
    pub(super) fn set_stamp(&self, session: Option<Arc<SessionState>>) {
        self.stamp.store(session);
        crate::core::stamp::bump();
    }

    /// Queues an effect; call under the state lock.
    pub(super) fn emit(&self, effect: Effect) -> u64 {
        self.outbox.push(effect)
    }

    /// Delivers everything queued so far before returning (see `outbox`).
    pub(crate) fn flush(&self) {
        let seq = self.outbox.last_queued();
        self.outbox.flush_through(seq, &self.sinks, VERB_WAIT);
    }

    /// Queues and delivers one effect (no state change: a sink connecting).
    pub(crate) fn deliver(&self, effect: Effect) {
        let seq = self.outbox.push(effect);
        self.outbox.flush_through(seq, &self.sinks, VERB_WAIT);
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        crate::core::sinks::report_unsent(&self.sinks);
    }
}

mod persistence;
mod starts;
mod timeouts;
mod transitions;
mod verbs;
