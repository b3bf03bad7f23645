//! Session sampling: whole sessions kept or dropped by the FNV-1a-64 rule, the
//! same decision in another process, lifecycle and metrics never sampled.

mod common;
mod support;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use common::{log_attr, sid, LogRecorder, SpanRecorder};
use opentelemetry::logs::{LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::trace::{Status, Tracer as _, TracerProvider as _};
use opentelemetry_sdk::logs::{SdkLoggerProvider, SimpleLogProcessor};
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider, SimpleSpanProcessor};
use otel_session::{ErrorSources, SessionManager, SessionMode};

/// The rule, written out independently of the crate.
fn kept_by_rule(id: &str, ratio: f64) -> bool {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h as f64) < ratio * 18_446_744_073_709_551_616.0
}

struct Setup {
    sessions: SessionManager,
    spans: SpanRecorder,
    logs: LogRecorder,
    tp: SdkTracerProvider,
    lp: SdkLoggerProvider,
    mp: SdkMeterProvider,
    metrics: InMemoryMetricExporter,
}

fn setup(ratio: f64, inner: Sampler, errors: ErrorSources) -> Setup {
    let metrics = InMemoryMetricExporter::default();
    let mp = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(metrics.clone()).build())
        .build();
    let sessions = SessionManager::builder()
        .with_mode(SessionMode::Manual)
        .with_sample_ratio(ratio)
        .with_error_sources(errors)
        .with_meter(mp.meter("otel-session"))
        .build();
    let spans = SpanRecorder::default();
    let logs = LogRecorder::default();
    let tp = SdkTracerProvider::builder()
        .with_sampler(sessions.sampler(inner))
        .with_span_processor(sessions.span_processor(SimpleSpanProcessor::new(spans.clone())))
        .build();
    let lp = SdkLoggerProvider::builder()
        .with_log_processor(sessions.log_processor(SimpleLogProcessor::new(logs.clone())))
        .build();
    Setup {
        sessions,
        spans,
        logs,
        tp,
        lp,
        mp,
        metrics,
    }
}

fn counter(s: &Setup, name: &str) -> u64 {
    s.mp.force_flush().unwrap();
    let all = s.metrics.get_finished_metrics().unwrap();
    let mut total = 0;
    if let Some(rm) = all.last() {
        for sm in rm.scope_metrics() {
            for m in sm.metrics().filter(|m| m.name() == name) {
                if let AggregatedMetrics::U64(MetricData::Sum(sum)) = m.data() {
                    total += sum.data_points().map(|d| d.value()).sum::<u64>();
                }
            }
        }
    }
    total
}

#[test]
fn a_quarter_of_ten_thousand_sessions_is_kept_whole_and_all_are_counted() {
    let s = setup(
        0.25,
        Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
        ErrorSources::default(),
    );
    let tracer = s.tp.tracer("app");
    let logger = s.lp.logger("app");
    let mut ids = Vec::new();
    for _ in 0..10_000 {
        let session = s.sessions.start_session().unwrap();
        tracer.in_span("root", |_| {
            tracer.in_span("child", |_| {});
        });
        let mut r = logger.create_log_record();
        r.set_severity_number(Severity::Info);
        logger.emit(r);
        ids.push(session.id().to_string());
    }
    s.sessions.end_session();
    let expected: HashSet<&str> = ids
        .iter()
        .map(String::as_str)
        .filter(|id| kept_by_rule(id, 0.25))
        .collect();
    assert!(
        (2_300..2_700).contains(&expected.len()),
        "{} kept",
        expected.len()
    );

    let spans = s.spans.get_finished_spans().unwrap();
    let mut app: HashMap<String, Vec<String>> = HashMap::new();
    let mut lifecycle_sessions = HashSet::new();
    for span in &spans {
        let id = sid(span).expect("every exported span carries a session");
        if span.instrumentation_scope.name() == "otel-session" {
            lifecycle_sessions.insert(id);
        } else {
            app.entry(id).or_default().push(span.name.to_string());
        }
    }
    let kept: HashSet<&str> = app.keys().map(String::as_str).collect();
    assert_eq!(kept, expected, "exactly the sessions the rule selects");
    for (id, names) in &app {
        let mut names = names.clone();
        names.sort();
        assert_eq!(names, ["child", "root"], "session {id} is whole");
    }
    let log_sessions: HashSet<String> = s
        .logs
        .get_emitted_logs()
        .unwrap()
        .iter()
        .filter(|l| l.instrumentation.name() != "otel-session")
        .filter_map(|l| log_attr(l, "session.id"))
        .collect();
    assert_eq!(
        log_sessions
            .iter()
            .map(String::as_str)
            .collect::<HashSet<_>>(),
        expected
    );
    assert_eq!(
        lifecycle_sessions.len(),
        10_000,
        "lifecycle is never sampled"
    );
    assert_eq!(counter(&s, "otel_session.started"), 10_000);
    assert_eq!(counter(&s, "otel_session.ended"), 10_000);
}

#[test]
fn both_samplers_must_keep_a_span_and_telemetry_outside_a_session_is_kept() {
    let s = setup(1.0, Sampler::AlwaysOff, ErrorSources::default());
    s.sessions.start_session().unwrap();
    s.tp.tracer("app").in_span("never", |_| {});
    assert!(s
        .spans
        .get_finished_spans()
        .unwrap()
        .iter()
        .all(|sp| sp.name != "never"));

    let s = setup(
        0.0,
        Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
        ErrorSources::default(),
    );
    s.tp.tracer("app").in_span("no-session", |_| {});
    s.sessions.start_session().unwrap();
    s.tp.tracer("app").in_span("sampled-out", |_| {});
    let names: Vec<_> = s
        .spans
        .get_finished_spans()
        .unwrap()
        .iter()
        .map(|sp| sp.name.to_string())
        .collect();
    assert!(names.contains(&"no-session".to_string()));
    assert!(!names.contains(&"sampled-out".to_string()));
    assert!(names.contains(&"session.start".to_string()));
}

#[test]
fn a_sampled_out_session_still_counts_its_errors_and_activity() {
    let s = setup(
        0.0,
        Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
        ErrorSources {
            logs: true,
            spans: true,
        },
    );
    s.sessions.start_session().unwrap();
    let tracer = s.tp.tracer("app");
    tracer.in_span("failing", |cx| {
        use opentelemetry::trace::TraceContextExt as _;
        cx.span().set_status(Status::error("x"));
    });
    let logger = s.lp.logger("app");
    let mut r = logger.create_log_record();
    r.set_severity_number(Severity::Error);
    logger.emit(r);
    let now = s.sessions.current_session().unwrap();
    assert_eq!(now.handled_errors(), 2, "counted though not exported");
    assert!(s
        .logs
        .get_emitted_logs()
        .unwrap()
        .iter()
        .all(|l| l.instrumentation.name() == "otel-session"));
}

#[test]
fn the_same_id_gets_the_same_decision_in_another_process() {
    let ids: Vec<String> = (0..200)
        .map(|i| format!("session-{i:04}-{}", i * 7919))
        .collect();
    let run = support::run_child(
        "sample-decisions",
        &[("E2E_IDS", ids.join(",")), ("E2E_RATIO", "0.3".into())],
        Duration::from_secs(30),
    );
    assert!(run.status.success(), "{}", run.stderr);
    let theirs = run.get("KEPT").expect("decisions");
    let here: Vec<&str> = ids
        .iter()
        .filter(|id| otel_session::session_sampled(id, 0.3))
        .map(String::as_str)
        .collect();
    assert_eq!(theirs, here.join(","));
    assert!(ids
        .iter()
        .all(|id| otel_session::session_sampled(id, 0.3) == kept_by_rule(id, 0.3)));
}

#[test]
fn decisions_follow_the_id_not_where_it_lives_in_memory() {
    // Joined ids are freed after each request; the allocator hands the next id
    // of the same length the same memory.
    let sessions = SessionManager::builder()
        .with_mode(SessionMode::Manual)
        .with_propagation(true)
        .with_sample_ratio(0.5)
        .build();
    let logs = LogRecorder::default();
    let lp = SdkLoggerProvider::builder()
        .with_log_processor(sessions.log_processor(SimpleLogProcessor::new(logs.clone())))
        .build();
    let logger = lp.logger("app");
    let mut wrong = 0;
    for i in 0..2_000 {
        let caller = format!("caller-{i:06}");
        let header = format!("session.id={caller}");
        let request = sessions.begin_request([header.as_str()]);
        let _in = request.context().clone().attach();
        let before = logs.0.lock().unwrap().len();
        let mut r = logger.create_log_record();
        r.set_severity_number(Severity::Info);
        logger.emit(r);
        let exported = logs.0.lock().unwrap().len() > before;
        if exported != kept_by_rule(&caller, 0.5) {
            wrong += 1;
        }
    }
    assert_eq!(wrong, 0, "decisions that were not the rule's");
}

#[test]
fn children_follow_their_session_whatever_the_inner_sampler_and_their_errors_count() {
    // AlwaysOn, not ParentBased: a child of a dropped root must still be dropped.
    let s = setup(
        0.0,
        Sampler::AlwaysOn,
        ErrorSources {
            logs: false,
            spans: true,
        },
    );
    s.sessions.start_session().unwrap();
    let tracer = s.tp.tracer("app");
    tracer.in_span("root", |_| {
        tracer.in_span("child", |cx| {
            use opentelemetry::trace::TraceContextExt as _;
            cx.span().set_status(Status::error("x"));
        });
    });
    let names: Vec<_> = s
        .spans
        .get_finished_spans()
        .unwrap()
        .iter()
        .map(|sp| sp.name.to_string())
        .collect();
    assert!(
        !names.iter().any(|n| n == "child" || n == "root"),
        "{names:?}"
    );
    assert_eq!(
        s.sessions.current_session().unwrap().handled_errors(),
        1,
        "the child's error counts though it is not exported"
    );
}
