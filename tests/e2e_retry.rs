//! Retries, end to end: a child program using `init!()` exports to a collector
//! that refuses for a few seconds (HTTP 503, with and without `Retry-After`;
//! gRPC `UNAVAILABLE`, and `RESOURCE_EXHAUSTED` with `RetryInfo`) and then
//! recovers: nothing that fits in the retry window (the export timeout while
//! running; at exit, the guard's shutdown timeout) is lost, and the delivery
//! report counts the retries. The retries are `opentelemetry-otlp`'s; the
//! bounds (the timeout, `0` for none, the cut at shutdown) and the counts are
//! ours. A permanent refusal (HTTP 400, gRPC `INVALID_ARGUMENT`,
//! `RESOURCE_EXHAUSTED` without `RetryInfo`) is not retried: the collector sees
//! one request per export. A collector that is not there is retried while the
//! program runs, not at exit.

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

/// The spans of [`phases`].
const PHASES: &[(&str, usize)] = &[("while-down", 100), ("after-up", 100)];

/// While the program runs: 100 spans, a flush, 100 spans, a flush (retries
/// within the export timeout, 8 s here).
fn phases(endpoint: String, protocol: &str) -> ChildRun {
    phases_within(endpoint, protocol, 8000)
}

/// [`phases`] with an export timeout of `timeout_ms`.
fn phases_within(endpoint: String, protocol: &str, timeout_ms: u64) -> ChildRun {
    support::run_child_with(
        "phases",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol.to_string()),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", timeout_ms.to_string()),
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
    lost_nothing(&run, &collector.seen(), PHASES, Duration::from_millis(240));
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
    lost_nothing(&run, &collector.seen(), PHASES, Duration::from_millis(240));
}

/// A gRPC collector that refuses every export with `code` (no `RetryInfo`): one
/// request per export, the warning `says` why, and the spans count as failed
/// permanently.
fn grpc_refusal_is_permanent(code: tonic::Code, says: &str) {
    let collector = FakeGrpc::start(code, None);
    let run = burst(collector.endpoint(), "grpc", 8000);
    assert!(run.status.success(), "{}", run.stderr);
    assert_eq!(
        collector.seen().requests.len(),
        1,
        "one export, one request"
    );
    assert!(run.stderr.contains(says), "{}", run.stderr);
    let (handed, _, failed, retried, permanent) = span_report(&run);
    assert_eq!(
        (failed, retried, permanent),
        (handed, 0, handed),
        "{}",
        run.stderr
    );
}

#[test]
fn grpc_invalid_argument_is_permanent_and_not_retried() {
    grpc_refusal_is_permanent(
        tonic::Code::InvalidArgument,
        "the collector answered gRPC status InvalidArgument",
    );
}

#[test]
fn a_collector_that_stays_down_is_retried_within_the_timeout_and_not_at_exit() {
    // Nothing listens. While the program runs, each flush retries the refused
    // connection until the export timeout (1.5 s) runs out; at exit nothing is
    // retried (nothing listens), so the program ends at once, saying why. Over
    // gRPC too: our connector sees the refused connection as it happens.
    for protocol in ["http/protobuf", "grpc"] {
        let port = support::free_port();
        let run = phases_within(format!("http://127.0.0.1:{port}"), protocol, 1500);
        assert!(run.status.success(), "{protocol}: {}", run.stderr);
        assert!(
            run.elapsed < Duration::from_secs(6),
            "{protocol}: {:?}",
            run.elapsed
        );
        assert!(
            run.elapsed > Duration::from_millis(900),
            "{protocol}: two flushes retried for a while: {:?}",
            run.elapsed
        );
        let warnings: Vec<&str> = run
            .stderr
            .lines()
            .filter(|l| l.contains("could not export"))
            .collect();
        assert_eq!(warnings.len(), 1, "{protocol}: {}", run.stderr);
        assert!(
            warnings[0].contains(&format!(
                "connection refused: nothing listens at http://127.0.0.1:{port}"
            )),
            "{protocol}: {}",
            run.stderr
        );
        let (handed, exported, failed, retried, permanent) = span_report(&run);
        assert_eq!(
            (exported, failed, permanent),
            (0, handed, 0),
            "{protocol}: {}",
            run.stderr
        );
        assert!(
            retried >= 200 && retried < handed,
            "{protocol}: the spans flushed while running were retried, the session's end at \
             exit not: {}",
            run.stderr
        );
    }
}

#[test]
fn grpc_resource_exhausted_is_retried_only_when_the_collector_sends_retry_info() {
    // Without RetryInfo: permanent.
    grpc_refusal_is_permanent(
        tonic::Code::ResourceExhausted,
        "the collector answered gRPC status ResourceExhausted; the collector is out of \
         capacity: retried only when it says when to (gRPC RetryInfo)",
    );
    // With RetryInfo (retry after 600 ms): retried after that wait, delivered.
    let collector = FakeGrpc::with_retry_info(
        tonic::Code::ResourceExhausted,
        Some(Duration::from_millis(1500)),
        Some(Duration::from_millis(600)),
    );
    let run = phases(collector.endpoint(), "grpc");
    lost_nothing(&run, &collector.seen(), PHASES, Duration::from_millis(590));
}

#[test]
fn a_timeout_of_zero_is_no_limit_and_the_shutdown_still_cuts_it() {
    // The spans go out as the program exits, to a collector that always
    // answers 503: with no export timeout, the retries go on until the guard's
    // shutdown deadline (5 s) cuts them, and the loss is reported.
    let collector = FakeHttp::start(Answer::Always(503));
    let run = burst(collector.endpoint(), "http/protobuf", 0);
    assert!(run.status.success(), "{}", run.stderr);
    assert!(
        run.elapsed > Duration::from_secs(3) && run.elapsed < Duration::from_secs(9),
        "retried until the shutdown deadline: {:?}",
        run.elapsed
    );
    assert!(
        collector.seen().on("/v1/traces").len() >= 3,
        "retried: {:?}",
        collector.seen().requests
    );
    assert!(
        run.stderr
            .contains("(cut short at shutdown): the collector answered HTTP 503"),
        "{}",
        run.stderr
    );
    let (handed, exported, failed, retried, _) = span_report(&run);
    assert_eq!(
        (exported, failed, retried),
        (0, handed, handed),
        "{}",
        run.stderr
    );
}
