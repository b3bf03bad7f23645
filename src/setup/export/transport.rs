//! Which OTLP transport each signal uses, and building its exporter (gRPC on a
//! runtime of our own, HTTP with protobuf or JSON bodies), with TLS from the
//! environment and, over HTTP, a [`Probe`] that sees what each attempt got.

use std::sync::Arc;

use super::observe::Probe;
use super::target::{self, Signal, Target};
use super::tls::{TlsFileError, TlsMaterial};

pub use crate::setup::config::Transport;

/// Why an OTLP exporter could not be built. `init()` reports it (once per
/// cause) and turns the signal off; it never stops the program.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// `opentelemetry-otlp` refused the configuration.
    #[cfg(any(feature = "otlp-grpc", feature = "otlp-http"))]
    #[error("could not build the OTLP {signal} exporter: {message}")]
    Exporter {
        /// The signal.
        signal: Signal,
        /// Its message, with a hint when we have one.
        message: String,
    },
    /// The transport asked for was compiled out.
    #[error("OTLP transport {0} is not compiled in: enable the otel-session feature `otlp-grpc` or `otlp-http`")]
    FeatureMissing(Transport),
    /// The gRPC exporter's runtime could not start.
    #[cfg(feature = "otlp-grpc")]
    #[error("could not start the runtime for gRPC export: {0}")]
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
    /// A TLS file is missing or unusable.
    #[error(transparent)]
    TlsFile(#[from] TlsFileError),
    /// The HTTP client (with its TLS settings) could not be built.
    #[cfg(feature = "otlp-http")]
    #[error("could not build the HTTP client: {0}")]
    HttpClient(String),
}

impl BuildError {
    /// The error message of an exporter that could not be built, with the
    /// variable behind a bad endpoint and a hint for the cases we recognise.
    #[cfg(any(feature = "otlp-grpc", feature = "otlp-http"))]
    fn exporter(target: &Target, error: impl std::fmt::Display) -> BuildError {
        let mut message = with_roots_hint(error.to_string());
        if let (true, Some(var), Some(value)) = (
            message.contains("endpoint"),
            target.endpoint_var(),
            target.configured(),
        ) {
            message.push_str(&format!(" (from {var}={value:?})"));
        }
        BuildError::Exporter {
            signal: target.signal,
            message,
        }
    }
}

/// Adds how to fix a machine without root certificates.
#[cfg(any(feature = "otlp-grpc", feature = "otlp-http"))]
fn with_roots_hint(message: String) -> String {
    let m = message.to_ascii_lowercase();
    if m.contains("no ca certificates") || m.contains("native") && m.contains("cert") {
        format!(
            "{message} (this system has no trusted root certificates: install its \
             ca-certificates package, or set OTEL_EXPORTER_OTLP_CERTIFICATE to the CA bundle)"
        )
    } else {
        message
    }
}

/// What building one signal's OTLP exporter needs.
#[derive(Debug)]
#[cfg_attr(
    not(any(feature = "otlp-grpc", feature = "otlp-http")),
    allow(dead_code)
)]
pub(crate) struct OtlpParts<'a> {
    /// Where it goes.
    pub target: &'a Target,
    /// The TLS files, checked.
    pub tls: &'a TlsMaterial,
    /// Sees what each HTTP attempt got.
    #[cfg_attr(not(feature = "otlp-http"), allow(dead_code))]
    pub probe: Arc<Probe>,
    /// HTTP clients already built, shared by the signals that can share one.
    #[cfg_attr(not(feature = "otlp-http"), allow(dead_code))]
    pub http_clients: &'a HttpClients,
}

/// The HTTP clients of one pipeline: signals with the same TLS settings and
/// timeout share one (one connection pool, one I/O thread instead of three).
#[derive(Default)]
pub(crate) struct HttpClients {
    #[cfg(feature = "otlp-http")]
    built: std::sync::Mutex<Vec<(HttpClientKey, reqwest::blocking::Client)>>,
}

impl std::fmt::Debug for HttpClients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HttpClients")
    }
}

/// What makes two HTTP clients differ.
#[cfg(feature = "otlp-http")]
#[derive(PartialEq, Eq)]
struct HttpClientKey {
    https: bool,
    timeout: std::time::Duration,
    ca_pem: Option<Vec<u8>>,
    identity: Option<(Vec<u8>, Vec<u8>)>,
}

/// The runtime that drives gRPC exporters.
#[cfg(feature = "otlp-grpc")]
pub(crate) fn grpc_runtime() -> Result<tokio::runtime::Runtime, BuildError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("otel-session-grpc")
        .enable_all()
        .build()
        .map_err(|e| BuildError::Runtime(e.to_string()))
}

/// The exporter type when no OTLP transport is compiled in: never built.
#[cfg(not(any(feature = "otlp-grpc", feature = "otlp-http")))]
#[derive(Debug)]
pub(crate) enum NoOtlp {}

#[cfg(not(any(feature = "otlp-grpc", feature = "otlp-http")))]
mod no_otlp {
    use std::time::Duration;

    use opentelemetry_sdk::error::OTelSdkResult;
    use opentelemetry_sdk::logs::{LogBatch, LogExporter};
    use opentelemetry_sdk::trace::{SpanData, SpanExporter};

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
        parts: &OtlpParts<'_>,
        _rt: &mut Option<RuntimeSlot>,
    ) -> Result<NoOtlp, BuildError> {
        Err(BuildError::FeatureMissing(parts.target.transport))
    }
    pub(crate) fn otlp_logs(
        parts: &OtlpParts<'_>,
        _rt: &mut Option<RuntimeSlot>,
    ) -> Result<NoOtlp, BuildError> {
        Err(BuildError::FeatureMissing(parts.target.transport))
    }
    pub(crate) fn otlp_metrics(
        parts: &OtlpParts<'_>,
        _rt: &mut Option<RuntimeSlot>,
    ) -> Result<NoOtlp, BuildError> {
        Err(BuildError::FeatureMissing(parts.target.transport))
    }
}
#[cfg(not(any(feature = "otlp-grpc", feature = "otlp-http")))]
pub(crate) use no_otlp::{otlp_logs, otlp_metrics, otlp_spans};

/// Builds one signal's OTLP exporter (`$exporter` is `SpanExporter`,
/// `LogExporter` or `MetricExporter`): gRPC inside our runtime, HTTP with the
/// protobuf or JSON body; both to the resolved URL with the resolved timeout and
/// TLS from the environment. Their own retries are off: [`Counted`](super::Counted)
/// retries (see `retry`).
#[cfg(any(feature = "otlp-grpc", feature = "otlp-http"))]
macro_rules! otlp_exporter {
    ($exporter:ident, $parts:expr, $rt:expr) => {{
        let parts: &OtlpParts<'_> = $parts;
        let target = parts.target;
        let _ = &$rt; // unused when only HTTP is compiled in
        match target.transport {
            #[cfg(feature = "otlp-grpc")]
            Transport::Grpc => {
                use opentelemetry_otlp::{WithExportConfig as _, WithTonicConfig as _};
                let rt = runtime($rt)?;
                let _enter = rt.enter();
                let mut builder = opentelemetry_otlp::$exporter::builder()
                    .with_tonic()
                    .with_endpoint(target.url.clone())
                    .with_timeout(target.timeout)
                    .with_retry_policy(opentelemetry_otlp::RetryPolicy::disabled());
                if let Some(tls) = grpc_tls(target, parts.tls) {
                    builder = builder.with_tls_config(tls);
                }
                builder.build().map_err(|e| BuildError::exporter(target, e))
            }
            #[cfg(feature = "otlp-http")]
            Transport::HttpProtobuf | Transport::HttpJson => {
                use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _};
                let client = http_client(
                    target,
                    parts.tls,
                    Arc::clone(&parts.probe),
                    parts.http_clients,
                )?;
                opentelemetry_otlp::$exporter::builder()
                    .with_http()
                    .with_protocol(protocol(target.transport))
                    .with_endpoint(target.url.clone())
                    .with_timeout(target.timeout)
                    .with_retry_policy(opentelemetry_otlp::RetryPolicy::disabled())
                    .with_http_client(client)
                    .build()
                    .map_err(|e| BuildError::exporter(target, e))
            }
            #[allow(unreachable_patterns)]
            other => Err(BuildError::FeatureMissing(other)),
        }
    }};
}

/// The OTLP span exporter for `parts`.
#[cfg(any(feature = "otlp-grpc", feature = "otlp-http"))]
pub(crate) fn otlp_spans(
    parts: &OtlpParts<'_>,
    rt: &mut Option<RuntimeSlot>,
) -> Result<opentelemetry_otlp::SpanExporter, BuildError> {
    otlp_exporter!(SpanExporter, parts, rt)
}

/// The OTLP log exporter for `parts`.
#[cfg(any(feature = "otlp-grpc", feature = "otlp-http"))]
pub(crate) fn otlp_logs(
    parts: &OtlpParts<'_>,
    rt: &mut Option<RuntimeSlot>,
) -> Result<opentelemetry_otlp::LogExporter, BuildError> {
    otlp_exporter!(LogExporter, parts, rt)
}

/// The OTLP metric exporter for `parts`.
#[cfg(any(feature = "otlp-grpc", feature = "otlp-http"))]
pub(crate) fn otlp_metrics(
    parts: &OtlpParts<'_>,
    rt: &mut Option<RuntimeSlot>,
) -> Result<opentelemetry_otlp::MetricExporter, BuildError> {
    otlp_exporter!(MetricExporter, parts, rt)
}

#[cfg(feature = "otlp-http")]
fn protocol(t: Transport) -> opentelemetry_otlp::Protocol {
    match t {
        Transport::HttpJson => opentelemetry_otlp::Protocol::HttpJson,
        _ => opentelemetry_otlp::Protocol::HttpBinary,
    }
}

/// The TLS settings of a gRPC exporter to an `https` endpoint: the CA bundle
/// when one is given, else the platform's roots; the client identity for mutual
/// TLS. `None` for plaintext endpoints (nothing is loaded for them).
#[cfg(feature = "otlp-grpc")]
fn grpc_tls(
    target: &Target,
    tls: &TlsMaterial,
) -> Option<opentelemetry_otlp::tonic_types::transport::ClientTlsConfig> {
    use opentelemetry_otlp::tonic_types::transport::{Certificate, ClientTlsConfig, Identity};
    if target.scheme() != Some("https") {
        return None;
    }
    let config = match &tls.ca_pem {
        Some(pem) => ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)),
        None => ClientTlsConfig::new().with_native_roots(),
    };
    Some(match &tls.identity {
        Some((cert, key)) => config.identity(Identity::from_pem(cert, key)),
        None => config,
    })
}

/// The blocking HTTP client of one signal (shared with the signals that have the
/// same settings), observed by `probe`: the export timeout, no redirects (a redirected POST would be resent as a GET), and for
/// `https` the CA bundle when one is given (else the platform's verifier) and the
/// client identity. It is built on a thread of its own, as `opentelemetry-otlp`
/// does, so that building it inside an async runtime cannot panic.
#[cfg(feature = "otlp-http")]
fn http_client(
    target: &Target,
    tls: &TlsMaterial,
    probe: Arc<Probe>,
    clients: &HttpClients,
) -> Result<super::observe::ObservedClient, BuildError> {
    if target.scheme().is_none() {
        return Err(BuildError::NoScheme {
            var: target
                .endpoint_var()
                .unwrap_or_else(|| target::ENV_ENDPOINT.to_string()),
            value: target.configured().unwrap_or(&target.url).to_string(),
        });
    }
    let https = target.scheme() == Some("https");
    let key = HttpClientKey {
        https,
        timeout: target.timeout,
        ca_pem: tls.ca_pem.clone().filter(|_| https),
        identity: tls.identity.clone().filter(|_| https),
    };
    let mut built = clients.built.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, client)) = built.iter().find(|(k, _)| *k == key) {
        return Ok(super::observe::ObservedClient::new(client.clone(), probe));
    }
    let timeout = target.timeout;
    let tls = tls.clone();
    let build = move || -> Result<reqwest::blocking::Client, reqwest::Error> {
        let mut builder = reqwest::blocking::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none());
        if !https {
            // No TLS is used: trust nothing rather than load the platform's roots.
            builder = builder.tls_certs_only([]);
        } else if let Some(pem) = &tls.ca_pem {
            builder = builder.tls_certs_only(reqwest::Certificate::from_pem_bundle(pem)?);
        }
        if let (true, Some((cert, key))) = (https, &tls.identity) {
            let mut pem = cert.clone();
            pem.push(b'\n');
            pem.extend_from_slice(key);
            builder = builder.identity(reqwest::Identity::from_pem(&pem)?);
        }
        builder.build()
    };
    let client = std::thread::Builder::new()
        .name("otel-session-http-client".into())
        .spawn(build)
        .map_err(|e| BuildError::HttpClient(format!("could not start a thread: {e}")))?
        .join()
        .map_err(|_| BuildError::HttpClient("building it panicked".into()))?
        .map_err(|e| BuildError::HttpClient(with_roots_hint(super::observe::error_chain(&e))))?;
    built.push((key, client.clone()));
    Ok(super::observe::ObservedClient::new(client, probe))
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
fn runtime(slot: &mut Option<RuntimeSlot>) -> Result<&RuntimeSlot, BuildError> {
    if slot.is_none() {
        *slot = Some(RuntimeSlot(Some(grpc_runtime()?)));
    }
    slot.as_ref()
        .ok_or_else(|| BuildError::Runtime("no runtime".into()))
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
/// [`default_transport`]. Bad values are returned as warnings naming what is used
/// instead.
pub fn transport_from_lookup(
    signal: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> (Transport, Vec<String>) {
    let (all, warnings) = target::transports(lookup, default_transport());
    let i = Signal::ALL
        .iter()
        .position(|s| s.env_part() == signal)
        .unwrap_or(0);
    let own = format!("OTEL_EXPORTER_OTLP_{signal}_PROTOCOL");
    let warnings = warnings
        .into_iter()
        .filter(|w| w.starts_with(&own) || w.starts_with(target::ENV_PROTOCOL))
        .collect();
    (all[i], warnings)
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
            [
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=\"bogus\" is not valid (expected grpc, \
              http/protobuf or http/json); using grpc from OTEL_EXPORTER_OTLP_PROTOCOL"
            ]
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
