//! Shared pieces of the benches: no-op exporters, batch processors that never drop,
//! the constant-attribute wrapper (the floor), the span under test, and a criterion
//! measurement of the calling thread's CPU time.
#![allow(dead_code)]

use std::hint::black_box;
use std::time::Duration;

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use opentelemetry::trace::{Span as _, Tracer as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::logs::{
    BatchConfigBuilder as LogBatchConfig, BatchLogProcessor, LogBatch, LogExporter,
};
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SdkTracer, SdkTracerProvider, Span, SpanData,
    SpanExporter, SpanProcessor,
};
use otel_session::SessionManager;

#[derive(Debug)]
pub struct NoopSpans;
impl SpanExporter for NoopSpans {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        black_box(batch);
        Ok(())
    }
}

#[derive(Debug)]
pub struct NoopLogs;
impl LogExporter for NoopLogs {
    async fn export(&self, batch: LogBatch<'_>) -> OTelSdkResult {
        black_box(batch.iter().count());
        Ok(())
    }
}

/// A batch span processor on a no-op exporter (64 Ki queue: the exporter keeps up;
/// a larger queue is allocated up front and its page faults would be measured).
pub fn batch() -> BatchSpanProcessor {
    BatchSpanProcessor::builder(NoopSpans)
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_max_queue_size(1 << 16)
                .with_max_export_batch_size(2048)
                .build(),
        )
        .build()
}

/// A batch log processor on a no-op exporter whose queue never fills.
pub fn log_batch() -> BatchLogProcessor {
    BatchLogProcessor::builder(NoopLogs)
        .with_batch_config(
            LogBatchConfig::default()
                .with_max_queue_size(1 << 16)
                .with_max_export_batch_size(2048)
                .build(),
        )
        .build()
}

/// The floor: a wrapper that adds a constant `session.id` and delegates.
/// With `EXTRA`, one more constant attribute (`feature_flag.new-cart`): the
/// floor of one stamped session attribute (`const_wrapper2`).
#[derive(Debug)]
pub struct ConstWrapper<P, const EXTRA: bool = false>(pub P);
impl<P: SpanProcessor, const EXTRA: bool> SpanProcessor for ConstWrapper<P, EXTRA> {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        span.set_attribute(KeyValue::new(
            "session.id",
            "0f8fad5b-d9cb-469f-a165-70867728950e",
        ));
        if EXTRA {
            span.set_attribute(KeyValue::new("feature_flag.new-cart", "b"));
        }
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

/// The keys `wrapper_stamp1` / `wrapper_stamp2` stamp.
pub const STAMPED: [&str; 2] = ["feature_flag.new-cart", "app.screen"];

/// A manager that stamps `keys` of [`STAMPED`] (its session started, the
/// attributes set).
pub fn stamping(keys: usize) -> SessionManager {
    let m = SessionManager::builder()
        .with_stamped_attributes(&STAMPED[..keys])
        .build();
    m.start_session().unwrap();
    m.add_feature_flag("new-cart", "b").unwrap();
    m.set_session_attribute("app.screen", "checkout").unwrap();
    m
}

/// The log floor: a wrapper that adds a constant `session.id` and delegates
/// (with `EXTRA`, one more constant attribute, as [`ConstWrapper`]).
#[derive(Debug)]
pub struct ConstLogWrapper<P, const EXTRA: bool = false>(pub P);
impl<P: opentelemetry_sdk::logs::LogProcessor, const EXTRA: bool>
    opentelemetry_sdk::logs::LogProcessor for ConstLogWrapper<P, EXTRA>
{
    fn emit(
        &self,
        record: &mut opentelemetry_sdk::logs::SdkLogRecord,
        scope: &opentelemetry::InstrumentationScope,
    ) {
        use opentelemetry::logs::LogRecord as _;
        record.add_attribute("session.id", "0f8fad5b-d9cb-469f-a165-70867728950e");
        if EXTRA {
            record.add_attribute("feature_flag.new-cart", "b");
        }
        self.0.emit(record, scope);
    }
    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }
    fn shutdown_with_timeout(&self, t: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(t)
    }
}

/// The pipelines compared. `wrapper` runs with app-mode tracking on (the
/// default timeouts); `wrapper_untimed` with both timeouts off (what the wrapper
/// was before tracking existed).
/// `wrapper_stability` adds what issue 7 built on the span path: the session
/// sampler (ratio 1.0) in front of the SDK's default sampler, persistence to a
/// file, and the panic hook.
pub const FORMS: [&str; 6] = [
    "bare",
    "const_wrapper",
    "wrapper",
    "wrapper_untimed",
    "wrapper_stability",
    "standalone",
];

static BENCH_FILES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A tracer provider of form `form` (one of [`FORMS`]).
pub fn provider(form: &str, sessions: &SessionManager) -> SdkTracerProvider {
    let b = SdkTracerProvider::builder();
    match form {
        "bare" => b.with_span_processor(batch()),
        "const_wrapper" => b.with_span_processor(ConstWrapper::<_, false>(batch())),
        "wrapper" => b.with_span_processor(sessions.span_processor(batch())),
        "const_wrapper2" => b.with_span_processor(ConstWrapper::<_, true>(batch())),
        "wrapper_stamp1" => b.with_span_processor(stamping(1).span_processor(batch())),
        "wrapper_stamp2" => b.with_span_processor(stamping(2).span_processor(batch())),
        "wrapper_untimed" => {
            let untimed = SessionManager::builder()
                .with_inactivity_timeout(None)
                .with_max_duration(None)
                .build();
            b.with_span_processor(untimed.span_processor(batch()))
        }
        "wrapper_stability" => {
            // Under target/tmp, reused by the next run (a bench builds a
            // handful of these; a second bench process at the same time
            // would find them locked and run unpersisted, with a warning).
            let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
                "otel-session-bench-{}.json",
                BENCH_FILES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            ));
            let m = SessionManager::builder()
                .with_persistence(&path)
                .with_sample_ratio(1.0)
                .build();
            otel_session::install_panic_hook(&m);
            b.with_sampler(
                m.sampler(opentelemetry_sdk::trace::Sampler::ParentBased(Box::new(
                    opentelemetry_sdk::trace::Sampler::AlwaysOn,
                ))),
            )
            .with_span_processor(m.span_processor(batch()))
        }
        _ => b
            .with_span_processor(sessions.standalone_span_processor())
            .with_span_processor(batch()),
    }
    .build()
}

/// 4 attributes: a full vec (len = capacity, like a `vec![..]` literal) or one with
/// spare capacity.
#[inline]
pub fn attrs(spare: bool) -> Vec<KeyValue> {
    let mut v = Vec::with_capacity(if spare { 8 } else { 4 });
    v.push(KeyValue::new("http.request.method", "GET"));
    v.push(KeyValue::new("url.path", "/checkout"));
    v.push(KeyValue::new("http.response.status_code", 200));
    v.push(KeyValue::new("app.items", 3));
    v
}

/// Starts and ends one span.
#[inline]
pub fn one_span(tracer: &SdkTracer, spare: bool) {
    let mut span = tracer
        .span_builder("op")
        .with_attributes(attrs(spare))
        .start(tracer);
    span.end();
}

/// CPU time of the calling thread: time the thread was descheduled (the batch
/// thread shares the 2 cores) does not count; cache misses and contention do.
pub fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec pointer; CLOCK_THREAD_CPUTIME_ID exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Criterion measurement: the benchmarking thread's CPU time.
pub struct ThreadCpuTime;

impl Measurement for ThreadCpuTime {
    type Intermediate = Duration;
    type Value = Duration;

    fn start(&self) -> Duration {
        thread_cpu()
    }
    fn end(&self, start: Duration) -> Duration {
        thread_cpu().saturating_sub(start)
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, v: &Duration) -> f64 {
        v.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        static WALL: WallTime = WallTime;
        WALL.formatter()
    }
}

/// Emits one log record (severity, body, 2 attributes).
#[inline]
pub fn one_log(logger: &opentelemetry_sdk::logs::SdkLogger) {
    use opentelemetry::logs::{LogRecord as _, Logger as _, Severity};
    let mut r = logger.create_log_record();
    r.set_severity_number(Severity::Info);
    r.set_body("order placed".into());
    r.add_attribute("app.items", 3);
    r.add_attribute("url.path", "/checkout");
    logger.emit(r);
}

/// Wall time for 2 threads to make `per_thread` spans each, optionally while a
/// third thread pauses and resumes the session every 0.5 ms (a lock on the hot
/// path would show here).
pub fn contention_run(
    tp: &SdkTracerProvider,
    sessions: &SessionManager,
    per_thread: u64,
    flip: bool,
) -> Duration {
    use opentelemetry::trace::TracerProvider as _;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
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
    let start = std::time::Instant::now();
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
}
