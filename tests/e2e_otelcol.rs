//! The standard OpenTelemetry Collector, not only rotel: every file of
//! `collector-config/` passes the collector's own `validate`, and the main one,
//! `otelcol.yaml`, carries the quickstart's sessions (spans, lifecycle, log
//! events, metrics) to a backend over OTLP gRPC and over OTLP/HTTP, run as it is
//! (only its `${env:…}` settings point it at free ports and at this test's
//! receiver). The agent file runs in `e2e_fleet.rs`, the stability file in
//! `e2e_prometheus.rs`.
//!
//! Needs the collector: `bash scripts/install-otelcol.sh` (the README's test
//! command runs it).

mod support;

use std::time::Duration;

use support::otelcol::{config, validate, Otelcol};
use support::{run_child, Received, Receiver};

const LIMIT: Duration = Duration::from_secs(60);

#[test]
fn every_collector_config_passes_the_collectors_own_validation() {
    let dir = config("");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("collector-config/")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let names: Vec<String> = files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "otelcol-agent.yaml",
            "otelcol-stability.yaml",
            "otelcol.yaml"
        ],
        "a new file in collector-config/ needs a test that runs it"
    );
    for file in &files {
        // As shipped (the defaults of every ${env:…} setting) …
        validate(file, &[]).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        // … and as the tests run it.
        validate(
            file,
            &[
                ("OTELCOL_GATEWAYS", "[127.0.0.1:1, 127.0.0.1:2]".into()),
                ("OTELCOL_BACKEND", "127.0.0.1:3".into()),
            ],
        )
        .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    }
}

/// The check can fail: what the real collector rejected in the agent file
/// before it ever ran (`port` of the DNS resolver as a number).
#[test]
fn validation_rejects_what_the_collector_would_refuse_to_run() {
    let dir = support::tls::TempDir::new("otelcol-bad");
    let shipped = std::fs::read_to_string(config("otelcol-agent.yaml")).expect("agent file");
    let broken = shipped.replacen(
        "      static:\n        # The gateways",
        "      dns:\n        hostname: gateways.example\n        port: 4317\n      static:\n        # The gateways",
        1,
    );
    assert_ne!(broken, shipped, "the agent file changed: update this test");
    let file = dir.path("agent.yaml");
    std::fs::write(&file, broken).expect("write");
    let err = validate(&file, &[]).expect_err("an integer port must be refused");
    assert!(err.contains("port"), "{err}");
}

fn quickstart_through(protocol: &str) {
    let backend = Receiver::start();
    let col = Otelcol::start(
        &config("otelcol.yaml"),
        &[
            ("OTELCOL_BACKEND", backend.addr.to_string()),
            ("OTELCOL_BATCH_TIMEOUT", "10ms".into()),
        ],
    );
    let endpoint = if protocol == "grpc" {
        col.grpc_endpoint()
    } else {
        col.http_endpoint()
    };
    let run = run_child(
        "example:quickstart",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol.to_string()),
        ],
        LIMIT,
    );
    assert!(run.status.success(), "{}\n{}", run.stdout, run.stderr);
    let complete = |r: &Received| {
        r.spans.iter().filter(|s| s.name == "session").count() == 2
            && r.logs
                .iter()
                .filter(|l| l.event_name == "session.end")
                .count()
                == 2
            && r.points.iter().any(|p| p.name == "otel_session.ended")
    };
    let got = backend.wait_for(Duration::from_secs(20), complete);
    assert!(
        complete(&got),
        "through otelcol over {protocol}: {} spans, {} logs, {} points\ncollector: {}",
        got.spans.len(),
        got.logs.len(),
        got.points.len(),
        col.log()
    );
    let summaries: Vec<_> = got.spans.iter().filter(|s| s.name == "session").collect();
    let first = summaries[0]
        .sid()
        .expect("summary's session.id")
        .to_string();
    assert_eq!(
        summaries[0].attrs["app.plan"], "free",
        "the callback's attribute"
    );
    let checkout = got
        .spans
        .iter()
        .find(|s| s.name == "checkout")
        .expect("the app's span");
    assert_eq!(checkout.sid(), Some(first.as_str()));
    assert_eq!(checkout.session_id_count, 1, "one session.id, unchanged");
    assert_eq!(
        checkout.resource["service.version"],
        env!("CARGO_PKG_VERSION")
    );
    assert!(got
        .logs
        .iter()
        .any(|l| l.event_name == "session.start" && l.sid() == Some(first.as_str())));
    let statuses: Vec<&str> = got
        .points
        .iter()
        .filter(|p| p.name == "otel_session.ended" && p.value > 0.0)
        .filter_map(|p| p.attrs.get("otel_session.status").map(String::as_str))
        .collect();
    assert!(statuses.contains(&"errored"), "{statuses:?}");
    // The debug exporter printed the session too (detailed verbosity).
    drop(got);
    let log = col.log();
    assert!(
        log.contains(&format!("session.id: Str({first})")),
        "debug output names the session: {}",
        &log[..log.len().min(2000)]
    );
}

#[test]
fn the_quickstart_reaches_a_backend_through_otelcol_yaml_over_grpc() {
    quickstart_through("grpc");
}

#[test]
fn the_quickstart_reaches_a_backend_through_otelcol_yaml_over_http() {
    quickstart_through("http/protobuf");
}
