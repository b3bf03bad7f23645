//! Manual mode: nothing starts by itself; the program says when a session
//! starts, pauses, resumes and ends (a CLI command, a game level, a wizard).
//!
//! ```text
//! OTEL_SESSION_MODE=manual cargo run --example manual   # console, no collector
//! ```
//!
//! The example sets manual mode in code (`Builder::configure`), so the variable
//! is optional. Telemetry outside a session carries no `session.id`.

use otel_session::config::{ExporterKind, SessionMode};
use tracing_subscriber::layer::SubscriberExt as _;

fn main() {
    let to_collector = std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_some();
    let guard = otel_session::Builder::from_env()
        .with_service_version(env!("CARGO_PKG_VERSION"))
        .configure(|c| {
            c.mode = SessionMode::Manual;
            if !to_collector {
                c.traces_exporter = ExporterKind::Console;
                c.logs_exporter = ExporterKind::Console;
                c.metrics_exporter = ExporterKind::None;
            }
        })
        .init()
        .expect("telemetry set up");
    let subscriber = tracing_subscriber::registry()
        .with(guard.tracing_layer())
        .with(guard.log_layer());
    tracing::subscriber::set_global_default(subscriber).expect("subscriber");

    println!("== before any session: no session.id");
    assert!(otel_session::current_session().is_none());
    tracing::info_span!("startup").in_scope(|| tracing::info!("loading config"));

    println!("\n== level 1 starts");
    let level1 = otel_session::start_session().expect("a session");
    println!("SESSION_1={level1}");
    tracing::info_span!("level", n = 1).in_scope(|| tracing::info!("playing"));

    println!("\n== the menu pauses it");
    otel_session::pause_session();
    tracing::info_span!("menu").in_scope(|| tracing::info!("not attributed"));
    println!("RESUMED={}", otel_session::resume_session());

    println!("\n== level 2 replaces it");
    let level2 = otel_session::start_session().expect("a session");
    println!("SESSION_2={level2}");
    tracing::info_span!("level", n = 2).in_scope(|| tracing::warn!("boss fight"));

    println!("\n== quit to title: the session ends");
    otel_session::end_session();
    assert!(otel_session::current_session().is_none());
    tracing::info_span!("title-screen").in_scope(|| tracing::info!("no session here"));
    drop(guard);
}
