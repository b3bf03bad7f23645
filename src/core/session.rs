//! One live session ([`SessionState`]) and the activity clock of a manager's
//! current session ([`Activity`]).
//!
//! A `SessionState` is shared by the manager, the hot path (through the stamp)
//! and, for request sessions, the request's `Context`. Its counters are atomics;
//! its user and timeline sit behind a small mutex that only verbs take.

use std::cell::Cell;
use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{Event, SpanId, TraceId};
use opentelemetry::{KeyValue, StringValue, Value};

use crate::core::callbacks::SessionCandidate;
use crate::core::telemetry::Timeline;
use crate::model::attr;
use crate::model::id::{session_root_span_id, session_trace_id};
use crate::model::session::{Session, SessionId, SessionStatus, User};

/// What a session is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// The app-wide session of a manager: lifecycle telemetry, timeouts.
    App,
    /// One request's session (request mode): counted only.
    Request,
}

/// How many session ids are kept as `&'static str` for the process's life.
///
/// A span attribute built from a `&'static str` is copied without touching a
/// shared reference count; an `Arc<str>` one costs an atomic increment on the
/// caller and a decrement on the batch thread, on a cache line both cores fight
/// over, for every span. Ids are never freed because exported spans may hold them
/// for any time: 4,096 ids (~150 KiB) cover the app sessions of any realistic
/// process; later sessions use reference-counted ids. Request sessions never
/// spend this budget.
const STATIC_ID_BUDGET: usize = 4096;
static STATIC_IDS_LEFT: AtomicUsize = AtomicUsize::new(STATIC_ID_BUDGET);

/// The id as a `&'static str` while the budget lasts.
fn static_id(id: &SessionId) -> Option<&'static str> {
    STATIC_IDS_LEFT
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
        .ok()
        .map(|_| &*Box::leak(id.as_str().to_owned().into_boxed_str()))
}

/// Nanoseconds since the Unix epoch (0 before it, saturating far after).
#[inline]
pub(crate) fn nanos(t: SystemTime) -> u64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => u64::try_from(d.as_nanos()).unwrap_or(u64::MAX),
        Err(_) => 0,
    }
}

/// The time `n` nanoseconds after the Unix epoch.
pub(crate) fn from_nanos(n: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(n)
}

/// The bit that marks a counter closed (its session ended).
const CLOSED: u64 = 1 << 63;

/// Spans remembered per session as "an error in it was counted already".
const COUNTED_SPANS: usize = 256;

/// Adds one unless the counter is closed.
fn count(counter: &AtomicU64) -> bool {
    counter
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
            (v & CLOSED == 0).then_some(v + 1)
        })
        .is_ok()
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

/// The parts only verbs touch.
#[derive(Debug, Default)]
pub(crate) struct Detail {
    pub(crate) user: Option<User>,
    pub(crate) timeline: Timeline,
}

/// One live session.
pub(crate) struct SessionState {
    pub(crate) id: SessionId,
    pub(crate) kind: Kind,
    /// The id as a `&'static str`, while the static id budget lasts (app sessions).
    pub(crate) static_id: Option<&'static str>,
    /// `session.id` as an attribute value.
    pub(crate) value: StringValue,
    pub(crate) previous_id: Option<SessionId>,
    /// When it started (nanoseconds): dated when it becomes current.
    started_at: AtomicU64,
    pub(crate) discarded: bool,
    pub(crate) trace_id: TraceId,
    pub(crate) root_span_id: SpanId,
    handled: AtomicU64,
    unhandled: AtomicU64,
    status: AtomicU8,
    /// Attributes from `on_session` callbacks, for the summary span.
    pub(crate) attributes: Vec<KeyValue>,
    detail: Mutex<Detail>,
    /// Spans whose failure was counted (by a log record inside them or by the
    /// span itself): one failure counts once, however many processors see it.
    counted_spans: Mutex<VecDeque<SpanId>>,
    /// A panic was counted (once per session).
    panicked: AtomicBool,
}

impl fmt::Debug for SessionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionState")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("discarded", &self.discarded)
            .finish_non_exhaustive()
    }
}

impl SessionState {
    pub(crate) fn new(c: SessionCandidate, kind: Kind, discarded: bool) -> Self {
        let static_id = if discarded || kind == Kind::Request {
            None
        } else {
            static_id(&c.id)
        };
        let value = match static_id {
            Some(id) => StringValue::from(id),
            None => StringValue::from(c.id.shared()),
        };
        let (trace_id, root_span_id) = match kind {
            Kind::App => (session_trace_id(&c.id), session_root_span_id(&c.id)),
            Kind::Request => (TraceId::INVALID, SpanId::INVALID),
        };
        SessionState {
            static_id,
            value,
            trace_id,
            root_span_id,
            kind,
            id: c.id,
            previous_id: c.previous_id,
            started_at: AtomicU64::new(nanos(c.started_at)),
            discarded,
            handled: AtomicU64::new(0),
            unhandled: AtomicU64::new(0),
            status: AtomicU8::new(0),
            attributes: c.attributes,
            detail: Mutex::new(Detail {
                user: c.user,
                timeline: Timeline::default(),
            }),
            counted_spans: Mutex::new(VecDeque::new()),
            panicked: AtomicBool::new(false),
        }
    }

    /// A session saved by an earlier run, with its counts and status.
    pub(crate) fn restored(saved: &crate::core::persist::SavedSession) -> Self {
        let state = SessionState::new(
            SessionCandidate {
                id: saved.id.clone(),
                previous_id: saved.previous_id.clone(),
                started_at: saved.started_at,
                user: saved.user.clone(),
                user_set: false,
                attributes: Vec::new(),
            },
            Kind::App,
            false,
        );
        state
            .handled
            .store(saved.handled.min(!CLOSED), Ordering::Relaxed);
        state
            .unhandled
            .store(saved.unhandled.min(!CLOSED), Ordering::Relaxed);
        state.raise_status(saved.status);
        if saved.panicked {
            state.panicked.store(true, Ordering::Relaxed);
        }
        state
    }

    /// Raises the status (never lowers it): `abnormal` for a lost session.
    pub(crate) fn raise_to(&self, status: SessionStatus) {
        self.raise_status(status);
    }

    /// When the session started.
    pub(crate) fn started_at(&self) -> SystemTime {
        from_nanos(self.started_at.load(Ordering::Relaxed))
    }

    /// Dates the start (when it becomes current; before anyone reads it).
    pub(crate) fn date_start(&self, at: SystemTime) {
        self.started_at.store(nanos(at), Ordering::Relaxed);
    }

    pub(crate) fn detail(&self) -> MutexGuard<'_, Detail> {
        self.detail.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn status(&self) -> SessionStatus {
        status_from_u8(self.status.load(Ordering::Relaxed))
    }

    fn raise_status(&self, to: SessionStatus) {
        self.status.fetch_max(status_to_u8(to), Ordering::Relaxed);
    }

    /// One handled error (an ERROR log record, `record_handled_error`, an errored
    /// span). `false` if the session has closed its counts (it ended): the error
    /// is then not this session's.
    pub(crate) fn count_handled(&self) -> bool {
        if self.discarded {
            return false;
        }
        if !count(&self.handled) {
            return false;
        }
        self.raise_status(SessionStatus::Errored);
        true
    }

    /// One unhandled error; the session is `crashed` from now on. `false` if it
    /// has ended.
    pub(crate) fn count_unhandled(&self) -> bool {
        if self.discarded {
            return false;
        }
        if !count(&self.unhandled) {
            return false;
        }
        self.raise_status(SessionStatus::Crashed);
        true
    }

    /// A panic in this session: `crashed`, one unhandled error however many
    /// panics (the panic hook and the request layer both report the same one).
    /// `true` the first time.
    pub(crate) fn mark_panicked(&self) -> bool {
        if self.discarded || self.panicked.swap(true, Ordering::AcqRel) {
            return false;
        }
        self.count_unhandled()
    }

    /// A panic was counted in this session.
    pub(crate) fn panicked(&self) -> bool {
        self.panicked.load(Ordering::Acquire)
    }

    /// `errored` without counting an error (a 5xx response, a service error).
    pub(crate) fn mark_errored(&self) {
        if !self.discarded {
            self.raise_status(SessionStatus::Errored);
        }
    }

    /// `(handled, unhandled)` so far.
    pub(crate) fn counts(&self) -> (u64, u64) {
        (
            self.handled.load(Ordering::Acquire) & !CLOSED,
            self.unhandled.load(Ordering::Acquire) & !CLOSED,
        )
    }

    /// Closes the counts (at the session's end): every error counted before is
    /// in the result, every later one is refused. One status snapshot consistent
    /// with them.
    pub(crate) fn close(&self) -> (SessionStatus, u64, u64) {
        let handled = self.handled.fetch_or(CLOSED, Ordering::AcqRel) & !CLOSED;
        let unhandled = self.unhandled.fetch_or(CLOSED, Ordering::AcqRel) & !CLOSED;
        (self.status_with(handled, unhandled), handled, unhandled)
    }

    /// The status consistent with counts read a moment ago: a count is made
    /// just before the status it raises, so a racing count may not have
    /// raised it yet.
    pub(crate) fn status_with(&self, handled: u64, unhandled: u64) -> SessionStatus {
        let mut status = self.status();
        if handled > 0 {
            status = status.max(SessionStatus::Errored);
        }
        if unhandled > 0 {
            status = status.max(SessionStatus::Crashed);
        }
        status
    }

    /// Notes that a failure inside span `span` was counted (an ERROR log record
    /// in it): the span's own Error status does not count again.
    pub(crate) fn note_failure(&self, span: SpanId) {
        let _ = self.first_failure_of(span);
    }

    /// `true` the first time a failure of span `span` is accounted for in this
    /// session (an ERROR log record inside it, or the span's own Error status
    /// or `exception` event, seen by any of the processors): a failure counts
    /// once. The last [`COUNTED_SPANS`] spans are remembered.
    pub(crate) fn first_failure_of(&self, span: SpanId) -> bool {
        let mut spans = self.counted_spans.lock().unwrap_or_else(|e| e.into_inner());
        if spans.contains(&span) {
            return false;
        }
        if spans.len() == COUNTED_SPANS {
            spans.pop_front();
        }
        spans.push_back(span);
        true
    }

    pub(crate) fn snapshot(&self, paused: bool) -> Session {
        let (handled, unhandled) = self.counts();
        Session {
            id: self.id.clone(),
            previous_id: self.previous_id.clone(),
            started_at: self.started_at(),
            paused,
            discarded: self.discarded,
            status: self.status(),
            handled_errors: handled,
            unhandled_errors: unhandled,
            user: self.detail().user.clone(),
        }
    }

    /// `session.id` as our lifecycle telemetry carries it.
    pub(crate) fn id_attribute(&self) -> KeyValue {
        KeyValue::new(attr::SESSION_ID, Value::String(self.value.clone()))
    }

    /// Records a timeline event (for the summary span).
    pub(crate) fn push_event(&self, name: &'static str, at: SystemTime, attrs: Vec<KeyValue>) {
        if self.kind == Kind::App && !self.discarded {
            self.detail()
                .timeline
                .push(Event::new(name, at.max(self.started_at()), attrs, 0));
        }
    }
}

thread_local! {
    /// The manager this thread last noted activity for, and when it may next.
    static NEXT_NOTE: Cell<(usize, SystemTime)> = const { Cell::new((0, UNIX_EPOCH)) };
}

/// `true` if telemetry ending at `at` on this thread is worth noting as activity
/// of `owner`'s session: at most once per [`Activity::GRANULARITY`] per thread
/// (a time comparison, no conversion, in the common case).
#[inline]
pub(crate) fn due<T>(owner: &T, at: SystemTime) -> bool {
    if !due_maybe(owner, at) {
        return false;
    }
    mark_due(owner, at);
    true
}

/// The first half of [`due`]: `false` if this thread noted activity of `owner`
/// less than [`Activity::GRANULARITY`] before `at`.
#[inline]
pub(crate) fn due_maybe<T>(owner: &T, at: SystemTime) -> bool {
    let key = owner as *const T as usize;
    match NEXT_NOTE.try_with(Cell::get) {
        Ok((who, next)) => who != key || at >= next,
        Err(_) => true,
    }
}

/// The second half of [`due`]: the next note is due a granularity after `at`.
pub(crate) fn mark_due<T>(owner: &T, at: SystemTime) {
    let key = owner as *const T as usize;
    let next = at
        .checked_add(Duration::from_nanos(Activity::GRANULARITY))
        .unwrap_or(at);
    let _ = NEXT_NOTE.try_with(|c| c.set((key, next)));
}

/// Activity of a manager's current app session, read and written without a
/// lock: the time of the last activity, and the two limits that end the session.
///
/// Telemetry updates `last` at most once per [`Activity::GRANULARITY`] per
/// session (a shared cache line written rarely stays cheap to read), so the
/// last activity is known to within that granularity.
#[derive(Debug)]
pub(crate) struct Activity {
    /// Nanoseconds (clock time) of the last activity.
    last: AtomicU64,
    /// The inactivity timeout in nanoseconds; `u64::MAX` when disabled or when
    /// no session is being timed.
    idle_limit: AtomicU64,
    /// The end of the maximum duration in nanoseconds; `u64::MAX` likewise.
    max_deadline: AtomicU64,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            last: AtomicU64::new(0),
            idle_limit: AtomicU64::new(u64::MAX),
            max_deadline: AtomicU64::new(u64::MAX),
        }
    }
}

impl Activity {
    /// Telemetry closer together than this does not move `last`.
    pub(crate) const GRANULARITY: u64 = 1_000_000;

    /// Notes activity at `t` (nanoseconds); `true` if `t` is past a limit of the
    /// session (the caller then lets the manager end it).
    #[inline]
    /// `now` reads the clock, on the slow path only: telemetry dated in the
    /// future (an explicit end time) counts as activity now, not later.
    pub(crate) fn touch(&self, t: u64, now: impl FnOnce() -> u64) -> bool {
        let last = self.last.load(Ordering::Relaxed);
        if t <= last.saturating_add(Self::GRANULARITY) {
            return false;
        }
        self.touch_slow(t.min(now()), last)
    }

    #[inline(never)]
    fn touch_slow(&self, t: u64, last: u64) -> bool {
        if self.past_limits(t, last) {
            return true;
        }
        self.last.fetch_max(t, Ordering::Relaxed);
        false
    }

    fn past_limits(&self, t: u64, last: u64) -> bool {
        t.saturating_sub(last) >= self.idle_limit.load(Ordering::Acquire)
            || t >= self.max_deadline.load(Ordering::Acquire)
    }

    /// Activity the rules noted (a verb): the last activity moves to `t` unless
    /// it is later already.
    pub(crate) fn raise(&self, t: u64) {
        self.last.fetch_max(t, Ordering::Relaxed);
    }

    pub(crate) fn last(&self) -> u64 {
        self.last.load(Ordering::Relaxed)
    }

    /// Starts timing a session that started at `started` and was last active
    /// at `last` (its start, unless it is restored), with these limits.
    pub(crate) fn arm(
        &self,
        started: u64,
        last: u64,
        idle: Option<Duration>,
        max: Option<Duration>,
    ) {
        self.last.store(last.max(started), Ordering::Relaxed);
        let idle = idle.map_or(u64::MAX, |d| {
            u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
        });
        let max = max.map_or(u64::MAX, |d| {
            started.saturating_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        });
        self.idle_limit.store(idle, Ordering::Relaxed);
        self.max_deadline.store(max, Ordering::Relaxed);
    }

    /// No session is being timed.
    pub(crate) fn disarm(&self) {
        self.idle_limit.store(u64::MAX, Ordering::Release);
        self.max_deadline.store(u64::MAX, Ordering::Release);
    }
}

impl crate::core::rules::Handle for std::sync::Arc<SessionState> {
    fn id(&self) -> &SessionId {
        &self.id
    }
    fn reported(&self) -> bool {
        !self.discarded
    }
}
