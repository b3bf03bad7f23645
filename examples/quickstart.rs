//! Sessions in five minutes:
//!
//! ```text
//! cargo run --example quickstart                      # console, no collector needed
//! OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 \
//!     cargo run --example quickstart                  # OTLP to your collector
//! ```
//!
//! One call sets everything up (`otel_session::init!()`: tracer, logger and meter
//! providers, our processors, the exporters the environment asks for, the first
//! session). Then the program instruments with `tracing` as usual and walks
//! through the session API: a user, an `on_session` callback, pause, resume, a
//! replacing start and an end. Without `OTEL_EXPORTER_OTLP_ENDPOINT` every span,
//! log record and metric is printed as one line with its `session.id`, the
//! session's own lifecycle (`session.start` … `session`) among them.

use opentelemetry::KeyValue;
use otel_session::config::ExporterKind;
use otel_session::User;
use tracing_subscriber::layer::SubscriberExt as _;

fn step(text: &str) {
    println!("\n== {text}");
}

fn main() {
    let to_collector = std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_some();
    // `otel_session::init!()` is this builder with your package's name and
    // version; here it also falls back to the console and adds a callback.
    let guard = otel_session::Builder::from_env()
        .with_service_name("quickstart")
        .with_service_version(env!("CARGO_PKG_VERSION"))
        .configure(|c| {
            if !to_collector {
                // No collector configured: show everything on the console.
                c.traces_exporter = ExporterKind::Console;
                c.logs_exporter = ExporterKind::Console;
                c.metrics_exporter = ExporterKind::Console;
            }
        })
        .with_sessions(|s| {
            s.on_session(|candidate| {
                candidate.set_attribute(KeyValue::new("app.plan", "free"));
                true // return false to discard the session
            })
        })
        .init()
        .expect("telemetry set up");

    // Your subscriber, with the two layers the guard hands out.
    let subscriber = tracing_subscriber::registry()
        .with(guard.tracing_layer())
        .with(guard.log_layer());
    tracing::subscriber::set_global_default(subscriber).expect("subscriber");

    step("set-up started a session (app mode)");
    otel_session::set_user(User::with_id("user-1").email("ada@example.com"));
    let first = otel_session::current_session().expect("a session");
    println!("   current session: {first}");
    tracing::info_span!("checkout", items = 2).in_scope(|| {
        tracing::info!("adding item to cart");
        tracing::error!("payment declined"); // counted as a handled error
    });

    step("pause_session(): telemetry is no longer attributed");
    otel_session::pause_session();
    tracing::info_span!("background-sync").in_scope(|| tracing::info!("syncing while paused"));

    step("resume_session(): same session, counts continue");
    println!("   resumed: {}", otel_session::resume_session());
    tracing::info_span!("checkout-retry").in_scope(|| tracing::info!("payment accepted"));
    let now = otel_session::current_session().expect("current");
    println!(
        "   session {} status={} handled errors={}",
        now.id(),
        now.status(),
        now.handled_errors()
    );

    step("start_session(): the old one ends (replaced), the new one points back");
    let second = otel_session::start_session().expect("a session");
    println!(
        "   new session {second}, previous_id={}",
        second.previous_id().map(|p| p.as_str()).unwrap_or("-")
    );
    tracing::info_span!("browse").in_scope(|| {});

    step("dropping the guard: session.end (shutdown), the summary, metrics, flush");
    drop(guard);
    if to_collector {
        println!("\nsent over OTLP; find the sessions by session.id in your backend");
    }
}
