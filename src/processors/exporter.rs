//! [`SessionSpanExporter`]: your span exporter, telling the delivery ledger
//! which session ends it exported.

use std::sync::{Arc, Weak};
use std::time::Duration;

use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use opentelemetry_sdk::Resource;

use crate::core::ledger::summary_ids;
use crate::core::machine::Shared;
use crate::core::manager::SessionManager;

/// Wraps your exporting [`SpanExporter`] so that, with persistence, a session
/// end leaves the session file only once the exporter saw it accepted (an
/// export that returned `Ok`); otherwise the next start sends it again.
///
/// Without it, a session end counts as delivered when a `force_flush()` after
/// it succeeds — the best evidence a processor gives, and not proof: the SDK's
/// `SimpleSpanProcessor` flushes `Ok` after a failed export and
/// `BatchSpanProcessor` reports only its last batch. Once a manager has made
/// one of these, flushes acknowledge nothing for it: put it in every pipeline
/// that exports that manager's lifecycle spans (the one
/// [`span_processor`](SessionManager::span_processor) wraps). `init()` does
/// this for its own exporter.
///
/// ```
/// use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SimpleSpanProcessor};
/// let sessions = otel_session::SessionManager::builder().build();
/// let exporter = sessions.span_exporter(InMemorySpanExporter::default());
/// let provider = SdkTracerProvider::builder()
///     .with_span_processor(sessions.span_processor(SimpleSpanProcessor::new(exporter)))
///     .build();
/// # drop(provider);
/// ```
#[derive(Debug)]
pub struct SessionSpanExporter<E> {
    inner: E,
    /// Weak: the manager's sinks hold the processor that holds this exporter.
    manager: Weak<Shared>,
}

impl SessionManager {
    /// Wraps `inner` so that what it exports acknowledges this manager's
    /// session ends (see [`SessionSpanExporter`]).
    pub fn span_exporter<E: SpanExporter>(&self, inner: E) -> SessionSpanExporter<E> {
        self.shared.ledger.acknowledged_by_export();
        SessionSpanExporter {
            inner,
            manager: Arc::downgrade(&self.shared),
        }
    }
}

impl<E: SpanExporter> SpanExporter for SessionSpanExporter<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        // Read before the batch moves into the inner exporter (nothing is
        // allocated for a batch without a session end).
        let ended = summary_ids(&batch);
        let result = self.inner.export(batch).await;
        if let (Ok(()), Some(shared)) = (&result, self.manager.upgrade()) {
            shared.exported_ends(&ended);
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}
