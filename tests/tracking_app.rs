//! App mode tracks itself: a session at build, inactivity and maximum-duration
//! rotation, foreground/background, all driven by a manual clock (no sleeps),
//! each rule at its boundary and one tick before.

mod common;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{pipeline, sid, span_attr, Pipeline};
use opentelemetry::logs::{LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry::trace::Tracer as _;
use otel_session::{
    Clock, ClockWaker, EndReason, ManualClock, Session, SessionManager, SessionMode,
    SessionObserver,
};

const T0: u64 = 1_700_000_000;
const TICK: Duration = Duration::from_nanos(1);

fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(T0)
}

fn clock() -> Arc<ManualClock> {
    ManualClock::shared(t0())
}

/// A pipeline in app mode on a manual clock with the given timeouts.
fn app(clock: &Arc<ManualClock>, inactivity: Option<Duration>, max: Option<Duration>) -> Pipeline {
    pipeline(
        SessionManager::builder()
            .with_clock(clock.clone())
            .with_inactivity_timeout(inactivity)
            .with_max_duration(max),
    )
}

/// Lifecycle output of a start that telemetry triggered is delivered right
/// after (by the timer thread); a flush delivers it now.
fn flush(p: &Pipeline) {
    p.tracer_provider.force_flush().unwrap();
    p.logger_provider.force_flush().unwrap();
}

fn span(p: &Pipeline, name: &str) -> Option<String> {
    p.tracer().in_span(name.to_string(), |_| {});
    sid(&p.app_span(name))
}

/// (reason, end time) of every `session.end` transition, in order.
fn ends(p: &Pipeline) -> Vec<(String, String, SystemTime)> {
    flush(p);
    end_transitions(p)
}

/// [`ends`] without the flush (after a provider's shutdown).
fn end_transitions(p: &Pipeline) -> Vec<(String, String, SystemTime)> {
    p.lifecycle_spans()
        .iter()
        .filter(|s| s.name == "session.end")
        .map(|s| {
            (
                span_attr(s, "session.id").unwrap(),
                span_attr(s, "otel_session.end_reason").unwrap(),
                s.start_time,
            )
        })
        .collect()
}

#[test]
fn app_mode_starts_a_session_at_build_and_manual_mode_does_not() {
    let c = clock();
    let p = app(&c, None, None);
    let s = p.sessions.current_session().expect("a session at build");
    assert_eq!(s.started_at(), t0());
    assert_eq!(span(&p, "first").as_deref(), Some(s.id().as_str()));
    // Its start went out through the pipeline connected after the build.
    assert_eq!(p.lifecycle_spans()[0].name, "session.start");

    let manual = pipeline(SessionManager::builder().with_mode(SessionMode::Manual));
    assert!(manual.sessions.current_session().is_none());
    assert_eq!(span(&manual, "unattributed"), None);
    assert!(manual.lifecycle_spans().is_empty());
}

#[test]
fn inactivity_rotates_at_the_boundary_not_a_tick_before_and_dates_the_end_at_the_last_activity() {
    let idle = Duration::from_secs(15 * 60);
    let c = clock();
    let p = app(&c, Some(idle), None);
    let first = p.sessions.current_session().unwrap();

    c.advance(Duration::from_secs(120));
    assert_eq!(span(&p, "active").as_deref(), Some(first.id().as_str()));
    let last_activity = t0() + Duration::from_secs(120);

    c.advance(idle - TICK);
    assert_eq!(
        p.sessions.current_session().unwrap().id(),
        first.id(),
        "one tick before the timeout the session goes on"
    );
    assert!(ends(&p).is_empty());

    c.advance(TICK);
    assert!(
        p.sessions.current_session().is_none(),
        "at the timeout it ended; the next activity starts one"
    );
    let e = ends(&p);
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].0, first.id().as_str());
    assert_eq!(e[0].1, "inactivity");
    assert_eq!(e[0].2, last_activity, "dated at the last activity");
    let summary = p.lifecycle_span("session");
    assert_eq!(summary.end_time, last_activity);

    // The next telemetry starts a new session, stamped on that very span.
    let next = span(&p, "after").expect("stamped");
    assert_ne!(next, first.id().as_str());
    let second = p.sessions.current_session().unwrap();
    assert_eq!(second.id().as_str(), next);
    assert_eq!(second.previous_id(), Some(first.id()));
}

#[test]
fn reading_the_session_is_not_activity_but_verbs_and_logs_are() {
    let idle = Duration::from_secs(60);
    let c = clock();
    let p = app(&c, Some(idle), None);
    let first = p.sessions.current_session().unwrap();
    c.advance(Duration::from_secs(40));
    p.sessions.current_session(); // not activity
    c.advance(Duration::from_secs(20));
    assert!(p.sessions.current_session().is_none(), "60 s after start");

    let second = {
        span(&p, "wake");
        p.sessions.current_session().unwrap()
    };
    assert_ne!(second.id(), first.id());
    c.advance(Duration::from_secs(40));
    p.sessions.set_user(otel_session::User::with_id("u")); // a verb: activity
    c.advance(Duration::from_secs(40));
    assert_eq!(p.sessions.current_session().unwrap().id(), second.id());
    let logger = p.logger_provider.logger("app");
    let mut r = logger.create_log_record();
    r.set_severity_number(Severity::Info);
    logger.emit(r); // a log record: activity
    c.advance(Duration::from_secs(59));
    assert_eq!(p.sessions.current_session().unwrap().id(), second.id());
    c.advance(Duration::from_secs(1));
    assert!(p.sessions.current_session().is_none());
}

#[test]
fn max_duration_rotates_at_the_boundary_even_with_activity() {
    let max = Duration::from_secs(4 * 3600);
    let c = clock();
    let p = app(&c, Some(Duration::from_secs(15 * 60)), Some(max));
    let first = p.sessions.current_session().unwrap();
    // Activity every 10 minutes for 4 hours, the last one a tick before the end.
    let mut elapsed = Duration::ZERO;
    while elapsed + Duration::from_secs(600) < max {
        c.advance(Duration::from_secs(600));
        elapsed += Duration::from_secs(600);
        assert_eq!(
            span(&p, &format!("s{elapsed:?}")).as_deref(),
            Some(first.id().as_str())
        );
    }
    c.advance(max - elapsed - TICK);
    assert_eq!(span(&p, "last").as_deref(), Some(first.id().as_str()));
    assert!(ends(&p).is_empty(), "one tick before the maximum");
    c.advance(TICK);
    let e = ends(&p);
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].1, "max_duration");
    assert_eq!(e[0].2, t0() + max - TICK, "dated at the last activity");
    let next = span(&p, "next").unwrap();
    assert_ne!(next, first.id().as_str());
}

#[test]
fn zero_disables_both_timeouts() {
    let c = clock();
    let p = app(&c, None, None);
    let first = p.sessions.current_session().unwrap();
    c.advance(Duration::from_secs(100 * 3600));
    assert_eq!(p.sessions.current_session().unwrap().id(), first.id());
    assert!(ends(&p).is_empty());
    // The builder treats a zero duration as "disabled" too.
    let c2 = clock();
    let p2 = app(&c2, Some(Duration::ZERO), Some(Duration::ZERO));
    let s = p2.sessions.current_session().unwrap();
    c2.advance(Duration::from_secs(100 * 3600));
    assert_eq!(p2.sessions.current_session().unwrap().id(), s.id());
}

#[test]
fn background_timeout_at_the_boundary_and_a_tick_before() {
    let bg = Duration::from_secs(30);
    let c = clock();
    let p = pipeline(
        SessionManager::builder()
            .with_clock(c.clone())
            .with_background_timeout(bg),
    );
    let first = p.sessions.current_session().unwrap();
    c.advance(Duration::from_secs(5));
    p.sessions.background();
    let away_at = c.now();
    assert!(
        !p.sessions.current_session().unwrap().is_paused(),
        "background does not pause"
    );
    c.advance(bg - TICK);
    p.sessions.foreground();
    assert_eq!(p.sessions.current_session().unwrap().id(), first.id());
    assert!(ends(&p).is_empty());

    p.sessions.background();
    let away_again = c.now();
    c.advance(bg);
    p.sessions.foreground();
    let second = p.sessions.current_session().unwrap();
    assert_ne!(second.id(), first.id());
    assert_eq!(second.previous_id(), Some(first.id()));
    let e = ends(&p);
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].1, "background");
    assert_eq!(
        e[0].2, away_again,
        "dated at its last activity: the background() call"
    );
    assert!(away_again > away_at);
    // The summary's timeline has the trips to the background.
    let summary = p.lifecycle_span("session");
    let names: Vec<_> = summary.events.iter().map(|e| e.name.to_string()).collect();
    assert_eq!(
        names,
        [
            "session.start",
            "otel_session.background",
            "otel_session.foreground",
            "otel_session.background",
            "session.end"
        ]
    );
}

#[derive(Default)]
struct Log(Mutex<Vec<String>>);
impl SessionObserver for Log {
    fn on_session_started(&self, s: &Session) {
        self.0.lock().unwrap().push(format!("started {}", s.id()));
    }
    fn on_session_ended(&self, s: &Session, r: EndReason) {
        self.0.lock().unwrap().push(format!("ended {} {r}", s.id()));
    }
}

#[test]
fn rotation_ends_the_old_before_the_new_starts_for_observers_and_exporters() {
    let c = clock();
    let log = Arc::new(Log::default());
    let p = pipeline(
        SessionManager::builder()
            .with_clock(c.clone())
            .with_inactivity_timeout(Some(Duration::from_secs(60)))
            .with_observer(Arc::clone(&log)),
    );
    let first = p.sessions.current_session().unwrap();
    c.advance(Duration::from_secs(60));
    let second = span(&p, "x").unwrap();
    flush(&p);
    assert_eq!(
        *log.0.lock().unwrap(),
        [
            format!("started {}", first.id()),
            format!("ended {} inactivity", first.id()),
            format!("started {second}"),
        ]
    );
    let names: Vec<_> = p
        .lifecycle_spans()
        .iter()
        .map(|s| format!("{} {}", s.name, span_attr(s, "session.id").unwrap()))
        .collect();
    assert_eq!(
        names,
        [
            format!("session.start {}", first.id()),
            format!("session.end {}", first.id()),
            format!("session {}", first.id()),
            format!("session.start {second}"),
        ]
    );
    let events: Vec<_> = p.log_events().into_iter().map(|e| e.0).collect();
    assert_eq!(events, ["session.start", "session.end", "session.start"]);
}

#[test]
fn a_paused_session_that_expires_is_not_restarted_by_telemetry_and_resume_starts_a_new_one() {
    let c = clock();
    let p = app(&c, Some(Duration::from_secs(60)), None);
    let first = p.sessions.current_session().unwrap();
    p.sessions.pause_session();
    c.advance(Duration::from_secs(60));
    assert!(
        p.sessions.current_session().is_none(),
        "timeouts run while paused"
    );
    assert_eq!(
        span(&p, "while-paused"),
        None,
        "no session restarts behind a pause"
    );
    assert!(p.sessions.current_session().is_none());
    assert!(
        !p.sessions.resume_session(),
        "the paused one expired: a new one"
    );
    let second = p.sessions.current_session().unwrap();
    assert_ne!(second.id(), first.id());
    assert_eq!(ends(&p)[0].1, "inactivity");
}

#[test]
fn manual_mode_ends_on_timeouts_but_starts_nothing() {
    let c = clock();
    let p = pipeline(
        SessionManager::builder()
            .with_mode(SessionMode::Manual)
            .with_clock(c.clone())
            .with_inactivity_timeout(Some(Duration::from_secs(60))),
    );
    p.sessions.start_session().unwrap();
    c.advance(Duration::from_secs(60));
    assert!(p.sessions.current_session().is_none());
    assert_eq!(span(&p, "after"), None);
    p.sessions.foreground();
    assert!(p.sessions.current_session().is_none());
}

#[test]
fn an_explicit_end_is_not_undone_by_telemetry_in_app_mode() {
    let c = clock();
    let p = app(&c, Some(Duration::from_secs(60)), None);
    p.sessions.end_session();
    assert_eq!(span(&p, "after-end"), None);
    assert!(p.sessions.current_session().is_none());
    p.sessions.foreground();
    assert!(
        p.sessions.current_session().is_some(),
        "foreground starts one in app mode"
    );
}

/// A clock that follows an atomic and wakes nobody (like real time): expiry is
/// found by the telemetry that arrives past a deadline.
#[derive(Debug)]
struct SharedTime(AtomicU64);
impl Clock for SharedTime {
    fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(self.0.load(Ordering::SeqCst))
    }
    fn subscribe(&self, _waker: ClockWaker) -> bool {
        false
    }
}

/// An app-mode pipeline on a [`SharedTime`] at T0 with a 60 s inactivity
/// timeout, and the count of `on_session` calls.
fn on_shared_time() -> (Arc<SharedTime>, Arc<AtomicUsize>, Pipeline) {
    let time = Arc::new(SharedTime(AtomicU64::new(T0 * 1_000_000_000)));
    let starts = Arc::new(AtomicUsize::new(0));
    let s2 = Arc::clone(&starts);
    let p = pipeline(
        SessionManager::builder()
            .with_clock(time.clone())
            .with_inactivity_timeout(Some(Duration::from_secs(60)))
            .on_session(move |_| {
                s2.fetch_add(1, Ordering::SeqCst);
                true
            }),
    );
    (time, starts, p)
}

#[test]
fn ten_threads_racing_past_an_expiry_get_one_new_session() {
    for round in 0..50 {
        let (time, starts, p) = on_shared_time();
        let first = p.sessions.current_session().unwrap();
        time.0.fetch_add(61_000_000_000, Ordering::SeqCst);
        let barrier = Arc::new(Barrier::new(10));
        let ids: Vec<Option<String>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..10)
                .map(|i| {
                    let barrier = Arc::clone(&barrier);
                    let p = &p;
                    scope.spawn(move || {
                        barrier.wait();
                        let logger = p.logger_provider.logger("race");
                        let mut r = logger.create_log_record();
                        r.set_body(format!("t{i}").into());
                        logger.emit(r);
                        i
                    })
                })
                .collect();
            for h in handles {
                h.join().unwrap();
            }
            p.app_logs()
                .iter()
                .map(|l| common::log_attr(l, "session.id"))
                .collect()
        });
        assert_eq!(ids.len(), 10);
        let distinct: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(
            distinct.len(),
            1,
            "round {round}: one new session: {ids:?}, first {}",
            first.id()
        );
        let new_id = ids[0].clone().expect("stamped");
        assert_ne!(new_id, first.id().as_str());
        assert_eq!(
            starts.load(Ordering::SeqCst),
            2,
            "round {round}: one winner"
        );
        let e = ends(&p);
        assert_eq!(e.len(), 1, "round {round}: one end");
        assert_eq!(e[0].1, "inactivity");
    }
}

#[test]
fn a_real_clock_session_ends_by_the_timer_without_telemetry() {
    // The one test on real time: the timer thread wakes at the deadline.
    let p = pipeline(
        SessionManager::builder().with_inactivity_timeout(Some(Duration::from_millis(200))),
    );
    let first = p.sessions.current_session().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while ends(&p).is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let e = ends(&p);
    assert_eq!(e.len(), 1, "ended by the timer");
    assert_eq!(e[0].0, first.id().as_str());
    assert_eq!(e[0].1, "inactivity");
    assert_eq!(
        e[0].2,
        first.started_at(),
        "no activity: dated at its start"
    );
}

#[test]
fn verbs_past_a_missed_deadline_end_the_session_for_it_first() {
    // A clock that moves without waking anyone: the timer did not fire (the
    // machine slept). Verbs find the expiry themselves.
    let time = Arc::new(SharedTime(AtomicU64::new(T0 * 1_000_000_000)));
    let p = pipeline(
        SessionManager::builder()
            .with_clock(time.clone())
            .with_inactivity_timeout(Some(Duration::from_secs(60))),
    );
    let first = p.sessions.current_session().unwrap();
    time.0.fetch_add(3_600_000_000_000, Ordering::SeqCst); // an hour asleep
    p.sessions.record_handled_error();
    p.sessions.end_session();
    let e = ends(&p);
    assert_eq!(e.len(), 2, "{e:?}");
    assert_eq!(e[0].0, first.id().as_str());
    assert_eq!(
        e[0].1, "inactivity",
        "not revived by the verb, not `manual`"
    );
    assert_eq!(e[0].2, first.started_at(), "dated at its last activity");
    let summaries: Vec<_> = p
        .lifecycle_spans()
        .into_iter()
        .filter(|s| s.name == "session")
        .collect();
    assert_eq!(
        span_attr(&summaries[0], "otel_session.errors.handled").as_deref(),
        Some("0")
    );
    // The error is activity after the timeout: it started the next session
    // and counted there.
    assert_eq!(e[1].1, "manual");
    assert_eq!(
        span_attr(&summaries[1], "otel_session.errors.handled").as_deref(),
        Some("1")
    );
    assert_eq!(
        span_attr(&summaries[1], "session.previous_id").as_deref(),
        Some(first.id().as_str())
    );
}

#[test]
fn telemetry_dated_in_the_future_is_activity_now_and_never_panics() {
    let p = pipeline(
        SessionManager::builder().with_inactivity_timeout(Some(Duration::from_secs(15 * 60))),
    );
    let first = p.sessions.current_session().unwrap();
    let tracer = p.tracer();
    let mut span = opentelemetry::trace::Tracer::start(&tracer, "from-the-future");
    opentelemetry::trace::Span::end_with_timestamp(
        &mut span,
        SystemTime::now() + Duration::from_secs(20 * 60),
    );
    let mut far = opentelemetry::trace::Tracer::start(&tracer, "far");
    opentelemetry::trace::Span::end_with_timestamp(
        &mut far,
        UNIX_EPOCH + Duration::from_secs(u64::MAX / 4),
    );
    assert_eq!(p.sessions.current_session().unwrap().id(), first.id());
    assert!(ends(&p).is_empty());
}

#[test]
fn a_replacing_start_begins_no_earlier_than_the_end_before_it() {
    let p = pipeline(SessionManager::builder());
    for _ in 0..50 {
        p.sessions.start_session().unwrap();
    }
    let spans = p.lifecycle_spans();
    let count = |name: &str| spans.iter().filter(|s| s.name == name).count();
    assert_eq!(
        (count("session.start"), count("session.end")),
        (51, 50),
        "the build's session and 50 replacing starts"
    );
    let mut last_end = None;
    for s in &spans {
        match s.name.as_ref() {
            "session.end" => last_end = Some(s.start_time),
            "session.start" => {
                if let Some(end) = last_end {
                    assert!(s.start_time >= end, "a start before the previous end");
                }
            }
            _ => {}
        }
    }
}

#[test]
fn a_session_expired_by_shutdown_ends_for_its_timeout_and_no_next_one_is_prepared() {
    let (time, starts, p) = on_shared_time();
    let first = p.sessions.current_session().unwrap();
    time.0.fetch_add(61_000_000_000, Ordering::SeqCst);
    // The provider's shutdown ends the session; it expired a second ago.
    p.tracer_provider.shutdown().unwrap();
    assert_eq!(
        end_transitions(&p),
        [(first.id().to_string(), "inactivity".to_string(), t0())],
        "ended for its timeout, dated at its last activity"
    );
    assert_eq!(
        starts.load(Ordering::SeqCst),
        1,
        "no callback ran for a next session while shutting down"
    );
}
