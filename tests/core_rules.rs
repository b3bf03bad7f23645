//! The core's rules: no user code under our locks, verbs that hand their
//! lifecycle to the exporters before returning, refusals that say so.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use common::{pipeline, span_attr};
use opentelemetry::KeyValue;
use otel_session::{
    Clock, IdGenerator, Session, SessionError, SessionId, SessionManager, SessionMode,
    SessionObserver, User,
};

/// Runs `f` on a thread; panics if it does not finish within `limit` (a
/// deadlock would hang the test run instead).
fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .expect("finished in time (no deadlock, not blocked)")
}

fn manual() -> otel_session::SessionManagerBuilder {
    SessionManager::builder().with_mode(SessionMode::Manual)
}

/// A clock that reads the session (and so would deadlock if read under our lock).
#[derive(Debug, Default)]
struct NosyClock(OnceLock<SessionManager>, AtomicUsize);
impl Clock for NosyClock {
    fn now(&self) -> SystemTime {
        if let Some(m) = self.0.get() {
            self.1.fetch_add(1, Ordering::Relaxed);
            let _ = format!("{m:?}");
            let _ = m.current_session();
        }
        SystemTime::now()
    }
}

#[derive(Debug, Default)]
struct NosyIds(OnceLock<SessionManager>, AtomicUsize);
impl IdGenerator for NosyIds {
    fn new_session_id(&self) -> SessionId {
        let n = self.1.fetch_add(1, Ordering::Relaxed);
        if let Some(m) = self.0.get() {
            let _ = m.current_session();
            let _ = format!("{m:?}");
        }
        SessionId::from(format!("nosy-{n}"))
    }
}

#[test]
fn a_clock_and_an_id_generator_may_call_the_manager() {
    let clock = Arc::new(NosyClock::default());
    let ids = Arc::new(NosyIds::default());
    let sessions = manual()
        .with_clock(clock.clone())
        .with_id_generator(ArcIds(ids.clone()))
        .with_inactivity_timeout(Some(Duration::from_secs(3600)))
        .build();
    let _ = clock.0.set(sessions.clone());
    let _ = ids.0.set(sessions.clone());
    let s = sessions.clone();
    within(Duration::from_secs(10), move || {
        s.start_session().unwrap();
        s.pause_session();
        assert!(s.resume_session());
        s.set_user(User::with_id("u"));
        s.background();
        s.foreground();
        s.start_session().unwrap();
        s.end_session();
        assert!(!s.resume_session());
    });
    assert!(clock.1.load(Ordering::Relaxed) > 5, "the clock was read");
    assert!(sessions
        .current_session()
        .unwrap()
        .id()
        .as_str()
        .starts_with("nosy-"));
}

#[derive(Debug)]
struct ArcIds(Arc<NosyIds>);
impl IdGenerator for ArcIds {
    fn new_session_id(&self) -> SessionId {
        self.0.new_session_id()
    }
}

#[derive(Debug)]
struct PanickingClock;
impl Clock for PanickingClock {
    fn now(&self) -> SystemTime {
        panic!("clock broke")
    }
}

#[derive(Debug)]
struct PanickingIds;
impl IdGenerator for PanickingIds {
    fn new_session_id(&self) -> SessionId {
        panic!("ids broke")
    }
}

#[test]
fn a_panicking_clock_or_id_generator_is_contained() {
    let sessions = manual()
        .with_clock(Arc::new(PanickingClock))
        .with_id_generator(PanickingIds)
        .build();
    let s = sessions.start_session().expect("a session despite both");
    assert!(
        uuid_like(s.id().as_str()),
        "fell back to UUID v4: {}",
        s.id()
    );
    let age = SystemTime::now()
        .duration_since(s.started_at())
        .unwrap_or_default();
    assert!(
        age < Duration::from_secs(60),
        "fell back to the system time"
    );
    sessions.end_session();
}

fn uuid_like(s: &str) -> bool {
    s.len() == 36 && s.chars().filter(|c| *c == '-').count() == 4
}

#[test]
fn a_slow_callback_does_not_stall_resume_or_set_user() {
    let (entered_tx, entered_rx) = mpsc::channel::<()>();
    let entered_tx = Mutex::new(Some(entered_tx));
    let sessions = manual()
        .on_session(move |_| {
            if let Some(tx) = entered_tx.lock().unwrap().take() {
                let _ = tx.send(());
                std::thread::sleep(Duration::from_millis(800));
            }
            true
        })
        .build();
    let s = sessions.clone();
    let starter = std::thread::spawn(move || s.start_session());
    entered_rx.recv().unwrap();
    let s = sessions.clone();
    let took = within(Duration::from_secs(5), move || {
        let t = Instant::now();
        s.set_user(User::with_id("while-starting"));
        let _ = s.current_session();
        let _ = format!("{s:?}");
        t.elapsed()
    });
    assert!(took < Duration::from_millis(400), "not stalled: {took:?}");
    let started = starter.join().unwrap().unwrap();
    assert_eq!(
        started.user().and_then(|u| u.id.as_deref()),
        Some("while-starting"),
        "a set_user made while the callback ran applies to the new session"
    );
}

/// Blocks in its first start notification until told to go on.
struct Gate {
    entered: Mutex<Option<mpsc::Sender<()>>>,
    hold: Duration,
}
impl SessionObserver for Gate {
    fn on_session_started(&self, _s: &Session) {
        if let Some(tx) = self.entered.lock().unwrap().take() {
            let _ = tx.send(());
            std::thread::sleep(self.hold);
        }
    }
}

#[test]
fn a_verb_returns_after_its_lifecycle_reached_the_exporter_even_while_another_thread_delivers() {
    let (tx, rx) = mpsc::channel();
    let p = Arc::new(pipeline(manual().with_observer(Gate {
        entered: Mutex::new(Some(tx)),
        hold: Duration::from_millis(500),
    })));
    let p2 = Arc::clone(&p);
    let starter = std::thread::spawn(move || p2.sessions.start_session().unwrap());
    rx.recv().unwrap(); // the starter is delivering (inside the observer)
    p.sessions.end_session();
    // No flush: a SimpleSpanProcessor exports on the spot.
    let names: Vec<_> = p
        .lifecycle_spans()
        .iter()
        .map(|s| s.name.to_string())
        .collect();
    assert_eq!(names, ["session.start", "session.end", "session"]);
    starter.join().unwrap();
}

#[test]
fn shutdown_waits_for_a_slow_delivery_up_to_its_timeout() {
    let (tx, rx) = mpsc::channel();
    let p = Arc::new(pipeline(manual().with_observer(Gate {
        entered: Mutex::new(Some(tx)),
        hold: Duration::from_millis(1200),
    })));
    let p2 = Arc::clone(&p);
    let starter = std::thread::spawn(move || p2.sessions.start_session().unwrap());
    rx.recv().unwrap();
    p.tracer_provider
        .shutdown_with_timeout(Duration::from_secs(6))
        .unwrap();
    let names: Vec<_> = p
        .lifecycle_spans()
        .iter()
        .map(|s| s.name.to_string())
        .collect();
    assert_eq!(
        names,
        ["session.start", "session.end", "session"],
        "the end went out before the exporter closed"
    );
    let end = p.lifecycle_span("session.end");
    assert_eq!(
        span_attr(&end, "otel_session.end_reason").as_deref(),
        Some("shutdown")
    );
    starter.join().unwrap();
}

#[test]
fn a_reentrant_start_says_so() {
    let seen = Arc::new(Mutex::new(None));
    let seen2 = Arc::clone(&seen);
    let holder: Arc<OnceLock<SessionManager>> = Arc::new(OnceLock::new());
    let h2 = Arc::clone(&holder);
    let sessions = manual()
        .on_session(move |_| {
            if let Some(m) = h2.get() {
                *seen2.lock().unwrap() = Some(m.start_session());
            }
            true
        })
        .build();
    let _ = holder.set(sessions.clone());
    sessions.start_session().unwrap();
    let inner = seen.lock().unwrap().take().expect("the callback ran");
    assert_eq!(
        inner.unwrap_err(),
        SessionError::Reentrant {
            verb: "start_session"
        }
    );
}

#[test]
fn a_callback_handle_removes_only_its_own_managers_callback() {
    let a = manual().build();
    let b = manual().build();
    let ran_b = Arc::new(AtomicBool::new(false));
    let r = Arc::clone(&ran_b);
    let handle_b = b.add_on_session(move |_| {
        r.store(true, Ordering::Relaxed);
        true
    });
    let handle_a = a.add_on_session(|_| true);
    assert!(
        !a.remove_on_session(handle_b),
        "b's handle does nothing on a"
    );
    assert!(
        !b.remove_on_session(handle_a),
        "a's handle does nothing on b"
    );
    b.start_session().unwrap();
    assert!(ran_b.load(Ordering::Relaxed), "b's callback is still there");
    assert!(b.remove_on_session(handle_b));
    assert!(a.remove_on_session(handle_a));
}

#[test]
fn callbacks_cannot_set_our_attributes() {
    let results = Arc::new(Mutex::new(Vec::new()));
    let r = Arc::clone(&results);
    let p = pipeline(manual().on_session(move |c| {
        let mut r = r.lock().unwrap();
        r.push(c.set_attribute(KeyValue::new("session.id", "forged")));
        r.push(c.set_attribute(KeyValue::new("session.previous_id", "forged")));
        r.push(c.set_attribute(KeyValue::new("otel_session.status", "ok")));
        r.push(c.set_attribute(KeyValue::new("app.plan", "pro")));
        true
    }));
    let s = p.sessions.start_session().unwrap();
    p.sessions.end_session();
    assert_eq!(*results.lock().unwrap(), [false, false, false, true]);
    let summary = p.lifecycle_span("session");
    assert_eq!(
        span_attr(&summary, "session.id").as_deref(),
        Some(s.id().as_str())
    );
    assert_eq!(span_attr(&summary, "app.plan").as_deref(), Some("pro"));
    assert_eq!(
        summary
            .attributes
            .iter()
            .filter(|kv| kv.key.as_str() == "otel_session.status")
            .count(),
        1
    );
}

#[test]
fn debug_never_blocks_even_from_an_observer() {
    struct Nosy(Arc<OnceLock<SessionManager>>, Arc<Mutex<Option<String>>>);
    impl SessionObserver for Nosy {
        fn on_session_started(&self, _s: &Session) {
            if let Some(m) = self.0.get() {
                *self.1.lock().unwrap() = Some(format!("{m:?}"));
            }
        }
    }
    let holder = Arc::new(OnceLock::new());
    let printed = Arc::new(Mutex::new(None));
    let sessions = manual()
        .with_observer(Nosy(Arc::clone(&holder), Arc::clone(&printed)))
        .build();
    let _ = holder.set(sessions.clone());
    let started = within(Duration::from_secs(5), move || {
        sessions.start_session().unwrap().id().to_string()
    });
    let printed = printed.lock().unwrap().take().expect("the observer ran");
    assert!(printed.contains("SessionManager"), "{printed}");
    assert!(
        printed.contains(&started),
        "it shows the session being started: {printed}"
    );
}

#[test]
fn racing_starts_of_a_missing_session_run_the_callbacks_once() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&calls);
    let sessions = manual()
        .on_session(move |_| {
            c.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(50));
            true
        })
        .build();
    let barrier = Arc::new(std::sync::Barrier::new(8));
    let ids: Vec<String> = (0..8)
        .map(|_| {
            let s = sessions.clone();
            let b = Arc::clone(&barrier);
            std::thread::spawn(move || {
                b.wait();
                s.resume_session();
                s.current_session().unwrap().id().to_string()
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] == w[1]), "one session: {ids:?}");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "callbacks ran for one candidate"
    );
}
