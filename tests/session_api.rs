//! The session API verbs and their edge cases, observed through the SDK's in-memory
//! exporters.

mod common;

use std::sync::{Arc, Mutex};

use common::{pipeline, sid, span_attr};
use opentelemetry::trace::Tracer as _;
use opentelemetry::KeyValue;
use otel_session::SessionMode;
use otel_session::{EndReason, Session, SessionManager, SessionObserver, SessionStatus, User};

#[test]
fn no_session_before_first_start_and_after_end() {
    let p = pipeline(SessionManager::builder().with_mode(SessionMode::Manual));
    assert!(p.sessions.current_session().is_none());
    p.tracer().in_span("before", |_| {});
    let s = p.sessions.start_session().expect("started");
    assert_eq!(p.sessions.current_session().unwrap().id(), s.id());
    p.sessions.end_session();
    assert!(p.sessions.current_session().is_none());
    p.tracer().in_span("after", |_| {});
    assert_eq!(sid(&p.app_span("before")), None);
    assert_eq!(sid(&p.app_span("after")), None);
    let end = p.lifecycle_span("session.end");
    assert_eq!(
        span_attr(&end, "otel_session.end_reason").as_deref(),
        Some("manual")
    );
}

#[test]
fn pause_then_span_has_no_id_and_resume_keeps_the_id() {
    let p = pipeline(SessionManager::builder().with_mode(SessionMode::Manual));
    let s = p.sessions.start_session().unwrap();
    p.sessions.pause_session();
    assert!(p.sessions.current_session().unwrap().is_paused());
    p.tracer().in_span("paused", |_| {});
    assert!(p.sessions.resume_session(), "a paused session resumes");
    let after = p.sessions.current_session().unwrap();
    assert_eq!(after.id(), s.id());
    assert!(!after.is_paused());
    p.tracer().in_span("resumed", |_| {});
    assert_eq!(sid(&p.app_span("paused")), None);
    assert_eq!(
        sid(&p.app_span("resumed")).as_deref(),
        Some(s.id().as_str())
    );
    let names: Vec<_> = p.lifecycle_spans().into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["session.start", "session.pause", "session.resume"]);
}

#[test]
fn resume_on_an_active_session_changes_nothing() {
    let p = pipeline(SessionManager::builder().with_mode(SessionMode::Manual));
    let s = p.sessions.start_session().unwrap();
    assert!(!p.sessions.resume_session());
    assert_eq!(p.sessions.current_session().unwrap().id(), s.id());
    assert_eq!(
        p.lifecycle_spans().len(),
        1,
        "only the start: {:?}",
        p.lifecycle_spans()
    );
}

#[test]
fn resume_with_no_session_starts_one_and_returns_false() {
    let p = pipeline(SessionManager::builder().with_mode(SessionMode::Manual));
    assert!(!p.sessions.resume_session());
    let s = p.sessions.current_session().expect("a new session");
    assert!(!s.is_paused());
    assert_eq!(s.previous_id(), None);
    p.sessions.end_session();
    assert!(!p.sessions.resume_session());
    let next = p.sessions.current_session().unwrap();
    assert_eq!(next.previous_id(), Some(s.id()));
}

#[test]
fn start_replacing_start_ends_the_old_one_first() {
    let p = pipeline(SessionManager::builder().with_mode(SessionMode::Manual));
    let a = p.sessions.start_session().unwrap();
    let b = p.sessions.start_session().unwrap();
    assert_ne!(a.id(), b.id());
    assert_eq!(b.previous_id(), Some(a.id()));
    let lifecycle: Vec<(String, Option<String>)> = p
        .lifecycle_spans()
        .into_iter()
        .map(|s| (s.name.to_string(), sid(&s)))
        .collect();
    let a_id = Some(a.id().to_string());
    let b_id = Some(b.id().to_string());
    assert_eq!(
        lifecycle,
        [
            ("session.start".to_string(), a_id.clone()),
            ("session.end".to_string(), a_id.clone()),
            ("session".to_string(), a_id.clone()),
            ("session.start".to_string(), b_id.clone()),
        ]
    );
    let end = &p.lifecycle_spans()[1];
    assert_eq!(
        span_attr(end, "otel_session.end_reason").as_deref(),
        Some("replaced")
    );
    // Log events: the end always before the next start; previous_id where due.
    let events = p.log_events();
    assert_eq!(
        events,
        [
            ("session.start".into(), a.id().to_string(), None),
            ("session.end".into(), a.id().to_string(), None),
            (
                "session.start".into(),
                b.id().to_string(),
                Some(a.id().to_string())
            ),
        ]
    );
    let b_start = &p.lifecycle_spans()[3];
    assert_eq!(span_attr(b_start, "session.previous_id"), a_id);
}

#[test]
fn a_discarded_session_is_current_but_silent() {
    let p = pipeline(SessionManager::builder().with_mode(SessionMode::Manual));
    let reported = p.sessions.start_session().unwrap();
    let discard = Arc::new(Mutex::new(true));
    let flag = Arc::clone(&discard);
    p.sessions.add_on_session(move |_| !*flag.lock().unwrap());
    let silent = p.sessions.start_session().unwrap();
    assert!(silent.is_discarded());
    let current = p.sessions.current_session().unwrap();
    assert_eq!(current.id(), silent.id());
    assert!(current.is_discarded());
    p.tracer().in_span("in-discarded", |_| {});
    p.sessions.record_handled_error();
    p.sessions.pause_session();
    assert!(
        p.sessions.current_session().unwrap().is_paused(),
        "pause works as for any session"
    );
    assert!(p.sessions.resume_session());
    assert_eq!(p.sessions.current_session().unwrap().handled_errors(), 0);
    *discard.lock().unwrap() = false;
    let next = p.sessions.start_session().unwrap();
    assert_eq!(
        next.previous_id(),
        Some(reported.id()),
        "skips the discarded one"
    );

    assert_eq!(sid(&p.app_span("in-discarded")), None);
    let silent_id = silent.id().to_string();
    assert!(p
        .lifecycle_spans()
        .iter()
        .all(|s| sid(s).as_deref() != Some(silent_id.as_str())));
    assert!(p.log_events().iter().all(|(_, id, _)| id != &silent_id));
}

#[test]
fn callbacks_added_at_run_time_can_be_removed() {
    let p = pipeline(SessionManager::builder().with_mode(SessionMode::Manual));
    let calls = Arc::new(Mutex::new(Vec::new()));
    let c = Arc::clone(&calls);
    let handle = p.sessions.add_on_session(move |cand| {
        c.lock().unwrap().push(cand.id().to_string());
        cand.set_attribute(KeyValue::new("app.tier", "gold"));
        true
    });
    let first = p.sessions.start_session().unwrap();
    assert!(p.sessions.remove_on_session(handle));
    assert!(!p.sessions.remove_on_session(handle), "already removed");
    p.sessions.start_session().unwrap();
    assert_eq!(*calls.lock().unwrap(), [first.id().to_string()]);
    let summary = p.lifecycle_span("session");
    assert_eq!(span_attr(&summary, "app.tier").as_deref(), Some("gold"));
}

#[test]
fn callbacks_run_in_registration_order_and_amend_the_user() {
    let order = Arc::new(Mutex::new(Vec::new()));
    let (o1, o2) = (Arc::clone(&order), Arc::clone(&order));
    let p = pipeline(
        SessionManager::builder()
            .with_mode(SessionMode::Manual)
            .on_session(move |c| {
                o1.lock().unwrap().push(1);
                c.set_user(User::with_id("u-1"));
                true
            })
            .on_session(move |c| {
                // What the second callback sees is checked outside: a panic
                // in a callback is caught (and the session kept).
                let seen = c.user().and_then(|u| u.id.clone()).unwrap_or_default();
                o2.lock().unwrap().push(if seen == "u-1" { 2 } else { 0 });
                true
            }),
    );
    let s = p.sessions.start_session().unwrap();
    assert_eq!(
        *order.lock().unwrap(),
        [1, 2],
        "in order, the second seeing the first's user"
    );
    assert_eq!(s.user().and_then(|u| u.id.as_deref()), Some("u-1"));
}

#[test]
fn a_panicking_callback_keeps_the_session() {
    let p = pipeline(
        SessionManager::builder()
            .with_mode(SessionMode::Manual)
            .on_session(|_| panic!("callback bug")),
    );
    let s = p.sessions.start_session().unwrap();
    assert!(!s.is_discarded());
    let again = p.sessions.start_session().unwrap();
    assert!(!again.is_discarded());
    p.tracer().in_span("work", |_| {});
    assert_eq!(
        sid(&p.app_span("work")).as_deref(),
        Some(again.id().as_str())
    );
}

#[test]
fn telemetry_made_inside_a_callback_is_not_stamped_and_verbs_are_refused() {
    let p = pipeline(SessionManager::builder().with_mode(SessionMode::Manual));
    let tracer = p.tracer();
    let inner = p.sessions.clone();
    let first = p.sessions.start_session().unwrap();
    let refused = Arc::new(Mutex::new(None));
    let r = Arc::clone(&refused);
    p.sessions.add_on_session(move |_| {
        tracer.in_span("from-callback", |_| {});
        // Re-entrant verbs are refused instead of deadlocking (the results are
        // checked outside: a panic in a callback is caught).
        let start = inner.start_session();
        inner.end_session();
        inner.pause_session();
        let resumed = inner.resume_session();
        inner.set_user(User::with_id("from-callback"));
        *r.lock().unwrap() = Some((
            matches!(
                start,
                Err(otel_session::SessionError::Reentrant {
                    verb: "start_session"
                })
            ),
            resumed,
        ));
        true
    });
    let s = p.sessions.start_session().unwrap();
    assert_eq!(*refused.lock().unwrap(), Some((true, false)));
    assert_eq!(p.sessions.current_session().unwrap().id(), s.id());
    assert!(s.user().is_none(), "set_user was refused");
    assert!(!s.is_paused(), "pause_session was refused");
    assert_eq!(sid(&p.app_span("from-callback")), None);
    let lifecycle: Vec<(String, Option<String>)> = p
        .lifecycle_spans()
        .iter()
        .filter(|s| s.name != "session")
        .map(|s| (s.name.to_string(), sid(s)))
        .collect();
    let (a, b) = (first.id().to_string(), s.id().to_string());
    assert_eq!(
        lifecycle,
        [
            ("session.start".to_string(), Some(a.clone())),
            ("session.end".to_string(), Some(a.clone())),
            ("session.start".to_string(), Some(b)),
        ],
        "no extra session, end or pause from the re-entrant calls"
    );
    let summary = p.lifecycle_span("session");
    assert_eq!(
        span_attr(&summary, "otel_session.end_reason").as_deref(),
        Some("replaced"),
        "the first session was replaced, not ended by the callback's end_session"
    );
}

#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

impl SessionObserver for Recorder {
    fn on_session_started(&self, s: &Session) {
        self.0.lock().unwrap().push(format!("started {}", s.id()));
    }
    fn on_session_ended(&self, s: &Session, reason: EndReason) {
        self.0
            .lock()
            .unwrap()
            .push(format!("ended {} {reason}", s.id()));
    }
}

#[test]
fn observers_see_the_old_end_before_the_new_start() {
    let rec = Arc::new(Recorder::default());
    let p = pipeline(
        SessionManager::builder()
            .with_mode(SessionMode::Manual)
            .with_observer(Arc::clone(&rec)),
    );
    let a = p.sessions.start_session().unwrap();
    let b = p.sessions.start_session().unwrap();
    p.sessions.end_session();
    assert_eq!(
        *rec.0.lock().unwrap(),
        [
            format!("started {}", a.id()),
            format!("ended {} replaced", a.id()),
            format!("started {}", b.id()),
            format!("ended {} manual", b.id()),
        ]
    );
}

#[test]
fn observers_are_not_told_of_discarded_sessions_and_their_spans_are_unstamped() {
    let rec = Arc::new(Recorder::default());
    let p = pipeline(
        SessionManager::builder()
            .with_mode(SessionMode::Manual)
            .with_observer(Arc::clone(&rec))
            .on_session(|_| false),
    );
    p.sessions.start_session().unwrap();
    p.sessions.end_session();
    assert!(rec.0.lock().unwrap().is_empty());
}

#[test]
fn errors_are_counted_and_status_never_downgrades() {
    let p = pipeline(SessionManager::builder().with_mode(SessionMode::Manual));
    p.sessions.start_session().unwrap();
    p.sessions.record_handled_error();
    assert_eq!(
        p.sessions.current_session().unwrap().status(),
        SessionStatus::Errored
    );
    p.sessions.record_unhandled_error();
    p.sessions.record_handled_error();
    let s = p.sessions.current_session().unwrap();
    assert_eq!(s.status(), SessionStatus::Crashed);
    assert_eq!((s.handled_errors(), s.unhandled_errors()), (2, 1));
    p.sessions.pause_session();
    p.sessions.record_handled_error();
    assert_eq!(
        p.sessions.current_session().unwrap().handled_errors(),
        2,
        "paused: not counted"
    );
    p.sessions.end_session();
    let summary = p.lifecycle_span("session");
    assert_eq!(
        span_attr(&summary, "otel_session.status").as_deref(),
        Some("crashed")
    );
    assert_eq!(
        span_attr(&summary, "otel_session.errors.handled").as_deref(),
        Some("2")
    );
    assert_eq!(
        span_attr(&summary, "otel_session.errors.unhandled").as_deref(),
        Some("1")
    );
}

#[test]
fn set_user_applies_to_current_and_later_sessions_and_is_recorded() {
    let p = pipeline(SessionManager::builder().with_mode(SessionMode::Manual));
    p.sessions.start_session().unwrap();
    p.sessions
        .set_user(User::with_id("42").email("a@example.com").full_name("Ada"));
    assert_eq!(
        p.sessions
            .current_session()
            .unwrap()
            .user()
            .and_then(|u| u.id.clone()),
        Some("42".into())
    );
    let next = p.sessions.start_session().unwrap();
    assert_eq!(
        next.user().and_then(|u| u.email.clone()),
        Some("a@example.com".into())
    );
    let summary = p.lifecycle_span("session");
    assert_eq!(span_attr(&summary, "user.id").as_deref(), Some("42"));
    assert_eq!(
        span_attr(&summary, "user.full_name").as_deref(),
        Some("Ada")
    );
    let names: Vec<_> = summary.events.iter().map(|e| e.name.to_string()).collect();
    assert_eq!(
        names,
        ["session.start", "otel_session.user_change", "session.end"]
    );
}

#[test]
fn error_logs_count_toward_the_session_they_carry() {
    use opentelemetry::logs::{LogRecord as _, Logger as _, LoggerProvider as _, Severity};
    let p = pipeline(SessionManager::builder().with_mode(SessionMode::Manual));
    let logger = p.logger_provider.logger("test");
    let s = p.sessions.start_session().unwrap();
    for sev in [Severity::Info, Severity::Error, Severity::Fatal] {
        let mut r = logger.create_log_record();
        r.set_severity_number(sev);
        logger.emit(r);
    }
    // A record carrying another session's id does not count here.
    let mut r = logger.create_log_record();
    r.set_severity_number(Severity::Error);
    r.add_attribute("session.id", "someone-else");
    logger.emit(r);
    assert_eq!(p.sessions.current_session().unwrap().handled_errors(), 2);
    let stamped: Vec<_> = p
        .app_logs()
        .iter()
        .map(|l| common::log_attr(l, "session.id").unwrap_or_default())
        .collect();
    let id = s.id().to_string();
    assert_eq!(
        stamped,
        [id.clone(), id.clone(), id, "someone-else".to_string()]
    );
}

#[test]
fn free_functions_act_on_the_global_manager_and_a_joined_context_stamps_the_caller() {
    use opentelemetry::Context;
    use otel_session::{SessionContextExt, SessionId};
    let global = pipeline(SessionManager::builder().with_mode(SessionMode::Manual));
    otel_session::set_global_manager(global.sessions.clone());
    let g = otel_session::start_session().unwrap();
    assert_eq!(global.sessions.current_session().unwrap().id(), g.id());
    {
        let _attached = Context::current()
            .with_joined_session(SessionId::from("caller-42"))
            .attach();
        // A joined session is the caller's: errors here count toward nobody.
        otel_session::record_handled_error();
        // Telemetry here carries the caller's id, even through the global pipeline.
        global.tracer().in_span("joined-work", |_| {});
        assert_eq!(
            sid(&global.app_span("joined-work")).as_deref(),
            Some("caller-42")
        );
        // Other verbs act on the global manager.
        assert_eq!(otel_session::current_session().unwrap().id(), g.id());
    }
    global.tracer().in_span("own-work", |_| {});
    assert_eq!(
        sid(&global.app_span("own-work")).as_deref(),
        Some(g.id().as_str())
    );
    assert_eq!(
        global.sessions.current_session().unwrap().handled_errors(),
        0
    );
    otel_session::record_handled_error();
    assert_eq!(
        global.sessions.current_session().unwrap().handled_errors(),
        1
    );
    otel_session::end_session();
    assert!(otel_session::current_session().is_none());
    otel_session::clear_global_manager();
    assert!(!otel_session::resume_session());
    assert_eq!(
        otel_session::start_session().unwrap_err(),
        otel_session::SessionError::NoManager
    );
}

#[test]
fn logs_with_no_session_or_in_a_discarded_one_carry_no_id() {
    use opentelemetry::logs::{Logger as _, LoggerProvider as _};
    let p = pipeline(
        SessionManager::builder()
            .with_mode(SessionMode::Manual)
            .on_session(|c| c.previous_id().is_some()),
    );
    let logger = p.logger_provider.logger("t");
    logger.emit(logger.create_log_record()); // no session
    p.sessions.start_session().unwrap(); // first: no previous id → discarded
    logger.emit(logger.create_log_record());
    let app = p.app_logs();
    assert_eq!(app.len(), 2);
    assert!(app
        .iter()
        .all(|l| common::log_attr(l, "session.id").is_none()));
}

#[test]
fn ending_while_paused_exports_the_end_and_a_summary_with_the_pause() {
    let p = pipeline(SessionManager::builder().with_mode(SessionMode::Manual));
    let s = p.sessions.start_session().unwrap();
    p.sessions.pause_session();
    p.sessions.end_session();
    let names: Vec<_> = p
        .lifecycle_spans()
        .into_iter()
        .map(|x| x.name.to_string())
        .collect();
    assert_eq!(
        names,
        ["session.start", "session.pause", "session.end", "session"]
    );
    let summary = p.lifecycle_spans().pop().unwrap();
    assert_eq!(sid(&summary).as_deref(), Some(s.id().as_str()));
    let events: Vec<_> = summary.events.iter().map(|e| e.name.to_string()).collect();
    assert_eq!(events, ["session.start", "session.pause", "session.end"]);
}

#[test]
fn previous_id_skips_a_discarded_session_after_a_manual_end() {
    let discard = Arc::new(Mutex::new(false));
    let d = Arc::clone(&discard);
    let p = pipeline(
        SessionManager::builder()
            .with_mode(SessionMode::Manual)
            .on_session(move |_| !*d.lock().unwrap()),
    );
    let a = p.sessions.start_session().unwrap();
    p.sessions.end_session();
    *discard.lock().unwrap() = true;
    let silent = p.sessions.start_session().unwrap();
    assert!(silent.is_discarded());
    assert_eq!(
        silent.previous_id(),
        Some(a.id()),
        "candidates see the last reported id too"
    );
    p.sessions.end_session();
    *discard.lock().unwrap() = false;
    let b = p.sessions.start_session().unwrap();
    assert_eq!(b.previous_id(), Some(a.id()));
}
