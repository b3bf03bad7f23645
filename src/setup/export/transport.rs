//! Which OTLP transport each signal uses, and building its exporter (gRPC or HTTP
//! with protobuf or JSON bodies, both on the export runtime, see `runtime`).

use std::sync::Arc;

#[cfg(any(feature = "otlp-grpc", feature = "otlp-http"))]
use super::runtime::OtlpExporter;
use super::ExportRuntime;
use crate::setup::error::ExportError;

pub use crate::setup::config::Transport;

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
/// [`default_transport`]. A bad value is reported (returned as a warning) and the
/// next source is used.
pub fn transport_from_lookup(
    signal: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> (Transport, Vec<String>) {
    let specific = format!("OTEL_EXPORTER_OTLP_{signal}_PROTOCOL");
    let mut warnings = Vec::new();
    for var in [specific.as_str(), "OTEL_EXPORTER_OTLP_PROTOCOL"] {
        let Some(v) = lookup(var) else { continue };
        let v = v.trim();
        match v {
            "" => {}
            "grpc" => return (Transport::Grpc, warnings),
            "http/protobuf" => return (Transport::HttpProtobuf, warnings),
            "http/json" => return (Transport::HttpJson, warnings),
            other => warnings.push(format!(
                "{var}={other:?} is not valid (expected grpc, http/protobuf or http/json); ignoring it"
            )),
        }
    }
    (default_transport(), warnings)
}

pub(crate) fn transport_from_env(signal: &str) -> Transport {
    let (t, warnings) = transport_from_lookup(signal, &|v| std::env::var(v).ok());
    for w in warnings {
        crate::warn::stderr(format_args!("{w}"));
    }
    t
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
        t: Transport,
        _rt: &mut Option<Arc<ExportRuntime>>,
    ) -> Result<NoOtlp, ExportError> {
        Err(ExportError::FeatureMissing(t))
    }
    pub(crate) fn otlp_logs(
        t: Transport,
        _rt: &mut Option<Arc<ExportRuntime>>,
    ) -> Result<NoOtlp, ExportError> {
        Err(ExportError::FeatureMissing(t))
    }
    pub(crate) fn otlp_metrics(
        t: Transport,
        _rt: &mut Option<Arc<ExportRuntime>>,
    ) -> Result<NoOtlp, ExportError> {
        Err(ExportError::FeatureMissing(t))
    }
}
#[cfg(not(any(feature = "otlp-grpc", feature = "otlp-http")))]
pub(crate) use no_otlp::{otlp_logs, otlp_metrics, otlp_spans};

/// Builds one signal's OTLP exporter (`$exporter` is `SpanExporter`,
/// `LogExporter` or `MetricExporter`) on the export runtime: gRPC built inside it,
/// HTTP with the protobuf or JSON body; both export on it (see `runtime`).
#[cfg(any(feature = "otlp-grpc", feature = "otlp-http"))]
macro_rules! otlp_exporter {
    ($exporter:ident, $signal:literal, $transport:expr, $rt:expr) => {{
        let transport: Transport = $transport;
        let (built, rt) = match transport {
            #[cfg(feature = "otlp-grpc")]
            Transport::Grpc => {
                let rt = runtime($rt)?;
                let _enter = rt.handle().enter();
                let built = no_panic($signal, || {
                    opentelemetry_otlp::$exporter::builder()
                        .with_tonic()
                        .build()
                })?;
                (built, Arc::clone(&rt))
            }
            #[cfg(feature = "otlp-http")]
            Transport::HttpProtobuf | Transport::HttpJson => {
                use opentelemetry_otlp::WithExportConfig as _;
                let rt = runtime($rt)?;
                let built = no_panic($signal, || {
                    opentelemetry_otlp::$exporter::builder()
                        .with_http()
                        .with_protocol(protocol(transport))
                        .build()
                })?;
                (built, rt)
            }
            #[allow(unreachable_patterns)]
            other => return Err(ExportError::FeatureMissing(other)),
        };
        Ok(OtlpExporter::new(built, rt))
    }};
}

/// The OTLP span exporter for `transport`.
#[cfg(any(feature = "otlp-grpc", feature = "otlp-http"))]
pub(crate) fn otlp_spans(
    transport: Transport,
    rt: &mut Option<Arc<ExportRuntime>>,
) -> Result<OtlpExporter<opentelemetry_otlp::SpanExporter>, ExportError> {
    otlp_exporter!(SpanExporter, "traces", transport, rt)
}

/// The OTLP log exporter for `transport`.
#[cfg(any(feature = "otlp-grpc", feature = "otlp-http"))]
pub(crate) fn otlp_logs(
    transport: Transport,
    rt: &mut Option<Arc<ExportRuntime>>,
) -> Result<OtlpExporter<opentelemetry_otlp::LogExporter>, ExportError> {
    otlp_exporter!(LogExporter, "logs", transport, rt)
}

/// The OTLP metric exporter for `transport`.
#[cfg(any(feature = "otlp-grpc", feature = "otlp-http"))]
pub(crate) fn otlp_metrics(
    transport: Transport,
    rt: &mut Option<Arc<ExportRuntime>>,
) -> Result<OtlpExporter<opentelemetry_otlp::MetricExporter>, ExportError> {
    otlp_exporter!(MetricExporter, "metrics", transport, rt)
}

#[cfg(feature = "otlp-http")]
fn protocol(t: Transport) -> opentelemetry_otlp::Protocol {
    match t {
        Transport::HttpJson => opentelemetry_otlp::Protocol::HttpJson,
        _ => opentelemetry_otlp::Protocol::HttpBinary,
    }
}

/// Builds an exporter; an error or a panic of the HTTP or gRPC stack while
/// building (reqwest panics when it was compiled with rustls but without a
/// crypto provider) is an [`ExportError`], never a crash of the program.
#[cfg(any(feature = "otlp-grpc", feature = "otlp-http"))]
fn no_panic<E>(
    signal: &'static str,
    build: impl FnOnce() -> Result<E, opentelemetry_otlp::ExporterBuildError>,
) -> Result<E, ExportError> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(build)) {
        Ok(built) => built.map_err(|e| ExportError::Exporter(signal, e.to_string())),
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".to_string());
            Err(ExportError::Exporter(
                signal,
                format!("the client panicked: {what}"),
            ))
        }
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
            ["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=\"bogus\" is not valid (expected grpc, http/protobuf or http/json); ignoring it"]
        );
    }

    #[cfg(any(feature = "otlp-grpc", feature = "otlp-http"))]
    #[test]
    fn a_client_that_panics_while_being_built_is_an_error_not_a_crash() {
        let r: Result<(), _> = super::no_panic("traces", || panic!("no crypto provider"));
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
