//! The driver of one manager's sessions ([`Shared`]): it owns the lock
//! ([`core`]: the lock invariants and the publication to the hot path), feeds
//! events to the rules (`core::rules`), builds candidates (user code, never
//! under the lock), describes the effects (`apply`) and delivers them
//! (`core::outbox`).
//!
//! - `core`: the lock, one rules step, publication, the single-flight build;
//! - `apply`: what the rules' effects become (lifecycle telemetry, counts,
//!   notifications, kept ends, saves);
//! - `drive`: events in, candidates built, delivery and the timer after;
//! - `verbs`: the session API on top of `drive`;
//! - `hot`: what the span and log processors call (activity, restarts);
//! - `crash`: crash reports (exception records, the summary's event);
//! - `persistence`: restore, saves, acknowledgements of delivered ends.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;

use crate::core::callbacks::{
    catching, panic_message, HookGuard, RegisteredCallback, RegisteredObserver, HOOK_USER,
};
use crate::core::ledger::Ledger;
use crate::core::outbox::{Item, Outbox, VERB_WAIT};
use crate::core::persist::Store;
use crate::core::rules;
use crate::core::sinks::Sinks;
use crate::core::telemetry::SessionCounter;
use crate::model::clock::{Clock, TimeJump};
pub(crate) use crate::model::exception::CrashSettings;
use crate::model::id::{IdGenerator, UuidV4Generator};
use crate::model::session::{ErrorSources, SessionId, SessionMode, User};

pub(crate) use self::core::Core;

mod apply;
pub(crate) mod core;
mod crash;
mod drive;
mod hot;
mod persistence;
mod verbs;

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
    pub(crate) crash: CrashSettings,
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
            crash: CrashSettings::default(),
        }
    }
}

/// Where an event comes from: what may run on this thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Site {
    /// A verb, the timer thread, a manual clock's `advance`: user code may run
    /// and the caller delivers.
    Safe,
    /// Inside a span or log processor: the SDK may hold the thread's context
    /// borrowed (attaching one would panic), so no user code and no delivery
    /// runs here; a candidate needing user code is built by the timer thread,
    /// and delivery happens there right after.
    Processor,
    /// The guard's shutdown: the caller delivers within its own limit.
    Shutdown,
}

/// The shared heart of a [`SessionManager`](crate::SessionManager).
pub(crate) struct Shared {
    /// This manager's number (callback handles and thread caches name it).
    pub(crate) id: u64,
    pub(crate) core: Core,
    pub(crate) outbox: Outbox,
    pub(crate) sinks: Sinks,
    pub(crate) ledger: Ledger,
    pub(crate) callbacks: ArcSwap<Vec<RegisteredCallback>>,
    pub(crate) observers: ArcSwap<Vec<RegisteredObserver>>,
    pub(crate) next_handle: AtomicU64,
    /// A user's id generator (`None`: UUID v4, ours).
    id_generator: Option<Arc<dyn IdGenerator>>,
    /// A user's clock (`None`: the system clock).
    clock: Option<Arc<dyn Clock>>,
    /// The clock wakes us when it moves: no real timer.
    manual_clock: AtomicBool,
    /// Where sessions are persisted (`OTEL_SESSION_PERSIST_PATH`), if anywhere.
    pub(crate) store: Option<Arc<dyn Store>>,
    /// When the store was last written (nanoseconds of activity), for throttling.
    last_save: AtomicU64,
    /// An activity or count change asked for a save (the timer thread does it).
    save_requested: AtomicBool,
    /// Session sampling's threshold (`None`: every session is kept).
    pub(crate) sample_threshold: Option<u64>,
    /// An inactivity timeout or a maximum duration is set, or sessions are
    /// persisted (their last activity is saved): telemetry is activity worth
    /// noting (else the processors skip it).
    pub(crate) timed: bool,
    pub(crate) tracking: Tracking,
    pub(crate) counter: Option<Arc<dyn SessionCounter>>,
    /// This manager's own handle (for the clock's waker and timer targets).
    me: Weak<Shared>,
    warned_clock: AtomicBool,
    warned_ids: AtomicBool,
    warned_start_wait: AtomicBool,
    pub(crate) warned_pending: AtomicBool,
    /// A malformed `session.id` in incoming baggage was reported.
    pub(crate) warned_baggage: AtomicBool,
    /// A request began (request mode's layer is in place).
    pub(crate) saw_request: AtomicBool,
    /// The session attribute `otel_session.ended` is split by.
    pub(crate) metrics_split: Option<opentelemetry::Key>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Lock-free: Debug may be called from anywhere, even under our locks.
        f.debug_struct("SessionManager")
            .field("mode", &self.tracking.mode)
            .field("stamping", &self.core.stamp.session().map(|s| s.id.clone()))
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
    /// Session attributes stamped on telemetry (kept keys).
    pub(crate) stamp_keys: Arc<[opentelemetry::Key]>,
    /// The session attribute `otel_session.ended` is split by.
    pub(crate) metrics_split: Option<opentelemetry::Key>,
}

impl Shared {
    /// The attribute of `a` that `otel_session.ended` is split by
    /// (`OTEL_SESSION_METRICS_SPLIT`), if it is configured and set.
    pub(crate) fn split_of(
        &self,
        a: &crate::model::attributes::Attributes,
    ) -> Option<opentelemetry::KeyValue> {
        a.key_value(self.metrics_split.as_ref()?)
    }

    pub(crate) fn new(p: SharedParts) -> Arc<Shared> {
        let t = p.tracking;
        let config = rules::Config {
            mode: t.mode,
            inactivity: t.inactivity,
            max_duration: t.max_duration,
            background_timeout: t.background_timeout,
            persist: p.store.is_some(),
        };
        let shared = Arc::new_cyclic(|me| Shared {
            id: p.id,
            core: Core::new(p.id, config, p.user, p.stamp_keys),
            metrics_split: p.metrics_split,
            outbox: Outbox::default(),
            sinks: p.sinks,
            ledger: Ledger::default(),
            callbacks: ArcSwap::from_pointee(p.callbacks),
            observers: ArcSwap::from_pointee(p.observers),
            next_handle: AtomicU64::new(p.next_handle),
            id_generator: p.id_generator,
            manual_clock: AtomicBool::new(false),
            clock: p.clock,
            timed: t.inactivity.is_some() || t.max_duration.is_some() || p.store.is_some(),
            sample_threshold: crate::model::id::threshold(t.sample_ratio),
            store: p.store,
            last_save: AtomicU64::new(0),
            save_requested: AtomicBool::new(false),
            tracking: t,
            counter: p.counter,
            me: me.clone(),
            warned_clock: AtomicBool::new(false),
            warned_ids: AtomicBool::new(false),
            warned_start_wait: AtomicBool::new(false),
            warned_pending: AtomicBool::new(false),
            warned_baggage: AtomicBool::new(false),
            saw_request: AtomicBool::new(false),
        });
        shared.subscribe_clock();
        shared
    }

    /// Subscribes to the user's clock (a manual clock wakes us itself). Called
    /// once, right after [`new`](Self::new), before anything else runs.
    pub(crate) fn subscribe_clock(&self) {
        let Some(clock) = self.clock.clone() else {
            return;
        };
        let target: Weak<dyn TimeJump> = self.me.clone();
        let manual = {
            let _user = HookGuard::enter(HOOK_USER);
            catching(|| clock.subscribe(crate::model::clock::ClockWaker::new(target)))
                .unwrap_or(false)
        };
        self.manual_clock.store(manual, Ordering::Relaxed);
    }

    /// The clock is the system clock: telemetry timestamps are activity times.
    #[inline]
    pub(crate) fn system_clock(&self) -> bool {
        self.clock.is_none()
    }

    /// No user code runs to build a candidate (no callbacks, our ids, our or
    /// the system clock): a start may be built anywhere, even in a processor.
    fn plain_build(&self) -> bool {
        self.id_generator.is_none() && self.clock.is_none() && self.callbacks.load().is_empty()
    }

    /// The time, from the user's clock, outside our locks and under the hook
    /// guard (telemetry it makes is not stamped and starts nothing); a
    /// panicking clock is reported once and the system time used.
    pub(crate) fn now(&self) -> SystemTime {
        let Some(clock) = &self.clock else {
            return opentelemetry::time::now();
        };
        thread_local! {
            static IN_CLOCK: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
        }
        // A clock that calls back into the manager gets the system time there
        // instead of recursing.
        if IN_CLOCK.with(|c| c.replace(true)) {
            return opentelemetry::time::now();
        }
        let read = {
            let _user = HookGuard::enter(HOOK_USER);
            catching(|| clock.now())
        };
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

    /// A new session id (user code, under the hook guard).
    pub(crate) fn new_id(&self) -> SessionId {
        let Some(ids) = &self.id_generator else {
            return UuidV4Generator.new_session_id();
        };
        let made = {
            let _user = HookGuard::enter(HOOK_USER);
            catching(|| ids.new_session_id())
        };
        match made {
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

    /// Delivers everything queued so far before returning (see `outbox`).
    pub(crate) fn flush(&self) {
        let seq = self.outbox.last_queued();
        self.outbox.flush_through(seq, &self.sinks, VERB_WAIT);
    }

    /// Queues and delivers one item (no state change: a sink connecting).
    pub(crate) fn deliver(&self, item: Item) {
        let seq = self.outbox.push(item);
        self.outbox.flush_through(seq, &self.sinks, VERB_WAIT);
    }

    /// Lets the timer thread deliver what is queued (and build a requested
    /// start) soon: for work found inside a processor.
    pub(crate) fn deliver_soon(&self) {
        crate::core::timer::schedule(self.me(), Duration::ZERO);
    }

    /// The clock wakes us itself (a manual clock): no real timer.
    pub(crate) fn manual_clock(&self) -> bool {
        self.manual_clock.load(Ordering::Relaxed)
    }

    /// This manager as a timer or clock target.
    pub(crate) fn me(&self) -> Weak<dyn TimeJump> {
        self.me.clone()
    }

    pub(crate) fn warned_start_wait(&self) -> &AtomicBool {
        &self.warned_start_wait
    }

    pub(crate) fn mark_saved(&self, activity: u64) {
        self.last_save.store(activity, Ordering::Relaxed);
    }
}

impl crate::core::request::RequestHost for Shared {
    fn new_id(&self) -> SessionId {
        Shared::new_id(self)
    }
    fn now(&self) -> SystemTime {
        Shared::now(self)
    }
    fn counter(&self) -> Option<&dyn SessionCounter> {
        self.counter.as_deref()
    }
    fn split_key(&self) -> Option<&opentelemetry::Key> {
        self.metrics_split.as_ref()
    }
    fn stamp_keys(&self) -> &[opentelemetry::Key] {
        &self.core.stamp_keys
    }
    fn report(
        &self,
        e: &crate::model::exception::Exception,
        id: Option<&SessionId>,
        flags: Vec<opentelemetry::KeyValue>,
    ) {
        self.report_exception(e, id, flags);
    }
    fn crash_settings(&self) -> CrashSettings {
        self.tracking.crash
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        crate::core::sinks::report_unsent(&self.sinks);
    }
}
