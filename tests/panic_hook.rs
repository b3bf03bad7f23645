//! The panic hook in one process (its own test binary: the hook is global):
//! panics of user code the crate runs and catches are not crashes; a panic of
//! the app's own code is, once per session.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use otel_session::{SessionManager, SessionMode, SessionObserver, SessionStatus};

struct Faulty;
impl SessionObserver for Faulty {
    fn on_session_started(&self, _s: &otel_session::Session) {
        panic!("observer bug");
    }
}

#[test]
fn caught_panics_of_our_hooks_are_not_crashes_and_app_panics_are_once() {
    let fail = Arc::new(AtomicBool::new(false));
    let f = Arc::clone(&fail);
    let sessions = SessionManager::builder()
        .with_mode(SessionMode::Manual)
        .on_session(move |_| {
            if f.load(Ordering::SeqCst) {
                panic!("callback bug");
            }
            true
        })
        .with_observer(Faulty)
        .build();
    otel_session::install_panic_hook(&sessions);
    let first = sessions.start_session().unwrap();
    fail.store(true, Ordering::SeqCst);
    // The callback panics while the next session is built: caught, kept.
    let second = sessions.start_session().unwrap();
    assert_ne!(first.id(), second.id());
    let now = sessions.current_session().unwrap();
    assert_eq!(
        now.status(),
        SessionStatus::Ok,
        "a caught callback panic is no crash"
    );
    assert_eq!(now.unhandled_errors(), 0);

    // The app's own panic on another thread: crashed, once however many.
    for _ in 0..3 {
        let _ = std::thread::spawn(|| panic!("app bug")).join();
    }
    let now = sessions.current_session().unwrap();
    assert_eq!(now.status(), SessionStatus::Crashed);
    assert_eq!(now.unhandled_errors(), 1);
    assert_eq!(
        now.id(),
        second.id(),
        "a caught worker panic leaves the session running"
    );
}
