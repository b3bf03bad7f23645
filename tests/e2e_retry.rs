//! Retries, end to end: a child program using `init!()` exports to a collector
//! that refuses for a few seconds (HTTP 503, with and without `Retry-After`;
//! gRPC `UNAVAILABLE`) and then recovers: nothing that fits in the retry window
//! (the export timeout while running; at exit, the guard's shutdown timeout) is
//! lost, and the delivery report counts the retries. A permanent refusal (HTTP
//! 400, gRPC `INVALID_ARGUMENT`) is not retried: the collector sees one request
//! per export. A collector that is not there is retried while the program runs,
//! not at exit.

mod support;

use std::time::Duration;

use support::fake_otlp::{Answer, FakeGrpc, FakeHttp, Request, Seen};
use support::{run_child, ChildRun};

const LIMIT: Duration = Duration::from_secs(25);
const SPANS: usize = 50;

fn burst(endpoint: String, protocol: &str, timeout_ms: u64) -> ChildRun {
    run_child(
        "burst",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol.to_string()),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", timeout_ms.to_string()),
            ("OTEL_LOGS_EXPORTER", "none".to_string()),
            ("OTEL_METRICS_EXPORTER", "none".to_string()),
            ("E2E_SPANS", SPANS.to_string()),
        ],
        LIMIT,
    )
}

/// The numbers of the shutdown report's line, in order.
fn report_numbers(run: &ChildRun) -> Vec<u64> {
    let report = run
        .stderr
        .lines()
        .find(|l| l.contains("delivery report: spans"))
        .unwrap_or_else(|| panic!("no delivery report: {}", run.stderr));
    report
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect()
}

/// `(handed, exported, failed, retried, permanent)` of the spans.
fn span_report(run: &ChildRun) -> (u64, u64, u64, u64, u64) {
    let n = report_numbers(run);
    // spans h e f d; logs h e f d; metrics h e f d; retried s l m; permanent s l m
    (n[0], n[1], n[2], n[12], n[15])
}

/// While the program runs: 100 spans, a flush, 100 spans, a flush (retries
/// within the export timeout, 8 s here).
fn phases(endpoint: String, protocol: &str) -> ChildRun {
    support::run_child_with(
        "phases",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol.to_string()),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "8000".to_string()),
            ("OTEL_LOGS_EXPORTER", "none".to_string()),
            ("OTEL_METRICS_EXPORTER", "none".to_string()),
        ],
        LIMIT,
        |_| {},
    )
}

/// Every span of `run` reached the collector, once, after refusals spaced by at
/// least `min_gap`, and the report counts the retries and no loss.
fn lost_nothing(run: &ChildRun, seen: &Seen, expected: &[(&str, usize)], min_gap: Duration) {
    assert!(run.status.success(), "{}", run.stderr);
    let traces: Vec<&Request> = seen
        .requests
        .iter()
        .filter(|r| r.path == "/v1/traces" || r.path == "traces")
        .collect();
    let refused = traces
        .iter()
        .filter(|r| r.status != 200 && r.status != 0)
        .count();
    assert!(refused >= 2, "refused {refused} times: {traces:?}");
    for (name, n) in expected {
        let got = seen.spans.iter().filter(|s| s == name).count();
        assert_eq!(got, *n, "{name}: {}", run.stderr);
    }
    assert!(
        seen.spans.iter().any(|s| s == "session"),
        "the session summary too"
    );
    let gaps: Vec<Duration> = traces
        .windows(2)
        .filter(|w| w[0].status != 200 && w[0].status != 0)
        .map(|w| w[1].at.duration_since(w[0].at))
        .collect();
    assert!(
        gaps.iter().all(|g| *g >= min_gap),
        "waits after refusals {gaps:?}, at least {min_gap:?}"
    );
    assert!(
        !run.stderr.contains("could not export"),
        "nothing failed: {}",
        run.stderr
    );
    let (handed, exported, failed, retried, permanent) = span_report(run);
    assert_eq!(
        (exported, failed, permanent),
        (handed, 0, 0),
        "{}",
        run.stderr
    );
    assert!(retried > 0, "the retried spans are counted: {}", run.stderr);
}

#[test]
fn http_503_for_a_few_seconds_loses_nothing_with_exponential_backoff() {
    let collector = FakeHttp::start(Answer::FailFor {
        status: 503,
        retry_after: None,
        window: Duration::from_millis(3500),
    });
    let run = phases(collector.endpoint(), "http/protobuf");
    lost_nothing(
        &run,
        &collector.seen(),
        &[("while-down", 100), ("after-up", 100)],
        Duration::from_millis(240),
    );
}

#[test]
fn http_503_with_retry_after_is_honoured_also_while_shutting_down() {
    // The spans go out as the program exits: retries go on while they fit in
    // the guard's shutdown timeout (5 s).
    let collector = FakeHttp::start(Answer::FailFor {
        status: 503,
        retry_after: Some(1),
        window: Duration::from_millis(1800),
    });
    let run = burst(collector.endpoint(), "http/protobuf", 8000);
    lost_nothing(
        &run,
        &collector.seen(),
        &[("burst", SPANS)],
        Duration::from_millis(990),
    );
}

#[test]
fn http_400_is_permanent_and_not_retried() {
    let collector = FakeHttp::start(Answer::Always(400));
    let run = burst(collector.endpoint(), "http/protobuf", 8000);
    assert!(run.status.success(), "{}", run.stderr);
    assert!(
        run.elapsed < Duration::from_secs(5),
        "no waiting: {:?}",
        run.elapsed
    );
    assert_eq!(
        collector.seen().on("/v1/traces").len(),
        1,
        "one export, one request"
    );
    assert!(
        run.stderr.contains(
            "the collector answered HTTP 400 Bad Request; the collector rejected the data as \
             malformed (permanent: not retried)"
        ),
        "{}",
        run.stderr
    );
    let (handed, exported, failed, retried, permanent) = span_report(&run);
    assert!(handed >= SPANS as u64);
    assert_eq!(
        (exported, failed, retried, permanent),
        (0, handed, 0, handed),
        "{}",
        run.stderr
    );
}

#[test]
fn grpc_unavailable_for_a_few_seconds_loses_nothing() {
    let collector = FakeGrpc::start(tonic::Code::Unavailable, Some(Duration::from_millis(3500)));
    let run = phases(collector.endpoint(), "grpc");
    lost_nothing(
        &run,
        &collector.seen(),
        &[("while-down", 100), ("after-up", 100)],
        Duration::from_millis(240),
    );
}

#[test]
fn grpc_invalid_argument_is_permanent_and_not_retried() {
    let collector = FakeGrpc::start(tonic::Code::InvalidArgument, None);
    let run = burst(collector.endpoint(), "grpc", 8000);
    assert!(run.status.success(), "{}", run.stderr);
    assert_eq!(
        collector.seen().requests.len(),
        1,
        "one export, one request"
    );
    assert!(
        run.stderr
            .contains("the collector answered gRPC status InvalidArgument"),
        "{}",
        run.stderr
    );
    let (handed, _, failed, retried, permanent) = span_report(&run);
    assert_eq!(
        (failed, retried, permanent),
        (handed, 0, handed),
        "{}",
        run.stderr
    );
}

#[test]
fn a_collector_that_stays_down_is_retried_within_the_timeout_and_not_at_exit() {
    // Nothing listens. While the program runs, each flush retries the refused
    // connection until the export timeout (1.5 s) runs out; at exit nothing is
    // retried (nothing listens), so the program ends at once, saying why.
    let port = support::free_port();
    let run = support::run_child_with(
        "phases",
        &[
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("http://127.0.0.1:{port}"),
            ),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "1500".to_string()),
            ("OTEL_LOGS_EXPORTER", "none".to_string()),
            ("OTEL_METRICS_EXPORTER", "none".to_string()),
        ],
        LIMIT,
        |_| {},
    );
    assert!(run.status.success(), "{}", run.stderr);
    assert!(run.elapsed < Duration::from_secs(6), "{:?}", run.elapsed);
    assert!(
        run.elapsed > Duration::from_millis(900),
        "two flushes retried for a while: {:?}",
        run.elapsed
    );
    let warnings: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains("could not export"))
        .collect();
    assert_eq!(warnings.len(), 1, "{}", run.stderr);
    assert!(
        warnings[0].contains(&format!(
            "connection refused: nothing listens at http://127.0.0.1:{port}"
        )),
        "{}",
        run.stderr
    );
    let (handed, exported, failed, retried, permanent) = span_report(&run);
    assert_eq!(
        (exported, failed, permanent),
        (0, handed, 0),
        "{}",
        run.stderr
    );
    assert!(
        retried >= 200 && retried < handed,
        "the spans flushed while running were retried, the session's end at exit not: {}",
        run.stderr
    );
}
