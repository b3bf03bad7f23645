//! Ordered delivery of every [`Item`] — lifecycle spans and log events for the
//! sinks, metric counts, notifications for the observers — *outside* the
//! manager's lock.
//!
//! Effects are queued while the state lock is held, so the queue's order is the
//! order of the state changes; each gets a sequence number. One thread delivers
//! at a time, in order. A verb returns only once its own effects were handed over
//! (so `end_session(); provider.force_flush()` always contains the end), whoever
//! delivers them: it delivers them itself, or waits (bounded) for the thread that
//! is delivering. A sink or observer that calls a verb while it is being
//! delivered to does not wait (that would wait on itself): its effects go out
//! right after it returns. User code never runs under the state lock.
//!
//! The queue is bounded ([`OUTBOX_LIMIT`]); if delivery is stuck long enough to
//! fill it, the oldest effects are dropped with a warning. A panicking sink or
//! observer is caught and reported once; delivery goes on.

use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use std::sync::Arc;

use crate::core::callbacks::{catching, notify, Notifications, RegisteredObserver};
use crate::core::persist::{Saved, Store};
use crate::core::sinks::{SinkRef, Sinks};
use crate::core::telemetry::{CountEffect, LifecycleLog, LifecycleSpan, SessionCounter};

/// One thing to deliver, in the order of the changes that produced it.
pub(crate) enum Item {
    Span(LifecycleSpan),
    Log(LifecycleLog),
    Count(CountEffect, Arc<dyn SessionCounter>),
    Notify(Notifications, Arc<Vec<RegisteredObserver>>),
    /// A sink connects: what was held for want of one goes to it first.
    Connect(SinkRef),
    /// The persisted state changes.
    Persist(Saved, Arc<dyn Store>),
}

/// Effects queued at most; beyond, the oldest are dropped (with a warning).
pub(crate) const OUTBOX_LIMIT: usize = 8192;

/// How long a verb waits for another thread to deliver its effects.
pub(crate) const VERB_WAIT: Duration = Duration::from_secs(5);

thread_local! {
    /// The outbox this thread delivers effects of (its address), or 0.
    static DELIVERING: Cell<usize> = const { Cell::new(0) };
}

#[derive(Default)]
struct Queue {
    items: VecDeque<(u64, Item)>,
    /// The sequence number the next effect gets (starts at 1).
    next: u64,
    /// A thread is delivering.
    busy: bool,
}

/// A manager's outbox.
pub(crate) struct Outbox {
    queue: Mutex<Queue>,
    /// Every effect up to this sequence number was delivered (or dropped).
    done: AtomicU64,
    /// The sequence number of the last effect queued.
    queued: AtomicU64,
    progressed: Condvar,
    warned_panic: AtomicBool,
    warned_full: AtomicBool,
    warned_slow: AtomicBool,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("done", &self.done.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Default for Outbox {
    fn default() -> Self {
        Outbox {
            queue: Mutex::new(Queue {
                next: 1,
                ..Queue::default()
            }),
            done: AtomicU64::new(0),
            queued: AtomicU64::new(0),
            progressed: Condvar::new(),
            warned_panic: AtomicBool::new(false),
            warned_full: AtomicBool::new(false),
            warned_slow: AtomicBool::new(false),
        }
    }
}

impl Outbox {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues an effect (call it under the state lock, so order = state order);
    /// returns its sequence number.
    pub(crate) fn push(&self, effect: Item) -> u64 {
        let mut q = self.queue();
        if q.items.len() >= OUTBOX_LIMIT {
            if let Some((seq, _)) = q.items.pop_front() {
                self.done.fetch_max(seq, Ordering::Release);
            }
            crate::warn::once(
                &self.warned_full,
                format_args!(
                    "session lifecycle delivery is stuck (a span or log processor, or an \
                     observer, does not return); {OUTBOX_LIMIT} items wait and the oldest are \
                     being dropped"
                ),
            );
        }
        let seq = q.next;
        q.next += 1;
        q.items.push_back((seq, effect));
        self.queued.store(seq, Ordering::Release);
        seq
    }

    /// The sequence number of the last effect queued so far.
    pub(crate) fn last_queued(&self) -> u64 {
        self.queued.load(Ordering::Acquire)
    }

    /// Something queued is not delivered yet.
    pub(crate) fn pending(&self) -> bool {
        self.done.load(Ordering::Acquire) < self.last_queued()
    }

    /// Delivers until everything up to `seq` is out, waiting up to `limit` for
    /// another thread that is delivering. `false` if that did not happen in time.
    pub(crate) fn flush_through(&self, seq: u64, sinks: &Sinks, limit: Duration) -> bool {
        if self.done.load(Ordering::Acquire) >= seq {
            return true;
        }
        if DELIVERING.with(Cell::get) != 0 {
            // A sink or observer called a verb: its effects go out after it returns.
            return false;
        }
        let deadline = crate::model::clock::deadline_in(limit);
        let mut q = self.queue();
        loop {
            if self.done.load(Ordering::Acquire) >= seq {
                return true;
            }
            if !q.busy {
                q.busy = true;
                drop(q);
                self.deliver_all(sinks);
                q = self.queue();
                continue;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                crate::warn::once(
                    &self.warned_slow,
                    format_args!(
                        "session lifecycle telemetry was not handed to the exporting \
                         processors within {limit:?}: a span or log processor, or an \
                         observer, is slow; it will be delivered when it returns"
                    ),
                );
                return false;
            }
            q = self
                .progressed
                .wait_timeout(q, left)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
    }

    /// Called with `busy` set by this thread: delivers until the queue is empty,
    /// then clears `busy` (under the queue lock, so nothing is left behind).
    fn deliver_all(&self, sinks: &Sinks) {
        DELIVERING.with(|d| d.set(self.address()));
        let mut q = self.queue();
        loop {
            let Some((seq, effect)) = q.items.pop_front() else {
                q.busy = false;
                drop(q);
                self.progressed.notify_all();
                break;
            };
            drop(q);
            self.deliver(seq, effect, sinks);
            q = self.queue();
            // Under the queue lock: a waiter checks `done` holding it.
            self.done.fetch_max(seq, Ordering::Release);
            self.progressed.notify_all();
        }
        DELIVERING.with(|d| d.set(0));
    }

    fn address(&self) -> usize {
        self as *const Self as usize
    }

    /// For the panic hook of a build whose panics abort, on a thread that is
    /// delivering this outbox (an observer or a sink panicked): that delivery
    /// never finishes (the process goes down once the hook returns), so it
    /// gives delivery up and another thread can deliver the crash.
    ///
    /// The panic hook waits for no lock: the queue's is only ever held for a
    /// push or a pop, so it is tried a bounded number of times (if it stays
    /// taken, the crash flush waits for delivery as it would have).
    pub(crate) fn give_up_delivery_here(&self) {
        if DELIVERING.try_with(Cell::get).unwrap_or(0) != self.address() {
            return;
        }
        for _ in 0..10_000 {
            let mut queue = match self.queue.try_lock() {
                Ok(q) => q,
                Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => {
                    std::thread::yield_now();
                    continue;
                }
            };
            let _ = DELIVERING.try_with(|d| d.set(0));
            queue.busy = false;
            drop(queue);
            self.progressed.notify_all();
            return;
        }
    }

    fn deliver(&self, seq: u64, item: Item, sinks: &Sinks) {
        let result = catching(|| match item {
            Item::Span(span) => sinks.deliver_span(seq, span),
            Item::Log(log) => sinks.deliver_log(seq, log),
            Item::Count(count, counter) => count.apply(&*counter),
            Item::Notify(notes, observers) => notify(&observers, notes),
            Item::Connect(sink) => sinks.connect(sink),
            Item::Persist(saved, store) => store.save(&saved),
        });
        if result.is_err() {
            crate::warn::once(
                &self.warned_panic,
                format_args!(
                    "a span or log processor panicked while receiving session lifecycle \
                     telemetry; that item was dropped (reported once)"
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;
    use std::time::SystemTime;

    use super::*;
    use crate::core::telemetry::{CountEffect, SessionCounter};
    use crate::model::session::SessionStatus;

    #[derive(Debug, Default)]
    struct Counting(AtomicUsize);
    impl SessionCounter for Counting {
        fn started(&self) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
        fn ended(
            &self,
            _: SessionStatus,
            _: SystemTime,
            _: SystemTime,
            _: Option<opentelemetry::KeyValue>,
        ) {
        }
    }

    #[test]
    fn a_full_outbox_drops_the_oldest_and_keeps_the_rest_in_order() {
        let outbox = Outbox::default();
        let sinks = Sinks::default();
        let counter = Arc::new(Counting::default());
        let mut last = 0;
        for _ in 0..OUTBOX_LIMIT + 10 {
            last = outbox.push(Item::Count(CountEffect::Started, counter.clone()));
        }
        assert_eq!(outbox.queue().items.len(), OUTBOX_LIMIT);
        assert_eq!(outbox.queue().items.front().map(|(s, _)| *s), Some(11));
        assert!(outbox.flush_through(last, &sinks, Duration::from_secs(1)));
        assert_eq!(counter.0.load(Ordering::Relaxed), OUTBOX_LIMIT);
        assert!(outbox.warned_full.load(Ordering::Relaxed));
    }
}
