//! Spans from many threads while another thread starts, pauses, resumes and ends
//! sessions: every stamped id must belong to a session that was reported and
//! current (not paused) at the moment that span started.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use opentelemetry::trace::{Tracer as _, TracerProvider as _};
use opentelemetry::Context;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, Span, SpanData, SpanProcessor};
use otel_session::SessionManager;
use otel_session::SessionMode;
use otel_session::{EndReason, Session, SessionObserver, User};

/// Records, for each span start, the session id it got, the span's start time
/// (taken before stamping) and the time right after stamping.
#[derive(Debug, Default)]
struct ProbeData {
    starts: Mutex<Vec<(Option<String>, SystemTime, SystemTime)>>,
    lifecycle: Mutex<Vec<SpanData>>,
}

#[derive(Debug, Default, Clone)]
struct Probe(Arc<ProbeData>);

impl SpanProcessor for Probe {
    fn on_start(&self, span: &mut Span, _cx: &Context) {
        let after = SystemTime::now();
        let data = span.exported_data().expect("recording");
        let id = data
            .attributes
            .iter()
            .find(|kv| kv.key.as_str() == "session.id")
            .map(|kv| kv.value.to_string());
        self.0
            .starts
            .lock()
            .unwrap()
            .push((id, data.start_time, after));
    }
    fn on_end(&self, span: SpanData) {
        if span.instrumentation_scope.name() == "otel-session" {
            self.0.lifecycle.lock().unwrap().push(span);
        }
    }
    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }
    fn shutdown_with_timeout(&self, _: std::time::Duration) -> OTelSdkResult {
        Ok(())
    }
}

#[test]
fn every_stamped_id_was_reported_and_current_at_span_start() {
    let sessions = SessionManager::builder()
        .with_mode(SessionMode::Manual)
        // Every fourth session is discarded: its id must never be stamped.
        .on_session({
            let n = Arc::new(Mutex::new(0u32));
            move |_| {
                let mut n = n.lock().unwrap();
                *n += 1;
                !(*n).is_multiple_of(4)
            }
        })
        .build();
    let probe = Probe::default();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(sessions.span_processor(probe.clone()))
        .build();
    let done = Arc::new(AtomicBool::new(false));
    let running = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let workers: Vec<_> = (0..3)
        .map(|i| {
            let tracer = provider.tracer("worker");
            let done = Arc::clone(&done);
            let running = Arc::clone(&running);
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !done.load(Ordering::Relaxed) || n < 1_000 {
                    tracer.in_span(format!("w{i}"), |_| {});
                    if n == 0 {
                        running.fetch_add(1, Ordering::Relaxed);
                    }
                    n += 1;
                }
                n
            })
        })
        .collect();
    // The sessions change while the workers make spans: on 2 busy cores the
    // threads can otherwise start only after the last change (nothing stamped).
    while running.load(Ordering::Relaxed) < 3 {
        std::thread::yield_now();
    }
    for round in 0..1_500u32 {
        match round % 6 {
            0 | 3 => {
                sessions.start_session().unwrap();
            }
            1 | 4 => sessions.pause_session(),
            2 => {
                sessions.resume_session();
            }
            _ => sessions.end_session(),
        }
    }
    sessions.end_session();
    done.store(true, Ordering::Relaxed);
    let spans_made: u64 = workers.into_iter().map(|w| w.join().unwrap()).sum();

    // Build each reported session's stamping windows from its lifecycle spans.
    let lifecycle = probe.0.lifecycle.lock().unwrap().clone();
    let mut windows: HashMap<String, Vec<(SystemTime, Option<SystemTime>)>> = HashMap::new();
    for s in lifecycle.iter().filter(|s| s.name != "session") {
        let id = s
            .attributes
            .iter()
            .find(|kv| kv.key.as_str() == "session.id")
            .map(|kv| kv.value.to_string())
            .expect("lifecycle spans carry session.id");
        let w = windows.entry(id).or_default();
        match &*s.name {
            "session.start" | "session.resume" => w.push((s.start_time, None)),
            "session.pause" | "session.end" => {
                if let Some(last) = w.last_mut() {
                    if last.1.is_none() {
                        last.1 = Some(s.start_time);
                    }
                }
            }
            other => panic!("unexpected lifecycle span {other}"),
        }
    }
    let reported: HashSet<_> = windows.keys().cloned().collect();
    assert!(reported.len() > 100, "{} sessions reported", reported.len());

    let starts = probe.0.starts.lock().unwrap();
    assert_eq!(starts.len() as u64, spans_made);
    let mut stamped = 0;
    for (id, started, after) in starts.iter() {
        let Some(id) = id else { continue };
        stamped += 1;
        let w = windows
            .get(id)
            .unwrap_or_else(|| panic!("span stamped with unreported session {id}"));
        let ok = w
            .iter()
            .any(|(on, off)| *after >= *on && off.is_none_or(|off| *started <= off));
        assert!(
            ok,
            "span stamped {id} outside its session's active windows {w:?}"
        );
    }
    assert!(stamped > 0, "some spans were stamped");
    assert!(
        stamped < starts.len(),
        "some spans were not (paused / no session)"
    );
    provider.shutdown().unwrap();
}

/// A set_user made while a start is in flight applies to the new session.
#[test]
fn set_user_during_start_is_not_lost() {
    let sessions = SessionManager::builder()
        .with_mode(SessionMode::Manual)
        .on_session(|_| {
            std::thread::sleep(Duration::from_millis(300));
            true
        })
        .build();
    let s2 = sessions.clone();
    let t = std::thread::spawn(move || s2.start_session());
    std::thread::sleep(Duration::from_millis(100));
    sessions.set_user(User::with_id("u2")); // returns before the start finishes
    t.join().unwrap().unwrap();
    let cur = sessions.current_session().unwrap();
    assert_eq!(
        cur.user().and_then(|u| u.id.as_deref()),
        Some("u2"),
        "the user set last applies to the current session"
    );
}

/// Observers hear of a session's start before its end, even across threads.
#[derive(Default)]
struct SlowRec(Mutex<Vec<String>>);
impl SessionObserver for SlowRec {
    fn on_session_started(&self, s: &Session) {
        std::thread::sleep(Duration::from_millis(200));
        self.0.lock().unwrap().push(format!("started {}", s.id()));
    }
    fn on_session_ended(&self, s: &Session, _r: EndReason) {
        self.0.lock().unwrap().push(format!("ended {}", s.id()));
    }
}

#[test]
fn observers_never_see_an_end_before_its_start() {
    let rec = Arc::new(SlowRec::default());
    let sessions = SessionManager::builder()
        .with_mode(SessionMode::Manual)
        .with_observer(Arc::clone(&rec))
        .build();
    let s2 = sessions.clone();
    let t = std::thread::spawn(move || s2.start_session().unwrap());
    std::thread::sleep(Duration::from_millis(50));
    sessions.end_session();
    let a = t.join().unwrap();
    assert_eq!(
        *rec.0.lock().unwrap(),
        [format!("started {}", a.id()), format!("ended {}", a.id())]
    );
}

/// Two racing resumes with no session start one session, not two.
#[test]
fn concurrent_resumes_with_no_session_start_one_session() {
    let starts = Arc::new(Mutex::new(0));
    let c = Arc::clone(&starts);
    let sessions = SessionManager::builder()
        .with_mode(SessionMode::Manual)
        .on_session(move |_| {
            *c.lock().unwrap() += 1;
            std::thread::sleep(Duration::from_millis(200));
            true
        })
        .build();
    let s2 = sessions.clone();
    let t = std::thread::spawn(move || s2.resume_session());
    std::thread::sleep(Duration::from_millis(50));
    sessions.resume_session();
    t.join().unwrap();
    assert_eq!(*starts.lock().unwrap(), 1, "one session started");
}
