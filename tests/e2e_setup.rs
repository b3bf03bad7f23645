//! End to end, the set-up for production: what the guard's `tracing` layers
//! export (levels, each event once, the app's own hyper/reqwest events, nothing
//! of the export stack's own during an outage), queue sizes from the environment,
//! `service.name`, a guard dropped at once, and the composition recipes
//! (init-tracing-opentelemetry, the standalone enricher with
//! `with_batch_exporter`) through a real collector.
//!
//! Children: `examples/e2e_setup.rs` and `examples/e2e_child.rs`. Needs rotel
//! (`bash scripts/install-collector.sh`).

mod support;

use std::time::Duration;

use support::{run_child, ChildRun, Received, Receiver, Rotel};

const LIMIT: Duration = Duration::from_secs(60);

fn ok(run: &ChildRun) {
    assert!(
        run.status.success(),
        "child failed ({:?}):\n{}\n{}",
        run.status,
        run.stdout,
        run.stderr
    );
}

fn bodies<'a>(got: &'a Received, body: &str) -> Vec<&'a support::GotLog> {
    got.logs.iter().filter(|l| l.body == body).collect()
}

/// `levels` over gRPC through rotel with `RUST_LOG` as given ("" = unset).
fn levels(rust_log: &str) -> (ChildRun, Receiver) {
    let receiver = Receiver::start();
    let rotel = Rotel::start(receiver.addr);
    let run = run_child(
        "example:e2e_setup levels",
        &support::grpc_env(rotel.grpc_endpoint(), &[("RUST_LOG", rust_log)]),
        LIMIT,
    );
    ok(&run);
    drop(receiver.wait_for(Duration::from_secs(15), |r| {
        r.logs.iter().any(|l| l.body == "error event")
            && r.spans.iter().any(|s| s.name == "levels-span")
            && r.spans.iter().any(|s| s.name == "session")
    }));
    rotel.stop();
    (run, receiver)
}

#[test]
fn by_default_info_and_up_is_exported_each_event_once_the_apps_own_hyper_and_reqwest_events_too() {
    let (run, receiver) = levels("");
    assert_eq!(run.get("FILTER").as_deref(), Some("info"));
    let sid = run.get("SESSION").expect("session");
    let got = receiver.received();
    for body in ["info event", "error event"] {
        let found = bodies(&got, body);
        assert_eq!(found.len(), 1, "{body}: exported once");
        assert_eq!(found[0].sid(), Some(sid.as_str()));
    }
    for (body, target) in [
        ("app hyper event", "hyper::client"),
        ("app reqwest event", "reqwest::connect"),
    ] {
        let found = bodies(&got, body);
        assert_eq!(found.len(), 1, "the app's own {target} event is exported");
        assert_eq!(found[0].scope, target);
    }
    assert!(bodies(&got, "trace event").is_empty(), "TRACE is filtered");
    assert!(bodies(&got, "debug event").is_empty(), "DEBUG is filtered");
    assert!(!got.spans.iter().any(|s| s.name == "trace-span"));
    let span = got
        .spans
        .iter()
        .find(|s| s.name == "levels-span")
        .expect("span");
    assert!(
        span.events.is_empty(),
        "events are log records, not also span events: {:?}",
        span.events
    );
    assert_eq!(span.status_code, 2, "the ERROR event marks the span Error");
    assert_eq!(span.sid(), Some(sid.as_str()));
}

#[test]
fn rust_log_trace_exports_trace_events_and_spans() {
    let (run, receiver) = levels("trace");
    assert_eq!(run.get("FILTER").as_deref(), Some("trace"));
    let got = receiver.wait_for(Duration::from_secs(5), |r| {
        r.spans.iter().any(|s| s.name == "trace-span")
    });
    assert_eq!(bodies(&got, "trace event").len(), 1);
    assert_eq!(bodies(&got, "debug event").len(), 1);
    assert!(got.spans.iter().any(|s| s.name == "trace-span"));
}

#[test]
fn a_bad_rust_log_is_warned_and_info_used() {
    let run = run_child(
        "example:e2e_setup levels",
        &[
            ("RUST_LOG", "info,my_app=loud".to_string()),
            ("OTEL_TRACES_EXPORTER", "console".to_string()),
            ("OTEL_LOGS_EXPORTER", "console".to_string()),
            ("OTEL_METRICS_EXPORTER", "none".to_string()),
        ],
        LIMIT,
    );
    ok(&run);
    assert_eq!(run.get("FILTER").as_deref(), Some("info"));
    assert_eq!(
        run.stderr
            .matches("RUST_LOG=\"info,my_app=loud\" is not a valid filter")
            .count(),
        1,
        "{}",
        run.stderr
    );
}

/// `RUST_LOG=trace` (so the export stack's own TRACE events would pass any level
/// filter), the collector down then up: what arrives is the app's telemetry
/// and the session's, nothing of hyper, h2, tonic, tower, reqwest or OpenTelemetry.
fn outage(protocol: &str) {
    let receiver = Receiver::start();
    let (run, mut rotel) = Rotel::down_then_up(
        receiver.addr,
        "example:e2e_setup outage",
        protocol,
        &[("RUST_LOG", "trace".to_string())],
        LIMIT,
    );
    ok(&run);
    assert!(
        run.stderr.contains("could not export"),
        "the outage was seen: {}",
        run.stderr
    );
    if let Some(r) = rotel.take() {
        r.stop(); // flushes what it holds
    }
    let got = receiver.received();
    let after: Vec<&support::GotLog> = got
        .logs
        .iter()
        .filter(|l| l.body.starts_with("after up "))
        .collect();
    assert_eq!(after.len(), 20, "every log record after the outage, once");
    got.assert_nothing_fed_back("e2e_setup");
    let app_spans = got
        .spans
        .iter()
        .filter(|s| s.scope == "tracing")
        .filter(|s| s.name != "after-up" && s.name != "while-down")
        .count();
    assert_eq!(app_spans, 0, "only the app's spans");
}

#[test]
fn a_collector_outage_feeds_nothing_of_the_export_stack_back_over_grpc() {
    outage("grpc");
}

#[test]
fn a_collector_outage_feeds_nothing_of_the_export_stack_back_over_http() {
    outage("http/protobuf");
}

#[test]
fn queue_sizes_from_the_environment_are_clamped_and_cannot_abort_the_process() {
    let receiver = Receiver::start();
    let rotel = Rotel::start(receiver.addr);
    let run = run_child(
        "plain",
        &support::grpc_env(
            rotel.grpc_endpoint(),
            &[
                ("OTEL_BSP_MAX_QUEUE_SIZE", "100000000"),
                ("OTEL_BLRP_MAX_QUEUE_SIZE", "18446744073709551615"),
                (
                    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
                    "99999999999999999999999999",
                ),
                ("OTEL_BLRP_MAX_EXPORT_BATCH_SIZE", "0"),
                ("OTEL_BSP_SCHEDULE_DELAY", "0"),
            ],
        ),
        LIMIT,
    );
    ok(&run);
    for warning in [
        "OTEL_BSP_MAX_QUEUE_SIZE=\"100000000\" is above the maximum of 131072; using 131072",
        "OTEL_BLRP_MAX_QUEUE_SIZE=\"18446744073709551615\" is above the maximum of 131072",
        "OTEL_BSP_MAX_EXPORT_BATCH_SIZE=\"99999999999999999999999999\" is above the maximum of 8192",
        "OTEL_BLRP_MAX_EXPORT_BATCH_SIZE=\"0\" is not valid (must be at least 1); using 512",
        "OTEL_BSP_SCHEDULE_DELAY=\"0\" is not valid (must be greater than 0)",
    ] {
        assert_eq!(
            run.stderr.matches(warning).count(),
            1,
            "{warning}\n{}",
            run.stderr
        );
    }
    let got = receiver.wait_for(Duration::from_secs(15), |r| {
        r.spans.iter().any(|s| s.name == "plain") && r.logs.iter().any(|l| l.body == "plain log")
    });
    assert!(got.spans.iter().any(|s| s.name == "plain"), "spans flow");
    assert!(got.logs.iter().any(|l| l.body == "plain log"), "logs flow");
}

fn service_name(env: &[(&'static str, &str)]) -> String {
    let receiver = Receiver::start();
    let rotel = Rotel::start(receiver.addr);
    let run = run_child(
        "plain",
        &support::grpc_env(rotel.grpc_endpoint(), env),
        LIMIT,
    );
    ok(&run);
    let got = receiver.wait_for(Duration::from_secs(15), |r| {
        r.spans.iter().any(|s| s.name == "plain")
    });
    let span = got.spans.iter().find(|s| s.name == "plain").expect("span");
    span.resource
        .get("service.name")
        .cloned()
        .unwrap_or_default()
}

#[test]
fn service_name_is_the_package_name_unless_the_environment_sets_one() {
    assert_eq!(
        service_name(&[]),
        env!("CARGO_PKG_NAME"),
        "init!() names it"
    );
    assert_eq!(
        service_name(&[(
            "OTEL_RESOURCE_ATTRIBUTES",
            "service.name=from-attributes,team=a"
        )]),
        "from-attributes"
    );
    assert_eq!(
        service_name(&[
            ("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attributes"),
            ("OTEL_SERVICE_NAME", "from-env"),
        ]),
        "from-env"
    );
}

fn console_env() -> Vec<(&'static str, String)> {
    vec![
        ("OTEL_TRACES_EXPORTER", "console".to_string()),
        ("OTEL_LOGS_EXPORTER", "console".to_string()),
        ("OTEL_METRICS_EXPORTER", "none".to_string()),
    ]
}

#[test]
fn a_guard_dropped_at_once_is_reported_and_a_quick_program_is_not() {
    let run = run_child("example:e2e_setup dropped-at-once", &console_env(), LIMIT);
    ok(&run);
    assert_eq!(
        run.stderr
            .matches("the telemetry guard was dropped")
            .count(),
        1,
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("let _guard = otel_session::init!()?;"));
    let quick = run_child("example:e2e_setup quiet", &console_env(), LIMIT);
    ok(&quick);
    assert!(
        !quick.stderr.contains("dropped"),
        "a program that exits at once keeps quiet: {}",
        quick.stderr
    );
}

/// Runs `recipe` of examples/e2e_setup.rs against rotel (started on `receiver`)
/// until its `{name}-work` span, its `{name} log` record, the session span and
/// whatever `more` (given the child's session id) waits for arrived; asserts
/// the span, the log and the session span carry that id, and `more` holds.
fn recipe_through_rotel(
    recipe: &str,
    name: &str,
    env: impl FnOnce(&Rotel) -> Vec<(&'static str, String)>,
    more: impl Fn(&Received, &str) -> bool,
) {
    let receiver = Receiver::start();
    let rotel = Rotel::start(receiver.addr);
    let run = run_child(&format!("example:e2e_setup {recipe}"), &env(&rotel), LIMIT);
    ok(&run);
    let sid = run.get("SESSION").expect("session");
    let (work, body) = (format!("{name}-work"), format!("{name} log"));
    let got = receiver.wait_for(Duration::from_secs(15), |r| {
        r.spans.iter().any(|s| s.name == work)
            && r.logs.iter().any(|l| l.body == body)
            && r.spans.iter().any(|s| s.name == "session")
            && more(r, &sid)
    });
    let span = got
        .spans
        .iter()
        .find(|s| s.name == work)
        .expect("span arrived");
    assert_eq!(span.sid(), Some(sid.as_str()));
    let log = bodies(&got, &body);
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].sid(), Some(sid.as_str()));
    assert!(
        got.spans
            .iter()
            .any(|s| s.name == "session" && s.sid() == Some(sid.as_str())),
        "the lifecycle went out"
    );
    assert!(more(&got, &sid));
}

#[test]
fn the_init_tracing_opentelemetry_recipe_stamps_spans_and_logs_through_rotel() {
    recipe_through_rotel(
        "init-tracing",
        "composed",
        |rotel| support::grpc_env(rotel.grpc_endpoint(), &[]),
        |_, _| true,
    );
}

#[test]
fn two_opentelemetry_layers_give_a_warning_instead_of_a_panic_in_every_order() {
    for how in ["init-tracing", "ours-inside", "ours-outside"] {
        let run = run_child(
            &format!("example:e2e_setup two-layers:{how}"),
            &console_env(),
            LIMIT,
        );
        ok(&run);
        assert_eq!(run.get("SURVIVED").as_deref(), Some("1"), "{how}");
        assert!(!run.stderr.contains("panicked"), "{how}: {}", run.stderr);
        assert_eq!(
            run.stderr
                .matches("two OpenTelemetry tracing layers are in one subscriber")
                .count(),
            1,
            "{how}: {}",
            run.stderr
        );
    }
}

#[test]
fn the_standalone_recipe_with_batch_exporters_stamps_spans_and_logs_through_rotel() {
    // The lifecycle log event too, through the lifecycle processor.
    recipe_through_rotel(
        "standalone",
        "standalone",
        |rotel| vec![("OTEL_EXPORTER_OTLP_ENDPOINT", rotel.http_endpoint())],
        |r, sid| {
            r.logs
                .iter()
                .any(|l| l.event_name == "session.end" && l.sid() == Some(sid))
        },
    );
}

/// The README's own-providers recipe (`examples/own_providers.rs`, kept the same
/// as the README by `tests/readme.rs`) over `env`, through rotel: its span and
/// log carry the session, the session ends at the providers' shutdown and its
/// lifecycle goes out, with the service's name and version on the resource.
fn own_providers_through_rotel(env: impl FnOnce(&Rotel) -> Vec<(&'static str, String)>) {
    let receiver = Receiver::start();
    let rotel = Rotel::start(receiver.addr);
    let run = run_child("example:own_providers", &env(&rotel), LIMIT);
    ok(&run);
    let got = receiver.wait_for(Duration::from_secs(15), |r| {
        r.spans.iter().any(|s| s.name == "work")
            && r.logs.iter().any(|l| l.body == "carries session.id")
            && r.spans.iter().any(|s| s.name == "session")
            && r.logs.iter().any(|l| l.event_name == "session.end")
    });
    let work = got
        .spans
        .iter()
        .find(|s| s.name == "work")
        .expect("work span");
    let sid = work.sid().expect("the span carries session.id").to_string();
    assert_eq!(
        bodies(&got, "carries session.id")[0].sid(),
        Some(sid.as_str())
    );
    let summary = got
        .spans
        .iter()
        .find(|s| s.name == "session")
        .expect("summary");
    assert_eq!(summary.sid(), Some(sid.as_str()));
    assert_eq!(
        summary
            .attrs
            .get("otel_session.end_reason")
            .map(String::as_str),
        Some("shutdown"),
        "ended by the providers' shutdown"
    );
    assert_eq!(
        work.resource.get("service.name").map(String::as_str),
        Some(env!("CARGO_PKG_NAME"))
    );
    assert_eq!(
        work.resource.get("service.version").map(String::as_str),
        Some(env!("CARGO_PKG_VERSION"))
    );
    assert!(
        !run.stderr.contains("could not export"),
        "nothing failed: {}",
        run.stderr
    );
}

#[test]
fn the_own_providers_recipe_delivers_over_http_through_rotel() {
    own_providers_through_rotel(|rotel| {
        vec![("OTEL_EXPORTER_OTLP_ENDPOINT", rotel.http_endpoint())]
    });
}

#[test]
fn the_own_providers_recipe_delivers_over_grpc_through_rotel() {
    own_providers_through_rotel(|rotel| support::grpc_env(rotel.grpc_endpoint(), &[]));
}
