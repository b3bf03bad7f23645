//! One live app session ([`SessionState`]) and the activity clock of a
//! manager's current session ([`Activity`]).
//!
//! A `SessionState` is shared by the manager and the hot path (through the
//! stamp). Its counts are atomics (`core::counts`); its user and timeline sit
//! behind a small mutex that only verbs take. A request's session is lighter
//! (`core::request`).

use std::cell::Cell;
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{Event, SpanId, TraceId};
use opentelemetry::{KeyValue, StringValue, Value};

use crate::core::callbacks::SessionCandidate;
use crate::core::counts::Counts;
use crate::core::telemetry::Timeline;
use crate::model::attr;
use crate::model::attributes::Attributes;
use crate::model::id::{session_root_span_id, session_trace_id};
use crate::model::session::{Session, SessionId, User};

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

/// The parts only verbs touch.
#[derive(Debug, Default)]
pub(crate) struct Detail {
    pub(crate) user: Option<User>,
    pub(crate) timeline: Timeline,
    /// Hangs seen in it (`otel_session.hangs`).
    pub(crate) hangs: u32,
    /// Its attributes (properties, feature flags, callbacks'), as the rules
    /// last set them.
    pub(crate) attributes: Attributes,
}

/// One live app session.
pub(crate) struct SessionState {
    pub(crate) id: SessionId,
    /// The id as a `&'static str`, while the static id budget lasts.
    pub(crate) static_id: Option<&'static str>,
    /// `session.id` as an attribute value.
    pub(crate) value: StringValue,
    pub(crate) previous_id: Option<SessionId>,
    /// When it started (nanoseconds): dated when it becomes current.
    started_at: AtomicU64,
    pub(crate) discarded: bool,
    pub(crate) trace_id: TraceId,
    pub(crate) root_span_id: SpanId,
    /// Its errors and status.
    pub(crate) counts: Counts,
    detail: Mutex<Detail>,
}

impl fmt::Debug for SessionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionState")
            .field("id", &self.id)
            .field("discarded", &self.discarded)
            .finish_non_exhaustive()
    }
}

impl SessionState {
    pub(crate) fn new(c: SessionCandidate, discarded: bool) -> Self {
        let static_id = if discarded { None } else { static_id(&c.id) };
        let value = match static_id {
            Some(id) => StringValue::from(id),
            None => StringValue::from(c.id.shared()),
        };
        SessionState {
            static_id,
            value,
            trace_id: session_trace_id(&c.id),
            root_span_id: session_root_span_id(&c.id),
            id: c.id,
            previous_id: c.previous_id,
            started_at: AtomicU64::new(nanos(c.started_at)),
            discarded,
            counts: Counts::new(discarded),
            detail: Mutex::new(Detail {
                user: c.user,
                timeline: Timeline::default(),
                hangs: 0,
                attributes: Attributes::default(),
            }),
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
            false,
        );
        state
            .counts
            .restore(saved.handled, saved.unhandled, saved.status, saved.panicked);
        {
            let mut detail = state.detail();
            detail.hangs = saved.hangs;
            detail.attributes = saved.attributes.clone();
        }
        state
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

    pub(crate) fn snapshot(&self, paused: bool) -> Session {
        let (handled, unhandled) = self.counts.counts();
        let detail = self.detail();
        Session {
            id: self.id.clone(),
            previous_id: self.previous_id.clone(),
            started_at: self.started_at(),
            paused,
            discarded: self.discarded,
            status: self.counts.status(),
            handled_errors: handled,
            unhandled_errors: unhandled,
            user: detail.user.clone(),
            attributes: detail.attributes.clone(),
        }
    }

    /// `session.id` as our lifecycle telemetry carries it.
    pub(crate) fn id_attribute(&self) -> KeyValue {
        KeyValue::new(attr::SESSION_ID, Value::String(self.value.clone()))
    }

    /// Records a timeline event (for the summary span).
    pub(crate) fn push_event(&self, name: &'static str, at: SystemTime, attrs: Vec<KeyValue>) {
        if !self.discarded {
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
