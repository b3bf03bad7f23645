//! Shared test pipeline: an SDK tracer and logger provider whose exporting
//! processors (simple processors on in-memory exporters) are wrapped by ours.
#![allow(dead_code)]

use opentelemetry::logs::AnyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::logs::{
    in_memory_exporter::LogDataWithResource, InMemoryLogExporter, SdkLoggerProvider,
    SimpleLogProcessor,
};
use opentelemetry_sdk::trace::{
    InMemorySpanExporter, SdkTracer, SdkTracerProvider, SimpleSpanProcessor, SpanData,
};
use otel_session::{SessionManager, SessionManagerBuilder};

pub struct Pipeline {
    pub sessions: SessionManager,
    pub span_exporter: InMemorySpanExporter,
    pub log_exporter: InMemoryLogExporter,
    pub tracer_provider: SdkTracerProvider,
    pub logger_provider: SdkLoggerProvider,
}

pub fn pipeline(builder: SessionManagerBuilder) -> Pipeline {
    let sessions = builder.build();
    let span_exporter = InMemorySpanExporter::default();
    let log_exporter = InMemoryLogExporter::default();
    let tracer_provider = SdkTracerProvider::builder()
        .with_span_processor(
            sessions.span_processor(SimpleSpanProcessor::new(span_exporter.clone())),
        )
        .build();
    let logger_provider = SdkLoggerProvider::builder()
        .with_log_processor(sessions.log_processor(SimpleLogProcessor::new(log_exporter.clone())))
        .build();
    Pipeline {
        sessions,
        span_exporter,
        log_exporter,
        tracer_provider,
        logger_provider,
    }
}

impl Pipeline {
    pub fn tracer(&self) -> SdkTracer {
        self.tracer_provider.tracer("test")
    }

    pub fn spans(&self) -> Vec<SpanData> {
        self.span_exporter.get_finished_spans().expect("spans")
    }

    /// Spans the application made (not the lifecycle).
    pub fn app_spans(&self) -> Vec<SpanData> {
        self.spans()
            .into_iter()
            .filter(|s| s.instrumentation_scope.name() != "otel-session")
            .collect()
    }

    /// Lifecycle spans, in export order.
    pub fn lifecycle_spans(&self) -> Vec<SpanData> {
        self.spans()
            .into_iter()
            .filter(|s| s.instrumentation_scope.name() == "otel-session")
            .collect()
    }

    pub fn app_span(&self, name: &str) -> SpanData {
        self.app_spans()
            .into_iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no span named {name}"))
    }

    pub fn logs(&self) -> Vec<LogDataWithResource> {
        self.log_exporter.get_emitted_logs().expect("logs")
    }

    /// `session.start` / `session.end` log events as (name, session.id, previous_id).
    pub fn log_events(&self) -> Vec<(String, String, Option<String>)> {
        self.logs()
            .iter()
            .filter_map(|l| {
                let name = l.record.event_name()?;
                Some((
                    name.to_string(),
                    log_attr(l, "session.id")?,
                    log_attr(l, "session.previous_id"),
                ))
            })
            .collect()
    }

    pub fn shutdown(&self) {
        self.tracer_provider.shutdown().expect("tracer shutdown");
        self.logger_provider.shutdown().expect("logger shutdown");
    }
}

pub fn span_attr(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.to_string())
}

pub fn span_attr_count(span: &SpanData, key: &str) -> usize {
    span.attributes
        .iter()
        .filter(|kv| kv.key.as_str() == key)
        .count()
}

pub fn log_attr(log: &LogDataWithResource, key: &str) -> Option<String> {
    log.record
        .attributes_iter()
        .find(|(k, _)| k.as_str() == key)
        .map(|(_, v)| match v {
            AnyValue::String(s) => s.to_string(),
            other => format!("{other:?}"),
        })
}

/// The session id a span carries.
pub fn sid(span: &SpanData) -> Option<String> {
    span_attr(span, "session.id")
}
