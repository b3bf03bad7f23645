//! What a user sees on stderr for the common mistakes, end to end: a child
//! program using `init!()` against a real collector (rotel) with a mistake in its
//! environment. Each cause is one warning (not one per signal) naming the signal,
//! protocol and URL with the likely fix. The exact texts of every mistake are
//! unit-tested next to the function that computes them (src/setup/export).

mod support;

use std::time::Duration;

use support::{run_child, ChildRun, Receiver, Rotel};

const LIMIT: Duration = Duration::from_secs(25);

fn lines_with<'a>(run: &'a ChildRun, needle: &str) -> Vec<&'a str> {
    run.stderr.lines().filter(|l| l.contains(needle)).collect()
}

#[test]
fn a_protocol_typo_is_one_warning_naming_the_fallback_and_telemetry_still_flows() {
    let receiver = Receiver::start();
    let rotel = Rotel::start(receiver.addr);
    let run = run_child(
        "plain",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", rotel.http_endpoint()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuff".into()),
        ],
        LIMIT,
    );
    assert!(run.status.success(), "{}", run.stderr);
    assert_eq!(
        lines_with(&run, "warning"),
        [
            "otel-session: warning: OTEL_EXPORTER_OTLP_PROTOCOL=\"http/protobuff\" is not valid \
          (expected grpc, http/protobuf or http/json; did you mean http/protobuf?); using \
          http/protobuf (the default)"
        ],
        "{}",
        run.stderr
    );
    let got = receiver.wait_for(Duration::from_secs(10), |r| {
        r.spans.iter().any(|s| s.name == "plain")
    });
    assert!(got.spans.iter().any(|s| s.name == "plain"));
}

#[test]
fn a_signal_path_on_the_generic_endpoint_is_one_warning_with_the_fix() {
    let receiver = Receiver::start();
    let rotel = Rotel::start(receiver.addr);
    let wrong = format!("{}/v1/traces", rotel.http_endpoint());
    let run = run_child(
        "plain",
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", wrong.clone())],
        LIMIT,
    );
    assert!(run.status.success(), "{}", run.stderr);
    let warnings = lines_with(&run, "could not export");
    assert_eq!(
        warnings.len(),
        1,
        "three signals, one cause, one warning: {}",
        run.stderr
    );
    let w = warnings[0];
    assert!(
        w.contains("over http/protobuf to ")
            && w.contains(&format!("{wrong}/v1/"))
            && w.contains("the collector answered HTTP 404 Not Found")
            && w.contains(&format!(
                "OTEL_EXPORTER_OTLP_ENDPOINT=\"{wrong}\" has a signal path, but it is the \
                 collector's base URL and /v1/traces, /v1/logs and /v1/metrics are appended to \
                 it"
            ))
            && w.contains(&format!(
                "set OTEL_EXPORTER_OTLP_ENDPOINT={}, or give a full URL per signal in \
                 OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                rotel.http_endpoint()
            )),
        "{w}"
    );
    // Refused requests are permanent: counted as such, not retried.
    assert!(
        run.stderr
            .contains("failed permanently (not retried): 4 spans, 3 log records"),
        "{}",
        run.stderr
    );
}

#[test]
fn http_to_the_grpc_port_says_which_port_is_which() {
    let receiver = Receiver::start();
    let rotel = Rotel::start(receiver.addr);
    let run = run_child(
        "plain",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", rotel.grpc_endpoint()),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "1000".into()),
        ],
        LIMIT,
    );
    assert!(run.status.success(), "{}", run.stderr);
    let warnings = lines_with(&run, "could not export");
    assert!(!warnings.is_empty(), "{}", run.stderr);
    assert!(
        warnings.iter().all(|w| w.contains(&format!(
            "the server at {} did not answer in OTLP/HTTP; is OTEL_EXPORTER_OTLP_ENDPOINT the \
             collector's OTLP/HTTP port? OTLP/gRPC listens on 4317 and OTLP/HTTP on 4318 by \
             default",
            rotel.grpc_endpoint()
        ))),
        "{}",
        run.stderr
    );
}

#[test]
fn failed_metric_exports_are_reported_with_traces_and_logs_off() {
    let port = support::free_port();
    let run = run_child(
        "plain",
        &[
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("http://127.0.0.1:{port}"),
            ),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "500".into()),
            ("OTEL_TRACES_EXPORTER", "none".into()),
            ("OTEL_LOGS_EXPORTER", "none".into()),
        ],
        LIMIT,
    );
    assert!(run.status.success(), "{}", run.stderr);
    let warnings = lines_with(&run, "could not export");
    assert_eq!(warnings.len(), 1, "{}", run.stderr);
    assert!(
        warnings[0].contains(&format!(
            "metric points over http/protobuf to http://127.0.0.1:{port}/v1/metrics"
        )) && warnings[0].contains("connection refused"),
        "{}",
        run.stderr
    );
    // started, ended for each of the four statuses (bound from the start: a
    // status no session had yet reports 0), duration.
    assert!(
        run.stderr
            .contains("metric points 6 handed, 0 exported, 6 failed"),
        "{}",
        run.stderr
    );
}

#[test]
fn with_nothing_configured_the_first_failure_names_the_default_endpoint_and_the_console() {
    // The default endpoint is http://localhost:4318: only meaningful when nothing
    // listens there on this machine.
    let taken = std::net::TcpStream::connect(("127.0.0.1", 4318)).is_ok()
        || std::net::TcpStream::connect(("::1", 4318)).is_ok();
    let run = run_child("plain", &[], LIMIT);
    assert!(run.status.success(), "{}", run.stderr);
    if taken {
        eprintln!("something listens on localhost:4318; the default endpoint was reachable");
        return;
    }
    // Nothing listens: not retried at exit, so the program ends at once.
    assert!(run.elapsed < Duration::from_secs(3), "{:?}", run.elapsed);
    let warnings = lines_with(&run, "could not export");
    assert_eq!(warnings.len(), 1, "{}", run.stderr);
    assert!(
        warnings[0].contains("over http/protobuf to http://localhost:4318/v1/")
            && warnings[0].contains(
                "no endpoint is configured, so the default http://localhost:4318 \
                 (http/protobuf) was used: set OTEL_EXPORTER_OTLP_ENDPOINT to your collector \
                 (and OTEL_EXPORTER_OTLP_PROTOCOL to grpc, http/protobuf or http/json), or print \
                 telemetry on the console with OTEL_TRACES_EXPORTER=console \
                 OTEL_LOGS_EXPORTER=console OTEL_METRICS_EXPORTER=console (none turns a signal \
                 off)"
            ),
        "{}",
        run.stderr
    );
}

#[test]
fn a_malformed_header_list_is_named_by_key_and_no_value_is_printed() {
    let port = support::free_port();
    let run = run_child(
        "plain",
        &[
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("http://127.0.0.1:{port}"),
            ),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "300".into()),
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "authorization=Bearer%20s3cr3t-token,x-tenant s3cr3t-tenant".into(),
            ),
        ],
        LIMIT,
    );
    assert!(run.status.success(), "{}", run.stderr);
    assert!(
        run.stderr.contains(
            "OTEL_EXPORTER_OTLP_HEADERS: entry 2 has no '=' (expected key=value,key2=value2; \
             values URL-encoded); it is not sent"
        ),
        "{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains("s3cr3t") && !run.stdout.contains("s3cr3t"),
        "{}",
        run.stderr
    );
}
