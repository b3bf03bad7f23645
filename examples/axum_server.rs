//! A server with request mode: every request is a session of its own, counted
//! by status (`ok`, `errored` for a 5xx, a service error or a recorded error,
//! `crashed` for a panic), and a caller's session joined from W3C baggage.
//!
//! ```text
//! OTEL_SESSION_MODE=request OTEL_SESSION_PROPAGATE=true OTEL_SESSION_REQUEST_IDS=true \
//! OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 cargo run --example axum_server
//! curl localhost:3000/                          # ok
//! curl localhost:3000/fail                      # errored (500)
//! curl localhost:3000/checkout                  # errored (record_handled_error)
//! curl localhost:3000/panic                     # crashed (answered 500)
//! curl -H 'baggage: session.id=browser-7' localhost:3000/   # joins browser-7
//! ```
//!
//! Every request session carries the feature flag `new-checkout` set at
//! startup (its arm from `CHECKOUT_ARM`, default `treatment`: in a real server,
//! from your flag provider), and `/checkout` sets a property of its own request,
//! `checkout.payment_method`. Request sessions have no summary span: to see
//! them on the request's telemetry, stamp them (they go where the request's id
//! goes, so with `OTEL_SESSION_REQUEST_IDS=true`); to count crash-free requests
//! per arm, split the stability counter by the flag:
//!
//! ```text
//! OTEL_SESSION_STAMP_ATTRIBUTES=feature_flag.new-checkout,checkout.payment_method \
//! OTEL_SESSION_METRICS_SPLIT=feature_flag.new-checkout ...
//! ```
//!
//! `PORT` chooses the port (`0`: any free one; the address is printed as
//! `LISTEN=…`). Ctrl-C or SIGTERM stops it gracefully; the guard then flushes.
//! The order of layers matters: `SessionLayer` goes outside tower-http's
//! `TraceLayer` (with axum, add it after), so the request span is in the
//! request's session; `CatchPanicLayer` outside both turns a panic into a 500
//! (the session is still `crashed`). `TraceLayer`'s spans are made at INFO here:
//! its default, DEBUG, is below the guard's `info` filter.

use axum::http::StatusCode;
use axum::routing::get;
use otel_session::config::SessionMode;
use otel_session::SessionLayer;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::{DefaultMakeSpan, TraceLayer};
use tracing_subscriber::layer::SubscriberExt as _;

async fn hello() -> String {
    tracing::info!("hello");
    let joined = otel_session::stamped_session_id();
    let session = otel_session::current_session();
    format!(
        "request session {}, telemetry carries {}, new-checkout arm {}\n",
        session
            .as_ref()
            .map(|s| s.id().to_string())
            .unwrap_or_else(|| "-".into()),
        joined.map(|s| s.to_string()).unwrap_or_else(|| "-".into()),
        session
            .and_then(|s| s.feature_flag("new-checkout"))
            .unwrap_or_else(|| "-".into())
    )
}

async fn checkout() -> &'static str {
    // Inside a handler the crate-root verbs act on the request's session: this
    // property is this request's only.
    otel_session::set_session_attribute("checkout.payment_method", "card")
        .expect("a valid property");
    // A failure the handler dealt with: the request's session is `errored`.
    tracing::warn!("card declined");
    otel_session::record_handled_error();
    "declined\n"
}

#[tokio::main]
async fn main() {
    let guard = otel_session::Builder::from_env()
        .with_service_version(env!("CARGO_PKG_VERSION"))
        .configure(|c| {
            if std::env::var_os("OTEL_SESSION_MODE").is_none() {
                c.mode = SessionMode::Request;
            }
        })
        .init()
        .expect("telemetry set up");
    let subscriber = tracing_subscriber::registry()
        .with(guard.tracing_layer())
        .with(guard.log_layer());
    tracing::subscriber::set_global_default(subscriber).expect("subscriber");
    // Outside any request: every request session carries it from its start.
    let arm = std::env::var("CHECKOUT_ARM").unwrap_or_else(|_| "treatment".into());
    otel_session::add_feature_flag("new-checkout", arm).expect("a valid flag");

    let app = axum::Router::new()
        .route("/", get(hello))
        .route("/checkout", get(checkout))
        .route(
            "/fail",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "failed\n") }),
        )
        .route(
            "/panic",
            get(|| async {
                if std::env::var_os("NEVER_SET_THIS").is_none() {
                    panic!("a bug in the handler");
                }
                "unreachable"
            }),
        )
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(DefaultMakeSpan::new().level(tracing::Level::INFO)),
        )
        .layer(SessionLayer::new()) // outside TraceLayer: added after it
        .layer(CatchPanicLayer::new()); // a panic answers 500

    let port = std::env::var("PORT").unwrap_or_else(|_| "3000".into());
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}"))
        .await
        .expect("bind");
    println!("LISTEN={}", listener.local_addr().expect("address"));
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        })
        .await
        .expect("server");
    println!("STOPPED");
    drop(guard);
}
