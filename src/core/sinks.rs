//! Where lifecycle telemetry goes: the *sinks*, i.e. the exporting processors our
//! wrappers wrap (or the processor given to a standalone enricher).
//!
//! Until a sink of a kind is connected, lifecycle output of that kind is held (up
//! to [`PENDING_LIMIT`] items, oldest dropped first, with a warning) and handed to
//! the first sink that connects. A connection goes through the outbox, so what
//! was held reaches the new sink before anything newer.
//!
//! Each span sink records the sequence number of the last lifecycle span it
//! was handed: a successful flush of that sink acknowledges everything up to
//! it (the delivery ledger, `core::ledger`).

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::logs::{LogProcessor, SdkLogRecord};
use opentelemetry_sdk::trace::{SpanData, SpanProcessor};

use crate::core::telemetry::{LifecycleLog, LifecycleSpan};

/// How many lifecycle spans (and, separately, log events) are held while no sink is
/// connected. Older ones are dropped first, with a warning.
pub(crate) const PENDING_LIMIT: usize = 1024;

/// Held items past this many mean nobody is going to connect a sink soon: say so.
const WARN_AFTER_HELD: usize = 8;

/// An exporting processor the lifecycle is delivered to.
#[derive(Debug, Clone)]
pub(crate) enum SinkKind {
    Span(Arc<dyn SpanProcessor>),
    Log(Arc<dyn LogProcessor>),
}

/// A sink and the sequence number of the last lifecycle item handed to it.
#[derive(Debug, Clone)]
pub(crate) struct SinkRef {
    pub(crate) kind: SinkKind,
    handed: Arc<AtomicU64>,
}

impl SinkRef {
    pub(crate) fn span(p: Arc<dyn SpanProcessor>) -> Self {
        SinkRef {
            kind: SinkKind::Span(p),
            handed: Arc::default(),
        }
    }

    pub(crate) fn log(p: Arc<dyn LogProcessor>) -> Self {
        SinkRef {
            kind: SinkKind::Log(p),
            handed: Arc::default(),
        }
    }

    /// The sequence number of the last lifecycle item handed to it.
    pub(crate) fn handed(&self) -> u64 {
        self.handed.load(Ordering::Acquire)
    }

    fn same(&self, other: &SinkRef) -> bool {
        Arc::ptr_eq(&self.handed, &other.handed)
    }

    pub(crate) fn force_flush(&self) -> OTelSdkResult {
        match &self.kind {
            SinkKind::Span(p) => p.force_flush(),
            SinkKind::Log(p) => p.force_flush(),
        }
    }

    pub(crate) fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        match &self.kind {
            SinkKind::Span(p) => p.shutdown_with_timeout(timeout),
            SinkKind::Log(p) => p.shutdown_with_timeout(timeout),
        }
    }
}

#[derive(Default)]
struct Registry {
    spans: Vec<(Arc<dyn SpanProcessor>, Arc<AtomicU64>)>,
    logs: Vec<SinkRef>,
    /// Held lifecycle spans with their sequence numbers.
    pending_spans: VecDeque<(u64, SpanData)>,
    /// Held lifecycle log events with their sequence numbers.
    pending_logs: VecDeque<(u64, SdkLogRecord)>,
}

/// A manager's sinks and what waits for them.
#[derive(Default)]
pub(crate) struct Sinks {
    registry: Mutex<Registry>,
    /// No span export by choice: lifecycle spans are dropped without a word.
    pub(crate) discard_spans: bool,
    /// No log export by choice: lifecycle log events are dropped without a word.
    pub(crate) discard_logs: bool,
    warned_held: AtomicBool,
    warned_span_overflow: AtomicBool,
    warned_log_overflow: AtomicBool,
}

impl fmt::Debug for Sinks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self.registry();
        f.debug_struct("Sinks")
            .field("spans", &r.spans.len())
            .field("logs", &r.logs.len())
            .field("pending_spans", &r.pending_spans.len())
            .field("pending_logs", &r.pending_logs.len())
            .finish()
    }
}

impl Sinks {
    pub(crate) fn new(discard_spans: bool, discard_logs: bool) -> Self {
        Sinks {
            discard_spans,
            discard_logs,
            ..Sinks::default()
        }
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Delivers lifecycle span number `seq` (called by the outbox, in order,
    /// outside the manager's lock).
    pub(crate) fn deliver_span(&self, seq: u64, effect: LifecycleSpan) {
        if self.discard_spans {
            return;
        }
        let span = effect.into_span_data();
        let sinks = {
            let mut r = self.registry();
            if r.spans.is_empty() {
                if r.pending_spans.len() == PENDING_LIMIT {
                    r.pending_spans.pop_front();
                    crate::warn::once(
                        &self.warned_span_overflow,
                        format_args!(
                            "more than {PENDING_LIMIT} session lifecycle spans waited for an \
                             exporting span processor; the oldest are being dropped. Wrap your \
                             exporting processor with SessionManager::span_processor(..)"
                        ),
                    );
                }
                r.pending_spans.push_back((seq, span));
                let held = r.pending_spans.len();
                drop(r);
                self.warn_held(held);
                return;
            }
            r.spans.clone()
        };
        match sinks.as_slice() {
            [(only, handed)] => {
                only.on_end(span);
                handed.store(seq, Ordering::Release);
            }
            many => {
                for (sink, handed) in many {
                    sink.on_end(span.clone());
                    handed.store(seq, Ordering::Release);
                }
            }
        }
    }

    fn warn_held(&self, held: usize) {
        if held >= WARN_AFTER_HELD {
            crate::warn::once(
                &self.warned_held,
                format_args!(
                    "{held} session lifecycle spans are held because no exporting span \
                     processor is connected (they are sent when one connects, up to \
                     {PENDING_LIMIT}). Wrap your exporting processor with \
                     SessionManager::span_processor(..), or give the standalone enricher one \
                     with with_lifecycle_processor(..)."
                ),
            );
        }
    }

    /// Delivers a lifecycle log event.
    pub(crate) fn deliver_log(&self, seq: u64, effect: LifecycleLog) {
        if self.discard_logs {
            return;
        }
        let record = effect.into_record();
        let sinks = {
            let mut r = self.registry();
            if r.logs.is_empty() {
                // Logs are optional: without a log pipeline the events wait quietly
                // (bounded) in case one is connected later.
                if r.pending_logs.len() == PENDING_LIMIT {
                    r.pending_logs.pop_front();
                    if !r.spans.is_empty() {
                        // A span pipeline exists, so someone may expect logs too.
                        crate::warn::once(
                            &self.warned_log_overflow,
                            format_args!(
                                "session log events have no log processor connected; the \
                                 oldest of {PENDING_LIMIT} held are being dropped. Wrap your \
                                 exporting log processor with SessionManager::log_processor(..) \
                                 to export them."
                            ),
                        );
                    }
                }
                r.pending_logs.push_back((seq, record));
                return;
            }
            r.logs.clone()
        };
        let scope = crate::core::telemetry::scope();
        for sink in &sinks {
            if let SinkKind::Log(p) = &sink.kind {
                let mut copy = record.clone();
                p.emit(&mut copy, scope);
                sink.handed.store(seq, Ordering::Release);
            }
        }
    }

    /// Connects `sink` and hands it what was held (called by the outbox, in order).
    pub(crate) fn connect(&self, sink: SinkRef) {
        match &sink.kind {
            SinkKind::Span(p) => {
                let held: Vec<(u64, SpanData)> = {
                    let mut r = self.registry();
                    r.spans.push((Arc::clone(p), Arc::clone(&sink.handed)));
                    r.pending_spans.drain(..).collect()
                };
                for (seq, span) in held {
                    p.on_end(span);
                    sink.handed.store(seq, Ordering::Release);
                }
            }
            SinkKind::Log(p) => {
                let held: Vec<(u64, SdkLogRecord)> = {
                    let mut r = self.registry();
                    r.logs.push(sink.clone());
                    r.pending_logs.drain(..).collect()
                };
                let scope = crate::core::telemetry::scope();
                for (seq, mut record) in held {
                    p.emit(&mut record, scope);
                    sink.handed.store(seq, Ordering::Release);
                }
            }
        }
    }

    /// Disconnects `sink` (its processor shuts down).
    pub(crate) fn disconnect(&self, sink: &SinkRef) {
        let mut r = self.registry();
        match &sink.kind {
            SinkKind::Span(_) => r.spans.retain(|(_, h)| !Arc::ptr_eq(h, &sink.handed)),
            SinkKind::Log(_) => r.logs.retain(|s| !s.same(sink)),
        }
    }

    /// A span sink is connected now.
    pub(crate) fn spans_connected(&self) -> bool {
        !self.registry().spans.is_empty()
    }

    /// The sinks connected now.
    pub(crate) fn connected(&self) -> Vec<SinkRef> {
        let r = self.registry();
        r.spans
            .iter()
            .map(|(p, handed)| SinkRef {
                kind: SinkKind::Span(Arc::clone(p)),
                handed: Arc::clone(handed),
            })
            .chain(r.logs.iter().cloned())
            .collect()
    }

    /// How many lifecycle spans are held for want of a sink.
    pub(crate) fn held_spans(&self) -> usize {
        self.registry().pending_spans.len()
    }
}

/// Warns at most once per process that lifecycle output was never exported.
pub(crate) fn report_unsent(sinks: &Sinks) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    let held = sinks.held_spans();
    if held > 0 && !sinks.discard_spans && !WARNED.swap(true, Ordering::Relaxed) {
        crate::warn::stderr(format_args!(
            "{held} session lifecycle spans were never exported: no exporting span processor \
             was connected to the session manager. Wrap it with SessionManager::span_processor(..)."
        ));
    }
}
