//! Through a real collector: 100k spans over OTLP/gRPC into rotel, which forwards
//! to a receiver that counts them. Our wrapper vs the bare SDK pipeline in the same
//! run (rounds alternate; medians): end-to-end throughput (first span created →
//! last span received) and spans lost. Then the same burst with the collector
//! down: the caller's cost per span against the collector-up case.
//!
//! `cargo bench --bench collector` (needs rotel: `bash scripts/install-collector.sh`).
//! `BENCH_DIRECT=1` exports straight to the receiver (no collector);
//! `BENCH_VERBOSE=1` prints every round.
//! Under `cargo test --all-targets` it runs a small smoke round.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use opentelemetry::trace::{Span as _, Tracer as _, TracerProvider as _};
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider};
use otel_session::SessionManager;
use support::{Receiver, Rotel};

fn sizes() -> (usize, usize) {
    if std::env::args().any(|a| a == "--bench") {
        (100_000, 9)
    } else {
        (2_000, 1)
    }
}

/// A provider exporting over gRPC to `endpoint` (bare, or wrapped by a manager
/// with a session current). The runtime drives tonic's I/O.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Form {
    Bare,
    /// The bare pipeline plus a constant `session.id`: the cost of carrying the
    /// attribute through exporter, collector and receiver.
    Floor,
    Ours,
}

fn provider(
    endpoint: &str,
    rt: &tokio::runtime::Runtime,
    form: Form,
) -> (SdkTracerProvider, SessionManager) {
    use opentelemetry_otlp::WithExportConfig as _;
    let _enter = rt.enter();
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .with_timeout(Duration::from_millis(500))
        .build()
        .expect("exporter");
    let batch = BatchSpanProcessor::builder(exporter)
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_max_queue_size(1 << 17)
                .with_max_export_batch_size(2048)
                .with_scheduled_delay(Duration::from_millis(50))
                .build(),
        )
        .build();
    let sessions = SessionManager::builder().build();
    let b = SdkTracerProvider::builder();
    let tp = match form {
        Form::Bare => b.with_span_processor(batch),
        Form::Floor => b.with_span_processor(ConstAttr(batch)),
        Form::Ours => b.with_span_processor(sessions.span_processor(batch)),
    }
    .build();
    if form == Form::Ours {
        sessions.start_session().unwrap();
    }
    (tp, sessions)
}

fn burst(tp: &SdkTracerProvider, name: &'static str, n: usize) -> Duration {
    let tracer = tp.tracer("bench");
    let start = Instant::now();
    for i in 0..n {
        let mut span = tracer
            .span_builder(name)
            .with_attributes([
                opentelemetry::KeyValue::new("i", i as i64),
                opentelemetry::KeyValue::new("url.path", "/checkout"),
            ])
            .start(&tracer);
        span.end();
    }
    start.elapsed()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let (n, rounds) = sizes();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let receiver = Receiver::start_light();
    let rotel = Rotel::start(receiver.addr);
    let forms = [Form::Bare, Form::Floor, Form::Ours];
    let mut rate = vec![Vec::new(); 3];
    let mut caller = vec![Vec::new(); 3];
    let mut lost = [0usize; 3];
    for round in 0..rounds {
        for k in 0..forms.len() {
            // Rotate the order so no form always runs first.
            let i = (k + round) % forms.len();
            let endpoint = if std::env::var_os("BENCH_DIRECT").is_some() {
                format!("http://{}", receiver.addr)
            } else {
                rotel.grpc_endpoint()
            };
            let (tp, _sessions) = provider(&endpoint, &rt, forms[i]);
            receiver.clear();
            let start = Instant::now();
            let took = burst(&tp, "burst", n);
            let _ = tp.force_flush();
            let got = receiver.wait_for(Duration::from_secs(60), |r| {
                r.spans.iter().filter(|s| s.name == "burst").count() >= n
            });
            let arrived = got.spans.iter().filter(|s| s.name == "burst").count();
            drop(got);
            let elapsed = start.elapsed();
            let _ = tp.shutdown();
            if std::env::var_os("BENCH_VERBOSE").is_some() {
                eprintln!(
                    "round {round} {:?} caller={took:?} total={elapsed:?}",
                    forms[i]
                );
            }
            rate[i].push(arrived as f64 / elapsed.as_secs_f64());
            caller[i].push(took.as_nanos() as f64 / n as f64);
            lost[i] += n.saturating_sub(arrived);
        }
    }
    let paired =
        |a: usize, b: usize| median(rate[a].iter().zip(&rate[b]).map(|(x, y)| x / y).collect());
    println!(
        "{} (gRPC), {n} spans x {rounds} rounds, spans/s: bare {:.0}, floor {:.0}, ours {:.0}; \
         throughput ours/bare {:.3}x, ours/floor {:.3}x; lost bare {}, floor {}, ours {}",
        if std::env::var_os("BENCH_DIRECT").is_some() {
            "direct to the receiver"
        } else {
            "through rotel"
        },
        median(rate[0].clone()),
        median(rate[1].clone()),
        median(rate[2].clone()),
        paired(2, 0),
        paired(2, 1),
        lost[0],
        lost[1],
        lost[2]
    );
    let ours_caller = caller[2].clone();
    println!(
        "caller ns/span (collector up): bare {:.1}, floor {:.1}, ours {:.1}",
        median(caller[0].clone()),
        median(caller[1].clone()),
        median(caller[2].clone())
    );

    // Collector down: nothing listens on the port.
    let down = format!("http://127.0.0.1:{}", support::free_port());
    let mut down_caller = vec![];
    for _ in 0..rounds {
        let (tp, _sessions) = provider(&down, &rt, Form::Ours);
        let caller = burst(&tp, "down", n);
        down_caller.push(caller.as_nanos() as f64 / n as f64);
        let _ = tp.shutdown_with_timeout(Duration::from_secs(2));
    }
    let up = median(ours_caller);
    let d = median(down_caller);
    println!(
        "caller ns/span with the collector down: {d:.1} vs up {up:.1}: {:.3}x",
        d / up
    );
    rotel.stop();
    rt.shutdown_background();
}

#[derive(Debug)]
struct ConstAttr<P>(P);
impl<P: opentelemetry_sdk::trace::SpanProcessor> opentelemetry_sdk::trace::SpanProcessor
    for ConstAttr<P>
{
    fn on_start(&self, span: &mut opentelemetry_sdk::trace::Span, cx: &opentelemetry::Context) {
        span.set_attribute(opentelemetry::KeyValue::new(
            "session.id",
            "0f8fad5b-d9cb-469f-a165-70867728950e",
        ));
        self.0.on_start(span, cx);
    }
    fn on_end(&self, span: opentelemetry_sdk::trace::SpanData) {
        self.0.on_end(span);
    }
    fn force_flush(&self) -> opentelemetry_sdk::error::OTelSdkResult {
        self.0.force_flush()
    }
    fn shutdown_with_timeout(&self, t: Duration) -> opentelemetry_sdk::error::OTelSdkResult {
        self.0.shutdown_with_timeout(t)
    }
}
