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

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, SystemTime};

use arc_swap::{ArcSwap, ArcSwapOption};
use opentelemetry::{KeyValue, StringValue, Value};

use crate::core::callbacks::{
    panic_message, run_on_session, Notifications, RegisteredCallback, RegisteredObserver,
    SessionCandidate,
};
use crate::core::effects::{CountEffect, Effect, LogEffect, SessionCounter, SpanEffect};
use crate::core::outbox::{Outbox, VERB_WAIT};
use crate::core::sinks::Sinks;
use crate::core::state::{from_nanos, nanos, Activity, Kind, SessionState};
use crate::model::attr;
use crate::model::clock::{Clock, TimeJump};
use crate::model::id::{random_span_id, IdGenerator, UuidV4Generator};
use crate::model::session::{EndReason, ErrorSources, Session, SessionId, SessionMode, User};

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
        }
    }
}

/// How long a thread waits for another's single-flight start.
const START_WAIT: Duration = Duration::from_secs(2);

/// Where a state change is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Site {
    /// A verb, the timer thread, a manual clock's `advance`: user code may run.
    Safe,
    /// Inside a span or log processor: the SDK may hold the thread's context
    /// borrowed (attaching one would panic), so no callback and no delivery runs
    /// here; the timer thread does them right after.
    Processor,
}

/// Clears the single-flight flag and wakes the waiters, however the start ends.
struct StartingGuard<'a>(&'a Shared);

impl Drop for StartingGuard<'_> {
    fn drop(&mut self) {
        self.0.lock().starting = false;
        self.0.started.notify_all();
    }
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
    /// An inactivity timeout or a maximum duration is set: telemetry is activity
    /// worth noting (else the processors skip it).
    pub(crate) timed: bool,
    /// The clock wakes us when it moves: no real timer.
    manual_clock: AtomicBool,
    pub(crate) tracking: Tracking,
    pub(crate) counter: Option<Arc<dyn SessionCounter>>,
    me: OnceLock<Weak<Shared>>,
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
}

impl Shared {
    pub(crate) fn new(p: SharedParts) -> Arc<Shared> {
        let system_clock = p.clock.is_none();
        let clock = p
            .clock
            .unwrap_or_else(|| Arc::new(crate::model::clock::SystemClock));
        let shared = Arc::new(Shared {
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
            timed: p.tracking.inactivity.is_some() || p.tracking.max_duration.is_some(),
            manual_clock: AtomicBool::new(false),
            tracking: p.tracking,
            counter: p.counter,
            me: OnceLock::new(),
            warned_clock: AtomicBool::new(false),
            warned_ids: AtomicBool::new(false),
            warned_start_wait: AtomicBool::new(false),
            warned_baggage: AtomicBool::new(false),
            saw_request: AtomicBool::new(false),
        });
        let weak = Arc::downgrade(&shared);
        let _ = shared.me.set(weak.clone());
        let target: Weak<dyn TimeJump> = weak;
        let manual = catch_unwind(AssertUnwindSafe(|| {
            shared
                .clock
                .subscribe(crate::model::clock::ClockWaker::new(target))
        }))
        .unwrap_or(false);
        shared.manual_clock.store(manual, Ordering::Relaxed);
        // A new manager may live where a dropped one did: no stale thread caches.
        crate::core::stamp::bump();
        shared
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
        let read = catch_unwind(AssertUnwindSafe(|| self.clock.now()));
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
        match catch_unwind(AssertUnwindSafe(|| self.id_generator.new_session_id())) {
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

    fn set_restart(&self, st: &mut State, on: bool) {
        st.restart = on;
        self.restart.store(on, Ordering::Release);
    }

    /// Changes what new telemetry is stamped with, then invalidates the threads'
    /// caches. Only under the state lock.
    fn set_stamp(&self, session: Option<Arc<SessionState>>) {
        self.stamp.store(session);
        crate::core::stamp::bump();
    }

    /// Queues an effect; call under the state lock.
    fn emit(&self, effect: Effect) -> u64 {
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

    /// Builds a candidate: its id and the `on_session` callbacks' verdict. No
    /// lock is held (both run user code).
    pub(crate) fn prepare(&self, kind: Kind) -> Prepared {
        let (previous_id, user, user_version) = {
            let st = self.lock();
            (st.last_reported.clone(), st.user.clone(), st.user_version)
        };
        let mut candidate = SessionCandidate {
            id: self.new_id(),
            previous_id: if kind == Kind::App { previous_id } else { None },
            started_at: self.now(),
            user,
            user_set: false,
            attributes: Vec::new(),
        };
        let callbacks = self.callbacks.load();
        let keep = callbacks.is_empty() || run_on_session(&callbacks, &mut candidate);
        Prepared {
            candidate,
            keep,
            user_version,
        }
    }

    /// Makes a prepared candidate the current app session (the caller ended the
    /// previous one, and calls [`schedule`](Self::schedule) once the lock is
    /// released). Returns its snapshot, and the same if it is reported.
    fn commit(&self, st: &mut State, p: Prepared, at: SystemTime) -> (Session, Option<Session>) {
        let mut c = p.candidate;
        c.previous_id = st.last_reported.clone();
        if st.user_version != p.user_version && !c.user_set {
            c.user = st.user.clone();
        }
        c.started_at = at;
        let keep = p.keep;
        let session = Arc::new(SessionState::new(c, Kind::App, !keep));
        st.current = Some(Arc::clone(&session));
        st.paused = false;
        self.activity.arm(
            nanos(session.started_at),
            self.tracking.inactivity,
            self.tracking.max_duration,
        );
        let snap = session.snapshot(false);
        if keep {
            st.last_reported = Some(session.id.clone());
            self.emit_start(&session);
            if let Some(counter) = &self.counter {
                self.emit(Effect::Count(CountEffect::Started, Arc::clone(counter)));
            }
            self.set_stamp(Some(Arc::clone(&session)));
        } else {
            self.set_stamp(None);
        }
        // After the stamp: a thread that sees no restart pending sees the stamp.
        self.set_restart(st, false);
        let started = keep.then(|| snap.clone());
        (snap, started)
    }

    fn emit_start(&self, s: &SessionState) {
        let mut attributes = vec![s.id_attribute()];
        if let Some(prev) = &s.previous_id {
            attributes.push(KeyValue::new(
                attr::SESSION_PREVIOUS_ID,
                Value::String(StringValue::from(prev.shared())),
            ));
        }
        self.transition(s, attr::EVENT_START, s.started_at, attributes, true);
    }

    /// Emits one zero-duration transition span (carrying the span event of its
    /// name) and, for start and end, the log event; records the event on the
    /// session's timeline.
    fn transition(
        &self,
        s: &SessionState,
        name: &'static str,
        at: SystemTime,
        attributes: Vec<KeyValue>,
        log_event: bool,
    ) {
        let at = at.max(s.started_at);
        let span_id = random_span_id();
        let event = opentelemetry::trace::Event::new(name, at, Vec::new(), 0);
        s.detail().timeline.push(event.clone());
        if log_event {
            self.emit(Effect::Log(LogEffect {
                name,
                at,
                trace_id: s.trace_id,
                span_id,
                attributes: attributes.clone(),
            }));
        }
        self.emit(Effect::Span(SpanEffect {
            name,
            trace_id: s.trace_id,
            span_id,
            parent_span_id: s.root_span_id,
            start: at,
            end: at,
            attributes,
            events: vec![event],
        }));
    }

    /// Ends the current session under the lock, dated `at`; the notifications.
    fn end_locked(&self, st: &mut State, reason: EndReason, when: When) -> Notifications {
        let Some(session) = st.current.take() else {
            return Notifications::default();
        };
        let was_paused = std::mem::replace(&mut st.paused, false);
        // The stamp first, then the limits: a thread that finds the limits gone
        // reads the stamp again and sees this end.
        self.set_stamp(None);
        self.activity.disarm();
        if session.discarded {
            return Notifications::default();
        }
        let at = self.resolve(when).max(session.started_at);
        // The counts close here: one status snapshot for the end event, the
        // summary, the metric and the observers, and no error counted later.
        let (status, handled, unhandled) = session.close();
        let end_attributes = vec![
            session.id_attribute(),
            KeyValue::new(attr::STATUS, status.as_str()),
            KeyValue::new(attr::END_REASON, reason.as_str()),
            KeyValue::new(
                attr::ERRORS_HANDLED,
                i64::try_from(handled).unwrap_or(i64::MAX),
            ),
            KeyValue::new(
                attr::ERRORS_UNHANDLED,
                i64::try_from(unhandled).unwrap_or(i64::MAX),
            ),
        ];
        self.transition(&session, attr::EVENT_END, at, end_attributes.clone(), true);
        let (user, timeline) = {
            let mut detail = session.detail();
            (detail.user.clone(), std::mem::take(&mut detail.timeline))
        };
        let mut summary = end_attributes;
        if let Some(prev) = &session.previous_id {
            summary.push(KeyValue::new(
                attr::SESSION_PREVIOUS_ID,
                Value::String(StringValue::from(prev.shared())),
            ));
        }
        if let Some(user) = &user {
            summary.extend(user.attributes());
        }
        summary.extend(session.attributes.iter().cloned());
        let (events, dropped) = timeline.into_events();
        if dropped > 0 {
            summary.push(KeyValue::new(attr::DROPPED_EVENTS, i64::from(dropped)));
        }
        self.emit(Effect::Span(SpanEffect {
            name: attr::SUMMARY_SPAN,
            trace_id: session.trace_id,
            span_id: session.root_span_id,
            parent_span_id: opentelemetry::trace::SpanId::INVALID,
            start: session.started_at,
            end: at,
            attributes: summary,
            events,
        }));
        if let Some(counter) = &self.counter {
            self.emit(Effect::Count(
                CountEffect::Ended {
                    status,
                    started_at: session.started_at,
                    ended_at: at,
                },
                Arc::clone(counter),
            ));
        }
        let mut snap = session.snapshot(was_paused);
        snap.status = status;
        snap.handled_errors = handled;
        snap.unhandled_errors = unhandled;
        Notifications {
            ended: Some((snap, reason)),
            started: None,
        }
    }

    /// The time of a transition (see [`When`]); call after the stamp changed.
    fn resolve(&self, when: When) -> SystemTime {
        match when {
            When::At(t) => t,
            When::Now(_) if self.system_clock => opentelemetry::time::now(),
            When::Now(t) => t,
        }
    }

    /// Queues observer notifications behind the lifecycle output of the same
    /// change (call under the state lock).
    fn notify(&self, notes: Notifications) {
        if notes.ended.is_some() || notes.started.is_some() {
            let observers = self.observers.load_full();
            if !observers.is_empty() {
                self.emit(Effect::Notify(notes, observers));
            }
        }
    }

    /// Ends the current session (reason `reason`).
    pub(crate) fn end(&self, reason: EndReason, when: When) {
        {
            let mut st = self.lock();
            let notes = self.end_locked(&mut st, reason, when);
            self.set_restart(&mut st, false);
            self.notify(notes);
        }
        self.flush();
    }

    /// Starts a new app session, ending the current one (reason `replaced`).
    pub(crate) fn start(&self) -> Session {
        let prepared = self.prepare(Kind::App);
        let at = self.now();
        let snap = {
            let mut st = self.lock();
            let mut notes = self.end_locked(&mut st, EndReason::Replaced, When::Now(at));
            let (snap, started) = self.commit(&mut st, prepared, at);
            notes.started = started;
            self.notify(notes);
            snap
        };
        self.schedule();
        self.flush();
        snap
    }

    /// Starts a session if there is none (single-flight: racing callers get the
    /// same one); a candidate prepared when the last one timed out is used.
    /// Called where user code may run (a verb, the timer).
    pub(crate) fn ensure(&self) -> Option<Arc<SessionState>> {
        let prepared = {
            let mut st = self.lock();
            loop {
                if let Some(current) = &st.current {
                    return Some(Arc::clone(current));
                }
                if let Some(next) = st.next.take() {
                    break Some(next);
                }
                if !st.starting {
                    st.starting = true;
                    break None;
                }
                st = match self.wait_for_start(st) {
                    Ok(st) => st,
                    Err(current) => return current,
                };
            }
        };
        let prepared = match prepared {
            Some(p) => p,
            None => {
                let _starting = StartingGuard(self);
                self.prepare(Kind::App)
            }
        };
        let at = self.now();
        let current = {
            let mut st = self.lock();
            if st.current.is_none() {
                let (_, started) = self.commit(&mut st, prepared, at);
                self.notify(Notifications {
                    ended: None,
                    started,
                });
            }
            st.current.clone()
        };
        self.started.notify_all();
        self.schedule();
        self.flush();
        current
    }

    /// Waits (bounded) for another thread's start; `Err(current)` on time out.
    fn wait_for_start<'a>(
        &'a self,
        st: MutexGuard<'a, State>,
    ) -> Result<MutexGuard<'a, State>, Option<Arc<SessionState>>> {
        let (st, timeout) = self
            .started
            .wait_timeout(st, START_WAIT)
            .unwrap_or_else(|e| e.into_inner());
        if timeout.timed_out() && st.current.is_none() {
            crate::warn::once(
                &self.warned_start_wait,
                format_args!(
                    "starting a session took longer than {START_WAIT:?} (a slow on_session \
                     callback or IdGenerator?); telemetry meanwhile carries no session.id \
                     (reported once)"
                ),
            );
            return Err(st.current.clone());
        }
        Ok(st)
    }

    /// After a timeout in app mode: builds the next session's candidate now (its
    /// id, the callbacks' verdict), so that the next activity — which may arrive
    /// inside a span or log processor, where no user code may run — only has to
    /// commit it. Called where user code may run.
    fn prepare_next(&self) {
        {
            let mut st = self.lock();
            if !st.restart || st.next.is_some() || st.current.is_some() || st.starting {
                return;
            }
            st.starting = true;
        }
        let prepared = {
            let _starting = StartingGuard(self);
            self.prepare(Kind::App)
        };
        {
            let mut st = self.lock();
            if st.restart && st.current.is_none() && st.next.is_none() {
                st.next = Some(prepared);
            }
        }
        self.started.notify_all();
    }

    /// The stamp for telemetry arriving when a restart is pending (the hot
    /// path's slow branch, inside a span or log processor): commits the prepared
    /// candidate (no user code), or waits (bounded) for it to be prepared; the
    /// lifecycle output is delivered by the timer thread right after.
    pub(crate) fn start_for_activity(&self) -> Option<StringValue> {
        let at = self.now();
        let mut committed = false;
        {
            let mut st = self.lock();
            loop {
                if st.current.is_some() {
                    break;
                }
                if !st.restart {
                    return None;
                }
                if let Some(next) = st.next.take() {
                    let (_, started) = self.commit(&mut st, next, at);
                    self.notify(Notifications {
                        ended: None,
                        started,
                    });
                    committed = true;
                    break;
                }
                if !st.starting {
                    // Nobody is preparing it: the timer thread will.
                    self.deliver_soon();
                }
                st = self.wait_for_start(st).ok()?;
            }
        }
        if committed {
            self.started.notify_all();
            self.schedule();
            self.deliver_soon();
        }
        self.stamp.load().as_deref().map(|s| s.value.clone())
    }

    /// Lets the timer thread deliver what is queued (and prepare a pending
    /// restart) soon: for work found inside a processor, where the SDK may hold
    /// the thread's context and neither user code nor delivery may run.
    fn deliver_soon(&self) {
        if let Some(me) = self.me.get() {
            let target: Weak<dyn TimeJump> = me.clone();
            crate::core::timer::schedule(target, Duration::ZERO);
        }
    }

    /// Pauses the current session.
    pub(crate) fn pause(&self) {
        let now = self.now();
        self.check_expiry(now, Site::Safe);
        {
            let mut st = self.lock();
            let Some(session) = st.current.clone() else {
                return;
            };
            self.activity.note(nanos(now));
            if st.paused {
                return;
            }
            st.paused = true;
            self.set_stamp(None);
            let now = self.resolve(When::Now(now));
            if !session.discarded {
                self.transition(
                    &session,
                    attr::EVENT_PAUSE,
                    now,
                    vec![session.id_attribute()],
                    false,
                );
            }
        }
        self.flush();
    }

    /// Resumes a paused session (`true`), or starts one when there is none
    /// (`false`); `false` and no change when the current one is not paused.
    pub(crate) fn resume(&self) -> bool {
        let now = self.now();
        self.check_expiry(now, Site::Safe);
        let resumed = {
            let mut st = self.lock();
            match st.current.clone() {
                Some(session) => {
                    self.activity.note(nanos(now));
                    if st.paused {
                        st.paused = false;
                        if !session.discarded {
                            self.transition(
                                &session,
                                attr::EVENT_RESUME,
                                now,
                                vec![session.id_attribute()],
                                false,
                            );
                            self.set_stamp(Some(session));
                        }
                        Some(true)
                    } else {
                        Some(false)
                    }
                }
                None => None,
            }
        };
        match resumed {
            Some(r) => {
                self.flush();
                r
            }
            None => {
                self.ensure();
                false
            }
        }
    }

    /// Sets the user of the current and later sessions.
    pub(crate) fn set_user(&self, user: Option<User>) {
        let now = self.now();
        let mut st = self.lock();
        st.user = user.clone();
        st.user_version += 1;
        if let Some(session) = st.current.clone() {
            self.activity.note(nanos(now));
            let changed = session.detail().user != user;
            if changed {
                let attrs = user.as_ref().map(User::attributes).unwrap_or_default();
                session.push_event(attr::EVENT_USER_CHANGE, now, attrs);
                session.detail().user = user;
            }
        }
    }

    /// The app went to the background: noted (and on the summary's timeline);
    /// the session goes on, not paused.
    pub(crate) fn background(&self) {
        let now = self.now();
        self.check_expiry(now, Site::Safe);
        let mut st = self.lock();
        if st.background_since.is_some() {
            return;
        }
        st.background_since = Some(now);
        if let Some(session) = st.current.clone() {
            self.activity.note(nanos(now));
            session.push_event(attr::EVENT_BACKGROUND, now, Vec::new());
        }
    }

    /// The app came back: after at least the background timeout away, the session
    /// ends (reason `background`, dated at its last activity); in app mode a
    /// session is then current (a new one, or the one that went on).
    pub(crate) fn foreground(&self) {
        let now = self.now();
        self.check_expiry(now, Site::Safe);
        {
            let mut st = self.lock();
            let since = st.background_since.take();
            let away_long = since.is_some_and(|b| {
                now.duration_since(b).unwrap_or_default() >= self.tracking.background_timeout
            });
            if let Some(session) = st.current.clone() {
                if away_long {
                    let last = from_nanos(self.activity.last());
                    let notes = self.end_locked(&mut st, EndReason::Background, When::At(last));
                    self.set_restart(&mut st, false);
                    self.notify(notes);
                } else {
                    self.activity.note(nanos(now));
                    if since.is_some() {
                        session.push_event(attr::EVENT_FOREGROUND, now, Vec::new());
                    }
                }
            }
        }
        self.flush();
        if self.tracking.mode == SessionMode::App {
            self.ensure();
        }
    }

    /// A snapshot of the current session.
    pub(crate) fn current(&self) -> Option<Session> {
        let now = self.now();
        self.check_expiry(now, Site::Safe);
        let st = self.lock();
        st.current.as_ref().map(|s| s.snapshot(st.paused))
    }

    /// Counts an error toward the app session telemetry is stamped with now: if
    /// it ends meanwhile (its counts closed), toward the one after, if any.
    /// `false` if nothing counted it.
    pub(crate) fn count_on_current(&self, count: impl Fn(&SessionState) -> bool) -> bool {
        loop {
            let Some(session) = self.stamp.load_full() else {
                return false;
            };
            if count(&session) {
                return true;
            }
            let now = self.stamp.load();
            if now.as_ref().is_some_and(|s| Arc::ptr_eq(s, &session)) {
                // Closed yet still stamped: an end is under way; not ours.
                return false;
            }
        }
    }

    /// Notes a verb's activity on the current session.
    pub(crate) fn note_activity(&self) {
        let now = self.now();
        let current = self.lock().current.is_some();
        if current {
            self.activity.note(nanos(now));
        }
    }

    /// Activity from telemetry at `t` (nanoseconds, clock time); ends the session
    /// when `t` is past one of its limits. `true` when it was past one (this call
    /// or a racing one ended the session: the stamp must be read again).
    #[inline]
    pub(crate) fn touch(&self, t: u64) -> bool {
        if self.activity.touch(t) {
            self.expire_at(from_nanos(t));
            return true;
        }
        false
    }

    #[cold]
    #[inline(never)]
    fn expire_at(&self, now: SystemTime) {
        self.check_expiry(now, Site::Processor);
    }

    /// Ends the current session if a limit passed by `now` (reason
    /// `inactivity` or `max_duration`, dated at its last activity); in app mode
    /// the next activity then starts a new one (unless it was paused). Else
    /// schedules the next check. `true` if it ended the session.
    pub(crate) fn check_expiry(&self, now: SystemTime, site: Site) -> bool {
        let ended = {
            let mut st = self.lock();
            let Some(session) = st.current.clone() else {
                return false;
            };
            match self.expiry(&session, now) {
                None => None,
                Some((reason, at)) => {
                    // The restart flag first: a thread that sees the stamp gone
                    // must also see that the next activity starts a session.
                    let restart = self.tracking.mode == SessionMode::App && !st.paused;
                    self.set_restart(&mut st, restart);
                    let notes = self.end_locked(&mut st, reason, When::At(at));
                    self.notify(notes);
                    Some(())
                }
            }
        };
        match ended {
            Some(()) => {
                // Caches must see the pending restart.
                crate::core::stamp::bump();
                match site {
                    Site::Safe => {
                        self.prepare_next();
                        self.flush();
                    }
                    Site::Processor => self.deliver_soon(),
                }
                true
            }
            None => {
                self.schedule();
                false
            }
        }
    }

    /// Whether `session` expired by `now`: the reason and the end's date.
    fn expiry(&self, session: &SessionState, now: SystemTime) -> Option<(EndReason, SystemTime)> {
        let now = nanos(now);
        let last = self.activity.last();
        let started = nanos(session.started_at);
        let as_nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let idle = self
            .tracking
            .inactivity
            .map(|d| (last.saturating_add(as_nanos(d)), EndReason::Inactivity));
        let max = self
            .tracking
            .max_duration
            .map(|d| (started.saturating_add(as_nanos(d)), EndReason::MaxDuration));
        let (deadline, reason) = match (idle, max) {
            (Some(a), Some(b)) => {
                if a.0 <= b.0 {
                    a
                } else {
                    b
                }
            }
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => return None,
        };
        if now < deadline {
            return None;
        }
        // Dated at the last activity; a maximum duration never past its end.
        let at = if reason == EndReason::MaxDuration {
            last.min(deadline)
        } else {
            last
        };
        Some((reason, from_nanos(at)))
    }

    /// Arms the real timer for the current session's next deadline (not for a
    /// manual clock: it wakes us itself). Call with the state lock released.
    pub(crate) fn schedule(&self) {
        if self.manual_clock.load(Ordering::Relaxed) {
            return;
        }
        let Some(started_at) = self.lock().current.as_ref().map(|s| s.started_at) else {
            return;
        };
        let last = self.activity.last();
        let as_nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let idle = self
            .tracking
            .inactivity
            .map(|d| last.saturating_add(as_nanos(d)));
        let max = self
            .tracking
            .max_duration
            .map(|d| nanos(started_at).saturating_add(as_nanos(d)));
        let deadline = match (idle, max) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => return,
        };
        let Some(me) = self.me.get() else { return };
        let wait = Duration::from_nanos(deadline.saturating_sub(nanos(self.now())));
        let target: Weak<dyn TimeJump> = me.clone();
        crate::core::timer::schedule(target, wait);
    }

    /// Ends the current session for a shutdown and waits (up to `limit`) until its
    /// end is handed to the exporting processors.
    pub(crate) fn end_for_shutdown(&self, limit: Duration) {
        let now = self.now();
        let seq = {
            let mut st = self.lock();
            let notes = self.end_locked(&mut st, EndReason::Shutdown, When::Now(now));
            self.set_restart(&mut st, false);
            self.notify(notes);
            self.outbox.last_queued()
        };
        self.outbox.flush_through(seq, &self.sinks, limit);
    }
}

impl TimeJump for Shared {
    fn time_jumped(&self) {
        let now = self.now();
        self.check_expiry(now, Site::Safe);
        self.prepare_next();
        self.flush();
    }
}

impl Shared {
    /// The activity time of telemetry stamped `at` by the SDK: that time with the
    /// system clock (already read), else the manager's clock.
    #[inline]
    pub(crate) fn activity_time(&self, at: Option<SystemTime>) -> u64 {
        match at {
            Some(t) if self.system_clock => nanos(t),
            _ => nanos(self.now()),
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        crate::core::sinks::report_unsent(&self.sinks);
    }
}
