//! The session rules, proven against a small reference model: random sequences
//! of verbs, telemetry, error records, crashes (worker and fatal), time passing
//! (inactivity and maximum duration), background and foreground, consent
//! withdrawn and given, and restarts with persistence, run through the public
//! API of a real pipeline (a manual clock, wrapped exporting processors, the
//! panic hook), and compared with what a few lines of obvious code say should
//! happen: after every step the current session (id, `previous_id`, paused,
//! discarded, counts, status, user), and at the end every reported session's
//! summary (end reason, end time, counts, status, `previous_id`, session
//! attributes), each exactly once. Session properties (plain and permanent),
//! their removal and feature flags set and cleared are operations too: what
//! each session carries, and what survives a restart, is checked the same
//! way.
//!
//! `PROPTEST_CASES` sets the number of cases (10,000 by default).

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{released, span_attr, LogRecorder, SpanRecorder};
use opentelemetry::logs::{LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry::trace::{Tracer as _, TracerProvider as _};
use opentelemetry_sdk::logs::{SdkLoggerProvider, SimpleLogProcessor};
use opentelemetry_sdk::trace::{SdkTracerProvider, SimpleSpanProcessor, SpanData};
use otel_session::{
    ManualClock, SessionManager, SessionMode, SessionObserver, SessionStatus, User,
};
use proptest::prelude::*;

// The operations and the reference model.
include!("model/reference.rs");

// ---------------------------------------------------------------- the real thing

/// The ids of reported sessions, in the order they started.
#[derive(Debug, Default)]
struct Started(Mutex<Vec<String>>);

impl SessionObserver for Started {
    fn on_session_started(&self, s: &otel_session::Session) {
        self.0.lock().unwrap().push(s.id().to_string());
    }
}

struct Real {
    started: Arc<Started>,
    clock: Arc<ManualClock>,
    consent: Arc<AtomicBool>,
    path: PathBuf,
    app: bool,
    spans: SpanRecorder,
    sessions: SessionManager,
    tp: SdkTracerProvider,
    lp: SdkLoggerProvider,
    /// Last, so that it goes after the manager that writes there.
    _dir: common::TempDir,
}

fn build(
    app: bool,
    started: &Arc<Started>,
    clock: &Arc<ManualClock>,
    consent: &Arc<AtomicBool>,
    path: &Path,
    spans: &SpanRecorder,
) -> (SessionManager, SdkTracerProvider, SdkLoggerProvider) {
    let c = Arc::clone(consent);
    let sessions = SessionManager::builder()
        .with_mode(if app {
            SessionMode::App
        } else {
            SessionMode::Manual
        })
        .with_clock(clock.clone())
        .with_inactivity_timeout(Some(Duration::from_secs(IDLE)))
        .with_max_duration(Some(Duration::from_secs(MAX)))
        .with_background_timeout(Duration::from_secs(AWAY))
        .with_persistence(path)
        .on_session(move |_| c.load(Ordering::SeqCst))
        .with_observer(Arc::clone(started))
        .build();
    let tp = SdkTracerProvider::builder()
        .with_span_processor(sessions.span_processor(SimpleSpanProcessor::new(spans.clone())))
        .build();
    let lp = SdkLoggerProvider::builder()
        .with_log_processor(sessions.log_processor(SimpleLogProcessor::new(LogRecorder::default())))
        .build();
    otel_session::install_panic_hook(&sessions);
    (sessions, tp, lp)
}

impl Real {
    fn new(app: bool, case: u64) -> Self {
        let dir = common::temp_dir(&format!("model-{case}"));
        let path = dir.join("session.json");
        let clock = ManualClock::shared(UNIX_EPOCH + Duration::from_secs(T0));
        let consent = Arc::new(AtomicBool::new(true));
        let spans = SpanRecorder::default();
        let started = Arc::new(Started::default());
        let (sessions, tp, lp) = build(app, &started, &clock, &consent, &path, &spans);
        Real {
            started,
            clock,
            consent,
            path,
            app,
            spans,
            sessions,
            tp,
            lp,
            _dir: dir,
        }
    }

    fn error_log(&self) {
        let logger = self.lp.logger("model");
        let mut r = logger.create_log_record();
        r.set_severity_number(Severity::Error);
        logger.emit(r);
    }

    fn panic_on(&self, thread: &str) {
        let joined = std::thread::Builder::new()
            .name(thread.into())
            .spawn(|| std::panic::panic_any("the model panics"))
            .unwrap()
            .join();
        assert!(joined.is_err());
    }

    fn shutdown(&self) {
        let _ = self.tp.shutdown();
        let _ = self.lp.shutdown();
    }

    fn step(&mut self, op: Op) {
        let s = &self.sessions;
        match op {
            Op::Advance(by) => self.clock.advance(Duration::from_secs(by)),
            Op::Span => self.tp.tracer("model").in_span("work", |_| {}),
            Op::ErrorLog => self.error_log(),
            Op::Start => {
                s.start_session().unwrap();
            }
            Op::End => s.end_session(),
            Op::Pause => s.pause_session(),
            Op::Resume => {
                s.resume_session();
            }
            Op::SetUser(u) => {
                s.set_user(u.map_or_else(User::default, |u| User::with_id(format!("u{u}"))))
            }
            Op::Background => s.background(),
            Op::Foreground => s.foreground(),
            Op::Handled => s.record_handled_error(),
            Op::Unhandled => s.record_unhandled_error(),
            Op::WorkerPanic => self.panic_on("worker"),
            Op::FatalPanic => self.panic_on("main"),
            Op::Consent(c) => self.consent.store(c, Ordering::SeqCst),
            Op::Read => {
                let _ = s.current_session();
            }
            Op::SetProp(k, v) => s
                .set_session_attribute(format!("p{k}"), format!("v{v}"))
                .unwrap(),
            Op::SetPermanent(k, v) => s
                .set_permanent_session_attribute(format!("p{k}"), format!("v{v}"))
                .unwrap(),
            Op::RemoveProp(k) => s.remove_session_attribute(format!("p{k}")).unwrap(),
            Op::AddFlag(f, v) => s
                .add_feature_flag(&format!("f{f}"), format!("v{v}"))
                .unwrap(),
            Op::ClearFlag(f) => s.clear_feature_flag(&format!("f{f}")).unwrap(),
            Op::Restart => {
                self.shutdown();
                let (sessions, tp, lp) = {
                    let old = std::mem::replace(
                        &mut self.sessions,
                        SessionManager::builder()
                            .with_mode(SessionMode::Manual)
                            .build(),
                    );
                    drop(old);
                    let _ = std::mem::replace(&mut self.tp, SdkTracerProvider::builder().build());
                    let _ = std::mem::replace(&mut self.lp, SdkLoggerProvider::builder().build());
                    released(&self.path);
                    build(
                        self.app,
                        &self.started,
                        &self.clock,
                        &self.consent,
                        &self.path,
                        &self.spans,
                    )
                };
                self.sessions = sessions;
                self.tp = tp;
                self.lp = lp;
            }
        }
    }
}

fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_secs() - T0
}

/// The current session agrees with the model's.
fn compare_current(m: &Model, r: &Real, ops: &[Op]) -> Result<(), TestCaseError> {
    // Deliver what telemetry queued from inside a processor (a start).
    let _ = r.tp.force_flush();
    let ids = r.started.0.lock().unwrap().clone();
    prop_assert_eq!(ids.len(), m.reported, "reported starts after {:?}", ops);
    let real = r.sessions.current_session();
    let now = m.now;
    match (&m.phase, real) {
        (MPhase::Live(ms), Some(rs)) => {
            if let Some(n) = ms.n {
                prop_assert_eq!(rs.id().as_str(), ids[n].as_str(), "same session");
            }
            prop_assert_eq!(
                rs.previous_id().map(|p| p.to_string()),
                ms.previous.map(|p| ids[p].clone()),
                "previous_id"
            );
            prop_assert_eq!(rs.is_paused(), ms.paused, "paused");
            prop_assert_eq!(rs.is_discarded(), !ms.reported, "discarded");
            prop_assert_eq!(secs(rs.started_at()), ms.started, "started at");
            if ms.reported {
                prop_assert_eq!(rs.handled_errors(), ms.handled, "handled");
                prop_assert_eq!(rs.unhandled_errors(), ms.unhandled, "unhandled");
                prop_assert_eq!(rs.status(), ms.status(), "status");
            }
            prop_assert_eq!(
                rs.user().and_then(|u| u.id.clone()),
                ms.user.map(|u| format!("u{u}")),
                "user"
            );
            let mut attrs: Vec<(String, String)> = rs
                .attributes()
                .into_iter()
                .map(|kv| (kv.key.to_string(), kv.value.to_string()))
                .collect();
            attrs.sort();
            prop_assert_eq!(attrs, ms.attrs.shown(), "attributes after {:?}", ops);
        }
        (MPhase::Live(_), None) => {
            prop_assert!(
                false,
                "the model has a session, the manager none at {now} after {ops:?}"
            )
        }
        (_, Some(rs)) => prop_assert!(
            false,
            "the manager has session {} (discarded {}), the model none at {now} after {ops:?}",
            rs.id(),
            rs.is_discarded()
        ),
        (_, None) => {}
    }
    Ok(())
}

fn summaries(spans: &[SpanData]) -> Vec<MEnd<String>> {
    spans
        .iter()
        .filter(|s| s.name == "session" && s.instrumentation_scope.name() == "otel-session")
        .map(|s| {
            let get = |k: &str| span_attr(s, k).unwrap_or_default();
            let reason: &'static str = match get("otel_session.end_reason").as_str() {
                "manual" => "manual",
                "replaced" => "replaced",
                "inactivity" => "inactivity",
                "max_duration" => "max_duration",
                "background" => "background",
                "shutdown" => "shutdown",
                "crash" => "crash",
                "lost" => "lost",
                other => panic!("unexpected end reason {other}"),
            };
            let status: &'static str = match get("otel_session.status").as_str() {
                "ok" => "ok",
                "errored" => "errored",
                "crashed" => "crashed",
                "abnormal" => "abnormal",
                other => panic!("unexpected status {other}"),
            };
            let mut attrs: Vec<(String, String)> = s
                .attributes
                .iter()
                .filter(|kv| {
                    let k = kv.key.as_str();
                    k.starts_with('p') || k.starts_with("feature_flag.")
                })
                .map(|kv| (kv.key.to_string(), kv.value.to_string()))
                .collect();
            attrs.sort();
            MEnd {
                attrs,
                id: get("session.id"),
                reason,
                at: secs(s.end_time),
                handled: get("otel_session.errors.handled").parse().unwrap(),
                unhandled: get("otel_session.errors.unhandled").parse().unwrap(),
                status,
                previous: span_attr(s, "session.previous_id"),
            }
        })
        .collect()
}

fn run(app: bool, ops: &[Op], case: u64) -> Result<(), TestCaseError> {
    let mut model = Model::new(app);
    let mut real = Real::new(app, case);
    compare_current(&model, &real, ops)?;
    for (i, op) in ops.iter().enumerate() {
        model.step(*op);
        real.step(*op);
        compare_current(&model, &real, &ops[..=i])?;
    }
    // The end: every reported session that ended, once, as the model says.
    real.shutdown();
    let got = summaries(&real.spans.get_finished_spans().unwrap());
    let ids = real.started.0.lock().unwrap().clone();
    let want: Vec<MEnd<String>> = model
        .ends
        .iter()
        .map(|e| MEnd {
            id: ids[e.id].clone(),
            reason: e.reason,
            at: e.at,
            handled: e.handled,
            unhandled: e.unhandled,
            status: e.status,
            previous: e.previous.map(|p| ids[p].clone()),
            attrs: e.attrs.clone(),
        })
        .collect();
    drop(real);
    prop_assert_eq!(got, want, "ends after {:?}", ops);
    Ok(())
}

fn quiet_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let ours = info
                .payload()
                .downcast_ref::<&str>()
                .is_some_and(|m| *m == "the model panics");
            if !ours {
                default(info);
            }
        }));
    });
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

#[test]
fn the_sessions_follow_the_reference_model() {
    quiet_panics();
    let case = std::sync::atomic::AtomicU64::new(0);
    proptest!(ProptestConfig { cases: cases(), ..ProptestConfig::default() },
    |(app in any::<bool>(), ops in prop::collection::vec(op(), 1..40))| {
        run(app, &ops, case.fetch_add(1, Ordering::Relaxed))?;
    });
}
