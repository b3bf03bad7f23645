//! The delivery ledger: session ends kept (with persistence) until a sink
//! acknowledges that it exported them.
//!
//! Every lifecycle item the outbox hands to a sink has a sequence number; each
//! span sink records the last one it was handed. A sink acknowledges in one of
//! two ways, both landing here:
//! - a **flush** that succeeded (the wrapper's `force_flush`, its shutdown, the
//!   crash flush) acknowledges everything that sink had been handed before the
//!   flush began ([`Ack::Through`]);
//! - an **exporter** that sees what it exported (the pipeline `init()` builds)
//!   acknowledges the ends whose `session` summary spans were in a batch the
//!   collector accepted ([`Ack::Sessions`]).
//!
//! A kept end leaves the session file once acknowledged; one no sink
//! acknowledged is sent again by the next start (and kept again until
//! acknowledged then). A flush that failed acknowledges nothing.
//!
//! **Exporters first.** A flush's `Ok` is only what the SDK's processors
//! report: `SimpleSpanProcessor` flushes `Ok` after a failed export, and
//! `BatchSpanProcessor` reports only its last batch (an earlier timed export
//! that failed is forgotten). So once an exporter that acknowledges is in a
//! pipeline ([`Ledger::acknowledged_by_export`]: `init()`'s, or
//! `SessionManager::span_exporter` around yours) flushes acknowledge nothing:
//! only what an exporter saw accepted leaves the file. Without one, a
//! successful flush is the best evidence there is.
//!
//! Which sinks carry ends: span sinks (the `session` summary); log sinks when
//! no span sink exports them (spans off, or only a log pipeline wrapped: the
//! `session.end` event is then the end).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use opentelemetry_sdk::trace::SpanData;

use crate::core::persist::{PendingEnd, PENDING_ENDS_LIMIT};
use crate::model::attr;

/// An acknowledgement from a sink.
#[derive(Debug)]
pub(crate) enum Ack<'a> {
    /// Everything up to this sequence number was exported (a span sink).
    Through(u64),
    /// The log events up to this sequence number were exported (a log sink
    /// where no span sink exports the summaries).
    LogsThrough(u64),
    /// The ends of the sessions with these ids were exported.
    Sessions(&'a [String]),
}

#[derive(Debug)]
struct Kept {
    /// The sequence number of its summary span.
    seq: u64,
    /// The sequence number of its `session.end` log event.
    log_seq: Option<u64>,
    end: PendingEnd,
}

/// Ends not yet acknowledged.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    kept: Mutex<Vec<Kept>>,
    /// An exporter acknowledges what it exported: flushes do not.
    by_export: AtomicBool,
}

impl Ledger {
    fn kept(&self) -> MutexGuard<'_, Vec<Kept>> {
        self.kept.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps `end`, whose summary span has sequence number `seq` (and its log
    /// event `log_seq`). `false` if the oldest had to go to make room
    /// ([`PENDING_ENDS_LIMIT`]).
    pub(crate) fn keep(&self, seq: u64, log_seq: Option<u64>, end: PendingEnd) -> bool {
        let mut kept = self.kept();
        let room = kept.len() < PENDING_ENDS_LIMIT;
        if !room {
            kept.remove(0);
        }
        kept.push(Kept { seq, log_seq, end });
        room
    }

    /// From now on an exporter acknowledges the ends it exported, and
    /// flushes ([`Ack::Through`]) acknowledge nothing.
    pub(crate) fn acknowledged_by_export(&self) {
        self.by_export.store(true, Ordering::Release);
    }

    /// Forgets what `ack` confirms; `true` if anything was forgotten.
    pub(crate) fn ack(&self, ack: Ack<'_>) -> bool {
        if matches!(ack, Ack::Through(_) | Ack::LogsThrough(_))
            && self.by_export.load(Ordering::Acquire)
        {
            return false;
        }
        let mut kept = self.kept();
        let before = kept.len();
        match ack {
            Ack::Through(seq) => kept.retain(|k| k.seq > seq),
            Ack::LogsThrough(seq) => kept.retain(|k| k.log_seq.is_none_or(|l| l > seq)),
            Ack::Sessions(ids) => {
                kept.retain(|k| !ids.iter().any(|id| k.end.session.id.as_str() == id));
            }
        }
        kept.len() != before
    }

    /// The ends still kept, oldest first.
    pub(crate) fn pending(&self) -> Vec<PendingEnd> {
        self.kept().iter().map(|k| k.end.clone()).collect()
    }
}

/// The session ids of the `session` summary spans in `spans` (none for a batch
/// of application spans: one name comparison each).
pub(crate) fn summary_ids(spans: &[SpanData]) -> Vec<String> {
    spans
        .iter()
        .filter(|s| {
            s.name == attr::SUMMARY_SPAN && s.instrumentation_scope.name() == attr::SCOPE_NAME
        })
        .filter_map(|s| {
            s.attributes
                .iter()
                .find(|kv| kv.key.as_str() == attr::SESSION_ID)
                .map(|kv| kv.value.as_str().into_owned())
        })
        .collect()
}
