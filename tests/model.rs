//! The session rules, proven against a small reference model: random sequences
//! of verbs, telemetry, error records, crashes (worker and fatal), time passing
//! (inactivity and maximum duration), background and foreground, consent
//! withdrawn and given, and restarts with persistence, run through the public
//! API of a real pipeline (a manual clock, wrapped exporting processors, the
//! panic hook), and compared with what a few lines of obvious code say should
//! happen: after every step the current session (id, `previous_id`, paused,
//! discarded, counts, status, user), and at the end every reported session's
//! summary (end reason, end time, counts, status, `previous_id`), each exactly
//! once.
//!
//! `PROPTEST_CASES` sets the number of cases (10,000 by default).

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{span_attr, LogRecorder, SpanRecorder};
use opentelemetry::logs::{LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry::trace::{Tracer as _, TracerProvider as _};
use opentelemetry_sdk::logs::{SdkLoggerProvider, SimpleLogProcessor};
use opentelemetry_sdk::trace::{SdkTracerProvider, SimpleSpanProcessor, SpanData};
use otel_session::{
    ManualClock, SessionManager, SessionMode, SessionObserver, SessionStatus, User,
};
use proptest::prelude::*;

const IDLE: u64 = 600;
const MAX: u64 = 1200;
const AWAY: u64 = 30;
const T0: u64 = 1_700_000_000;

#[derive(Debug, Clone, Copy)]
enum Op {
    Advance(u64),
    Span,
    ErrorLog,
    Start,
    End,
    Pause,
    Resume,
    SetUser(Option<u8>),
    Background,
    Foreground,
    Handled,
    Unhandled,
    WorkerPanic,
    FatalPanic,
    Consent(bool),
    Read,
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => prop_oneof![0..40u64, 25..35u64, 200..320u64, 580..620u64, 1150..1250u64]
            .prop_map(Op::Advance),
        4 => Just(Op::Span),
        2 => Just(Op::ErrorLog),
        2 => Just(Op::Start),
        1 => Just(Op::End),
        2 => Just(Op::Pause),
        2 => Just(Op::Resume),
        1 => prop::option::of(0..3u8).prop_map(Op::SetUser),
        2 => Just(Op::Background),
        2 => Just(Op::Foreground),
        2 => Just(Op::Handled),
        1 => Just(Op::Unhandled),
        1 => Just(Op::WorkerPanic),
        1 => Just(Op::FatalPanic),
        1 => any::<bool>().prop_map(Op::Consent),
        1 => Just(Op::Read),
        1 => Just(Op::Restart),
    ]
}

// ---------------------------------------------------------------- the model

#[derive(Debug, Clone)]
struct MSession {
    /// The how-manieth reported session it is (its id is the one the
    /// observer saw start in that place); discarded sessions have none.
    n: Option<usize>,
    previous: Option<usize>,
    started: u64,
    last: u64,
    paused: bool,
    reported: bool,
    handled: u64,
    unhandled: u64,
    panicked: bool,
    user: Option<u8>,
}

impl MSession {
    fn status(&self) -> SessionStatus {
        if self.unhandled > 0 {
            SessionStatus::Crashed
        } else if self.handled > 0 {
            SessionStatus::Errored
        } else {
            SessionStatus::Ok
        }
    }
}

#[derive(Debug, Clone)]
enum MPhase {
    /// Nothing starts by itself.
    Idle,
    /// App mode after a timeout: activity starts a session.
    Due,
    Live(MSession),
}

#[derive(Debug, Clone, PartialEq)]
struct MEnd<I> {
    id: I,
    reason: &'static str,
    at: u64,
    handled: u64,
    unhandled: u64,
    status: &'static str,
    previous: Option<I>,
}

#[derive(Debug)]
struct Model {
    app: bool,
    now: u64,
    phase: MPhase,
    background: Option<u64>,
    last_reported: Option<usize>,
    reported: usize,
    user: Option<u8>,
    consent: bool,
    ends: Vec<MEnd<usize>>,
}

impl Model {
    fn new(app: bool) -> Self {
        let mut m = Model {
            app,
            now: 0,
            phase: MPhase::Idle,
            background: None,
            last_reported: None,
            reported: 0,
            user: None,
            consent: true,
            ends: Vec::new(),
        };
        if app {
            m.start();
        }
        m
    }

    fn live(&mut self) -> Option<&mut MSession> {
        match &mut self.phase {
            MPhase::Live(s) => Some(s),
            _ => None,
        }
    }

    fn stamped(&self) -> bool {
        matches!(&self.phase, MPhase::Live(s) if s.reported && !s.paused)
    }

    fn due(&self) -> bool {
        matches!(self.phase, MPhase::Due) && self.background.is_none()
    }

    fn start(&mut self) {
        let previous = self.last_reported;
        let n = self.consent.then(|| {
            self.reported += 1;
            self.reported - 1
        });
        if n.is_some() {
            self.last_reported = n;
        }
        self.phase = MPhase::Live(MSession {
            n,
            previous,
            started: self.now,
            last: self.now,
            paused: false,
            reported: self.consent,
            handled: 0,
            unhandled: 0,
            panicked: false,
            user: self.user,
        });
    }

    fn end(&mut self, reason: &'static str, at: u64) {
        let MPhase::Live(s) = std::mem::replace(&mut self.phase, MPhase::Idle) else {
            return;
        };
        if let Some(n) = s.n {
            self.ends.push(MEnd {
                id: n,
                reason,
                at: at.max(s.started),
                handled: s.handled,
                unhandled: s.unhandled,
                status: s.status().as_str(),
                previous: s.previous,
            });
        }
    }

    /// Timeouts first (the rules' rule 1).
    fn expire(&mut self, shutting_down: bool) {
        let now = self.now;
        let app = self.app;
        let Some(s) = self.live() else { return };
        let idle = s.last + IDLE;
        let max = s.started + MAX;
        let (deadline, reason) = if idle <= max {
            (idle, "inactivity")
        } else {
            (max, "max_duration")
        };
        if now < deadline {
            return;
        }
        let at = if reason == "inactivity" {
            s.last
        } else {
            s.last.min(max)
        };
        let restart = app && !s.paused && !shutting_down;
        self.end(reason, at);
        self.phase = if restart { MPhase::Due } else { MPhase::Idle };
    }

    fn touch(&mut self) {
        let now = self.now;
        if let Some(s) = self.live() {
            s.last = s.last.max(now);
        }
    }

    fn step(&mut self, op: Op) {
        if let Op::Advance(by) = op {
            self.now += by;
        }
        if !matches!(op, Op::Restart) {
            self.expire(false);
        }
        match op {
            Op::Advance(_) | Op::Read => {}
            Op::Consent(c) => self.consent = c,
            Op::Span => {
                if self.stamped() {
                    self.touch();
                } else if self.due() {
                    self.start();
                }
            }
            Op::ErrorLog => {
                if self.due() {
                    self.start();
                }
                if self.stamped() {
                    self.touch();
                    if let Some(s) = self.live() {
                        s.handled += 1;
                    }
                }
            }
            Op::Handled | Op::Unhandled => {
                if self.due() {
                    self.start();
                }
                self.touch();
                if let Some(s) = self.live() {
                    if s.reported && !s.paused {
                        if matches!(op, Op::Handled) {
                            s.handled += 1;
                        } else {
                            s.unhandled += 1;
                        }
                    }
                }
            }
            Op::WorkerPanic | Op::FatalPanic => {
                if self.due() {
                    self.start();
                }
                self.touch();
                if let Some(s) = self.live() {
                    if s.reported && !s.panicked {
                        s.panicked = true;
                        s.unhandled += 1;
                    }
                }
                if matches!(op, Op::FatalPanic) && self.live().is_some() {
                    let now = self.now;
                    self.end("crash", now);
                    // Nothing starts by itself after it (this thread never
                    // crashed): as Idle for the rest of the model.
                    self.phase = MPhase::Idle;
                }
            }
            Op::Start => {
                let now = self.now;
                self.end("replaced", now);
                self.start();
            }
            Op::End => {
                let now = self.now;
                self.end("manual", now);
                self.phase = MPhase::Idle;
            }
            Op::Pause => {
                self.touch();
                if let Some(s) = self.live() {
                    s.paused = true;
                }
            }
            Op::Resume => {
                self.touch();
                match self.live() {
                    Some(s) => s.paused = false,
                    None => self.start(),
                }
            }
            Op::SetUser(u) => {
                self.user = u;
                self.touch();
                if let Some(s) = self.live() {
                    s.user = u;
                }
            }
            Op::Background => {
                if self.background.is_none() {
                    self.background = Some(self.now);
                    self.touch();
                }
            }
            Op::Foreground => {
                let since = self.background.take();
                let away_long = since.is_some_and(|b| self.now - b >= AWAY);
                if self.live().is_some() {
                    if away_long {
                        let at = self.live().map(|s| s.last).unwrap_or(self.now);
                        self.end("background", at);
                    } else {
                        self.touch();
                    }
                }
                if self.app && self.live().is_none() {
                    self.start();
                }
            }
            Op::Restart => {
                // Shutdown: timeouts first (nothing restarts), then suspended.
                self.expire(true);
                let suspended = match std::mem::replace(&mut self.phase, MPhase::Idle) {
                    MPhase::Live(s) if s.reported => Some(s),
                    _ => None,
                };
                // The next process: a new process knows no user and is in
                // the foreground.
                self.user = None;
                self.background = None;
                if let Some(s) = suspended {
                    self.phase = MPhase::Live(s);
                    self.expire(true);
                    self.touch();
                }
                if self.app && self.live().is_none() {
                    self.start();
                }
            }
        }
    }
}

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

/// Waits until no process holds the file (the dropped manager's lock).
fn released(path: &Path) {
    let lock = path.with_file_name(format!(
        "{}.lock",
        path.file_name().unwrap().to_string_lossy()
    ));
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        match std::fs::OpenOptions::new().write(true).open(&lock) {
            Ok(f) if f.try_lock().is_ok() => return,
            Err(_) => return,
            _ => std::thread::sleep(Duration::from_millis(1)),
        }
    }
    panic!("the file stayed locked");
}

impl Real {
    fn new(app: bool, case: u64) -> Self {
        let dir =
            std::env::temp_dir().join(format!("otel-session-model-{}-{case}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
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
            MEnd {
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
        })
        .collect();
    let dir = real.path.parent().unwrap().to_path_buf();
    drop(real);
    let _ = std::fs::remove_dir_all(dir);
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
