//! What the rules' effects become, described under the lock (so the outbox's
//! order is the order of the changes) and delivered after it: lifecycle spans
//! and log events, stability counts, observer notifications, kept ends and
//! saves.

use std::sync::Arc;
use std::time::SystemTime;

use opentelemetry::trace::{Event, SpanId};
use opentelemetry::{KeyValue, StringValue, Value};

use crate::core::callbacks::Notifications;
use crate::core::outbox::Item;
use crate::core::persist::PendingEnd;
use crate::core::rules::{Effect, Mark, Purpose, When};
use crate::core::session::SessionState;
use crate::core::telemetry::{CountEffect, LifecycleLog, LifecycleSpan};
use crate::model::attr;
use crate::model::id::{random_span_id, session_end_span_id};
use crate::model::session::{EndReason, SessionStatus, User};

use super::core::{Inner, RulesEffect};
use super::Shared;

thread_local! {
    /// This thread's crash was its session's first (or ended it): set while
    /// the crashing thread applies its own crash's effects, taken by its
    /// crash verb. Per thread, so that two threads panicking at once each
    /// learn about their own crash (a shared flag let one take the other's).
    static CRASH_COUNTED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn note_crash_counted() {
    let _ = CRASH_COUNTED.try_with(|c| c.set(true));
}

/// Whether this thread's last crash was its session's first or ended it
/// (and forgets it).
pub(super) fn take_crash_counted() -> bool {
    CRASH_COUNTED
        .try_with(|c| c.replace(false))
        .unwrap_or(false)
}

impl Shared {
    /// Describes `effects` (dated `at` where the rules said "now"); the build
    /// they ask for, if any.
    pub(super) fn apply(
        &self,
        st: &mut Inner,
        effects: Vec<RulesEffect>,
        at: SystemTime,
    ) -> Option<(Purpose, bool)> {
        let mut build = None;
        let mut save = false;
        for e in effects {
            match e {
                Effect::Build { purpose, again } => build = Some((purpose, again)),
                Effect::Started { session } => self.started(&session),
                Effect::Ended {
                    session,
                    reason,
                    at: when,
                    paused,
                    lost,
                } => {
                    if lost {
                        session.counts.raise_to(SessionStatus::Abnormal);
                    }
                    if reason == EndReason::Crash {
                        note_crash_counted();
                    }
                    if reason == EndReason::Hang {
                        // The dead run's hang report, before its end.
                        self.crash_report_for(&session);
                    }
                    let at = match when {
                        When::Now => at,
                        When::At(t) => t,
                    };
                    self.ended(&session, reason, at, paused, false);
                }
                Effect::Paused { session } => {
                    self.paused_or_resumed(&session, attr::EVENT_PAUSE, at)
                }
                Effect::Resumed { session } => {
                    self.paused_or_resumed(&session, attr::EVENT_RESUME, at);
                }
                Effect::Marked { session, mark } => {
                    let (name, attrs) = match mark {
                        Mark::Background => (attr::EVENT_BACKGROUND, Vec::new()),
                        Mark::Foreground => (attr::EVENT_FOREGROUND, Vec::new()),
                        Mark::User(user) => (
                            attr::EVENT_USER_CHANGE,
                            user.as_ref().map(User::attributes).unwrap_or_default(),
                        ),
                        Mark::Flag { key, variant } => flag_event(&key, variant),
                    };
                    session.push_event(name, at, attrs);
                }
                Effect::UserSet { session, user } => session.detail().user = user,
                Effect::Attributes {
                    session,
                    attributes,
                } => session.detail().attributes = attributes,
                Effect::Count { session, unhandled } => {
                    // A hang that ended is counted as a handled error, its
                    // report with it.
                    self.crash_report_for(&session);
                    if unhandled {
                        session.counts.count_unhandled();
                    } else {
                        session.counts.count_handled();
                    }
                }
                Effect::Crashed { session } => {
                    if session.counts.mark_panicked() {
                        note_crash_counted();
                    }
                    self.crash_report_for(&session);
                }
                Effect::Save => save = true,
            }
        }
        if save {
            self.persist(st);
        }
        build
    }

    /// A reported session started: its transition span and log event, the
    /// count, the observers.
    fn started(&self, s: &Arc<SessionState>) {
        let mut attributes = vec![s.id_attribute()];
        if let Some(prev) = &s.previous_id {
            attributes.push(KeyValue::new(
                attr::SESSION_PREVIOUS_ID,
                Value::String(StringValue::from(prev.shared())),
            ));
        }
        let _ = self.transition(s, attr::EVENT_START, s.started_at(), attributes, true);
        if let Some(counter) = &self.counter {
            self.outbox
                .push(Item::Count(CountEffect::Started, Arc::clone(counter)));
        }
        self.notify(Notifications {
            ended: None,
            started: Some(s.snapshot(false)),
        });
    }

    /// A reported session ended for `reason` at `at`: its counts close (one
    /// status snapshot for everything below), its end transition and log
    /// event, its summary span, the count, the observers, and (persistence)
    /// the end kept until a sink acknowledges it. An end sent again for an
    /// earlier run (`resend`) was counted and notified then.
    pub(super) fn ended(
        &self,
        s: &Arc<SessionState>,
        reason: EndReason,
        at: SystemTime,
        paused: bool,
        resend: bool,
    ) {
        let at = at.max(s.started_at());
        let (status, handled, unhandled) = s.counts.close();
        let end_attributes = vec![
            s.id_attribute(),
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
        let mut end_attributes = end_attributes;
        let (user, hangs, attributes) = {
            let detail = s.detail();
            (detail.user.clone(), detail.hangs, detail.attributes.clone())
        };
        if hangs > 0 {
            end_attributes.push(KeyValue::new(attr::HANGS, i64::from(hangs)));
        }
        // Its properties and feature flags: on the end event and the summary.
        end_attributes.extend(attributes.key_values());
        let attributes = attributes.clone();
        let log_seq = self.transition(s, attr::EVENT_END, at, end_attributes.clone(), true);
        let timeline = std::mem::take(&mut s.detail().timeline);
        let mut summary = end_attributes;
        if let Some(prev) = &s.previous_id {
            summary.push(KeyValue::new(
                attr::SESSION_PREVIOUS_ID,
                Value::String(StringValue::from(prev.shared())),
            ));
        }
        if let Some(user) = &user {
            summary.extend(user.attributes());
        }
        let (events, dropped) = timeline.into_events();
        if dropped > 0 {
            summary.push(KeyValue::new(attr::DROPPED_EVENTS, i64::from(dropped)));
        }
        let seq = self.outbox.push(Item::Span(LifecycleSpan {
            name: attr::SUMMARY_SPAN,
            trace_id: s.trace_id,
            span_id: s.root_span_id,
            parent_span_id: SpanId::INVALID,
            start: s.started_at(),
            end: at,
            attributes: summary,
            events,
        }));
        // Kept until a sink acknowledges it; with no signal exported at all,
        // nothing would, and nothing is lost by not keeping it.
        if self.store.is_some() && !(self.sinks.discard_spans && self.sinks.discard_logs) {
            let mut saved = self.saved_session(s, s.started_at(), at, paused);
            saved.status = status;
            saved.handled = handled;
            saved.unhandled = unhandled;
            let end = PendingEnd {
                session: saved,
                reason,
                ended_at: at,
            };
            if !self.ledger.keep(seq, log_seq, end) {
                crate::warn::once(
                    &self.warned_pending,
                    format_args!(
                        "more than {} session ends wait for a confirmed delivery (the collector \
                         is down?); the oldest are no longer kept for the next run (reported \
                         once)",
                        crate::core::persist::PENDING_ENDS_LIMIT
                    ),
                );
            }
        }
        if resend {
            return;
        }
        if let Some(counter) = &self.counter {
            self.outbox.push(Item::Count(
                CountEffect::Ended {
                    status,
                    started_at: s.started_at(),
                    ended_at: at,
                    split: self.split_of(&attributes),
                },
                Arc::clone(counter),
            ));
        }
        let mut snap = s.snapshot(paused);
        snap.status = status;
        snap.handled_errors = handled;
        snap.unhandled_errors = unhandled;
        self.notify(Notifications {
            ended: Some((snap, reason)),
            started: None,
        });
    }

    /// A pause or resume: the transition span alone (no log event).
    fn paused_or_resumed(&self, s: &SessionState, name: &'static str, at: SystemTime) {
        let _ = self.transition(s, name, at, vec![s.id_attribute()], false);
    }

    /// One zero-duration transition span (carrying the span event of its name)
    /// and, for start and end, the log event; the event goes on the session's
    /// timeline.
    fn transition(
        &self,
        s: &SessionState,
        name: &'static str,
        at: SystemTime,
        attributes: Vec<KeyValue>,
        log_event: bool,
    ) -> Option<u64> {
        let at = at.max(s.started_at());
        let span_id = if name == attr::EVENT_END {
            session_end_span_id(&s.id)
        } else {
            random_span_id()
        };
        let event = Event::new(name, at, Vec::new(), 0);
        s.detail().timeline.push(event.clone());
        let log_seq = log_event.then(|| {
            self.outbox.push(Item::Log(LifecycleLog::event(
                name,
                at,
                s.trace_id,
                span_id,
                attributes.clone(),
            )))
        });
        self.outbox.push(Item::Span(LifecycleSpan {
            name,
            trace_id: s.trace_id,
            span_id,
            parent_span_id: s.root_span_id,
            start: at,
            end: at,
            attributes,
            events: vec![event],
        }));
        log_seq
    }

    /// Queues observer notifications behind the lifecycle output of the same
    /// change.
    fn notify(&self, notes: Notifications) {
        let observers = self.observers.load_full();
        if !observers.is_empty() {
            self.outbox.push(Item::Notify(notes, observers));
        }
    }
}

/// The summary-span event of a feature flag set to `variant` (`None`:
/// cleared): `feature_flag.evaluation` with the conventions' names.
fn flag_event(key: &opentelemetry::Key, variant: Option<Value>) -> (&'static str, Vec<KeyValue>) {
    let name = key
        .as_str()
        .strip_prefix(crate::model::attributes::FEATURE_FLAG_PREFIX)
        .unwrap_or(key.as_str())
        .to_string();
    let mut attrs = vec![KeyValue::new(attr::FEATURE_FLAG_KEY, name)];
    match variant {
        Some(v) => {
            attrs.push(KeyValue::new(attr::FEATURE_FLAG_VARIANT, v));
            (attr::EVENT_FEATURE_FLAG, attrs)
        }
        None => (attr::EVENT_FEATURE_FLAG_CLEARED, attrs),
    }
}
