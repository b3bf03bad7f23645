//! The export pipeline `init()` builds: for each signal, an exporter chosen by
//! `OTEL_{TRACES,LOGS,METRICS}_EXPORTER` (OTLP, console or none) and, for OTLP, a
//! transport chosen by `OTEL_EXPORTER_OTLP_{SIGNAL_}PROTOCOL` (`grpc`,
//! `http/protobuf` — the default — or `http/json`). Endpoint, headers, timeout and
//! compression are read by `opentelemetry-otlp` itself.
//!
//! Every exporter is wrapped in a [`Counted`] decorator so that telemetry that
//! could not be delivered is counted and reported once on stderr, never silently.
//!
//! gRPC needs a tokio reactor. `init()` always gives it its own small runtime (one
//! worker thread) owned by the guard, whether or not the program has a runtime: so
//! it works from plain `main`, from `#[tokio::main]` (current-thread too), and
//! shutting down never waits on the program's own runtime.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::logs::{LogBatch, LogExporter};
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use opentelemetry_sdk::Resource;

use crate::error::InitError;

/// The OTLP transport of one signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// OTLP/gRPC (tonic).
    Grpc,
    /// OTLP/HTTP with protobuf bodies.
    HttpProtobuf,
    /// OTLP/HTTP with JSON bodies.
    HttpJson,
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Grpc => "grpc",
            Transport::HttpProtobuf => "http/protobuf",
            Transport::HttpJson => "http/json",
        })
    }
}

/// The transport used when none is configured: `http/protobuf` (the OTLP default)
/// when compiled in, else `grpc`.
pub fn default_transport() -> Transport {
    if cfg!(feature = "otlp-http") || !cfg!(feature = "otlp-grpc") {
        Transport::HttpProtobuf
    } else {
        Transport::Grpc
    }
}

/// The transport for `signal` (`TRACES`, `LOGS`, `METRICS`): the signal's
/// `OTEL_EXPORTER_OTLP_{SIGNAL}_PROTOCOL`, else `OTEL_EXPORTER_OTLP_PROTOCOL`, else
/// [`default_transport`]. A bad value is reported (returned as a warning) and the
/// next source is used.
pub fn transport_from_lookup(
    signal: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> (Transport, Vec<String>) {
    let specific = format!("OTEL_EXPORTER_OTLP_{signal}_PROTOCOL");
    let mut warnings = Vec::new();
    for var in [specific.as_str(), "OTEL_EXPORTER_OTLP_PROTOCOL"] {
        let Some(v) = lookup(var) else { continue };
        let v = v.trim();
        match v {
            "" => {}
            "grpc" => return (Transport::Grpc, warnings),
            "http/protobuf" => return (Transport::HttpProtobuf, warnings),
            "http/json" => return (Transport::HttpJson, warnings),
            other => warnings.push(format!(
                "{var}={other:?} is not valid (expected grpc, http/protobuf or http/json); ignoring it"
            )),
        }
    }
    (default_transport(), warnings)
}

pub(crate) fn transport_from_env(signal: &str) -> Transport {
    let (t, warnings) = transport_from_lookup(signal, &|v| std::env::var(v).ok());
    for w in warnings {
        crate::warn::stderr(format_args!("{w}"));
    }
    t
}

/// Delivery counts of one signal's exporter.
#[derive(Debug, Default)]
pub struct DeliveryStats {
    /// Items the exporter delivered.
    pub exported: AtomicU64,
    /// Items in exports that failed (collector down, slow, refusing).
    pub failed: AtomicU64,
    warned: AtomicBool,
    /// What reaches the exporting processor, and how much it can hold: more
    /// outstanding than that means its queue dropped some.
    watch: std::sync::OnceLock<(Arc<HandedCounter>, u64)>,
    warned_drop: AtomicBool,
}

impl DeliveryStats {
    /// Warns (once) as soon as more items are outstanding than the processor
    /// can hold (queue plus one export batch): the queue is dropping them.
    pub fn watch_drops(&self, handed: Arc<HandedCounter>, capacity: u64) {
        let _ = self.watch.set((handed, capacity));
    }

    fn check_drops(&self, signal: &str) {
        let Some((handed, capacity)) = self.watch.get() else {
            return;
        };
        if self.warned_drop.load(Ordering::Relaxed) {
            return;
        }
        let (exported, failed) = self.snapshot();
        let outstanding = handed.total().saturating_sub(exported + failed);
        if outstanding > *capacity {
            crate::warn::once(
                &self.warned_drop,
                format_args!(
                    "the {signal} queue is full and dropping ({outstanding} waiting for \
                     a queue of {capacity}); the collector is slower than the program: \
                     raise OTEL_BSP_MAX_QUEUE_SIZE / OTEL_BLRP_MAX_QUEUE_SIZE or lower the volume"
                ),
            );
        }
    }

    fn record(&self, signal: &str, n: usize, result: &OTelSdkResult) {
        match result {
            Ok(()) => {
                self.exported.fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(e) => {
                self.failed.fetch_add(n as u64, Ordering::Relaxed);
                crate::warn::once(
                    &self.warned,
                    format_args!(
                        "could not export {n} {signal} ({e}); further failures are counted, \
                         not printed (see the guard's delivery report at shutdown)"
                    ),
                );
            }
        }
    }

    /// `(exported, failed)` so far.
    pub fn snapshot(&self) -> (u64, u64) {
        (
            self.exported.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

/// An exporter decorator that counts what was delivered and what failed.
#[derive(Debug)]
pub struct Counted<E> {
    inner: E,
    stats: Arc<DeliveryStats>,
}

impl<E> Counted<E> {
    /// Wraps `inner`; counts go to `stats`.
    pub fn new(inner: E, stats: Arc<DeliveryStats>) -> Self {
        Counted { inner, stats }
    }
}

impl<E: SpanExporter> SpanExporter for Counted<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len();
        let result = self.inner.export(batch).await;
        self.stats.record("spans", n, &result);
        self.stats.check_drops("span");
        result
    }
    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }
    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }
    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

impl<E: LogExporter> LogExporter for Counted<E> {
    async fn export(&self, batch: LogBatch<'_>) -> OTelSdkResult {
        let n = batch.iter().count();
        let result = self.inner.export(batch).await;
        self.stats.record("log records", n, &result);
        self.stats.check_drops("log");
        result
    }
    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }
    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// The runtime that drives gRPC exporters.
#[cfg(feature = "otlp-grpc")]
pub(crate) fn grpc_runtime() -> Result<tokio::runtime::Runtime, InitError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("otel-session-grpc")
        .enable_all()
        .build()
        .map_err(|e| InitError::Runtime(e.to_string()))
}

/// The exporter type when no OTLP transport is compiled in: never built.
#[cfg(not(any(feature = "otlp-grpc", feature = "otlp-http")))]
#[derive(Debug)]
pub(crate) enum NoOtlp {}

#[cfg(not(any(feature = "otlp-grpc", feature = "otlp-http")))]
mod no_otlp {
    use super::*;

    impl SpanExporter for NoOtlp {
        async fn export(&self, _batch: Vec<SpanData>) -> OTelSdkResult {
            match *self {}
        }
    }

    impl LogExporter for NoOtlp {
        async fn export(&self, _batch: LogBatch<'_>) -> OTelSdkResult {
            match *self {}
        }
    }

    impl opentelemetry_sdk::metrics::exporter::PushMetricExporter for NoOtlp {
        async fn export(
            &self,
            _metrics: &opentelemetry_sdk::metrics::data::ResourceMetrics,
        ) -> OTelSdkResult {
            match *self {}
        }
        fn force_flush(&self) -> OTelSdkResult {
            match *self {}
        }
        fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
            match *self {}
        }
        fn temporality(&self) -> opentelemetry_sdk::metrics::Temporality {
            match *self {}
        }
    }

    pub(crate) fn otlp_spans(
        t: Transport,
        _rt: &mut Option<RuntimeSlot>,
    ) -> Result<NoOtlp, InitError> {
        Err(InitError::FeatureMissing(t))
    }
    pub(crate) fn otlp_logs(
        t: Transport,
        _rt: &mut Option<RuntimeSlot>,
    ) -> Result<NoOtlp, InitError> {
        Err(InitError::FeatureMissing(t))
    }
    pub(crate) fn otlp_metrics(
        t: Transport,
        _rt: &mut Option<RuntimeSlot>,
    ) -> Result<NoOtlp, InitError> {
        Err(InitError::FeatureMissing(t))
    }
}
#[cfg(not(any(feature = "otlp-grpc", feature = "otlp-http")))]
pub(crate) use no_otlp::{otlp_logs, otlp_metrics, otlp_spans};

/// Builds one signal's OTLP exporter (`$exporter` is `SpanExporter`,
/// `LogExporter` or `MetricExporter`): gRPC inside our runtime, HTTP with the
/// protobuf or JSON body.
#[cfg(any(feature = "otlp-grpc", feature = "otlp-http"))]
macro_rules! otlp_exporter {
    ($exporter:ident, $signal:literal, $transport:expr, $rt:expr) => {{
        let transport: Transport = $transport;
        let _ = &$rt; // unused when only HTTP is compiled in
        match transport {
            #[cfg(feature = "otlp-grpc")]
            Transport::Grpc => {
                let rt = runtime($rt)?;
                let _enter = rt.enter();
                opentelemetry_otlp::$exporter::builder()
                    .with_tonic()
                    .build()
                    .map_err(|e| InitError::Exporter($signal, e.to_string()))
            }
            #[cfg(feature = "otlp-http")]
            Transport::HttpProtobuf | Transport::HttpJson => {
                use opentelemetry_otlp::WithExportConfig as _;
                opentelemetry_otlp::$exporter::builder()
                    .with_http()
                    .with_protocol(protocol(transport))
                    .build()
                    .map_err(|e| InitError::Exporter($signal, e.to_string()))
            }
            #[allow(unreachable_patterns)]
            other => Err(InitError::FeatureMissing(other)),
        }
    }};
}

/// The OTLP span exporter for `transport`.
#[cfg(any(feature = "otlp-grpc", feature = "otlp-http"))]
pub(crate) fn otlp_spans(
    transport: Transport,
    rt: &mut Option<RuntimeSlot>,
) -> Result<opentelemetry_otlp::SpanExporter, InitError> {
    otlp_exporter!(SpanExporter, "traces", transport, rt)
}

/// The OTLP log exporter for `transport`.
#[cfg(any(feature = "otlp-grpc", feature = "otlp-http"))]
pub(crate) fn otlp_logs(
    transport: Transport,
    rt: &mut Option<RuntimeSlot>,
) -> Result<opentelemetry_otlp::LogExporter, InitError> {
    otlp_exporter!(LogExporter, "logs", transport, rt)
}

/// The OTLP metric exporter for `transport`.
#[cfg(any(feature = "otlp-grpc", feature = "otlp-http"))]
pub(crate) fn otlp_metrics(
    transport: Transport,
    rt: &mut Option<RuntimeSlot>,
) -> Result<opentelemetry_otlp::MetricExporter, InitError> {
    otlp_exporter!(MetricExporter, "metrics", transport, rt)
}

#[cfg(feature = "otlp-http")]
fn protocol(t: Transport) -> opentelemetry_otlp::Protocol {
    match t {
        Transport::HttpJson => opentelemetry_otlp::Protocol::HttpJson,
        _ => opentelemetry_otlp::Protocol::HttpBinary,
    }
}

/// The runtime that drives gRPC exporters, created on first need. Dropping it
/// never blocks (and so never panics inside an async context).
#[cfg(feature = "otlp-grpc")]
pub(crate) struct RuntimeSlot(Option<tokio::runtime::Runtime>);

#[cfg(feature = "otlp-grpc")]
impl std::ops::Deref for RuntimeSlot {
    type Target = tokio::runtime::Runtime;
    fn deref(&self) -> &tokio::runtime::Runtime {
        match &self.0 {
            Some(rt) => rt,
            None => unreachable!("the runtime is only taken in drop"),
        }
    }
}

#[cfg(feature = "otlp-grpc")]
impl Drop for RuntimeSlot {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

#[cfg(feature = "otlp-grpc")]
impl std::fmt::Debug for RuntimeSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RuntimeSlot")
    }
}

/// No gRPC: no runtime.
#[cfg(not(feature = "otlp-grpc"))]
pub(crate) type RuntimeSlot = ();

#[cfg(feature = "otlp-grpc")]
fn runtime(slot: &mut Option<RuntimeSlot>) -> Result<&RuntimeSlot, InitError> {
    if slot.is_none() {
        *slot = Some(RuntimeSlot(Some(grpc_runtime()?)));
    }
    slot.as_ref()
        .ok_or_else(|| InitError::Runtime("no runtime".into()))
}

/// Counts the items handed to an exporting processor, per thread: the hot path
/// touches only its own thread's counter (a plain load and store on a line no
/// other thread writes), and the total is summed when asked. A thread's count is
/// folded into the shared total when the thread exits.
#[derive(Debug)]
pub struct HandedCounter {
    inner: Arc<HandedInner>,
}

#[derive(Debug, Default)]
struct HandedInner {
    id: usize,
    shards: std::sync::Mutex<Vec<Arc<AtomicU64>>>,
    retired: AtomicU64,
}

static NEXT_COUNTER_ID: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1);

/// This thread's shards; on thread exit their counts move to `retired`.
#[derive(Default)]
struct ThreadShards(Vec<(Arc<HandedInner>, Arc<AtomicU64>)>);

impl Drop for ThreadShards {
    fn drop(&mut self) {
        for (counter, shard) in self.0.drain(..) {
            let mut shards = counter.shards.lock().unwrap_or_else(|e| e.into_inner());
            shards.retain(|s| !Arc::ptr_eq(s, &shard));
            counter
                .retired
                .fetch_add(shard.load(Ordering::Relaxed), Ordering::Relaxed);
        }
    }
}

thread_local! {
    static SHARDS: std::cell::RefCell<ThreadShards> = std::cell::RefCell::new(ThreadShards::default());
}

impl Default for HandedCounter {
    fn default() -> Self {
        Self::new()
    }
}

impl HandedCounter {
    /// A new counter at zero.
    pub fn new() -> Self {
        HandedCounter {
            inner: Arc::new(HandedInner {
                id: NEXT_COUNTER_ID.fetch_add(1, Ordering::Relaxed),
                ..HandedInner::default()
            }),
        }
    }

    /// Adds one on this thread's shard.
    #[inline]
    pub fn add_one(&self) {
        let counted = SHARDS.try_with(|shards| {
            let Ok(mut shards) = shards.try_borrow_mut() else {
                return false;
            };
            if let Some((_, c)) = shards.0.iter().find(|(k, _)| k.id == self.inner.id) {
                // Only this thread writes this shard.
                c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
                return true;
            }
            let c = Arc::new(AtomicU64::new(1));
            self.inner
                .shards
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(Arc::clone(&c));
            shards.0.push((Arc::clone(&self.inner), c));
            true
        });
        if !matches!(counted, Ok(true)) {
            // Thread exiting or re-entered: count on the shared total.
            self.inner.retired.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The total so far.
    pub fn total(&self) -> u64 {
        let live: u64 = self
            .inner
            .shards
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum();
        live + self.inner.retired.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod transport_tests {
    use super::{default_transport, transport_from_lookup, Transport};
    use std::collections::HashMap;

    fn pick(vars: &[(&str, &str)]) -> (Transport, Vec<String>) {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        transport_from_lookup("TRACES", &|k| map.get(k).cloned())
    }

    #[test]
    fn the_signal_variable_wins_then_the_generic_one_then_the_default() {
        assert_eq!(pick(&[]).0, default_transport());
        assert_eq!(
            pick(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]).0,
            Transport::Grpc
        );
        assert_eq!(
            pick(&[
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
                ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json")
            ])
            .0,
            Transport::HttpJson
        );
        assert_eq!(
            pick(&[("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", "grpc")]).0,
            default_transport(),
            "another signal's variable does not apply"
        );
    }

    #[test]
    fn a_bad_signal_value_falls_through_to_the_generic_one_with_a_warning() {
        let (t, warnings) = pick(&[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "bogus"),
        ]);
        assert_eq!(t, Transport::Grpc);
        assert_eq!(
            warnings,
            ["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=\"bogus\" is not valid (expected grpc, http/protobuf or http/json); ignoring it"]
        );
    }

    #[test]
    fn the_default_is_a_compiled_in_transport() {
        let t = default_transport();
        if cfg!(feature = "otlp-http") {
            assert_eq!(t, Transport::HttpProtobuf);
        } else if cfg!(feature = "otlp-grpc") {
            assert_eq!(t, Transport::Grpc);
        }
    }
}

#[cfg(test)]
mod handed_tests {
    use super::HandedCounter;

    #[test]
    fn counters_are_independent_and_survive_their_threads() {
        let a = HandedCounter::default();
        let b = HandedCounter::default();
        a.add_one();
        b.add_one();
        b.add_one();
        assert_eq!((a.total(), b.total()), (1, 2));
        let b = std::sync::Arc::new(b);
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let b = std::sync::Arc::clone(&b);
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        b.add_one();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(b.total(), 8_002);
        assert_eq!(
            b.inner.shards.lock().unwrap().len(),
            1,
            "exited threads' shards are folded into the total"
        );
    }
}

/// A processor decorator counting what reaches the exporting processor, so that
/// items dropped by a full queue show up as handed − exported − failed.
#[derive(Debug)]
pub struct Handed<P> {
    inner: P,
    counter: Arc<HandedCounter>,
}

impl<P> Handed<P> {
    /// Wraps `inner`; counts go to `counter`.
    pub fn new(inner: P, counter: Arc<HandedCounter>) -> Self {
        Handed { inner, counter }
    }
}

impl<P: opentelemetry_sdk::trace::SpanProcessor> opentelemetry_sdk::trace::SpanProcessor
    for Handed<P>
{
    #[inline]
    fn on_start(&self, span: &mut opentelemetry_sdk::trace::Span, cx: &opentelemetry::Context) {
        self.inner.on_start(span, cx);
    }
    #[inline]
    fn on_end(&self, span: SpanData) {
        self.counter.add_one();
        self.inner.on_end(span);
    }
    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }
    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }
    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

impl<P: opentelemetry_sdk::logs::LogProcessor> opentelemetry_sdk::logs::LogProcessor for Handed<P> {
    #[inline]
    fn emit(
        &self,
        record: &mut opentelemetry_sdk::logs::SdkLogRecord,
        scope: &opentelemetry::InstrumentationScope,
    ) {
        self.counter.add_one();
        self.inner.emit(record, scope);
    }
    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }
    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }
    fn event_enabled(
        &self,
        level: opentelemetry::logs::Severity,
        target: &str,
        name: Option<&str>,
    ) -> bool {
        self.inner.event_enabled(level, target, name)
    }
    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// What happened to one signal's telemetry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Delivery {
    /// Handed to the exporting processor.
    pub handed: u64,
    /// Delivered by the exporter.
    pub exported: u64,
    /// In exports that failed.
    pub failed: u64,
}

impl Delivery {
    /// Dropped before export (full queue) or still queued.
    pub fn dropped_or_queued(&self) -> u64 {
        self.handed.saturating_sub(self.exported + self.failed)
    }
}
