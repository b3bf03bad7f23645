//! The exporter decorator every signal's exporter is wrapped in: it counts what
//! was delivered, retried and lost and reports failures. Around an OTLP
//! exporter it also runs each export on the export runtime, bounded by the
//! export timeout and cut at shutdown (see `retry`: the retries themselves are
//! `opentelemetry-otlp`'s), watches its attempts (see `observe`), and prints one
//! warning per cause of failure (naming the signal, protocol and URL, with the
//! diagnosis and likely fix of `diagnose`).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry::InstrumentationScope;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::logs::{LogBatch, LogExporter, SdkLogRecord};
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::metrics::Temporality;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use opentelemetry_sdk::Resource;

use super::delivery::DeliveryStats;
use super::failure::Failure;
use super::retry::Stop;
use super::target::Target;
use super::tls::TlsVars;
use super::ExportRuntime;

/// How many different export problems are printed at most; later ones are only
/// counted.
const MAX_REPORTED_CAUSES: usize = 16;

/// The causes of export failures already printed, shared by the signals of one
/// pipeline: one warning per cause, not per signal.
#[derive(Debug, Default)]
pub(crate) struct Reported(Mutex<Vec<String>>);

impl Reported {
    /// `true` the first time `key` is seen (and while fewer than 16 were).
    pub(crate) fn first(&self, key: &str) -> bool {
        let mut seen = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if seen.iter().any(|k| k == key) || seen.len() >= MAX_REPORTED_CAUSES {
            return false;
        }
        seen.push(key.to_string());
        true
    }
}

/// What one signal's OTLP exports run on and report to: where they go, the
/// TLS files in use, the causes already reported, the pipeline's shutdown, the
/// export runtime and the failed connections of its gRPC channel.
#[derive(Debug)]
pub(crate) struct ExportWatch {
    pub(crate) target: Target,
    pub(crate) tls: TlsVars,
    pub(crate) reported: Arc<Reported>,
    pub(crate) stop: Arc<Stop>,
    pub(crate) runtime: Arc<ExportRuntime>,
    /// The failed connections of a gRPC channel.
    #[cfg_attr(
        not(any(feature = "otlp-grpc", feature = "otlp-http")),
        allow(dead_code)
    )]
    pub(crate) connects: Arc<super::observe::Connects>,
    /// Whether a guard prints the delivery report at shutdown (not for the
    /// exporters of the `ExporterBuilder`).
    pub(crate) report: bool,
}

/// An exporter decorator that counts what was delivered and what failed and, for
/// OTLP exporters, runs, bounds and diagnoses every export.
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

impl DeliveryStats {
    /// Runs `export` of `n` `items` and records the outcome: as it is for a
    /// plain exporter, on the export runtime and bounded for an OTLP one.
    async fn run<F>(&self, items: &str, n: usize, export: F) -> OTelSdkResult
    where
        F: std::future::Future<Output = OTelSdkResult> + Send,
    {
        match self.export.get() {
            Some(watch) => self.run_otlp(watch, n, export).await,
            None => {
                let result = export.await;
                let n = n as u64;
                match &result {
                    Ok(()) => self.exported.fetch_add(n, Ordering::Relaxed),
                    Err(e) => {
                        crate::warn::once(
                            &self.warned,
                            format_args!(
                                "could not export {n} {items} ({e}); further failures are \
                                 counted, not printed (see the guard's delivery report at \
                                 shutdown)"
                            ),
                        );
                        self.failed.fetch_add(n, Ordering::Relaxed)
                    }
                };
                result
            }
        }
    }

    #[cfg(any(feature = "otlp-grpc", feature = "otlp-http"))]
    async fn run_otlp<F>(&self, watch: &ExportWatch, n: usize, export: F) -> OTelSdkResult
    where
        F: std::future::Future<Output = OTelSdkResult> + Send,
    {
        use super::observe::{Attempts, ATTEMPTS};
        use super::retry::{bounded, Ended};
        use opentelemetry_sdk::error::OTelSdkError;

        let attempts = Arc::new(Attempts::new(Arc::clone(&watch.connects)));
        let seen = Arc::clone(&attempts);
        let timeout = watch.target.timeout;
        let ended = watch
            .runtime
            .run(ATTEMPTS.scope(
                Arc::clone(&attempts),
                bounded(export, timeout, &watch.stop, move || seen.last_failure()),
            ))
            .await;
        let ended = ended.unwrap_or_else(|e| Ended::Done(Err(e)));
        let n64 = n as u64;
        let retried = attempts.made() > 1;
        if retried {
            self.retried.fetch_add(n64, Ordering::Relaxed);
        }
        let cut = "cut short at shutdown";
        let (failure, said, error) = match ended {
            Ended::Done(Ok(())) => {
                self.exported.fetch_add(n64, Ordering::Relaxed);
                return Ok(());
            }
            Ended::Done(Err(e)) => {
                let text = e.to_string();
                (Failure::of_text(&text), text, e)
            }
            Ended::TimedOut => {
                let e = OTelSdkError::Timeout(timeout);
                (Failure::TimedOut, e.to_string(), e)
            }
            Ended::Cut => {
                let e = OTelSdkError::InternalFailure(cut.to_string());
                (Failure::ShutDown, cut.to_string(), e)
            }
        };
        // What the last attempt got, when seen, says more than the exporter's
        // error (over HTTP only "network error"): its transport's error too.
        let (failure, shown) = match attempts.last() {
            Some((seen, transport)) => (seen, transport.unwrap_or(said)),
            None => (failure, said),
        };
        self.failed.fetch_add(n64, Ordering::Relaxed);
        if !retried && !failure.retryable() {
            self.permanent.fetch_add(n64, Ordering::Relaxed);
        }
        watch.warn(n, &shown, &failure);
        Err(error)
    }

    #[cfg(not(any(feature = "otlp-grpc", feature = "otlp-http")))]
    async fn run_otlp<F>(&self, watch: &ExportWatch, _n: usize, _export: F) -> OTelSdkResult {
        // No OTLP exporter is ever built without a transport.
        match *watch.runtime {}
    }
}

impl ExportWatch {
    /// Prints the warning for `failure` of an export of `n` items (`error`: what
    /// the transport or exporter said), unless its cause was reported.
    #[cfg_attr(
        not(any(feature = "otlp-grpc", feature = "otlp-http")),
        allow(dead_code)
    )]
    fn warn(&self, n: usize, error: &str, failure: &Failure) {
        use super::diagnose::{cause_key, diagnose, export_warning};
        // The text is built only for a cause not printed yet.
        if !self.reported.first(&cause_key(&self.target, failure)) {
            return;
        }
        let diagnosis = diagnose(&self.target, failure, &self.tls);
        let error = super::target::redact_text(error);
        let text = export_warning(&self.target, n, &error, &diagnosis, self.report);
        crate::warn::stderr(format_args!("{text}"));
    }
}

impl<E: SpanExporter> SpanExporter for Counted<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len();
        let result = self.stats.run("spans", n, self.inner.export(batch)).await;
        self.stats.check_drops("span");
        result
    }
    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.stats.stop_at(timeout);
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
        let records: Vec<(&SdkLogRecord, &InstrumentationScope)> = batch.iter().collect();
        let n = records.len();
        let export = self.inner.export(LogBatch::new(&records));
        let result = self.stats.run("log records", n, export).await;
        self.stats.check_drops("log");
        result
    }
    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.stats.stop_at(timeout);
        self.inner.shutdown_with_timeout(timeout)
    }
    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

impl<E: PushMetricExporter> PushMetricExporter for Counted<E> {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        let n = data_points(metrics);
        self.stats
            .run("metric points", n, self.inner.export(metrics))
            .await
    }
    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }
    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.stats.stop_at(timeout);
        self.inner.shutdown_with_timeout(timeout)
    }
    fn temporality(&self) -> Temporality {
        self.inner.temporality()
    }
}

impl DeliveryStats {
    /// The exporter shuts down within `timeout`: exports still under way are
    /// cut by then.
    fn stop_at(&self, timeout: Duration) {
        if let (Some(watch), Some(deadline)) = (
            self.export.get(),
            std::time::Instant::now().checked_add(timeout),
        ) {
            watch.stop.stop_at(deadline);
        }
    }
}

/// The number of data points in an export.
fn data_points(metrics: &ResourceMetrics) -> usize {
    fn count<T>(data: &MetricData<T>) -> usize {
        match data {
            MetricData::Gauge(g) => g.data_points().count(),
            MetricData::Sum(s) => s.data_points().count(),
            MetricData::Histogram(h) => h.data_points().count(),
            MetricData::ExponentialHistogram(e) => e.data_points().count(),
        }
    }
    metrics
        .scope_metrics()
        .flat_map(|sm| sm.metrics())
        .map(|m| match m.data() {
            AggregatedMetrics::F64(d) => count(d),
            AggregatedMetrics::U64(d) => count(d),
            AggregatedMetrics::I64(d) => count(d),
        })
        .sum()
}
