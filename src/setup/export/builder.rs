//! [`ExporterBuilder`]: the OTLP exporters `init()` builds, for pipelines you
//! assemble yourself (the standalone enricher with `with_batch_exporter`, the
//! wrapped form with your own batch settings, a second exporter for lifecycle
//! output) without building duplicate exporters by hand.
#![cfg(any(feature = "otlp-grpc", feature = "otlp-http"))]

use std::sync::Arc;

use super::runtime::{ExportRuntime, OtlpExporter};
use super::transport::{otlp_logs, otlp_metrics, otlp_spans, transport_from_env};
use crate::setup::error::ExportError;

/// The OTLP span exporter `init()` builds.
pub type OtlpSpanExporter = OtlpExporter<opentelemetry_otlp::SpanExporter>;
/// The OTLP log exporter `init()` builds.
pub type OtlpLogExporter = OtlpExporter<opentelemetry_otlp::LogExporter>;
/// The OTLP metric exporter `init()` builds.
pub type OtlpMetricExporter = OtlpExporter<opentelemetry_otlp::MetricExporter>;

/// Builds OTLP exporters from the environment exactly as `init()` does: the
/// transport of each signal from `OTEL_EXPORTER_OTLP_{SIGNAL_}PROTOCOL` (a bad
/// value is warned about and the next source used), endpoint, headers, timeout and
/// compression from the standard variables, and exports run on the export runtime
/// with the export stack's own telemetry suppressed.
///
/// The exporters of one builder share one runtime (one thread), which lives as
/// long as any of them. Call a method twice for two exporters of the same signal
/// (for example one for your pipeline and one for session lifecycle output).
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
#[derive(Debug, Default)]
pub struct ExporterBuilder {
    runtime: Option<Arc<ExportRuntime>>,
}

impl ExporterBuilder {
    /// A builder reading the environment when each exporter is built.
    pub fn from_env() -> Self {
        Self::default()
    }

    /// An OTLP span exporter (`OTEL_EXPORTER_OTLP_TRACES_*`, then the generic
    /// variables).
    pub fn span_exporter(&mut self) -> Result<OtlpSpanExporter, ExportError> {
        otlp_spans(transport_from_env("TRACES"), &mut self.runtime)
    }

    /// An OTLP log exporter (`OTEL_EXPORTER_OTLP_LOGS_*`, then the generic
    /// variables).
    pub fn log_exporter(&mut self) -> Result<OtlpLogExporter, ExportError> {
        otlp_logs(transport_from_env("LOGS"), &mut self.runtime)
    }

    /// An OTLP metric exporter (`OTEL_EXPORTER_OTLP_METRICS_*`, then the generic
    /// variables).
    pub fn metric_exporter(&mut self) -> Result<OtlpMetricExporter, ExportError> {
        otlp_metrics(transport_from_env("METRICS"), &mut self.runtime)
    }
}
