//! The one timer thread of the process: it sleeps until the earliest session
//! deadline of any manager (inactivity or maximum duration), wakes that manager
//! to check it, and sleeps again. It wakes once per deadline, never polls, holds
//! its managers weakly (a dropped manager is forgotten) and, like every thread
//! but `main`, does not keep the process alive. It is started on first need.
//!
//! Managers on a manual clock never register: the clock wakes them when it moves.

use std::sync::{Arc, Condvar, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use crate::model::clock::TimeJump;

thread_local! {
    static TIMER_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// `true` on the timer thread (a start it asks for is one it builds itself).
pub(crate) fn on_timer_thread() -> bool {
    TIMER_THREAD.try_with(std::cell::Cell::get).unwrap_or(false)
}

struct Entry {
    target: Weak<dyn TimeJump>,
    due: Instant,
}

#[derive(Default)]
struct Timer {
    entries: Mutex<Vec<Entry>>,
    changed: Condvar,
}

fn timer() -> Option<&'static Arc<Timer>> {
    static TIMER: OnceLock<Option<Arc<Timer>>> = OnceLock::new();
    TIMER
        .get_or_init(|| {
            let timer = Arc::new(Timer::default());
            let worker = Arc::clone(&timer);
            match std::thread::Builder::new()
                .name("otel-session-timer".into())
                .spawn(move || {
                    TIMER_THREAD.with(|t| t.set(true));
                    worker.run()
                }) {
                Ok(_) => Some(timer),
                Err(e) => {
                    crate::warn::stderr(format_args!(
                        "could not start the session timer thread ({e}); sessions still end \
                         on their inactivity timeout or maximum duration, but only when \
                         telemetry or a session verb arrives after it"
                    ));
                    None
                }
            }
        })
        .as_ref()
}

/// Wakes `target` after `wait` (or earlier, if it was already due earlier).
pub(crate) fn schedule(target: Weak<dyn TimeJump>, wait: Duration) {
    let Some(timer) = timer() else { return };
    let due = crate::model::clock::deadline_in(wait);
    let mut entries = timer.entries.lock().unwrap_or_else(|e| e.into_inner());
    match entries
        .iter_mut()
        .find(|e| Weak::ptr_eq(&e.target, &target))
    {
        Some(e) if e.due <= due => return,
        Some(e) => e.due = due,
        None => entries.push(Entry { target, due }),
    }
    drop(entries);
    timer.changed.notify_one();
}

impl Timer {
    fn run(&self) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            entries.retain(|e| e.target.strong_count() > 0);
            let now = Instant::now();
            let due: Vec<Weak<dyn TimeJump>> = {
                let mut due = Vec::new();
                entries.retain(|e| {
                    if e.due <= now {
                        due.push(e.target.clone());
                        false
                    } else {
                        true
                    }
                });
                due
            };
            if !due.is_empty() {
                drop(entries);
                for target in due {
                    if let Some(t) = target.upgrade() {
                        // A panic here would stop every manager's timer: contain it.
                        let _ = crate::core::callbacks::catching(|| t.time_jumped());
                    }
                }
                entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
                continue;
            }
            let next = entries.iter().map(|e| e.due).min();
            entries = match next {
                None => self
                    .changed
                    .wait(entries)
                    .unwrap_or_else(|e| e.into_inner()),
                Some(due) => {
                    self.changed
                        .wait_timeout(entries, due.saturating_duration_since(now))
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
    }
}
