//! Crash reports in the driver: a panic's (or a native crash's) exception
//! record goes out through the log sinks, in order with the lifecycle (before
//! the `session.end` it causes), carrying the `session.id` of the session it
//! counted toward; the session's summary span gets an `exception` event with
//! the same attributes (trace-only backends see crashes there).
//!
//! The record is described under the lock like every other effect and never
//! passes through our own log processor, so it is never counted as an error
//! again: a crash counts once, as the crash.

use std::cell::RefCell;

use opentelemetry::logs::Severity;
use opentelemetry::trace::{SpanId, TraceId};
use opentelemetry::KeyValue;

use crate::core::outbox::Item;
use crate::core::rules::{Actor, Event};
use crate::core::session::SessionState;
use crate::core::telemetry::LifecycleLog;
use crate::model::attr;
use crate::model::exception::Exception;
use crate::model::session::SessionId;

use super::{Shared, Site};

thread_local! {
    /// The report of the crash this thread is driving, until the session it
    /// counts toward takes it (see `Shared::crash`).
    static REPORT: RefCell<Option<Exception>> = const { RefCell::new(None) };
}

/// The log record of `e`, for the session with `id` (whose lifecycle trace is
/// `session_trace` when the crash happened in no span).
fn record_of(
    e: &Exception,
    id: Option<KeyValue>,
    session_trace: Option<(TraceId, SpanId)>,
    flags: Vec<KeyValue>,
) -> LifecycleLog {
    let (trace_id, span_id) = e
        .span
        .or(session_trace)
        .unwrap_or((TraceId::INVALID, SpanId::INVALID));
    let mut attributes = Vec::with_capacity(12);
    attributes.extend(id.or_else(|| {
        e.session_id
            .as_ref()
            .map(|sid| KeyValue::new(attr::SESSION_ID, sid.clone()))
    }));
    attributes.extend(e.attributes());
    attributes.extend(flags);
    LifecycleLog {
        name: e.event_name,
        at: e.at,
        trace_id,
        span_id,
        attributes,
        severity: if e.fatal {
            Severity::Fatal
        } else {
            Severity::Error
        },
        body: Some(e.message.clone()),
    }
}

impl Shared {
    /// A panic outside a request on `actor`'s thread (`fatal`: the process
    /// goes down with it), reported by `report`. `true` if it was the first
    /// of the session it counted toward, or ended that session (then what it
    /// produced is worth flushing).
    pub(crate) fn crash(&self, fatal: bool, actor: Actor, report: Option<Exception>) -> bool {
        let _ = super::apply::take_crash_counted();
        self.with_report(report, || {
            self.drive(Event::Crash { fatal, actor }, Site::Safe);
        });
        super::apply::take_crash_counted()
    }

    /// Runs `drive` with `report` waiting for the session it counts toward
    /// (see [`crash_report_for`](Self::crash_report_for)). A report no
    /// reported session took (none, a discarded one, the app in the
    /// background) still goes out, without a `session.id`.
    pub(super) fn with_report(&self, report: Option<Exception>, drive: impl FnOnce()) {
        let _ = REPORT.try_with(|r| *r.borrow_mut() = report);
        drive();
        if let Some(e) = REPORT.try_with(|r| r.borrow_mut().take()).ok().flatten() {
            self.deliver(Item::Log(record_of(&e, None, None, Vec::new())));
        }
    }

    /// The crash being driven on this thread counted toward `s` (under the
    /// lock): its record, and the `exception` event on the summary span.
    pub(super) fn crash_report_for(&self, s: &SessionState) {
        let Some(e) = REPORT.try_with(|r| r.borrow_mut().take()).ok().flatten() else {
            return;
        };
        let event = if e.event_name == attr::EVENT_APP_JANK {
            s.detail().hangs += 1;
            attr::EVENT_APP_JANK
        } else {
            attr::EVENT_EXCEPTION
        };
        // The feature flags active when it happened, and the stamped
        // attributes (the record carries the session's id), on its record
        // and event.
        let flags = s
            .detail()
            .attributes
            .crash_attributes(&self.core.stamp_keys, true);
        let mut attributes = e.attributes();
        attributes.extend(flags.iter().cloned());
        s.push_event(event, e.at, attributes);
        self.outbox.push(Item::Log(record_of(
            &e,
            Some(s.id_attribute()),
            Some((s.trace_id, s.root_span_id)),
            flags,
        )));
    }

    /// A hang ended (the watchdog): counted as a handled error of the live
    /// session, `report` with it (see `stability::crash::hang`).
    pub(crate) fn hang(&self, report: Exception) {
        self.with_report(Some(report), || {
            self.drive(
                Event::Error {
                    unhandled: false,
                    actor: Actor::current(),
                },
                Site::Safe,
            );
        });
    }

    /// The app is in the foreground (no `background()` since the last
    /// `foreground()`): where hangs are watched.
    pub(crate) fn in_foreground(&self) -> bool {
        self.core.lock().rules.background_since.is_none()
    }

    /// A report that belongs to no app session of this manager (a request's
    /// panic; a native crash of an earlier run), carrying `id` if given:
    /// queued and delivered now.
    pub(crate) fn report_exception(
        &self,
        e: &Exception,
        id: Option<&SessionId>,
        flags: Vec<KeyValue>,
    ) {
        let id = id.map(|id| KeyValue::new(attr::SESSION_ID, id.to_string()));
        self.deliver(Item::Log(record_of(e, id, None, flags)));
    }
}
