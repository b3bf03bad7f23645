//! End to end through a real TLS terminator: nginx (from the Debian packages,
//! `bash scripts/install-tls-proxy.sh`) in front of rotel, which receives
//! plaintext only, with certificates this test makes (a private CA, a server
//! certificate, a client certificate for mutual TLS). A child program using
//! `init!()` exports over gRPC and OTLP/HTTP; what arrives is read from the
//! receiver rotel forwards to. Also: untrusted and wrong-name certificates, an API
//! key header (never printed), a TLS file that cannot be read, and nothing of
//! the export stack's own telemetry fed back while it exports over TLS.

mod support;

use std::cell::Cell;
use std::time::Duration;

use support::tls::{Pki, TlsProxy};
use support::{run_child, ChildRun, Received, Receiver, Rotel};

const LIMIT: Duration = Duration::from_secs(25);
const KEY: &str = "k3y-that-must-never-be-printed";

struct Chain {
    receiver: Receiver,
    _rotel: Rotel,
    proxy: TlsProxy,
    pki: Pki,
    /// How many runs delivered through this chain so far.
    runs: Cell<usize>,
}

fn chain() -> Chain {
    let pki = Pki::new();
    let receiver = Receiver::start();
    let rotel = Rotel::start(receiver.addr);
    let proxy = TlsProxy::start(&pki, &rotel, KEY);
    Chain {
        receiver,
        _rotel: rotel,
        proxy,
        pki,
        runs: Cell::new(0),
    }
}

fn env<'a>(protocol: &str, port: u16, more: &[(&'a str, String)]) -> Vec<(&'a str, String)> {
    let mut env: Vec<(&'a str, String)> = vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", TlsProxy::url(port)),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol.to_string()),
        ("OTEL_SERVICE_NAME", "e2e-tls".to_string()),
        // TLS failures are retried like any connection failure: keep it short.
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "2000".to_string()),
    ];
    env.extend(more.iter().cloned());
    env
}

/// The span and log of a `plain` run arrived, stamped with its session, and its
/// metric: a point carries no session, and each run sends one
/// `otel_session.started` point, so the `runs`-th run through a chain is seen
/// only when `runs` of them arrived (not by an earlier run's point).
fn arrived(got: &Received, sid: &str, runs: usize) -> bool {
    got.spans
        .iter()
        .any(|s| s.name == "plain" && s.sid() == Some(sid))
        && got
            .logs
            .iter()
            .any(|l| l.body == "plain log" && l.sid() == Some(sid))
        && got
            .points
            .iter()
            .filter(|p| p.name == "otel_session.started")
            .count()
            >= runs
}

fn assert_clean(run: &ChildRun) {
    assert!(run.status.success(), "{}\n{}", run.stdout, run.stderr);
    assert!(
        !run.stderr.contains("warning"),
        "no warning expected: {}",
        run.stderr
    );
}

fn delivered(c: &Chain, run: &ChildRun) {
    assert_clean(run);
    let sid = run.get("SESSION").expect("session printed");
    let runs = c.runs.get() + 1;
    c.runs.set(runs);
    let got = c
        .receiver
        .wait_for(Duration::from_secs(10), |r| arrived(r, &sid, runs));
    assert!(
        arrived(&got, &sid, runs),
        "span, log and metric of run {runs} through TLS (session {sid}): {} spans, {} logs, {} \
         points",
        got.spans.len(),
        got.logs.len(),
        got.points.len()
    );
}

/// Also with `RUST_LOG=trace`: the export stack (tonic, tower, h2, hyper,
/// reqwest) emits its own `tracing` events while it exports over TLS, and every
/// export runs on the suppressed export runtime (gRPC, and HTTP through our
/// client with the TLS settings), so none of them comes back as telemetry.
#[test]
fn grpc_and_http_deliver_through_tls_with_a_private_ca() {
    let c = chain();
    let ca = c.pki.file("ca.pem");
    for (protocol, port) in [("grpc", c.proxy.grpc), ("http/protobuf", c.proxy.http)] {
        let run = run_child(
            "plain",
            &env(
                protocol,
                port,
                &[
                    ("OTEL_EXPORTER_OTLP_CERTIFICATE", ca.clone()),
                    ("RUST_LOG", "trace".into()),
                ],
            ),
            LIMIT,
        );
        delivered(&c, &run);
    }
    c.receiver.received().assert_nothing_fed_back("e2e_child");
    // The per-signal variables work as well (and win over the generic ones).
    let run = run_child(
        "plain",
        &env(
            "http/protobuf",
            c.proxy.http,
            &[
                (
                    "OTEL_EXPORTER_OTLP_CERTIFICATE",
                    "/nonexistent/ca.pem".into(),
                ),
                ("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", ca.clone()),
                ("OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE", ca.clone()),
                ("OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE", ca.clone()),
            ],
        ),
        LIMIT,
    );
    delivered(&c, &run);
}

#[test]
fn mutual_tls_delivers_with_a_client_certificate_and_fails_clearly_without() {
    let c = chain();
    let ca = c.pki.file("ca.pem");
    let identity = [
        ("OTEL_EXPORTER_OTLP_CERTIFICATE", ca.clone()),
        (
            "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
            c.pki.file("client.pem"),
        ),
        ("OTEL_EXPORTER_OTLP_CLIENT_KEY", c.pki.file("client.key")),
    ];
    for (protocol, port) in [
        ("grpc", c.proxy.mtls_grpc),
        ("http/protobuf", c.proxy.mtls_http),
    ] {
        let run = run_child("plain", &env(protocol, port, &identity), LIMIT);
        delivered(&c, &run);
    }

    // Without the client certificate the proxy refuses (nginx answers 400 after
    // the handshake), with one warning that says what to set; the app exits 0.
    let without = [("OTEL_EXPORTER_OTLP_CERTIFICATE", ca)];
    let http = run_child(
        "plain",
        &env("http/protobuf", c.proxy.mtls_http, &without),
        LIMIT,
    );
    assert!(http.status.success(), "{}", http.stderr);
    let url = format!("https://127.0.0.1:{}/v1/", c.proxy.mtls_http);
    let warnings: Vec<&str> = http
        .stderr
        .lines()
        .filter(|l| l.contains("could not export"))
        .collect();
    assert_eq!(warnings.len(), 1, "one cause, one warning: {}", http.stderr);
    assert!(
        warnings[0].contains(&format!("over http/protobuf to {url}"))
            && warnings[0].contains(
                "TLS failed: the collector requires a client certificate it trusts (mutual \
                 TLS); set OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE and \
                 OTEL_EXPORTER_OTLP_CLIENT_KEY to the client certificate and key (PEM)"
            ),
        "{}",
        http.stderr
    );
    assert!(
        http.stderr.contains("failed permanently (not retried): "),
        "{}",
        http.stderr
    );
    let grpc = run_child("plain", &env("grpc", c.proxy.mtls_grpc, &without), LIMIT);
    assert!(grpc.status.success(), "{}", grpc.stderr);
    assert!(
        grpc.stderr.contains("the collector answered gRPC status Internal; that is not an OTLP answer: with https and no client certificate configured, most likely a TLS proxy that requires one (mutual TLS): set OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE and OTEL_EXPORTER_OTLP_CLIENT_KEY"),
        "{}",
        grpc.stderr
    );
}

#[test]
fn an_untrusted_or_misnamed_certificate_is_refused_with_a_clear_tls_warning() {
    let c = chain();
    for (protocol, port) in [("grpc", c.proxy.grpc), ("http/protobuf", c.proxy.http)] {
        // No CA given: the platform's roots do not know the test CA.
        let run = run_child("plain", &env(protocol, port, &[]), LIMIT);
        assert!(run.status.success(), "{}", run.stderr);
        let tls: Vec<&str> = run
            .stderr
            .lines()
            .filter(|l| l.contains("TLS failed"))
            .collect();
        assert_eq!(
            tls.len(),
            1,
            "one warning for the cause, not one per signal: {}",
            run.stderr
        );
        assert!(
            tls[0].contains(&format!("over {protocol} to https://127.0.0.1:{port}"))
                && tls[0].contains("invalid peer certificate: UnknownIssuer")
                && tls[0].contains(
                    "TLS failed: the collector's certificate is not trusted; if a private CA \
                     signed it, set OTEL_EXPORTER_OTLP_CERTIFICATE"
                ),
            "{}",
            run.stderr
        );
        assert!(
            run.elapsed < Duration::from_secs(10),
            "bounded: {:?}",
            run.elapsed
        );
    }
    // A certificate for another name than the endpoint's host.
    let run = run_child(
        "plain",
        &env(
            "http/protobuf",
            c.proxy.other_name_http,
            &[("OTEL_EXPORTER_OTLP_CERTIFICATE", c.pki.file("ca.pem"))],
        ),
        LIMIT,
    );
    assert!(run.status.success(), "{}", run.stderr);
    assert!(
        run.stderr.contains(
            "TLS failed: the collector's certificate is not valid for 127.0.0.1; use the host \
             name the certificate was issued for in OTEL_EXPORTER_OTLP_ENDPOINT"
        ),
        "{}",
        run.stderr
    );
    assert_eq!(
        c.receiver.received().spans.len(),
        0,
        "nothing went through an unverified connection"
    );
}

#[test]
fn an_api_key_header_is_sent_and_never_printed() {
    let c = chain();
    let ca = c.pki.file("ca.pem");
    for (protocol, port) in [
        ("grpc", c.proxy.key_grpc),
        ("http/protobuf", c.proxy.key_http),
    ] {
        let good = env(
            protocol,
            port,
            &[
                ("OTEL_EXPORTER_OTLP_CERTIFICATE", ca.clone()),
                ("OTEL_EXPORTER_OTLP_HEADERS", format!("x-api-key={KEY}")),
            ],
        );
        delivered(&c, &run_child("plain", &good, LIMIT));

        // A wrong key: refused, reported, and neither key appears anywhere, in
        // warnings or in the Debug output of the guard and the providers.
        let wrong = format!("{KEY}-wrong");
        let bad = env(
            protocol,
            port,
            &[
                ("OTEL_EXPORTER_OTLP_CERTIFICATE", ca.clone()),
                ("OTEL_EXPORTER_OTLP_HEADERS", format!("x-api-key={wrong}")),
            ],
        );
        let run = run_child("debug", &bad, LIMIT);
        assert!(run.status.success(), "{}", run.stderr);
        assert!(
            run.stderr.contains("refused the credentials")
                && run.stderr.contains("OTEL_EXPORTER_OTLP_HEADERS"),
            "{}",
            run.stderr
        );
        assert!(run.stdout.contains("DEBUG_TRACER=Some("), "{}", run.stdout);
        for output in [&run.stdout, &run.stderr] {
            assert!(!output.contains(KEY), "a key was printed: {output}");
        }
    }
}

#[test]
fn an_unreadable_tls_file_is_one_warning_and_only_that_signal_is_off() {
    let c = chain();
    let ca = c.pki.file("ca.pem");
    let run = run_child(
        "plain",
        &env(
            "grpc",
            c.proxy.grpc,
            &[
                ("OTEL_EXPORTER_OTLP_CERTIFICATE", ca),
                (
                    "OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE",
                    "/nonexistent/logs-ca.pem".into(),
                ),
            ],
        ),
        LIMIT,
    );
    assert!(run.status.success(), "{}", run.stderr);
    let warnings: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains("warning"))
        .collect();
    assert_eq!(
        warnings,
        ["otel-session: warning: OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE=\"/nonexistent/logs-ca.pem\" \
          cannot be read (No such file or directory (os error 2)); logs are not exported"],
        "{}",
        run.stderr
    );
    let sid = run.get("SESSION").expect("session");
    let got = c.receiver.wait_for(Duration::from_secs(10), |r| {
        r.spans.iter().any(|s| s.name == "plain")
            && r.points.iter().any(|p| p.name == "otel_session.started")
    });
    assert!(
        got.spans
            .iter()
            .any(|s| s.name == "plain" && s.sid() == Some(sid.as_str())),
        "traces still flow"
    );
    assert!(got.logs.is_empty(), "logs are off");
}
