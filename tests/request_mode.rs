//! Request mode against a real axum server on 127.0.0.1 and a real HTTP client:
//! a session per request, counted exactly by status; every request's telemetry
//! carries its own id (or its caller's, when joined) and never another's.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use common::{log_attr, sid, LogRecorder, SpanRecorder};
use opentelemetry::logs::{LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::trace::{Tracer as _, TracerProvider as _};
use opentelemetry_sdk::logs::{SdkLoggerProvider, SimpleLogProcessor};
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::{SdkTracerProvider, SimpleSpanProcessor};
use otel_session::{SessionManager, SessionMode};

struct Server {
    addr: std::net::SocketAddr,
    spans: SpanRecorder,
    logs: LogRecorder,
    metrics: InMemoryMetricExporter,
    meter_provider: SdkMeterProvider,
    tracer_provider: SdkTracerProvider,
    logger_provider: SdkLoggerProvider,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

/// A handler's view of its session: `own|stamped` (its request session and
/// the id its telemetry carries).
fn whoami() -> String {
    let own = otel_session::current_session()
        .map(|s| s.id().to_string())
        .unwrap_or_default();
    let stamped = otel_session::stamped_session_id()
        .map(|s| s.to_string())
        .unwrap_or_default();
    format!("{own}|{stamped}")
}

async fn serve(request_ids: bool) -> Server {
    serve_with(request_ids, false).await
}

/// [`serve`], with tower-http's `CatchPanicLayer` outside the session layer
/// when `catch_panics` (a panic then answers 500).
async fn serve_with(request_ids: bool, catch_panics: bool) -> Server {
    let spans = SpanRecorder::default();
    let logs = LogRecorder::default();
    let metrics = InMemoryMetricExporter::default();
    let meter_provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(metrics.clone()).build())
        .build();
    let sessions = SessionManager::builder()
        .with_mode(SessionMode::Request)
        .with_request_ids(request_ids)
        .with_propagation(true)
        .with_meter(meter_provider.meter("otel-session"))
        .build();
    assert!(
        sessions.current_session().is_none(),
        "no app session in request mode"
    );
    let tracer_provider = SdkTracerProvider::builder()
        .with_span_processor(sessions.span_processor(SimpleSpanProcessor::new(spans.clone())))
        .build();
    let logger_provider = SdkLoggerProvider::builder()
        .with_log_processor(sessions.log_processor(SimpleLogProcessor::new(logs.clone())))
        .build();
    let tracer = Arc::new(tracer_provider.tracer("handler"));
    let logger = Arc::new(logger_provider.logger("handler"));

    let t = Arc::clone(&tracer);
    let l = Arc::clone(&logger);
    let work = move |axum::extract::Path(n): axum::extract::Path<u32>| {
        let t = Arc::clone(&t);
        let l = Arc::clone(&l);
        async move {
            // Across an await point, on whatever worker thread resumes it.
            tokio::task::yield_now().await;
            t.in_span(format!("work-{n}"), |_| {});
            let mut r = l.create_log_record();
            r.set_severity_number(Severity::Info);
            r.set_body(format!("log-{n}").into());
            l.emit(r);
            tokio::task::yield_now().await;
            whoami()
        }
    };
    let l2 = Arc::clone(&logger);
    let app = axum::Router::new()
        .route("/ok/{n}", get(work))
        .route(
            "/fail",
            get(|| async { (axum::http::StatusCode::INTERNAL_SERVER_ERROR, whoami()) }),
        )
        .route(
            "/handled",
            get(|| async {
                otel_session::record_handled_error();
                whoami()
            }),
        )
        .route(
            "/error-log",
            get(move || {
                let l = Arc::clone(&l2);
                async move {
                    let mut r = l.create_log_record();
                    r.set_severity_number(Severity::Error);
                    l.emit(r);
                    whoami()
                }
            }),
        )
        .route(
            "/client-error",
            get(|| async { (axum::http::StatusCode::NOT_FOUND, whoami()) }),
        )
        .route(
            "/panic",
            get(|| async {
                tokio::task::yield_now().await;
                panic!("handler panicked on purpose");
                #[allow(unreachable_code)]
                ""
            }),
        )
        .layer(sessions.request_layer());
    let app = if catch_panics {
        app.layer(tower_http::catch_panic::CatchPanicLayer::new())
    } else {
        app
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await
            .unwrap();
    });
    Server {
        addr,
        spans,
        logs,
        metrics,
        meter_provider,
        tracer_provider,
        logger_provider,
        _shutdown: tx,
    }
}

fn counts(server: &Server) -> HashMap<String, u64> {
    server.meter_provider.force_flush().unwrap();
    let all = server.metrics.get_finished_metrics().unwrap();
    let mut out = HashMap::new();
    if let Some(rm) = all.last() {
        for sm in rm.scope_metrics() {
            for m in sm.metrics() {
                if let AggregatedMetrics::U64(MetricData::Sum(s)) = m.data() {
                    for dp in s.data_points() {
                        let status = dp
                            .attributes()
                            .find(|kv| kv.key.as_str() == "otel_session.status")
                            .map(|kv| format!("{}{{{}}}", m.name(), kv.value))
                            .unwrap_or_else(|| m.name().to_string());
                        *out.entry(status).or_default() += dp.value();
                    }
                }
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_requests_are_counted_by_status_and_never_share_an_id() {
    let server = serve(true).await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let kinds = [
        "ok",
        "fail",
        "handled",
        "error-log",
        "client-error",
        "panic",
        "ok",
        "ok",
    ];
    let mut tasks = Vec::new();
    for i in 0..1000u32 {
        let kind = kinds[i as usize % kinds.len()];
        let path = if kind == "ok" {
            format!("/ok/{i}")
        } else {
            format!("/{kind}")
        };
        let url = format!("http://{}{path}", server.addr);
        let client = client.clone();
        // Every tenth ok request comes from a caller with its own session.
        let joined = (kind == "ok" && i % 10 == 0).then(|| format!("caller-{i}"));
        tasks.push(tokio::spawn(async move {
            let mut req = client.get(url);
            if let Some(caller) = &joined {
                req = req.header("baggage", format!("tenant=acme,session.id={caller}"));
            }
            let body = match req.send().await {
                Ok(resp) => Some(resp.text().await.unwrap_or_default()),
                Err(_) => None, // a panicking handler drops the connection
            };
            (i, kind, joined, body)
        }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    let n = |k: &str| results.iter().filter(|r| r.1 == k).count() as u64;

    let c = counts(&server);
    assert_eq!(c.get("otel_session.started"), Some(&1000), "{c:?}");
    assert_eq!(
        c.get("otel_session.ended{ok}"),
        Some(&(n("ok") + n("client-error"))),
        "{c:?}"
    );
    assert_eq!(
        c.get("otel_session.ended{errored}"),
        Some(&(n("fail") + n("handled") + n("error-log"))),
        "{c:?}"
    );
    assert_eq!(
        c.get("otel_session.ended{crashed}"),
        Some(&n("panic")),
        "{c:?}"
    );

    // Each ok request's span and log carry its own id (or its caller's).
    let spans = server.spans.get_finished_spans().unwrap();
    let logs = server.logs.get_emitted_logs().unwrap();
    let span_ids: HashMap<String, Option<String>> =
        spans.iter().map(|s| (s.name.to_string(), sid(s))).collect();
    let log_ids: HashMap<String, Option<String>> = logs
        .iter()
        .filter_map(|l| {
            let body = match l.record.body()? {
                opentelemetry::logs::AnyValue::String(s) => s.to_string(),
                _ => return None,
            };
            Some((body, log_attr(l, "session.id")))
        })
        .collect();
    let mut own_ids = HashSet::new();
    for (i, kind, joined, body) in &results {
        if *kind == "panic" {
            continue;
        }
        let body = body.as_ref().expect("only panics drop the connection");
        let (own, stamped) = body.split_once('|').unwrap();
        assert!(
            !own.is_empty(),
            "{kind} {i}: the handler sees its request session"
        );
        assert!(own_ids.insert(own.to_string()), "request ids are unique");
        let expected = joined.clone().unwrap_or_else(|| own.to_string());
        assert_eq!(stamped, expected, "{kind} {i}");
        if *kind == "ok" {
            assert_eq!(
                span_ids[&format!("work-{i}")].as_deref(),
                Some(expected.as_str())
            );
            assert_eq!(
                log_ids[&format!("log-{i}")].as_deref(),
                Some(expected.as_str())
            );
        }
    }
    server.tracer_provider.shutdown().unwrap();
    server.logger_provider.shutdown().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_request_ids_requests_are_counted_but_not_stamped_and_bad_baggage_is_ignored() {
    let server = serve(false).await;
    let client = reqwest::Client::new();
    let get = |path: String, baggage: Option<&'static str>| {
        let mut req = client.get(format!("http://{}{path}", server.addr));
        if let Some(b) = baggage {
            req = req.header("baggage", b);
        }
        async move { req.send().await.unwrap().text().await.unwrap() }
    };
    let plain = get("/ok/1".into(), None).await;
    let joined = get("/ok/2".into(), Some("session.id=caller_A-9")).await;
    let malformed = get("/ok/3".into(), Some("session.id=<script>alert(1)</script>")).await;
    let too_long = get(
        "/ok/4".into(),
        Some(Box::leak(
            format!("session.id={}", "a".repeat(65)).into_boxed_str(),
        )),
    )
    .await;
    let (own, stamped) = plain.split_once('|').unwrap();
    assert!(!own.is_empty());
    assert_eq!(stamped, "", "request ids are not stamped by default");
    assert_eq!(joined.split_once('|').unwrap().1, "caller_A-9");
    assert_eq!(
        malformed.split_once('|').unwrap().1,
        "",
        "a malformed id is ignored"
    );
    assert_eq!(
        too_long.split_once('|').unwrap().1,
        "",
        "65 bytes is too long"
    );
    let spans = server.spans.get_finished_spans().unwrap();
    let by_name: HashMap<_, _> = spans.iter().map(|s| (s.name.to_string(), sid(s))).collect();
    assert_eq!(by_name["work-1"], None);
    assert_eq!(by_name["work-2"].as_deref(), Some("caller_A-9"));
    assert_eq!(by_name["work-3"], None);
    assert_eq!(by_name["work-4"], None);
    let c = counts(&server);
    assert_eq!(c.get("otel_session.started"), Some(&4));
    assert_eq!(c.get("otel_session.ended{ok}"), Some(&4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catch_panic_outside_the_session_layer_answers_500_and_the_session_is_crashed() {
    let server = serve_with(false, true).await;
    let client = reqwest::Client::new();
    let status = |path: &'static str| {
        let req = client.get(format!("http://{}{path}", server.addr));
        async move { req.send().await.expect("an answer").status().as_u16() }
    };
    assert_eq!(status("/panic").await, 500, "the panic is answered");
    assert_eq!(status("/ok/1").await, 200, "and the server goes on");
    let c = counts(&server);
    assert_eq!(c.get("otel_session.ended{crashed}"), Some(&1), "{c:?}");
    assert_eq!(c.get("otel_session.ended{ok}"), Some(&1), "{c:?}");
    assert_eq!(c.get("otel_session.ended{errored}"), Some(&0), "{c:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_session_reaches_allow_listed_servers_only() {
    let server = serve(false).await;
    // The client: an app whose session should follow its calls to our own API.
    let client_sessions = SessionManager::builder().build();
    otel_session::set_global_manager(client_sessions.clone());
    let client_id = client_sessions.current_session().unwrap().id().to_string();
    let client = reqwest::Client::new();
    let call = |baggage: otel_session::SessionBaggage, n: u32| {
        let client = client.clone();
        let url = format!("http://{}/ok/{n}", server.addr);
        async move {
            let mut request = client.get(url).build().unwrap();
            let host = request.url().host_str().unwrap_or_default().to_owned();
            let injected = baggage.inject(&host, request.headers_mut());
            let body = client.execute(request).await.unwrap().text().await.unwrap();
            (injected, body)
        }
    };
    let allowed = otel_session::SessionBaggage::new().allow_host("127.0.0.1");
    let other = otel_session::SessionBaggage::new().allow_host("api.example.com");
    let (injected, body) = call(allowed, 10).await;
    assert!(injected);
    assert_eq!(
        body.split_once('|').unwrap().1,
        client_id,
        "the server joined the client's session"
    );
    let (injected, body) = call(other, 11).await;
    assert!(!injected);
    assert_eq!(
        body.split_once('|').unwrap().1,
        "",
        "not sent to a host off the list"
    );
    otel_session::clear_global_manager();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_app_mode_the_layer_joins_a_caller_and_otherwise_leaves_the_request_in_the_app_session()
{
    use tower::ServiceExt as _;
    let spans = SpanRecorder::default();
    let sessions = SessionManager::builder().with_propagation(true).build();
    let app_id = sessions.current_session().unwrap().id().to_string();
    let tp = SdkTracerProvider::builder()
        .with_span_processor(sessions.span_processor(SimpleSpanProcessor::new(spans.clone())))
        .build();
    let tracer = Arc::new(tp.tracer("handler"));
    let app = axum::Router::new()
        .route(
            "/{name}",
            get(
                move |axum::extract::Path(name): axum::extract::Path<String>| async move {
                    tracer.in_span(name, |_| {});
                },
            ),
        )
        .layer(sessions.request_layer());
    for (name, baggage) in [
        ("joined", Some("session.id=caller-7")),
        ("plain", None),
        ("other-baggage", Some("other=1")),
    ] {
        let mut request = axum::http::Request::builder().uri(format!("/{name}"));
        if let Some(b) = baggage {
            request = request.header("baggage", b);
        }
        let request = request.body(axum::body::Body::empty()).unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        assert!(response.status().is_success(), "{name}");
    }
    let stamped = |name: &str| {
        let span = spans
            .get_finished_spans()
            .unwrap()
            .into_iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no span {name}"));
        sid(&span)
    };
    // No request session in app mode: the caller's id when joined, else the
    // app session's.
    assert_eq!(stamped("joined").as_deref(), Some("caller-7"));
    assert_eq!(stamped("plain"), Some(app_id.clone()));
    assert_eq!(stamped("other-baggage"), Some(app_id));
}
