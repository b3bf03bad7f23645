//! Log processors that stamp `session.id` on log records emitted while a reported
//! session is current and not paused, and count records at ERROR severity or above
//! as handled errors of the session whose id the record carries.
//!
//! - [`SessionLogProcessor`] *wraps* your exporting log processor (recommended): the
//!   attribute is added before the batch processor copies the record, and the
//!   `session.start` / `session.end` log events are exported through it.
//! - [`SessionLogEnricher`] is registered *before* your processors; it answers
//!   `false` from `event_enabled`, so it never turns logs on by itself. Without a
//!   processor given through [`SessionLogEnricher::with_lifecycle_processor`] (or a
//!   wrapped one) the lifecycle log events are held, bounded, until one connects.
//!
//! A record that already carries `session.id` is never changed.

use std::cell::Cell;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use opentelemetry::logs::{AnyValue, LogRecord as _, Severity};
use opentelemetry::trace::SpanId;
use opentelemetry::{Context, InstrumentationScope, Key, StringValue};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::logs::{LogProcessor, SdkLogRecord};
use opentelemetry_sdk::Resource;

use crate::core::callbacks::in_hook;
use crate::core::manager::SessionManager;
use crate::core::scope::{scopes_exist, Scope};
use crate::core::sinks::SinkRef;
use crate::core::stamp::{app_key, origin, scope_key, with_counted_session, Origin};
use crate::model::attributes::{Attributes, FEATURE_FLAG_PREFIX};
use crate::model::id::keeps;
use crate::processors::link::SinkLink;
use crate::processors::span_end::is_session_id;

#[inline]
fn is_error(record: &SdkLogRecord) -> bool {
    record
        .severity_number()
        .is_some_and(|s| s >= Severity::Error)
}

thread_local! {
    /// The record (address, observed time) last counted on this thread without
    /// a mark of ours on it: every processor of one provider sees the same record
    /// in one `emit`, and it must count once.
    static LAST_COUNTED: Cell<(usize, Option<SystemTime>)> = const { Cell::new((0, None)) };
}

/// `true` the first time this record is seen on this thread (see `LAST_COUNTED`).
fn first_sighting(record: &SdkLogRecord) -> bool {
    let key = (
        record as *const SdkLogRecord as usize,
        record.observed_timestamp(),
    );
    LAST_COUNTED.with(|c| c.replace(key)) != key
}

/// Stamps the record (unless it has an id), notes it as activity of the app
/// session it is stamped with, and counts an ERROR record once:
/// - stamped by us: toward that session (inside a request: the request's);
/// - unstamped inside a request: toward the request's session (its ids may not
///   be stamped, the record is still the request's);
/// - carrying an id the application set: toward the session with that id, if it
///   is still the one telemetry is attributed to;
/// - otherwise (no session, paused, a joined caller's session): not counted.
///
/// With several of our processors on one provider, the first does all of it.
#[inline]
fn process(manager: &SessionManager, record: &mut SdkLogRecord) {
    let carried = record
        .attributes_iter()
        .find(|(k, _)| is_session_id(k.as_str()))
        .map(|(k, v)| (origin(k), v));
    match carried {
        Some((Origin::App | Origin::Scoped, _)) => {}
        Some((Origin::Theirs, id)) => {
            if counts_as_error(manager, record) && first_sighting(record) {
                if let AnyValue::String(id) = id {
                    let span = error_span(manager, record);
                    Context::map_current(|cx| {
                        with_counted_session(&manager.shared.core.stamp, cx, |counts, of| {
                            if of.is_some_and(|of| of.as_str() == id.as_str()) {
                                counts.count_record(span);
                            }
                        })
                    });
                }
            }
        }
        None => stamp_new(manager, record),
    }
}

/// Session sampling for a record in the wrapper form: `true` if it carries the
/// id of a session sampled out (counted already, not exported).
#[cold]
fn sampled_out(manager: &SessionManager, record: &SdkLogRecord) -> bool {
    record
        .attributes_iter()
        .find(|(k, _)| is_session_id(k.as_str()))
        .is_some_and(|(_, v)| match v {
            AnyValue::String(id) => !keeps(manager.shared.sample_threshold, id.as_str()),
            _ => false,
        })
}

/// An ERROR record, and log records are an error source.
#[inline]
fn counts_as_error(manager: &SessionManager, record: &SdkLogRecord) -> bool {
    manager.shared.tracking.errors.logs && is_error(record)
}

/// The span a counted error record was emitted in, when spans are an error
/// source too (so that span does not count the same failure again).
fn error_span(manager: &SessionManager, record: &SdkLogRecord) -> Option<SpanId> {
    if !manager.shared.tracking.errors.spans {
        return None;
    }
    record.trace_context().map(|t| t.span_id)
}

#[inline]
fn stamp_new(manager: &SessionManager, record: &mut SdkLogRecord) {
    if in_hook() {
        return;
    }
    let shared = &manager.shared;
    let error = counts_as_error(manager, record);
    // A session scope is handled while the thread's context is borrowed (it
    // only stamps and counts); the app session after (starting one must not
    // run under that borrow).
    let scoped = scopes_exist()
        && Context::map_current(|cx| match Scope::of(cx) {
            Some(scope) => {
                let flagged = stamp_scoped(manager, record, scope, error);
                if scope.stamp.is_some() && shared.core.stamp.stamps_attributes {
                    stamp_attributes(manager, record, Some(cx), false, flagged);
                }
                true
            }
            None => false,
        });
    if scoped {
        return;
    }
    let Some(mut id) = shared.app_stamp() else {
        return;
    };
    // Activity before stamping: a record past the session's limits ends it, and
    // a racing record may have ended it meanwhile: read the stamp again (a cache
    // hit unless it changed), so such records all carry the next session. With
    // the system clock a thread notes activity at most once per millisecond
    // (the record's own timestamp, compared, not converted).
    if shared.timed && shared.note_telemetry(record.observed_timestamp()) {
        match shared.app_stamp() {
            Some(next) => id = next,
            None => return,
        }
    }
    let stamped = if error {
        stamp_error(manager, record)
    } else {
        record.add_attribute(
            Key::from_static_str(shared.core.stamp.app_key),
            AnyValue::String(id),
        );
        true
    };
    if stamped && shared.core.stamp.stamps_attributes {
        // A counted error record has its session's flags already.
        let stamp = &shared.core.stamp;
        match stamp.cached_stamped() {
            Some(list) if !error => {
                for kv in list {
                    record.add_attribute(kv.key(), kv.any_value());
                }
            }
            _ => stamp_attributes(manager, record, None, true, error),
        }
    }
}

/// The stamped session attributes (`OTEL_SESSION_STAMP_ATTRIBUTES`) of the
/// session a record was stamped with: the app session (`app`), else the
/// request session `cx` carries. `flagged`: the record carries the session's
/// feature flags already (a counted error), so stamped flags are not added
/// again (a key appears once on a record).
#[inline(never)]
fn stamp_attributes(
    manager: &SessionManager,
    record: &mut SdkLogRecord,
    cx: Option<&Context>,
    app: bool,
    flagged: bool,
) {
    manager.shared.stamped_attributes(cx, app, |kv| {
        if !(flagged && kv.key.as_str().starts_with(FEATURE_FLAG_PREFIX)) {
            record.add_attribute(kv.key, crate::core::telemetry::to_any(kv.value))
        }
    });
}

/// A record inside a session scope (a request, a joined session): its stamp,
/// if the scope has one, and its error counted toward the request's session
/// (`true`: counted, with the request's flags added).
/// Out of line: the app-session path keeps `Context::map_current` inlined.
#[inline(never)]
fn stamp_scoped(
    manager: &SessionManager,
    record: &mut SdkLogRecord,
    scope: &Scope,
    error: bool,
) -> bool {
    let stamped = scope.stamp.is_some();
    if let Some(id) = &scope.stamp {
        record.add_attribute(
            Key::from_static_str(scope_key()),
            AnyValue::String(id.clone()),
        );
    }
    // Inside a request, its errors are its own, ids stamped or not (a joined
    // caller's session is never counted here).
    if error && (stamped || first_sighting(record)) {
        if let Some(r) = scope.request() {
            if r.counts.count_record(error_span(manager, record)) {
                add_flags(record, r.with_attributes(Attributes::flag_attributes));
                return true;
            }
        }
    }
    false
}

/// An ERROR record is stamped with the session it was counted toward, at once:
/// if that session ends meanwhile (its counts closed), the next one takes both.
/// So a session's end always counts exactly the error records carrying its id.
/// `true` if it was stamped.
#[cold]
fn stamp_error(manager: &SessionManager, record: &mut SdkLogRecord) -> bool {
    match count_app(manager, error_span(manager, record)) {
        Some((id, flags)) => {
            record.add_attribute(Key::from_static_str(app_key()), AnyValue::String(id));
            add_flags(record, flags);
            true
        }
        None => false,
    }
}

/// The feature flags active when an error was counted, on its record.
fn add_flags(record: &mut SdkLogRecord, flags: Vec<opentelemetry::KeyValue>) {
    for kv in flags {
        record.add_attribute(kv.key, crate::core::telemetry::to_any(kv.value));
    }
}

/// Counts one error toward the app session telemetry is stamped with now (if
/// it ends meanwhile, toward the next one); that session's id and its
/// active feature flags.
fn count_app(
    manager: &SessionManager,
    span: Option<SpanId>,
) -> Option<(StringValue, Vec<opentelemetry::KeyValue>)> {
    let shared = &manager.shared;
    loop {
        let Some(session) = shared.core.stamp.session() else {
            // Ended with nothing after it, or a restart due: the slow path.
            shared.app_stamp()?;
            continue;
        };
        if session.counts.count_record(span) {
            let flags = session.detail().attributes.flag_attributes();
            return Some((session.value.clone(), flags));
        }
        // Closed: it ended meanwhile; the next one takes the error (unless it
        // is still the one stamped: an end is under way, not ours).
        if shared
            .core
            .stamp
            .session()
            .is_some_and(|s| Arc::ptr_eq(&s, &session))
        {
            return None;
        }
    }
}

/// An error no pipeline of ours sees (an ERROR `tracing` event while logs, or
/// its span while traces, are not exported): counted as the wrapper counts an
/// ERROR record — toward the request's session inside a request, nothing in a
/// joined-only context, else the app session (activity; after a timeout it
/// starts the next one) — with the span it happened in (`span`) noted, so that
/// span's Error status does not count it again.
#[cfg(feature = "tracing")]
pub(crate) fn count_unexported_error(manager: &SessionManager, span: Option<SpanId>) {
    if in_hook() {
        return;
    }
    // In a scope: counted (a request's) or not (joined only) under the
    // context's borrow; the app session after it (starting one must not run
    // under that borrow).
    let in_scope = Context::map_current(|cx| {
        Scope::of(cx).map(|scope| {
            if let Some(request) = scope.request() {
                request.counts.count_record(span);
            }
        })
    });
    match in_scope {
        Some(()) => {}
        None => {
            let shared = &manager.shared;
            if shared.app_stamp().is_none() {
                return;
            }
            if shared.timed {
                shared.note_telemetry(None);
            }
            count_app(manager, span);
        }
    }
}

/// Wraps the exporting log processor `P`: stamps `session.id`, counts errors,
/// delegates everything to `P`, and exports the session log events through `P`.
///
/// Built with [`SessionManager::log_processor`].
#[derive(Debug)]
pub struct SessionLogProcessor<P: LogProcessor + 'static> {
    manager: SessionManager,
    inner: Arc<P>,
    link: SinkLink,
}

impl<P: LogProcessor + 'static> LogProcessor for SessionLogProcessor<P> {
    #[inline]
    fn emit(&self, record: &mut SdkLogRecord, scope: &InstrumentationScope) {
        process(&self.manager, record);
        if self.manager.shared.sample_threshold.is_some() && sampled_out(&self.manager, record) {
            return;
        }
        self.inner.emit(record, scope);
    }

    fn force_flush(&self) -> OTelSdkResult {
        // Lifecycle output queued from inside a processor goes first; the
        // flush acknowledges what `P` delivered (the ledger).
        self.manager.shared.flush();
        if self.link.connected() {
            self.link.flush(&self.manager)
        } else {
            self.inner.force_flush()
        }
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.manager.end_for_shutdown(timeout / 2);
        // A flush before the shutdown: the only way to learn (and acknowledge)
        // what `P` delivered.
        let _ = self.force_flush();
        self.link.disconnect(&self.manager);
        let result = self.inner.shutdown_with_timeout(timeout);
        // What `P`'s exporter acknowledged while shutting down is saved now.
        self.manager.shared.flush();
        result
    }

    fn event_enabled(&self, level: Severity, target: &str, name: Option<&str>) -> bool {
        self.inner.event_enabled(level, target, name)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.link.disconnect(&self.manager);
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => inner.set_resource(resource),
            None => crate::warn::stderr(format_args!(
                "SessionLogProcessor::set_resource could not reach the wrapped processor"
            )),
        }
        let sink = Arc::clone(&self.inner) as Arc<dyn LogProcessor>;
        self.link.connect(&self.manager, SinkRef::log(sink));
    }
}

/// Stamps `session.id` on log records from beside your other log processors.
/// Register it *first*: processors see the record in registration order and the
/// batch processor copies it.
///
/// Built with [`SessionManager::standalone_log_processor`].
#[derive(Debug)]
pub struct SessionLogEnricher {
    manager: SessionManager,
    lifecycle: Option<Box<dyn LogProcessor>>,
    link: SinkLink,
}

impl SessionLogEnricher {
    /// Exports the `session.start` / `session.end` log events through `processor`.
    pub fn with_lifecycle_processor(mut self, processor: impl LogProcessor + 'static) -> Self {
        self.lifecycle = Some(Box::new(processor));
        self
    }
}

impl LogProcessor for SessionLogEnricher {
    fn emit(&self, record: &mut SdkLogRecord, _scope: &InstrumentationScope) {
        process(&self.manager, record);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.manager.shared.flush();
        self.link.flush(&self.manager)
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.manager.end_for_shutdown(timeout / 2);
        self.link.shutdown(&self.manager, timeout)
    }

    /// Always `false`: an enricher must not turn on logs no exporter wants.
    fn event_enabled(&self, _level: Severity, _target: &str, _name: Option<&str>) -> bool {
        false
    }

    fn set_resource(&mut self, resource: &Resource) {
        if let Some(mut p) = self.lifecycle.take() {
            p.set_resource(resource);
            self.link.connect(&self.manager, SinkRef::log(Arc::from(p)));
        }
    }
}

impl SessionManager {
    /// Wraps your exporting log processor (recommended form).
    pub fn log_processor<P: LogProcessor + 'static>(&self, inner: P) -> SessionLogProcessor<P> {
        SessionLogProcessor {
            manager: self.clone(),
            inner: Arc::new(inner),
            link: SinkLink::default(),
        }
    }

    /// A stamping log processor to register first, beside your own (see
    /// [`SessionLogEnricher`]).
    pub fn standalone_log_processor(&self) -> SessionLogEnricher {
        SessionLogEnricher {
            manager: self.clone(),
            lifecycle: None,
            link: SinkLink::default(),
        }
    }
}
