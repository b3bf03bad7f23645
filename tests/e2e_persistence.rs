//! Persistence end to end through the real collector (rotel): a program killed
//! with SIGKILL mid-session is reported `abnormal` (reason `lost`) by the next
//! start, dated at its last recorded activity; a clean exit then a restart
//! within the inactivity timeout continues the same session (a
//! `session.resume`); after the timeout its end is reported, dated at its last
//! activity.

mod support;

use std::time::Duration;

use support::{run_child, GotSpan, Received, Receiver, Rotel};

const LIMIT: Duration = Duration::from_secs(60);

fn summary<'a>(got: &'a Received, sid: &str) -> Option<&'a GotSpan> {
    got.spans
        .iter()
        .find(|s| s.scope == "otel-session" && s.name == "session" && s.sid() == Some(sid))
}

#[test]
fn killed_then_restarted_then_continued_then_expired() {
    let receiver = Receiver::start();
    let rotel = Rotel::start(receiver.addr);
    let dir = support::temp_dir("e2e-persist");
    let path = dir.join("session.json");
    let env = || {
        vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT", rotel.http_endpoint()),
            ("OTEL_SESSION_PERSIST_PATH", path.display().to_string()),
            ("OTEL_SESSION_INACTIVITY_TIMEOUT", "1500ms".to_string()),
        ]
    };

    // 1. Killed mid-session.
    let a = run_child("persist-kill", &env(), LIMIT);
    assert!(!a.status.success(), "killed");
    let a_id = a.get("SESSION").unwrap();
    let a_last: u64 = a.get("LAST_ACTIVITY_NS").unwrap().parse().unwrap();

    // 2. Restarted: the lost session is reported, the new one points at it.
    let b = run_child("persist-exit", &env(), LIMIT);
    assert!(b.status.success(), "{}", b.stderr);
    let b_id = b.get("SESSION").unwrap();
    assert_ne!(b_id, a_id);
    assert_eq!(b.get("PREVIOUS").unwrap(), a_id);

    // 3. Restarted within the timeout: the same session goes on.
    let c = run_child("persist-exit", &env(), LIMIT);
    assert!(c.status.success(), "{}", c.stderr);
    assert_eq!(c.get("SESSION").unwrap(), b_id, "continued");
    let c_last: u64 = c.get("LAST_ACTIVITY_NS").unwrap().parse().unwrap();

    // 4. Restarted after the timeout: its end is reported, dated at its last activity.
    std::thread::sleep(Duration::from_millis(1700));
    let d = run_child("persist-exit", &env(), LIMIT);
    assert!(d.status.success(), "{}", d.stderr);
    let d_id = d.get("SESSION").unwrap();
    assert_ne!(d_id, b_id);
    assert_eq!(d.get("PREVIOUS").unwrap(), b_id);

    let got = receiver.wait_for(Duration::from_secs(10), |r| {
        summary(r, &a_id).is_some() && summary(r, &b_id).is_some()
    });
    let lost = summary(&got, &a_id).expect("the killed session's end");
    assert_eq!(lost.attrs["otel_session.status"], "abnormal");
    assert_eq!(lost.attrs["otel_session.end_reason"], "lost");
    assert!(
        lost.end_ns.abs_diff(a_last) < 50_000_000,
        "dated at its last recorded activity: {} vs {a_last}",
        lost.end_ns
    );
    let resumed = got
        .spans
        .iter()
        .filter(|s| s.name == "session.resume" && s.sid() == Some(b_id.as_str()))
        .count();
    assert_eq!(
        resumed, 1,
        "one session.resume when the third run continued it"
    );
    let starts = got
        .spans
        .iter()
        .filter(|s| s.name == "session.start" && s.sid() == Some(b_id.as_str()))
        .count();
    assert_eq!(starts, 1, "started once, over two processes");
    let expired = summary(&got, &b_id).expect("the continued session's end");
    assert_eq!(expired.attrs["otel_session.end_reason"], "inactivity");
    assert!(
        expired.end_ns.abs_diff(c_last) < 50_000_000,
        "dated at its last activity (in the third run): {} vs {c_last}",
        expired.end_ns
    );
}
