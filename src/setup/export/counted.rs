//! The exporter decorator every signal's exporter is wrapped in: it counts what
//! was delivered and what failed and, for OTLP exporters, retries transient
//! failures (see `retry`), diagnoses a failure and prints one warning per cause
//! (naming the signal, protocol and URL, with the likely fix).

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry::InstrumentationScope;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::logs::{LogBatch, LogExporter, SdkLogRecord};
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::metrics::Temporality;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use opentelemetry_sdk::Resource;

use super::delivery::DeliveryStats;
use super::diagnose::{cause_key, diagnose, export_warning, Failure};
use super::observe::{Outcome, Probe};
use super::retry::{self, Decision, Stop};
use super::target::{redact_text, Target};
use super::tls::TlsVars;

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

/// What watches one signal's OTLP exports: where they go, the probe on their
/// HTTP attempts, the TLS files in use, the causes already reported and the
/// pipeline's shutdown.
#[derive(Debug)]
pub(crate) struct ExportWatch {
    pub(crate) target: Target,
    pub(crate) probe: Arc<Probe>,
    pub(crate) tls: TlsVars,
    pub(crate) reported: Arc<Reported>,
    pub(crate) stop: Arc<Stop>,
    /// Whether a guard prints the delivery report at shutdown (not for the
    /// exporters of the `ExporterBuilder`).
    pub(crate) report: bool,
}

/// An exporter decorator that counts what was delivered and what failed and, for
/// OTLP exporters, retries and diagnoses failures.
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

/// At shutdown an attempt ends this long before the deadline.
const ATTEMPT_MARGIN: Duration = Duration::from_millis(100);

impl DeliveryStats {
    /// Runs an export of `n` `items` (`attempt` makes one attempt), retrying
    /// transient failures when exports are watched, and records the outcome.
    async fn run<F, Fut>(&self, items: &str, n: usize, mut attempt: F) -> OTelSdkResult
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = OTelSdkResult>,
    {
        let n64 = n as u64;
        let Some(watch) = self.export.get() else {
            let result = attempt().await;
            match &result {
                Ok(()) => {
                    self.exported.fetch_add(n64, Ordering::Relaxed);
                }
                Err(e) => {
                    self.failed.fetch_add(n64, Ordering::Relaxed);
                    crate::warn::once(
                        &self.warned,
                        format_args!(
                            "could not export {n} {items} ({e}); further failures are counted, \
                             not printed (see the guard's delivery report at shutdown)"
                        ),
                    );
                }
            }
            return result;
        };
        let started = Instant::now();
        // The export timeout bounds the export with its retries: each attempt
        // gets what is left of it, and no more than the shutdown leaves.
        let timeout = watch.target.timeout;
        let deadline = started.checked_add(timeout);
        let mut retries = 0u32;
        loop {
            // At shutdown, the attempt ends a moment before the deadline, so
            // that its warning is printed before the guard's report.
            let shutdown = watch
                .stop
                .left()
                .and_then(|l| Instant::now().checked_add(l.saturating_sub(ATTEMPT_MARGIN)));
            let attempt_deadline = match (deadline, shutdown) {
                (Some(d), Some(s)) => Some(d.min(s)),
                (d, s) => d.or(s),
            };
            watch
                .probe
                .begin_attempt(attempt_deadline.map(|d| (d, timeout)));
            let result = attempt().await;
            let error = match &result {
                Ok(()) => {
                    self.exported.fetch_add(n64, Ordering::Relaxed);
                    if retries > 0 {
                        self.retried.fetch_add(n64, Ordering::Relaxed);
                    }
                    return result;
                }
                Err(e) => e.to_string(),
            };
            let (last, retry_after) = watch.probe.last().unzip();
            let failure = Failure::classify(&error, last.as_ref());
            let decision = retry::decide(
                &failure,
                retries,
                started.elapsed(),
                watch.target.timeout,
                retry_after.flatten(),
                retry::jitter(),
                watch.stop.left(),
            );
            if let Decision::RetryAfter(wait) = decision {
                if watch.stop.sleep(wait, &failure) {
                    retries += 1;
                    continue;
                }
            }
            self.failed.fetch_add(n64, Ordering::Relaxed);
            if retries > 0 {
                self.retried.fetch_add(n64, Ordering::Relaxed);
            }
            if decision == Decision::Permanent {
                self.permanent.fetch_add(n64, Ordering::Relaxed);
            }
            self.warn(watch, n, &error, last.as_ref(), &failure);
            return result;
        }
    }

    fn warn(
        &self,
        watch: &ExportWatch,
        n: usize,
        error: &str,
        last: Option<&Outcome>,
        failure: &Failure,
    ) {
        // The text is built only for a cause not printed yet.
        if !watch.reported.first(&cause_key(&watch.target, failure)) {
            return;
        }
        let diagnosis = diagnose(&watch.target, failure, &watch.tls);
        // Over HTTP the exporter only says "network error": show the transport's.
        let shown = match last {
            Some(Outcome::Error(transport)) => transport.as_str(),
            _ => error,
        };
        let text = export_warning(
            &watch.target,
            n,
            &redact_text(shown),
            &diagnosis,
            watch.report,
        );
        crate::warn::stderr(format_args!("{text}"));
    }
}

impl<E: SpanExporter> SpanExporter for Counted<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len();
        // Each attempt takes its own copy (as opentelemetry-otlp's retries do).
        let result = self
            .stats
            .run("spans", n, || self.inner.export(batch.clone()))
            .await;
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
        let records: Vec<(&SdkLogRecord, &InstrumentationScope)> = batch.iter().collect();
        let n = records.len();
        let result = self
            .stats
            .run("log records", n, || {
                self.inner.export(LogBatch::new(&records))
            })
            .await;
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

impl<E: PushMetricExporter> PushMetricExporter for Counted<E> {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        let n = data_points(metrics);
        self.stats
            .run("metric points", n, || self.inner.export(metrics))
            .await
    }
    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }
    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }
    fn temporality(&self) -> Temporality {
        self.inner.temporality()
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
