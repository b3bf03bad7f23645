//! End to end through a real collector: a child program using
//! `otel_session::init!()` sends spans, logs, lifecycle and metrics to rotel over
//! OTLP gRPC and over OTLP/HTTP; rotel forwards to a receiver in this test, which
//! checks what arrived. Also: a collector that is down, `OTEL_SDK_DISABLED`, bad
//! environment values, and the console exporter.
//!
//! Needs rotel: `bash scripts/install-collector.sh` (the README's test command
//! runs it).

mod support;

use std::time::Duration;

use support::{run_child, Received, Receiver, Rotel};

const LIMIT: Duration = Duration::from_secs(60);

fn lifecycle<'a>(got: &'a Received, name: &str, sid: &str) -> Vec<&'a support::GotSpan> {
    got.spans
        .iter()
        .filter(|s| s.scope == "otel-session" && s.name == name && s.sid() == Some(sid))
        .collect()
}

fn app_span<'a>(got: &'a Received, name: &str) -> &'a support::GotSpan {
    got.spans
        .iter()
        .find(|s| s.name == name && s.scope != "otel-session")
        .unwrap_or_else(|| panic!("span {name} did not arrive"))
}

fn complete(r: &Received) -> bool {
    let summaries = r.spans.iter().filter(|s| s.name == "session").count();
    let end_events = r
        .logs
        .iter()
        .filter(|l| l.event_name == "session.end")
        .count();
    let ended = r.points.iter().any(|p| p.name == "otel_session.ended");
    summaries >= 2 && end_events >= 2 && ended
}

/// `metric_values`: whether metric values survive the trip. rotel 0.0.1a15 reads
/// OTLP/JSON's string-encoded 64-bit integers (`"asInt": "1"`, as the OTLP/JSON
/// spec and opentelemetry-otlp write them) as 0, so over http/json only the
/// metric points' arrival is checked.
fn basic_scenario(protocol: &str, endpoint: impl Fn(&Rotel) -> String, metric_values: bool) {
    let receiver = Receiver::start();
    let rotel = Rotel::start(receiver.addr);
    let run = run_child(
        "basic",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint(&rotel)),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol.to_string()),
            ("OTEL_SERVICE_NAME", "e2e-basic".to_string()),
        ],
        LIMIT,
    );
    assert!(
        run.status.success(),
        "child failed: {}\n{}",
        run.stdout,
        run.stderr
    );
    let a = run.get("A").expect("A printed");
    let b = run.get("B").expect("B printed");
    let got = receiver.wait_for(Duration::from_secs(15), complete);
    assert!(
        complete(&got),
        "incomplete delivery: {} spans, {} logs, {} points",
        got.spans.len(),
        got.logs.len(),
        got.points.len()
    );

    // Application spans carry the session they started in; none while paused.
    assert_eq!(app_span(&got, "a-work").sid(), Some(a.as_str()));
    assert_eq!(app_span(&got, "a-after-resume").sid(), Some(a.as_str()));
    assert_eq!(app_span(&got, "paused-work").sid(), None);
    assert_eq!(app_span(&got, "b-work").sid(), Some(b.as_str()));
    assert!(got.spans.iter().all(|s| s.session_id_count <= 1));

    // Logs: stamped, none while paused; the session log events with previous_id.
    let log = |body: &str| {
        got.logs
            .iter()
            .find(|l| l.body == body)
            .unwrap_or_else(|| panic!("log {body:?} missing"))
    };
    assert_eq!(log("hello from A").sid(), Some(a.as_str()));
    assert_eq!(log("failure in A").sid(), Some(a.as_str()));
    assert_eq!(log("while paused").sid(), None);
    assert_eq!(log("hello from B").sid(), Some(b.as_str()));
    let events: Vec<(&str, Option<&str>, Option<&str>)> = got
        .logs
        .iter()
        .filter(|l| l.scope == "otel-session")
        .map(|l| {
            (
                l.event_name.as_str(),
                l.sid(),
                l.attrs.get("session.previous_id").map(String::as_str),
            )
        })
        .collect();
    assert_eq!(
        events,
        [
            ("session.start", Some(a.as_str()), None),
            ("session.end", Some(a.as_str()), None),
            ("session.start", Some(b.as_str()), Some(a.as_str())),
            ("session.end", Some(b.as_str()), None),
        ]
    );

    // Transition spans, one each, and the summaries with their events in order.
    for (name, sid) in [
        ("session.start", &a),
        ("session.pause", &a),
        ("session.resume", &a),
        ("session.end", &a),
        ("session.start", &b),
        ("session.end", &b),
    ] {
        assert_eq!(lifecycle(&got, name, sid).len(), 1, "{name} of {sid}");
    }
    let sa = lifecycle(&got, "session", &a)[0];
    assert_eq!(
        sa.events,
        [
            "session.start",
            "session.pause",
            "session.resume",
            "session.end"
        ]
    );
    assert_eq!(sa.attrs["otel_session.end_reason"], "replaced");
    assert_eq!(
        sa.attrs["otel_session.status"], "errored",
        "the ERROR log counted"
    );
    assert_eq!(sa.attrs["otel_session.errors.handled"], "1");
    assert!(sa.parent_span_id.is_empty(), "summary is the root");
    let sb = lifecycle(&got, "session", &b)[0];
    assert_eq!(sb.attrs["otel_session.end_reason"], "shutdown");
    assert_eq!(sb.attrs["session.previous_id"], a);
    assert_eq!(sb.attrs["otel_session.status"], "ok");
    let a_hex: String = a.replace('-', "");
    let trace_hex: String = sa.trace_id.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(trace_hex, a_hex, "the session's trace id is its uuid");
    for t in lifecycle(&got, "session.pause", &a) {
        assert_eq!(t.parent_span_id, sa.span_id);
        assert_eq!(t.start_ns, t.end_ns);
    }

    // Resource.
    let r = &app_span(&got, "a-work").resource;
    assert_eq!(r["service.name"], "e2e-basic");
    assert_eq!(r["service.version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(r["telemetry.distro.name"], "otel-session");
    assert!(r.contains_key("os.type") && r.contains_key("host.arch"));

    // Stability metrics.
    let total = |name: &str, status: Option<&str>| -> f64 {
        got.points
            .iter()
            .filter(|p| p.name == name)
            .filter(|p| {
                status.is_none_or(|s| {
                    p.attrs.get("otel_session.status").map(String::as_str) == Some(s)
                })
            })
            .map(|p| p.value)
            .fold(0.0, f64::max)
    };
    if !metric_values {
        // (It drops the histogram altogether: its "count" is a string too.)
        for name in ["otel_session.started", "otel_session.ended"] {
            assert!(got.points.iter().any(|p| p.name == name), "{name} arrived");
        }
        drop(got);
        rotel.stop();
        return;
    }
    assert_eq!(total("otel_session.started", None), 2.0);
    assert_eq!(total("otel_session.ended", Some("errored")), 1.0);
    assert_eq!(total("otel_session.ended", Some("ok")), 1.0);
    assert_eq!(
        total("otel_session.duration", None),
        2.0,
        "two durations recorded"
    );
    drop(got);
    rotel.stop();
}

#[test]
fn sessions_arrive_through_rotel_over_grpc() {
    basic_scenario("grpc", Rotel::grpc_endpoint, true);
}

#[test]
fn sessions_arrive_through_rotel_over_http_protobuf() {
    basic_scenario("http/protobuf", Rotel::http_endpoint, true);
}

#[test]
fn sessions_arrive_through_rotel_over_http_json() {
    basic_scenario("http/json", Rotel::http_endpoint, false);
}

#[test]
fn a_collector_that_is_down_neither_crashes_nor_blocks_and_telemetry_flows_once_it_is_up() {
    let receiver = Receiver::start();
    let (run, _rotel) = Rotel::down_then_up(
        receiver.addr,
        "phases",
        "grpc",
        &[("OTEL_SERVICE_NAME", "e2e-down".to_string())],
        LIMIT,
    );
    assert!(run.status.success(), "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr
            .contains("otel-session: warning: could not export"),
        "failure reported: {}",
        run.stderr
    );
    let got = receiver.wait_for(Duration::from_secs(15), |r| {
        r.spans.iter().filter(|s| s.name == "after-up").count() == 100
    });
    assert_eq!(
        got.spans.iter().filter(|s| s.name == "after-up").count(),
        100
    );
    assert!(
        run.get("FAILED")
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            >= 100,
        "{}",
        run.stdout
    );
}

#[test]
fn a_burst_with_the_collector_down_finishes_in_bounded_time_and_memory() {
    let port = support::free_port();
    let run = run_child(
        "burst",
        &[
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("http://127.0.0.1:{port}"),
            ),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".to_string()),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "500".to_string()),
            ("E2E_SPANS", "100000".to_string()),
        ],
        LIMIT,
    );
    assert!(run.status.success(), "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.elapsed < Duration::from_secs(30),
        "took {:?}",
        run.elapsed
    );
    let rss_kb: u64 = run
        .get("PEAK_RSS")
        .and_then(|v| v.trim_end_matches(" kB").trim().parse().ok())
        .expect("peak rss printed");
    // The default span queue (4,096, about 1.6 MiB committed at start) holds what
    // the burst cannot deliver; the rest is dropped. A debug build's code is
    // about 10 MiB resident of this (release: the quickstart test, e2e_memory).
    // 92 MiB with the 65,536-span queue before.
    assert!(rss_kb < 48 * 1024, "peak RSS {rss_kb} kB");
    assert!(run.stderr.contains("could not export"), "{}", run.stderr);
    // The full queue is reported while it happens, not only at shutdown.
    assert!(
        run.stderr.contains("the span queue is full and dropping"),
        "{}",
        run.stderr
    );
    // The delivery report accounts for every span (100,000 + the lifecycle).
    let report = run
        .stderr
        .lines()
        .find(|l| l.contains("delivery report: spans"))
        .unwrap_or_else(|| panic!("no delivery report: {}", run.stderr));
    let numbers: Vec<u64> = report
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    let (handed, exported, failed, dropped) = (numbers[0], numbers[1], numbers[2], numbers[3]);
    assert!(handed >= 100_000, "{report}");
    assert_eq!(exported, 0, "{report}");
    assert_eq!(handed, exported + failed + dropped, "{report}");
    assert!(failed > 0, "{report}");
    // Bounded queue: most of a 100,000-span burst cannot wait for a collector
    // that is down (what did wait failed to export when the timeout came).
    assert!(dropped > handed / 2, "{report}");
    // Only our two lifecycle log events: the export stack's own events (h2,
    // hyper, tonic) are not turned into log records that would be exported in turn.
    assert_eq!(numbers[4], 2, "log records handed: {report}");
}

#[test]
fn sdk_disabled_sends_nothing_but_sessions_still_work() {
    let receiver = Receiver::start();
    let rotel = Rotel::start(receiver.addr);
    let run = run_child(
        "plain",
        &support::grpc_env(rotel.grpc_endpoint(), &[("OTEL_SDK_DISABLED", "true")]),
        LIMIT,
    );
    assert!(run.status.success(), "{}", run.stderr);
    assert!(
        run.get("SESSION").is_some_and(|s| !s.is_empty()),
        "the session API works"
    );
    rotel.stop(); // flushes whatever it had
    let got = receiver.received();
    assert!(got.spans.is_empty() && got.logs.is_empty() && got.points.is_empty());
    assert!(
        !run.stderr.contains("warning"),
        "no noise when disabled: {}",
        run.stderr
    );
}

#[test]
fn bad_environment_values_warn_once_and_use_defaults() {
    let receiver = Receiver::start();
    let rotel = Rotel::start(receiver.addr);
    let run = run_child(
        "plain",
        &support::grpc_env(
            rotel.grpc_endpoint(),
            &[
                ("OTEL_SESSION_MODE", "desktop"),
                ("OTEL_SESSION_SAMPLE_RATIO", "2"),
            ],
        ),
        LIMIT,
    );
    assert!(run.status.success(), "{}", run.stderr);
    assert_eq!(
        run.stderr.matches("OTEL_SESSION_MODE=\"desktop\" is not valid (expected app, request or manual); using the default app").count(),
        1,
        "{}",
        run.stderr
    );
    assert!(run
        .stderr
        .contains("OTEL_SESSION_SAMPLE_RATIO=\"2\" is not valid"));
    let sid = run
        .get("SESSION")
        .expect("app mode (the default) started a session");
    let got = receiver.wait_for(Duration::from_secs(15), |r| {
        r.spans.iter().any(|s| s.name == "plain")
    });
    assert_eq!(app_span(&got, "plain").sid(), Some(sid.as_str()));
}

#[test]
fn console_exporters_print_sessions_without_a_collector() {
    let run = run_child(
        "plain",
        &[
            ("OTEL_TRACES_EXPORTER", "console".to_string()),
            ("OTEL_LOGS_EXPORTER", "console".to_string()),
            ("OTEL_METRICS_EXPORTER", "none".to_string()),
        ],
        LIMIT,
    );
    assert!(run.status.success(), "{}", run.stderr);
    let sid = run.get("SESSION").expect("session");
    assert!(
        run.stdout
            .contains(&format!("span  plain            session.id={sid}")),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains(&format!("log   INFO  \"plain log\" session.id={sid}")),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains(&format!("span  session.end      session.id={sid}")),
        "end printed at exit: {}",
        run.stdout
    );
}

#[test]
fn the_quickstart_ships_to_a_collector_when_an_endpoint_is_set() {
    let receiver = Receiver::start();
    let rotel = Rotel::start(receiver.addr);
    let run = run_child(
        "example:quickstart",
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", rotel.http_endpoint())],
        LIMIT,
    );
    assert!(run.status.success(), "{}\n{}", run.stdout, run.stderr);
    assert!(
        !run.stdout.contains("span  "),
        "nothing on the console: {}",
        run.stdout
    );
    let got = receiver.wait_for(Duration::from_secs(15), |r| {
        r.spans.iter().filter(|s| s.name == "session").count() == 2
    });
    let summaries: Vec<_> = got.spans.iter().filter(|s| s.name == "session").collect();
    assert_eq!(summaries.len(), 2);
    assert_eq!(
        summaries[0].attrs["app.plan"], "free",
        "the quickstart's callback"
    );
    let checkout = app_span(&got, "checkout");
    assert_eq!(checkout.sid(), summaries[0].sid());
    assert_eq!(
        checkout.resource["service.version"],
        env!("CARGO_PKG_VERSION")
    );
}

#[test]
fn init_inside_a_current_thread_runtime_exports_over_grpc_and_shuts_down_promptly() {
    let receiver = Receiver::start();
    let rotel = Rotel::start(receiver.addr);
    let run = run_child(
        "tokio-current-thread",
        &support::grpc_env(rotel.grpc_endpoint(), &[]),
        LIMIT,
    );
    assert!(run.status.success(), "{}\n{}", run.stdout, run.stderr);
    assert!(!run.stderr.contains("reactor"), "{}", run.stderr);
    assert!(
        run.elapsed < Duration::from_secs(4),
        "shutdown stalled: {:?}",
        run.elapsed
    );
    let sid = run.get("SESSION").expect("session");
    let got = receiver.wait_for(Duration::from_secs(15), |r| {
        r.spans.iter().filter(|s| s.name == "async-work").count() == 3
            && r.spans.iter().any(|s| s.name == "session")
    });
    let work: Vec<_> = got
        .spans
        .iter()
        .filter(|s| s.name == "async-work")
        .collect();
    assert_eq!(work.len(), 3);
    assert!(work.iter().all(|s| s.sid() == Some(sid.as_str())));
    assert!(got
        .spans
        .iter()
        .any(|s| s.name == "session" && s.sid() == Some(sid.as_str())));
}

#[test]
fn init_without_a_service_version_warns_once() {
    let run = run_child(
        "no-version",
        &[
            ("OTEL_TRACES_EXPORTER", "none".into()),
            ("OTEL_LOGS_EXPORTER", "none".into()),
            ("OTEL_METRICS_EXPORTER", "none".into()),
        ],
        LIMIT,
    );
    assert!(run.status.success(), "{}", run.stderr);
    assert_eq!(
        run.stderr.matches("service.version is not set").count(),
        1,
        "{}",
        run.stderr
    );
    // A version given any other way is found in the resource: no warning.
    let quiet = [
        ("plain", None),
        ("version-as-attribute", None),
        ("no-version", Some("service.version=7.0.0,team=shop")),
    ];
    for (scenario, attributes) in quiet {
        let mut env = vec![
            ("OTEL_TRACES_EXPORTER", "none".to_string()),
            ("OTEL_LOGS_EXPORTER", "none".to_string()),
            ("OTEL_METRICS_EXPORTER", "none".to_string()),
        ];
        env.extend(attributes.map(|a| ("OTEL_RESOURCE_ATTRIBUTES", a.to_string())));
        let run = run_child(scenario, &env, LIMIT);
        assert!(run.status.success(), "{scenario}: {}", run.stderr);
        assert!(
            !run.stderr.contains("service.version"),
            "{scenario}: {}",
            run.stderr
        );
    }
}

#[test]
fn a_bad_endpoint_turns_the_signal_off_with_a_warning_and_the_app_runs_on() {
    let run = run_child("plain", &support::grpc_env("localhost 4318", &[]), LIMIT);
    assert!(run.status.success(), "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.get("INIT_ERROR").is_none(),
        "init succeeded: {}",
        run.stdout
    );
    assert!(
        run.get("SESSION").is_some_and(|s| !s.is_empty()),
        "sessions work: {}",
        run.stdout
    );
    // One warning for the one cause, naming the variable and the signals it
    // turned off (not one per signal).
    let warnings: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains("are not exported"))
        .collect();
    assert_eq!(warnings.len(), 1, "{}", run.stderr);
    assert!(
        warnings[0].contains("(from OTEL_EXPORTER_OTLP_ENDPOINT=\"localhost 4318\")")
            && warnings[0].ends_with("; traces, logs and metrics are not exported"),
        "{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains("no exporting span processor"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_slow_collector_gets_every_signal_at_shutdown_within_the_timeout() {
    // Every export is answered after 2.4 s (under the OTLP timeout): the three
    // providers shut down side by side, so metrics are not starved by traces and logs.
    let receiver = Receiver::start_slow(Duration::from_millis(2400));
    let run = run_child(
        "plain",
        &[
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("http://{}", receiver.addr),
            ),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".into()),
        ],
        LIMIT,
    );
    assert!(run.status.success(), "{}", run.stderr);
    assert!(
        run.elapsed < Duration::from_secs(8),
        "bounded: {:?}",
        run.elapsed
    );
    let got = receiver.wait_for(Duration::from_secs(5), |r| {
        r.spans.iter().any(|s| s.name == "session")
            && r.logs.iter().any(|l| l.event_name == "session.end")
            && r.points.iter().any(|p| p.name == "otel_session.ended")
    });
    assert!(got.spans.iter().any(|s| s.name == "plain"), "traces");
    assert!(got.spans.iter().any(|s| s.name == "session"), "the summary");
    assert!(
        got.logs.iter().any(|l| l.event_name == "session.end"),
        "logs"
    );
    assert!(
        got.points.iter().any(|p| p.name == "otel_session.ended"),
        "metrics"
    );
}
