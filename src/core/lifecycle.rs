//! Session lifecycle telemetry: the zero-duration transition spans (`session.start`,
//! `session.pause`, `session.resume`, `session.end`), the `session` summary span, and
//! the semantic-convention log events `session.start` / `session.end`.
//!
//! Lifecycle spans are built here as finished [`SpanData`] and handed straight to the
//! *sinks*: the exporting processors our wrappers wrap (or a processor given to a
//! standalone enricher). They never pass through a tracer, so they are never sampled
//! out, never become current, and never parent application spans; their trace id is
//! the session's ([`session_trace_id`](crate::session_trace_id)).
//!
//! Until a sink is connected, lifecycle output is held (up to [`PENDING_LIMIT`]
//! items) and a warning says how to connect one; it is delivered when one connects.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry::trace::{
    Event, SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue, Value};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::logs::{LogProcessor, SdkLogRecord, SdkLogger, SdkLoggerProvider};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks, SpanProcessor};

use crate::core::manager::SessionManager;
use crate::core::outbox::{Outbox, Outgoing};
use crate::model::attr;
use crate::model::id::random_span_id;

/// How many lifecycle spans (and, separately, log events) are held while no sink is
/// connected. Older ones are dropped first, with a warning.
pub const PENDING_LIMIT: usize = 1024;

/// The instrumentation scope of our own telemetry.
pub(crate) fn scope() -> InstrumentationScope {
    InstrumentationScope::builder(attr::SCOPE_NAME)
        .with_version(env!("CARGO_PKG_VERSION"))
        .build()
}

/// Events kept on the summary span: the first and last half of this are kept.
pub(crate) const MAX_SUMMARY_EVENTS: usize = 128;

/// The lifecycle events of one session, for its summary span: the first 64 and the
/// last 64 are kept, the rest only counted.
#[derive(Debug, Default)]
pub(crate) struct Timeline {
    head: Vec<Event>,
    tail: VecDeque<Event>,
    dropped: u32,
}

impl Timeline {
    pub(crate) fn push(&mut self, event: Event) {
        let half = MAX_SUMMARY_EVENTS / 2;
        if self.head.len() < half {
            self.head.push(event);
            return;
        }
        if self.tail.len() == half {
            self.tail.pop_front();
            self.dropped += 1;
        }
        self.tail.push_back(event);
    }

    fn into_events(self) -> (Vec<Event>, u32) {
        let mut events = self.head;
        events.extend(self.tail);
        (events, self.dropped)
    }
}

/// An exporting processor the lifecycle is delivered to.
#[derive(Debug, Clone)]
pub(crate) enum SinkRef {
    Span(Arc<dyn SpanProcessor>),
    Log(Arc<dyn LogProcessor>),
}

impl SinkRef {
    fn force_flush(&self) -> OTelSdkResult {
        match self {
            SinkRef::Span(p) => p.force_flush(),
            SinkRef::Log(p) => p.force_flush(),
        }
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        match self {
            SinkRef::Span(p) => p.shutdown_with_timeout(timeout),
            SinkRef::Log(p) => p.shutdown_with_timeout(timeout),
        }
    }
}

/// One of our processors' connection to its manager's lifecycle: made when the
/// provider sets the resource (the SDK's build step), undone at shutdown.
#[derive(Debug, Default)]
pub(crate) struct SinkLink {
    sink: Mutex<Option<SinkRef>>,
}

impl SinkLink {
    fn slot(&self) -> MutexGuard<'_, Option<SinkRef>> {
        self.sink.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Connects `sink` (replacing an earlier one) and delivers what was held.
    pub(crate) fn connect(&self, manager: &SessionManager, sink: SinkRef) {
        self.disconnect(manager);
        manager.shared.lock().lifecycle.add_sink(&sink);
        *self.slot() = Some(sink);
        manager.shared.outbox.drain();
    }

    /// Disconnects; returns the sink that was connected.
    pub(crate) fn disconnect(&self, manager: &SessionManager) -> Option<SinkRef> {
        let sink = self.slot().take()?;
        manager.shared.lock().lifecycle.remove_sink(&sink);
        Some(sink)
    }

    /// Flushes the connected sink (for processors that own theirs).
    pub(crate) fn force_flush(&self) -> OTelSdkResult {
        let sink = self.slot().clone();
        sink.map_or(Ok(()), |s| s.force_flush())
    }

    /// Disconnects and shuts the sink down (for processors that own theirs).
    pub(crate) fn shutdown(&self, manager: &SessionManager, timeout: Duration) -> OTelSdkResult {
        self.disconnect(manager)
            .map_or(Ok(()), |s| s.shutdown_with_timeout(timeout))
    }
}

/// One transition (or the summary) to emit.
pub(crate) struct Transition<'a> {
    pub(crate) name: &'static str,
    pub(crate) trace_id: TraceId,
    pub(crate) root_span_id: SpanId,
    pub(crate) at: SystemTime,
    pub(crate) attributes: Vec<KeyValue>,
    pub(crate) timeline: &'a mut Timeline,
}

/// A span attribute value as a log attribute value.
fn to_any(v: Value) -> AnyValue {
    match v {
        Value::Bool(b) => AnyValue::Boolean(b),
        Value::I64(i) => AnyValue::Int(i),
        Value::F64(f) => AnyValue::Double(f),
        Value::String(s) => AnyValue::String(s),
        other => AnyValue::String(other.to_string().into()),
    }
}

/// The connected sinks and what waits for them. Lives inside the manager's state
/// lock: every emission happens under it, so lifecycle output is totally ordered.
pub(crate) struct Lifecycle {
    span_sinks: Vec<Arc<dyn SpanProcessor>>,
    log_sinks: Vec<Arc<dyn LogProcessor>>,
    pending_spans: VecDeque<SpanData>,
    pending_logs: VecDeque<SdkLogRecord>,
    scope: InstrumentationScope,
    /// Only makes `SdkLogRecord`s (the SDK offers no other constructor); it has no
    /// processors, records are delivered to the log sinks directly.
    record_factory: Option<(SdkLoggerProvider, SdkLogger)>,
    /// No span export by choice: drop lifecycle spans without a word.
    discard_spans: bool,
    /// No log export by choice: drop lifecycle log events without a word.
    discard_logs: bool,
    outbox: Arc<Outbox>,
    warned_no_span_sink: AtomicBool,
    warned_span_overflow: AtomicBool,
    warned_log_overflow: AtomicBool,
}

impl fmt::Debug for Lifecycle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lifecycle")
            .field("span_sinks", &self.span_sinks.len())
            .field("log_sinks", &self.log_sinks.len())
            .field("pending_spans", &self.pending_spans.len())
            .field("pending_logs", &self.pending_logs.len())
            .finish()
    }
}

impl Lifecycle {
    pub(crate) fn new(discard_spans: bool, discard_logs: bool, outbox: Arc<Outbox>) -> Self {
        Lifecycle {
            discard_spans,
            discard_logs,
            outbox,
            span_sinks: Vec::new(),
            log_sinks: Vec::new(),
            pending_spans: VecDeque::new(),
            pending_logs: VecDeque::new(),
            scope: scope(),
            record_factory: None,
            warned_no_span_sink: AtomicBool::new(false),
            warned_span_overflow: AtomicBool::new(false),
            warned_log_overflow: AtomicBool::new(false),
        }
    }

    fn add_sink(&mut self, sink: &SinkRef) {
        match sink {
            SinkRef::Span(p) => {
                for span in self.pending_spans.drain(..) {
                    self.outbox.push(Outgoing::Span(span, vec![Arc::clone(p)]));
                }
                self.span_sinks.push(Arc::clone(p));
            }
            SinkRef::Log(p) => {
                for record in self.pending_logs.drain(..) {
                    self.outbox.push(Outgoing::Log(record, vec![Arc::clone(p)]));
                }
                self.log_sinks.push(Arc::clone(p));
            }
        }
    }

    fn remove_sink(&mut self, sink: &SinkRef) {
        match sink {
            SinkRef::Span(p) => self.span_sinks.retain(|s| !Arc::ptr_eq(s, p)),
            SinkRef::Log(p) => self.log_sinks.retain(|s| !Arc::ptr_eq(s, p)),
        }
    }

    /// Emits one zero-duration transition span (carrying the span event of its name)
    /// and records the event on the session's timeline.
    pub(crate) fn transition(&mut self, t: Transition<'_>) -> SpanId {
        let span_id = random_span_id();
        let event = Event::new(t.name, t.at, Vec::new(), 0);
        t.timeline.push(event.clone());
        let mut events = SpanEvents::default();
        events.events.push(event);
        self.emit_span(SpanData {
            span_context: SpanContext::new(
                t.trace_id,
                span_id,
                TraceFlags::SAMPLED,
                false,
                TraceState::NONE,
            ),
            parent_span_id: t.root_span_id,
            parent_span_is_remote: false,
            span_kind: SpanKind::Internal,
            name: t.name.into(),
            start_time: t.at,
            end_time: t.at,
            attributes: t.attributes,
            dropped_attributes_count: 0,
            events,
            links: SpanLinks::default(),
            status: Status::Unset,
            instrumentation_scope: self.scope.clone(),
        });
        span_id
    }

    /// Emits the `session` summary span over `[started_at, ended_at]` with every
    /// event of the timeline.
    pub(crate) fn summary(
        &mut self,
        trace_id: TraceId,
        root_span_id: SpanId,
        started_at: SystemTime,
        ended_at: SystemTime,
        mut attributes: Vec<KeyValue>,
        timeline: Timeline,
    ) {
        let (list, dropped) = timeline.into_events();
        if dropped > 0 {
            attributes.push(KeyValue::new(attr::DROPPED_EVENTS, i64::from(dropped)));
        }
        let mut events = SpanEvents::default();
        events.events = list;
        self.emit_span(SpanData {
            span_context: SpanContext::new(
                trace_id,
                root_span_id,
                TraceFlags::SAMPLED,
                false,
                TraceState::NONE,
            ),
            parent_span_id: SpanId::INVALID,
            parent_span_is_remote: false,
            span_kind: SpanKind::Internal,
            name: attr::SUMMARY_SPAN.into(),
            start_time: started_at,
            end_time: ended_at.max(started_at),
            attributes,
            dropped_attributes_count: 0,
            events,
            links: SpanLinks::default(),
            status: Status::Unset,
            instrumentation_scope: self.scope.clone(),
        });
    }

    fn emit_span(&mut self, span: SpanData) {
        if self.discard_spans {
            return;
        }
        match self.span_sinks.as_slice() {
            [] => {
                crate::warn::once(
                    &self.warned_no_span_sink,
                    format_args!(
                        "session lifecycle spans have no exporting span processor yet; \
                         they are held (up to {PENDING_LIMIT}) until one is connected. \
                         Wrap your exporting processor with SessionManager::span_processor(..), \
                         or give the standalone enricher one with with_lifecycle_processor(..)."
                    ),
                );
                if self.pending_spans.len() == PENDING_LIMIT {
                    self.pending_spans.pop_front();
                    crate::warn::once(
                        &self.warned_span_overflow,
                        format_args!(
                            "more than {PENDING_LIMIT} lifecycle spans waited for a span \
                             processor; the oldest are being dropped"
                        ),
                    );
                }
                self.pending_spans.push_back(span);
            }
            sinks => self.outbox.push(Outgoing::Span(span, sinks.to_vec())),
        }
    }

    /// Emits a semantic-convention log event (`session.start` or `session.end`),
    /// linked to its transition span.
    pub(crate) fn log_event(
        &mut self,
        name: &'static str,
        at: SystemTime,
        trace_id: TraceId,
        span_id: SpanId,
        attributes: Vec<KeyValue>,
    ) {
        if self.discard_logs {
            return;
        }
        let Some(mut record) = self.new_record() else {
            return;
        };
        record.set_event_name(name);
        record.set_timestamp(at);
        record.set_observed_timestamp(at);
        record.set_severity_number(Severity::Info);
        record.set_severity_text("INFO");
        record.set_trace_context(trace_id, span_id, Some(TraceFlags::SAMPLED));
        for kv in attributes {
            record.add_attribute(kv.key, to_any(kv.value));
        }
        match self.log_sinks.as_slice() {
            [] => {
                // Logs are optional: without a log pipeline the events wait quietly
                // (bounded) in case one is connected later.
                if self.pending_logs.len() == PENDING_LIMIT {
                    self.pending_logs.pop_front();
                    if !self.span_sinks.is_empty() {
                        // A span pipeline exists, so someone may expect logs too.
                        crate::warn::once(
                            &self.warned_log_overflow,
                            format_args!(
                                "session log events have no log processor connected; \
                                 the oldest of {PENDING_LIMIT} held are being dropped. \
                                 Wrap your exporting log processor with \
                                 SessionManager::log_processor(..) to export them."
                            ),
                        );
                    }
                }
                self.pending_logs.push_back(record);
            }
            sinks => self.outbox.push(Outgoing::Log(record, sinks.to_vec())),
        }
    }

    fn new_record(&mut self) -> Option<SdkLogRecord> {
        if self.record_factory.is_none() {
            let provider = SdkLoggerProvider::builder()
                .with_resource(opentelemetry_sdk::Resource::builder_empty().build())
                .build();
            let logger = provider.logger_with_scope(self.scope.clone());
            self.record_factory = Some((provider, logger));
        }
        self.record_factory
            .as_ref()
            .map(|(_, logger)| logger.create_log_record())
    }
}
