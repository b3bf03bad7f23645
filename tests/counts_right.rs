//! Stability counts a user compares between releases, in the setups where they
//! went wrong (issue 11, "Wrong today"): every error counts once per session
//! however many pipelines are wrapped, a crash right after a timeout starts the
//! next session and counts there, `on_session` verdicts and ids are taken when a
//! session starts, background telemetry starts nothing, a delivered end is
//! never sent again, counting does not depend on which signals are exported,
//! and the smaller cases of the same class.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{pipeline, released, sid, span_attr, LogRecorder, Pipeline, SpanRecorder};
use opentelemetry::logs::{LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry::trace::{
    Span as _, Status, TraceContextExt as _, Tracer as _, TracerProvider as _,
};
use opentelemetry_sdk::logs::{SdkLoggerProvider, SimpleLogProcessor};
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider, SimpleSpanProcessor, SpanData};
use otel_session::{
    Clock, ErrorSources, IdGenerator, ManualClock, SessionId, SessionManager, SessionMode,
};

/// The tests that install process-wide things (the panic hook, `init()`) take
/// turns.
static TURN: Mutex<()> = Mutex::new(());

fn turn() -> MutexGuard<'static, ()> {
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}

fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

const MINUTE: Duration = Duration::from_secs(60);

/// App mode on a manual clock, inactivity `idle`, no maximum duration.
fn app(clock: &Arc<ManualClock>, idle: Duration) -> Pipeline {
    pipeline(
        SessionManager::builder()
            .with_clock(clock.clone())
            .with_inactivity_timeout(Some(idle))
            .with_max_duration(None),
    )
}

fn ends(p: &Pipeline) -> Vec<SpanData> {
    p.lifecycle_spans()
        .into_iter()
        .filter(|s| s.name == "session")
        .collect()
}

// 1. Every error counts once per session, whatever the number of wrapped
//    pipelines.

/// A session manager with two wrapped span pipelines (as `Builder::with_span_processor`
/// and the docs recommend: one of yours, one exporting) and a wrapped log pipeline.
fn two_span_pipelines(
    sources: ErrorSources,
) -> (SessionManager, SdkTracerProvider, SdkLoggerProvider) {
    let sessions = SessionManager::builder()
        .with_mode(SessionMode::Manual)
        .with_error_sources(sources)
        .build();
    let tp = SdkTracerProvider::builder()
        .with_span_processor(
            sessions.span_processor(SimpleSpanProcessor::new(SpanRecorder::default())),
        )
        .with_span_processor(
            sessions.span_processor(SimpleSpanProcessor::new(SpanRecorder::default())),
        )
        .build();
    let lp = SdkLoggerProvider::builder()
        .with_log_processor(sessions.log_processor(SimpleLogProcessor::new(LogRecorder::default())))
        .build();
    (sessions, tp, lp)
}

#[test]
fn a_failed_span_counts_once_with_two_wrapped_span_pipelines() {
    let (sessions, tp, _lp) = two_span_pipelines(ErrorSources {
        logs: true,
        spans: true,
    });
    sessions.start_session().unwrap();
    let mut span = tp.tracer("app").start("failing");
    span.set_status(Status::error("boom"));
    span.add_event("exception", vec![]);
    span.end();
    assert_eq!(sessions.current_session().unwrap().handled_errors(), 1);
}

#[test]
fn an_error_log_inside_a_failed_span_counts_once_with_two_wrapped_span_pipelines() {
    let (sessions, tp, lp) = two_span_pipelines(ErrorSources {
        logs: true,
        spans: true,
    });
    sessions.start_session().unwrap();
    let tracer = tp.tracer("app");
    let logger = lp.logger("app");
    tracer.in_span("failing", |cx| {
        let mut r = logger.create_log_record();
        r.set_severity_number(Severity::Error);
        logger.emit(r);
        cx.span().set_status(Status::error("boom"));
    });
    assert_eq!(sessions.current_session().unwrap().handled_errors(), 1);
}

// 2. A crash right after an inactivity or max-duration end counts toward the
//    next session (app mode), which it starts.

#[test]
fn an_unhandled_error_right_after_a_timeout_starts_the_next_session_and_counts_there() {
    let clock = ManualClock::shared(t0());
    let p = app(&clock, MINUTE);
    let first = p.sessions.current_session().unwrap();
    clock.advance(MINUTE);
    assert!(
        p.sessions.current_session().is_none(),
        "ended by inactivity"
    );
    p.sessions.record_unhandled_error();
    let next = p
        .sessions
        .current_session()
        .expect("the crash started a session");
    assert_ne!(next.id(), first.id());
    assert_eq!(next.previous_id(), Some(first.id()));
    assert_eq!(next.unhandled_errors(), 1);
    assert_eq!(next.status(), otel_session::SessionStatus::Crashed);
}

#[test]
fn a_handled_error_right_after_a_max_duration_end_starts_the_next_session_and_counts_there() {
    let clock = ManualClock::shared(t0());
    let p = pipeline(
        SessionManager::builder()
            .with_clock(clock.clone())
            .with_inactivity_timeout(None)
            .with_max_duration(Some(10 * MINUTE)),
    );
    clock.advance(10 * MINUTE);
    assert!(p.sessions.current_session().is_none());
    p.sessions.record_handled_error();
    let next = p
        .sessions
        .current_session()
        .expect("the error started a session");
    assert_eq!(next.handled_errors(), 1);
}

#[test]
fn a_worker_thread_panic_right_after_a_timeout_counts_toward_the_next_session() {
    let _turn = turn();
    let clock = ManualClock::shared(t0());
    let p = app(&clock, MINUTE);
    otel_session::install_panic_hook(&p.sessions);
    clock.advance(MINUTE);
    assert!(p.sessions.current_session().is_none());
    let joined = std::thread::Builder::new()
        .name("worker".into())
        .spawn(|| panic!("worker gives up"))
        .unwrap()
        .join();
    assert!(joined.is_err());
    let next = p
        .sessions
        .current_session()
        .expect("the crash started a session");
    assert_eq!(next.unhandled_errors(), 1);
    assert_eq!(next.status(), otel_session::SessionStatus::Crashed);
    otel_session::install_panic_hook(
        &SessionManager::builder()
            .with_mode(SessionMode::Manual)
            .build(),
    );
}

// 3. Verdicts and ids are taken when the session starts.

#[test]
fn the_on_session_verdict_is_taken_when_the_next_session_starts_not_at_the_last_end() {
    let clock = ManualClock::shared(t0());
    let consent = Arc::new(AtomicBool::new(true));
    let runs = Arc::new(AtomicUsize::new(0));
    let (c, r) = (Arc::clone(&consent), Arc::clone(&runs));
    let p = pipeline(
        SessionManager::builder()
            .with_clock(clock.clone())
            .with_inactivity_timeout(Some(MINUTE))
            .on_session(move |_| {
                r.fetch_add(1, Ordering::SeqCst);
                c.load(Ordering::SeqCst)
            }),
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the first session");
    clock.advance(MINUTE);
    clock.advance(60 * MINUTE);
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "no callback for a session that has not started"
    );
    // Consent withdrawn while no session runs.
    consent.store(false, Ordering::SeqCst);
    p.tracer().in_span("later", |_| {});
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    let next = p.sessions.current_session().expect("activity started one");
    assert!(
        next.is_discarded(),
        "the verdict of now, not of an hour ago"
    );
    assert_eq!(
        sid(&p.app_span("later")),
        None,
        "a discarded session stamps nothing"
    );
}

// 4. In the background no session starts by itself.

#[test]
fn background_telemetry_after_a_timeout_starts_no_session_and_foreground_does() {
    let clock = ManualClock::shared(t0());
    let p = app(&clock, 15 * MINUTE);
    p.sessions.background();
    // 80 minutes minimised, a sync every 20 minutes.
    for _ in 0..4 {
        clock.advance(20 * MINUTE);
        p.tracer().in_span("sync", |_| {});
        assert!(
            p.sessions.current_session().is_none(),
            "no session in the background"
        );
    }
    p.sessions.foreground();
    assert!(p.sessions.current_session().is_some());
    p.sessions.end_session();
    let summaries = ends(&p);
    assert_eq!(
        summaries.len(),
        2,
        "the first session and the one at foreground"
    );
    assert!(
        p.app_spans().iter().all(|s| sid(s).is_none()),
        "syncs carry no id"
    );
}

// 5. (An end is delivered once: tests/delivered_once.rs.)

// 6. Counting never depends on which signals are exported.

#[test]
fn a_tracing_error_counts_with_the_logs_exporter_off() {
    use tracing_subscriber::layer::SubscriberExt as _;
    let _turn = turn();
    let spans = opentelemetry_sdk::trace::InMemorySpanExporter::default();
    let guard = otel_session::Builder::from_env()
        .configure(|c| {
            c.traces_exporter = otel_session::config::ExporterKind::None;
            c.logs_exporter = otel_session::config::ExporterKind::None;
            c.metrics_exporter = otel_session::config::ExporterKind::None;
        })
        .with_service_version("1.0.0")
        .with_span_processor(SimpleSpanProcessor::new(spans.clone()))
        .init()
        .expect("init");
    let subscriber = tracing_subscriber::registry()
        .with(guard.tracing_layer())
        .with(guard.log_layer());
    tracing::subscriber::with_default(subscriber, || {
        tracing::info_span!("request").in_scope(|| tracing::error!("failed"));
    });
    let session = guard.sessions().current_session().unwrap();
    assert_eq!(
        session.handled_errors(),
        1,
        "one error, logs exported or not"
    );
    assert_eq!(session.status(), otel_session::SessionStatus::Errored);
    drop(guard);
}

/// Every combination of error sources and exported signals: two
/// `tracing::error!` in one span count twice when ERROR logs are a source
/// (the span's Error status, if spans are a source too, does not count
/// again), once when only failed spans are, whether traces and logs go to a
/// pipeline or nowhere.
#[test]
fn the_same_errors_count_the_same_whatever_is_exported() {
    use opentelemetry_sdk::logs::InMemoryLogExporter;
    use opentelemetry_sdk::trace::InMemorySpanExporter;
    use otel_session::config::ExporterKind;
    use tracing_subscriber::layer::SubscriberExt as _;
    let _turn = turn();
    let sources = [
        (
            "logs",
            ErrorSources {
                logs: true,
                spans: false,
            },
            2,
        ),
        (
            "spans",
            ErrorSources {
                logs: false,
                spans: true,
            },
            1,
        ),
        (
            "logs,spans",
            ErrorSources {
                logs: true,
                spans: true,
            },
            2,
        ),
    ];
    let mut seen = Vec::new();
    for (name, errors, expected) in sources {
        for traces in [false, true] {
            for logs in [false, true] {
                let mut builder = otel_session::Builder::from_env()
                    .configure(|c| {
                        c.traces_exporter = ExporterKind::None;
                        c.logs_exporter = ExporterKind::None;
                        c.metrics_exporter = ExporterKind::None;
                        c.error_sources = errors;
                    })
                    .with_service_version("1.0.0");
                let spans = InMemorySpanExporter::default();
                let records = InMemoryLogExporter::default();
                if traces {
                    builder = builder.with_span_processor(SimpleSpanProcessor::new(spans.clone()));
                }
                if logs {
                    builder = builder.with_log_processor(SimpleLogProcessor::new(records.clone()));
                }
                let guard = builder.init().expect("init");
                let subscriber = tracing_subscriber::registry()
                    .with(guard.tracing_layer())
                    .with(guard.log_layer());
                tracing::subscriber::with_default(subscriber, || {
                    tracing::info_span!("request").in_scope(|| {
                        tracing::error!("first");
                        tracing::error!("second");
                    });
                });
                let session = guard.sessions().current_session().expect("a session");
                let case = format!("sources {name}, traces {traces}, logs {logs}");
                // The pipelines really were there (or not).
                let exported_span = spans
                    .get_finished_spans()
                    .unwrap_or_default()
                    .iter()
                    .any(|s| s.name == "request");
                let exported_logs = records.get_emitted_logs().unwrap_or_default().len();
                assert_eq!(exported_span, traces, "{case}: span exported");
                assert_eq!(exported_logs >= 2, logs, "{case}: records exported");
                seen.push((case, session.handled_errors(), expected));
                drop(guard);
            }
        }
    }
    let wrong: Vec<_> = seen.iter().filter(|(_, got, want)| got != want).collect();
    assert!(
        wrong.is_empty(),
        "counted differently: {wrong:?} (all: {seen:?})"
    );
}

/// In request mode the same holds for a request's session: with logs off, an
/// ERROR event in a handler still makes its request `errored`.
#[cfg(feature = "tower")]
#[test]
fn a_tracing_error_in_a_request_counts_with_the_logs_exporter_off() {
    use opentelemetry_sdk::trace::InMemorySpanExporter;
    use otel_session::config::ExporterKind;
    use tracing_subscriber::layer::SubscriberExt as _;
    let _turn = turn();
    let guard = otel_session::Builder::from_env()
        .configure(|c| {
            c.traces_exporter = ExporterKind::None;
            c.logs_exporter = ExporterKind::None;
            c.metrics_exporter = ExporterKind::None;
            c.mode = SessionMode::Request;
        })
        .with_service_version("1.0.0")
        .with_span_processor(SimpleSpanProcessor::new(InMemorySpanExporter::default()))
        .init()
        .expect("init");
    let subscriber = tracing_subscriber::registry()
        .with(guard.tracing_layer())
        .with(guard.log_layer());
    let request = guard.sessions().begin_request([]);
    tracing::subscriber::with_default(subscriber, || {
        let _in_request = request.context().clone().attach();
        tracing::info_span!("handler").in_scope(|| tracing::error!("failed"));
    });
    let session = request.session().expect("the request's session");
    assert_eq!(session.handled_errors(), 1, "the request counted its error");
    assert_eq!(session.status(), otel_session::SessionStatus::Errored);
    request.finish(otel_session::RequestOutcome::Answered);
    drop(guard);
}

// 7. Smaller, same class.

#[derive(Debug, Default)]
struct EmittingIds {
    tracer: OnceLock<SdkTracer>,
    made: AtomicUsize,
}

impl IdGenerator for EmittingIds {
    fn new_session_id(&self) -> SessionId {
        if let Some(t) = self.tracer.get() {
            t.in_span("from-the-id-generator", |_| {});
        }
        SessionId::from(format!("id-{}", self.made.fetch_add(1, Ordering::SeqCst)))
    }
}

#[derive(Debug)]
struct Ids(Arc<EmittingIds>);

impl IdGenerator for Ids {
    fn new_session_id(&self) -> SessionId {
        self.0.new_session_id()
    }
}

#[test]
fn an_id_generator_that_emits_telemetry_does_not_wait_on_itself() {
    let clock = ManualClock::shared(t0());
    let ids = Arc::new(EmittingIds::default());
    let p = pipeline(
        SessionManager::builder()
            .with_clock(clock.clone())
            .with_inactivity_timeout(Some(MINUTE))
            .with_id_generator(Ids(Arc::clone(&ids))),
    );
    ids.tracer.set(p.tracer()).unwrap();
    let began = Instant::now();
    clock.advance(MINUTE);
    p.tracer().in_span("next", |_| {});
    assert!(
        began.elapsed() < Duration::from_millis(1500),
        "took {:?}",
        began.elapsed()
    );
    assert_eq!(sid(&p.app_span("next")).as_deref(), Some("id-1"));
    assert_eq!(sid(&p.app_span("from-the-id-generator")), None);
}

/// A clock that emits a span each time it is read, once armed.
#[derive(Debug)]
struct EmittingClock {
    inner: Arc<ManualClock>,
    tracer: OnceLock<SdkTracer>,
}

impl Clock for EmittingClock {
    fn now(&self) -> SystemTime {
        if let Some(t) = self.tracer.get() {
            t.in_span("from-the-clock", |_| {});
        }
        self.inner.now()
    }
    fn subscribe(&self, waker: otel_session::ClockWaker) -> bool {
        self.inner.subscribe(waker)
    }
}

#[test]
fn a_clock_that_emits_telemetry_does_not_wait_on_itself() {
    let manual = ManualClock::shared(t0());
    let clock = Arc::new(EmittingClock {
        inner: Arc::clone(&manual),
        tracer: OnceLock::new(),
    });
    let p = pipeline(
        SessionManager::builder()
            .with_clock(clock.clone())
            .with_inactivity_timeout(Some(MINUTE)),
    );
    let first = p.sessions.current_session().unwrap();
    clock.tracer.set(p.tracer()).unwrap();
    let began = Instant::now();
    manual.advance(MINUTE);
    p.tracer().in_span("next", |_| {});
    assert!(
        began.elapsed() < Duration::from_millis(1500),
        "took {:?}",
        began.elapsed()
    );
    let next = sid(&p.app_span("next")).expect("stamped with the next session");
    assert_ne!(next, first.id().to_string());
}

#[test]
fn after_a_fatal_panic_no_empty_session_follows() {
    let _turn = turn();
    let p = pipeline(SessionManager::builder());
    otel_session::install_panic_hook(&p.sessions);
    // The hook treats the thread named "main" as the process going down.
    let joined = std::thread::Builder::new()
        .name("main".into())
        .spawn(|| panic!("main thread gives up"))
        .unwrap()
        .join();
    assert!(joined.is_err());
    assert!(p.sessions.current_session().is_none(), "ended by the crash");
    let crash_end: Vec<_> = ends(&p)
        .iter()
        .map(|s| {
            (
                span_attr(s, "otel_session.status"),
                span_attr(s, "otel_session.end_reason"),
            )
        })
        .collect();
    assert_eq!(
        crash_end,
        [(Some("crashed".into()), Some("crash".into()))],
        "the crash reached the exporter"
    );
    // Telemetry while the process goes down (drops, other threads).
    p.tracer().in_span("unwinding", |_| {});
    assert!(
        p.sessions.current_session().is_none(),
        "no session starts after a crash that takes the process down"
    );
    assert_eq!(sid(&p.app_span("unwinding")), None);
    otel_session::install_panic_hook(
        &SessionManager::builder()
            .with_mode(SessionMode::Manual)
            .build(),
    );
}

fn dir(name: &str) -> common::TempDir {
    common::temp_dir(&format!("counts-{name}"))
}

fn with_file(path: &Path, clock: &Arc<ManualClock>) -> Pipeline {
    pipeline(
        SessionManager::builder()
            .with_clock(clock.clone())
            .with_persistence(path),
    )
}

#[test]
fn a_paused_session_stays_paused_across_a_restart() {
    let clock = ManualClock::shared(t0());
    let d = dir("paused");
    let path = d.join("session.json");
    let a = with_file(&path, &clock);
    let id = a.sessions.current_session().unwrap().id().clone();
    a.sessions.pause_session();
    a.shutdown();
    drop(a);
    released(&path);
    clock.advance(Duration::from_secs(5));
    let b = with_file(&path, &clock);
    let s = b.sessions.current_session().expect("continued");
    assert_eq!(s.id(), &id);
    assert!(s.is_paused(), "still paused");
    b.tracer().in_span("while-paused", |_| {});
    assert_eq!(sid(&b.app_span("while-paused")), None);
}

#[test]
fn a_session_file_of_a_newer_version_is_left_alone() {
    let clock = ManualClock::shared(t0());
    let d = dir("newer");
    let path = d.join("session.json");
    let newer = r#"{"format":"otel-session/session/99","future":{"x":1}}"#;
    std::fs::write(&path, newer).unwrap();
    let a = with_file(&path, &clock);
    a.sessions.end_session();
    a.sessions.start_session().unwrap();
    a.shutdown();
    drop(a);
    released(&path);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), newer);
}
