//! `Builder` in process: extra span and log processors (wrapped, so they get
//! `session.id` and the lifecycle), a sampler (wrapped by session sampling), the
//! resource, what the guard's `tracing` layers export, and the one error `init()`
//! has. OTLP exporters are off (`none`): each test reads what its in-memory
//! processors received.
//!
//! `init()` installs globals, so the tests here take turns. (The in-memory
//! exporters forget everything at shutdown: each test reads them before the
//! guard goes, after ending the session for its lifecycle output.)

use std::sync::{Mutex, MutexGuard};

use opentelemetry::logs::AnyValue;
use opentelemetry::trace::Status;
use opentelemetry::KeyValue;
use opentelemetry_sdk::logs::{InMemoryLogExporter, SimpleLogProcessor};
use opentelemetry_sdk::trace::{InMemorySpanExporter, Sampler, SimpleSpanProcessor, SpanData};
use otel_session::config::ExporterKind;
use otel_session::{Builder, InitError};
use tracing_subscriber::layer::SubscriberExt as _;

static TURN: Mutex<()> = Mutex::new(());

fn turn() -> MutexGuard<'static, ()> {
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}

struct Memory {
    spans: InMemorySpanExporter,
    logs: InMemoryLogExporter,
}

/// A builder exporting nothing over OTLP, with in-memory processors of "ours".
fn builder() -> (Builder, Memory) {
    let spans = InMemorySpanExporter::default();
    let logs = InMemoryLogExporter::default();
    let b = Builder::from_env()
        .configure(|c| {
            c.traces_exporter = ExporterKind::None;
            c.logs_exporter = ExporterKind::None;
            c.metrics_exporter = ExporterKind::None;
        })
        .with_service_version("1.2.3")
        .with_span_processor(SimpleSpanProcessor::new(spans.clone()))
        .with_log_processor(SimpleLogProcessor::new(logs.clone()));
    (b, Memory { spans, logs })
}

fn sid(span: &SpanData) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == "session.id")
        .map(|kv| kv.value.to_string())
}

fn log_attr(rec: &opentelemetry_sdk::logs::SdkLogRecord, key: &str) -> Option<String> {
    rec.attributes_iter()
        .find(|(k, _)| k.as_str() == key)
        .map(|(_, v)| match v {
            AnyValue::String(s) => s.to_string(),
            other => format!("{other:?}"),
        })
}

fn body(rec: &opentelemetry_sdk::logs::SdkLogRecord) -> String {
    match rec.body() {
        Some(AnyValue::String(s)) => s.to_string(),
        other => format!("{other:?}"),
    }
}

#[test]
fn your_processors_are_wrapped_their_spans_and_logs_carry_session_id_and_the_lifecycle() {
    let _turn = turn();
    let (b, mem) = builder();
    let guard = b.init().expect("init");
    let session = otel_session::current_session().expect("app mode starts a session");
    let id = session.id().to_string();
    let subscriber = tracing_subscriber::registry()
        .with(guard.tracing_layer())
        .with(guard.log_layer());
    tracing::subscriber::with_default(subscriber, || {
        tracing::info_span!("work").in_scope(|| tracing::info!("in work"));
    });
    otel_session::end_session();
    let spans = mem.spans.get_finished_spans().expect("spans");
    let work = spans.iter().find(|s| s.name == "work").expect("work span");
    assert_eq!(sid(work).as_deref(), Some(id.as_str()));
    assert!(
        spans
            .iter()
            .any(|s| s.name == "session" && sid(s).as_deref() == Some(id.as_str())),
        "the lifecycle went through your processor"
    );
    let logs = mem.logs.get_emitted_logs().expect("logs");
    let rec = logs
        .iter()
        .find(|l| body(&l.record) == "in work")
        .expect("log");
    assert_eq!(
        log_attr(&rec.record, "session.id").as_deref(),
        Some(id.as_str())
    );
    assert!(logs
        .iter()
        .any(|l| l.record.event_name() == Some("session.end")));
    drop(guard);
}

#[test]
fn the_sampler_applies_to_application_spans_not_to_the_lifecycle() {
    let _turn = turn();
    let (b, mem) = builder();
    let guard = b.with_sampler(Sampler::AlwaysOff).init().expect("init");
    let subscriber = tracing_subscriber::registry().with(guard.tracing_layer());
    tracing::subscriber::with_default(subscriber, || {
        tracing::info_span!("sampled-out").in_scope(|| {});
    });
    otel_session::end_session();
    let spans = mem.spans.get_finished_spans().expect("spans");
    assert!(!spans.iter().any(|s| s.name == "sampled-out"));
    assert!(spans.iter().any(|s| s.name == "session"), "lifecycle kept");
    drop(guard);
}

#[test]
fn session_sampling_wraps_the_builders_sampler() {
    let _turn = turn();
    let (b, mem) = builder();
    let guard = b
        .configure(|c| c.sample_ratio = 0.0)
        .with_sampler(Sampler::AlwaysOn)
        .init()
        .expect("init");
    let subscriber = tracing_subscriber::registry().with(guard.tracing_layer());
    tracing::subscriber::with_default(subscriber, || {
        tracing::info_span!("kept-by-yours-not-by-the-session").in_scope(|| {});
    });
    otel_session::end_session();
    let spans = mem.spans.get_finished_spans().expect("spans");
    assert!(
        !spans
            .iter()
            .any(|s| s.name == "kept-by-yours-not-by-the-session"),
        "a span must pass both samplers"
    );
    assert!(spans.iter().any(|s| s.name == "session"), "lifecycle kept");
    drop(guard);
}

#[test]
fn service_name_and_resource_attributes_reach_the_resource() {
    let _turn = turn();
    let (b, mem) = builder();
    let guard = b
        .with_service_name("builder-name")
        .with_resource_attributes([
            KeyValue::new("service.namespace", "shop"),
            KeyValue::new("os.type", "overridden"),
        ])
        .init()
        .expect("init");
    let logs = mem.logs.get_emitted_logs().expect("logs");
    drop(guard);
    let resource = &logs.first().expect("lifecycle log events").resource;
    let get = |k: &str| resource.get(&k.to_string().into()).map(|v| v.to_string());
    let expected_name = std::env::var("OTEL_SERVICE_NAME")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "builder-name".to_string());
    assert_eq!(get("service.name"), Some(expected_name));
    assert_eq!(get("service.version").as_deref(), Some("1.2.3"));
    assert_eq!(get("service.namespace").as_deref(), Some("shop"));
    assert_eq!(
        get("os.type").as_deref(),
        Some("overridden"),
        "added attributes win over detected ones"
    );
}

/// Emits the same things under the guard's layers and returns what arrived.
fn through_layers(b: Builder, mem: &Memory) -> (Vec<SpanData>, Vec<String>) {
    let guard = b.init().expect("init");
    let subscriber = tracing_subscriber::registry()
        .with(guard.tracing_layer())
        .with(guard.log_layer());
    tracing::subscriber::with_default(subscriber, || {
        tracing::info_span!("outer").in_scope(|| {
            tracing::trace!("a trace event");
            tracing::info!("an info event");
            tracing::info!(target: "hyper::proto", "the app's own hyper event");
            tracing::error!("an error event");
            let _suppressed = opentelemetry::Context::enter_telemetry_suppressed_scope();
            tracing::error!("emitted while exporting");
            tracing::info_span!("span while exporting").in_scope(|| {});
        });
        tracing::trace_span!("a trace span").in_scope(|| {});
    });
    let spans = mem.spans.get_finished_spans().expect("spans");
    let logs = mem
        .logs
        .get_emitted_logs()
        .expect("logs")
        .iter()
        .filter(|l| {
            l.record
                .event_name()
                .is_none_or(|n| !n.starts_with("session."))
        })
        .map(|l| body(&l.record))
        .collect();
    drop(guard);
    (spans, logs)
}

#[test]
fn the_layers_export_each_event_once_at_info_and_leave_suppressed_threads_out() {
    let _turn = turn();
    let (b, mem) = builder();
    let (spans, logs) = through_layers(b.with_tracing_filter("info"), &mem);
    assert_eq!(
        logs,
        [
            "an info event",
            "the app's own hyper event",
            "an error event"
        ],
        "info and up, once each, the app's hyper event included, nothing emitted \
         under suppression"
    );
    let outer = spans.iter().find(|s| s.name == "outer").expect("outer");
    assert!(
        outer.events.is_empty(),
        "no span events: {:?}",
        outer.events
    );
    assert!(
        matches!(outer.status, Status::Error { .. }),
        "the ERROR event marks the span: {:?}",
        outer.status
    );
    assert!(!spans.iter().any(|s| s.name == "a trace span"));
    assert!(!spans.iter().any(|s| s.name == "span while exporting"));
}

#[test]
fn span_events_and_a_wider_filter_on_request() {
    let _turn = turn();
    let (b, mem) = builder();
    let (spans, logs) = through_layers(b.with_tracing_filter("trace").with_span_events(true), &mem);
    assert!(logs.contains(&"a trace event".to_string()));
    assert!(spans.iter().any(|s| s.name == "a trace span"));
    let outer = spans.iter().find(|s| s.name == "outer").expect("outer");
    let names: Vec<&str> = outer.events.iter().map(|e| e.name.as_ref()).collect();
    assert_eq!(
        names,
        [
            "a trace event",
            "an info event",
            "the app's own hyper event",
            "an error event"
        ]
    );
}

#[test]
fn a_second_init_while_a_guard_lives_is_an_error_and_installs_nothing() {
    let _turn = turn();
    let (b, _mem) = builder();
    let first = b.init().expect("first init");
    let first_session = otel_session::current_session().expect("session");
    let (b2, _mem2) = builder();
    match b2.init() {
        Err(InitError::AlreadyInitialized) => {}
        other => panic!("expected AlreadyInitialized, got {other:?}"),
    }
    assert_eq!(
        otel_session::current_session().map(|s| s.id().to_string()),
        Some(first_session.id().to_string()),
        "the first pipeline is untouched"
    );
    first.shutdown();
    let (b3, _mem3) = builder();
    let again = b3.init().expect("init after the first guard is gone");
    drop(again);
}

/// Sets environment variables for one test (under its turn); removed on drop.
struct EnvVars(Vec<&'static str>);

impl EnvVars {
    fn set(vars: &[(&'static str, &str)]) -> EnvVars {
        for (k, v) in vars {
            std::env::set_var(k, v);
        }
        EnvVars(vars.iter().map(|(k, _)| *k).collect())
    }
}

impl Drop for EnvVars {
    fn drop(&mut self) {
        for k in &self.0 {
            std::env::remove_var(k);
        }
    }
}

#[test]
fn otel_traces_sampler_from_the_environment_applies_to_application_spans() {
    env_sampler_drops_application_spans("always_off");
}

/// Enumerated values are case-insensitive (the SDK alone matches
/// `OTEL_TRACES_SAMPLER` exactly and silently samples everything otherwise).
#[test]
fn otel_traces_sampler_ignores_case() {
    env_sampler_drops_application_spans("ALWAYS_OFF");
    env_sampler_drops_application_spans("ParentBased_Always_Off");
}

fn env_sampler_drops_application_spans(sampler: &str) {
    let _turn = turn();
    let _env = EnvVars::set(&[("OTEL_TRACES_SAMPLER", sampler)]);
    let (b, mem) = builder();
    let guard = b.init().expect("init");
    let subscriber = tracing_subscriber::registry().with(guard.tracing_layer());
    tracing::subscriber::with_default(subscriber, || {
        tracing::info_span!("dropped-by-the-env-sampler").in_scope(|| {});
    });
    otel_session::end_session();
    let spans = mem.spans.get_finished_spans().expect("spans");
    assert!(!spans.iter().any(|s| s.name == "dropped-by-the-env-sampler"));
    assert!(spans.iter().any(|s| s.name == "session"), "lifecycle kept");
    drop(guard);
}

/// The handled-error count of the session that ends after one span with an
/// Error status, with `OTEL_SESSION_ERROR_SOURCES` set to `sources`.
fn handled_after_a_failed_span(sources: &str) -> Option<String> {
    use opentelemetry::trace::{Span as _, Tracer as _, TracerProvider as _};
    let _env = EnvVars::set(&[("OTEL_SESSION_ERROR_SOURCES", sources)]);
    let (b, mem) = builder();
    let guard = b.init().expect("init");
    let tracer = guard.tracer_provider().expect("traces").tracer("t");
    let mut span = tracer.start("failing");
    span.set_status(Status::error("boom"));
    span.end();
    otel_session::end_session();
    let spans = mem.spans.get_finished_spans().expect("spans");
    drop(guard);
    let summary = spans.iter().find(|s| s.name == "session")?;
    summary
        .attributes
        .iter()
        .find(|kv| kv.key.as_str() == "otel_session.errors.handled")
        .map(|kv| kv.value.to_string())
}

#[test]
fn otel_session_error_sources_from_the_environment_decides_what_counts() {
    let _turn = turn();
    assert_eq!(handled_after_a_failed_span("spans").as_deref(), Some("1"));
    assert_eq!(
        handled_after_a_failed_span("logs").as_deref(),
        Some("0"),
        "span status does not count with logs only"
    );
}

#[test]
fn a_shutdown_timeout_of_duration_max_shuts_down_without_overflowing() {
    use std::sync::{Arc, Mutex};
    struct Ends(Arc<Mutex<Vec<String>>>);
    impl otel_session::SessionObserver for Ends {
        fn on_session_ended(&self, s: &otel_session::Session, reason: otel_session::EndReason) {
            self.0.lock().unwrap().push(format!("{} {reason}", s.id()));
        }
    }
    let _turn = turn();
    let ends = Arc::new(Mutex::new(Vec::new()));
    let observer = Ends(Arc::clone(&ends));
    let (b, _mem) = builder();
    let guard = b
        .with_shutdown_timeout(std::time::Duration::MAX)
        .with_sessions(move |s| s.with_observer(observer))
        .init()
        .expect("init");
    let session = otel_session::current_session().expect("a session");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(guard)));
        let _ = tx.send(dropped.is_ok());
    });
    assert_eq!(
        rx.recv_timeout(std::time::Duration::from_secs(20)),
        Ok(true),
        "the guard's drop finished, without a panic"
    );
    assert_eq!(
        *ends.lock().unwrap(),
        [format!("{} shutdown", session.id())]
    );
}
