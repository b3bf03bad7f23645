//! Why an export failed and what to do about it: a pure function from the
//! target (signal, protocol, URL and where it came from), what the transport saw
//! and the TLS variables in use, to one sentence naming the problem and the likely
//! fix. The common mistakes each get their own advice: no scheme, a signal path
//! on the generic endpoint, the gRPC port with an HTTP protocol and the reverse,
//! `https` without trust (and the other TLS failures), nothing configured at all.
//!
//! Each diagnosis has a key (the kind of failure and the collector's origin):
//! warnings are printed once per key, so three signals failing for one cause make
//! one warning.

use super::failure::{Failure, TlsProblem};
use super::target::{
    host_of, origin_of, path_of, scheme_of, EndpointSource, Signal, Target, ENV_ENDPOINT,
};
use super::target::{DEFAULT_GRPC_ENDPOINT, DEFAULT_HTTP_ENDPOINT};
use super::tls::TlsVars;
use crate::setup::config::Transport;

/// An error message with repeated parts said once: `opentelemetry-otlp` and
/// tonic repeat a cause (`a: b: b`, `x: x: y`).
pub fn tidy_error(error: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in error.split(": ") {
        if parts.last() != Some(&part) {
            parts.push(part);
        }
    }
    let mut k = parts.len() / 2;
    while k > 0 {
        let n = parts.len();
        if parts[n - k..] == parts[n - 2 * k..n - k] {
            parts.truncate(n - k);
            k = parts.len() / 2;
        } else {
            k -= 1;
        }
    }
    parts.join(": ")
}

/// The first line of an export warning: what failed, where, and why; with
/// `report`, where the counts of later failures will be printed (a guard's
/// delivery report).
pub fn export_warning(
    target: &Target,
    n: usize,
    error: &str,
    diagnosis: &str,
    report: bool,
) -> String {
    let error = tidy_error(error);
    let tail = match report {
        true => " (see the delivery report at shutdown)",
        false => "",
    };
    format!(
        "could not export {n} {items} over {protocol} to {url} ({error}): {text}. \
         Further failures with this cause are counted, not printed{tail}",
        items = target.signal.items(),
        protocol = target.transport,
        url = target.shown_url(),
        text = diagnosis,
    )
}

/// What tells one cause of failure from another (one warning per cause): the
/// kind of failure, where the exports go, and the configuration mistake seen.
pub fn cause_key(target: &Target, failure: &Failure) -> String {
    format!(
        "{failure:?}|{}|{}",
        origin_of(&target.url),
        mistake_kind(target, failure).unwrap_or("")
    )
}

/// Diagnoses `failure` of an export to `target`, with the TLS files `tls` in
/// use: what happened and the likely fix.
pub fn diagnose(target: &Target, failure: &Failure, tls: &TlsVars) -> String {
    let what = describe(target, failure);
    let fix = mistake(target, failure).or_else(|| advice(target, failure, tls));
    match fix {
        Some(fix) => format!("{what}; {fix}"),
        None => what,
    }
}

fn is_http(t: Transport) -> bool {
    matches!(t, Transport::HttpProtobuf | Transport::HttpJson)
}

fn describe(target: &Target, failure: &Failure) -> String {
    let shown = target.shown_url();
    let origin = origin_of(&shown);
    match failure {
        Failure::Refused => format!("connection refused: nothing listens at {origin}"),
        Failure::Unresolved => format!("the host name {} cannot be resolved", host_of(&target.url)),
        Failure::TimedOut => "no answer within the export timeout".to_string(),
        Failure::ShutDown => {
            "still under way when the shutdown timeout ran out: cut short".to_string()
        }
        Failure::Tls(p) => match p {
            TlsProblem::Untrusted => {
                "TLS failed: the collector's certificate is not trusted".to_string()
            }
            TlsProblem::WrongName => format!(
                "TLS failed: the collector's certificate is not valid for {}",
                host_of(&target.url)
            ),
            TlsProblem::Expired => {
                "TLS failed: the collector's certificate has expired or is not valid yet"
                    .to_string()
            }
            TlsProblem::ClientCertificate => {
                "TLS failed: the collector requires a client certificate it trusts (mutual TLS)"
                    .to_string()
            }
            TlsProblem::NotTls => format!("TLS failed: {origin} does not speak TLS"),
            TlsProblem::PlainToTls => {
                format!("{origin} expects TLS but the endpoint says http://")
            }
            TlsProblem::Other => "TLS failed".to_string(),
        },
        Failure::Status(s) => format!("the collector answered HTTP {s} {}", reason(*s)),
        Failure::Grpc(code) => format!("the collector answered gRPC status {code}"),
        Failure::Disconnected => format!("{origin} closed the connection mid-request"),
        Failure::Network => "no answer (a network error)".to_string(),
        Failure::Protocol => format!(
            "the server at {origin} did not answer in {}",
            if is_http(target.transport) {
                "OTLP/HTTP"
            } else {
                "OTLP/gRPC (HTTP/2)"
            }
        ),
        Failure::Other => "the export failed".to_string(),
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        300..=399 => "(a redirect, not followed)",
        _ => "",
    }
}

/// Which configuration mistake explains the failure, if any (for the key).
fn mistake_kind(target: &Target, failure: &Failure) -> Option<&'static str> {
    if let EndpointSource::Generic(v) = &target.source {
        if is_http(target.transport) && signal_path(v).is_some() {
            return Some("generic-path");
        }
    }
    if target.transport == Transport::Grpc
        && target.configured().is_some_and(|v| scheme_of(v).is_none())
        && target.scheme() == Some("https")
        && matches!(failure, Failure::Tls(_) | Failure::Protocol)
    {
        return Some("no-scheme");
    }
    if target.scheme() == Some("http") && target.port() == Some(443) {
        return Some("http-on-443");
    }
    let port = target.port();
    if is_http(target.transport) && port == Some(4317) && !matches!(failure, Failure::Tls(_)) {
        return Some("grpc-port");
    }
    if target.transport == Transport::Grpc
        && port == Some(4318)
        && !matches!(failure, Failure::Tls(_))
    {
        return Some("http-port");
    }
    // Anything but an answer (a status) or a TLS failure.
    let no_answer = !matches!(
        failure,
        Failure::Tls(_) | Failure::Status(_) | Failure::Grpc(_)
    );
    if target.source == EndpointSource::Default && no_answer {
        return Some("default-endpoint");
    }
    None
}

/// `/v1/traces` (or logs, metrics) when the generic endpoint ends with one.
fn signal_path(value: &str) -> Option<&'static str> {
    let path = path_of(value);
    let path = path.split(['?', '#']).next().unwrap_or(path);
    let path = path.trim_end_matches('/');
    Signal::ALL
        .into_iter()
        .map(Signal::http_path)
        .find(|p| path.ends_with(p))
}

/// The fix for a configuration mistake.
fn mistake(target: &Target, failure: &Failure) -> Option<String> {
    let kind = mistake_kind(target, failure)?;
    let value = target.configured().unwrap_or_default();
    let var = target
        .endpoint_var()
        .unwrap_or_else(|| ENV_ENDPOINT.to_string());
    let protocol = target.transport;
    Some(match kind {
        "generic-path" => {
            let suffix = signal_path(value).unwrap_or("/v1/traces");
            let base = value.trim_end_matches('/');
            let base = base.strip_suffix(suffix).unwrap_or(base);
            format!(
                "{ENV_ENDPOINT}={value:?} has a signal path, but it is the collector's base URL \
                 and /v1/traces, /v1/logs and /v1/metrics are appended to it (this sent to {url}): \
                 set {ENV_ENDPOINT}={base}, or give a full URL per signal in \
                 OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (and _LOGS_, _METRICS_)",
                url = target.shown_url()
            )
        }
        "no-scheme" => format!(
            "{var}={value:?} has no scheme, so grpc used {url} (TLS): for a plaintext \
             collector write http://{value} (or set OTEL_EXPORTER_OTLP_INSECURE=true)",
            url = target.shown_url()
        ),
        "http-on-443" => format!(
            "{var} uses http:// with port 443, the TLS port: write https://{}",
            target.url.trim_start_matches("http://")
        ),
        "grpc-port" => format!(
            "port 4317 is the OTLP/gRPC port but the protocol is {protocol}: point {var} at the \
             collector's OTLP/HTTP port (4318 by default), or set OTEL_EXPORTER_OTLP_PROTOCOL=grpc"
        ),
        "http-port" => format!(
            "port 4318 is the OTLP/HTTP port but the protocol is grpc: point {var} at the \
             collector's OTLP/gRPC port (4317 by default), or set \
             OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf"
        ),
        _ => {
            let default = if is_http(target.transport) {
                DEFAULT_HTTP_ENDPOINT
            } else {
                DEFAULT_GRPC_ENDPOINT
            };
            format!(
                "no endpoint is configured, so the default {default} ({protocol}) was used: set \
                 {ENV_ENDPOINT} to your collector (and OTEL_EXPORTER_OTLP_PROTOCOL to grpc, \
                 http/protobuf or http/json), or print telemetry on the console with \
                 OTEL_TRACES_EXPORTER=console OTEL_LOGS_EXPORTER=console \
                 OTEL_METRICS_EXPORTER=console (none turns a signal off)"
            )
        }
    })
}

/// The advice for a failure no configuration mistake explains.
fn advice(target: &Target, failure: &Failure, tls: &TlsVars) -> Option<String> {
    let signal = target.signal;
    let ca_var = signal.var("CERTIFICATE");
    let endpoint_var = target
        .endpoint_var()
        .unwrap_or_else(|| ENV_ENDPOINT.to_string());
    Some(match failure {
        Failure::Refused => "is the collector running, and is this its address and port? \
                             (transient: retried within OTEL_EXPORTER_OTLP_TIMEOUT)"
            .to_string(),
        Failure::Disconnected | Failure::Network => {
            "the collector may be restarting or a proxy dropped the request (transient: \
             retried within OTEL_EXPORTER_OTLP_TIMEOUT)"
                .to_string()
        }
        Failure::Unresolved => format!("check the host name in {endpoint_var}"),
        Failure::TimedOut => "the collector is slow or unreachable (a firewall?); \
             OTEL_EXPORTER_OTLP_TIMEOUT (milliseconds, 10000 by default, 0 for no limit) bounds \
             each export with its retries"
            .to_string(),
        Failure::ShutDown => "the collector did not accept it in time (down, slow or \
             refusing); at exit, retries stop at the guard's shutdown timeout \
             (Builder::with_shutdown_timeout, 5 s by default)"
            .to_string(),
        Failure::Tls(p) => match p {
            TlsProblem::Untrusted => match &tls.ca {
                Some(ca) => format!(
                    "the CA bundle in {}={:?} did not sign it: give the CA that signed the \
                     collector's certificate",
                    ca.var, ca.path
                ),
                None => format!(
                    "if a private CA signed it, set OTEL_EXPORTER_OTLP_CERTIFICATE (or \
                     {ca_var}) to that CA's PEM file; otherwise the platform's roots are used"
                ),
            },
            TlsProblem::WrongName => {
                format!("use the host name the certificate was issued for in {endpoint_var}")
            }
            TlsProblem::Expired => {
                "renew the collector's certificate (or check this machine's clock)".to_string()
            }
            TlsProblem::ClientCertificate => match &tls.client_cert {
                Some(c) => format!(
                    "the certificate in {}={:?} was refused: give one the collector's client CA \
                     signed",
                    c.var, c.path
                ),
                None => "set OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE and \
                     OTEL_EXPORTER_OTLP_CLIENT_KEY to the client certificate and key (PEM)"
                    .to_string(),
            },
            TlsProblem::NotTls => format!(
                "for a plaintext collector write http:// in {endpoint_var}, or enable TLS on \
                 the collector"
            ),
            TlsProblem::PlainToTls => format!("write https:// in {endpoint_var}"),
            TlsProblem::Other => format!(
                "check that {endpoint_var} is the collector's TLS endpoint and, for a private \
                 CA, OTEL_EXPORTER_OTLP_CERTIFICATE"
            ),
        },
        Failure::Status(s) => match s {
            300..=399 => format!("set {endpoint_var} to the URL it redirects to"),
            400 => "the collector rejected the data as malformed (permanent: not retried); \
                    check OTEL_EXPORTER_OTLP_PROTOCOL matches what it accepts"
                .to_string(),
            401 | 403 => "the collector refused the credentials: set the API key header in \
                          OTEL_EXPORTER_OTLP_HEADERS (e.g. authorization=Bearer%20<token>; \
                          values are never printed)"
                .to_string(),
            404 => format!(
                "the URL's path is wrong: OTLP/HTTP expects {} on the collector's HTTP port; \
                 check {endpoint_var}",
                signal.http_path()
            ),
            413 => "the request was too large: lower OTEL_BSP_MAX_EXPORT_BATCH_SIZE / \
                    OTEL_BLRP_MAX_EXPORT_BATCH_SIZE"
                .to_string(),
            415 => "the collector does not accept this body: try \
                    OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf"
                .to_string(),
            429 | 502 | 503 | 504 => "the collector is overloaded or unavailable (transient: \
                                      retried with backoff, honouring Retry-After, within \
                                      OTEL_EXPORTER_OTLP_TIMEOUT)"
                .to_string(),
            _ => "permanent: not retried".to_string(),
        },
        Failure::Grpc(code) => match code.as_str() {
            "Unauthenticated" | "PermissionDenied" => {
                "the collector refused the credentials: set the API key header in \
                 OTEL_EXPORTER_OTLP_HEADERS (values are never printed)"
                    .to_string()
            }
            "Unimplemented" => format!(
                "this server does not implement OTLP/gRPC for {}: is {endpoint_var} the \
                 collector's gRPC port (4317 by default)?",
                signal.name()
            ),
            "Internal" if target.scheme() == Some("https") && tls.client_cert.is_none() => {
                format!(
                    "that is not an OTLP answer: with https and no client certificate \
                     configured, most likely a TLS proxy that requires one (mutual TLS): set \
                     OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE and OTEL_EXPORTER_OTLP_CLIENT_KEY; \
                     otherwise check that {endpoint_var} is the collector's gRPC endpoint"
                )
            }
            "Internal" => format!(
                "that is not an OTLP answer (a proxy's error page?): check that {endpoint_var} \
                 is the collector's gRPC endpoint"
            ),
            "InvalidArgument" => {
                "the collector rejected the data as malformed (permanent: not retried)".to_string()
            }
            "Unavailable" => "the collector is unavailable (transient: retried with backoff, \
                              honouring RetryInfo, within OTEL_EXPORTER_OTLP_TIMEOUT)"
                .to_string(),
            "ResourceExhausted" => "the collector is out of capacity: retried only when it says \
                                    when to (gRPC RetryInfo), within OTEL_EXPORTER_OTLP_TIMEOUT; \
                                    without RetryInfo, permanent"
                .to_string(),
            _ => return None,
        },
        Failure::Protocol => format!(
            "is {endpoint_var} the collector's {} port? OTLP/gRPC listens on 4317 and \
             OTLP/HTTP on 4318 by default; OTEL_EXPORTER_OTLP_PROTOCOL chooses the protocol \
             (and a port that expects TLS needs https://)",
            if is_http(target.transport) {
                "OTLP/HTTP"
            } else {
                "OTLP/gRPC"
            }
        ),
        Failure::Other => return None,
    })
}

#[cfg(test)]
#[path = "diagnose_tests.rs"]
mod tests;
