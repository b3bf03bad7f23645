//! Ordered delivery of everything a state change produces — lifecycle spans and
//! log events for the sinks, notifications for the observers — *outside* the
//! manager's lock.
//!
//! Items are queued while the state lock is held, so the queue's order is the
//! order of the state changes. After releasing the lock, the caller drains the
//! queue; one thread drains at a time (a thread that finds a drain under way, or
//! a sink or observer that calls back into the manager, only queues), so delivery
//! keeps that order and user code never runs under our lock: a sink or observer
//! may call any session verb without deadlocking. A panicking sink or observer is
//! caught and reported once; delivery goes on.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use opentelemetry::InstrumentationScope;
use opentelemetry_sdk::logs::{LogProcessor, SdkLogRecord};
use opentelemetry_sdk::trace::{SpanData, SpanProcessor};

use crate::core::callbacks::{notify, Notifications, RegisteredObserver};

/// One thing to deliver.
pub(crate) enum Outgoing {
    Span(SpanData, Vec<Arc<dyn SpanProcessor>>),
    Log(SdkLogRecord, Vec<Arc<dyn LogProcessor>>),
    Notify(Notifications, Arc<Vec<RegisteredObserver>>),
}

#[derive(Default)]
pub(crate) struct Outbox {
    queue: Mutex<VecDeque<Outgoing>>,
    draining: AtomicBool,
    warned_panic: AtomicBool,
    scope: Mutex<Option<InstrumentationScope>>,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox").finish_non_exhaustive()
    }
}

impl Outbox {
    pub(crate) fn new(scope: InstrumentationScope) -> Self {
        Outbox {
            scope: Mutex::new(Some(scope)),
            ..Outbox::default()
        }
    }

    fn queue(&self) -> MutexGuard<'_, VecDeque<Outgoing>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues an item (call it under the state lock, so order = state order).
    pub(crate) fn push(&self, item: Outgoing) {
        self.queue().push_back(item);
    }

    /// Delivers what is queued unless another drain is under way (which will).
    pub(crate) fn drain(&self) {
        loop {
            if self.draining.swap(true, Ordering::Acquire) {
                return;
            }
            loop {
                let next = self.queue().pop_front();
                match next {
                    Some(item) => self.deliver(item),
                    None => break,
                }
            }
            self.draining.store(false, Ordering::Release);
            // An item queued between our last pop and the store above would wait
            // for the next state change: look once more.
            if self.queue().is_empty() {
                return;
            }
        }
    }

    /// Drains, then waits (up to `limit`) for a drain under way on another thread
    /// to finish: used before a pipeline shuts down.
    pub(crate) fn drain_and_wait(&self, limit: Duration) {
        self.drain();
        let deadline = Instant::now() + limit;
        while (self.draining.load(Ordering::Acquire) || !self.queue().is_empty())
            && Instant::now() < deadline
        {
            std::thread::yield_now();
            self.drain();
        }
    }

    fn deliver(&self, item: Outgoing) {
        let result = catch_unwind(AssertUnwindSafe(|| match item {
            Outgoing::Span(span, sinks) => match sinks.as_slice() {
                [only] => only.on_end(span),
                many => {
                    for sink in many {
                        sink.on_end(span.clone());
                    }
                }
            },
            Outgoing::Log(record, sinks) => {
                let scope = self
                    .scope
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone()
                    .unwrap_or_else(|| {
                        InstrumentationScope::builder(crate::model::attr::SCOPE_NAME).build()
                    });
                for sink in &sinks {
                    let mut copy = record.clone();
                    sink.emit(&mut copy, &scope);
                }
            }
            Outgoing::Notify(notes, observers) => notify(&observers, notes),
        }));
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
