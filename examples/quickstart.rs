//! Sessions on the console, no collector needed:
//!
//! ```text
//! cargo run --example quickstart
//! ```
//!
//! Wires `otel-session` into an SDK tracer and logger provider (the wrapper form),
//! instruments with `tracing`, and walks through the session API: a user, an
//! `on_session` callback, start, pause, resume, a replacing start and an end. Every
//! span and log record is printed as one line with its `session.id`; the session's
//! own lifecycle (`session.start` … `session`) shows up among them.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_appender_tracing::layer::OpenTelemetryTracingBridge;
use opentelemetry_sdk::logs::{SdkLoggerProvider, SimpleLogProcessor};
use opentelemetry_sdk::trace::{SdkTracerProvider, SimpleSpanProcessor};
use opentelemetry_sdk::Resource;
use otel_session::console::{ConsoleLogExporter, ConsoleSpanExporter};
use otel_session::{SessionManager, SessionResourceDetector, User};
use tracing_subscriber::layer::SubscriberExt as _;

fn step(text: &str) {
    println!("\n== {text}");
}

fn main() {
    // 1. A session manager, with a callback that tags every session.
    let sessions = SessionManager::builder()
        .on_session(|candidate| {
            candidate.set_attribute(KeyValue::new("app.plan", "free"));
            true // return false to discard the session
        })
        .build();

    // 2. Your providers, with your exporting processors wrapped by ours.
    let resource = Resource::builder()
        .with_service_name("quickstart")
        .with_detector(Box::new(
            SessionResourceDetector::new().with_service_version(env!("CARGO_PKG_VERSION")),
        ))
        .build();
    let tracer_provider = SdkTracerProvider::builder()
        .with_resource(resource.clone())
        .with_span_processor(sessions.span_processor(SimpleSpanProcessor::new(ConsoleSpanExporter)))
        .build();
    let logger_provider = SdkLoggerProvider::builder()
        .with_resource(resource)
        .with_log_processor(sessions.log_processor(SimpleLogProcessor::new(ConsoleLogExporter)))
        .build();

    // 3. `tracing` as usual: the OpenTelemetry layer and the log bridge.
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(tracer_provider.tracer("quickstart")))
        .with(OpenTelemetryTracingBridge::new(&logger_provider));
    let _default = tracing::subscriber::set_default(subscriber);

    // 4. The crate-root verbs act on the global manager.
    otel_session::set_global_manager(sessions.clone());
    otel_session::set_user(User::with_id("user-1").email("ada@example.com"));

    step("start_session(): lifecycle span + log event, then app telemetry stamped");
    let first = otel_session::start_session().expect("a session");
    println!("   current session: {first}");
    tracing::info_span!("checkout", items = 2).in_scope(|| {
        tracing::info!("adding item to cart");
        tracing::error!("payment declined"); // counted as a handled error
    });

    step("pause_session(): telemetry is no longer attributed");
    otel_session::pause_session();
    tracing::info_span!("background-sync").in_scope(|| tracing::info!("syncing while paused"));

    step("resume_session(): same session, counts continue");
    let resumed = otel_session::resume_session();
    println!("   resumed: {resumed}");
    tracing::info_span!("checkout-retry").in_scope(|| tracing::info!("payment accepted"));
    let now = otel_session::current_session().expect("current");
    println!(
        "   session {} status={} handled errors={}",
        now.id(),
        now.status(),
        now.handled_errors()
    );

    step("start_session() again: the old one ends (replaced), the new one points back");
    let second = otel_session::start_session().expect("a session");
    println!(
        "   new session {second}, previous_id={}",
        second.previous_id().map(|p| p.as_str()).unwrap_or("-")
    );
    tracing::info_span!("browse").in_scope(|| {});

    step("end_session(): end transition and the `session` summary span");
    otel_session::end_session();
    println!(
        "   current session after end: {:?}",
        otel_session::current_session().map(|s| s.id().to_string())
    );

    step("shutdown");
    let _ = tracer_provider.shutdown();
    let _ = logger_provider.shutdown();
}
