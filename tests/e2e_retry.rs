//! Retries, end to end: a child program using `init!()` exports to a collector
//! that refuses for a few seconds (HTTP 503, with and without `Retry-After`;
//! gRPC `UNAVAILABLE`) and then recovers: nothing that fits in the retry window
//! (the export timeout) is lost, and the delivery report counts the retries. A
//! permanent refusal (HTTP 400, gRPC `INVALID_ARGUMENT`) is not retried: the
//! collector sees one request per export.

mod support;

use std::time::Duration;

use support::fake_otlp::{Answer, FakeGrpc, FakeHttp};
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

fn recovers(answer: Answer, min_gap: Duration) {
    let collector = FakeHttp::start(answer);
    let run = burst(collector.endpoint(), "http/protobuf", 8000);
    assert!(run.status.success(), "{}", run.stderr);
    let seen = collector.seen();
    let traces = seen.on("/v1/traces");
    let refused = traces.iter().filter(|r| r.status == 503).count();
    assert!(refused >= 2, "503 answered {refused} times");
    assert_eq!(traces.last().map(|r| r.status), Some(200), "then accepted");
    // Nothing lost: every span reached the collector, once.
    let burst = seen.spans.iter().filter(|s| *s == "burst").count();
    assert_eq!(burst, SPANS, "{}", run.stderr);
    assert!(
        seen.spans.iter().any(|s| s == "session"),
        "the session summary too"
    );
    let gaps: Vec<Duration> = traces
        .windows(2)
        .map(|w| w[1].at.duration_since(w[0].at))
        .collect();
    assert!(
        gaps.iter().all(|g| *g >= min_gap),
        "waits between attempts {gaps:?}, at least {min_gap:?}"
    );
    assert!(
        !run.stderr.contains("could not export"),
        "nothing failed: {}",
        run.stderr
    );
    let (handed, exported, failed, retried, permanent) = span_report(&run);
    assert_eq!(
        (exported, failed, permanent),
        (handed, 0, 0),
        "{}",
        run.stderr
    );
    assert_eq!(
        retried, handed,
        "the retried spans are counted: {}",
        run.stderr
    );
}

#[test]
fn http_503_for_a_few_seconds_loses_nothing_with_exponential_backoff() {
    recovers(
        Answer::FailFor {
            status: 503,
            retry_after: None,
            window: Duration::from_millis(2500),
        },
        Duration::from_millis(200),
    );
}

#[test]
fn http_503_with_retry_after_is_honoured() {
    recovers(
        Answer::FailFor {
            status: 503,
            retry_after: Some(1),
            window: Duration::from_millis(1800),
        },
        Duration::from_millis(950),
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
    let collector = FakeGrpc::start(tonic::Code::Unavailable, Some(Duration::from_millis(2500)));
    let run = burst(collector.endpoint(), "grpc", 8000);
    assert!(run.status.success(), "{}", run.stderr);
    let seen = collector.seen();
    assert!(seen.requests.len() >= 3, "retried: {:?}", seen.requests);
    assert_eq!(
        seen.spans.iter().filter(|s| *s == "burst").count(),
        SPANS,
        "{}",
        run.stderr
    );
    let (handed, exported, failed, retried, _) = span_report(&run);
    assert_eq!(
        (exported, failed, retried),
        (handed, 0, handed),
        "{}",
        run.stderr
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
fn a_collector_that_stays_down_is_given_up_within_the_export_timeout() {
    // Nothing listens: refused connections are retried until the timeout, then
    // counted as failed (not permanent), and the program still ends promptly.
    let port = support::free_port();
    let run = burst(format!("http://127.0.0.1:{port}"), "http/protobuf", 1500);
    assert!(run.status.success(), "{}", run.stderr);
    assert!(run.elapsed < Duration::from_secs(6), "{:?}", run.elapsed);
    assert!(
        run.stderr
            .contains("connection refused: nothing listens at"),
        "{}",
        run.stderr
    );
    let (handed, exported, failed, retried, permanent) = span_report(&run);
    assert_eq!(
        (exported, failed, retried, permanent),
        (0, handed, handed, 0),
        "{}",
        run.stderr
    );
}
