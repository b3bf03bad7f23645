//! Overhead of otel-session on the span and log hot paths, as ratios against the
//! bare opentelemetry_sdk pipeline measured in the same run. See BENCHMARKS.md for
//! the method and `scripts/bench_ratios.py` for the ratio table.
//!
//! Every pipeline is a batch processor on a no-op exporter (queue large enough that
//! nothing is dropped); every span has 4 attributes, given either as a full
//! `vec![..]` literal (the session attribute forces a reallocation) or with spare
//! capacity.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use opentelemetry::logs::{LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry::trace::{Span as _, Tracer as _, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::logs::{
    BatchConfigBuilder as LogBatchConfig, BatchLogProcessor, LogBatch, LogExporter,
    SdkLoggerProvider,
};
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SdkTracer, SdkTracerProvider, Span, SpanData,
    SpanExporter, SpanProcessor,
};
use otel_session::SessionManager;

#[derive(Debug)]
struct NoopSpans;
impl SpanExporter for NoopSpans {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        black_box(batch);
        Ok(())
    }
}

#[derive(Debug)]
struct NoopLogs;
impl LogExporter for NoopLogs {
    async fn export(&self, batch: LogBatch<'_>) -> OTelSdkResult {
        black_box(batch.iter().count());
        Ok(())
    }
}

fn batch() -> BatchSpanProcessor {
    BatchSpanProcessor::builder(NoopSpans)
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_max_queue_size(1 << 20)
                .with_max_export_batch_size(2048)
                .build(),
        )
        .build()
}

fn log_batch() -> BatchLogProcessor {
    BatchLogProcessor::builder(NoopLogs)
        .with_batch_config(
            LogBatchConfig::default()
                .with_max_queue_size(1 << 20)
                .with_max_export_batch_size(2048)
                .build(),
        )
        .build()
}

/// The floor: a wrapper that adds a constant `session.id` and delegates.
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

enum Form {
    Bare,
    Const,
    Wrapper,
    Standalone,
}

fn provider(form: &Form, sessions: &SessionManager) -> SdkTracerProvider {
    let b = SdkTracerProvider::builder();
    match form {
        Form::Bare => b.with_span_processor(batch()),
        Form::Const => b.with_span_processor(ConstWrapper(batch())),
        Form::Wrapper => b.with_span_processor(sessions.span_processor(batch())),
        Form::Standalone => b
            .with_span_processor(sessions.standalone_span_processor())
            .with_span_processor(batch()),
    }
    .build()
}

#[inline]
fn attrs(spare: bool) -> Vec<KeyValue> {
    if spare {
        let mut v = Vec::with_capacity(8);
        v.push(KeyValue::new("http.request.method", "GET"));
        v.push(KeyValue::new("url.path", "/checkout"));
        v.push(KeyValue::new("http.response.status_code", 200));
        v.push(KeyValue::new("app.items", 3));
        v
    } else {
        vec![
            KeyValue::new("http.request.method", "GET"),
            KeyValue::new("url.path", "/checkout"),
            KeyValue::new("http.response.status_code", 200),
            KeyValue::new("app.items", 3),
        ]
    }
}

#[inline]
fn one_span(tracer: &SdkTracer, spare: bool) {
    let mut span = tracer
        .span_builder("op")
        .with_attributes(attrs(spare))
        .start(tracer);
    span.end();
}

fn spans(c: &mut Criterion) {
    let mut g = c.benchmark_group("span");
    for (name, form) in [
        ("bare", Form::Bare),
        ("const_wrapper", Form::Const),
        ("wrapper", Form::Wrapper),
        ("standalone", Form::Standalone),
    ] {
        for spare in [false, true] {
            let sessions = SessionManager::builder().build();
            let tp = provider(&form, &sessions);
            if matches!(form, Form::Wrapper | Form::Standalone) {
                sessions.start_session();
            }
            let tracer = tp.tracer("bench");
            let id = format!("{name}/{}", if spare { "spare" } else { "full" });
            g.bench_function(id, |b| b.iter(|| one_span(&tracer, spare)));
            let _ = tp.shutdown();
        }
    }
    g.finish();
}

fn logs(c: &mut Criterion) {
    let mut g = c.benchmark_group("log");
    for wrapped in [false, true] {
        let sessions = SessionManager::builder().build();
        let lp = if wrapped {
            SdkLoggerProvider::builder()
                .with_log_processor(sessions.log_processor(log_batch()))
                .build()
        } else {
            SdkLoggerProvider::builder()
                .with_log_processor(log_batch())
                .build()
        };
        sessions.start_session();
        let logger = lp.logger("bench");
        g.bench_function(if wrapped { "wrapper" } else { "bare" }, |b| {
            b.iter(|| {
                let mut r = logger.create_log_record();
                r.set_severity_number(Severity::Info);
                r.set_body("order placed".into());
                r.add_attribute("app.items", 3);
                r.add_attribute("url.path", "/checkout");
                logger.emit(r);
            })
        });
        let _ = lp.shutdown();
    }
    g.finish();
}

/// Span throughput of 2 threads, with and without a third thread flipping
/// pause/resume every millisecond: a lock on the hot path would show here.
fn contention(c: &mut Criterion) {
    let mut g = c.benchmark_group("contention");
    for flip in [false, true] {
        let sessions = SessionManager::builder().build();
        let tp = provider(&Form::Wrapper, &sessions);
        sessions.start_session();
        g.bench_function(if flip { "flipping" } else { "steady" }, |b| {
            b.iter_custom(|iters| {
                let stop = Arc::new(AtomicBool::new(false));
                let flipper = flip.then(|| {
                    let (s, stop) = (sessions.clone(), Arc::clone(&stop));
                    std::thread::spawn(move || {
                        while !stop.load(Ordering::Relaxed) {
                            s.pause_session();
                            std::thread::sleep(Duration::from_micros(500));
                            s.resume_session();
                            std::thread::sleep(Duration::from_micros(500));
                        }
                    })
                });
                let per_thread = iters.div_ceil(2);
                let start = Instant::now();
                let workers: Vec<_> = (0..2)
                    .map(|_| {
                        let tracer = tp.tracer("bench");
                        std::thread::spawn(move || {
                            for _ in 0..per_thread {
                                one_span(&tracer, true);
                            }
                        })
                    })
                    .collect();
                for w in workers {
                    let _ = w.join();
                }
                let elapsed = start.elapsed();
                stop.store(true, Ordering::Relaxed);
                if let Some(f) = flipper {
                    let _ = f.join();
                }
                elapsed
            })
        });
        let _ = tp.shutdown();
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(40)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    targets = spans, logs, contention
}
criterion_main!(benches);
