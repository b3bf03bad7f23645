//! Persistence in the driver: what is saved when, the restore at build, the
//! sinks' acknowledgements (the ledger), and the shutdown.
//!
//! Saves are outbox items (the store does I/O: never under the lock, never on
//! the span path). A change the rules mark saves at once; activity and error
//! counts ask the timer thread for a save at most every [`SAVE_EVERY`].

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use opentelemetry_sdk::error::OTelSdkResult;

use crate::core::ledger::Ack;
use crate::core::outbox::Item;
use crate::core::persist::{Saved, SavedSession, SavedState};
use crate::core::rules::{Event, Live, Phase, Restored};
use crate::core::session::{from_nanos, SessionState};
use crate::core::sinks::{SinkKind, SinkRef};
use crate::model::attributes::{Attributes, Kind};
use crate::model::session::SessionMode;

use super::core::Inner;
use super::{Shared, Site};

/// The permanent attributes of `a` (what is saved for later sessions).
fn permanent(a: &Attributes) -> Attributes {
    a.only(|k| k == Kind::Permanent)
}

/// Activity is saved at most this often (the last activity of a session whose
/// process dies is known to within this).
pub(crate) const SAVE_EVERY: Duration = Duration::from_secs(5);

impl Shared {
    /// A session as saved.
    pub(super) fn saved_session(
        &self,
        s: &SessionState,
        started_at: SystemTime,
        last_activity: SystemTime,
        paused: bool,
    ) -> SavedSession {
        let (handled, unhandled) = s.counts.counts();
        let (user, hangs, attributes) = {
            let detail = s.detail();
            (detail.user.clone(), detail.hangs, detail.attributes.clone())
        };
        SavedSession {
            id: s.id.clone(),
            previous_id: s.previous_id.clone(),
            started_at,
            last_activity: last_activity.max(started_at),
            handled,
            unhandled,
            status: s.counts.status_with(handled, unhandled),
            state: SavedState::Active,
            paused,
            panicked: s.counts.panicked(),
            hangs,
            user,
            attributes,
        }
    }

    /// Queues a save of the state (call under the lock).
    pub(super) fn persist(&self, st: &Inner) {
        let Some(store) = &self.store else { return };
        let (live, state) = match &st.rules.phase {
            Phase::Live(l) => (Some(l), SavedState::Active),
            Phase::Suspended(l) => (Some(l), SavedState::Suspended),
            Phase::Idle | Phase::Due | Phase::Crashed { .. } => (None, SavedState::Active),
        };
        let activity = self.core.activity.last();
        let session = live.filter(|l| !l.session.discarded).map(|l| {
            let last = l.last_activity.max(from_nanos(activity));
            let mut saved = self.saved_session(&l.session, l.started_at, last, l.paused);
            saved.state = state;
            saved
        });
        let running = match &st.rules.phase {
            Phase::Live(l) if !l.session.discarded => Some(l.session.id.clone()),
            // A fatal panic ended it: the abort that follows is its.
            Phase::Crashed { .. } => st.rules.last_reported.clone(),
            _ => None,
        };
        let saved = Saved {
            session,
            last_reported: st.rules.last_reported.clone(),
            pending_ends: self.ledger.pending(),
            permanent: permanent(&st.rules.next),
            running,
        };
        self.mark_saved(activity);
        self.outbox.push(Item::Persist(saved, Arc::clone(store)));
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
            let st = self.core.lock();
            self.persist(&st);
        }
    }

    /// A sink acknowledged delivery (see `ledger`): the ends it confirms leave
    /// the session file — saved before this returns, or (`now` false: on an
    /// export thread) by the timer thread right after.
    pub(crate) fn ack(&self, ack: Ack<'_>, now: bool) {
        if self.store.is_none() || !self.ledger.ack(ack) {
            return;
        }
        {
            let st = self.core.lock();
            self.persist(&st);
        }
        if now {
            self.flush();
        } else {
            self.deliver_soon();
        }
    }

    /// Flushes one sink; on success it acknowledges everything it had been
    /// handed before the flush began.
    pub(crate) fn flush_sink(&self, sink: &SinkRef) -> OTelSdkResult {
        let through = sink.handed();
        let result = sink.force_flush();
        let ack = match sink.kind {
            SinkKind::Span(_) => Some(Ack::Through(through)),
            // The `session.end` event is the end where no span sink exports
            // the summary.
            SinkKind::Log(_) if self.sinks.discard_spans || !self.sinks.spans_connected() => {
                Some(Ack::LogsThrough(through))
            }
            SinkKind::Log(_) => None,
        };
        if let (Ok(()), Some(ack)) = (&result, ack) {
            self.ack(ack, true);
        }
        // An exporter that acknowledged during the flush (on its export
        // thread) left the save queued for the timer thread: deliver it now,
        // before a process that exits after its shutdown goes.
        self.flush();
        result
    }

    /// An exporter saw the `session` summaries of sessions `ended` (ids, see
    /// `ledger::summary_ids`) accepted: their kept ends leave the file.
    pub(crate) fn exported_ends(&self, ended: &[String]) {
        if self.store.is_some() && !ended.is_empty() {
            self.ack(Ack::Sessions(ended), false);
        }
    }

    /// Flushes every connected sink (a crash), each acknowledging what it
    /// delivered.
    pub(crate) fn flush_all_sinks(&self) {
        for sink in self.sinks.connected() {
            let _ = self.flush_sink(&sink);
        }
    }

    /// At build, with persistence: sends again the ends the last run kept (no
    /// sink acknowledged them), then lets the rules continue or end its
    /// session (rule 8).
    pub(crate) fn restore(&self) {
        let Some(store) = &self.store else { return };
        if self.tracking.mode == SessionMode::Request {
            return;
        }
        let died = store.take_died();
        let (reason, report) = match died {
            Some(d) => (Some(d.reason), Some(d.report)),
            None => (None, None),
        };
        // The dead run's report goes with its session's end (or alone, if
        // that session was not running).
        self.with_report(report, || {
            let Some(saved) = store.load() else { return };
            {
                let mut st = self.core.lock();
                // Same span ids, not counted or notified again (that run did),
                // kept again until acknowledged.
                for p in &saved.pending_ends {
                    let session = Arc::new(SessionState::restored(&p.session));
                    self.ended(&session, p.reason, p.ended_at, false, true);
                }
                st.rules.last_reported = saved.last_reported.clone();
                // Later sessions carry the permanent attributes (feature
                // flags are set again by each process).
                st.rules.next = st.rules.next.merged(&permanent(&saved.permanent));
                if saved.session.is_none() {
                    self.persist(&st);
                }
            }
            if let Some(s) = &saved.session {
                let live = Live {
                    session: Arc::new(SessionState::restored(s)),
                    started_at: s.started_at,
                    last_activity: s.last_activity,
                    paused: s.paused,
                    user: s.user.clone(),
                    attributes: s.attributes.clone(),
                };
                let suspended = s.state == SavedState::Suspended;
                let died = if suspended { None } else { reason };
                self.drive(
                    Event::Restore(Restored {
                        live,
                        suspended,
                        died,
                    }),
                    Site::Safe,
                );
            }
        });
        self.flush();
    }

    /// Ends (or, with persistence, suspends) the current session for a shutdown
    /// and waits, up to `limit`, until that is handed to the exporting
    /// processors and saved.
    pub(crate) fn end_for_shutdown(&self, limit: Duration) {
        self.drive(Event::Shutdown, Site::Shutdown);
        let seq = self.outbox.last_queued();
        self.outbox.flush_through(seq, &self.sinks, limit);
    }
}
