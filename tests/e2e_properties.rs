//! Session properties and feature flags end to end through rotel, over OTLP
//! gRPC and OTLP/HTTP: the child scenario `properties` (examples/e2e_child.rs)
//! runs a first session with two properties and flag `new-cart`=`b`, then six
//! sessions by arm (`a`, `a` crashed, `a`, `b`, `b` errored, no flag). What the
//! receiver got from rotel must show the properties and the flag on the first
//! session's summary, `session.end` span and `session.end` event; with
//! `OTEL_SESSION_STAMP_ATTRIBUTES` the listed keys (only those) on every app
//! span and log record of each session; the flag on the counted ERROR record;
//! and with `OTEL_SESSION_METRICS_SPLIT` exactly the sessions run in
//! `otel_session.ended` per status and arm.
//!
//! Needs rotel: `bash scripts/install-collector.sh` (the README's test command
//! runs it).

mod support;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use support::{run_child, GotLog, GotSpan, Received, Receiver, Rotel};

const LIMIT: Duration = Duration::from_secs(60);
const FLAG: &str = "feature_flag.new-cart";
/// What `OTEL_SESSION_STAMP_ATTRIBUTES` lists (`app.offline` is not listed).
const STAMPED: &str = "app.screen,feature_flag.new-cart";

/// The sessions the scenario runs, in order: the flag's variant at the
/// session's end and its status. The first session is errored by its ERROR
/// record; the others are the child's `ARMS` (`!` a crash, `?` an error).
const SESSIONS: [(Option<&str>, &str); 7] = [
    (Some("b"), "errored"),
    (Some("a"), "ok"),
    (Some("a"), "crashed"),
    (Some("a"), "ok"),
    (Some("b"), "ok"),
    (Some("b"), "errored"),
    (None, "ok"),
];
const ARMS: &str = "a,a!,a,b,b?,";
const STATUSES: [&str; 4] = ["abnormal", "crashed", "errored", "ok"];

/// One run of the scenario and what rotel forwarded.
struct Run {
    /// The session ids, in the order of [`SESSIONS`].
    ids: Vec<String>,
    stamp: bool,
    split: bool,
    receiver: Receiver,
    _rotel: Rotel,
}

impl Run {
    fn start(protocol: &str, stamp: bool, split: bool) -> Run {
        let receiver = Receiver::start();
        let rotel = Rotel::start(receiver.addr);
        let endpoint = if protocol == "grpc" {
            rotel.grpc_endpoint()
        } else {
            rotel.http_endpoint()
        };
        let mut env = vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol.to_string()),
            ("OTEL_SERVICE_NAME", "e2e-properties".to_string()),
        ];
        if stamp {
            env.push(("OTEL_SESSION_STAMP_ATTRIBUTES", STAMPED.to_string()));
        }
        if split {
            env.push(("OTEL_SESSION_METRICS_SPLIT", FLAG.to_string()));
        }
        let run = run_child("properties", &env, LIMIT);
        assert!(run.status.success(), "{}\n{}", run.stdout, run.stderr);
        assert!(!run.stderr.contains("warning"), "{}", run.stderr);
        assert_eq!(run.get("ARMS").as_deref(), Some(ARMS), "{}", run.stdout);
        let ids: Vec<String> = run
            .get("SESSIONS")
            .unwrap_or_default()
            .split(',')
            .map(String::from)
            .collect();
        assert_eq!(ids.len(), SESSIONS.len(), "{}", run.stdout);
        let n = SESSIONS.len();
        // Traces, logs and metrics travel through rotel apart: wait for all.
        let got = receiver.wait_for(Duration::from_secs(15), |r| {
            let end_events = r
                .logs
                .iter()
                .filter(|l| l.event_name == "session.end")
                .count();
            summaries(r) == n && end_events == n && ended(r).values().sum::<f64>() == n as f64
        });
        assert_eq!(summaries(&got), n, "every summary arrived");
        drop(got);
        Run {
            ids,
            stamp,
            split,
            receiver,
            _rotel: rotel,
        }
    }

    /// The index in [`SESSIONS`] of the session with id `sid`.
    fn session(&self, sid: Option<&str>) -> usize {
        self.ids
            .iter()
            .position(|id| Some(id.as_str()) == sid)
            .unwrap_or_else(|| panic!("not a session of the run: {sid:?}"))
    }
}

fn summaries(r: &Received) -> usize {
    r.spans
        .iter()
        .filter(|s| s.scope == "otel-session" && s.name == "session")
        .count()
}

/// The latest (largest: cumulative) value of `otel_session.ended` per
/// (status, split value).
fn ended(r: &Received) -> BTreeMap<(String, Option<String>), f64> {
    let mut out = BTreeMap::new();
    for p in r.points.iter().filter(|p| p.name == "otel_session.ended") {
        let status = p.attrs["otel_session.status"].clone();
        let v: &mut f64 = out.entry((status, p.attrs.get(FLAG).cloned())).or_default();
        *v = v.max(p.value);
    }
    out
}

/// What `otel_session.ended` must say for [`SESSIONS`]: per status and arm
/// (every status of every arm seen, at zero until one happens) with the
/// split, per status without.
fn expected_ended(split: bool) -> BTreeMap<(String, Option<String>), f64> {
    let arm = |v: Option<&str>| v.filter(|_| split).map(String::from);
    let mut out = BTreeMap::new();
    // (The counters without the attribute are always there.)
    for (variant, _) in SESSIONS.iter().chain([&(None, "ok")]) {
        for status in STATUSES {
            out.insert((status.to_string(), arm(*variant)), 0.0);
        }
    }
    for (variant, status) in SESSIONS {
        *out.entry((status.to_string(), arm(variant))).or_default() += 1.0;
    }
    out
}

fn lifecycle<'a>(r: &'a Received, name: &str, sid: &str) -> &'a GotSpan {
    let found: Vec<&GotSpan> = r
        .spans
        .iter()
        .filter(|s| s.scope == "otel-session" && s.name == name && s.sid() == Some(sid))
        .collect();
    assert_eq!(found.len(), 1, "one {name} span of {sid}");
    found[0]
}

/// The properties' and the flag's values in `attrs`, for comparison.
fn values(attrs: &HashMap<String, String>) -> [Option<&str>; 3] {
    ["app.screen", "app.offline", FLAG].map(|k| attrs.get(k).map(String::as_str))
}

/// The flag events of a summary span: (name, flag, variant).
fn flag_events(summary: &GotSpan) -> Vec<(&str, &str, Option<&str>)> {
    summary
        .event_attrs
        .iter()
        .filter(|(name, _)| name.contains("feature_flag"))
        .map(|(name, a)| {
            (
                name.as_str(),
                a["feature_flag.key"].as_str(),
                a.get("feature_flag.result.variant").map(String::as_str),
            )
        })
        .collect()
}

/// Asserts what a run (with or without stamping and the split) delivered.
fn check(run: &Run) {
    let got = run.receiver.received();
    // The end of each session: summary, session.end span and session.end
    // event carry what the session had at its end — the first one both
    // properties and the flag (dark-mode was cleared), later ones the flag
    // of their arm only (a plain property is the current session's).
    for (i, (variant, status)) in SESSIONS.iter().enumerate() {
        let sid = &run.ids[i];
        let summary = lifecycle(&got, "session", sid);
        let end = lifecycle(&got, "session.end", sid);
        let event: Vec<_> = got
            .logs
            .iter()
            .filter(|l| l.event_name == "session.end" && l.sid() == Some(sid))
            .collect();
        assert_eq!(event.len(), 1, "one session.end event of {sid}");
        let want = match i {
            0 => [Some("checkout"), Some("true"), Some("b")],
            _ => [None, None, *variant],
        };
        for (what, attrs) in [
            ("summary", &summary.attrs),
            ("session.end span", &end.attrs),
            ("session.end event", &event[0].attrs),
        ] {
            assert_eq!(values(attrs), want, "{what} of session {i}");
            assert_eq!(attrs["otel_session.status"], *status, "{what} of {i}");
            assert!(!attrs.contains_key("feature_flag.dark-mode"), "{what}");
        }
    }
    let first = lifecycle(&got, "session", &run.ids[0]);
    assert_eq!(
        flag_events(first),
        [
            ("feature_flag.evaluation", "new-cart", Some("b")),
            ("feature_flag.evaluation", "dark-mode", Some("on")),
            ("otel_session.feature_flag.cleared", "dark-mode", None),
        ]
    );

    // The app's spans and records: stamped (if listed) with the attributes of
    // the session they belong to; the counted ERROR record with the flag
    // whether listed or not, never with a property that is not stamped.
    let app_spans: Vec<&GotSpan> = got.spans.iter().filter(|s| s.scope == "tracing").collect();
    let app_logs: Vec<&GotLog> = got.logs.iter().filter(|l| l.scope == "e2e_child").collect();
    assert_eq!(app_spans.len(), 2 + 6, "cart, cart-step and one per arm");
    assert_eq!(app_logs.len(), 2 + 6, "two records, then one per arm");
    let stamped = |i: usize, error: bool| -> [Option<&str>; 3] {
        let (screen, flag) = match (i, run.stamp) {
            (0, true) => (Some("checkout"), Some("b")),
            (_, true) => (None, SESSIONS[i].0),
            (_, false) => (None, None),
        };
        [screen, None, if error { Some("b") } else { flag }]
    };
    for s in &app_spans {
        let i = run.session(s.sid());
        assert_eq!(
            values(&s.attrs),
            stamped(i, false),
            "span {} of {i}",
            s.name
        );
        assert!(
            s.repeated_keys.is_empty(),
            "{}: {:?}",
            s.name,
            s.repeated_keys
        );
    }
    for l in &app_logs {
        let i = run.session(l.sid());
        let error = l.severity >= 17;
        assert_eq!(error, l.body == "cart failed", "{}", l.body);
        assert_eq!(
            values(&l.attrs),
            stamped(i, error),
            "record {:?} of {i}",
            l.body
        );
        // Each key once, also on the counted ERROR record whose flag is
        // both an active flag of the error and a stamped attribute.
        assert!(
            l.repeated_keys.is_empty(),
            "{}: {:?}",
            l.body,
            l.repeated_keys
        );
    }
    for s in got.spans.iter().filter(|s| s.scope == "otel-session") {
        assert!(
            s.repeated_keys.is_empty(),
            "{}: {:?}",
            s.name,
            s.repeated_keys
        );
    }

    // otel_session.ended: exactly the sessions run, per status and arm.
    let measured = ended(&got);
    let expected = expected_ended(run.split);
    println!(
        "ENDED split={}: expected {expected:?}, got {measured:?}",
        run.split
    );
    assert_eq!(measured, expected);
}

#[test]
fn properties_and_flags_arrive_through_rotel_over_grpc() {
    check(&Run::start("grpc", true, true));
}

#[test]
fn properties_and_flags_arrive_through_rotel_over_http_protobuf() {
    check(&Run::start("http/protobuf", true, true));
}

#[test]
fn without_stamping_or_split_only_the_counted_error_record_carries_the_flag() {
    check(&Run::start("grpc", false, false));
}
