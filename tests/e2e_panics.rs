//! Panics end to end through the real collector (rotel): a main-thread panic
//! delivers a `crashed` end (reason `crash`) and the app's own hook still runs;
//! caught worker panics leave the session running, crashed once; a panic inside
//! a request marks only that request's session. Every panic is also one
//! exception record (FATAL when the process goes down, else ERROR) with its
//! session, location, thread, backtrace and span.

mod support;

use std::time::Duration;

use support::{run_child, Received, Receiver, Rotel};

const LIMIT: Duration = Duration::from_secs(60);

fn summary<'a>(got: &'a Received, sid: &str) -> Option<&'a support::GotSpan> {
    got.spans
        .iter()
        .find(|s| s.scope == "otel-session" && s.name == "session" && s.sid() == Some(sid))
}

/// The exception records (panics) that arrived.
fn exceptions(got: &Received) -> Vec<&support::GotLog> {
    got.logs
        .iter()
        .filter(|l| l.scope == "otel-session" && l.event_name == "exception")
        .collect()
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
    main_thread_panic(false);
}

/// The crash flush through the gRPC exporter (its own runtime) too.
#[test]
fn a_main_thread_panic_delivers_its_report_over_grpc() {
    main_thread_panic(true);
}

fn main_thread_panic(grpc: bool) {
    let receiver = Receiver::start();
    let rotel = Rotel::start(receiver.addr);
    let env = if grpc {
        vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT", rotel.grpc_endpoint()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".to_string()),
        ]
    } else {
        vec![("OTEL_EXPORTER_OTLP_ENDPOINT", rotel.http_endpoint())]
    };
    let run = run_child("panic-main", &env, LIMIT);
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

    // The crash report: one FATAL exception record, delivered before the
    // process died, naming the function, the place and the span.
    drop(got);
    let got = receiver.wait_for(Duration::from_secs(10), |r| {
        !exceptions(r).is_empty() && r.spans.iter().any(|s| s.name == "doomed")
    });
    let records = exceptions(&got);
    assert_eq!(records.len(), 1, "one record per panic");
    let r = records[0];
    assert_eq!(r.severity, 21, "FATAL: the process goes down");
    assert_eq!(r.sid(), Some(a.as_str()));
    assert_eq!(r.attrs["exception.type"], "panic");
    assert_eq!(r.attrs["exception.message"], "main thread gives up");
    assert_eq!(r.body, "main thread gives up");
    assert!(r.attrs["code.file.path"].ends_with("e2e_child.rs"));
    assert!(r.attrs["code.line.number"].parse::<u32>().unwrap() > 0);
    assert_eq!(r.attrs["thread.name"], "main");
    let first_frame = r.attrs["exception.stacktrace"]
        .lines()
        .next()
        .unwrap_or_default();
    assert!(
        first_frame.contains("give_up_on_main"),
        "the backtrace starts at the panicking function: {}",
        r.attrs["exception.stacktrace"]
    );
    let doomed = got.spans.iter().find(|s| s.name == "doomed").unwrap();
    assert_eq!(
        r.trace_id, doomed.trace_id,
        "in the trace of the span it hit"
    );
    assert_eq!(r.span_id, doomed.span_id);
    assert_eq!(doomed.status_code, 2, "that span failed");
    let s = summary(&got, &a).unwrap();
    let (_, event) = s
        .event_attrs
        .iter()
        .find(|(name, _)| name == "exception")
        .expect("the summary's exception event (trace-only backends)");
    assert_eq!(event["exception.message"], "main thread gives up");
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
    let got = receiver.wait_for(Duration::from_secs(10), |r| {
        summary(r, &a).is_some() && exceptions(r).len() >= 2
    });
    let s = summary(&got, &a).expect("summary");
    assert_eq!(s.attrs["otel_session.status"], "crashed");
    assert_eq!(s.attrs["otel_session.end_reason"], "shutdown");
    assert_eq!(s.attrs["otel_session.errors.unhandled"], "1");
    // Each panic reported, as an ERROR (the process goes on), in the session.
    let records = exceptions(&got);
    assert_eq!(records.len(), 2);
    let mut messages: Vec<&str> = records
        .iter()
        .map(|r| {
            assert_eq!(r.severity, 17, "ERROR");
            assert_eq!(r.sid(), Some(a.as_str()));
            r.attrs["exception.message"].as_str()
        })
        .collect();
    messages.sort();
    assert_eq!(messages, ["worker 0 failed", "worker 1 failed"]);
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
    drop(got);
    let got = receiver.wait_for(Duration::from_secs(10), |r| !exceptions(r).is_empty());
    let records = exceptions(&got);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].severity, 17, "ERROR: the server goes on");
    assert_eq!(
        records[0].sid(),
        run.get("FAILED_REQUEST").as_deref(),
        "the request's own session"
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
