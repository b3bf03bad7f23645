//! Session properties and feature flags (issue 14), through the public API
//! and real SDK pipelines: where they show (summary span, end event and
//! transition span, timeline events, error and crash records), what later
//! sessions carry (rotation, timeout, background return, restart with
//! persistence), what is refused, stamped attributes on telemetry, and the
//! split of `otel_session.ended` (app and request sessions).

mod common;

use std::time::{Duration, UNIX_EPOCH};

use common::{log_attr, pipeline, span_attr, span_attr_count, Pipeline};
use opentelemetry::logs::{LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::trace::{Tracer as _, TracerProvider as _};
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use otel_session::{
    AttributeError, ManualClock, SessionError, SessionManager, SessionMode, MAX_SESSION_ATTRIBUTES,
};

fn summaries(p: &Pipeline) -> Vec<opentelemetry_sdk::trace::SpanData> {
    p.lifecycle_spans()
        .into_iter()
        .filter(|s| s.name == "session")
        .collect()
}

fn log(p: &Pipeline, severity: Severity, body: &'static str) {
    let logger = p.logger_provider.logger("app");
    let mut r = logger.create_log_record();
    r.set_severity_number(severity);
    r.set_body(body.into());
    logger.emit(r);
}

fn error_log(p: &Pipeline, body: &'static str) {
    log(p, Severity::Error, body);
}

fn info_log(p: &Pipeline, body: &'static str) {
    log(p, Severity::Info, body);
}

/// The panic hook is process-wide: one test that panics at a time.
static PANICS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// How many times `key` is on the record (OTLP wants each key once).
fn times(l: &common::LogDataWithResource, key: &str) -> usize {
    l.record
        .attributes_iter()
        .filter(|(k, _)| k.as_str() == key)
        .count()
}

/// Panics with `message` on a worker thread (caught: the session goes on).
fn panic_on_worker(message: &'static str) {
    let caught = std::thread::Builder::new()
        .name("worker".into())
        .spawn(move || std::panic::panic_any(message))
        .unwrap()
        .join();
    assert!(caught.is_err());
}

fn body_of(l: &common::LogDataWithResource) -> String {
    l.record
        .body()
        .map(|b| format!("{b:?}"))
        .unwrap_or_default()
}

#[test]
fn properties_and_flags_reach_the_summary_the_end_event_and_the_timeline() {
    let p = pipeline(SessionManager::builder().with_mode(SessionMode::Manual));
    let s = &p.sessions;
    let first = s.start_session().unwrap();
    s.set_session_attribute("app.screen", "home").unwrap();
    s.set_session_attribute("app.screen", "checkout").unwrap(); // overwritten
    s.set_session_attribute("app.offline", true).unwrap();
    s.set_session_attribute("app.gone", 1).unwrap();
    s.remove_session_attribute("app.gone").unwrap();
    s.add_feature_flag("new-cart", "b").unwrap();
    s.add_feature_flag("dark-mode", "on").unwrap();
    s.clear_feature_flag("dark-mode").unwrap();
    let now = s.current_session().unwrap();
    assert_eq!(now.attribute("app.screen").unwrap().as_str(), "checkout");
    assert_eq!(now.feature_flag("new-cart").as_deref(), Some("b"));
    assert_eq!(now.feature_flag("dark-mode"), None);
    s.end_session();

    let summary = &summaries(&p)[0];
    assert_eq!(
        span_attr(summary, "session.id").as_deref(),
        Some(first.id().as_str())
    );
    for (k, v) in [
        ("app.screen", Some("checkout")),
        ("app.offline", Some("true")),
        ("app.gone", None),
        ("feature_flag.new-cart", Some("b")),
        ("feature_flag.dark-mode", None),
    ] {
        assert_eq!(span_attr(summary, k).as_deref(), v, "summary {k}");
        assert!(span_attr_count(summary, k) <= 1, "one {k}");
    }
    // The timeline: each flag set, and the one cleared, in order.
    let flags: Vec<(String, String, Option<String>)> = summary
        .events
        .iter()
        .filter(|e| e.name.starts_with("feature_flag") || e.name.contains("feature_flag"))
        .map(|e| {
            let get = |k: &str| {
                e.attributes
                    .iter()
                    .find(|kv| kv.key.as_str() == k)
                    .map(|kv| kv.value.to_string())
            };
            (
                e.name.to_string(),
                get("feature_flag.key").unwrap(),
                get("feature_flag.result.variant"),
            )
        })
        .collect();
    assert_eq!(
        flags,
        [
            (
                "feature_flag.evaluation".into(),
                "new-cart".into(),
                Some("b".into())
            ),
            (
                "feature_flag.evaluation".into(),
                "dark-mode".into(),
                Some("on".into())
            ),
            (
                "otel_session.feature_flag.cleared".into(),
                "dark-mode".into(),
                None
            ),
        ]
    );
    // The end event (log) and the end transition span carry them too.
    let end_log = p
        .logs()
        .into_iter()
        .find(|l| l.record.event_name() == Some("session.end"))
        .expect("a session.end event");
    assert_eq!(
        log_attr(&end_log, "app.screen").as_deref(),
        Some("checkout")
    );
    assert_eq!(
        log_attr(&end_log, "feature_flag.new-cart").as_deref(),
        Some("b")
    );
    let end_span = p.lifecycle_span("session.end");
    assert_eq!(
        span_attr(&end_span, "app.screen").as_deref(),
        Some("checkout")
    );
}

#[test]
fn permanent_properties_and_flags_are_carried_and_plain_ones_are_not() {
    let clock = ManualClock::shared(UNIX_EPOCH + Duration::from_secs(1_000_000));
    let p = pipeline(
        SessionManager::builder()
            .with_clock(clock.clone())
            .with_inactivity_timeout(Some(Duration::from_secs(60)))
            .with_background_timeout(Duration::from_secs(30)),
    );
    let s = &p.sessions;
    s.set_session_attribute("app.screen", "home").unwrap();
    s.set_permanent_session_attribute("app.region", "eu")
        .unwrap();
    s.add_feature_flag("new-cart", "b").unwrap();
    // A rotation.
    s.start_session().unwrap();
    // A timeout, then activity starts the next one.
    clock.advance(Duration::from_secs(61));
    p.tracer().in_span("after the timeout", |_| {});
    // A long absence in the background.
    s.background();
    clock.advance(Duration::from_secs(31));
    s.foreground();
    s.end_session();
    let all = summaries(&p);
    assert_eq!(all.len(), 4, "boot, rotation, timeout, background");
    let (first, later) = all.split_first().unwrap();
    assert_eq!(span_attr(first, "app.screen").as_deref(), Some("home"));
    for (i, summary) in all.iter().enumerate() {
        assert_eq!(
            span_attr(summary, "app.region").as_deref(),
            Some("eu"),
            "{i}"
        );
        assert_eq!(
            span_attr(summary, "feature_flag.new-cart").as_deref(),
            Some("b"),
            "{i}"
        );
    }
    for summary in later {
        assert_eq!(span_attr(summary, "app.screen"), None, "not carried");
        // The flag it started with is on its timeline.
        assert!(
            summary
                .events
                .iter()
                .any(|e| e.name == "feature_flag.evaluation"),
            "{:?}",
            summary.events
        );
    }
    assert_eq!(
        all.iter()
            .map(|s| span_attr(s, "otel_session.end_reason").unwrap())
            .collect::<Vec<_>>(),
        ["replaced", "inactivity", "background", "manual"]
    );
}

#[test]
fn with_no_session_a_property_waits_for_the_next_one() {
    let p = pipeline(SessionManager::builder().with_mode(SessionMode::Manual));
    let s = &p.sessions;
    s.set_session_attribute("app.launch", "cold").unwrap();
    assert!(s.current_session().is_none(), "nothing started for it");
    s.start_session().unwrap();
    s.start_session().unwrap();
    s.end_session();
    let all = summaries(&p);
    assert_eq!(span_attr(&all[0], "app.launch").as_deref(), Some("cold"));
    assert_eq!(
        span_attr(&all[1], "app.launch"),
        None,
        "that session's only"
    );
}

#[test]
fn permanent_properties_survive_a_restart_and_flags_are_set_again_by_each_process() {
    let dir = common::temp_dir("properties-restart");
    let path = dir.join("session.json");
    let build = || pipeline(SessionManager::builder().with_persistence(&path));
    {
        let p = build();
        let s = &p.sessions;
        s.set_session_attribute("app.screen", "cart").unwrap();
        s.set_permanent_session_attribute("app.region", "eu")
            .unwrap();
        s.add_feature_flag("new-cart", "b").unwrap();
        p.shutdown(); // suspended, with its attributes
    }
    common::released(&path);
    {
        let p = build();
        let s = &p.sessions;
        // The same session continues, as it was.
        let now = s.current_session().unwrap();
        assert_eq!(now.attribute("app.screen").unwrap().as_str(), "cart");
        assert_eq!(now.attribute("app.region").unwrap().as_str(), "eu");
        assert_eq!(now.feature_flag("new-cart").as_deref(), Some("b"));
        // The next session: the permanent one only (this process set no flag).
        let next = s.start_session().unwrap();
        assert_eq!(next.attribute("app.region").unwrap().as_str(), "eu");
        assert_eq!(next.attribute("app.screen"), None);
        assert_eq!(next.feature_flag("new-cart"), None);
        s.remove_session_attribute("app.region").unwrap();
        p.shutdown();
    }
    common::released(&path);
    let p = build();
    assert_eq!(
        p.sessions
            .current_session()
            .unwrap()
            .attribute("app.region"),
        None,
        "removed for good"
    );
    s_end(&p);
}

fn s_end(p: &Pipeline) {
    p.sessions.end_session();
    p.shutdown();
}

#[test]
fn reserved_keys_sizes_and_the_count_are_refused_with_typed_errors() {
    let p = pipeline(SessionManager::builder().with_mode(SessionMode::Manual));
    let s = &p.sessions;
    s.start_session().unwrap();
    for key in [
        "session.id",
        "session.previous_id",
        "otel_session.status",
        "user.id",
        "feature_flag.x",
    ] {
        assert!(
            matches!(
                s.set_session_attribute(key, "v"),
                Err(SessionError::Attribute(AttributeError::Reserved { .. }))
            ),
            "{key}"
        );
    }
    assert!(matches!(
        s.set_session_attribute("k".repeat(129), "v"),
        Err(SessionError::Attribute(AttributeError::KeyTooLong {
            len: 129,
            ..
        }))
    ));
    assert!(matches!(
        s.add_feature_flag("f", "v".repeat(1025)),
        Err(SessionError::Attribute(AttributeError::ValueTooLong { .. }))
    ));
    assert!(matches!(
        s.add_feature_flag("result.variant", "x"),
        Err(SessionError::Attribute(AttributeError::Reserved { .. }))
    ));
    for i in 0..MAX_SESSION_ATTRIBUTES {
        s.set_session_attribute(format!("k{i}"), i as i64).unwrap();
    }
    assert!(matches!(
        s.set_session_attribute("one.more", 1),
        Err(SessionError::Attribute(AttributeError::TooMany { .. }))
    ));
    s.set_session_attribute("k0", "replaced").unwrap();
    let now = s.current_session().unwrap();
    assert_eq!(now.attributes().len(), MAX_SESSION_ATTRIBUTES);
    assert_eq!(now.attribute("session.id"), None);
    // A callback's attributes obey the same rules.
    let p = pipeline(
        SessionManager::builder()
            .with_mode(SessionMode::Manual)
            .on_session(|c| {
                assert!(!c.set_attribute(opentelemetry::KeyValue::new("user.id", "x")));
                assert!(c.set_attribute(opentelemetry::KeyValue::new("tier", "gold")));
                true
            }),
    );
    let started = p.sessions.start_session().unwrap();
    assert_eq!(started.attribute("tier").unwrap().as_str(), "gold");
    assert_eq!(started.attribute("user.id"), None);
}

#[test]
fn stamped_attributes_are_on_every_span_and_log_of_the_session() {
    let p = pipeline(
        SessionManager::builder()
            .with_mode(SessionMode::Manual)
            .with_stamped_attributes(["app.screen", "feature_flag.new-cart", "session.id"]),
    );
    let s = &p.sessions;
    s.start_session().unwrap();
    p.tracer().in_span("before", |_| {});
    info_log(&p, "before");
    s.set_session_attribute("app.screen", "home").unwrap();
    s.set_session_attribute("app.other", "not listed").unwrap();
    s.add_feature_flag("new-cart", "b").unwrap();
    p.tracer().in_span("home", |_| {});
    info_log(&p, "home");
    s.set_session_attribute("app.screen", "checkout").unwrap();
    let worker = {
        let tracer = p.tracer();
        std::thread::spawn(move || tracer.in_span("checkout on a worker", |_| {}))
    };
    worker.join().unwrap();
    p.tracer().in_span("checkout", |_| {});
    error_log(&p, "checkout failed");
    s.pause_session();
    p.tracer().in_span("paused", |_| {});
    s.resume_session();
    s.end_session();
    p.tracer().in_span("no session", |_| {});

    let want = |name: &str| -> (Option<&str>, Option<&str>) {
        match name {
            "before" => (None, None),
            "home" => (Some("home"), Some("b")),
            "checkout" | "checkout on a worker" | "checkout failed" => {
                (Some("checkout"), Some("b"))
            }
            _ => (None, None),
        }
    };
    for span in p.app_spans() {
        let (screen, flag) = want(&span.name);
        assert_eq!(
            span_attr(&span, "app.screen").as_deref(),
            screen,
            "{}",
            span.name
        );
        assert_eq!(
            span_attr(&span, "feature_flag.new-cart").as_deref(),
            flag,
            "{}",
            span.name
        );
        assert_eq!(span_attr(&span, "app.other"), None, "not listed");
        assert!(span_attr_count(&span, "session.id") <= 1, "{}", span.name);
    }
    let logs = p.app_logs();
    assert_eq!(logs.len(), 3);
    for l in &logs {
        let body = body_of(l);
        let name = ["before", "home", "checkout failed"]
            .into_iter()
            .find(|n| body.contains(n))
            .unwrap();
        let (screen, flag) = want(name);
        assert_eq!(log_attr(l, "app.screen").as_deref(), screen, "{body}");
        assert_eq!(
            log_attr(l, "feature_flag.new-cart").as_deref(),
            flag,
            "{body}"
        );
        // Once, also on the counted ERROR record (an active flag of the
        // error and a stamped attribute both).
        for key in ["session.id", "app.screen", "feature_flag.new-cart"] {
            let n = times(l, key);
            assert!(n <= 1, "{key} {n} times on {body}");
        }
    }
}

#[test]
fn flags_active_when_an_error_or_a_crash_is_counted_are_on_its_record() {
    let _one = PANICS.lock().unwrap_or_else(|e| e.into_inner());
    let p = pipeline(SessionManager::builder().with_mode(SessionMode::Manual));
    otel_session::install_panic_hook(&p.sessions);
    let s = &p.sessions;
    s.start_session().unwrap();
    error_log(&p, "no flag yet");
    s.add_feature_flag("new-cart", "b").unwrap();
    s.set_session_attribute("app.screen", "cart").unwrap();
    error_log(&p, "with the flag");
    info_log(&p, "not an error");
    panic_on_worker("the properties test panics");
    s.end_session();
    let logs = p.logs();
    let by_body = |text: &str| {
        logs.iter()
            .find(|l| body_of(l).contains(text))
            .unwrap_or_else(|| panic!("no record {text}"))
    };
    assert_eq!(
        log_attr(by_body("no flag yet"), "feature_flag.new-cart"),
        None
    );
    assert_eq!(
        log_attr(by_body("with the flag"), "feature_flag.new-cart").as_deref(),
        Some("b")
    );
    assert_eq!(
        log_attr(by_body("with the flag"), "app.screen"),
        None,
        "flags only, properties are not copied onto error records"
    );
    assert_eq!(
        log_attr(by_body("not an error"), "feature_flag.new-cart"),
        None
    );
    let crash = by_body("the properties test panics");
    assert_eq!(crash.record.event_name(), Some("exception"));
    assert_eq!(
        log_attr(crash, "feature_flag.new-cart").as_deref(),
        Some("b")
    );
    let summary = &summaries(&p)[0];
    let event = summary
        .events
        .iter()
        .find(|e| e.name == "exception")
        .expect("the crash on the summary");
    assert!(event
        .attributes
        .iter()
        .any(|kv| kv.key.as_str() == "feature_flag.new-cart" && kv.value.as_str() == "b"));
    assert_eq!(
        span_attr(summary, "otel_session.status").as_deref(),
        Some("crashed")
    );
}

/// `otel_session.ended` per (status, split value), from the last export.
fn ended_by(exporter: &InMemoryMetricExporter, key: &str) -> Vec<(String, String, u64)> {
    let metrics = exporter.get_finished_metrics().unwrap();
    let mut out = Vec::new();
    for rm in &metrics[metrics.len() - 1..] {
        for sm in rm.scope_metrics() {
            for m in sm.metrics().filter(|m| m.name() == "otel_session.ended") {
                if let AggregatedMetrics::U64(MetricData::Sum(s)) = m.data() {
                    for dp in s.data_points() {
                        let get = |k: &str| {
                            dp.attributes()
                                .find(|kv| kv.key.as_str() == k)
                                .map(|kv| kv.value.to_string())
                                .unwrap_or_default()
                        };
                        if dp.value() > 0 {
                            out.push((get("otel_session.status"), get(key), dp.value()));
                        }
                    }
                }
            }
        }
    }
    out.sort();
    out
}

#[test]
fn the_metrics_split_counts_ended_per_variant_and_refuses_too_many_values() {
    let exporter = InMemoryMetricExporter::default();
    let provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(exporter.clone()).build())
        .build();
    let p = pipeline(
        SessionManager::builder()
            .with_mode(SessionMode::Manual)
            .with_meter(provider.meter("otel-session"))
            .with_metrics_split(Some("feature_flag.new-cart")),
    );
    let s = &p.sessions;
    // A flag set applies to the current session too: the session started
    // with `a` before the switch to `b` ends with `b`. So: a (ok), a
    // (crashed), b, b, then two without the flag.
    for (variant, crash) in [
        ("a", false),
        ("a", true),
        ("a", false),
        ("b", false),
        ("b", false),
    ] {
        s.add_feature_flag("new-cart", variant).unwrap();
        s.start_session().unwrap();
        if crash {
            s.record_unhandled_error();
        }
    }
    s.clear_feature_flag("new-cart").unwrap();
    s.start_session().unwrap();
    s.end_session();
    provider.force_flush().unwrap();
    assert_eq!(
        ended_by(&exporter, "feature_flag.new-cart"),
        [
            ("crashed".into(), "a".into(), 1),
            ("ok".into(), "".into(), 2),
            ("ok".into(), "a".into(), 1),
            ("ok".into(), "b".into(), 2),
        ]
    );
    // Ten more distinct variants: 8 are kept apart, the rest counted as _other.
    for i in 0..10 {
        s.add_feature_flag("new-cart", format!("v{i}")).unwrap();
        s.start_session().unwrap();
        s.end_session();
    }
    provider.force_flush().unwrap();
    let ended = ended_by(&exporter, "feature_flag.new-cart");
    let values: std::collections::BTreeSet<&str> =
        ended.iter().map(|(_, v, _)| v.as_str()).collect();
    assert_eq!(
        values.len(),
        1 + otel_session::metrics::MAX_SPLIT_VALUES + 1
    );
    assert!(values.contains("_other"));
    let total: u64 = ended.iter().map(|(_, _, n)| n).sum();
    assert_eq!(total, 6 + 10, "every session counted, split or not");
    let other: u64 = ended
        .iter()
        .filter(|(_, v, _)| v == "_other")
        .map(|(_, _, n)| n)
        .sum();
    assert_eq!(other, 4, "a, b and 6 of v0..v9 have series; v6..v9 do not");
    provider.shutdown().unwrap();
}

#[test]
fn request_sessions_take_their_own_properties_and_the_managers_flags() {
    let exporter = InMemoryMetricExporter::default();
    let provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(exporter.clone()).build())
        .build();
    let sessions = SessionManager::builder()
        .with_mode(SessionMode::Request)
        .with_request_ids(true)
        .with_meter(provider.meter("otel-session"))
        .with_metrics_split(Some("feature_flag.canary"))
        .with_stamped_attributes(["feature_flag.canary", "app.route"])
        .build();
    let spans = common::SpanRecorder::default();
    let tp = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_span_processor(sessions.span_processor(
            opentelemetry_sdk::trace::SimpleSpanProcessor::new(spans.clone()),
        ))
        .build();
    otel_session::set_global_manager(sessions.clone());
    // Outside any request: every request session carries it from its start.
    otel_session::add_feature_flag("canary", "on").unwrap();
    for (i, route) in ["/a", "/b", "/c"].into_iter().enumerate() {
        let request = sessions.begin_request([]);
        let _attached = request.context().clone().attach();
        otel_session::set_session_attribute("app.route", route).unwrap();
        if i == 2 {
            // This request's own arm.
            otel_session::add_feature_flag("canary", "off").unwrap();
        }
        tp.tracer("t").in_span("handler", |_| {});
        assert_eq!(
            otel_session::current_session()
                .unwrap()
                .attribute("app.route")
                .unwrap()
                .as_str(),
            route
        );
        drop(_attached);
        request.finish(otel_session::RequestOutcome::Answered);
    }
    otel_session::clear_global_manager();
    provider.force_flush().unwrap();
    assert_eq!(
        ended_by(&exporter, "feature_flag.canary"),
        [
            ("ok".into(), "off".into(), 1),
            ("ok".into(), "on".into(), 2)
        ]
    );
    let handlers = spans.get_finished_spans().unwrap();
    let routes: Vec<(Option<String>, Option<String>)> = handlers
        .iter()
        .map(|s| {
            (
                span_attr(s, "app.route"),
                span_attr(s, "feature_flag.canary"),
            )
        })
        .collect();
    assert_eq!(
        routes,
        [
            (Some("/a".into()), Some("on".into())),
            (Some("/b".into()), Some("on".into())),
            (Some("/c".into()), Some("off".into())),
        ]
    );
    let _ = tp.shutdown();
    provider.shutdown().unwrap();
}

#[test]
fn a_crash_record_carries_the_stamped_properties_as_every_stamped_record_does() {
    let p = pipeline(
        SessionManager::builder()
            .with_mode(SessionMode::Manual)
            .with_stamped_attributes(["app.screen", "feature_flag.new-cart"]),
    );
    let _one = PANICS.lock().unwrap_or_else(|e| e.into_inner());
    otel_session::install_panic_hook(&p.sessions);
    let s = &p.sessions;
    s.start_session().unwrap();
    s.set_session_attribute("app.screen", "cart").unwrap();
    s.add_feature_flag("new-cart", "b").unwrap();
    panic_on_worker("the stamped crash panics");
    s.end_session();
    let logs = p.logs();
    let crash = logs
        .iter()
        .find(|l| body_of(l).contains("the stamped crash panics"))
        .expect("the crash record");
    for (key, value) in [("app.screen", "cart"), ("feature_flag.new-cart", "b")] {
        assert_eq!(log_attr(crash, key).as_deref(), Some(value), "{key}");
        assert_eq!(times(crash, key), 1, "{key} once");
    }
}

#[test]
fn a_request_crash_record_carries_the_requests_flags_and_stamped_properties() {
    let p = pipeline(
        SessionManager::builder()
            .with_mode(SessionMode::Request)
            .with_request_ids(true)
            .with_stamped_attributes(["app.route", "feature_flag.canary"]),
    );
    let _one = PANICS.lock().unwrap_or_else(|e| e.into_inner());
    otel_session::install_panic_hook(&p.sessions);
    // Outside any request: every request session carries it.
    p.sessions.add_feature_flag("canary", "on").unwrap();
    let request = p.sessions.begin_request([]);
    let cx = request.context().clone();
    let tracer = p.tracer();
    let outcome = std::thread::spawn(move || {
        let _in = cx.attach();
        otel_session::set_session_attribute("app.route", "/pay").unwrap();
        otel_session::set_session_attribute("app.unlisted", "x").unwrap();
        tracer.in_span("handler", |_| panic!("the request panics"));
    })
    .join();
    assert!(outcome.is_err());
    let id = request.session().unwrap().id().to_string();
    request.finish(otel_session::RequestOutcome::Panicked);
    let logs = p.logs();
    let crash = logs
        .iter()
        .find(|l| body_of(l).contains("the request panics"))
        .expect("the request's crash record");
    assert_eq!(log_attr(crash, "session.id"), Some(id));
    for (key, value) in [
        ("app.route", Some("/pay")),
        ("feature_flag.canary", Some("on")),
        ("app.unlisted", None),
    ] {
        assert_eq!(log_attr(crash, key).as_deref(), value, "{key}");
        let n = times(crash, key);
        assert!(n <= 1, "{key} {n} times");
    }
    // The handler's span, started after the property was set, has it too.
    let handler = p.app_span("handler");
    assert_eq!(span_attr(&handler, "app.route").as_deref(), Some("/pay"));
}

/// Two wrapped exporting processors on one provider (the recommended way to
/// wrap every exporter): each stamps, and the span still carries each
/// stamped key once; a span whose `session.id` the application set carries
/// none of ours (its session is not ours to describe).
#[test]
fn stamped_keys_are_once_with_two_wrapped_processors_and_none_on_a_span_with_its_own_id() {
    use opentelemetry::trace::{Span as _, Tracer as _};
    let sessions = SessionManager::builder()
        .with_mode(SessionMode::Manual)
        .with_stamped_attributes(["app.screen", "feature_flag.new-cart"])
        .build();
    let (a, b) = (
        common::SpanRecorder::default(),
        common::SpanRecorder::default(),
    );
    let tp = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_span_processor(sessions.span_processor(
            opentelemetry_sdk::trace::SimpleSpanProcessor::new(a.clone()),
        ))
        .with_span_processor(sessions.span_processor(
            opentelemetry_sdk::trace::SimpleSpanProcessor::new(b.clone()),
        ))
        .build();
    sessions.start_session().unwrap();
    sessions
        .set_session_attribute("app.screen", "cart")
        .unwrap();
    sessions.add_feature_flag("new-cart", "b").unwrap();
    let tracer = tp.tracer("app");
    tracer.in_span("work", |_| {});
    let mut own = tracer
        .span_builder("own id")
        .with_attributes([opentelemetry::KeyValue::new("session.id", "theirs")])
        .start(&tracer);
    own.end();
    for recorder in [&a, &b] {
        let spans = recorder.get_finished_spans().unwrap();
        let work = spans.iter().find(|s| s.name == "work").unwrap();
        for key in ["session.id", "app.screen", "feature_flag.new-cart"] {
            assert_eq!(span_attr_count(work, key), 1, "{key} on work");
        }
        let own = spans.iter().find(|s| s.name == "own id").unwrap();
        assert_eq!(span_attr(own, "session.id").as_deref(), Some("theirs"));
        assert_eq!(span_attr_count(own, "session.id"), 1);
        assert_eq!(span_attr(own, "app.screen"), None, "not our session's");
        assert_eq!(span_attr(own, "feature_flag.new-cart"), None);
    }
    let _ = tp.shutdown();
}
