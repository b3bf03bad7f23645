//! Which OTLP transport each signal uses, and building its exporter (gRPC on a
//! runtime of our own, HTTP with protobuf or JSON bodies).

use crate::setup::error::InitError;

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

/// The runtime that drives gRPC exporters.
#[cfg(feature = "otlp-grpc")]
pub(crate) fn grpc_runtime() -> Result<tokio::runtime::Runtime, InitError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("otel-session-grpc")
        .enable_all()
        .build()
        .map_err(|e| InitError::Runtime(e.to_string()))
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
        _rt: &mut Option<RuntimeSlot>,
    ) -> Result<NoOtlp, InitError> {
        Err(InitError::FeatureMissing(t))
    }
    pub(crate) fn otlp_logs(
        t: Transport,
        _rt: &mut Option<RuntimeSlot>,
    ) -> Result<NoOtlp, InitError> {
        Err(InitError::FeatureMissing(t))
    }
    pub(crate) fn otlp_metrics(
        t: Transport,
        _rt: &mut Option<RuntimeSlot>,
    ) -> Result<NoOtlp, InitError> {
        Err(InitError::FeatureMissing(t))
    }
}
#[cfg(not(any(feature = "otlp-grpc", feature = "otlp-http")))]
pub(crate) use no_otlp::{otlp_logs, otlp_metrics, otlp_spans};

/// Builds one signal's OTLP exporter (`$exporter` is `SpanExporter`,
/// `LogExporter` or `MetricExporter`): gRPC inside our runtime, HTTP with the
/// protobuf or JSON body.
#[cfg(any(feature = "otlp-grpc", feature = "otlp-http"))]
macro_rules! otlp_exporter {
    ($exporter:ident, $signal:literal, $transport:expr, $rt:expr) => {{
        let transport: Transport = $transport;
        let _ = &$rt; // unused when only HTTP is compiled in
        match transport {
            #[cfg(feature = "otlp-grpc")]
            Transport::Grpc => {
                let rt = runtime($rt)?;
                let _enter = rt.enter();
                opentelemetry_otlp::$exporter::builder()
                    .with_tonic()
                    .build()
                    .map_err(|e| InitError::Exporter($signal, e.to_string()))
            }
            #[cfg(feature = "otlp-http")]
            Transport::HttpProtobuf | Transport::HttpJson => {
                use opentelemetry_otlp::WithExportConfig as _;
                opentelemetry_otlp::$exporter::builder()
                    .with_http()
                    .with_protocol(protocol(transport))
                    .build()
                    .map_err(|e| InitError::Exporter($signal, e.to_string()))
            }
            #[allow(unreachable_patterns)]
            other => Err(InitError::FeatureMissing(other)),
        }
    }};
}

/// The OTLP span exporter for `transport`.
#[cfg(any(feature = "otlp-grpc", feature = "otlp-http"))]
pub(crate) fn otlp_spans(
    transport: Transport,
    rt: &mut Option<RuntimeSlot>,
) -> Result<opentelemetry_otlp::SpanExporter, InitError> {
    otlp_exporter!(SpanExporter, "traces", transport, rt)
}

/// The OTLP log exporter for `transport`.
#[cfg(any(feature = "otlp-grpc", feature = "otlp-http"))]
pub(crate) fn otlp_logs(
    transport: Transport,
    rt: &mut Option<RuntimeSlot>,
) -> Result<opentelemetry_otlp::LogExporter, InitError> {
    otlp_exporter!(LogExporter, "logs", transport, rt)
}

/// The OTLP metric exporter for `transport`.
#[cfg(any(feature = "otlp-grpc", feature = "otlp-http"))]
pub(crate) fn otlp_metrics(
    transport: Transport,
    rt: &mut Option<RuntimeSlot>,
) -> Result<opentelemetry_otlp::MetricExporter, InitError> {
    otlp_exporter!(MetricExporter, "metrics", transport, rt)
}

#[cfg(feature = "otlp-http")]
fn protocol(t: Transport) -> opentelemetry_otlp::Protocol {
    match t {
        Transport::HttpJson => opentelemetry_otlp::Protocol::HttpJson,
        _ => opentelemetry_otlp::Protocol::HttpBinary,
    }
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
fn runtime(slot: &mut Option<RuntimeSlot>) -> Result<&RuntimeSlot, InitError> {
    if slot.is_none() {
        *slot = Some(RuntimeSlot(Some(grpc_runtime()?)));
    }
    slot.as_ref()
        .ok_or_else(|| InitError::Runtime("no runtime".into()))
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
