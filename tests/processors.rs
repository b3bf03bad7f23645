//! The two forms of each processor: what they stamp, what they leave alone, and
//! where the lifecycle goes.

mod common;

use common::{sid, span_attr_count, LogRecorder, SpanRecorder};
use opentelemetry::logs::{LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry::trace::{Span as _, Tracer as _, TracerProvider as _};
use opentelemetry::Context;
use opentelemetry::KeyValue;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::logs::{SdkLoggerProvider, SimpleLogProcessor};
use opentelemetry_sdk::trace::{
    SdkTracerProvider, SimpleSpanProcessor, Span, SpanData, SpanProcessor,
};
use otel_session::SessionManager;
use otel_session::SessionMode;
use std::sync::mpsc;
use std::time::Duration;

#[test]
fn wrapper_never_adds_a_second_session_id() {
    let p = common::pipeline(SessionManager::builder().with_mode(SessionMode::Manual));
    let s = p.sessions.start_session().unwrap();
    let tracer = p.tracer();
    tracer
        .span_builder("has-one")
        .with_attributes([KeyValue::new("session.id", "from-caller")])
        .start(&tracer)
        .end();
    let mut late = tracer.start("set-later");
    late.set_attribute(KeyValue::new("session.id", "set-later"));
    late.end();
    tracer.in_span("plain", |_| {});

    let has_one = p.app_span("has-one");
    assert_eq!(span_attr_count(&has_one, "session.id"), 1);
    assert_eq!(sid(&has_one).as_deref(), Some("from-caller"));
    let later = p.app_span("set-later");
    assert_eq!(span_attr_count(&later, "session.id"), 1);
    assert_eq!(
        sid(&later).as_deref(),
        Some("set-later"),
        "the application's value wins"
    );
    assert_eq!(sid(&p.app_span("plain")).as_deref(), Some(s.id().as_str()));
}

#[test]
fn standalone_span_enricher_stamps_beside_the_users_processor() {
    let sessions = SessionManager::builder()
        .with_mode(SessionMode::Manual)
        .build();
    let app = SpanRecorder::default();
    let lifecycle = SpanRecorder::default();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(
            sessions
                .standalone_span_processor()
                .with_lifecycle_processor(SimpleSpanProcessor::new(lifecycle.clone())),
        )
        .with_span_processor(SimpleSpanProcessor::new(app.clone()))
        .build();
    let s = sessions.start_session().unwrap();
    let tracer = provider.tracer("t");
    tracer.in_span("plain", |_| {});
    tracer
        .span_builder("has-one")
        .with_attributes([KeyValue::new("session.id", "from-caller")])
        .start(&tracer)
        .end();
    sessions.end_session();

    let spans = app.get_finished_spans().unwrap();
    let plain = spans.iter().find(|x| x.name == "plain").unwrap();
    assert_eq!(sid(plain).as_deref(), Some(s.id().as_str()));
    let has_one = spans.iter().find(|x| x.name == "has-one").unwrap();
    assert_eq!(span_attr_count(has_one, "session.id"), 1);
    assert_eq!(sid(has_one).as_deref(), Some("from-caller"));
    assert!(spans
        .iter()
        .all(|x| x.instrumentation_scope.name() != "otel-session"));
    let names: Vec<_> = lifecycle
        .get_finished_spans()
        .unwrap()
        .into_iter()
        .map(|x| x.name.to_string())
        .collect();
    assert_eq!(names, ["session.start", "session.end", "session"]);
    provider.shutdown().unwrap();
}

#[test]
fn lifecycle_made_before_any_pipeline_is_held_and_delivered_when_one_connects() {
    let sessions = SessionManager::builder()
        .with_mode(SessionMode::Manual)
        .build();
    let first = sessions.start_session().unwrap();
    sessions.pause_session();
    let spans = SpanRecorder::default();
    let logs = LogRecorder::default();
    let tp = SdkTracerProvider::builder()
        .with_span_processor(sessions.span_processor(SimpleSpanProcessor::new(spans.clone())))
        .build();
    let lp = SdkLoggerProvider::builder()
        .with_log_processor(sessions.log_processor(SimpleLogProcessor::new(logs.clone())))
        .build();
    let names: Vec<_> = spans
        .get_finished_spans()
        .unwrap()
        .into_iter()
        .map(|x| x.name.to_string())
        .collect();
    assert_eq!(names, ["session.start", "session.pause"]);
    let events = logs.get_emitted_logs().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].record.event_name(), Some("session.start"));
    assert_eq!(
        common::log_attr(&events[0], "session.id").as_deref(),
        Some(first.id().as_str())
    );
    tp.shutdown().unwrap();
    lp.shutdown().unwrap();
}

#[test]
fn standalone_log_enricher_stamps_but_never_turns_logs_on() {
    use opentelemetry_sdk::logs::LogProcessor;
    let sessions = SessionManager::builder()
        .with_mode(SessionMode::Manual)
        .build();
    let enricher = sessions.standalone_log_processor();
    assert!(!enricher.event_enabled(Severity::Error, "t", None));

    // Alone, it enables nothing.
    let alone = SdkLoggerProvider::builder()
        .with_log_processor(sessions.standalone_log_processor())
        .build();
    assert!(!alone.logger("t").event_enabled(Severity::Error, "t", None));

    let logs = LogRecorder::default();
    let provider = SdkLoggerProvider::builder()
        .with_log_processor(
            sessions
                .standalone_log_processor()
                .with_lifecycle_processor(SimpleLogProcessor::new(logs.clone())),
        )
        .with_log_processor(SimpleLogProcessor::new(logs.clone()))
        .build();
    let s = sessions.start_session().unwrap();
    let logger = provider.logger("t");
    let mut r = logger.create_log_record();
    r.set_severity_number(Severity::Warn);
    r.set_body("hello".into());
    logger.emit(r);
    let emitted = logs.get_emitted_logs().unwrap();
    let app: Vec<_> = emitted
        .iter()
        .filter(|l| l.instrumentation.name() != "otel-session")
        .collect();
    assert_eq!(app.len(), 1);
    assert_eq!(
        common::log_attr(app[0], "session.id").as_deref(),
        Some(s.id().as_str())
    );
    assert!(emitted
        .iter()
        .any(|l| l.record.event_name() == Some("session.start")));
    provider.shutdown().unwrap();
    alone.shutdown().unwrap();
}

#[test]
fn paused_logs_carry_no_id() {
    let p = common::pipeline(SessionManager::builder().with_mode(SessionMode::Manual));
    p.sessions.start_session().unwrap();
    p.sessions.pause_session();
    let logger = p.logger_provider.logger("t");
    let mut r = logger.create_log_record();
    r.set_severity_number(Severity::Error);
    logger.emit(r);
    let app = p.app_logs();
    assert_eq!(app.len(), 1);
    assert_eq!(common::log_attr(&app[0], "session.id"), None);
    assert_eq!(p.sessions.current_session().unwrap().handled_errors(), 0);
}

#[test]
fn two_wrapped_pipelines_both_get_the_lifecycle() {
    let sessions = SessionManager::builder()
        .with_mode(SessionMode::Manual)
        .build();
    let (a, b) = (SpanRecorder::default(), SpanRecorder::default());
    let tp = SdkTracerProvider::builder()
        .with_span_processor(sessions.span_processor(SimpleSpanProcessor::new(a.clone())))
        .with_span_processor(sessions.span_processor(SimpleSpanProcessor::new(b.clone())))
        .build();
    sessions.start_session().unwrap();
    tp.tracer("t").in_span("w", |_| {});
    for rec in [&a, &b] {
        let spans = rec.get_finished_spans().unwrap();
        assert_eq!(
            spans.iter().filter(|s| s.name == "session.start").count(),
            1
        );
        let w = spans.iter().find(|s| s.name == "w").unwrap();
        assert_eq!(span_attr_count(w, "session.id"), 1);
    }
    tp.shutdown().unwrap();
}

#[test]
fn a_new_manager_never_sees_a_dropped_managers_session() {
    for _ in 0..50 {
        let p = common::pipeline(SessionManager::builder().with_mode(SessionMode::Manual));
        p.sessions.start_session().unwrap();
        p.tracer().in_span("old", |_| {});
        assert!(sid(&p.app_span("old")).is_some());
        drop(p);
        let q = common::pipeline(SessionManager::builder().with_mode(SessionMode::Manual));
        q.tracer().in_span("new", |_| {});
        assert_eq!(sid(&q.app_span("new")), None, "no session was started here");
    }
}

/// Two stamping log processors on one provider count an ERROR record once.
#[test]
fn error_log_counted_once_with_two_wrapped_log_pipelines() {
    let sessions = SessionManager::builder()
        .with_mode(SessionMode::Manual)
        .build();
    let lp = SdkLoggerProvider::builder()
        .with_log_processor(sessions.log_processor(SimpleLogProcessor::new(LogRecorder::default())))
        .with_log_processor(sessions.log_processor(SimpleLogProcessor::new(LogRecorder::default())))
        .build();
    sessions.start_session().unwrap();
    let logger = lp.logger("t");
    let mut r = logger.create_log_record();
    r.set_severity_number(Severity::Error);
    logger.emit(r);
    assert_eq!(sessions.current_session().unwrap().handled_errors(), 1);
}

/// Same with the recommended "enricher first + wrapped exporter" mix.
#[test]
fn error_log_counted_once_with_enricher_and_wrapper() {
    let sessions = SessionManager::builder()
        .with_mode(SessionMode::Manual)
        .build();
    let lp = SdkLoggerProvider::builder()
        .with_log_processor(sessions.standalone_log_processor())
        .with_log_processor(sessions.log_processor(SimpleLogProcessor::new(LogRecorder::default())))
        .build();
    sessions.start_session().unwrap();
    let logger = lp.logger("t");
    let mut r = logger.create_log_record();
    r.set_severity_number(Severity::Error);
    logger.emit(r);
    assert_eq!(sessions.current_session().unwrap().handled_errors(), 1);
}

/// A wrapped processor may call back into the manager while it receives
/// lifecycle spans (they are delivered outside the manager's lock).
#[derive(Debug)]
struct Tagging(SessionManager, SimpleSpanProcessor<SpanRecorder>);
impl SpanProcessor for Tagging {
    fn on_start(&self, _s: &mut Span, _cx: &Context) {}
    fn on_end(&self, span: SpanData) {
        let _ = self.0.current_session(); // e.g. per-session sampling / tagging
        self.1.on_end(span);
    }
    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }
    fn shutdown_with_timeout(&self, _t: Duration) -> OTelSdkResult {
        Ok(())
    }
}

#[test]
fn sink_calling_current_session_does_not_deadlock() {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let sessions = SessionManager::builder()
            .with_mode(SessionMode::Manual)
            .build();
        let tp = SdkTracerProvider::builder()
            .with_span_processor(sessions.span_processor(Tagging(
                sessions.clone(),
                SimpleSpanProcessor::new(SpanRecorder::default()),
            )))
            .build();
        sessions.start_session().unwrap();
        let _ = tx.send(());
        std::mem::forget(tp);
    });
    assert!(
        rx.recv_timeout(Duration::from_secs(3)).is_ok(),
        "start_session deadlocked"
    );
}

#[derive(Debug)]
struct Panicking;
impl SpanProcessor for Panicking {
    fn on_start(&self, _s: &mut Span, _cx: &Context) {}
    fn on_end(&self, span: SpanData) {
        if span.name == "session.start" {
            panic!("exporter bug");
        }
    }
    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }
    fn shutdown_with_timeout(&self, _t: Duration) -> OTelSdkResult {
        Ok(())
    }
}

#[test]
fn a_panicking_sink_never_reaches_the_caller_and_the_session_goes_on() {
    let sessions = SessionManager::builder()
        .with_mode(SessionMode::Manual)
        .build();
    let tp = SdkTracerProvider::builder()
        .with_span_processor(sessions.span_processor(Panicking))
        .build();
    let s = sessions
        .start_session()
        .expect("start survives a panicking sink");
    sessions.pause_session();
    assert!(sessions.resume_session());
    assert_eq!(sessions.current_session().unwrap().id(), s.id());
    tp.shutdown().unwrap();
}
