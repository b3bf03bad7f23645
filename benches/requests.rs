//! Request mode's cost, paired in the same run (see BENCHMARKS.md):
//!
//! 1. **in-process**: an axum `Router` with a trivial handler called through
//!    `tower::ServiceExt::oneshot`, with and without `SessionLayer` (request
//!    mode with its default settings, the stability metrics on): the layer's cost per request
//!    against the least work a request can do (the worst case for the ratio);
//! 2. **loopback**: the same two routers served by axum on 127.0.0.1 and loaded by
//!    a keep-alive HTTP client with 8 requests in flight: requests per second;
//! 3. **neighbours**: span throughput of a thread outside any request (the app
//!    session, wrapper form) while 2 threads run request sessions, against the
//!    same 2 threads running the same loop without sessions.
//!
//! Each pair alternates for 15 rounds and the median of the per-round ratios is
//! printed. `cargo bench --bench requests`; under `cargo test` a smoke run.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::get;
use common::{one_span, provider, thread_cpu};
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use otel_session::{RequestOutcome, SessionManager, SessionMode};
use tower::ServiceExt as _;

fn full() -> bool {
    std::env::args().any(|a| a == "--bench")
}

fn rounds() -> usize {
    if full() {
        15
    } else {
        1
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Request mode with the stability metrics; `ids`: each request's session id
/// stamped on its telemetry (`OTEL_SESSION_REQUEST_IDS=true`; off by default).
fn request_sessions(ids: bool) -> (SessionManager, SdkMeterProvider) {
    let meters = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(InMemoryMetricExporter::default()).build())
        .build();
    let sessions = SessionManager::builder()
        .with_mode(SessionMode::Request)
        .with_request_ids(ids)
        .with_meter(meters.meter("otel-session"))
        .build();
    (sessions, meters)
}

fn router(layer: Option<&SessionManager>) -> axum::Router {
    let app = axum::Router::new().route("/", get(|| async { "ok" }));
    match layer {
        Some(m) => app.layer(m.request_layer()),
        None => app,
    }
}

/// The router with a layer that does nothing (a response mapped to itself):
/// what any `tower` layer costs in axum (a layered route clones its boxed
/// service for each request), apart from what the layer does.
fn router_with_empty_layer() -> axum::Router {
    axum::Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(tower::util::MapResponseLayer::new(
            std::convert::identity::<axum::response::Response>,
        ))
}

/// CPU time per request of `n` oneshot calls.
async fn in_process(app: &axum::Router, n: usize) -> f64 {
    let start = thread_cpu();
    for _ in 0..n {
        let req = axum::http::Request::get("/")
            .body(axum::body::Body::empty())
            .unwrap_or_default();
        let resp = app.clone().oneshot(req).await;
        std::hint::black_box(resp.map(|r| r.status()).ok());
    }
    (thread_cpu() - start).as_nanos() as f64 / n as f64
}

/// Requests per second over loopback with 8 in flight.
async fn loopback(client: &reqwest::Client, url: &str, n: usize) -> f64 {
    let start = Instant::now();
    let per_task = n / 8;
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let client = client.clone();
            let url = url.to_string();
            tokio::spawn(async move {
                for _ in 0..per_task {
                    if let Ok(r) = client.get(&url).send().await {
                        let _ = r.bytes().await;
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        let _ = t.await;
    }
    (per_task * 8) as f64 / start.elapsed().as_secs_f64()
}

async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}/")
}

/// CPU time per span on this thread while 2 threads loop over request handling
/// (with sessions or without).
fn neighbours(with_sessions: bool, sessions: &SessionManager, spans: usize) -> f64 {
    let app_sessions = SessionManager::builder().build();
    let tp = provider("wrapper", &app_sessions);
    let tracer = tp.tracer("bench");
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let stop = Arc::clone(&stop);
            let sessions = sessions.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if with_sessions {
                        let request = sessions.begin_request(["session.id=caller-1"]);
                        let _in = request.context().clone().attach();
                        std::hint::black_box(otel_session::current_session());
                        drop(_in);
                        request.finish(RequestOutcome::Answered);
                    } else {
                        let cx = opentelemetry::Context::current();
                        let _in = cx.attach();
                        std::hint::black_box(otel_session::current_session());
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(20));
    let start = thread_cpu();
    for _ in 0..spans {
        one_span(&tracer, true);
    }
    let per_span = (thread_cpu() - start).as_nanos() as f64 / spans as f64;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.join();
    }
    let _ = tp.shutdown();
    per_span
}

#[inline(never)]
fn counted_requests(rt: &tokio::runtime::Runtime, app: &axum::Router, n: usize) {
    rt.block_on(async {
        std::hint::black_box(in_process(app, n).await);
    });
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        return;
    }
    // `--only with|with-ids|without|empty-layer N`: N in-process requests (the
    // layer with the default settings, with ids stamped, none, or a layer that
    // does nothing), for instruction counts
    // under `valgrind --tool=callgrind --toggle-collect='*counted_requests*'`.
    if let Some(i) = args.iter().position(|a| a == "--only") {
        let form = args.get(i + 1).map(String::as_str);
        let with = matches!(form, Some("with" | "with-ids"));
        let n = args
            .get(i + 2)
            .and_then(|v| v.parse().ok())
            .unwrap_or(10_000);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let (sessions, _meters) = request_sessions(form == Some("with-ids"));
        let app = if form == Some("empty-layer") {
            router_with_empty_layer()
        } else {
            router(with.then_some(&sessions))
        };
        counted_requests(&rt, &app, 1_000); // warm-up, not counted separately
        counted_requests(&rt, &app, n);
        return;
    }
    let (n_calls, n_http, n_spans) = if full() {
        (100_000, 40_000, 200_000)
    } else {
        (200, 80, 1_000)
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    // The default settings: no per-request ids stamped.
    let (sessions, _meters) = request_sessions(false);
    let with = router(Some(&sessions));
    let without = router(None);

    let (mut a, mut b) = (Vec::new(), Vec::new());
    rt.block_on(async {
        for round in 0..rounds() {
            let (x, y) = if round % 2 == 0 {
                let x = in_process(&with, n_calls).await;
                (x, in_process(&without, n_calls).await)
            } else {
                let y = in_process(&without, n_calls).await;
                (in_process(&with, n_calls).await, y)
            };
            a.push(x);
            b.push(y);
        }
    });
    let ratio = median(a.iter().zip(&b).map(|(w, o)| o / w).collect());
    println!(
        "in-process  with layer {:7.0} ns/request, without {:7.0}  throughput {ratio:.3}x",
        median(a),
        median(b)
    );

    let (mut a, mut b) = (Vec::new(), Vec::new());
    rt.block_on(async {
        let url_with = serve(router(Some(&sessions))).await;
        let url_without = serve(router(None)).await;
        let client = reqwest::Client::new();
        for round in 0..rounds() {
            if round % 2 == 0 {
                a.push(loopback(&client, &url_with, n_http).await);
                b.push(loopback(&client, &url_without, n_http).await);
            } else {
                b.push(loopback(&client, &url_without, n_http).await);
                a.push(loopback(&client, &url_with, n_http).await);
            }
        }
    });
    let ratio = median(a.iter().zip(&b).map(|(w, o)| w / o).collect());
    println!(
        "loopback    with layer {:7.0} req/s, without {:7.0}  throughput {ratio:.3}x",
        median(a),
        median(b)
    );

    let (mut a, mut b) = (Vec::new(), Vec::new());
    for round in 0..rounds() {
        if round % 2 == 0 {
            a.push(neighbours(true, &sessions, n_spans));
            b.push(neighbours(false, &sessions, n_spans));
        } else {
            b.push(neighbours(false, &sessions, n_spans));
            a.push(neighbours(true, &sessions, n_spans));
        }
    }
    let ratio = median(a.iter().zip(&b).map(|(w, o)| o / w).collect());
    println!(
        "neighbours  span thread {:6.1} ns/span beside request sessions, {:6.1} beside plain requests  throughput {ratio:.3}x",
        median(a),
        median(b)
    );
}
