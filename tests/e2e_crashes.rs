//! Native crashes and hangs end to end through the real collector (rotel),
//! from child processes of `examples/crash.rs` sharing a session file: a
//! raised SIGSEGV, `abort()` and a stack overflow each leave a crash marker,
//! and the next start reports the dead session `crashed` (reason `crash`)
//! with an `app.crash` record naming the signal; a 6 s stall of a loop that
//! sends heartbeats is one `app.jank` record of about 6 s; a process killed
//! during a hang is reported by the next start with reason `hang`. Bad input:
//! a marker full of garbage is one warning and ignored; a marker that cannot
//! be written is one warning, and persistence goes on without it.

mod support;

use std::io::Read as _;
use std::os::unix::process::ExitStatusExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{
    child_env, example_bin, run_child, ChildRun, GotLog, GotSpan, Received, Receiver, Rotel,
};

const LIMIT: Duration = Duration::from_secs(60);

/// A child's environment: rotel over HTTP, the session file `file` (the
/// crash marker goes next to it), and `more`.
fn env(rotel: &Rotel, file: &Path, more: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    let mut e = vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", rotel.http_endpoint()),
        ("OTEL_SESSION_PERSIST_PATH", file.display().to_string()),
        ("OTEL_METRICS_EXPORTER", "none".to_string()),
        ("RUST_BACKTRACE", "0".to_string()),
    ];
    e.extend(more.iter().map(|(k, v)| (*k, v.to_string())));
    e
}

fn step(name: &str, env: &[(&'static str, String)]) -> ChildRun {
    run_child(&format!("example:crash {name}"), env, LIMIT)
}

fn summary<'a>(got: &'a Received, sid: &str) -> Option<&'a GotSpan> {
    got.spans
        .iter()
        .find(|s| s.scope == "otel-session" && s.name == "session" && s.sid() == Some(sid))
}

fn record<'a>(got: &'a Received, event: &str, sid: &str) -> Option<&'a GotLog> {
    got.logs
        .iter()
        .find(|l| l.scope == "otel-session" && l.event_name == event && l.sid() == Some(sid))
}

#[test]
fn native_crashes_are_reported_by_the_next_start_with_their_signal() {
    let receiver = Receiver::start();
    let rotel = Rotel::start(receiver.addr);
    for (kind, signals) in [
        ("segv", &["SIGSEGV"][..]),
        ("abort", &["SIGABRT"][..]),
        // std's overflow handler reports the overflow, then aborts; the
        // marker keeps the first signal.
        ("overflow", &["SIGSEGV", "SIGBUS"][..]),
    ] {
        let d = support::temp_dir(&format!("native-{kind}"));
        let file = d.join("session.json");
        let env = env(&rotel, &file, &[]);
        let crashed = step(kind, &env);
        let died_of = crashed.status.signal();
        assert!(
            died_of.is_some(),
            "{kind}: the child dies of a signal: {:?}\n{}",
            crashed.status,
            crashed.stderr
        );
        if kind == "overflow" {
            assert!(
                crashed.stderr.contains("has overflowed its stack"),
                "std's own handler still runs: {}",
                crashed.stderr
            );
        }
        let dead = crashed.get("SESSION").unwrap();
        let next = step("report", &env);
        assert!(next.status.success(), "{}", next.stderr);
        let got = receiver.wait_for(Duration::from_secs(10), |r| {
            summary(r, &dead).is_some() && record(r, "app.crash", &dead).is_some()
        });
        let s = summary(&got, &dead).unwrap_or_else(|| panic!("{kind}: no end of {dead}"));
        assert_eq!(s.attrs["otel_session.status"], "crashed", "{kind}");
        assert_eq!(s.attrs["otel_session.end_reason"], "crash", "{kind}");
        assert_eq!(s.attrs["otel_session.errors.unhandled"], "1", "{kind}");
        let r = record(&got, "app.crash", &dead).unwrap();
        assert_eq!(r.severity, 21, "{kind}: FATAL");
        assert!(
            signals.contains(&r.attrs["exception.type"].as_str()),
            "{kind}: {:?}",
            r.attrs
        );
        assert_eq!(r.attrs["service.version"], env!("CARGO_PKG_VERSION"));
        assert!(r.attrs["process.pid"].parse::<u32>().is_ok());
        assert!(r.attrs.contains_key("thread.id"));
        assert_eq!(
            got.logs
                .iter()
                .filter(|l| l.event_name == "app.crash" && l.sid() == Some(&dead))
                .count(),
            1,
            "{kind}: reported once"
        );
        drop(got);
    }
}

#[test]
fn a_six_second_stall_of_a_heartbeat_loop_is_one_hang_of_six_seconds() {
    let receiver = Receiver::start();
    let rotel = Rotel::start(receiver.addr);
    let d = support::temp_dir("hang");
    let file = d.join("session.json");
    let env = env(&rotel, &file, &[]);
    let run = step("hang", &env);
    assert!(run.status.success(), "{}", run.stderr);
    let sid = run.get("SESSION").unwrap();
    let got = receiver.wait_for(Duration::from_secs(10), |r| {
        record(r, "app.jank", &sid).is_some()
    });
    let hangs: Vec<&GotLog> = got
        .logs
        .iter()
        .filter(|l| l.event_name == "app.jank")
        .collect();
    assert_eq!(hangs.len(), 1, "one hang");
    let h = hangs[0];
    assert_eq!(h.sid(), Some(sid.as_str()));
    assert_eq!(h.attrs["app.jank.type"], "frozen");
    assert_eq!(h.attrs["app.jank.threshold_ms"], "5000");
    let ms: u64 = h.attrs["otel_session.hang.duration_ms"].parse().unwrap();
    assert!((5_500..=7_500).contains(&ms), "about 6 s: {ms} ms");
    assert!(
        !h.attrs.contains_key("exception.type"),
        "a hang is no exception"
    );
    drop(got);
    // The clean exit kept the session (persistence); the next run continues
    // it and panics: its summary still counts the hang.
    let next = step("panic", &env);
    assert_eq!(next.status.code(), Some(101), "{}", next.stderr);
    assert_eq!(next.get("SESSION").as_deref(), Some(sid.as_str()));
    let got = receiver.wait_for(Duration::from_secs(10), |r| summary(r, &sid).is_some());
    let s = summary(&got, &sid).unwrap_or_else(|| {
        panic!(
            "no summary: {:?}\n{}",
            got.spans.iter().map(|s| &s.name).collect::<Vec<_>>(),
            next.stderr
        )
    });
    assert_eq!(
        s.attrs["otel_session.hangs"], "1",
        "counted across the restart"
    );
    assert_eq!(
        s.attrs["otel_session.errors.handled"], "1",
        "a hang is a handled error"
    );
    assert_eq!(s.attrs["otel_session.status"], "crashed");
    assert_eq!(s.attrs["otel_session.end_reason"], "crash");
}

/// The crash marker's state byte (0 armed, 1 signal, 2 hang).
fn marker_state(file: &Path) -> Option<u8> {
    let bytes = std::fs::read(file.with_file_name("session.json.crash")).ok()?;
    bytes.get(16).copied()
}

#[test]
fn a_process_killed_during_a_hang_is_reported_by_the_next_start_with_reason_hang() {
    let receiver = Receiver::start();
    let rotel = Rotel::start(receiver.addr);
    let d = support::temp_dir("hang-kill");
    let file = d.join("session.json");
    let env = env(&rotel, &file, &[("OTEL_SESSION_HANG_THRESHOLD", "1s")]);
    let mut cmd = Command::new(example_bin("crash"));
    cmd.arg("hang-forever")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    child_env(&mut cmd, &env, |k| k.starts_with("OTEL_"));
    let mut child = cmd.spawn().unwrap();
    // The watchdog marks the hang (after the 1 s threshold): then kill it, as
    // a user or the OS kills a frozen app.
    let started = Instant::now();
    while marker_state(&file) != Some(2) {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no hang marked"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    let _ = child.wait();
    let mut out = String::new();
    let _ = child.stdout.take().unwrap().read_to_string(&mut out);
    let dead = out
        .lines()
        .find_map(|l| l.strip_prefix("SESSION="))
        .unwrap()
        .to_string();
    let next = step("report", &env);
    assert!(next.status.success(), "{}", next.stderr);
    let got = receiver.wait_for(Duration::from_secs(10), |r| {
        summary(r, &dead).is_some() && record(r, "app.jank", &dead).is_some()
    });
    let s = summary(&got, &dead).unwrap();
    assert_eq!(s.attrs["otel_session.end_reason"], "hang");
    assert_eq!(s.attrs["otel_session.status"], "abnormal");
    let r = record(&got, "app.jank", &dead).unwrap();
    assert_eq!(r.severity, 21, "FATAL: the process died in it");
}

#[test]
fn a_garbage_marker_is_ignored_with_a_warning_and_an_unwritable_one_disables_markers() {
    let receiver = Receiver::start();
    let rotel = Rotel::start(receiver.addr);
    let d = support::temp_dir("marker-bad");
    let file = d.join("session.json");
    let env1 = env(&rotel, &file, &[]);
    std::fs::write(d.join("session.json.crash"), vec![0xA5; 700]).unwrap();
    let run = step("report", &env1);
    assert!(run.status.success(), "{}", run.stderr);
    assert_eq!(
        run.stderr
            .matches("is not one this version can read")
            .count(),
        1,
        "{}",
        run.stderr
    );
    // The marker was replaced by a good one: a crash now is reported.
    assert_eq!(marker_state(&file), Some(0));

    // A directory where the marker goes: it cannot be written. One warning
    // naming it and how to fix it; the session file still works.
    let d2 = support::temp_dir("marker-unwritable");
    let file2 = d2.join("session.json");
    std::fs::create_dir_all(d2.join("session.json.crash")).unwrap();
    let env2 = env(&rotel, &file2, &[]);
    let first = step("report", &env2);
    assert!(first.status.success(), "{}", first.stderr);
    assert_eq!(
        first
            .stderr
            .matches("native crashes are not recorded")
            .count(),
        1,
        "{}",
        first.stderr
    );
    assert!(first.stderr.contains("OTEL_SESSION_NATIVE_CRASHES=false"));
    let second = step("report", &env2);
    assert_eq!(
        second.get("SESSION"),
        first.get("SESSION"),
        "persistence goes on: the suspended session continues"
    );
}
