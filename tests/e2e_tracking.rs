//! Sessions that track themselves, end to end through the real collector
//! (rotel), with real timeouts of about a second: the desktop example's
//! foreground/background and inactivity, a maximum duration under load, and
//! the axum example in request mode with a joined caller.

mod support;

use std::collections::HashMap;
use std::io::{Read as _, Write as _};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{example_bin, grpc_env, run_child, GotSpan, Received, Receiver, Rotel};

const LIMIT: Duration = Duration::from_secs(60);

fn summaries(got: &Received) -> Vec<&GotSpan> {
    got.spans
        .iter()
        .filter(|s| s.scope == "otel-session" && s.name == "session")
        .collect()
}

fn summary_of<'a>(got: &'a Received, sid: &str) -> &'a GotSpan {
    summaries(got)
        .into_iter()
        .find(|s| s.sid() == Some(sid))
        .unwrap_or_else(|| panic!("no summary for {sid}"))
}

#[test]
fn the_desktop_example_rotates_on_background_and_inactivity_through_rotel() {
    let receiver = Receiver::start();
    let rotel = Rotel::start(receiver.addr);
    let run = run_child(
        "example:desktop_app",
        &grpc_env(rotel.grpc_endpoint(), &[("OTEL_SERVICE_NAME", "desktop")]),
        LIMIT,
    );
    assert!(run.status.success(), "{}\n{}", run.stdout, run.stderr);
    let s1 = run.get("SESSION_1").unwrap();
    assert_eq!(
        run.get("SESSION_AFTER_SHORT").unwrap(),
        s1,
        "a short absence keeps it"
    );
    let s2 = run.get("SESSION_2").unwrap();
    assert_ne!(s2, s1);
    assert_eq!(run.get("SESSION_WHILE_AWAY").unwrap(), "(none)");
    let s3 = run.get("SESSION_3").unwrap();
    assert_ne!(s3, s2);
    let got = receiver.wait_for(Duration::from_secs(10), |r| summaries(r).len() >= 3);
    let reason = |sid: &str| summary_of(&got, sid).attrs["otel_session.end_reason"].clone();
    assert_eq!(reason(&s1), "background");
    assert_eq!(reason(&s2), "inactivity");
    assert_eq!(reason(&s3), "shutdown");
    // Each session points back at the one before.
    assert_eq!(
        summary_of(&got, &s2).attrs.get("session.previous_id"),
        Some(&s1)
    );
    assert_eq!(
        summary_of(&got, &s3).attrs.get("session.previous_id"),
        Some(&s2)
    );
    // The inactive session ends at its last activity: the last `edit` span.
    let last_edit = got
        .spans
        .iter()
        .filter(|s| s.name == "edit" && s.sid() == Some(s2.as_str()))
        .map(|s| s.end_ns)
        .max()
        .expect("the second session's edit span");
    let end = summary_of(&got, &s2).end_ns;
    // Activity is recorded to within a millisecond.
    assert!(
        end.abs_diff(last_edit) <= 2_000_000,
        "dated at the last activity: end {end}, last span end {last_edit}"
    );
    // The idle gap is about the inactivity timeout away from what came next.
    let click = got.spans.iter().find(|s| s.name == "click").unwrap();
    assert_eq!(
        click.sid(),
        Some(s3.as_str()),
        "the first activity after starts S3"
    );
    assert!(click.start_ns - end >= 1_500_000_000);
}

#[test]
fn a_busy_session_rotates_at_its_maximum_duration_through_rotel() {
    let receiver = Receiver::start();
    let rotel = Rotel::start(receiver.addr);
    let run = run_child(
        "max-duration",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", rotel.http_endpoint()),
            ("OTEL_SESSION_MAX_DURATION", "1s".into()),
            ("OTEL_SESSION_INACTIVITY_TIMEOUT", "0".into()),
        ],
        LIMIT,
    );
    assert!(run.status.success(), "{}\n{}", run.stdout, run.stderr);
    let (a, b) = (run.get("A").unwrap(), run.get("B").unwrap());
    assert_ne!(a, b, "it rotated while busy");
    let got = receiver.wait_for(Duration::from_secs(10), |r| summaries(r).len() >= 2);
    let first = summary_of(&got, &a);
    assert_eq!(first.attrs["otel_session.end_reason"], "max_duration");
    let lived = first.end_ns - first.start_ns;
    assert!(
        (800_000_000..=1_000_000_000).contains(&lived),
        "ended within the last tick before 1 s: {lived} ns"
    );
    let second = summary_of(&got, &b);
    assert_eq!(second.attrs.get("session.previous_id"), Some(&a));
    // Every tick carries the session current at its start: A before the
    // rotation, B after, none without.
    let ticks: Vec<_> = got.spans.iter().filter(|s| s.name == "tick").collect();
    assert!(ticks.len() >= 12, "{} ticks", ticks.len());
    for t in &ticks {
        let expected = if t.end_ns <= first.end_ns { &a } else { &b };
        assert_eq!(t.sid(), Some(expected.as_str()), "tick at {}", t.start_ns);
    }
}

/// A GET over a fresh connection; the status code and body ("" when the
/// server dropped the connection: a panicking handler).
fn get(addr: &str, path: &str, baggage: Option<&str>) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let extra = baggage
        .map(|b| format!("baggage: {b}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split("\r\n\r\n").nth(1).unwrap_or_default().to_string();
    (status, body)
}

#[test]
fn the_axum_example_counts_each_request_as_a_session_through_rotel() {
    let receiver = Receiver::start();
    let rotel = Rotel::start(receiver.addr);
    // Request mode persists nothing: the file is not opened, and it says so.
    let persist_dir = support::temp_dir("axum");
    let persist_path = persist_dir.join("session.json");
    let mut cmd = Command::new(example_bin("axum_server"));
    support::child_env(
        &mut cmd,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", rotel.http_endpoint()),
            ("OTEL_SESSION_MODE", "request".into()),
            ("OTEL_SESSION_PROPAGATE", "true".into()),
            ("OTEL_SESSION_REQUEST_IDS", "true".into()),
            (
                "OTEL_SESSION_PERSIST_PATH",
                persist_path.display().to_string(),
            ),
            ("OTEL_METRIC_EXPORT_INTERVAL", "500".into()),
            ("PORT", "0".into()),
            ("RUST_BACKTRACE", "0".into()),
        ],
        |k| k.starts_with("OTEL_"),
    );
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 64];
    let mut seen = String::new();
    let started = Instant::now();
    let addr = loop {
        let n = stdout.read(&mut first).unwrap();
        seen.push_str(&String::from_utf8_lossy(&first[..n]));
        if let Some(line) = seen
            .lines()
            .find(|l| l.starts_with("LISTEN=") && seen.contains('\n'))
        {
            break line.trim_start_matches("LISTEN=").to_string();
        }
        assert!(n > 0 && started.elapsed() < LIMIT, "no address: {seen}");
    };
    let mut expected: HashMap<&str, u64> = HashMap::new();
    for i in 0..30 {
        let (path, status) = match i % 5 {
            0 | 1 => ("/", "ok"),
            2 => ("/fail", "errored"),
            3 => ("/checkout", "errored"),
            _ => ("/panic", "crashed"),
        };
        let (code, _) = get(&addr, path, None);
        match status {
            "ok" | "errored" if path != "/fail" => assert_eq!(code, 200),
            "errored" => assert_eq!(code, 500),
            _ => assert_eq!(code, 500, "CatchPanicLayer answers the panic"),
        }
        *expected.entry(status).or_default() += 1;
    }
    let (_, joined_body) = get(&addr, "/", Some("session.id=browser-7"));
    *expected.entry("ok").or_default() += 1;
    assert!(
        joined_body.contains("telemetry carries browser-7"),
        "{joined_body}"
    );
    // SIGTERM: graceful shutdown, then the guard flushes.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let status = child.wait().unwrap();
    assert!(status.success());
    let mut err = String::new();
    let _ = child.stderr.take().unwrap().read_to_string(&mut err);
    assert_eq!(
        err.matches("is not used in request mode").count(),
        1,
        "one warning: {err}"
    );
    assert!(
        err.contains(&format!("persistence to {}", persist_path.display())),
        "{err}"
    );
    assert_eq!(
        std::fs::read_dir(&persist_dir).unwrap().count(),
        0,
        "nothing created"
    );

    // Everything the checks below count: every request's end in the metrics
    // (cumulative: the largest value per status), the handler logs and the
    // request spans (each signal arrives on its own).
    let ended_total = |r: &support::Received| {
        let mut by_status: HashMap<&str, f64> = HashMap::new();
        for p in r.points.iter().filter(|p| p.name == "otel_session.ended") {
            let e = by_status
                .entry(p.attrs["otel_session.status"].as_str())
                .or_default();
            *e = e.max(p.value);
        }
        by_status.values().sum::<f64>()
    };
    let got = receiver.wait_for(Duration::from_secs(10), |r| {
        ended_total(r) >= 31.0
            && r.logs.iter().filter(|l| l.body == "hello").count() >= 13
            && r.spans.iter().filter(|s| s.name == "request").count() >= 31
    });
    let mut ended: HashMap<String, f64> = HashMap::new();
    let mut started_total = 0.0;
    for p in &got.points {
        if p.name == "otel_session.ended" {
            // Cumulative: keep the largest value per status.
            let e = ended
                .entry(p.attrs["otel_session.status"].clone())
                .or_default();
            *e = e.max(p.value);
        }
        if p.name == "otel_session.started" {
            started_total = f64::max(started_total, p.value);
        }
    }
    assert_eq!(started_total, 31.0);
    for (status, n) in &expected {
        assert_eq!(
            ended.get(*status).copied(),
            Some(*n as f64),
            "{status}: {ended:?}\n{err}"
        );
    }
    // Request sessions emit no lifecycle; every handler log carries its id.
    assert!(
        got.spans.iter().all(|s| s.scope != "otel-session"),
        "no lifecycle spans"
    );
    // TraceLayer's request spans (at INFO), inside SessionLayer: each in its
    // request's session.
    let requests: Vec<&GotSpan> = got.spans.iter().filter(|s| s.name == "request").collect();
    assert_eq!(requests.len(), 31, "{err}");
    let request_ids: std::collections::HashSet<_> =
        requests.iter().filter_map(|s| s.sid()).collect();
    assert_eq!(request_ids.len(), 31, "one id per request span");
    assert!(request_ids.contains("browser-7"));
    let hellos: Vec<_> = got.logs.iter().filter(|l| l.body == "hello").collect();
    assert_eq!(hellos.len(), 13);
    let ids: std::collections::HashSet<_> = hellos.iter().filter_map(|l| l.sid()).collect();
    assert_eq!(ids.len(), 13, "one id per request");
    assert!(ids.contains("browser-7"));

    // Each panicking handler: one ERROR exception record with its request's
    // session, in the trace of its request span, which failed.
    drop(got);
    let got = receiver.wait_for(Duration::from_secs(10), |r| {
        r.logs
            .iter()
            .filter(|l| l.event_name == "exception")
            .count()
            >= 6
    });
    let records: Vec<_> = got
        .logs
        .iter()
        .filter(|l| l.event_name == "exception")
        .collect();
    assert_eq!(records.len(), 6, "one per panic");
    for r in records {
        assert_eq!(r.severity, 17, "ERROR: the server goes on");
        let span = got
            .spans
            .iter()
            .find(|s| s.name == "request" && s.trace_id == r.trace_id)
            .expect("the record is in its request's trace");
        assert_eq!(r.sid(), span.sid(), "the request's session");
        assert!(r.sid().is_some());
        assert_eq!(span.status_code, 2, "the request span failed");
        assert_eq!(r.attrs["exception.message"], "a bug in the handler");
    }
}
