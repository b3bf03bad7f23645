//! Where lifecycle telemetry goes: the *sinks*, i.e. the exporting processors our
//! wrappers wrap (or the processor given to a standalone enricher).
//!
//! Until a sink of a kind is connected, lifecycle output of that kind is held (up
//! to [`PENDING_LIMIT`] items, oldest dropped first, with a warning) and handed to
//! the first sink that connects. A connection goes through the outbox, so what
//! was held reaches the new sink before anything newer.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::logs::{LogProcessor, SdkLogRecord};
use opentelemetry_sdk::trace::{SpanData, SpanProcessor};

use crate::core::effects::{Effect, LogEffect, SpanEffect};
use crate::core::manager::SessionManager;

/// How many lifecycle spans (and, separately, log events) are held while no sink is
/// connected. Older ones are dropped first, with a warning.
pub const PENDING_LIMIT: usize = 1024;

/// Held items past this many mean nobody is going to connect a sink soon: say so.
const WARN_AFTER_HELD: usize = 8;

/// An exporting processor the lifecycle is delivered to.
#[derive(Debug, Clone)]
pub(crate) enum SinkRef {
    Span(Arc<dyn SpanProcessor>),
    Log(Arc<dyn LogProcessor>),
}

impl SinkRef {
    fn force_flush(&self) -> OTelSdkResult {
        match self {
            SinkRef::Span(p) => p.force_flush(),
            SinkRef::Log(p) => p.force_flush(),
        }
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        match self {
            SinkRef::Span(p) => p.shutdown_with_timeout(timeout),
            SinkRef::Log(p) => p.shutdown_with_timeout(timeout),
        }
    }
}

#[derive(Default)]
struct Registry {
    spans: Vec<Arc<dyn SpanProcessor>>,
    logs: Vec<Arc<dyn LogProcessor>>,
    pending_spans: VecDeque<SpanData>,
    pending_logs: VecDeque<SdkLogRecord>,
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

    /// Delivers a lifecycle span (called by the outbox, in order, outside the
    /// manager's lock).
    pub(crate) fn deliver_span(&self, effect: SpanEffect) {
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
                r.pending_spans.push_back(span);
                let held = r.pending_spans.len();
                drop(r);
                self.warn_held(held);
                return;
            }
            r.spans.clone()
        };
        match sinks.as_slice() {
            [only] => only.on_end(span),
            many => {
                for sink in many {
                    sink.on_end(span.clone());
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
    pub(crate) fn deliver_log(&self, effect: LogEffect) {
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
                r.pending_logs.push_back(record);
                return;
            }
            r.logs.clone()
        };
        let scope = crate::core::effects::scope();
        for sink in &sinks {
            let mut copy = record.clone();
            sink.emit(&mut copy, scope);
        }
    }

    /// Connects `sink` and hands it what was held (called by the outbox, in order).
    pub(crate) fn connect(&self, sink: SinkRef) {
        match sink {
            SinkRef::Span(p) => {
                let held: Vec<SpanData> = {
                    let mut r = self.registry();
                    r.spans.push(Arc::clone(&p));
                    r.pending_spans.drain(..).collect()
                };
                for span in held {
                    p.on_end(span);
                }
            }
            SinkRef::Log(p) => {
                let held: Vec<SdkLogRecord> = {
                    let mut r = self.registry();
                    r.logs.push(Arc::clone(&p));
                    r.pending_logs.drain(..).collect()
                };
                let scope = crate::core::effects::scope();
                for mut record in held {
                    p.emit(&mut record, scope);
                }
            }
        }
    }

    fn disconnect(&self, sink: &SinkRef) {
        let mut r = self.registry();
        match sink {
            SinkRef::Span(p) => r.spans.retain(|s| !Arc::ptr_eq(s, p)),
            SinkRef::Log(p) => r.logs.retain(|s| !Arc::ptr_eq(s, p)),
        }
    }

    /// Flushes every connected sink (the exporting processors), for a crash;
    /// `true` if the span sinks all delivered.
    pub(crate) fn force_flush_all(&self) -> bool {
        let (spans, logs) = {
            let r = self.registry();
            (r.spans.clone(), r.logs.clone())
        };
        let mut delivered = !spans.is_empty();
        for s in spans {
            delivered &= s.force_flush().is_ok();
        }
        for l in logs {
            let _ = l.force_flush();
        }
        delivered
    }

    /// How many lifecycle spans are held for want of a sink.
    pub(crate) fn held_spans(&self) -> usize {
        self.registry().pending_spans.len()
    }
}

/// One of our processors' connection to its manager's lifecycle: made when the
/// provider sets the resource (the SDK's build step), undone at shutdown.
#[derive(Debug, Default)]
pub(crate) struct SinkLink {
    sink: Mutex<Option<SinkRef>>,
}

impl SinkLink {
    fn slot(&self) -> MutexGuard<'_, Option<SinkRef>> {
        self.sink.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Connects `sink` (replacing an earlier one); what was held reaches it first.
    pub(crate) fn connect(&self, manager: &SessionManager, sink: SinkRef) {
        self.disconnect(manager);
        *self.slot() = Some(sink.clone());
        manager.shared.deliver(Effect::Connect(sink));
    }

    /// Disconnects; returns the sink that was connected.
    pub(crate) fn disconnect(&self, manager: &SessionManager) -> Option<SinkRef> {
        let sink = self.slot().take()?;
        manager.shared.sinks.disconnect(&sink);
        Some(sink)
    }

    /// Flushes the connected sink (for processors that own theirs).
    pub(crate) fn force_flush(&self) -> OTelSdkResult {
        let sink = self.slot().clone();
        sink.map_or(Ok(()), |s| s.force_flush())
    }

    /// Disconnects and shuts the sink down (for processors that own theirs).
    pub(crate) fn shutdown(&self, manager: &SessionManager, timeout: Duration) -> OTelSdkResult {
        self.disconnect(manager)
            .map_or(Ok(()), |s| s.shutdown_with_timeout(timeout))
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
