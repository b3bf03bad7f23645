//! The session manager: owns the current session and its state machine (start,
//! pause, resume, end), the user, the `on_session` callbacks and observers, and the
//! lifecycle output. Every verb of the session API is a method here.
//!
//! Concurrency: verbs take a mutex (they are rare); the span and log hot paths never
//! do. They read one [`ArcSwapOption`] that holds the session to stamp — set only
//! while a *reported* session is current and not paused — so a stamped id always
//! belongs to a session that was reported and current at the moment it was read.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use arc_swap::{ArcSwap, ArcSwapOption};
use opentelemetry::metrics::Meter;
use opentelemetry::trace::{Event, SpanId, TraceId};
use opentelemetry::{KeyValue, StringValue, Value};

use crate::core::callbacks::{
    in_on_session, run_on_session, CallbackHandle, Notifications, RegisteredCallback,
    RegisteredObserver, SessionCandidate, SessionObserver,
};
use crate::core::lifecycle::{Lifecycle, Timeline, Transition};
use crate::core::outbox::{Outbox, Outgoing};
use crate::model::attr;
use crate::model::clock::{Clock, SystemClock};
use crate::model::id::{session_root_span_id, session_trace_id, IdGenerator, UuidV4Generator};
use crate::model::session::{EndReason, Session, SessionId, SessionStatus, User};
use crate::stability::metrics::SessionMetrics;

/// One live session. Shared by the manager and the hot path.
pub(crate) struct SessionState {
    pub(crate) id: SessionId,
    /// The id as a `&'static str`, while the static id budget lasts.
    pub(crate) static_id: Option<&'static str>,
    /// `session.id` as an attribute value of our own lifecycle telemetry.
    span_value: Value,
    previous_id: Option<SessionId>,
    started_at: SystemTime,
    discarded: bool,
    trace_id: TraceId,
    root_span_id: SpanId,
    handled: AtomicU64,
    unhandled: AtomicU64,
    status: AtomicU8,
    /// Attributes from `on_session` callbacks, for the summary span.
    attributes: Vec<KeyValue>,
    /// Mutated only under the manager's state lock.
    detail: Mutex<SessionDetail>,
}

#[derive(Debug, Default)]
struct SessionDetail {
    user: Option<User>,
    timeline: Timeline,
}

impl fmt::Debug for SessionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionState")
            .field("id", &self.id)
            .field("discarded", &self.discarded)
            .finish_non_exhaustive()
    }
}

fn status_from_u8(v: u8) -> SessionStatus {
    match v {
        0 => SessionStatus::Ok,
        1 => SessionStatus::Errored,
        2 => SessionStatus::Abnormal,
        _ => SessionStatus::Crashed,
    }
}

fn status_to_u8(s: SessionStatus) -> u8 {
    match s {
        SessionStatus::Ok => 0,
        SessionStatus::Errored => 1,
        SessionStatus::Abnormal => 2,
        SessionStatus::Crashed => 3,
    }
}

/// How many session ids are kept as `&'static str` for the process's life.
///
/// A span attribute built from a `&'static str` is copied without touching a
/// shared reference count; an `Arc<str>` one costs an atomic increment on the
/// caller and a decrement on the batch thread, on a cache line both cores fight
/// over, for every span. Ids are never freed because exported spans may hold them
/// for any time: 4,096 ids (~150 KiB) cover the sessions of any realistic app
/// process; later sessions use reference-counted ids.
const STATIC_ID_BUDGET: usize = 4096;
static STATIC_IDS_LEFT: AtomicUsize = AtomicUsize::new(STATIC_ID_BUDGET);

/// The id as a `&'static str` while the budget lasts.
fn static_id(id: &SessionId) -> Option<&'static str> {
    STATIC_IDS_LEFT
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
        .ok()
        .map(|_| &*Box::leak(id.as_str().to_owned().into_boxed_str()))
}

impl SessionState {
    fn new(c: SessionCandidate, discarded: bool) -> Self {
        let static_id = if discarded { None } else { static_id(&c.id) };
        let value = match static_id {
            Some(id) => StringValue::from(id),
            None => StringValue::from(c.id.shared()),
        };
        SessionState {
            static_id,
            span_value: Value::String(value),
            trace_id: session_trace_id(&c.id),
            root_span_id: session_root_span_id(&c.id),
            id: c.id,
            previous_id: c.previous_id,
            started_at: c.started_at,
            discarded,
            handled: AtomicU64::new(0),
            unhandled: AtomicU64::new(0),
            status: AtomicU8::new(0),
            attributes: c.attributes,
            detail: Mutex::new(SessionDetail {
                user: c.user,
                timeline: Timeline::default(),
            }),
        }
    }

    fn detail(&self) -> MutexGuard<'_, SessionDetail> {
        self.detail.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn status(&self) -> SessionStatus {
        status_from_u8(self.status.load(Ordering::Relaxed))
    }

    fn raise_status(&self, to: SessionStatus) {
        self.status.fetch_max(status_to_u8(to), Ordering::Relaxed);
    }

    /// One handled error (an ERROR log record, `record_handled_error`).
    pub(crate) fn count_handled(&self) {
        self.handled.fetch_add(1, Ordering::Relaxed);
        self.raise_status(SessionStatus::Errored);
    }

    /// One unhandled error; the session is `crashed` from now on.
    pub(crate) fn count_unhandled(&self) {
        self.unhandled.fetch_add(1, Ordering::Relaxed);
        self.raise_status(SessionStatus::Crashed);
    }

    fn snapshot(&self, paused: bool) -> Session {
        Session {
            id: self.id.clone(),
            previous_id: self.previous_id.clone(),
            started_at: self.started_at,
            paused,
            discarded: self.discarded,
            status: self.status(),
            handled_errors: self.handled.load(Ordering::Relaxed),
            unhandled_errors: self.unhandled.load(Ordering::Relaxed),
            user: self.detail().user.clone(),
        }
    }

    fn id_attributes(&self) -> Vec<KeyValue> {
        vec![KeyValue::new(attr::SESSION_ID, self.span_value.clone())]
    }

    fn end_attributes(&self, reason: EndReason) -> Vec<KeyValue> {
        vec![
            KeyValue::new(attr::SESSION_ID, self.span_value.clone()),
            KeyValue::new(attr::STATUS, self.status().as_str()),
            KeyValue::new(attr::END_REASON, reason.as_str()),
            KeyValue::new(
                attr::ERRORS_HANDLED,
                i64::try_from(self.handled.load(Ordering::Relaxed)).unwrap_or(i64::MAX),
            ),
            KeyValue::new(
                attr::ERRORS_UNHANDLED,
                i64::try_from(self.unhandled.load(Ordering::Relaxed)).unwrap_or(i64::MAX),
            ),
        ]
    }
}

pub(crate) struct State {
    current: Option<Arc<SessionState>>,
    paused: bool,
    last_reported: Option<SessionId>,
    user: Option<User>,
    pub(crate) lifecycle: Lifecycle,
}

pub(crate) struct Shared {
    /// The session to stamp on new telemetry: `Some` only while a reported session
    /// is current and not paused. The only thing the hot path reads.
    pub(crate) stamp: ArcSwapOption<SessionState>,
    state: Mutex<State>,
    /// Lifecycle output and notifications, delivered outside the lock, in order.
    pub(crate) outbox: Arc<Outbox>,
    /// Serialises `start_session` (callbacks run outside the state lock).
    start_lock: Mutex<()>,
    callbacks: ArcSwap<Vec<RegisteredCallback>>,
    observers: ArcSwap<Vec<RegisteredObserver>>,
    next_handle: AtomicU64,
    id_generator: Arc<dyn IdGenerator>,
    clock: Arc<dyn Clock>,
    metrics: Option<SessionMetrics>,
    warned_reentrant: AtomicBool,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
    /// Changes what new telemetry is stamped with, then invalidates the threads'
    /// caches. Only under the state lock.
    fn set_stamp(&self, session: Option<Arc<SessionState>>) {
        self.stamp.store(session);
        crate::core::stamp::bump();
    }
}

/// Owns the current session and the session API.
///
/// Cheap to clone (one `Arc`); every clone drives the same sessions. Build one with
/// [`SessionManager::builder`], wire it into your providers with
/// [`span_processor`](Self::span_processor) / [`log_processor`](Self::log_processor),
/// then start a session.
///
/// ```
/// use otel_session::SessionManager;
/// let sessions = SessionManager::builder().build();
/// assert!(sessions.current_session().is_none());
/// sessions.start_session();
/// let first = sessions.current_session().unwrap();
/// sessions.start_session();
/// let second = sessions.current_session().unwrap();
/// assert_eq!(second.previous_id(), Some(first.id()));
/// ```
#[derive(Clone)]
pub struct SessionManager {
    pub(crate) shared: Arc<Shared>,
}

impl fmt::Debug for SessionManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionManager")
            .field("current", &self.current_session().map(|s| s.id))
            .finish()
    }
}

impl Default for SessionManager {
    fn default() -> Self {
        SessionManager::builder().build()
    }
}

/// Builds a [`SessionManager`].
#[derive(Default)]
pub struct SessionManagerBuilder {
    id_generator: Option<Arc<dyn IdGenerator>>,
    clock: Option<Arc<dyn Clock>>,
    callbacks: Vec<RegisteredCallback>,
    observers: Vec<Arc<dyn SessionObserver>>,
    user: Option<User>,
    meter: Option<Meter>,
    without_export: bool,
    without_span_export: bool,
    without_log_export: bool,
}

impl fmt::Debug for SessionManagerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionManagerBuilder")
            .field("id_generator", &self.id_generator)
            .field("clock", &self.clock)
            .field("callbacks", &self.callbacks.len())
            .field("observers", &self.observers.len())
            .field("user", &self.user)
            .field("metrics", &self.meter.is_some())
            .finish()
    }
}

impl SessionManagerBuilder {
    /// Uses `generator` for session ids instead of UUID v4.
    pub fn with_id_generator(mut self, generator: impl IdGenerator + 'static) -> Self {
        self.id_generator = Some(Arc::new(generator));
        self
    }

    /// Reads time from `clock` (tests: [`ManualClock`](crate::ManualClock)).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Adds an `on_session` callback, run on every candidate session before it
    /// starts, in registration order. Return `false` to discard the session.
    pub fn on_session<F>(mut self, f: F) -> Self
    where
        F: Fn(&mut SessionCandidate) -> bool + Send + Sync + 'static,
    {
        let handle = CallbackHandle(self.callbacks.len() as u64 + 1);
        self.callbacks.push(RegisteredCallback::new(handle, f));
        self
    }

    /// Adds an observer of reported sessions starting and ending.
    pub fn with_observer(mut self, observer: impl SessionObserver + 'static) -> Self {
        self.observers.push(Arc::new(observer));
        self
    }

    /// Records the stability metrics (`otel_session.started`, `otel_session.ended`,
    /// `otel_session.duration`) with `meter`.
    pub fn with_meter(mut self, meter: Meter) -> Self {
        self.meter = Some(meter);
        self
    }

    /// Lifecycle output goes nowhere, quietly (`OTEL_SDK_DISABLED=true`).
    pub(crate) fn without_export(mut self) -> Self {
        self.without_export = true;
        self
    }

    /// No span pipeline by choice: lifecycle spans are dropped quietly.
    pub(crate) fn without_span_export(mut self) -> Self {
        self.without_span_export = true;
        self
    }

    /// No log pipeline by choice: lifecycle log events are dropped quietly.
    pub(crate) fn without_log_export(mut self) -> Self {
        self.without_log_export = true;
        self
    }

    /// The user of the first and later sessions.
    pub fn with_user(mut self, user: User) -> Self {
        self.user = if user.is_empty() { None } else { Some(user) };
        self
    }

    /// Builds the manager. No session is started: call
    /// [`SessionManager::start_session`].
    pub fn build(self) -> SessionManager {
        let next_handle = AtomicU64::new(self.callbacks.len() as u64 + 1);
        let outbox = Arc::new(Outbox::new(crate::core::lifecycle::scope()));
        let callbacks = self.callbacks;
        let manager = SessionManager {
            shared: Arc::new(Shared {
                stamp: ArcSwapOption::empty(),
                state: Mutex::new(State {
                    current: None,
                    paused: false,
                    last_reported: None,
                    user: self.user,
                    lifecycle: Lifecycle::new(
                        self.without_export || self.without_span_export,
                        self.without_export || self.without_log_export,
                        Arc::clone(&outbox),
                    ),
                }),
                outbox,
                start_lock: Mutex::new(()),
                callbacks: ArcSwap::from_pointee(callbacks),
                observers: ArcSwap::from_pointee(
                    self.observers
                        .into_iter()
                        .map(RegisteredObserver::new)
                        .collect(),
                ),
                next_handle,
                id_generator: self
                    .id_generator
                    .unwrap_or_else(|| Arc::new(UuidV4Generator)),
                clock: self.clock.unwrap_or_else(|| Arc::new(SystemClock)),
                metrics: self.meter.as_ref().map(SessionMetrics::new),
                warned_reentrant: AtomicBool::new(false),
            }),
        };
        // A new manager may live where a dropped one did: no stale thread caches.
        crate::core::stamp::bump();
        manager
    }
}

impl SessionManager {
    /// A builder with the defaults (UUID v4 ids, the system clock, no callbacks).
    pub fn builder() -> SessionManagerBuilder {
        SessionManagerBuilder::default()
    }

    fn refuse_reentrant(&self, verb: &str) -> bool {
        if in_on_session() {
            crate::warn::once(
                &self.shared.warned_reentrant,
                format_args!(
                    "{verb}() was called from inside an on_session callback and was ignored; \
                     callbacks may only amend or discard the candidate session"
                ),
            );
            return true;
        }
        false
    }

    /// Starts a new session and returns it.
    ///
    /// A candidate is built and the `on_session` callbacks run on it *before* any
    /// state changes; then the current session (if any) ends with reason
    /// `replaced` and the candidate becomes current — even when a callback
    /// discarded it (a discarded session is current but stamps, counts, emits and
    /// notifies nothing). Its `previous_id` is the last reported session's id.
    ///
    /// Called from inside an `on_session` callback it does nothing and returns the
    /// current session.
    pub fn start_session(&self) -> Option<Session> {
        if self.refuse_reentrant("start_session") {
            return self.current_session();
        }
        let serial = self.serial();
        let started = self.start_serialized(&serial);
        drop(serial);
        self.shared.outbox.drain();
        Some(started)
    }

    /// Serialises starts, resumes that start, and user changes.
    fn serial(&self) -> MutexGuard<'_, ()> {
        self.shared
            .start_lock
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// The body of `start_session`; the caller holds the start lock and drains the
    /// outbox afterwards.
    fn start_serialized(&self, _serial: &MutexGuard<'_, ()>) -> Session {
        let (previous_id, user) = {
            let st = self.shared.lock();
            (st.last_reported.clone(), st.user.clone())
        };
        let mut candidate = SessionCandidate {
            id: self.shared.id_generator.new_session_id(),
            previous_id,
            started_at: self.shared.clock.now(),
            user,
            attributes: Vec::new(),
        };
        let callbacks = self.shared.callbacks.load_full();
        let keep = run_on_session(&callbacks, &mut candidate);

        let mut st = self.shared.lock();
        let mut notes = Notifications {
            ended: self.end_locked(&mut st, EndReason::Replaced, None),
            started: None,
        };
        // Dated under the lock, when it becomes current.
        candidate.started_at = self.shared.clock.now();
        let session = Arc::new(SessionState::new(candidate, !keep));
        st.current = Some(Arc::clone(&session));
        st.paused = false;
        if keep {
            st.last_reported = Some(session.id.clone());
            self.emit_start(&mut st, &session);
            if let Some(m) = &self.shared.metrics {
                m.started();
            }
        }
        self.shared.set_stamp(if keep {
            Some(Arc::clone(&session))
        } else {
            None
        });
        let snap = session.snapshot(false);
        if keep {
            notes.started = Some(snap.clone());
        }
        self.queue_notifications(notes);
        snap
    }

    /// Queues observer notifications behind the lifecycle output of the same
    /// change (call under the state lock).
    fn queue_notifications(&self, notes: Notifications) {
        if notes.ended.is_some() || notes.started.is_some() {
            self.shared
                .outbox
                .push(Outgoing::Notify(notes, self.shared.observers.load_full()));
        }
    }

    fn emit_start(&self, st: &mut State, s: &SessionState) {
        let mut attributes = s.id_attributes();
        if let Some(prev) = &s.previous_id {
            attributes.push(KeyValue::new(
                attr::SESSION_PREVIOUS_ID,
                Value::String(StringValue::from(prev.shared())),
            ));
        }
        let span_id = {
            let mut detail = s.detail();
            st.lifecycle.transition(Transition {
                name: attr::EVENT_START,
                trace_id: s.trace_id,
                root_span_id: s.root_span_id,
                at: s.started_at,
                attributes: attributes.clone(),
                timeline: &mut detail.timeline,
            })
        };
        st.lifecycle.log_event(
            attr::EVENT_START,
            s.started_at,
            s.trace_id,
            span_id,
            attributes,
        );
    }

    /// Ends the current session under the lock; the ended snapshot if it was
    /// reported. `at: None` dates the end now, read after new telemetry stopped
    /// being stamped with it.
    fn end_locked(
        &self,
        st: &mut State,
        reason: EndReason,
        at: Option<SystemTime>,
    ) -> Option<(Session, EndReason)> {
        let session = st.current.take()?;
        let was_paused = std::mem::replace(&mut st.paused, false);
        self.shared.set_stamp(None);
        if session.discarded {
            return None;
        }
        let at = at
            .unwrap_or_else(|| self.shared.clock.now())
            .max(session.started_at);
        let end_attributes = session.end_attributes(reason);
        let (user, timeline) = {
            let mut detail = session.detail();
            let span_id = st.lifecycle.transition(Transition {
                name: attr::EVENT_END,
                trace_id: session.trace_id,
                root_span_id: session.root_span_id,
                at,
                attributes: end_attributes.clone(),
                timeline: &mut detail.timeline,
            });
            st.lifecycle.log_event(
                attr::EVENT_END,
                at,
                session.trace_id,
                span_id,
                end_attributes.clone(),
            );
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
        if let Some(m) = &self.shared.metrics {
            m.ended(session.status(), session.started_at, at);
        }
        st.lifecycle.summary(
            session.trace_id,
            session.root_span_id,
            session.started_at,
            at,
            summary,
            timeline,
        );
        Some((session.snapshot(was_paused), reason))
    }

    /// Ends the current session with reason `reason`, dated `at` (now if `None`).
    /// Used by the verbs, the processors' shutdown, and tracking.
    pub(crate) fn end_with(&self, reason: EndReason, at: Option<SystemTime>) {
        {
            let mut st = self.shared.lock();
            let ended = self.end_locked(&mut st, reason, at);
            self.queue_notifications(Notifications {
                ended,
                started: None,
            });
        }
        self.shared.outbox.drain();
    }

    /// Ends the current session (reason `shutdown`) when a pipeline shuts down, so
    /// its end and summary are exported before the exporters close.
    pub(crate) fn end_for_shutdown(&self) {
        self.end_with(EndReason::Shutdown, None);
        // A drain under way on another thread must reach the sinks before they close.
        self.shared
            .outbox
            .drain_and_wait(std::time::Duration::from_millis(500));
    }

    /// Ends the current session (reason `manual`). Afterwards
    /// [`current_session`](Self::current_session) is `None`.
    pub fn end_session(&self) {
        if self.refuse_reentrant("end_session") {
            return;
        }
        self.end_with(EndReason::Manual, None);
    }

    /// Pauses the current session: no telemetry is attributed to it until it is
    /// resumed or a new session starts. A no-op without a session or when paused.
    pub fn pause_session(&self) {
        if self.refuse_reentrant("pause_session") {
            return;
        }
        let mut st = self.shared.lock();
        let Some(session) = st.current.clone() else {
            return;
        };
        if st.paused {
            return;
        }
        st.paused = true;
        self.shared.set_stamp(None);
        if !session.discarded {
            self.emit_simple(&mut st, &session, attr::EVENT_PAUSE);
        }
        drop(st);
        self.shared.outbox.drain();
    }

    fn emit_simple(&self, st: &mut State, s: &SessionState, name: &'static str) {
        let at = self.shared.clock.now().max(s.started_at);
        let mut detail = s.detail();
        st.lifecycle.transition(Transition {
            name,
            trace_id: s.trace_id,
            root_span_id: s.root_span_id,
            at,
            attributes: s.id_attributes(),
            timeline: &mut detail.timeline,
        });
    }

    /// Resumes a paused session: `true` if it was resumed (same id, counts
    /// continue). Otherwise `false`: with no session a new one is started; when the
    /// current session is not paused nothing changes.
    pub fn resume_session(&self) -> bool {
        if self.refuse_reentrant("resume_session") {
            return false;
        }
        let serial = self.serial();
        let resumed = {
            let mut st = self.shared.lock();
            match st.current.clone() {
                Some(session) if st.paused => {
                    st.paused = false;
                    if !session.discarded {
                        self.emit_simple(&mut st, &session, attr::EVENT_RESUME);
                        self.shared.set_stamp(Some(session));
                    }
                    Some(true)
                }
                Some(_) => Some(false),
                None => None,
            }
        };
        let result = match resumed {
            Some(r) => r,
            None => {
                // Checked and started under the start lock: two racing resumes
                // start one session.
                self.start_serialized(&serial);
                false
            }
        };
        drop(serial);
        self.shared.outbox.drain();
        result
    }

    /// A snapshot of the current session; `None` before the first start and after
    /// an end. Reading it is not activity.
    pub fn current_session(&self) -> Option<Session> {
        let st = self.shared.lock();
        st.current.as_ref().map(|s| s.snapshot(st.paused))
    }

    /// Sets the user of the current and later sessions (`User::default()` clears
    /// it). A change while a reported session is current is recorded on its
    /// summary span (an `otel_session.user_change` event; the summary carries the
    /// last user).
    pub fn set_user(&self, user: User) {
        if self.refuse_reentrant("set_user") {
            return;
        }
        let user = if user.is_empty() { None } else { Some(user) };
        // Serialised with starts: a start in progress picks the new user up.
        let _serial = self.serial();
        let mut st = self.shared.lock();
        st.user = user.clone();
        if let Some(session) = st.current.clone() {
            let mut detail = session.detail();
            if detail.user != user {
                if !session.discarded {
                    let attrs = user.as_ref().map(User::attributes).unwrap_or_default();
                    let at = self.shared.clock.now().max(session.started_at);
                    detail
                        .timeline
                        .push(Event::new(attr::EVENT_USER_CHANGE, at, attrs, 0));
                }
                detail.user = user;
            }
        }
    }

    /// Counts one handled error toward the current session (if it is reported and
    /// not paused).
    pub fn record_handled_error(&self) {
        if let Some(s) = &*self.shared.stamp.load() {
            s.count_handled();
        }
    }

    /// Counts one unhandled error toward the current session and marks it
    /// `crashed` (if it is reported and not paused). Status is never downgraded.
    pub fn record_unhandled_error(&self) {
        if let Some(s) = &*self.shared.stamp.load() {
            s.count_unhandled();
        }
    }

    /// Adds an `on_session` callback at run time; it runs after those already
    /// registered. The handle removes it.
    pub fn add_on_session<F>(&self, f: F) -> CallbackHandle
    where
        F: Fn(&mut SessionCandidate) -> bool + Send + Sync + 'static,
    {
        let handle = CallbackHandle(self.shared.next_handle.fetch_add(1, Ordering::Relaxed));
        let cb = RegisteredCallback::new(handle, f);
        self.shared.callbacks.rcu(|list| {
            let mut next = Vec::clone(list);
            next.push(cb.clone());
            next
        });
        handle
    }

    /// Removes a callback added with [`add_on_session`](Self::add_on_session);
    /// `false` if it was not registered (any more).
    pub fn remove_on_session(&self, handle: CallbackHandle) -> bool {
        let mut removed = false;
        self.shared.callbacks.rcu(|list| {
            let next: Vec<_> = list
                .iter()
                .filter(|c| c.handle != handle)
                .cloned()
                .collect();
            removed = next.len() != list.len();
            next
        });
        removed
    }

    /// Adds an observer at run time.
    pub fn add_observer(&self, observer: impl SessionObserver + 'static) {
        let o = RegisteredObserver::new(Arc::new(observer));
        self.shared.observers.rcu(|list| {
            let mut next = Vec::clone(list);
            next.push(o.clone());
            next
        });
    }

    /// `true` if `self` and `other` drive the same sessions.
    pub fn ptr_eq(&self, other: &SessionManager) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }
}
