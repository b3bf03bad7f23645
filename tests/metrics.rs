//! Stability metrics: started / ended by status / duration histogram, reported
//! sessions only.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use opentelemetry::metrics::MeterProvider as _;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use otel_session::SessionMode;
use otel_session::{ManualClock, SessionManager};

fn sum(metrics: &[ResourceMetrics], name: &str, status: Option<&str>) -> u64 {
    let mut total = 0;
    for rm in metrics {
        for sm in rm.scope_metrics() {
            for m in sm.metrics().filter(|m| m.name() == name) {
                if let AggregatedMetrics::U64(MetricData::Sum(s)) = m.data() {
                    for dp in s.data_points() {
                        let st = dp
                            .attributes()
                            .find(|kv| kv.key.as_str() == "otel_session.status")
                            .map(|kv| kv.value.to_string());
                        if status.is_none() || st.as_deref() == status {
                            total += dp.value();
                        }
                    }
                }
            }
        }
    }
    total
}

#[test]
fn started_ended_and_duration_are_recorded_for_reported_sessions() {
    let exporter = InMemoryMetricExporter::default();
    let provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(exporter.clone()).build())
        .build();
    let clock = Arc::new(ManualClock::new(
        UNIX_EPOCH + Duration::from_secs(1_000_000),
    ));
    let discard_next = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let d = Arc::clone(&discard_next);
    let sessions = SessionManager::builder()
        .with_mode(SessionMode::Manual)
        .with_clock(clock.clone())
        .with_inactivity_timeout(None) // the 45-minute session below is one session
        .with_meter(provider.meter("otel-session"))
        .on_session(move |_| !d.load(std::sync::atomic::Ordering::Relaxed))
        .build();

    sessions.start_session().unwrap(); // ok, 12 s
    clock.advance(Duration::from_secs(12));
    sessions.start_session().unwrap(); // crashed, 45 min
    sessions.record_unhandled_error();
    clock.advance(Duration::from_secs(45 * 60));
    discard_next.store(true, std::sync::atomic::Ordering::Relaxed);
    sessions.start_session().unwrap(); // discarded: not counted
    sessions.end_session();
    discard_next.store(false, std::sync::atomic::Ordering::Relaxed);
    sessions.start_session().unwrap(); // still open

    provider.force_flush().unwrap();
    let metrics = exporter.get_finished_metrics().unwrap();
    let last = &metrics[metrics.len() - 1..]; // cumulative: the last export has it all
    assert_eq!(sum(last, "otel_session.started", None), 3);
    assert_eq!(sum(last, "otel_session.ended", None), 2);
    assert_eq!(sum(last, "otel_session.ended", Some("ok")), 1);
    assert_eq!(sum(last, "otel_session.ended", Some("crashed")), 1);

    let mut buckets = None;
    for rm in last {
        for sm in rm.scope_metrics() {
            for m in sm.metrics().filter(|m| m.name() == "otel_session.duration") {
                assert_eq!(m.unit(), "s");
                if let AggregatedMetrics::F64(MetricData::Histogram(h)) = m.data() {
                    let dp = h.data_points().next().expect("one point");
                    assert_eq!(
                        dp.bounds().collect::<Vec<_>>(),
                        [1.0, 10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0]
                    );
                    buckets = Some(dp.bucket_counts().collect::<Vec<_>>());
                }
            }
        }
    }
    // 12 s falls in (10, 30]; 45 min in (1800, 3600].
    assert_eq!(buckets, Some(vec![0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0]));
    provider.shutdown().unwrap();
}

/// The instruments are bound once to their attribute sets: with delta
/// temporality each export has that interval's sessions only (and only the
/// statuses it saw), for request and app sessions alike.
#[test]
fn bound_instruments_report_each_interval_with_delta_temporality() {
    let exporter = opentelemetry_sdk::metrics::InMemoryMetricExporterBuilder::new()
        .with_temporality(opentelemetry_sdk::metrics::Temporality::Delta)
        .build();
    let provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(exporter.clone()).build())
        .build();
    let requests = SessionManager::builder()
        .with_mode(SessionMode::Request)
        .with_meter(provider.meter("otel-session"))
        .build();
    let app = SessionManager::builder()
        .with_mode(SessionMode::Manual)
        .with_meter(provider.meter("otel-session"))
        .build();
    let request = |outcome| requests.begin_request([]).finish(outcome);

    request(otel_session::RequestOutcome::Answered);
    request(otel_session::RequestOutcome::Failed);
    app.start_session().unwrap();
    app.end_session();
    provider.force_flush().unwrap();
    request(otel_session::RequestOutcome::Panicked);
    provider.force_flush().unwrap();

    let metrics = exporter.get_finished_metrics().unwrap();
    assert_eq!(metrics.len(), 2, "two exports");
    let (first, second) = (&metrics[..1], &metrics[1..]);
    assert_eq!(sum(first, "otel_session.started", None), 3);
    assert_eq!(sum(first, "otel_session.ended", Some("ok")), 2);
    assert_eq!(sum(first, "otel_session.ended", Some("errored")), 1);
    assert_eq!(sum(first, "otel_session.ended", Some("crashed")), 0);
    assert_eq!(
        sum(second, "otel_session.started", None),
        1,
        "this interval's"
    );
    assert_eq!(sum(second, "otel_session.ended", Some("ok")), 0);
    assert_eq!(sum(second, "otel_session.ended", Some("crashed")), 1);
    let statuses = |m: &[ResourceMetrics]| {
        let mut seen = Vec::new();
        for rm in m {
            for sm in rm.scope_metrics() {
                for m in sm.metrics().filter(|m| m.name() == "otel_session.ended") {
                    if let AggregatedMetrics::U64(MetricData::Sum(s)) = m.data() {
                        assert!(s.is_monotonic(), "a counter");
                        for dp in s.data_points() {
                            seen.extend(dp.attributes().map(|kv| kv.value.to_string()));
                        }
                    }
                }
            }
        }
        seen.sort();
        seen.dedup();
        seen
    };
    assert_eq!(statuses(first), ["errored", "ok"]);
    assert_eq!(statuses(second), ["crashed"]);
    provider.shutdown().unwrap();
}
