//! Request mode with `tracing`: `SessionLayer` outside tower-http's `TraceLayer`
//! puts the request's span (made by `TraceLayer`, exported through
//! `tracing-opentelemetry`) and the handler's events (through the log bridge)
//! into the request's session; the other order leaves the request span out.

mod common;

use axum::routing::get;
use common::{log_attr, pipeline, sid};
use opentelemetry::trace::TracerProvider as _;
use otel_session::{SessionManager, SessionMode};
use tower_http::trace::TraceLayer;
use tracing_subscriber::layer::SubscriberExt as _;

async fn handler() -> String {
    tracing::info!(target: "app", "inside the handler");
    otel_session::current_session()
        .map(|s| s.id().to_string())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_span_and_events_carry_the_request_session_when_the_layer_is_outside() {
    let p = pipeline(
        SessionManager::builder()
            .with_mode(SessionMode::Request)
            .with_request_ids(true),
    );
    let (sessions, spans, logs) = (&p.sessions, &p.span_exporter, &p.log_exporter);
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(p.tracer_provider.tracer("tracing")))
        .with(
            opentelemetry_appender_tracing::layer::OpenTelemetryTracingBridge::new(
                &p.logger_provider,
            ),
        );
    tracing::subscriber::set_global_default(subscriber).unwrap();

    // Right order: TraceLayer first, SessionLayer added last (outermost).
    let right = axum::Router::new()
        .route("/", get(handler))
        .layer(TraceLayer::new_for_http())
        .layer(sessions.request_layer());
    // Wrong order: TraceLayer outermost.
    let wrong = axum::Router::new()
        .route("/", get(handler))
        .layer(sessions.request_layer())
        .layer(TraceLayer::new_for_http());
    let mut bodies = Vec::new();
    for app in [right, wrong] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let body = reqwest::get(format!("http://{addr}/"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        bodies.push(body);
    }
    let requests: Vec<_> = spans
        .get_finished_spans()
        .unwrap()
        .into_iter()
        .filter(|s| s.name.starts_with("request"))
        .collect();
    assert_eq!(requests.len(), 2, "{requests:?}");
    let events: Vec<_> = logs
        .get_emitted_logs()
        .unwrap()
        .into_iter()
        .filter(|l| {
            matches!(l.record.body(), Some(opentelemetry::logs::AnyValue::String(s)) if s.as_str() == "inside the handler")
        })
        .collect();
    assert_eq!(events.len(), 2);
    // Right order: span and event carry the request's id.
    assert!(!bodies[0].is_empty());
    assert_eq!(sid(&requests[0]).as_deref(), Some(bodies[0].as_str()));
    assert_eq!(
        log_attr(&events[0], "session.id").as_deref(),
        Some(bodies[0].as_str())
    );
    // Wrong order: the request span started outside the session.
    assert_eq!(sid(&requests[1]), None);
    assert_eq!(
        log_attr(&events[1], "session.id").as_deref(),
        Some(bodies[1].as_str())
    );
    p.tracer_provider.shutdown().unwrap();
    p.logger_provider.shutdown().unwrap();
}
