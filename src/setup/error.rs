//! Errors of this crate, as typed enums.
//!
//! What is an error and what is a warning: `init()` returns an error only when it
//! installs nothing at all; everything that leaves the program running with less
//! telemetry (a bad variable, an exporter that cannot be built, a transport that
//! is compiled out, a queue size clamped) is one warning on stderr naming what was
//! tried and how to fix it, and `init()` goes on.

use crate::setup::config::Transport;

/// Why `init()` installed nothing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InitError {
    /// The guard of an earlier `init()` is still alive: a second pipeline would
    /// replace the global providers and session manager under it. Drop (or
    /// [`shutdown`](crate::Guard::shutdown)) the first guard before calling
    /// `init()` again.
    #[error(
        "otel-session is already initialised: the guard of an earlier init() is still alive; \
         drop it (or call Guard::shutdown) before calling init() again"
    )]
    AlreadyInitialized,
}

/// Why an OTLP exporter could not be built (from the
/// [`ExporterBuilder`](crate::export::ExporterBuilder); `init()` turns each into a
/// warning and that signal off).
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
