//! [`ExporterBuilder`]: the OTLP exporters `init()` builds, for pipelines you
//! assemble yourself (the standalone enricher with `with_batch_exporter`, the
//! wrapped form with your own batch settings, a second exporter for lifecycle
//! output) without building duplicate exporters by hand.

use std::sync::Arc;

use super::counted::Counted;
use super::delivery::DeliveryStats;
use super::plan::{BuildFn, OtlpPlan};
use super::target::Signal;
use super::transport::{otlp_logs, otlp_metrics, otlp_spans};
use crate::setup::error::ExportError;

/// The OTLP span exporter `init()` builds: `opentelemetry-otlp`'s, with our
/// retry policy, wrapped in [`Counted`] (the export runtime, the timeout,
/// diagnostics and delivery counts).
pub type OtlpSpanExporter = Counted<opentelemetry_otlp::SpanExporter>;
/// The OTLP log exporter `init()` builds (see [`OtlpSpanExporter`]).
pub type OtlpLogExporter = Counted<opentelemetry_otlp::LogExporter>;
/// The OTLP metric exporter `init()` builds (see [`OtlpSpanExporter`]).
pub type OtlpMetricExporter = Counted<opentelemetry_otlp::MetricExporter>;

/// Builds OTLP exporters from the environment exactly as `init()` does, with the
/// same code:
///
/// - the transport of each signal from `OTEL_EXPORTER_OTLP_{SIGNAL_}PROTOCOL`,
///   the URL, headers, timeout and compression from the standard variables, TLS
///   from `OTEL_EXPORTER_OTLP_{SIGNAL_}CERTIFICATE`, `…CLIENT_CERTIFICATE` and
///   `…CLIENT_KEY` (configuration problems are printed once, when the builder is
///   made; an unusable TLS file is the signal's [`ExportError`]);
/// - every export runs on the export runtime (one small tokio runtime, shared by
///   the exporters of one builder and alive as long as any of them), with the
///   export stack's own telemetry suppressed; a worker of your multi-thread
///   runtime that waits for an export (a simple processor) hands its other
///   tasks on meanwhile; HTTP exporters with the same TLS settings and timeout
///   share one client;
/// - transient failures (HTTP 429, 502, 503, 504, gRPC `UNAVAILABLE`,
///   `RESOURCE_EXHAUSTED` with `RetryInfo`, a refused connection) are retried by
///   `opentelemetry-otlp` with exponential backoff and jitter, honouring
///   `Retry-After` and `RetryInfo`, within the export timeout (which also ends
///   an attempt under way); permanent ones are not;
/// - each exporter is wrapped in [`Counted`]: a failure is one warning per
///   cause on stderr naming the signal, protocol and URL with the likely fix.
///
/// Unlike `init()`'s, these exporters have no guard: an export under way when
/// your provider shuts down is bounded by the export timeout only (the SDK
/// tells an exporter about the shutdown after the last export), and there is
/// no delivery report at exit.
///
/// Call a method twice for two exporters of the same signal (for example one for
/// your pipeline and one for session lifecycle output).
///
/// ```no_run
/// use opentelemetry_sdk::trace::{BatchSpanProcessor, SdkTracerProvider};
/// use otel_session::export::ExporterBuilder;
/// use otel_session::SessionManager;
///
/// let sessions = SessionManager::builder().build();
/// let mut exporters = ExporterBuilder::from_env();
/// let tracer_provider = SdkTracerProvider::builder()
///     .with_span_processor(sessions.span_processor(
///         BatchSpanProcessor::builder(exporters.span_exporter()?)
///             .with_batch_config(otel_session::export::span_batch_config())
///             .build(),
///     ))
///     .build();
/// # Ok::<(), otel_session::export::ExportError>(())
/// ```
#[derive(Debug)]
pub struct ExporterBuilder {
    plan: OtlpPlan,
}

impl ExporterBuilder {
    /// A builder for the three signals, configured from the environment (its
    /// configuration warnings are printed now, once each).
    pub fn from_env() -> Self {
        ExporterBuilder {
            plan: OtlpPlan::from_env([true; 3]).without_delivery_report(),
        }
    }

    fn build<E>(&mut self, signal: Signal, build: BuildFn<E>) -> Result<Counted<E>, ExportError> {
        let stats = Arc::new(DeliveryStats::default());
        match self.plan.counted(signal, stats, build) {
            Some(built) => built,
            // Every signal is planned in `from_env`.
            None => unreachable!("{signal} is planned"),
        }
    }

    /// An OTLP span exporter (`OTEL_EXPORTER_OTLP_TRACES_*`, then the generic
    /// variables).
    pub fn span_exporter(&mut self) -> Result<OtlpSpanExporter, ExportError> {
        self.build(Signal::Traces, otlp_spans)
    }

    /// An OTLP log exporter (`OTEL_EXPORTER_OTLP_LOGS_*`, then the generic
    /// variables).
    pub fn log_exporter(&mut self) -> Result<OtlpLogExporter, ExportError> {
        self.build(Signal::Logs, otlp_logs)
    }

    /// An OTLP metric exporter (`OTEL_EXPORTER_OTLP_METRICS_*`, then the generic
    /// variables).
    pub fn metric_exporter(&mut self) -> Result<OtlpMetricExporter, ExportError> {
        self.build(Signal::Metrics, otlp_metrics)
    }
}
