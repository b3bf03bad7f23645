//! The lifecycle as it reaches an exporter: transition spans, the summary span,
//! their shared trace, and what they never do (become current, parent app spans).

mod common;

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use common::{pipeline, sid, span_attr};
use opentelemetry::trace::{SpanId, TraceContextExt as _, Tracer as _};
use opentelemetry::Context;
use otel_session::SessionMode;
use otel_session::{session_trace_id, ManualClock, SessionId, SessionManager};

#[test]
fn lifecycle_spans_share_the_session_trace_with_the_summary_as_root() {
    let clock = Arc::new(ManualClock::new(
        UNIX_EPOCH + Duration::from_secs(1_000_000),
    ));
    let p = pipeline(
        SessionManager::builder()
            .with_mode(SessionMode::Manual)
            .with_clock(clock.clone()),
    );
    let s = p.sessions.start_session().unwrap();
    clock.advance(Duration::from_secs(5));
    p.sessions.pause_session();
    clock.advance(Duration::from_secs(5));
    p.sessions.resume_session();
    clock.advance(Duration::from_secs(5));
    p.sessions.end_session();

    let spans = p.lifecycle_spans();
    let names: Vec<_> = spans.iter().map(|s| s.name.to_string()).collect();
    assert_eq!(
        names,
        [
            "session.start",
            "session.pause",
            "session.resume",
            "session.end",
            "session"
        ]
    );
    let trace = session_trace_id(s.id());
    let uuid = u128::from_str_radix(&s.id().as_str().replace('-', ""), 16).unwrap();
    assert_eq!(
        trace.to_bytes(),
        uuid.to_be_bytes(),
        "trace id = the uuid's bits"
    );
    let summary = spans.last().unwrap();
    assert_eq!(
        summary.parent_span_id,
        SpanId::INVALID,
        "summary is the root"
    );
    assert_eq!(summary.start_time, s.started_at());
    assert_eq!(summary.end_time, s.started_at() + Duration::from_secs(15));
    for t in &spans[..4] {
        assert_eq!(t.span_context.trace_id(), trace);
        assert_eq!(t.parent_span_id, summary.span_context.span_id());
        assert_eq!(t.start_time, t.end_time, "transitions are zero-duration");
        assert_eq!(t.events.len(), 1);
        assert_eq!(t.events[0].name, t.name);
        assert_eq!(sid(t).as_deref(), Some(s.id().as_str()));
    }
    assert_eq!(spans[1].start_time, s.started_at() + Duration::from_secs(5));
    assert_eq!(
        spans[2].start_time,
        s.started_at() + Duration::from_secs(10)
    );
    let event_names: Vec<_> = summary.events.iter().map(|e| e.name.to_string()).collect();
    assert_eq!(event_names, names[..4]);
    assert_eq!(
        span_attr(summary, "otel_session.status").as_deref(),
        Some("ok")
    );
    assert_eq!(
        span_attr(summary, "otel_session.end_reason").as_deref(),
        Some("manual")
    );
    assert_eq!(
        span_attr(summary, "otel_session.errors.handled").as_deref(),
        Some("0")
    );
}

#[test]
fn transitions_are_exported_the_moment_they_happen() {
    let p = pipeline(SessionManager::builder().with_mode(SessionMode::Manual));
    p.sessions.start_session().unwrap();
    assert_eq!(
        p.lifecycle_spans().len(),
        1,
        "start exported before the session ends"
    );
    p.sessions.pause_session();
    assert_eq!(p.lifecycle_spans().len(), 2);
    assert_eq!(p.log_events().len(), 1, "session.start log event");
}

#[test]
fn lifecycle_spans_never_parent_application_spans() {
    let p = pipeline(SessionManager::builder().with_mode(SessionMode::Manual));
    let s = p.sessions.start_session().unwrap();
    assert!(!Context::current().has_active_span());
    p.tracer().in_span("root-work", |_| {});
    p.sessions.pause_session();
    p.sessions.resume_session();
    let work = p.app_span("root-work");
    assert_eq!(work.parent_span_id, SpanId::INVALID);
    assert_ne!(work.span_context.trace_id(), session_trace_id(s.id()));
}

#[test]
fn a_long_session_keeps_the_first_and_last_64_events_and_the_end() {
    let p = pipeline(SessionManager::builder().with_mode(SessionMode::Manual));
    p.sessions.start_session().unwrap();
    for _ in 0..100 {
        p.sessions.pause_session();
        p.sessions.resume_session();
    }
    p.sessions.end_session();
    let summary = p.lifecycle_span("session");
    // 1 start + 200 pause/resume + 1 end = 202 events; 128 kept.
    assert_eq!(summary.events.len(), 128);
    assert_eq!(
        span_attr(&summary, "otel_session.dropped_events").as_deref(),
        Some("74")
    );
    assert_eq!(summary.events[0].name, "session.start");
    assert_eq!(summary.events[127].name, "session.end");
    // Head: start, then pause/resume alternating; the tail resumes mid-sequence.
    assert_eq!(summary.events[63].name, "session.pause");
    assert_eq!(summary.events[64].name, "session.resume");
    assert_eq!(summary.events[126].name, "session.resume");
}

#[derive(Debug)]
struct Fixed(&'static str);
impl otel_session::IdGenerator for Fixed {
    fn new_session_id(&self) -> SessionId {
        SessionId::from(self.0)
    }
}

#[test]
fn custom_ids_get_a_hashed_trace_id() {
    let p = pipeline(
        SessionManager::builder()
            .with_mode(SessionMode::Manual)
            .with_id_generator(Fixed("checkout-7")),
    );
    let s = p.sessions.start_session().unwrap();
    assert_eq!(s.id().as_str(), "checkout-7");
    let start = &p.lifecycle_spans()[0];
    assert_eq!(start.span_context.trace_id(), session_trace_id(s.id()));
    assert!(start.span_context.trace_id() != opentelemetry::trace::TraceId::INVALID);
    p.tracer().in_span("w", |_| {});
    assert_eq!(sid(&p.app_span("w")).as_deref(), Some("checkout-7"));
}

#[test]
fn shutting_the_pipeline_down_ends_the_session_first() {
    let p = pipeline(SessionManager::builder().with_mode(SessionMode::Manual));
    let s = p.sessions.start_session().unwrap();
    p.tracer_provider.shutdown().unwrap();
    assert!(p.sessions.current_session().is_none());
    let end = p
        .lifecycle_spans()
        .into_iter()
        .find(|x| x.name == "session.end")
        .expect("end exported before the exporter closed");
    assert_eq!(sid(&end).as_deref(), Some(s.id().as_str()));
    assert_eq!(
        span_attr(&end, "otel_session.end_reason").as_deref(),
        Some("shutdown")
    );
    let events = p.log_events();
    assert_eq!(events.last().map(|e| e.0.as_str()), Some("session.end"));
    p.logger_provider.shutdown().unwrap();
}

#[test]
fn lifecycle_log_events_link_to_their_transition_span() {
    let p = pipeline(SessionManager::builder().with_mode(SessionMode::Manual));
    p.sessions.start_session().unwrap();
    let start = &p.lifecycle_spans()[0];
    let logs = p.logs();
    let log = logs
        .iter()
        .find(|l| l.record.event_name() == Some("session.start"))
        .unwrap();
    let tc = log.record.trace_context().expect("trace context");
    assert_eq!(tc.trace_id, start.span_context.trace_id());
    assert_eq!(tc.span_id, start.span_context.span_id());
    assert_eq!(log.instrumentation.name(), "otel-session");
}
