//! The export pipeline `init()` builds: for each signal, an exporter chosen by
//! `OTEL_{TRACES,LOGS,METRICS}_EXPORTER` (OTLP, console or none) and, for OTLP, a
//! transport chosen by `OTEL_EXPORTER_OTLP_{SIGNAL_}PROTOCOL` (`grpc`,
//! `http/protobuf` — the default — or `http/json`).
//!
//! - `target`: where each signal goes (URL, timeout) and its transport;
//! - `tls`: CA bundle and client identity from the environment;
//! - `transport`: building `opentelemetry-otlp`'s exporters (TLS, the shared
//!   HTTP clients, the retry policy, what reports each attempt);
//! - `runtime`: the export runtime every OTLP export runs on, suppressed;
//! - `retry`: the retry policy, and the bounds around it: the export timeout
//!   and the cut at shutdown;
//! - `observe`: how many attempts an export made and what they got (every
//!   HTTP attempt; a gRPC channel's failed connections);
//! - `failure`: what went wrong, classified (typed where the libraries allow);
//! - `counted`: the decorator that runs, bounds, counts and diagnoses every
//!   export;
//! - `diagnose`: why an export failed and the likely fix, one warning per cause;
//! - `check`: settings checked before anything is sent (headers, TLS on http);
//! - `plan`: what is resolved, warned about and built, once per cause;
//! - `builder`: [`ExporterBuilder`], the plan for pipelines you assemble;
//! - `batch`: the bounded batch settings (`OTEL_BSP_*`, `OTEL_BLRP_*`);
//! - `delivery`: counts of what was delivered, retried and lost.
//!
//! Retries are `opentelemetry-otlp`'s (its `RetryPolicy`: exponential backoff
//! with jitter, `Retry-After` and gRPC `RetryInfo` honoured, within the export
//! timeout). Every exporter is wrapped in a [`Counted`] decorator: an OTLP
//! export is bounded by the export timeout and cut at shutdown, and telemetry
//! that could not be delivered is counted and reported, never silently.
//!
//! Every OTLP exporter, gRPC and HTTP, exports on one small tokio runtime of
//! ours (one worker thread) whose threads suppress the export stack's own
//! telemetry; it works from plain `main`, from `#[tokio::main]` (current-thread
//! too), and shutting down never waits on the program's own runtime.
//!
//! [`ExporterBuilder`] builds the same OTLP exporters (TLS, retries, diagnostics,
//! the runtime) from the environment for pipelines you assemble yourself, and
//! [`span_batch_config`] / [`log_batch_config`] the batch settings `init()` uses.
//!
//! May use: `config` (and, built without OTLP, `console`'s exporter types);
//! used by `init` and `guard`.

mod batch;
#[cfg(any(feature = "otlp-grpc", feature = "otlp-http"))]
mod builder;
pub(crate) mod check;
mod counted;
mod delivery;
pub(crate) mod diagnose;
mod failure;
pub(crate) mod observe;
mod plan;
pub(crate) mod retry;
#[cfg(any(feature = "otlp-grpc", feature = "otlp-http"))]
mod runtime;
pub(crate) mod target;
pub(crate) mod tls;
mod transport;

pub use crate::setup::error::ExportError;
pub(crate) use batch::batch_settings_from_env;
pub use batch::{
    log_batch_config, span_batch_config, BatchSettings, DEFAULT_EXPORT_BATCH_SIZE,
    DEFAULT_LOG_QUEUE_SIZE, DEFAULT_SPAN_QUEUE_SIZE, MAX_EXPORT_BATCH_SIZE, MAX_QUEUE_SIZE,
};
#[cfg(any(feature = "otlp-grpc", feature = "otlp-http"))]
pub use builder::{ExporterBuilder, OtlpLogExporter, OtlpMetricExporter, OtlpSpanExporter};
pub use counted::Counted;
pub use delivery::{Delivery, DeliveryStats, Handed, HandedCounter};
pub(crate) use plan::OtlpPlan;
#[cfg(any(feature = "otlp-grpc", feature = "otlp-http"))]
pub(crate) use runtime::ExportRuntime;
pub(crate) use target::Signal;
pub use tls::TlsFileError;
pub use transport::{default_transport, transport_from_lookup, Transport};
pub(crate) use transport::{otlp_logs, otlp_metrics, otlp_spans};

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

/// A variable lookup over `vars`, as the environment would answer (tests).
#[cfg(test)]
fn test_env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + Clone {
    let map: std::collections::HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| map.get(k).cloned()
}
