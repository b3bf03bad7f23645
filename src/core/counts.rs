//! A session's error counts and status, shared by app sessions (`SessionState`)
//! and request sessions (`RequestSession`).
//!
//! Counters are atomics, closed at the session's end: every error counted before
//! the close is in the end's summary, every later one is refused (and, for an
//! app session, counts toward the next one). The status only ever rises.
//!
//! May use: `model`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Mutex;

use opentelemetry::trace::SpanId;

use crate::model::session::SessionStatus;

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

/// One session's handled and unhandled errors and its status. A discarded
/// session's counts refuse everything (it reports nothing).
#[derive(Debug)]
pub(crate) struct Counts {
    discarded: bool,
    handled: AtomicU64,
    unhandled: AtomicU64,
    status: AtomicU8,
    /// A panic was counted (once per session).
    panicked: AtomicBool,
    /// Spans whose failure was counted (by a log record inside them or by the
    /// span itself): one failure counts once, however many processors see it.
    counted_spans: Mutex<VecDeque<SpanId>>,
}

impl Counts {
    pub(crate) fn new(discarded: bool) -> Self {
        Counts {
            discarded,
            handled: AtomicU64::new(0),
            unhandled: AtomicU64::new(0),
            status: AtomicU8::new(0),
            panicked: AtomicBool::new(false),
            counted_spans: Mutex::new(VecDeque::new()),
        }
    }

    /// Counts saved by an earlier run.
    pub(crate) fn restore(
        &self,
        handled: u64,
        unhandled: u64,
        status: SessionStatus,
        panicked: bool,
    ) {
        self.handled.store(handled.min(!CLOSED), Ordering::Relaxed);
        self.unhandled
            .store(unhandled.min(!CLOSED), Ordering::Relaxed);
        self.raise_to(status);
        if panicked {
            self.panicked.store(true, Ordering::Relaxed);
        }
    }

    pub(crate) fn status(&self) -> SessionStatus {
        status_from_u8(self.status.load(Ordering::Relaxed))
    }

    /// Raises the status (never lowers it): `abnormal` for a lost session.
    pub(crate) fn raise_to(&self, to: SessionStatus) {
        self.status.fetch_max(status_to_u8(to), Ordering::Relaxed);
    }

    /// One handled error (an ERROR log record, `record_handled_error`, an errored
    /// span). `false` if the session has closed its counts (it ended): the error
    /// is then not this session's.
    pub(crate) fn count_handled(&self) -> bool {
        if self.discarded || !count(&self.handled) {
            return false;
        }
        self.raise_to(SessionStatus::Errored);
        true
    }

    /// One unhandled error; the session is `crashed` from now on. `false` if it
    /// has ended.
    pub(crate) fn count_unhandled(&self) -> bool {
        if self.discarded || !count(&self.unhandled) {
            return false;
        }
        self.raise_to(SessionStatus::Crashed);
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
            self.raise_to(SessionStatus::Errored);
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

    /// Counts an ERROR record (each record is an error); the span it was
    /// emitted in is noted, so that span's own failure does not count again.
    /// `false` if the session has closed its counts (it ended).
    pub(crate) fn count_record(&self, span: Option<SpanId>) -> bool {
        if !self.count_handled() {
            return false;
        }
        if let Some(span) = span {
            self.note_failure(span);
        }
        true
    }
}
