//! Pause, resume, the user, foreground/background, reading the session and counting errors on it.

use std::sync::Arc;

use crate::core::state::{from_nanos, nanos, SessionState};
use crate::model::attr;
use crate::model::session::{EndReason, Session, SessionMode, User};

use super::*;

impl Shared {
    /// Pauses the current session.
    pub(crate) fn pause(&self) {
        let now = self.now();
        self.check_expiry(now, Site::Safe);
        {
            let mut st = self.lock();
            let Some(session) = st.current.clone() else {
                return;
            };
            self.activity.note(nanos(now));
            if st.paused {
                return;
            }
            st.paused = true;
            self.set_stamp(None);
            let now = self.resolve(When::Now(now));
            if !session.discarded {
                self.pause_or_resume(&session, attr::EVENT_PAUSE, now);
            }
        }
        self.flush();
    }

    /// Resumes a paused session (`true`), or starts one when there is none
    /// (`false`); `false` and no change when the current one is not paused.
    pub(crate) fn resume(&self) -> bool {
        let now = self.now();
        self.check_expiry(now, Site::Safe);
        let resumed = {
            let mut st = self.lock();
            match st.current.clone() {
                Some(session) => {
                    self.activity.note(nanos(now));
                    if st.paused {
                        st.paused = false;
                        if !session.discarded {
                            self.pause_or_resume(&session, attr::EVENT_RESUME, now);
                            self.set_stamp(Some(session));
                        }
                        Some(true)
                    } else {
                        Some(false)
                    }
                }
                None => None,
            }
        };
        match resumed {
            Some(r) => {
                self.flush();
                r
            }
            None => {
                self.ensure();
                false
            }
        }
    }

    /// Sets the user of the current and later sessions.
    pub(crate) fn set_user(&self, user: Option<User>) {
        self.set_user_locked(user);
        // The change is saved (with persistence) before the verb returns.
        self.flush();
    }

    fn set_user_locked(&self, user: Option<User>) {
        let now = self.now();
        self.check_expiry(now, Site::Safe);
        let mut st = self.lock();
        st.user = user.clone();
        st.user_version += 1;
        if let Some(session) = st.current.clone() {
            self.activity.note(nanos(now));
            let changed = session.detail().user != user;
            if changed {
                let attrs = user.as_ref().map(User::attributes).unwrap_or_default();
                session.push_event(attr::EVENT_USER_CHANGE, now, attrs);
                session.detail().user = user;
            }
            self.persist(&st);
        }
    }

    /// The app went to the background: noted (and on the summary's timeline);
    /// the session goes on, not paused.
    pub(crate) fn background(&self) {
        let now = self.now();
        self.check_expiry(now, Site::Safe);
        let mut st = self.lock();
        if st.background_since.is_some() {
            return;
        }
        st.background_since = Some(now);
        if let Some(session) = st.current.clone() {
            self.activity.note(nanos(now));
            session.push_event(attr::EVENT_BACKGROUND, now, Vec::new());
        }
    }

    /// The app came back: after at least the background timeout away, the session
    /// ends (reason `background`, dated at its last activity); in app mode a
    /// session is then current (a new one, or the one that went on).
    pub(crate) fn foreground(&self) {
        let now = self.now();
        self.check_expiry(now, Site::Safe);
        {
            let mut st = self.lock();
            let since = st.background_since.take();
            let away_long = since.is_some_and(|b| {
                now.duration_since(b).unwrap_or_default() >= self.tracking.background_timeout
            });
            if let Some(session) = st.current.clone() {
                if away_long {
                    let last = from_nanos(self.activity.last());
                    let notes = self.end_locked(&mut st, EndReason::Background, When::At(last));
                    self.set_restart(&mut st, false);
                    self.notify(notes);
                } else {
                    self.activity.note(nanos(now));
                    if since.is_some() {
                        session.push_event(attr::EVENT_FOREGROUND, now, Vec::new());
                    }
                }
            }
        }
        self.flush();
        if self.tracking.mode == SessionMode::App {
            self.ensure();
        }
    }

    /// A snapshot of the current session.
    pub(crate) fn current(&self) -> Option<Session> {
        let now = self.now();
        self.check_expiry(now, Site::Safe);
        let st = self.lock();
        st.current.as_ref().map(|s| s.snapshot(st.paused))
    }

    /// Counts an error toward the app session telemetry is stamped with now: if
    /// it ends meanwhile (its counts closed), toward the one after, if any; a
    /// counted error is the session's activity. One clock read serves the
    /// expiry check and the activity.
    pub(crate) fn count_error(&self, count: impl Fn(&SessionState) -> bool) {
        let now = self.now();
        // A session past its limits (the timer did not fire yet) ends first.
        self.check_expiry(now, Site::Safe);
        loop {
            let Some(session) = self.stamp.load_full() else {
                return;
            };
            if count(&session) {
                break;
            }
            let stamped = self.stamp.load();
            if stamped.as_ref().is_some_and(|s| Arc::ptr_eq(s, &session)) {
                // Closed yet still stamped: an end is under way; not ours.
                return;
            }
        }
        if self.lock().current.is_some() {
            self.activity.note(nanos(now));
            self.save_soon(nanos(now));
        }
    }
}
