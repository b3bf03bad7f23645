//! Issue 11, "Wrong today" 5: an end is delivered exactly once — confirmed by
//! the sink that exported it, resent only if none did, a flush confirming only
//! what it can vouch for.

mod common;

use std::path::Path;

use common::{released, span_attr, temp_dir as dir, LogRecorder, SpanRecorder};
use opentelemetry::trace::{Tracer as _, TracerProvider as _};
use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::trace::{
    BatchSpanProcessor, SdkTracerProvider, SimpleSpanProcessor, SpanData,
};
use otel_session::SessionManager;

/// A run with persistence and a wrapped batch processor of the user's, shut
/// down without a `force_flush`; what it exported.
fn persisted_run(path: &Path, end: bool) -> Vec<SpanData> {
    let recorder = SpanRecorder::default();
    let sessions = SessionManager::builder().with_persistence(path).build();
    let processor = sessions.span_processor(BatchSpanProcessor::builder(recorder.clone()).build());
    one_run(path, sessions, processor, end);
    recorder.get_finished_spans().unwrap()
}

/// A span of the application's, then (`end`) an end, then the provider shut
/// down (no `force_flush`) and the manager gone.
fn one_run(
    path: &Path,
    sessions: SessionManager,
    processor: impl opentelemetry_sdk::trace::SpanProcessor + 'static,
    end: bool,
) {
    let tp = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .build();
    tp.tracer("app").in_span("work", |_| {});
    if end {
        sessions.end_session();
    }
    tp.shutdown().unwrap();
    drop(tp);
    drop(sessions);
    released(path);
}

#[test]
fn an_end_exported_through_a_wrapped_batch_processor_is_not_sent_again_on_restart() {
    let d = dir("once");
    let path = d.join("session.json");
    let mut all = persisted_run(&path, true);
    all.extend(persisted_run(&path, false));
    all.extend(persisted_run(&path, false));
    let first_end: Vec<_> = all
        .iter()
        .filter(|s| s.name == "session.end")
        .map(|s| span_attr(s, "session.id").unwrap())
        .collect();
    let mut unique = first_end.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        first_end.len(),
        1,
        "the ended session, once (the later runs suspend theirs): {first_end:?}"
    );
    assert_eq!(
        first_end.len(),
        unique.len(),
        "each end once: {first_end:?}"
    );
}

/// An exporter to a collector that is down, or up (recording what it got).
#[derive(Debug)]
enum Collector {
    Down,
    Up(SpanRecorder),
}

impl opentelemetry_sdk::trace::SpanExporter for Collector {
    async fn export(&self, batch: Vec<SpanData>) -> opentelemetry_sdk::error::OTelSdkResult {
        match self {
            Collector::Down => Err(opentelemetry_sdk::error::OTelSdkError::InternalFailure(
                "collector down".into(),
            )),
            Collector::Up(recorder) => recorder.export(batch).await,
        }
    }
}

/// A run whose exporter (wrapped by `span_exporter`) is down or up, under a
/// simple or (`batch`) a batch processor; the summaries it exported, by
/// session id.
fn run_with_exporter(
    path: &Path,
    end: bool,
    down: bool,
    batch: bool,
) -> (Vec<String>, Option<String>) {
    let recorder = SpanRecorder::default();
    let sessions = SessionManager::builder().with_persistence(path).build();
    let id = sessions.current_session().map(|s| s.id().to_string());
    let exporter = sessions.span_exporter(if down {
        Collector::Down
    } else {
        Collector::Up(recorder.clone())
    });
    if batch {
        let p = sessions.span_processor(BatchSpanProcessor::builder(exporter).build());
        finish_run(path, sessions, p, end, &recorder, id)
    } else {
        let p = sessions.span_processor(SimpleSpanProcessor::new(exporter));
        finish_run(path, sessions, p, end, &recorder, id)
    }
}

fn finish_run(
    path: &Path,
    sessions: SessionManager,
    processor: impl opentelemetry_sdk::trace::SpanProcessor + 'static,
    end: bool,
    recorder: &SpanRecorder,
    id: Option<String>,
) -> (Vec<String>, Option<String>) {
    one_run(path, sessions, processor, end);
    let summaries = recorder
        .get_finished_spans()
        .unwrap()
        .iter()
        .filter(|s| s.name == "session")
        .filter_map(|s| span_attr(s, "session.id"))
        .collect();
    (summaries, id)
}

/// With an exporter that acknowledges (`span_exporter`), a flush's `Ok`
/// confirms nothing: `SimpleSpanProcessor` flushes `Ok` after a failed export,
/// so a flush-confirmed end would be lost; this one is sent again by the next
/// start, and then never again.
fn undelivered_end_sent_by_the_next_start_and_only_then(name: &str, batch: bool) {
    let d = dir(name);
    let path = d.join("session.json");
    let (sent, ended) = run_with_exporter(&path, true, true, batch);
    assert!(sent.is_empty(), "nothing reached a collector that is down");
    let ended = ended.expect("a session");
    let (second, _) = run_with_exporter(&path, false, false, batch);
    assert_eq!(
        second.iter().filter(|id| **id == ended).count(),
        1,
        "the undelivered end is sent by the next start: {second:?}"
    );
    let (third, _) = run_with_exporter(&path, false, false, batch);
    assert!(
        !third.contains(&ended),
        "and not again once exported: {third:?}"
    );
}

#[test]
fn an_end_the_exporter_could_not_deliver_is_sent_by_the_next_start_and_only_then() {
    undelivered_end_sent_by_the_next_start_and_only_then("exporter", false);
}

/// The same under a batch processor (as `init()` builds): the re-sent end is
/// exported, and so acknowledged, only by the shutdown's flush, after the
/// session was put aside; that acknowledgement still reaches the file.
#[test]
fn under_a_batch_processor_an_end_acknowledged_at_shutdown_leaves_the_file() {
    undelivered_end_sent_by_the_next_start_and_only_then("exporter-batch", true);
}

/// With only a log pipeline (no span sink ever connects), the `session.end`
/// event is the end: a successful flush of the log sink confirms it, so it is
/// not sent again by every start (it was, before: only span sinks confirmed).
#[test]
fn with_only_logs_exported_a_delivered_end_is_not_sent_again() {
    use opentelemetry_sdk::logs::BatchLogProcessor;
    let d = dir("logs-only");
    let path = d.join("session.json");
    let mut ended = None;
    let mut events = Vec::new();
    for run in 0..3 {
        let recorder = LogRecorder::default();
        let sessions = SessionManager::builder().with_persistence(&path).build();
        let lp = SdkLoggerProvider::builder()
            .with_log_processor(
                sessions.log_processor(BatchLogProcessor::builder(recorder.clone()).build()),
            )
            .build();
        if run == 0 {
            ended = sessions.current_session().map(|s| s.id().to_string());
            sessions.end_session();
        }
        lp.shutdown().unwrap();
        drop(lp);
        drop(sessions);
        released(&path);
        events.extend(
            recorder
                .0
                .lock()
                .unwrap()
                .iter()
                .filter(|(r, _)| r.event_name() == Some("session.end"))
                .filter_map(|(r, _)| {
                    r.attributes_iter()
                        .find(|(k, _)| k.as_str() == "session.id")
                        .map(|(_, v)| format!("{v:?}"))
                })
                .collect::<Vec<_>>(),
        );
    }
    let ended = ended.expect("a session");
    assert_eq!(
        events.iter().filter(|v| v.contains(&ended)).count(),
        1,
        "one session.end for {ended}: {events:?}"
    );
}

/// When the provider's shutdown returns, an end its exporter acknowledged
/// during that shutdown has left the file: a process that exits right after
/// (as `init()`'s guard lets it) does not send it again. (The
/// acknowledgement came from the export thread and its save waited for the
/// timer thread, which a process exiting at once never lets run: tried as a
/// new user, `init!()` with persistence sent a re-sent end on every start.)
#[test]
fn an_end_acknowledged_during_shutdown_has_left_the_file_when_shutdown_returns() {
    let d = dir("exporter-exit");
    let path = d.join("session.json");
    let (_, ended) = run_with_exporter(&path, true, true, true);
    let ended = ended.expect("a session");
    let before: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(before["pending_ends"][0]["session"]["id"], ended.as_str());
    let recorder = SpanRecorder::default();
    let sessions = SessionManager::builder().with_persistence(&path).build();
    let exporter = sessions.span_exporter(Collector::Up(recorder.clone()));
    let tp = SdkTracerProvider::builder()
        .with_span_processor(sessions.span_processor(BatchSpanProcessor::builder(exporter).build()))
        .build();
    tp.shutdown().unwrap();
    let file = std::fs::read_to_string(&path).unwrap();
    drop(tp);
    drop(sessions);
    released(&path);
    assert!(
        recorder
            .get_finished_spans()
            .unwrap()
            .iter()
            .any(|s| s.name == "session" && span_attr(s, "session.id").as_deref() == Some(&ended)),
        "the end was sent again"
    );
    let kept: serde_json::Value = serde_json::from_str(&file).unwrap();
    assert_eq!(
        kept["pending_ends"].as_array().map(Vec::len),
        Some(0),
        "exported and acknowledged, yet still kept when shutdown returned: {file}"
    );
}
