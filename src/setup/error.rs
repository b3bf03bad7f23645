//! Errors of this crate, as typed enums.
//!
//! What is an error and what is a warning: `init()` returns an error only when it
//! installs nothing at all; everything that leaves the program running with less
//! telemetry (a bad variable, an unreadable TLS file, an exporter that cannot be
//! built, a transport that is compiled out, a queue size clamped) is one warning
//! on stderr naming what was tried and how to fix it (one per cause, listing the
//! signals it turned off), and `init()` goes on. The
//! [`ExporterBuilder`](crate::export::ExporterBuilder) returns the same causes as
//! an [`ExportError`] instead.

use crate::setup::config::Transport;
use crate::setup::export::TlsFileError;

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

/// Why an OTLP exporter could not be built: returned by the
/// [`ExporterBuilder`](crate::export::ExporterBuilder); `init()` prints it as a
/// warning (once per cause) and turns the signal off. Variants exist only where
/// they can happen (the transport they concern is compiled in).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// `opentelemetry-otlp` refused the configuration (for example an endpoint
    /// that is not a URL), or the client panicked while being built.
    #[cfg(any(feature = "otlp-grpc", feature = "otlp-http"))]
    #[error("could not build the OTLP {signal} exporter: {message}")]
    Exporter {
        /// The signal: `traces`, `logs` or `metrics`.
        signal: &'static str,
        /// Its message, with the variable behind a bad endpoint and a hint when
        /// we have one.
        message: String,
    },
    /// The transport asked for was compiled out.
    #[error("OTLP transport {0} is not compiled in: enable the otel-session feature `otlp-grpc` or `otlp-http`")]
    FeatureMissing(Transport),
    /// The export runtime (one small tokio runtime) could not start.
    #[cfg(any(feature = "otlp-grpc", feature = "otlp-http"))]
    #[error("could not start the runtime for OTLP export: {0}")]
    Runtime(String),
    /// An OTLP/HTTP endpoint without `http://` or `https://`.
    #[cfg(feature = "otlp-http")]
    #[error("{var}={value:?} has no scheme: write http://{value} (or https://{value} for TLS)")]
    NoScheme {
        /// The variable.
        var: String,
        /// Its value.
        value: String,
    },
    /// A TLS file (`OTEL_EXPORTER_OTLP_{SIGNAL_}CERTIFICATE`, `…CLIENT_CERTIFICATE`,
    /// `…CLIENT_KEY`) is missing or unusable.
    #[error(transparent)]
    TlsFile(#[from] TlsFileError),
    /// The HTTP client (with its TLS settings) could not be built.
    #[cfg(feature = "otlp-http")]
    #[error("could not build the HTTP client: {0}")]
    HttpClient(String),
}
