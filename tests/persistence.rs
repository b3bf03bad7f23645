//! Persistence in one process, on a manual clock: a clean exit suspends the
//! session and the next start continues it or reports its end; a process that
//! died leaves an `active` session, reported `abnormal` / `lost`; ends that were
//! not delivered are sent again.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{released, span_attr, SpanRecorder};
use opentelemetry::trace::{Tracer as _, TracerProvider as _};
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
use opentelemetry_sdk::trace::{
    BatchSpanProcessor, SdkTracerProvider, SimpleSpanProcessor, SpanData, SpanExporter,
};
use otel_session::{Clock as _, ManualClock, SessionManager};

const IDLE: Duration = Duration::from_secs(15 * 60);

fn dir(name: &str) -> common::TempDir {
    common::temp_dir(&format!("persist-{name}"))
}

fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

struct App {
    sessions: SessionManager,
    spans: SpanRecorder,
    tp: SdkTracerProvider,
}

fn app(path: &Path, clock: &Arc<ManualClock>) -> App {
    let sessions = SessionManager::builder()
        .with_clock(clock.clone())
        .with_inactivity_timeout(Some(IDLE))
        .with_persistence(path)
        .build();
    let spans = SpanRecorder::default();
    let tp = SdkTracerProvider::builder()
        .with_span_processor(sessions.span_processor(SimpleSpanProcessor::new(spans.clone())))
        .build();
    App {
        sessions,
        spans,
        tp,
    }
}

fn lifecycle(a: &App) -> Vec<(String, String, Option<String>)> {
    a.spans
        .get_finished_spans()
        .unwrap()
        .iter()
        .filter(|s| s.instrumentation_scope.name() == "otel-session" && s.name != "session")
        .map(|s| {
            (
                s.name.to_string(),
                span_attr(s, "session.id").unwrap(),
                span_attr(s, "otel_session.end_reason"),
            )
        })
        .collect()
}

fn summary(a: &App, id: &str) -> SpanData {
    a.spans
        .get_finished_spans()
        .unwrap()
        .into_iter()
        .find(|s| s.name == "session" && span_attr(s, "session.id").as_deref() == Some(id))
        .unwrap_or_else(|| panic!("no summary for {id}"))
}

#[test]
fn a_clean_exit_suspends_and_the_next_start_continues_the_same_session() {
    let d = dir("continue");
    let path = d.join("session.json");
    let clock = ManualClock::shared(t0());
    let first = {
        let a = app(&path, &clock);
        let id = a.sessions.current_session().unwrap().id().to_string();
        a.tp.tracer("t").in_span("work", |_| {});
        a.tp.shutdown().unwrap(); // a clean exit
        assert!(
            lifecycle(&a).iter().all(|l| l.0 != "session.end"),
            "with persistence a clean exit does not end the session"
        );
        id
    };
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("\"suspended\""), "{text}");
    clock.advance(IDLE - Duration::from_secs(1));
    released(&path);
    let b = app(&path, &clock);
    let s = b.sessions.current_session().unwrap();
    assert_eq!(s.id().as_str(), first, "the same session goes on");
    assert_eq!(s.started_at(), t0());
    assert_eq!(
        lifecycle(&b),
        [("session.resume".to_string(), first.clone(), None)]
    );
    b.tp.tracer("t").in_span("more", |_| {});
    b.sessions.end_session();
    assert_eq!(
        summary(&b, &first).start_time,
        t0(),
        "its summary spans both runs"
    );
}

#[test]
fn a_suspended_session_past_its_timeout_is_ended_at_its_last_activity() {
    let d = dir("expired");
    let path = d.join("session.json");
    let clock = ManualClock::shared(t0());
    let (first, last) = {
        let a = app(&path, &clock);
        clock.advance(Duration::from_secs(90));
        a.sessions.set_user(otel_session::User::with_id("u")); // activity, saved
        let id = a.sessions.current_session().unwrap().id().to_string();
        a.tp.shutdown().unwrap();
        (id, clock.now())
    };
    clock.advance(IDLE);
    released(&path);
    let b = app(&path, &clock);
    let l = lifecycle(&b);
    assert_eq!(
        l[0],
        (
            "session.end".into(),
            first.clone(),
            Some("inactivity".into())
        )
    );
    assert_eq!(
        summary(&b, &first).end_time,
        last,
        "dated at its last activity"
    );
    let new = b.sessions.current_session().unwrap();
    assert_ne!(new.id().as_str(), first);
    assert_eq!(new.previous_id().map(|p| p.as_str()), Some(first.as_str()));
}

/// The file as a running process leaves it (copied aside: this process keeps
/// running and holds the original).
fn die_with(path: &Path, dead: &Path) {
    std::fs::copy(path, dead).unwrap();
}

#[test]
fn a_process_that_died_leaves_a_session_reported_abnormal_and_lost_crashed_stays_crashed() {
    let d = dir("lost");
    let path = d.join("session.json");
    let dead = d.join("dead.json");
    let dead_crashed = d.join("dead-crashed.json");
    let clock = ManualClock::shared(t0());
    let a = app(&path, &clock);
    let first = a.sessions.current_session().unwrap().id().to_string();
    clock.advance(Duration::from_secs(30));
    a.sessions.set_user(otel_session::User::with_id("u"));
    let last = clock.now();
    die_with(&path, &dead);
    a.sessions.record_unhandled_error();
    a.sessions.set_user(otel_session::User::with_id("u2"));
    die_with(&path, &dead_crashed);

    clock.advance(Duration::from_secs(60));
    let b = app(&dead, &clock);
    let end = summary(&b, &first);
    assert_eq!(
        span_attr(&end, "otel_session.status").as_deref(),
        Some("abnormal")
    );
    assert_eq!(
        span_attr(&end, "otel_session.end_reason").as_deref(),
        Some("lost")
    );
    assert_eq!(end.end_time, last, "dated at its last recorded activity");
    let new = b.sessions.current_session().unwrap();
    assert_eq!(new.previous_id().map(|p| p.as_str()), Some(first.as_str()));

    let c = app(&dead_crashed, &clock);
    let end = summary(&c, &first);
    assert_eq!(
        span_attr(&end, "otel_session.status").as_deref(),
        Some("crashed")
    );
    assert_eq!(
        span_attr(&end, "otel_session.errors.unhandled").as_deref(),
        Some("1")
    );
    drop(a);
}

/// An exporter that fails until told otherwise.
#[derive(Debug, Clone, Default)]
struct Flaky(SpanRecorder, Arc<AtomicBool>);
impl SpanExporter for Flaky {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        if self.1.load(Ordering::SeqCst) {
            return Err(OTelSdkError::InternalFailure("collector down".into()));
        }
        self.0.export(batch).await
    }
}

/// A run whose session end the collector never got: the session ends while the
/// exporter fails (the file keeps the end as pending), and the file is copied
/// aside as the next run finds it.
struct Undelivered {
    first: otel_session::SessionId,
    aside: PathBuf,
    down: Arc<AtomicBool>,
    tp: SdkTracerProvider,
    /// Last: removed after the provider and its manager.
    _dir: common::TempDir,
}

fn undelivered_end(name: &str, clock: &Arc<ManualClock>) -> Undelivered {
    let d = dir(name);
    let path = d.join("session.json");
    let down = Arc::new(AtomicBool::new(true));
    let flaky = Flaky(SpanRecorder::default(), Arc::clone(&down));
    let sessions = SessionManager::builder()
        .with_clock(clock.clone())
        .with_persistence(&path)
        .build();
    let tp = SdkTracerProvider::builder()
        .with_span_processor(sessions.span_processor(BatchSpanProcessor::builder(flaky).build()))
        .build();
    let first = sessions.current_session().unwrap().id().clone();
    sessions.end_session();
    assert!(tp.force_flush().is_err(), "the collector is down");
    let text = std::fs::read_to_string(&path).unwrap();
    let pending = &text[text.find("pending_ends").unwrap()..];
    assert!(pending.contains(first.as_str()), "kept: {text}");
    let aside = d.join("aside.json");
    std::fs::copy(&path, &aside).unwrap();
    Undelivered {
        first,
        aside,
        down,
        tp,
        _dir: d,
    }
}

#[test]
fn an_end_that_was_not_delivered_is_sent_again_by_the_next_start() {
    let clock = ManualClock::shared(t0());
    let run = undelivered_end("pending", &clock);
    let first = run.first.to_string();
    let b = app(&run.aside, &clock);
    let l = lifecycle(&b);
    assert!(
        l.contains(&("session.end".into(), first.clone(), Some("manual".into()))),
        "sent again: {l:?}"
    );
    // Delivered now: a flush confirms it and the file forgets it.
    b.tp.force_flush().unwrap();
    let text = std::fs::read_to_string(&run.aside).unwrap();
    let pending = &text[text.find("pending_ends").unwrap()..];
    assert!(
        !pending.contains(&first),
        "forgotten once delivered: {text}"
    );
    run.down.store(false, Ordering::SeqCst);
    drop(run.tp);
}

#[test]
fn the_file_is_private_written_whole_and_used_by_one_process_at_a_time() {
    let d = dir("file");
    let path = d.join("session.json");
    let clock = ManualClock::shared(t0());
    let a = app(&path, &clock);
    a.sessions.set_user(otel_session::User::with_id("u"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let leftovers: Vec<_> = std::fs::read_dir(&d)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // A second user of the same file is refused (it runs unpersisted).
    let mine = a.sessions.current_session().unwrap().id().to_string();
    let b = app(&path, &clock);
    let theirs = b.sessions.current_session().unwrap().id().to_string();
    b.sessions.set_user(otel_session::User::with_id("other"));
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(&mine) && !text.contains(&theirs), "{text}");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 200, ..Default::default() })]

    /// Whatever the file holds, the manager builds, starts a fresh session
    /// (no `previous_id` from garbage) and replaces the file with a real one.
    #[test]
    fn whatever_the_file_holds_the_manager_starts_fresh(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
        let d = dir("fuzzed");
        let path = d.join("session.json");
        std::fs::write(&path, &bytes).unwrap();
        let clock = ManualClock::shared(t0());
        let a = app(&path, &clock);
        let s = a.sessions.current_session().expect("a fresh session");
        proptest::prop_assert_eq!(s.previous_id(), None);
        let text = std::fs::read_to_string(&path).unwrap();
        proptest::prop_assert!(text.contains(s.id().as_str()), "replaced: {}", text);
        drop(a);
        let _ = std::fs::remove_dir_all(&d);
    }
}

#[test]
fn a_damaged_file_means_a_fresh_session() {
    let d = dir("damaged");
    let path = d.join("session.json");
    std::fs::write(
        &path,
        b"{\"format\":\"otel-session/session/1\",\"session\":{\"id\":\"x\"",
    )
    .unwrap();
    let clock = ManualClock::shared(t0());
    let a = app(&path, &clock);
    let s = a.sessions.current_session().unwrap();
    assert_eq!(s.previous_id(), None);
    assert!(lifecycle(&a).iter().all(|l| l.0 == "session.start"));
}

#[test]
fn an_end_sent_again_is_the_same_span_and_not_counted_twice() {
    use opentelemetry::metrics::MeterProvider as _;
    use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
    let clock = ManualClock::shared(t0());
    let run = undelivered_end("resent", &clock);
    let (first, aside) = (&run.first, &run.aside);

    // A second copy of what the next run finds, for a second resend.
    let again = aside.with_file_name("again.json");
    std::fs::copy(aside, &again).unwrap();
    let metrics = InMemoryMetricExporter::default();
    let mp = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(metrics.clone()).build())
        .build();
    let resent = |path: &std::path::Path, meter: Option<opentelemetry::metrics::Meter>| {
        let spans = SpanRecorder::default();
        let mut b = SessionManager::builder()
            .with_clock(clock.clone())
            .with_persistence(path);
        if let Some(meter) = meter {
            b = b.with_meter(meter);
        }
        let b = b.build();
        let btp = SdkTracerProvider::builder()
            .with_span_processor(b.span_processor(SimpleSpanProcessor::new(spans.clone())))
            .build();
        let end = spans
            .get_finished_spans()
            .unwrap()
            .into_iter()
            .find(|s| {
                s.name == "session.end"
                    && span_attr(s, "session.id").as_deref() == Some(first.as_str())
            })
            .expect("sent again");
        (end, btp)
    };
    let (end, btp) = resent(aside, Some(mp.meter("otel-session")));
    let (end_again, ctp) = resent(&again, None);
    assert_eq!(
        end.span_context.span_id(),
        end_again.span_context.span_id(),
        "an end sent again is the same span (its id is derived from the session's)"
    );
    drop(ctp);
    mp.force_flush().unwrap();
    // Every status reports from the start (0 until a session ends with it).
    let ended: u64 = metrics
        .get_finished_metrics()
        .unwrap()
        .iter()
        .flat_map(|rm| {
            rm.scope_metrics()
                .flat_map(|sm| sm.metrics().filter(|m| m.name() == "otel_session.ended"))
                .map(|m| match m.data() {
                    AggregatedMetrics::U64(MetricData::Sum(s)) => {
                        s.data_points().map(|dp| dp.value()).sum::<u64>()
                    }
                    _ => 0,
                })
                .collect::<Vec<_>>()
        })
        .sum();
    assert_eq!(ended, 0, "the last run counted it");
    drop((run.tp, btp));
}

#[test]
fn continuing_is_activity() {
    let d = dir("resume-activity");
    let path = d.join("session.json");
    let clock = ManualClock::shared(t0());
    let first = {
        let a = app(&path, &clock);
        let id = a.sessions.current_session().unwrap().id().to_string();
        a.tp.shutdown().unwrap();
        id
    };
    clock.advance(IDLE - Duration::from_secs(60)); // back after 14 minutes
    released(&path);
    let b = app(&path, &clock);
    assert_eq!(b.sessions.current_session().unwrap().id().as_str(), first);
    clock.advance(IDLE - Duration::from_secs(1));
    assert_eq!(
        b.sessions.current_session().unwrap().id().as_str(),
        first,
        "idle counts from the resume, not from the last run's last activity"
    );
    let resumed_at = t0() + IDLE - Duration::from_secs(60);
    clock.advance(Duration::from_secs(1));
    assert!(b.sessions.current_session().is_none());
    assert_eq!(summary(&b, &first).end_time, resumed_at);
}

#[test]
fn a_session_active_for_longer_than_the_timeout_continues_after_a_restart() {
    let d = dir("long-lived");
    let path = d.join("session.json");
    let clock = ManualClock::shared(t0());
    let first = {
        let a = app(&path, &clock);
        let id = a.sessions.current_session().unwrap().id().to_string();
        // Busy for three timeouts, never idle for one.
        for _ in 0..6 {
            clock.advance(IDLE / 2);
            a.tp.tracer("t").in_span("work", |_| {});
        }
        a.tp.shutdown().unwrap(); // a clean exit
        id
    };
    clock.advance(IDLE / 3);
    released(&path);
    let b = app(&path, &clock);
    let s = b.sessions.current_session().unwrap();
    assert_eq!(
        s.id().as_str(),
        first,
        "idle for a third of the timeout: the same session goes on"
    );
    drop(b);

    // A process that died after such a session: its end is dated at the last
    // activity, not at the start.
    let dead = d.join("dead.json");
    let c = app(&d.join("second.json"), &clock);
    let second = c.sessions.current_session().unwrap().id().to_string();
    for _ in 0..6 {
        clock.advance(IDLE / 2);
        c.tp.tracer("t").in_span("work", |_| {});
    }
    clock.advance(IDLE / 2);
    let active_until = clock.now();
    c.sessions.set_user(otel_session::User::with_id("u")); // activity, saved at once
    die_with(&d.join("second.json"), &dead);
    clock.advance(IDLE * 2);
    let e = app(&dead, &clock);
    let end = summary(&e, &second);
    assert_eq!(end.end_time, active_until, "dated at its last activity");
    drop(c);
}

#[test]
fn request_mode_does_not_open_the_file() {
    let d = dir("request-mode");
    let path = d.join("session.json");
    let manager = SessionManager::builder()
        .with_mode(otel_session::SessionMode::Request)
        .with_persistence(&path)
        .build();
    drop(manager);
    let left: Vec<_> = std::fs::read_dir(&d)
        .expect("dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert!(left.is_empty(), "nothing created: {left:?}");
    // In app mode the same builder call opens it (at build).
    let manager = SessionManager::builder().with_persistence(&path).build();
    assert!(std::fs::read_dir(&d).expect("dir").next().is_some());
    drop(manager);
}
