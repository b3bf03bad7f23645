//! Single-flight starts: "a session if there is none", shared by racing callers; the next session prepared after a timeout; the start triggered by telemetry inside a processor.

use std::sync::{Arc, MutexGuard, Weak};
use std::time::Duration;

use opentelemetry::StringValue;

use crate::core::callbacks::Notifications;
use crate::core::state::{Kind, SessionState};
use crate::model::clock::TimeJump;

use super::*;

/// How long a thread waits for another's single-flight start.
const START_WAIT: Duration = Duration::from_secs(2);

/// Clears the single-flight flag and wakes the waiters, however the start ends.
/// It is cleared under the same lock section that commits or stores the
/// candidate ([`StartingGuard::done`]): a waiter woken before that would become
/// a second preparer and run the callbacks for a session that never exists.
struct StartingGuard<'a> {
    shared: &'a Shared,
    armed: bool,
}

impl<'a> StartingGuard<'a> {
    fn new(shared: &'a Shared) -> Self {
        StartingGuard {
            shared,
            armed: true,
        }
    }

    /// The candidate was committed or stored, `starting` cleared with it.
    fn done(mut self) {
        self.armed = false;
        self.shared.started.notify_all();
    }
}

impl Drop for StartingGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.shared.lock().starting = false;
            self.shared.started.notify_all();
        }
    }
}

impl Shared {
    /// Starts a session if there is none (single-flight: racing callers get the
    /// same one); a candidate prepared when the last one timed out is used.
    /// Called where user code may run (a verb, the timer).
    pub(crate) fn ensure(&self) -> Option<Arc<SessionState>> {
        let prepared = {
            let mut st = self.lock();
            loop {
                if let Some(current) = &st.current {
                    return Some(Arc::clone(current));
                }
                if let Some(next) = st.next.take() {
                    break Some(next);
                }
                if !st.starting {
                    st.starting = true;
                    break None;
                }
                st = match self.wait_for_start(st) {
                    Ok(st) => st,
                    Err(current) => return current,
                };
            }
        };
        let (prepared, guard) = match prepared {
            Some(p) => (p, None),
            None => {
                let guard = StartingGuard::new(self);
                (self.prepare(Kind::App), Some(guard))
            }
        };
        let at = self.now();
        let current = {
            let mut st = self.lock();
            if guard.is_some() {
                st.starting = false;
            }
            if st.current.is_none() {
                let (_, started) = self.commit(&mut st, prepared, at);
                self.notify(Notifications {
                    ended: None,
                    started,
                });
            }
            st.current.clone()
        };
        match guard {
            Some(g) => g.done(),
            None => self.started.notify_all(),
        }
        self.schedule();
        self.flush();
        current
    }

    /// Waits (bounded) for another thread's start; `Err(current)` on time out.
    fn wait_for_start<'a>(
        &'a self,
        st: MutexGuard<'a, State>,
    ) -> Result<MutexGuard<'a, State>, Option<Arc<SessionState>>> {
        let (st, timeout) = self
            .started
            .wait_timeout(st, START_WAIT)
            .unwrap_or_else(|e| e.into_inner());
        if timeout.timed_out() && st.current.is_none() {
            crate::warn::once(
                &self.warned_start_wait,
                format_args!(
                    "starting a session took longer than {START_WAIT:?} (a slow on_session \
                     callback or IdGenerator?); telemetry meanwhile carries no session.id \
                     (reported once)"
                ),
            );
            return Err(st.current.clone());
        }
        Ok(st)
    }

    /// After a timeout in app mode: builds the next session's candidate now (its
    /// id, the callbacks' verdict), so that the next activity — which may arrive
    /// inside a span or log processor, where no user code may run — only has to
    /// commit it. Called where user code may run.
    pub(super) fn prepare_next(&self) {
        {
            let mut st = self.lock();
            if !st.restart || st.next.is_some() || st.current.is_some() || st.starting {
                return;
            }
            st.starting = true;
        }
        let guard = StartingGuard::new(self);
        let prepared = self.prepare(Kind::App);
        {
            let mut st = self.lock();
            st.starting = false;
            if st.restart && st.current.is_none() && st.next.is_none() {
                st.next = Some(prepared);
            }
        }
        guard.done();
    }

    /// The stamp for telemetry arriving when a restart is pending (the hot
    /// path's slow branch, inside a span or log processor): commits the prepared
    /// candidate (no user code), or waits (bounded) for it to be prepared; the
    /// lifecycle output is delivered by the timer thread right after.
    pub(crate) fn start_for_activity(&self) -> Option<StringValue> {
        let at = self.now();
        let mut committed = false;
        {
            let mut st = self.lock();
            loop {
                if st.current.is_some() {
                    break;
                }
                if !st.restart {
                    return None;
                }
                if let Some(next) = st.next.take() {
                    let (_, started) = self.commit(&mut st, next, at);
                    self.notify(Notifications {
                        ended: None,
                        started,
                    });
                    committed = true;
                    break;
                }
                if !st.starting {
                    // Nobody is preparing it: the timer thread will.
                    self.deliver_soon();
                }
                st = self.wait_for_start(st).ok()?;
            }
        }
        if committed {
            self.started.notify_all();
            self.schedule();
            self.deliver_soon();
        }
        self.stamp.load().as_deref().map(|s| s.value.clone())
    }

    /// Lets the timer thread deliver what is queued (and prepare a pending
    /// restart) soon: for work found inside a processor, where the SDK may hold
    /// the thread's context and neither user code nor delivery may run.
    pub(super) fn deliver_soon(&self) {
        let target: Weak<dyn TimeJump> = self.me.clone();
        crate::core::timer::schedule(target, Duration::ZERO);
    }
}
