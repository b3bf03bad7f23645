//! Cross-check of `overhead.rs`, built to survive a noisy 2-core VM: each form
//! runs 200k spans per round, forms interleaved (order rotated each round) so drift
//! hits all of them alike, time is the calling thread's CPU time, and each ratio is
//! taken within a round and then the median over 31 rounds. Prints ns per span and
//! the ratios. Run: `cargo bench --bench interleaved`.
//!
//! `--only FORM full|spare N` runs one form for instruction counting under
//! callgrind (see BENCHMARKS.md).

use std::hint::black_box;
use std::time::Duration;

use opentelemetry::trace::{Span as _, Tracer as _, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SdkTracer, SdkTracerProvider, Span, SpanData,
    SpanExporter, SpanProcessor,
};
use otel_session::SessionManager;

const SPANS: usize = 200_000;
const ROUNDS: usize = 31;

#[derive(Debug)]
struct NoopSpans;
impl SpanExporter for NoopSpans {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        black_box(batch);
        Ok(())
    }
}

fn batch() -> BatchSpanProcessor {
    BatchSpanProcessor::builder(NoopSpans)
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_max_queue_size(1 << 21)
                .with_max_export_batch_size(2048)
                .build(),
        )
        .build()
}

#[derive(Debug)]
struct ConstWrapper<P>(P);
impl<P: SpanProcessor> SpanProcessor for ConstWrapper<P> {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        span.set_attribute(KeyValue::new(
            "session.id",
            "0f8fad5b-d9cb-469f-a165-70867728950e",
        ));
        self.0.on_start(span, cx);
    }
    fn on_end(&self, span: SpanData) {
        self.0.on_end(span);
    }
    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }
    fn shutdown_with_timeout(&self, t: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(t)
    }
    fn set_resource(&mut self, r: &opentelemetry_sdk::Resource) {
        self.0.set_resource(r);
    }
}

fn attrs(spare: bool) -> Vec<KeyValue> {
    let mut v = Vec::with_capacity(if spare { 8 } else { 4 });
    v.push(KeyValue::new("http.request.method", "GET"));
    v.push(KeyValue::new("url.path", "/checkout"));
    v.push(KeyValue::new("http.response.status_code", 200));
    v.push(KeyValue::new("app.items", 3));
    v
}

/// CPU time of the calling thread: time the thread was descheduled (the batch
/// thread shares the 2 cores) does not count, cache misses and contention do.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec; CLOCK_THREAD_CPUTIME_ID is always supported on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn run(tracer: &SdkTracer, spare: bool) -> f64 {
    let start = thread_cpu();
    for _ in 0..SPANS {
        let mut span = tracer
            .span_builder("op")
            .with_attributes(attrs(spare))
            .start(tracer);
        span.end();
    }
    (thread_cpu() - start).as_nanos() as f64 / SPANS as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

#[inline(never)]
fn counted_run(tracer: &SdkTracer, spare: bool, spans: usize) {
    for _ in 0..spans {
        let mut span = tracer
            .span_builder("op")
            .with_attributes(attrs(spare))
            .start(tracer);
        span.end();
    }
}

fn provider(form: &str, sessions: &SessionManager) -> SdkTracerProvider {
    let b = SdkTracerProvider::builder();
    match form {
        "bare" => b.with_span_processor(batch()),
        "const_wrapper" => b.with_span_processor(ConstWrapper(batch())),
        "wrapper" => b.with_span_processor(sessions.span_processor(batch())),
        _ => b
            .with_span_processor(sessions.standalone_span_processor())
            .with_span_processor(batch()),
    }
    .build()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        return;
    }
    // `--only FORM full|spare N`: N spans of one form, for instruction counting
    // under `valgrind --tool=callgrind --toggle-collect='*counted_run*'`.
    if let Some(i) = args.iter().position(|a| a == "--only") {
        let form = args.get(i + 1).map(String::as_str).unwrap_or("wrapper");
        let spare = args.get(i + 2).map(String::as_str) == Some("spare");
        let n = args
            .get(i + 3)
            .and_then(|v| v.parse().ok())
            .unwrap_or(100_000);
        let sessions = SessionManager::builder().build();
        let p = provider(form, &sessions);
        sessions.start_session();
        let tracer = p.tracer("bench");
        counted_run(&tracer, spare, n);
        let _ = p.shutdown();
        return;
    }
    let forms = ["bare", "const_wrapper", "wrapper", "standalone"];
    for spare in [false, true] {
        let sessions = SessionManager::builder().build();
        let providers: Vec<SdkTracerProvider> =
            forms.iter().map(|f| provider(f, &sessions)).collect();
        sessions.start_session();
        let tracers: Vec<_> = providers.iter().map(|p| p.tracer("bench")).collect();
        let mut results = vec![Vec::new(); forms.len()];
        for round in 0..ROUNDS {
            // Rotate the order each round so no form always runs first.
            for k in 0..forms.len() {
                let i = (k + round) % forms.len();
                results[i].push(run(&tracers[i], spare));
                // Let the batch thread drain before the next form runs.
                let _ = providers[i].force_flush();
            }
        }
        let vec = if spare { "spare" } else { "full" };
        // Ratios are paired within a round (same conditions), then the median.
        let paired = |i: usize, base: usize| {
            median(
                results[i]
                    .iter()
                    .zip(&results[base])
                    .map(|(a, b)| a / b)
                    .collect(),
            )
        };
        for (i, f) in forms.iter().enumerate() {
            println!(
                "{vec:5} {f:14} {:7.1} ns/span  {:.3}x bare  {:.3}x const",
                median(results[i].clone()),
                paired(i, 0),
                paired(i, 1)
            );
        }
        for p in providers {
            let _ = p.shutdown();
        }
    }
}
