//! Persistence in the state machine: what is saved when, the restore at build,
//! the suspension at a clean exit, and ends kept until a flush confirms them.
//!
//! Saves are effects (the store does I/O: never under the lock, never on the
//! span path). A transition saves at once; activity and error counts ask the
//! timer thread for a save at most every [`SAVE_EVERY`].

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::core::callbacks::Notifications;
use crate::core::persist::{PendingEnd, Saved, SavedSession, SavedState, PENDING_ENDS_LIMIT};
use crate::core::state::{from_nanos, nanos, SessionState};
use crate::model::attr;
use crate::model::session::{EndReason, SessionMode, SessionStatus};

use super::*;

/// Activity is saved at most this often (the last activity of a session whose
/// process dies is known to within this).
pub(crate) const SAVE_EVERY: Duration = Duration::from_secs(5);

impl Shared {
    fn saved_session(&self, s: &SessionState, state: SavedState) -> SavedSession {
        let (handled, unhandled) = s.counts();
        let status = s.status_with(handled, unhandled);
        SavedSession {
            id: s.id.clone(),
            previous_id: s.previous_id.clone(),
            started_at: s.started_at,
            last_activity: from_nanos(self.activity.last()).max(s.started_at),
            handled,
            unhandled,
            status,
            state,
            user: s.detail().user.clone(),
        }
    }

    /// Queues a save of the state (call under the lock).
    pub(super) fn persist(&self, st: &State) {
        let Some(store) = &self.store else { return };
        let state = if st.suspended {
            SavedState::Suspended
        } else {
            SavedState::Active
        };
        let saved = Saved {
            session: st
                .current
                .as_ref()
                .filter(|s| !s.discarded)
                .map(|s| self.saved_session(s, state)),
            last_reported: st.last_reported.clone(),
            pending_ends: st.pending_ends.iter().map(|(_, p)| p.clone()).collect(),
        };
        self.last_save
            .store(self.activity.last(), Ordering::Relaxed);
        self.emit(Effect::Persist(saved, Arc::clone(store)));
    }

    /// Keeps an end until a flush confirms it (call under the lock, right after
    /// its effects were queued).
    pub(super) fn keep_pending(
        &self,
        st: &mut State,
        session: &SessionState,
        reason: EndReason,
        at: std::time::SystemTime,
        (status, handled, unhandled): (SessionStatus, u64, u64),
    ) {
        if self.store.is_none() {
            return;
        }
        let mut saved = self.saved_session(session, SavedState::Active);
        saved.status = status;
        saved.handled = handled;
        saved.unhandled = unhandled;
        if st.pending_ends.len() == PENDING_ENDS_LIMIT {
            st.pending_ends.remove(0);
            static WARNED: std::sync::atomic::AtomicBool =
                std::sync::atomic::AtomicBool::new(false);
            crate::warn::once(
                &WARNED,
                format_args!(
                    "more than {PENDING_ENDS_LIMIT} session ends wait for a confirmed delivery \
                     (the collector is down?); the oldest are no longer kept for the next run \
                     (reported once)"
                ),
            );
        }
        let seq = self.outbox.last_queued();
        st.pending_ends.push((
            seq,
            PendingEnd {
                session: saved,
                reason,
                ended_at: at,
            },
        ));
    }

    /// Activity or an error count changed: asks the timer thread for a save if
    /// the last one is older than [`SAVE_EVERY`].
    #[inline]
    pub(crate) fn save_soon(&self, t: u64) {
        if self.store.is_none() {
            return;
        }
        let every = u64::try_from(SAVE_EVERY.as_nanos()).unwrap_or(u64::MAX);
        if t.saturating_sub(self.last_save.load(Ordering::Relaxed)) >= every
            && !self.save_requested.swap(true, Ordering::AcqRel)
        {
            self.deliver_soon();
        }
    }

    /// Does a save asked for by [`save_soon`](Self::save_soon) (timer thread).
    pub(super) fn save_if_asked(&self) {
        if self.save_requested.swap(false, Ordering::AcqRel) {
            let st = self.lock();
            self.persist(&st);
        }
    }

    /// A flush through the exporting processors succeeded: the ends queued up
    /// to `mark` were delivered and are forgotten.
    pub(crate) fn confirm_delivered(&self, mark: u64) {
        if self.store.is_none() {
            return;
        }
        {
            let Ok(mut st) = self.state_try_lock() else {
                return;
            };
            let before = st.pending_ends.len();
            st.pending_ends.retain(|(seq, _)| *seq > mark);
            if st.pending_ends.len() == before {
                return;
            }
            self.persist(&st);
        }
        self.flush();
    }

    /// These sessions' ends reached a collector (their summary spans were
    /// exported): they are no longer kept for the next run.
    pub(crate) fn confirm_sessions(&self, ids: &[String]) {
        if self.store.is_none() {
            return;
        }
        {
            let mut st = self.lock();
            let before = st.pending_ends.len();
            st.pending_ends
                .retain(|(_, p)| !ids.iter().any(|id| p.session.id.as_str() == id));
            if st.pending_ends.len() == before {
                return;
            }
            self.persist(&st);
        }
        // On an export thread: the save is delivered by the timer thread.
        self.deliver_soon();
    }

    /// Saves at once, without waiting for our lock (the panic hook); the save
    /// is delivered by whoever flushes next.
    pub(crate) fn persist_now_if_free(&self) {
        if self.store.is_none() {
            return;
        }
        if let Ok(st) = self.state_try_lock() {
            self.persist(&st);
        }
    }

    /// A clean exit with persistence: the session is put aside (`suspended`),
    /// not ended; the next start continues it (or reports its end). `false`
    /// without persistence (the caller then ends it).
    pub(crate) fn suspend_for_shutdown(&self, limit: Duration) -> bool {
        if self.store.is_none() || self.tracking.mode == SessionMode::Request {
            return false;
        }
        let seq = {
            let mut st = self.lock();
            st.suspended = true;
            self.set_restart(&mut st, false);
            self.persist(&st);
            self.outbox.last_queued()
        };
        self.outbox.flush_through(seq, &self.sinks, limit);
        true
    }

    /// At build, with persistence: sends the ends the last run could not
    /// confirm, then continues its session (`suspended` and within both
    /// timeouts: a `session.resume`), or reports its end (`suspended` but
    /// expired: `inactivity` / `max_duration`; `active`, its process died:
    /// `abnormal`, reason `lost`), dated at its last activity.
    pub(crate) fn restore(&self) {
        let Some(store) = &self.store else { return };
        if self.tracking.mode == SessionMode::Request {
            return;
        }
        let Some(saved) = store.load() else { return };
        let now = self.now();
        let continued = {
            let mut st = self.lock();
            st.last_reported = saved.last_reported.clone();
            // Ends the last run could not confirm: sent again, same span ids,
            // not counted or notified again (that run did).
            st.resending = true;
            for p in &saved.pending_ends {
                let session = Arc::new(SessionState::restored(&p.session));
                st.current = Some(session);
                let _ = self.end_locked(&mut st, p.reason, When::At(p.ended_at));
            }
            st.resending = false;
            let mut continued = false;
            if let Some(s) = &saved.session {
                let session = Arc::new(SessionState::restored(s));
                st.current = Some(Arc::clone(&session));
                // Its last activity as recorded (however long after the start:
                // not a verb's activity, which a passed limit refuses).
                self.activity.arm(
                    nanos(s.started_at),
                    nanos(s.last_activity),
                    self.tracking.inactivity,
                    self.tracking.max_duration,
                );
                let notes = match (s.state, self.expiry(now)) {
                    (SavedState::Suspended, None) => {
                        // Resuming is activity (like the verb).
                        self.activity.note(nanos(now));
                        st.last_reported = Some(s.id.clone());
                        self.set_stamp(Some(Arc::clone(&session)));
                        self.pause_or_resume(&session, attr::EVENT_RESUME, now);
                        continued = true;
                        Notifications::default()
                    }
                    (SavedState::Suspended, Some((reason, at))) => {
                        self.end_locked(&mut st, reason, When::At(at))
                    }
                    (SavedState::Active, _) => {
                        session.raise_to(SessionStatus::Abnormal);
                        self.end_locked(&mut st, EndReason::Lost, When::At(s.last_activity))
                    }
                };
                self.notify(notes);
            }
            self.persist(&st);
            continued
        };
        if continued {
            self.schedule();
        }
        self.flush();
    }
}
