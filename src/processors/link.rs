//! One of our processors' connection to its manager's lifecycle: made when the
//! provider sets the resource (the SDK's build step), undone at shutdown.
//! Flushing through it acknowledges what the sink delivered (the ledger).

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use opentelemetry_sdk::error::OTelSdkResult;

use crate::core::manager::SessionManager;
use crate::core::outbox::Item;
use crate::core::sinks::SinkRef;

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
        manager.shared.deliver(Item::Connect(sink));
    }

    /// A sink is connected.
    pub(crate) fn connected(&self) -> bool {
        self.slot().is_some()
    }

    /// Disconnects; returns the sink that was connected.
    pub(crate) fn disconnect(&self, manager: &SessionManager) -> Option<SinkRef> {
        let sink = self.slot().take()?;
        manager.shared.sinks.disconnect(&sink);
        Some(sink)
    }

    /// Flushes the connected sink; success acknowledges what it had been
    /// handed (`Ok` when none is connected).
    pub(crate) fn flush(&self, manager: &SessionManager) -> OTelSdkResult {
        let sink = self.slot().clone();
        sink.map_or(Ok(()), |s| manager.shared.flush_sink(&s))
    }

    /// The shutdown of a processor that owns its sink: a flush first (the
    /// SDK's shutdown reports `Ok` even when its last export failed; only a
    /// flush tells), then disconnect and shut it down.
    pub(crate) fn shutdown(&self, manager: &SessionManager, timeout: Duration) -> OTelSdkResult {
        let _ = self.flush(manager);
        self.disconnect(manager)
            .map_or(Ok(()), |s| s.shutdown_with_timeout(timeout))
    }
}
