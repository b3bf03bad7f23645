//! Cross-check of `overhead.rs` with the method of DESIGN.md's table: each form
//! runs 1M spans per round, forms interleaved round-robin so drift (thermal, other
//! load) hits all of them alike, medians of 7 rounds. Prints ns per span and the
//! ratios. Run: `cargo bench --bench interleaved`.

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

const SPANS: usize = 300_000;
const ROUNDS: usize = 21;

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

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let forms = ["bare", "const_wrapper", "wrapper", "standalone"];
    for spare in [false, true] {
        let sessions = SessionManager::builder().build();
        let providers: Vec<SdkTracerProvider> = forms
            .iter()
            .map(|f| {
                let b = SdkTracerProvider::builder();
                match *f {
                    "bare" => b.with_span_processor(batch()),
                    "const_wrapper" => b.with_span_processor(ConstWrapper(batch())),
                    "wrapper" => b.with_span_processor(sessions.span_processor(batch())),
                    _ => b
                        .with_span_processor(sessions.standalone_span_processor())
                        .with_span_processor(batch()),
                }
                .build()
            })
            .collect();
        sessions.start_session();
        let tracers: Vec<_> = providers.iter().map(|p| p.tracer("bench")).collect();
        let mut results = vec![Vec::new(); forms.len()];
        for _ in 0..ROUNDS {
            for (i, t) in tracers.iter().enumerate() {
                results[i].push(run(t, spare));
                // Let the batch thread drain before the next form runs.
                let _ = providers[i].force_flush();
            }
        }
        let medians: Vec<f64> = results.into_iter().map(median).collect();
        let vec = if spare { "spare" } else { "full" };
        for (i, f) in forms.iter().enumerate() {
            println!(
                "{vec:5} {f:14} {:7.1} ns/span  {:.3}x bare  {:.3}x const",
                medians[i],
                medians[i] / medians[0],
                medians[i] / medians[1]
            );
        }
        for p in providers {
            let _ = p.shutdown();
        }
    }
}
