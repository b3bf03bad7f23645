//! Which OTLP transport each signal uses, and building its exporter: gRPC or HTTP
//! (protobuf or JSON bodies), to the resolved URL with the resolved timeout, TLS
//! from the environment and our retry policy (see `retry`); over HTTP through an
//! async `reqwest` client of ours that reports each attempt (see `observe`),
//! over gRPC on a tonic channel of ours whose connector reports each failed
//! connection, with an interceptor that counts the attempts.

use std::sync::Arc;

use super::target::{self, Signal, Target};
use super::tls::TlsMaterial;
use super::ExportRuntime;
use crate::setup::error::ExportError;

pub use crate::setup::config::Transport;

#[cfg(any(feature = "otlp-grpc", feature = "otlp-http"))]
impl ExportError {
    /// The error of an exporter that could not be built, with the variable
    /// behind a bad endpoint and a hint for the cases we recognise.
    fn exporter(target: &Target, error: impl std::fmt::Display) -> ExportError {
        let mut message = with_roots_hint(error.to_string());
        if let (true, Some(var), Some(value)) = (
            message.contains("endpoint"),
            target.endpoint_var(),
            target.configured(),
        ) {
            message.push_str(&format!(" (from {var}={value:?})"));
        }
        ExportError::Exporter {
            signal: target.signal.name(),
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
    /// Sees the failed connections of a gRPC channel.
    #[cfg_attr(not(feature = "otlp-grpc"), allow(dead_code))]
    pub connects: Arc<super::observe::Connects>,
    /// HTTP clients already built, shared by the signals that can share one.
    #[cfg_attr(not(feature = "otlp-http"), allow(dead_code))]
    pub http_clients: &'a HttpClients,
}

/// The HTTP clients of one pipeline: signals with the same TLS settings and
/// timeout share one (one connection pool instead of three).
#[derive(Default)]
pub(crate) struct HttpClients {
    #[cfg(feature = "otlp-http")]
    built: std::sync::Mutex<Vec<(HttpClientKey, reqwest::Client)>>,
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

/// Without an OTLP transport no OTLP exporter is ever built (the console's
/// types name what is never there).
#[cfg(not(any(feature = "otlp-grpc", feature = "otlp-http")))]
mod no_otlp {
    use super::*;
    use crate::setup::console::{ConsoleLogExporter, ConsoleMetricExporter, ConsoleSpanExporter};

    type Built<E> = Result<E, ExportError>;
    type Rt<'a> = &'a mut Option<Arc<ExportRuntime>>;

    pub(crate) fn otlp_spans(parts: &OtlpParts<'_>, _: Rt<'_>) -> Built<ConsoleSpanExporter> {
        Err(ExportError::FeatureMissing(parts.target.transport))
    }
    pub(crate) fn otlp_logs(parts: &OtlpParts<'_>, _: Rt<'_>) -> Built<ConsoleLogExporter> {
        Err(ExportError::FeatureMissing(parts.target.transport))
    }
    pub(crate) fn otlp_metrics(parts: &OtlpParts<'_>, _: Rt<'_>) -> Built<ConsoleMetricExporter> {
        Err(ExportError::FeatureMissing(parts.target.transport))
    }
}
#[cfg(not(any(feature = "otlp-grpc", feature = "otlp-http")))]
pub(crate) use no_otlp::{otlp_logs, otlp_metrics, otlp_spans};

/// Builds one signal's OTLP exporter (`$exporter` is `SpanExporter`,
/// `LogExporter` or `MetricExporter`) for the export runtime (started in `$rt`
/// if need be): gRPC built inside it, HTTP with the protobuf or JSON body
/// through our client; both to the resolved URL with the resolved timeout, TLS
/// from the environment and our retry policy.
#[cfg(any(feature = "otlp-grpc", feature = "otlp-http"))]
macro_rules! otlp_exporter {
    ($exporter:ident, $parts:expr, $rt:expr) => {{
        let parts: &OtlpParts<'_> = $parts;
        let target = parts.target;
        match target.transport {
            #[cfg(feature = "otlp-grpc")]
            Transport::Grpc => {
                use opentelemetry_otlp::{WithExportConfig as _, WithTonicConfig as _};
                let rt = runtime($rt)?;
                let _enter = rt.handle().enter();
                no_panic(target, || {
                    opentelemetry_otlp::$exporter::builder()
                        .with_tonic()
                        .with_channel(grpc_channel(target, parts.tls, &parts.connects)?)
                        .with_timeout(target.timeout)
                        .with_retry_policy(super::retry::policy())
                        // Called at the start of each attempt: counts them.
                        .with_interceptor(|request| {
                            let _ = super::observe::ATTEMPTS.try_with(|a| a.begin());
                            Ok(request)
                        })
                        .build()
                        .map_err(|e| e.to_string())
                })
            }
            #[cfg(feature = "otlp-http")]
            Transport::HttpProtobuf | Transport::HttpJson => {
                use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _};
                let client = http_client(target, parts.tls, parts.http_clients)?;
                runtime($rt)?;
                no_panic(target, || {
                    opentelemetry_otlp::$exporter::builder()
                        .with_http()
                        .with_protocol(protocol(target.transport))
                        .with_endpoint(target.url.clone())
                        .with_timeout(target.timeout)
                        .with_retry_policy(super::retry::policy())
                        .with_http_client(client)
                        .build()
                })
            }
            #[allow(unreachable_patterns)]
            other => Err(ExportError::FeatureMissing(other)),
        }
    }};
}

/// The OTLP span exporter for `parts`.
#[cfg(any(feature = "otlp-grpc", feature = "otlp-http"))]
pub(crate) fn otlp_spans(
    parts: &OtlpParts<'_>,
    rt: &mut Option<Arc<ExportRuntime>>,
) -> Result<opentelemetry_otlp::SpanExporter, ExportError> {
    otlp_exporter!(SpanExporter, parts, rt)
}

/// The OTLP log exporter for `parts`.
#[cfg(any(feature = "otlp-grpc", feature = "otlp-http"))]
pub(crate) fn otlp_logs(
    parts: &OtlpParts<'_>,
    rt: &mut Option<Arc<ExportRuntime>>,
) -> Result<opentelemetry_otlp::LogExporter, ExportError> {
    otlp_exporter!(LogExporter, parts, rt)
}

/// The OTLP metric exporter for `parts`.
#[cfg(any(feature = "otlp-grpc", feature = "otlp-http"))]
pub(crate) fn otlp_metrics(
    parts: &OtlpParts<'_>,
    rt: &mut Option<Arc<ExportRuntime>>,
) -> Result<opentelemetry_otlp::MetricExporter, ExportError> {
    otlp_exporter!(MetricExporter, parts, rt)
}

#[cfg(feature = "otlp-http")]
fn protocol(t: Transport) -> opentelemetry_otlp::Protocol {
    match t {
        Transport::HttpJson => opentelemetry_otlp::Protocol::HttpJson,
        _ => opentelemetry_otlp::Protocol::HttpBinary,
    }
}

/// Runs `build`; an error or a panic of the HTTP or gRPC stack while building
/// is an [`ExportError`], never a crash of the program.
#[cfg(any(feature = "otlp-grpc", feature = "otlp-http"))]
fn no_panic<E, Err: std::fmt::Display>(
    target: &Target,
    build: impl FnOnce() -> Result<E, Err>,
) -> Result<E, ExportError> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(build)) {
        Ok(built) => built.map_err(|e| ExportError::exporter(target, e)),
        Err(panic) => Err(ExportError::exporter(
            target,
            format!(
                "the client panicked: {}",
                crate::core::callbacks::panic_message(panic.as_ref())
            ),
        )),
    }
}

/// The export runtime, started on first need and shared by the signals.
#[cfg(any(feature = "otlp-grpc", feature = "otlp-http"))]
fn runtime(slot: &mut Option<Arc<ExportRuntime>>) -> Result<Arc<ExportRuntime>, ExportError> {
    if let Some(rt) = slot {
        return Ok(Arc::clone(rt));
    }
    let rt = ExportRuntime::start()?;
    *slot = Some(Arc::clone(&rt));
    Ok(rt)
}

/// The gRPC channel to `target`, connecting through our connector (which sees
/// failed connections) and, for an `https` endpoint, with TLS: the CA bundle
/// when one is given, else the platform's roots, and the client identity for
/// mutual TLS. Built inside the export runtime (it starts its task there).
#[cfg(feature = "otlp-grpc")]
fn grpc_channel(
    target: &Target,
    tls: &TlsMaterial,
    connects: &Arc<super::observe::Connects>,
) -> Result<tonic::transport::Channel, String> {
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
    let chain = |e: tonic::transport::Error| super::observe::error_chain(&e);
    let mut endpoint = Endpoint::from_shared(target.url.clone())
        .map_err(|e| {
            format!(
                "the endpoint {:?} is not a valid URL: {}",
                target.url,
                chain(e)
            )
        })?
        .timeout(target.timeout);
    if target.scheme() == Some("https") {
        let config = match &tls.ca_pem {
            Some(pem) => ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)),
            None => ClientTlsConfig::new().with_native_roots(),
        };
        let config = match &tls.identity {
            Some((cert, key)) => config.identity(Identity::from_pem(cert, key)),
            None => config,
        };
        endpoint = endpoint.tls_config(config).map_err(chain)?;
    }
    let connector = super::observe::ObservedConnector::new(Arc::clone(connects));
    Ok(endpoint.connect_with_connector_lazy(connector))
}

/// The async HTTP client of one signal (shared with the signals that have the
/// same settings), reporting each attempt: the export timeout, no redirects (a
/// redirected POST would be resent as a GET), and for `https` the CA bundle when
/// one is given (else the platform's verifier) and the client identity. Its
/// requests run on the export runtime (see `Counted`), so the export stack's own
/// telemetry stays suppressed.
#[cfg(feature = "otlp-http")]
fn http_client(
    target: &Target,
    tls: &TlsMaterial,
    clients: &HttpClients,
) -> Result<super::observe::ObservedClient, ExportError> {
    if target.scheme().is_none() {
        return Err(ExportError::NoScheme {
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
        return Ok(super::observe::ObservedClient(client.clone()));
    }
    let build = || -> Result<reqwest::Client, reqwest::Error> {
        let mut builder = reqwest::Client::builder()
            .timeout(target.timeout)
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
    let client = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(build)) {
        Ok(Ok(client)) => client,
        Ok(Err(e)) => {
            return Err(ExportError::HttpClient(with_roots_hint(
                super::observe::error_chain(&e),
            )))
        }
        Err(panic) => {
            return Err(ExportError::HttpClient(format!(
                "building it panicked: {}",
                crate::core::callbacks::panic_message(panic.as_ref())
            )))
        }
    };
    built.push((key, client.clone()));
    Ok(super::observe::ObservedClient(client))
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
    let signal = Signal::ALL
        .into_iter()
        .find(|s| s.env_part() == signal)
        .unwrap_or(Signal::Traces);
    let warnings = warnings
        .into_iter()
        .filter(|(about, _)| about.is_none_or(|s| s == signal))
        .map(|(_, w)| w)
        .collect();
    (all[signal as usize], warnings)
}

#[cfg(test)]
mod transport_tests {
    use super::{default_transport, transport_from_lookup, Transport};

    fn pick(vars: &[(&str, &str)]) -> (Transport, Vec<String>) {
        transport_from_lookup("TRACES", &super::super::test_env(vars))
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
        let (_, warnings) = pick(&[("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", "bogus")]);
        assert!(warnings.is_empty(), "the logs' own: {warnings:?}");
    }

    #[cfg(any(feature = "otlp-grpc", feature = "otlp-http"))]
    #[test]
    fn a_client_that_panics_while_being_built_is_an_error_not_a_crash() {
        let target = super::target::resolve(super::Signal::Traces, default_transport(), &|_| None);
        let r: Result<(), _> = super::no_panic(&target, || -> Result<(), String> {
            panic!("no crypto provider")
        });
        assert_eq!(
            r.expect_err("an error").to_string(),
            "could not build the OTLP traces exporter: the client panicked: no crypto provider"
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
