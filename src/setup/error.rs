//! Errors of this crate, as typed enums.

use crate::setup::config::ConfigError;
use crate::setup::config::Transport;

/// Why `init()` could not set up the pipeline. Nothing was installed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InitError {
    /// A configuration value was invalid (only from builders that fail fast).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// An OTLP exporter could not be built.
    #[error("could not build the OTLP {0} exporter: {1}")]
    Exporter(&'static str, String),
    /// The transport asked for was compiled out.
    #[error("OTLP transport {0} is not compiled in: enable the otel-session feature `otlp-grpc` or `otlp-http`")]
    FeatureMissing(Transport),
    /// The gRPC exporter's runtime could not start.
    #[error("could not start the runtime for gRPC export: {0}")]
    Runtime(String),
}

/// Why an OTLP exporter could not be built (`init()` turns each into a warning
/// and that signal off).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// `opentelemetry-otlp` refused the configuration (for example an endpoint
    /// that is not a URL).
    #[error("could not build the OTLP {0} exporter: {1}")]
    Exporter(&'static str, String),
    /// The transport asked for was compiled out.
    #[error("OTLP transport {0} is not compiled in: enable the otel-session feature `otlp-grpc` or `otlp-http`")]
    FeatureMissing(Transport),
    /// The export runtime (one small tokio runtime) could not start.
    #[error("could not start the runtime for OTLP export: {0}")]
    Runtime(String),
}
