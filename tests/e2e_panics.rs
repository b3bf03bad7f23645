//! Panics end to end through the real collector (rotel): a main-thread panic
//! delivers a `crashed` end (reason `crash`) and the app's own hook still runs;
//! caught worker panics leave the session running, crashed once; a panic inside
//! a request marks only that request's session.

mod support;

use std::time::Duration;

use support::{run_child, Received, Receiver, Rotel};

const LIMIT: Duration = Duration::from_secs(60);

fn summary<'a>(got: &'a Received, sid: &str) -> Option<&'a support::GotSpan> {
    got.spans
        .iter()
        .find(|s| s.scope == "otel-session" && s.name == "session" && s.sid() == Some(sid))
}

fn ended(got: &Received, status: &str) -> f64 {
    got.points
        .iter()
        .filter(|p| {
            p.name == "otel_session.ended"
                && p.attrs.get("otel_session.status").map(String::as_str) == Some(status)
        })
        .map(|p| p.value)
        .fold(0.0, f64::max)
}

#[test]
fn a_main_thread_panic_delivers_a_crashed_end_and_the_apps_hook_runs() {
    let receiver = Receiver::start();
    let rotel = Rotel::start(receiver.addr);
    let run = run_child(
        "panic-main",
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", rotel.http_endpoint())],
        LIMIT,
    );
    assert_eq!(
        run.status.code(),
        Some(101),
        "the panic still kills the program"
    );
    assert_eq!(
        run.get("USER_HOOK_RAN").as_deref(),
        Some("main thread gives up")
    );
    let a = run.get("A").unwrap();
    let got = receiver.wait_for(Duration::from_secs(10), |r| {
        summary(r, &a).is_some() && ended(r, "crashed") >= 1.0
    });
    let s = summary(&got, &a).expect("the crashed session's summary arrived");
    assert_eq!(s.attrs["otel_session.status"], "crashed");
    assert_eq!(s.attrs["otel_session.end_reason"], "crash");
    assert_eq!(s.attrs["otel_session.errors.unhandled"], "1");
    assert!(
        got.spans.iter().any(|s| s.name == "before-crash"),
        "telemetry before it too"
    );
    assert_eq!(ended(&got, "crashed"), 1.0, "the crash is in the metrics");
}

#[test]
fn caught_worker_panics_leave_the_session_running_crashed_once() {
    let receiver = Receiver::start();
    let rotel = Rotel::start(receiver.addr);
    let run = run_child(
        "panic-workers",
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", rotel.http_endpoint())],
        LIMIT,
    );
    assert!(run.status.success(), "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.get("SAME").as_deref(), Some("true"));
    assert_eq!(run.get("STATUS").as_deref(), Some("crashed"));
    assert_eq!(run.get("UNHANDLED").as_deref(), Some("1"));
    assert_eq!(
        run.stdout.matches("USER_HOOK_RAN=").count(),
        2,
        "the app's hook ran for both"
    );
    let a = run.get("A").unwrap();
    let got = receiver.wait_for(Duration::from_secs(10), |r| summary(r, &a).is_some());
    let s = summary(&got, &a).expect("summary");
    assert_eq!(s.attrs["otel_session.status"], "crashed");
    assert_eq!(s.attrs["otel_session.end_reason"], "shutdown");
    assert_eq!(s.attrs["otel_session.errors.unhandled"], "1");
}

#[test]
fn a_panic_inside_a_request_marks_only_that_request() {
    let receiver = Receiver::start();
    let rotel = Rotel::start(receiver.addr);
    let run = run_child(
        "panic-request",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", rotel.http_endpoint()),
            ("OTEL_SESSION_MODE", "request".into()),
        ],
        LIMIT,
    );
    assert!(run.status.success(), "{}\n{}", run.stdout, run.stderr);
    assert_eq!(
        run.get("APP_SESSION").as_deref(),
        Some(""),
        "no app session in request mode"
    );
    let got = receiver.wait_for(Duration::from_secs(10), |r| {
        ended(r, "crashed") >= 1.0 && ended(r, "ok") >= 2.0
    });
    assert_eq!(ended(&got, "crashed"), 1.0);
    assert_eq!(ended(&got, "ok"), 2.0);
    assert!(
        !got.spans.iter().any(|s| s.scope == "otel-session"),
        "no lifecycle: nothing ended for a crash"
    );
}

#[test]
fn a_run_mixing_ok_errored_and_crashed_sessions_has_matching_metric_totals() {
    let receiver = Receiver::start();
    let rotel = Rotel::start(receiver.addr);
    let run = run_child(
        "mixed",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", rotel.grpc_endpoint()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".into()),
            ("RUST_BACKTRACE", "0".into()),
        ],
        LIMIT,
    );
    assert!(run.status.success(), "{}", run.stderr);
    let n = |k: &str| run.get(k).unwrap().parse::<f64>().unwrap();
    let (ok, errored, crashed) = (n("OK"), n("ERRORED"), n("CRASHED"));
    assert_eq!(ok + errored + crashed, 30.0);
    let got = receiver.wait_for(Duration::from_secs(10), |r| {
        ended(r, "ok") + ended(r, "errored") + ended(r, "crashed") >= 31.0
    });
    // The session init!() started ends (replaced) before the first of the 30: ok.
    assert_eq!(ended(&got, "ok"), ok + 1.0);
    assert_eq!(ended(&got, "errored"), errored);
    assert_eq!(ended(&got, "crashed"), crashed);
    let started = got
        .points
        .iter()
        .filter(|p| p.name == "otel_session.started")
        .map(|p| p.value)
        .fold(0.0, f64::max);
    assert_eq!(started, 31.0, "started = ended: none left open");
    // The crash-free rate a dashboard computes from these.
    let rate = 1.0 - ended(&got, "crashed") / 31.0;
    assert!((rate - (1.0 - crashed / 31.0)).abs() < 1e-9);
}

#[test]
fn a_caught_main_thread_panic_ends_the_session_and_the_next_activity_starts_one() {
    let receiver = Receiver::start();
    let rotel = Rotel::start(receiver.addr);
    let run = run_child(
        "panic-main-caught",
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", rotel.http_endpoint())],
        LIMIT,
    );
    assert!(run.status.success(), "{}", run.stderr);
    let (a, b) = (run.get("A").unwrap(), run.get("B").unwrap());
    assert_ne!(a, b);
    let got = receiver.wait_for(Duration::from_secs(10), |r| {
        summary(r, &a).is_some() && summary(r, &b).is_some()
    });
    assert_eq!(
        summary(&got, &a).unwrap().attrs["otel_session.end_reason"],
        "crash"
    );
    let after = got
        .spans
        .iter()
        .find(|s| s.name == "after-caught-panic")
        .unwrap();
    assert_eq!(after.sid(), Some(b.as_str()));
    assert_eq!(
        summary(&got, &b).unwrap().attrs.get("session.previous_id"),
        Some(&a)
    );
}
