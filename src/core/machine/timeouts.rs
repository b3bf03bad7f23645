//! Timeouts: activity, expiry (inactivity and maximum duration, dated at the last activity), the timer schedule, and manual clocks waking the manager.

use std::sync::atomic::Ordering;
use std::sync::Weak;
use std::time::{Duration, SystemTime};

use crate::core::state::{from_nanos, nanos};
use crate::model::clock::TimeJump;
use crate::model::session::{EndReason, SessionMode};

use super::*;

impl Shared {
    /// Activity from telemetry at `t` (nanoseconds, clock time); ends the session
    /// when `t` is past one of its limits.
    #[inline]
    fn touch(&self, t: u64) {
        self.save_soon(t);
        let mut now = t;
        if self.activity.touch(t, || {
            now = nanos(self.now());
            now
        }) {
            self.expire_at(from_nanos(t.min(now)));
        }
    }

    #[cold]
    #[inline(never)]
    fn expire_at(&self, now: SystemTime) {
        self.check_expiry(now, Site::Processor);
    }

    /// Ends the current session if a limit passed by `now` (reason
    /// `inactivity` or `max_duration`, dated at its last activity); in app mode
    /// the next activity then starts a new one (unless it was paused). Else
    /// schedules the next check. `true` if it ended the session.
    pub(crate) fn check_expiry(&self, now: SystemTime, site: Site) -> bool {
        let ended = {
            let mut st = self.lock();
            if st.current.is_none() {
                return false;
            }
            match self.expiry(now) {
                None => None,
                Some((reason, at)) => {
                    // The restart flag first: a thread that sees the stamp gone
                    // must also see that the next activity starts a session.
                    // Shutting down: no next session, not even on activity
                    // that races the shutdown.
                    let restart = self.tracking.mode == SessionMode::App
                        && !st.paused
                        && !matches!(site, Site::Shutdown);
                    self.set_restart(&mut st, restart);
                    let notes = self.end_locked(&mut st, reason, When::At(at));
                    self.notify(notes);
                    Some(())
                }
            }
        };
        match ended {
            Some(()) => {
                // Caches must see the pending restart.
                crate::core::stamp::bump();
                match site {
                    Site::Safe => {
                        self.prepare_next();
                        self.flush();
                    }
                    Site::Processor => self.deliver_soon(),
                    Site::Shutdown => {}
                }
                true
            }
            None => {
                self.schedule_at(now);
                false
            }
        }
    }

    /// Whether the current session (timed by `activity`) expired by `now`: the
    /// reason and the end's date.
    pub(super) fn expiry(&self, now: SystemTime) -> Option<(EndReason, SystemTime)> {
        let (deadline, reason) = self.activity.deadline()?;
        if nanos(now) < deadline {
            return None;
        }
        // Dated at the last activity; a maximum duration never past its end.
        let last = self.activity.last();
        let at = if reason == EndReason::MaxDuration {
            last.min(deadline)
        } else {
            last
        };
        Some((reason, from_nanos(at)))
    }

    /// Arms the real timer for the current session's next deadline (not for a
    /// manual clock: it wakes us itself).
    pub(crate) fn schedule(&self) {
        self.schedule_at(self.now());
    }

    /// [`schedule`](Self::schedule) with the clock read already.
    fn schedule_at(&self, now: SystemTime) {
        if self.manual_clock.load(Ordering::Relaxed) {
            return;
        }
        let Some((deadline, _)) = self.activity.deadline() else {
            return;
        };
        let wait = Duration::from_nanos(deadline.saturating_sub(nanos(now)));
        let target: Weak<dyn TimeJump> = self.me.clone();
        crate::core::timer::schedule(target, wait);
    }
}

impl TimeJump for Shared {
    fn time_jumped(&self) {
        let now = self.now();
        self.check_expiry(now, Site::Safe);
        self.prepare_next();
        self.save_if_asked();
        self.flush();
    }
}

impl Shared {
    /// Notes telemetry the app session was stamped on, dated `at` by the SDK,
    /// as its activity. With the system clock a thread notes it at most once
    /// per [`Activity::GRANULARITY`] (the SDK's time compared, not converted,
    /// no clock read). `true` if it was noted (a passed limit may have ended
    /// the session: the caller reads the stamp again).
    ///
    /// [`Activity::GRANULARITY`]: crate::core::state::Activity::GRANULARITY
    #[inline]
    pub(crate) fn note_telemetry(&self, at: Option<SystemTime>) -> bool {
        if let Some(t) = at {
            if self.system_clock && !crate::core::state::due(self, t) {
                return false;
            }
        }
        self.touch(self.activity_time(at));
        true
    }

    /// The activity time of telemetry stamped `at` by the SDK: that time with the
    /// system clock (already read), else the manager's clock.
    #[inline]
    pub(crate) fn activity_time(&self, at: Option<SystemTime>) -> u64 {
        match at {
            Some(t) if self.system_clock => nanos(t),
            _ => nanos(self.now()),
        }
    }
}
