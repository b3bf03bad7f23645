//! Shared test pipeline: an SDK tracer and logger provider whose exporting
//! processors (simple processors on in-memory exporters) are wrapped by ours.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};

#[allow(clippy::duplicate_mod)] // a test binary may load tests/support too
#[path = "../support/temp.rs"]
mod temp;
#[allow(unused_imports)] // not every test binary keeps files
pub use temp::{temp_dir, TempDir};

use opentelemetry::logs::AnyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::InstrumentationScope;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::logs::{
    LogBatch, LogExporter, SdkLogRecord, SdkLoggerProvider, SimpleLogProcessor,
};
use opentelemetry_sdk::trace::{
    SdkTracer, SdkTracerProvider, SimpleSpanProcessor, SpanData, SpanExporter,
};
use otel_session::{SessionManager, SessionManagerBuilder};

/// Keeps every exported span, also across shutdown (the SDK's in-memory exporter
/// forgets on shutdown).
#[derive(Debug, Clone, Default)]
pub struct SpanRecorder(pub Arc<Mutex<Vec<SpanData>>>);

impl SpanExporter for SpanRecorder {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        self.0.lock().unwrap().extend(batch);
        Ok(())
    }
}

impl SpanRecorder {
    pub fn get_finished_spans(&self) -> Result<Vec<SpanData>, ()> {
        Ok(self.0.lock().unwrap().clone())
    }
}

pub struct LogDataWithResource {
    pub record: SdkLogRecord,
    pub instrumentation: InstrumentationScope,
}

/// Keeps every exported log record, also across shutdown.
#[derive(Debug, Clone, Default)]
pub struct LogRecorder(pub Arc<Mutex<Vec<(SdkLogRecord, InstrumentationScope)>>>);

impl LogExporter for LogRecorder {
    async fn export(&self, batch: LogBatch<'_>) -> OTelSdkResult {
        let mut out = self.0.lock().unwrap();
        for (r, s) in batch.iter() {
            out.push((r.clone(), s.clone()));
        }
        Ok(())
    }
}

impl LogRecorder {
    pub fn get_emitted_logs(&self) -> Result<Vec<LogDataWithResource>, ()> {
        Ok(self
            .0
            .lock()
            .unwrap()
            .iter()
            .map(|(record, instrumentation)| LogDataWithResource {
                record: record.clone(),
                instrumentation: instrumentation.clone(),
            })
            .collect())
    }
}

pub struct Pipeline {
    pub sessions: SessionManager,
    pub span_exporter: SpanRecorder,
    pub log_exporter: LogRecorder,
    pub tracer_provider: SdkTracerProvider,
    pub logger_provider: SdkLoggerProvider,
}

pub fn pipeline(builder: SessionManagerBuilder) -> Pipeline {
    let sessions = builder.build();
    let span_exporter = SpanRecorder::default();
    let log_exporter = LogRecorder::default();
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

    /// The first lifecycle span named `name` (panics if there is none).
    pub fn lifecycle_span(&self, name: &str) -> SpanData {
        self.lifecycle_spans()
            .into_iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no lifecycle span named {name}"))
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

    /// Log records the application emitted (not our lifecycle events).
    pub fn app_logs(&self) -> Vec<LogDataWithResource> {
        self.logs()
            .into_iter()
            .filter(|l| l.instrumentation.name() != "otel-session")
            .collect()
    }

    /// `session.start` / `session.end` log events as (name, session.id, previous_id).
    pub fn log_events(&self) -> Vec<(String, String, Option<String>)> {
        self.logs()
            .iter()
            .filter(|l| l.instrumentation.name() == "otel-session")
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

/// Waits (up to 5 s) until no manager holds the session file at `path` (a
/// dropped manager's advisory lock is released on its way out).
pub fn released(path: &std::path::Path) {
    let lock = path.with_file_name(format!(
        "{}.lock",
        path.file_name().unwrap().to_string_lossy()
    ));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        match std::fs::OpenOptions::new().write(true).open(&lock) {
            Ok(f) if f.try_lock().is_ok() => return,
            Err(_) => return,
            _ => std::thread::sleep(std::time::Duration::from_millis(1)),
        }
    }
    panic!("{} stayed locked", path.display());
}
