//! The warning text for each common mistake, from the errors the transports
//! really produce (captured against rotel, nginx and `openssl s_server`).

use super::*;
use crate::setup::export::observe::ProxyPage;
use crate::setup::export::target::{self, DEFAULT_TIMEOUT};
use crate::setup::export::tls::TlsVar;

fn target(signal: Signal, transport: Transport, vars: &[(&str, &str)]) -> Target {
    target::resolve(signal, transport, &crate::setup::export::test_env(vars))
}

/// The target of `signal` over `transport` with `OTEL_EXPORTER_OTLP_ENDPOINT=url`.
fn endpoint(signal: Signal, transport: Transport, url: &str) -> Target {
    target(signal, transport, &[("OTEL_EXPORTER_OTLP_ENDPOINT", url)])
}

/// The warning for an export that failed with `error`, or with what its last
/// attempt got when `seen` (as `Counted` prints it).
fn warning(t: &Target, error: &str, seen: Option<Failure>) -> String {
    let failure = seen.unwrap_or_else(|| Failure::of_text(error));
    export_warning(
        t,
        3,
        error,
        &diagnose(t, &failure, &TlsVars::default()),
        true,
    )
}

/// What our HTTP client makes of a transport error with this text (no type
/// that says more).
fn transport(text: &str) -> Option<Failure> {
    Some(Failure::of_transport_error(&std::io::Error::other(text)))
}

const TAIL: &str = ". Further failures with this cause are counted, not printed (see the \
                    delivery report at shutdown)";

#[test]
fn nothing_configured_names_the_default_endpoint_and_the_console() {
    let t = target(Signal::Traces, Transport::HttpProtobuf, &[]);
    let refused = "error sending request for url (http://localhost:4318/v1/traces): client error \
                   (Connect): tcp connect error: Connection refused (os error 111)";
    assert_eq!(
        warning(&t, refused, transport(refused)),
        format!(
            "could not export 3 spans over http/protobuf to http://localhost:4318/v1/traces \
             ({refused}): connection refused: nothing listens at http://localhost:4318; no \
             endpoint is configured, so the default http://localhost:4318 (http/protobuf) was \
             used: set OTEL_EXPORTER_OTLP_ENDPOINT to your collector (and \
             OTEL_EXPORTER_OTLP_PROTOCOL to grpc, http/protobuf or http/json), or print \
             telemetry on the console with OTEL_TRACES_EXPORTER=console \
             OTEL_LOGS_EXPORTER=console OTEL_METRICS_EXPORTER=console (none turns a signal \
             off){TAIL}"
        )
    );
    let g = target(Signal::Logs, Transport::Grpc, &[]);
    let d = diagnose(&g, &Failure::Refused, &TlsVars::default());
    assert!(
        d.contains("the default http://localhost:4317 (grpc) was used"),
        "{}",
        d
    );
}

#[test]
fn one_cause_is_one_key_for_every_signal() {
    let key = |s, url_vars: &[(&str, &str)]| {
        let t = target(s, Transport::HttpProtobuf, url_vars);
        cause_key(&t, &Failure::Refused)
    };
    let none: &[(&str, &str)] = &[];
    assert_eq!(key(Signal::Traces, none), key(Signal::Logs, none));
    assert_eq!(key(Signal::Traces, none), key(Signal::Metrics, none));
    let other = [(
        "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
        "http://elsewhere:4318/v1/logs",
    )];
    assert_ne!(key(Signal::Traces, none), key(Signal::Logs, &other));
}

#[test]
fn a_signal_path_on_the_generic_endpoint() {
    let t = endpoint(
        Signal::Logs,
        Transport::HttpProtobuf,
        "http://c:4318/v1/traces",
    );
    let error = "Operation failed: HTTP export failed with status code: 404";
    assert_eq!(
        warning(&t, error, Some(Failure::Status(404))),
        format!(
            "could not export 3 log records over http/protobuf to \
             http://c:4318/v1/traces/v1/logs ({error}): the collector answered HTTP 404 Not \
             Found; OTEL_EXPORTER_OTLP_ENDPOINT=\"http://c:4318/v1/traces\" has a signal path, \
             but it is the collector's base URL and /v1/traces, /v1/logs and /v1/metrics are \
             appended to it (this sent to http://c:4318/v1/traces/v1/logs): set \
             OTEL_EXPORTER_OTLP_ENDPOINT=http://c:4318, or give a full URL per signal in \
             OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (and _LOGS_, _METRICS_){TAIL}"
        )
    );
}

#[test]
fn no_scheme_over_grpc_means_tls_to_a_plaintext_collector() {
    let t = endpoint(Signal::Traces, Transport::Grpc, "127.0.0.1:4317");
    let error = "Operation failed: TonicTracesClient export failed with gRPC code: Unavailable: \
                 transport error: received corrupt message of type InvalidContentType: received \
                 corrupt message of type InvalidContentType";
    assert_eq!(
        warning(&t, error, None),
        format!(
            "could not export 3 spans over grpc to https://127.0.0.1:4317 (Operation failed: \
             TonicTracesClient export failed with gRPC code: Unavailable: transport error: \
             received corrupt message of type InvalidContentType): TLS failed: \
             https://127.0.0.1:4317 does not speak TLS; \
             OTEL_EXPORTER_OTLP_ENDPOINT=\"127.0.0.1:4317\" has no scheme, so grpc used \
             https://127.0.0.1:4317 (TLS): for a plaintext collector write \
             http://127.0.0.1:4317 (or set OTEL_EXPORTER_OTLP_INSECURE=true){TAIL}"
        )
    );
}

#[cfg(feature = "otlp-http")]
#[test]
fn no_scheme_over_http_is_a_build_error_naming_the_variable() {
    let e = crate::setup::error::ExportError::NoScheme {
        var: "OTEL_EXPORTER_OTLP_ENDPOINT".into(),
        value: "localhost:4318".into(),
    };
    assert_eq!(
        e.to_string(),
        "OTEL_EXPORTER_OTLP_ENDPOINT=\"localhost:4318\" has no scheme: write \
         http://localhost:4318 (or https://localhost:4318 for TLS)"
    );
}

#[test]
fn the_grpc_port_with_an_http_protocol() {
    let t = endpoint(
        Signal::Traces,
        Transport::HttpProtobuf,
        "http://collector:4317",
    );
    let transport_error =
        "error sending request for url (http://collector:4317/v1/traces): client \
                     error (SendRequest): invalid HTTP version parsed";
    assert_eq!(
        warning(&t, transport_error, transport(transport_error)),
        format!(
            "could not export 3 spans over http/protobuf to http://collector:4317/v1/traces \
             ({transport_error}): the server at http://collector:4317 did not answer in OTLP/HTTP; \
             port 4317 is the OTLP/gRPC port but the protocol is http/protobuf: point \
             OTEL_EXPORTER_OTLP_ENDPOINT at the collector's OTLP/HTTP port (4318 by default), \
             or set OTEL_EXPORTER_OTLP_PROTOCOL=grpc{TAIL}"
        )
    );
}

#[test]
fn the_http_port_with_grpc() {
    let t = endpoint(Signal::Logs, Transport::Grpc, "http://collector:4318");
    let error = "Operation failed: TonicLogsClient export failed with gRPC code: Unimplemented";
    assert_eq!(
        warning(&t, error, None),
        format!(
            "could not export 3 log records over grpc to http://collector:4318 ({error}): the \
             collector answered gRPC status Unimplemented; port 4318 is the OTLP/HTTP port but \
             the protocol is grpc: point OTEL_EXPORTER_OTLP_ENDPOINT at the collector's \
             OTLP/gRPC port (4317 by default), or set \
             OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf{TAIL}"
        )
    );
}

#[test]
fn https_without_trust() {
    let t = endpoint(Signal::Traces, Transport::Grpc, "https://127.0.0.1:4317");
    let error = "Operation failed: TonicTracesClient export failed with gRPC code: Unavailable: \
                 transport error: invalid peer certificate: UnknownIssuer: invalid peer \
                 certificate: UnknownIssuer";
    assert_eq!(
        warning(&t, error, None),
        format!(
            "could not export 3 spans over grpc to https://127.0.0.1:4317 (Operation failed: \
             TonicTracesClient export failed with gRPC code: Unavailable: transport error: \
             invalid peer certificate: UnknownIssuer): TLS failed: the collector's certificate \
             is not trusted; if a private CA signed it, set OTEL_EXPORTER_OTLP_CERTIFICATE (or \
             OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE) to that CA's PEM file; otherwise the \
             platform's roots are used{TAIL}"
        )
    );
    // With a CA bundle that did not sign it.
    let tls = TlsVars {
        ca: Some(TlsVar {
            var: "OTEL_EXPORTER_OTLP_CERTIFICATE".into(),
            path: "/etc/other-ca.pem".into(),
        }),
        ..TlsVars::default()
    };
    let d = diagnose(&t, &Failure::Tls(TlsProblem::Untrusted), &tls);
    assert_eq!(
        d,
        "TLS failed: the collector's certificate is not trusted; the CA bundle in \
         OTEL_EXPORTER_OTLP_CERTIFICATE=\"/etc/other-ca.pem\" did not sign it: give the CA that \
         signed the collector's certificate"
    );
}

#[test]
fn a_certificate_for_another_name() {
    let t = endpoint(
        Signal::Traces,
        Transport::HttpProtobuf,
        "https://127.0.0.1:4318",
    );
    let transport_error =
        "error sending request for url (https://127.0.0.1:4318/v1/traces): client \
                     error (Connect): invalid peer certificate: certificate not valid for name \
                     \"127.0.0.1\"; certificate is only valid for DnsName(\"localhost\")";
    let w = warning(&t, transport_error, transport(transport_error));
    assert!(
        w.ends_with(&format!(
            "TLS failed: the collector's certificate is not valid for 127.0.0.1; use the host \
             name the certificate was issued for in OTEL_EXPORTER_OTLP_ENDPOINT{TAIL}"
        )),
        "{w}"
    );
}

#[test]
fn an_expired_certificate() {
    let expired = "transport error: invalid peer certificate: certificate expired: verification \
                   time 1700000000 (UNIX), but certificate is not valid after 1690000000 \
                   (10000000 seconds ago)";
    assert_eq!(Failure::of_text(expired), Failure::Tls(TlsProblem::Expired));
    let t = target(Signal::Traces, Transport::Grpc, &[]);
    assert_eq!(
        diagnose(&t, &Failure::Tls(TlsProblem::Expired), &TlsVars::default()),
        "TLS failed: the collector's certificate has expired or is not valid yet; renew the \
         collector's certificate (or check this machine's clock)"
    );
}

#[test]
fn a_proxy_that_requires_a_client_certificate() {
    let t = endpoint(Signal::Metrics, Transport::HttpProtobuf, "https://c:4318");
    let d = diagnose(
        &t,
        &Failure::of_response(400, Some(ProxyPage::ClientCertificate)),
        &TlsVars::default(),
    );
    assert_eq!(
        d,
        "TLS failed: the collector requires a client certificate it trusts (mutual TLS); set \
         OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE and OTEL_EXPORTER_OTLP_CLIENT_KEY to the client \
         certificate and key (PEM)"
    );
    let g = endpoint(Signal::Traces, Transport::Grpc, "https://c:4317");
    let error = "Operation failed: TonicTracesClient export failed with gRPC code: Internal";
    let d = diagnose(&g, &Failure::of_text(error), &TlsVars::default());
    assert!(
        d.contains("mutual TLS") && d.contains("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE"),
        "{}",
        d
    );
}

/// The classification `opentelemetry-otlp` retries by (what is counted as
/// permanent), and what ends an export at once because retrying cannot fix it.
#[test]
fn transient_failures_are_retried_permanent_ones_not() {
    for transient in [
        Failure::Status(429),
        Failure::Status(502),
        Failure::Status(503),
        Failure::Status(504),
        Failure::Refused,
        Failure::Disconnected,
        Failure::TimedOut,
        Failure::Network,
        Failure::Grpc("Unavailable".into()),
        Failure::Grpc("DataLoss".into()),
    ] {
        assert!(transient.retryable() && transient.heals(), "{transient:?}");
    }
    for permanent in [
        Failure::Status(400),
        Failure::Status(401),
        Failure::Status(404),
        Failure::Status(413),
        Failure::Status(500),
        Failure::Grpc("InvalidArgument".into()),
        Failure::Grpc("Unauthenticated".into()),
        // Retried only with RetryInfo: the attempts made tell.
        Failure::Grpc("ResourceExhausted".into()),
        Failure::Tls(TlsProblem::Untrusted),
        Failure::Tls(TlsProblem::ClientCertificate),
        Failure::Protocol,
        Failure::Other,
    ] {
        assert!(!permanent.retryable(), "{permanent:?}");
    }
    for hopeless in [Failure::Tls(TlsProblem::WrongName), Failure::Protocol] {
        assert!(!hopeless.heals(), "{hopeless:?}");
    }
}

#[test]
fn classification_of_real_messages() {
    let c = Failure::of_text;
    assert_eq!(c("transport error: Timeout expired"), Failure::TimedOut);
    assert_eq!(
        c(
            "TonicTracesClient export failed with gRPC code: Unavailable: transport error: tcp \
           connect error: Connection refused (os error 111)"
        ),
        Failure::Refused
    );
    assert_eq!(
        c("transport error: http2 error: connection error detected: frame with invalid size"),
        Failure::Protocol
    );
    assert_eq!(
        c("error sending request: connection closed before message completed"),
        Failure::Disconnected
    );
    assert_eq!(
        transport("error sending request: something new").expect("classified"),
        Failure::Network
    );
    assert_eq!(
        c(
            "error sending request for url (http://h:4317/v1/logs): client error (SendRequest): \
           received unexpected message from connection"
        ),
        Failure::Protocol
    );
    assert_eq!(
        c("export failed with gRPC code: DataLoss"),
        Failure::Grpc("DataLoss".into())
    );
    assert_eq!(
        c("dns error: failed to lookup address information: Name or service not known"),
        Failure::Unresolved
    );
}

#[test]
fn repeated_causes_are_said_once() {
    assert_eq!(tidy_error("a: b: c: b: c"), "a: b: c");
    assert_eq!(tidy_error("x: tcp: tcp: refused"), "x: tcp: refused");
    assert_eq!(tidy_error("plain"), "plain");
}

#[test]
fn the_timeout_default_is_ten_seconds() {
    assert_eq!(DEFAULT_TIMEOUT, std::time::Duration::from_secs(10));
}
