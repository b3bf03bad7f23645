//! The transitions themselves: a candidate prepared and committed, a session ended, and the lifecycle effects each produces (all under the state lock, no user code).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use opentelemetry::{KeyValue, StringValue, Value};

use crate::core::callbacks::{run_on_session, Notifications, SessionCandidate};
use crate::core::effects::{CountEffect, Effect, LogEffect, SpanEffect};
use crate::core::state::{nanos, Kind, SessionState};
use crate::model::attr;
use crate::model::id::{random_span_id, session_end_span_id};
use crate::model::session::{EndReason, Session, SessionMode};

use super::*;

impl Shared {
    /// Builds a candidate: its id and the `on_session` callbacks' verdict. No
    /// lock is held (both run user code).
    pub(crate) fn prepare(&self, kind: Kind) -> Prepared {
        let (previous_id, user, user_version) = {
            let st = self.lock();
            (st.last_reported.clone(), st.user.clone(), st.user_version)
        };
        let mut candidate = SessionCandidate {
            id: self.new_id(),
            previous_id: if kind == Kind::App { previous_id } else { None },
            started_at: self.now(),
            user,
            user_set: false,
            attributes: Vec::new(),
        };
        let callbacks = self.callbacks.load();
        let keep = callbacks.is_empty() || run_on_session(&callbacks, &mut candidate);
        Prepared {
            candidate,
            keep,
            user_version,
        }
    }

    /// Makes a prepared candidate the current app session (the caller ended the
    /// previous one, and calls [`schedule`](Self::schedule) once the lock is
    /// released). Returns its snapshot, and the same if it is reported.
    pub(super) fn commit(
        &self,
        st: &mut State,
        p: Prepared,
        at: SystemTime,
    ) -> (Session, Option<Session>) {
        let mut c = p.candidate;
        c.previous_id = st.last_reported.clone();
        if st.user_version != p.user_version && !c.user_set {
            c.user = st.user.clone();
        }
        c.started_at = at;
        let keep = p.keep;
        let session = Arc::new(SessionState::new(c, Kind::App, !keep));
        st.current = Some(Arc::clone(&session));
        st.paused = false;
        self.activity.arm(
            nanos(session.started_at),
            nanos(session.started_at),
            self.tracking.inactivity,
            self.tracking.max_duration,
        );
        let snap = session.snapshot(false);
        if keep {
            st.last_reported = Some(session.id.clone());
            self.emit_start(&session);
            if let Some(counter) = &self.counter {
                self.emit(Effect::Count(CountEffect::Started, Arc::clone(counter)));
            }
            self.set_stamp(Some(Arc::clone(&session)));
        } else {
            self.set_stamp(None);
        }
        // After the stamp: a thread that sees no restart pending sees the stamp.
        self.set_restart(st, false);
        st.suspended = false;
        self.persist(st);
        let started = keep.then(|| snap.clone());
        (snap, started)
    }

    fn emit_start(&self, s: &SessionState) {
        let mut attributes = vec![s.id_attribute()];
        if let Some(prev) = &s.previous_id {
            attributes.push(KeyValue::new(
                attr::SESSION_PREVIOUS_ID,
                Value::String(StringValue::from(prev.shared())),
            ));
        }
        self.transition(s, attr::EVENT_START, s.started_at, attributes, true);
    }

    /// A pause or resume: the transition span alone (no log event), carrying
    /// the session id.
    pub(super) fn pause_or_resume(&self, s: &SessionState, name: &'static str, at: SystemTime) {
        self.transition(s, name, at, vec![s.id_attribute()], false);
    }

    /// Emits one zero-duration transition span (carrying the span event of its
    /// name) and, for start and end, the log event; records the event on the
    /// session's timeline.
    pub(super) fn transition(
        &self,
        s: &SessionState,
        name: &'static str,
        at: SystemTime,
        attributes: Vec<KeyValue>,
        log_event: bool,
    ) {
        let at = at.max(s.started_at);
        let span_id = if name == attr::EVENT_END {
            session_end_span_id(&s.id)
        } else {
            random_span_id()
        };
        let event = opentelemetry::trace::Event::new(name, at, Vec::new(), 0);
        s.detail().timeline.push(event.clone());
        if log_event {
            self.emit(Effect::Log(LogEffect {
                name,
                at,
                trace_id: s.trace_id,
                span_id,
                attributes: attributes.clone(),
            }));
        }
        self.emit(Effect::Span(SpanEffect {
            name,
            trace_id: s.trace_id,
            span_id,
            parent_span_id: s.root_span_id,
            start: at,
            end: at,
            attributes,
            events: vec![event],
        }));
    }

    /// Ends the current session under the lock, dated `at`; the notifications.
    pub(super) fn end_locked(
        &self,
        st: &mut State,
        reason: EndReason,
        when: When,
    ) -> Notifications {
        let Some(session) = st.current.take() else {
            return Notifications::default();
        };
        let was_paused = std::mem::replace(&mut st.paused, false);
        // The stamp first, then the limits: a thread that finds the limits gone
        // reads the stamp again and sees this end.
        self.set_stamp(None);
        self.activity.disarm();
        if session.discarded {
            return Notifications::default();
        }
        let at = self.resolve(when).max(session.started_at);
        // The counts close here: one status snapshot for the end event, the
        // summary, the metric and the observers, and no error counted later.
        let (status, handled, unhandled) = session.close();
        let end_attributes = vec![
            session.id_attribute(),
            KeyValue::new(attr::STATUS, status.as_str()),
            KeyValue::new(attr::END_REASON, reason.as_str()),
            KeyValue::new(
                attr::ERRORS_HANDLED,
                i64::try_from(handled).unwrap_or(i64::MAX),
            ),
            KeyValue::new(
                attr::ERRORS_UNHANDLED,
                i64::try_from(unhandled).unwrap_or(i64::MAX),
            ),
        ];
        self.transition(&session, attr::EVENT_END, at, end_attributes.clone(), true);
        let (user, timeline) = {
            let mut detail = session.detail();
            (detail.user.clone(), std::mem::take(&mut detail.timeline))
        };
        let mut summary = end_attributes;
        if let Some(prev) = &session.previous_id {
            summary.push(KeyValue::new(
                attr::SESSION_PREVIOUS_ID,
                Value::String(StringValue::from(prev.shared())),
            ));
        }
        if let Some(user) = &user {
            summary.extend(user.attributes());
        }
        summary.extend(session.attributes.iter().cloned());
        let (events, dropped) = timeline.into_events();
        if dropped > 0 {
            summary.push(KeyValue::new(attr::DROPPED_EVENTS, i64::from(dropped)));
        }
        self.emit(Effect::Span(SpanEffect {
            name: attr::SUMMARY_SPAN,
            trace_id: session.trace_id,
            span_id: session.root_span_id,
            parent_span_id: opentelemetry::trace::SpanId::INVALID,
            start: session.started_at,
            end: at,
            attributes: summary,
            events,
        }));
        // An end sent again for the last run (persistence) was counted then.
        if let Some(counter) = self.counter.as_ref().filter(|_| !st.resending) {
            self.emit(Effect::Count(
                CountEffect::Ended {
                    status,
                    started_at: session.started_at,
                    ended_at: at,
                },
                Arc::clone(counter),
            ));
        }
        self.keep_pending(st, &session, reason, at, (status, handled, unhandled));
        self.persist(st);
        let mut snap = session.snapshot(was_paused);
        snap.status = status;
        snap.handled_errors = handled;
        snap.unhandled_errors = unhandled;
        Notifications {
            ended: Some((snap, reason)),
            started: None,
        }
    }

    /// The time of a transition (see [`When`]); call after the stamp changed.
    pub(super) fn resolve(&self, when: When) -> SystemTime {
        match when {
            When::At(t) => t,
            When::Now(_) if self.system_clock => opentelemetry::time::now(),
            When::Now(t) => t,
        }
    }

    /// Queues observer notifications behind the lifecycle output of the same
    /// change (call under the state lock).
    pub(super) fn notify(&self, notes: Notifications) {
        if notes.ended.is_some() || notes.started.is_some() {
            let observers = self.observers.load_full();
            if !observers.is_empty() {
                self.emit(Effect::Notify(notes, observers));
            }
        }
    }

    /// Ends the current session (reason `reason`).
    pub(crate) fn end(&self, reason: EndReason, when: When) {
        // A session past its limits ends for them, dated at its last activity.
        if let When::Now(now) = when {
            self.check_expiry(now, Site::Safe);
        }
        {
            let mut st = self.lock();
            let notes = self.end_locked(&mut st, reason, when);
            self.set_restart(&mut st, false);
            self.notify(notes);
        }
        self.flush();
    }

    /// Starts a new app session, ending the current one (reason `replaced`).
    pub(crate) fn start(&self) -> Session {
        let prepared = self.prepare(Kind::App);
        let at = self.now();
        self.check_expiry(at, Site::Safe);
        let snap = {
            let mut st = self.lock();
            let mut notes = self.end_locked(&mut st, EndReason::Replaced, When::Now(at));
            // The new session starts no earlier than the old one ended.
            let at = self.resolve(When::Now(at));
            let (snap, started) = self.commit(&mut st, prepared, at);
            notes.started = started;
            self.notify(notes);
            snap
        };
        self.schedule();
        self.flush();
        snap
    }

    /// Ends the current session for a shutdown and waits (up to `limit`) until its
    /// end is handed to the exporting processors.
    pub(crate) fn end_for_shutdown(&self, limit: Duration) {
        // An expired session ends for its timeout; what that queues is
        // delivered below, within `limit`.
        self.check_expiry(self.now(), Site::Shutdown);
        if self.suspend_for_shutdown(limit) {
            return;
        }
        let now = self.now();
        let seq = {
            let mut st = self.lock();
            let notes = self.end_locked(&mut st, EndReason::Shutdown, When::Now(now));
            self.set_restart(&mut st, false);
            self.notify(notes);
            self.outbox.last_queued()
        };
        self.outbox.flush_through(seq, &self.sinks, limit);
    }

    /// Ends the current session for a crash (reason `crash`) from a panic hook:
    /// never waits for our lock (if it is taken, the session is left to the
    /// shutdown or the next start). Its end is queued; the caller delivers it.
    /// `true` if it ended one.
    pub(crate) fn end_for_crash(&self) -> bool {
        let now = self.now();
        let Ok(mut st) = self.state_try_lock() else {
            return false;
        };
        if st.current.is_none() {
            return false;
        }
        let notes = self.end_locked(&mut st, EndReason::Crash, When::Now(now));
        // A panic the app catches (a GUI event loop, a test) leaves the program
        // running: in app mode its next activity starts a session.
        let restart = self.tracking.mode == SessionMode::App;
        self.set_restart(&mut st, restart);
        self.notify(notes);
        true
    }

    /// The session a panic on this thread belongs to (outside a request): the
    /// one telemetry is stamped with, else the current one (paused), if our lock
    /// is free.
    pub(crate) fn current_for_panic(&self) -> Option<Arc<SessionState>> {
        self.stamp
            .load_full()
            .or_else(|| self.state_try_lock().ok().and_then(|st| st.current.clone()))
    }
}
