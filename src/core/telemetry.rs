//! Lifecycle telemetry as plain descriptions, and how a description becomes
//! telemetry: the zero-duration transition spans (`session.start`,
//! `session.pause`, `session.resume`, `session.end`), the `session` summary
//! span, the semantic-convention log events `session.start` / `session.end`,
//! and the stability counts ([`SessionCounter`]).
//!
//! Descriptions are made under the manager's lock (cheap, no user code) and
//! turned into `SpanData` / `SdkLogRecord` only when delivered, outside it.
//! Lifecycle spans never pass through a tracer, so they are never sampled out,
//! never become current, and never parent application spans; their trace id is
//! the session's ([`session_trace_id`](crate::session_trace_id)).

use std::collections::VecDeque;
use std::sync::OnceLock;
use std::time::SystemTime;

use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry::trace::{
    Event, SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue, Value};
use opentelemetry_sdk::logs::{SdkLogRecord, SdkLogger, SdkLoggerProvider};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};

use crate::model::attr;
use crate::model::session::SessionStatus;

/// The instrumentation scope of our own telemetry.
pub(crate) fn scope() -> &'static InstrumentationScope {
    static SCOPE: OnceLock<InstrumentationScope> = OnceLock::new();
    SCOPE.get_or_init(|| {
        InstrumentationScope::builder(attr::SCOPE_NAME)
            .with_version(env!("CARGO_PKG_VERSION"))
            .build()
    })
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

    pub(crate) fn into_events(self) -> (Vec<Event>, u32) {
        let mut events = self.head;
        events.extend(self.tail);
        (events, self.dropped)
    }
}

/// A lifecycle span to export.
#[derive(Debug)]
pub(crate) struct LifecycleSpan {
    pub(crate) name: &'static str,
    pub(crate) trace_id: TraceId,
    pub(crate) span_id: SpanId,
    pub(crate) parent_span_id: SpanId,
    pub(crate) start: SystemTime,
    pub(crate) end: SystemTime,
    pub(crate) attributes: Vec<KeyValue>,
    pub(crate) events: Vec<Event>,
}

impl LifecycleSpan {
    pub(crate) fn into_span_data(self) -> SpanData {
        let mut events = SpanEvents::default();
        events.events = self.events;
        SpanData {
            span_context: SpanContext::new(
                self.trace_id,
                self.span_id,
                TraceFlags::SAMPLED,
                false,
                TraceState::NONE,
            ),
            parent_span_id: self.parent_span_id,
            parent_span_is_remote: false,
            span_kind: SpanKind::Internal,
            name: self.name.into(),
            start_time: self.start,
            end_time: self.end.max(self.start),
            attributes: self.attributes,
            dropped_attributes_count: 0,
            events,
            links: SpanLinks::default(),
            status: Status::Unset,
            instrumentation_scope: scope().clone(),
        }
    }
}

/// A semantic-convention log event to export, linked to its transition span
/// (or, for a crash report, to the span the crash happened in).
#[derive(Debug)]
pub(crate) struct LifecycleLog {
    pub(crate) name: &'static str,
    pub(crate) at: SystemTime,
    pub(crate) trace_id: TraceId,
    pub(crate) span_id: SpanId,
    pub(crate) attributes: Vec<KeyValue>,
    /// INFO for lifecycle events; ERROR or FATAL for crash reports.
    pub(crate) severity: Severity,
    pub(crate) body: Option<String>,
}

impl LifecycleLog {
    /// A lifecycle event (INFO, no body).
    pub(crate) fn event(
        name: &'static str,
        at: SystemTime,
        trace_id: TraceId,
        span_id: SpanId,
        attributes: Vec<KeyValue>,
    ) -> Self {
        LifecycleLog {
            name,
            at,
            trace_id,
            span_id,
            attributes,
            severity: Severity::Info,
            body: None,
        }
    }
}

/// A span attribute value as a log attribute value.
pub(crate) fn to_any(v: Value) -> AnyValue {
    match v {
        Value::Bool(b) => AnyValue::Boolean(b),
        Value::I64(i) => AnyValue::Int(i),
        Value::F64(f) => AnyValue::Double(f),
        Value::String(s) => AnyValue::String(s),
        other => AnyValue::String(other.to_string().into()),
    }
}

/// Only makes `SdkLogRecord`s (the SDK offers no other constructor); it has no
/// processors. Built once per process, on first use, outside every lock of ours
/// (building a provider emits SDK-internal `tracing` events).
fn record_factory() -> &'static SdkLogger {
    static FACTORY: OnceLock<(SdkLoggerProvider, SdkLogger)> = OnceLock::new();
    &FACTORY
        .get_or_init(|| {
            let provider = SdkLoggerProvider::builder()
                .with_resource(opentelemetry_sdk::Resource::builder_empty().build())
                .build();
            let logger = provider.logger_with_scope(scope().clone());
            (provider, logger)
        })
        .1
}

impl LifecycleLog {
    pub(crate) fn into_record(self) -> SdkLogRecord {
        let mut record = record_factory().create_log_record();
        record.set_event_name(self.name);
        record.set_timestamp(self.at);
        record.set_observed_timestamp(self.at);
        record.set_severity_number(self.severity);
        record.set_severity_text(self.severity.name());
        if let Some(body) = self.body {
            record.set_body(AnyValue::String(body.into()));
        }
        if self.trace_id != TraceId::INVALID {
            record.set_trace_context(self.trace_id, self.span_id, Some(TraceFlags::SAMPLED));
        }
        for kv in self.attributes {
            record.add_attribute(kv.key, to_any(kv.value));
        }
        record
    }
}

/// Counts for the stability metrics.
#[derive(Debug, Clone)]
pub(crate) enum CountEffect {
    Started,
    Ended {
        status: SessionStatus,
        started_at: SystemTime,
        ended_at: SystemTime,
        /// The attribute `otel_session.ended` is split by, as the session
        /// ended with it (`OTEL_SESSION_METRICS_SPLIT`), if any.
        split: Option<KeyValue>,
    },
}

/// Records the stability metrics (implemented by the `stability` module).
pub(crate) trait SessionCounter: Send + Sync + std::fmt::Debug {
    fn started(&self);
    fn ended(
        &self,
        status: SessionStatus,
        started_at: SystemTime,
        ended_at: SystemTime,
        split: Option<KeyValue>,
    );
}

impl CountEffect {
    pub(crate) fn apply(self, counter: &dyn SessionCounter) {
        match self {
            CountEffect::Started => counter.started(),
            CountEffect::Ended {
                status,
                started_at,
                ended_at,
                split,
            } => counter.ended(status, started_at, ended_at, split),
        }
    }
}
