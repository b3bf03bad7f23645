//! `OTEL_SESSION_ERROR_SOURCES`: which telemetry counts as a handled error, once
//! per failure, toward the session it belongs to — exact under concurrency.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::{log_attr, pipeline, span_attr, Pipeline};
use opentelemetry::logs::{LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry::trace::{Span as _, Status, Tracer as _, TracerProvider as _};
use otel_session::{ErrorSources, SessionManager, SessionMode};
use tracing_subscriber::layer::SubscriberExt as _;

fn with_sources(logs: bool, spans: bool) -> Pipeline {
    pipeline(
        SessionManager::builder()
            .with_mode(SessionMode::Manual)
            .with_error_sources(ErrorSources { logs, spans }),
    )
}

fn error_log(p: &Pipeline) {
    let logger = p.logger_provider.logger("app");
    let mut r = logger.create_log_record();
    r.set_severity_number(Severity::Error);
    logger.emit(r);
}

fn failed_span(p: &Pipeline, status: bool, exception: bool) {
    let mut span = p.tracer().start("failing");
    if status {
        span.set_status(Status::error("boom"));
    }
    if exception {
        span.add_event("exception", vec![]);
    }
    span.end();
}

fn handled(p: &Pipeline) -> u64 {
    p.sessions.current_session().unwrap().handled_errors()
}

#[test]
fn by_default_error_logs_count_and_failed_spans_do_not() {
    let p = with_sources(true, false);
    p.sessions.start_session().unwrap();
    error_log(&p);
    failed_span(&p, true, true);
    assert_eq!(handled(&p), 1);
}

#[test]
fn with_spans_a_failed_span_counts_once_whatever_marks_it() {
    let p = with_sources(false, true);
    p.sessions.start_session().unwrap();
    failed_span(&p, true, false);
    assert_eq!(handled(&p), 1, "an Error status");
    failed_span(&p, false, true);
    assert_eq!(handled(&p), 2, "an exception event");
    failed_span(&p, true, true);
    assert_eq!(handled(&p), 3, "both: once");
    p.tracer().in_span("fine", |_| {});
    error_log(&p);
    assert_eq!(
        handled(&p),
        3,
        "logs are not a source here; fine spans never count"
    );
}

#[test]
fn nothing_counts_outside_a_session_or_while_paused() {
    let p = with_sources(true, true);
    error_log(&p);
    failed_span(&p, true, true);
    let s = p.sessions.start_session().unwrap();
    p.sessions.pause_session();
    error_log(&p);
    failed_span(&p, true, true);
    p.sessions.resume_session();
    assert_eq!(handled(&p), 0);
    // A span started in a session and failing after it ended counts nowhere.
    let mut span = p.tracer().start("outlives");
    p.sessions.start_session().unwrap();
    span.set_status(Status::error("late"));
    span.end();
    assert_eq!(handled(&p), 0);
    let end = p
        .lifecycle_spans()
        .into_iter()
        .find(|l| {
            l.name == "session" && span_attr(l, "session.id").as_deref() == Some(s.id().as_str())
        })
        .unwrap();
    assert_eq!(
        span_attr(&end, "otel_session.errors.handled").as_deref(),
        Some("0")
    );
}

#[test]
fn one_tracing_error_in_a_span_counts_once_with_both_sources() {
    let p = with_sources(true, true);
    p.sessions.start_session().unwrap();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(p.tracer_provider.tracer("tracing")))
        .with(
            opentelemetry_appender_tracing::layer::OpenTelemetryTracingBridge::new(
                &p.logger_provider,
            ),
        );
    tracing::subscriber::with_default(subscriber, || {
        tracing::info_span!("checkout").in_scope(|| {
            tracing::error!(error = "card declined", "payment failed");
        });
        assert_eq!(
            handled(&p),
            1,
            "log + Error status + exception: one failure"
        );
        tracing::info_span!("retry").in_scope(|| {
            tracing::error!("first");
            tracing::error!("second");
        });
        assert_eq!(handled(&p), 3, "two error events: two failures");
        tracing::error!("outside any span");
        assert_eq!(handled(&p), 4);
    });
    // The span did carry the marks that were not counted again.
    let checkout = p.app_span("checkout");
    assert!(
        matches!(checkout.status, Status::Error { .. }),
        "{:?}",
        checkout.status
    );
    let logs = p.app_logs();
    assert!(
        logs[0].record.trace_context().is_some(),
        "the log knows its span"
    );
}

#[test]
fn inside_a_request_failed_spans_count_toward_the_request() {
    let p = pipeline(
        SessionManager::builder()
            .with_mode(SessionMode::Request)
            .with_error_sources(ErrorSources {
                logs: true,
                spans: true,
            }),
    );
    let request = p.sessions.begin_request([]);
    {
        let _in = request.context().clone().attach();
        failed_span(&p, true, false);
        error_log(&p);
    }
    assert_eq!(request.session().unwrap().handled_errors(), 2);
    assert_eq!(
        request.session().unwrap().status(),
        otel_session::SessionStatus::Errored
    );
}

#[test]
fn eight_threads_across_rapid_rotations_count_exactly_per_session() {
    let p = Arc::new(with_sources(true, false));
    p.sessions.start_session().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let rotator = {
        let p = Arc::clone(&p);
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                p.sessions.start_session().unwrap();
                n += 1;
                if n % 7 == 0 {
                    p.sessions.pause_session();
                    p.sessions.resume_session();
                }
            }
            n
        })
    };
    let workers: Vec<_> = (0..8)
        .map(|t| {
            let p = Arc::clone(&p);
            std::thread::spawn(move || {
                let logger = p.logger_provider.logger("worker");
                let tracer = p.tracer();
                for i in 0..2_000 {
                    // Spans alongside: attributed, never counted (not a source here).
                    if i % 2 == 0 {
                        tracer.in_span(format!("work-{t}"), |_| {});
                    }
                    let mut r = logger.create_log_record();
                    r.set_severity_number(if i % 3 == 0 {
                        Severity::Error
                    } else {
                        Severity::Info
                    });
                    r.set_body(format!("{t}-{i}").into());
                    logger.emit(r);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let rotations = rotator.join().unwrap();
    p.sessions.end_session();
    assert!(rotations > 50, "{rotations} rotations");

    let mut recorded: HashMap<String, u64> = HashMap::new();
    let mut unstamped_errors = 0;
    for l in p.app_logs() {
        if l.record.severity_number() != Some(Severity::Error) {
            continue;
        }
        match log_attr(&l, "session.id") {
            Some(id) => *recorded.entry(id).or_default() += 1,
            None => unstamped_errors += 1, // made while paused
        }
    }
    let mut counted: HashMap<String, u64> = HashMap::new();
    for s in p.lifecycle_spans().iter().filter(|s| s.name == "session") {
        let n: u64 = span_attr(s, "otel_session.errors.handled")
            .unwrap()
            .parse()
            .unwrap();
        counted.insert(span_attr(s, "session.id").unwrap(), n);
    }
    for (id, n) in &recorded {
        assert_eq!(counted.get(id), Some(n), "session {id}");
    }
    let total: u64 = counted.values().sum();
    assert_eq!(
        total,
        recorded.values().sum::<u64>(),
        "no error counted twice or elsewhere"
    );
    assert_eq!(total + unstamped_errors, 8 * 667);
}
