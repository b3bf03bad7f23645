//! 100,000 request sessions leave resident memory flat: nothing is kept per
//! request once it ends (ids are not leaked, no per-request cache entry).

use opentelemetry::metrics::MeterProvider as _;
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use otel_session::{RequestOutcome, SessionManager, SessionMode};

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

fn requests(sessions: &SessionManager, n: usize) {
    for i in 0..n {
        let request = sessions.begin_request(["session.id=caller-7"]);
        {
            let _in = request.context().clone().attach();
            if i % 3 == 0 {
                otel_session::record_handled_error();
            }
            std::hint::black_box(otel_session::current_session());
        }
        request.finish(if i % 7 == 0 {
            RequestOutcome::Failed
        } else {
            RequestOutcome::Answered
        });
    }
}

#[test]
fn a_hundred_thousand_request_sessions_leave_memory_flat() {
    let meters = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(InMemoryMetricExporter::default()).build())
        .build();
    let sessions = SessionManager::builder()
        .with_mode(SessionMode::Request)
        .with_request_ids(true)
        .with_propagation(true)
        .with_meter(meters.meter("otel-session"))
        .build();
    requests(&sessions, 10_000); // warm up: allocator pools, metric streams
    let before = rss_kib();
    requests(&sessions, 100_000);
    let after = rss_kib();
    assert!(
        after <= before + 1024,
        "resident memory grew by {} KiB over 100k request sessions ({before} -> {after} KiB)",
        after.saturating_sub(before)
    );
    let _ = meters.shutdown();
}
