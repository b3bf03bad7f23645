//! Crash reports in one process (its own test binary: the panic hook is
//! global, so the tests take turns): every panic the hook sees becomes one
//! exception log record (exceptions-in-logs conventions) with its session's
//! `session.id`, the location, the thread, the backtrace and the trace context
//! of the span it happened in; that span gets status Error; the session's
//! summary carries an `exception` event; counting does not change.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

use common::{log_attr, pipeline, LogDataWithResource, Pipeline};
use opentelemetry::logs::Severity;
use opentelemetry::trace::{Status, TraceContextExt as _, Tracer as _};
use otel_session::{SessionManager, SessionMode, SessionStatus};

/// The hook is process-wide: one test at a time.
static TURN: Mutex<()> = Mutex::new(());

/// The line of the last `panic!` below.
static LINE: AtomicU32 = AtomicU32::new(0);

#[inline(never)]
fn panic_in_named_function(message: &str) {
    LINE.store(line!() + 1, Ordering::SeqCst);
    panic!("{message}");
}

fn manual(builder: otel_session::SessionManagerBuilder) -> Pipeline {
    let p = pipeline(builder.with_mode(SessionMode::Manual));
    otel_session::install_panic_hook(&p.sessions);
    p
}

fn exceptions(p: &Pipeline) -> Vec<LogDataWithResource> {
    p.logs()
        .into_iter()
        .filter(|l| l.record.event_name() == Some("exception"))
        .collect()
}

#[test]
fn a_worker_panic_is_one_error_record_with_its_session_span_location_thread_and_backtrace() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let p = manual(SessionManager::builder());
    let session = p.sessions.start_session().unwrap();
    let tracer = p.tracer();
    let worker = std::thread::Builder::new()
        .name("worker-7".into())
        .spawn(move || {
            tracer.in_span("doomed", |_cx| panic_in_named_function("worker gave up"));
        })
        .unwrap();
    assert!(worker.join().is_err());

    let records = exceptions(&p);
    assert_eq!(records.len(), 1, "one record per panic");
    let r = &records[0];
    assert_eq!(r.instrumentation.name(), "otel-session");
    assert_eq!(r.record.severity_number(), Some(Severity::Error));
    assert_eq!(
        log_attr(r, "session.id").as_deref(),
        Some(session.id().as_str())
    );
    assert_eq!(log_attr(r, "exception.type").as_deref(), Some("panic"));
    assert_eq!(
        log_attr(r, "exception.message").as_deref(),
        Some("worker gave up")
    );
    assert!(log_attr(r, "code.file.path")
        .unwrap()
        .ends_with("crash_reports.rs"));
    assert_eq!(
        log_attr(r, "code.line.number"),
        Some(format!("Int({})", LINE.load(Ordering::SeqCst)))
    );
    assert!(log_attr(r, "code.column.number").is_some());
    assert_eq!(log_attr(r, "thread.name").as_deref(), Some("worker-7"));
    assert!(log_attr(r, "thread.id").unwrap().starts_with("Int("));
    let trace = log_attr(r, "exception.stacktrace").expect("a backtrace");
    assert!(
        trace
            .lines()
            .next()
            .unwrap_or_default()
            .contains("panic_in_named_function"),
        "the backtrace starts at the panicking function:\n{trace}"
    );

    // The span it happened in: the record is in its trace, and it failed.
    let doomed = p.app_span("doomed");
    let (trace_id, span_id) = r
        .record
        .trace_context()
        .map(|t| (t.trace_id, t.span_id))
        .unwrap();
    assert_eq!(trace_id, doomed.span_context.trace_id());
    assert_eq!(span_id, doomed.span_context.span_id());
    assert_eq!(doomed.status, Status::error("worker gave up"));
    assert!(
        doomed.events.iter().all(|e| e.name != "exception"),
        "no span event unless OTEL_SEMCONV_EXCEPTION_SIGNAL_OPT_IN=logs/dup"
    );

    // Counting is unchanged: crashed once, no handled error from the record.
    let now = p.sessions.current_session().unwrap();
    assert_eq!(now.id(), session.id(), "the session goes on");
    assert_eq!(now.status(), SessionStatus::Crashed);
    assert_eq!((now.handled_errors(), now.unhandled_errors()), (0, 1));

    // The summary (trace-only backends) carries the same report as an event.
    p.sessions.end_session();
    let summary = p.lifecycle_span("session");
    let event = summary
        .events
        .iter()
        .find(|e| e.name == "exception")
        .expect("the summary's exception event");
    let message = event
        .attributes
        .iter()
        .find(|kv| kv.key.as_str() == "exception.message")
        .map(|kv| kv.value.to_string());
    assert_eq!(message.as_deref(), Some("worker gave up"));
    assert!(event
        .attributes
        .iter()
        .any(|kv| kv.key.as_str() == "exception.stacktrace"));
}

#[test]
fn each_panic_is_reported_and_a_huge_or_non_string_payload_is_bounded_and_said() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let p = manual(SessionManager::builder().with_crash_backtraces(false));
    let session = p.sessions.start_session().unwrap();
    let huge = "x".repeat(1024 * 1024);
    let _ = std::thread::spawn(move || panic!("{huge}")).join();
    let _ = std::thread::spawn(|| std::panic::panic_any(42_u32)).join();

    let records = exceptions(&p);
    assert_eq!(records.len(), 2, "a crashed session's later panics too");
    for r in &records {
        assert_eq!(
            log_attr(r, "session.id").as_deref(),
            Some(session.id().as_str())
        );
        assert!(
            log_attr(r, "exception.stacktrace").is_none(),
            "with_crash_backtraces(false)"
        );
    }
    let cut = log_attr(&records[0], "exception.message").unwrap();
    assert!(cut.len() < 9 * 1024, "{} bytes", cut.len());
    assert!(cut.starts_with("xxxx"));
    assert!(
        cut.ends_with("[otel-session: truncated, 8192 of 1048576 bytes kept]"),
        "{}",
        &cut[cut.len() - 80..]
    );
    let other = log_attr(&records[1], "exception.message").unwrap();
    assert!(other.contains("not a string"), "{other}");
    let now = p.sessions.current_session().unwrap();
    assert_eq!(now.unhandled_errors(), 1, "crashed once");
}

#[test]
fn with_the_semconv_opt_in_the_span_gets_an_exception_event_too() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let p = manual(SessionManager::builder().with_exception_span_events(true));
    p.sessions.start_session().unwrap();
    let tracer = p.tracer();
    let _ = std::thread::spawn(move || {
        tracer.in_span("doomed", |cx| {
            assert!(cx.span().span_context().is_valid());
            panic!("opted in")
        })
    })
    .join();
    let doomed = p.app_span("doomed");
    let event = doomed
        .events
        .iter()
        .find(|e| e.name == "exception")
        .expect("the span's exception event");
    assert!(event
        .attributes
        .iter()
        .any(|kv| kv.key.as_str() == "exception.type" && kv.value.as_str() == "panic"));
    assert_eq!(exceptions(&p).len(), 1, "and the log record");
}

#[test]
fn a_panic_with_no_session_is_still_reported_without_a_session_id() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let p = manual(SessionManager::builder());
    assert!(p.sessions.current_session().is_none());
    let _ = std::thread::spawn(|| panic!("before any session")).join();
    let records = exceptions(&p);
    assert_eq!(records.len(), 1);
    assert_eq!(log_attr(&records[0], "session.id"), None);
    assert_eq!(
        log_attr(&records[0], "exception.message").as_deref(),
        Some("before any session")
    );
    assert!(p.sessions.current_session().is_none(), "nothing started");
}

#[test]
fn a_panic_inside_a_request_is_reported_with_the_requests_session_not_the_apps() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let p = pipeline(SessionManager::builder().with_mode(SessionMode::Request));
    otel_session::install_panic_hook(&p.sessions);
    let request = p.sessions.begin_request([]);
    let cx = request.context().clone();
    let own = otel_session::SessionContextExt::stamped_session_id(&cx);
    let tracer = p.tracer();
    let outcome = std::thread::spawn(move || {
        let _in = cx.attach();
        tracer.in_span("handler", |_| panic!("handler bug"));
    })
    .join();
    assert!(outcome.is_err());
    let id = request.session().unwrap().id().to_string();
    request.finish(otel_session::RequestOutcome::Panicked);
    let records = exceptions(&p);
    assert_eq!(records.len(), 1);
    assert_eq!(
        own, None,
        "ids are not stamped: the record names the request's own"
    );
    assert_eq!(log_attr(&records[0], "session.id"), Some(id));
    let handler = p.app_span("handler");
    assert_eq!(
        records[0].record.trace_context().unwrap().trace_id,
        handler.span_context.trace_id()
    );
    assert_eq!(handler.status, Status::error("handler bug"));
}

/// An exporter that panics on what it is given.
#[derive(Debug)]
struct PanickingExporter;

impl opentelemetry_sdk::logs::LogExporter for PanickingExporter {
    async fn export(
        &self,
        _batch: opentelemetry_sdk::logs::LogBatch<'_>,
    ) -> opentelemetry_sdk::error::OTelSdkResult {
        panic!("exporter bug")
    }
}

#[test]
fn a_panic_in_the_reports_own_path_never_recurses() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let sessions = SessionManager::builder()
        .with_mode(SessionMode::Manual)
        .build();
    let provider = opentelemetry_sdk::logs::SdkLoggerProvider::builder()
        .with_log_processor(sessions.log_processor(
            opentelemetry_sdk::logs::SimpleLogProcessor::new(PanickingExporter),
        ))
        .build();
    otel_session::install_panic_hook(&sessions);
    sessions.start_session().unwrap();
    let _ = std::thread::spawn(|| panic!("first")).join();
    let now = sessions.current_session().unwrap();
    assert_eq!(now.status(), SessionStatus::Crashed);
    assert_eq!(
        now.unhandled_errors(),
        1,
        "the exporter's panic is not a crash"
    );
    drop(provider);
}
