//! Programs instrumented with `tracing` + `tracing-opentelemetry` and
//! `opentelemetry-appender-tracing` work unchanged, including spans entered on
//! tokio worker threads.

mod common;

use common::{log_attr, sid};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_appender_tracing::layer::OpenTelemetryTracingBridge;
use otel_session::SessionManager;
use otel_session::SessionMode;
use tracing::Instrument as _;
use tracing_subscriber::layer::SubscriberExt as _;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracing_spans_and_events_on_worker_threads_carry_the_session() {
    let p = common::pipeline(SessionManager::builder().with_mode(SessionMode::Manual));
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(p.tracer_provider.tracer("app")))
        .with(OpenTelemetryTracingBridge::new(&p.logger_provider));
    tracing::subscriber::set_global_default(subscriber).expect("global subscriber");

    let s = p.sessions.start_session().unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            tokio::spawn(
                async move {
                    tokio::task::yield_now().await;
                    tracing::info!(task = i, "working");
                    tracing::info_span!("inner").in_scope(|| {});
                }
                .instrument(tracing::info_span!("task", i)),
            )
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    tracing::error!("one failure");

    // Created while active but entered only after the pause: attribution happens at
    // the first enter (tracing-opentelemetry starts the SDK span there).
    let late = tracing::info_span!("created-then-paused");
    p.sessions.pause_session();
    late.in_scope(|| tracing::info!("while paused"));
    drop(late);

    let spans = p.app_spans();
    let tasks: Vec<_> = spans.iter().filter(|x| x.name == "task").collect();
    assert_eq!(tasks.len(), 8);
    for span in spans
        .iter()
        .filter(|x| x.name == "task" || x.name == "inner")
    {
        assert_eq!(sid(span).as_deref(), Some(s.id().as_str()), "{}", span.name);
    }
    let late = spans
        .iter()
        .find(|x| x.name == "created-then-paused")
        .unwrap();
    assert_eq!(sid(late), None);

    let app_logs = p.app_logs();
    assert_eq!(app_logs.len(), 10);
    let stamped = app_logs
        .iter()
        .filter(|l| log_attr(l, "session.id").as_deref() == Some(s.id().as_str()))
        .count();
    assert_eq!(stamped, 9, "all but the paused-period log");
    // The error! counts once, as a log (default error source).
    assert_eq!(p.sessions.current_session().unwrap().handled_errors(), 1);
}
