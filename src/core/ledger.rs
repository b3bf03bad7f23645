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
//! acknowledged then). A flush that failed, or a provider shut down without
//! one, acknowledges nothing.

use std::sync::{Mutex, MutexGuard};

use crate::core::persist::{PendingEnd, PENDING_ENDS_LIMIT};

/// An acknowledgement from a sink.
#[derive(Debug)]
pub(crate) enum Ack<'a> {
    /// Everything up to this sequence number was exported.
    Through(u64),
    /// The ends of the sessions with these ids were exported.
    Sessions(&'a [String]),
}

#[derive(Debug)]
struct Kept {
    /// The sequence number of its summary span.
    seq: u64,
    end: PendingEnd,
}

/// Ends not yet acknowledged.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    kept: Mutex<Vec<Kept>>,
}

impl Ledger {
    fn kept(&self) -> MutexGuard<'_, Vec<Kept>> {
        self.kept.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps `end`, whose summary span has sequence number `seq`. `false` if
    /// the oldest had to go to make room ([`PENDING_ENDS_LIMIT`]).
    pub(crate) fn keep(&self, seq: u64, end: PendingEnd) -> bool {
        let mut kept = self.kept();
        let room = kept.len() < PENDING_ENDS_LIMIT;
        if !room {
            kept.remove(0);
        }
        kept.push(Kept { seq, end });
        room
    }

    /// Forgets what `ack` confirms; `true` if anything was forgotten.
    pub(crate) fn ack(&self, ack: Ack<'_>) -> bool {
        let mut kept = self.kept();
        let before = kept.len();
        match ack {
            Ack::Through(seq) => kept.retain(|k| k.seq > seq),
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
