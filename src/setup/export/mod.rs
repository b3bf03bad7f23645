//! The export pipeline `init()` builds: for each signal, an exporter chosen by
//! `OTEL_{TRACES,LOGS,METRICS}_EXPORTER` (OTLP, console or none) and, for OTLP, a
//! transport chosen by `OTEL_EXPORTER_OTLP_{SIGNAL_}PROTOCOL` (`grpc`,
//! `http/protobuf` — the default — or `http/json`). Endpoint, headers, timeout and
//! compression are read by `opentelemetry-otlp` itself.
//!
//! Every exporter is wrapped in a [`Counted`] decorator so that telemetry that
//! could not be delivered is counted and reported once on stderr, never silently.
//!
//! Every OTLP exporter, gRPC and HTTP, exports on one small tokio runtime of
//! ours (one worker thread) whose threads suppress the export stack's own
//! telemetry; it works from plain `main`, from `#[tokio::main]` (current-thread
//! too), and shutting down never waits on the program's own runtime (`runtime`).
//!
//! [`ExporterBuilder`] builds the same OTLP exporters from the environment for
//! pipelines you assemble yourself, and [`span_batch_config`] /
//! [`log_batch_config`] the batch settings `init()` uses.

mod batch;
mod builder;
mod delivery;
#[cfg(any(feature = "otlp-grpc", feature = "otlp-http"))]
mod runtime;
mod transport;

pub use crate::setup::error::ExportError;
pub(crate) use batch::batch_settings_from_env;
pub use batch::{
    log_batch_config, span_batch_config, BatchSettings, DEFAULT_EXPORT_BATCH_SIZE,
    DEFAULT_LOG_QUEUE_SIZE, DEFAULT_SPAN_QUEUE_SIZE, MAX_EXPORT_BATCH_SIZE, MAX_QUEUE_SIZE,
};
#[cfg(any(feature = "otlp-grpc", feature = "otlp-http"))]
pub use builder::{ExporterBuilder, OtlpLogExporter, OtlpMetricExporter, OtlpSpanExporter};
pub use delivery::{Counted, Delivery, DeliveryStats, Handed, HandedCounter};
#[cfg(any(feature = "otlp-grpc", feature = "otlp-http"))]
pub(crate) use runtime::ExportRuntime;
#[cfg(any(feature = "otlp-grpc", feature = "otlp-http"))]
pub use runtime::OtlpExporter;
pub use transport::{default_transport, transport_from_lookup, Transport};
pub(crate) use transport::{otlp_logs, otlp_metrics, otlp_spans, transport_from_env};

/// No OTLP transport compiled in: no export runtime.
#[cfg(not(any(feature = "otlp-grpc", feature = "otlp-http")))]
#[derive(Debug)]
pub(crate) enum ExportRuntime {}

#[cfg(not(any(feature = "otlp-grpc", feature = "otlp-http")))]
impl ExportRuntime {
    pub(crate) fn stop(&self) {
        match *self {}
    }
}
