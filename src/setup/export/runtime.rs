//! The export runtime and the exporter decorator that runs every export on it.
//!
//! Every OTLP exporter this crate builds, gRPC and HTTP alike, runs its exports on
//! one small tokio runtime (one worker thread) of ours, whatever runtime the
//! program has or does not have. Two reasons:
//!
//! - tonic and the async reqwest client need a tokio reactor; the SDK's batch and
//!   periodic threads have none ("no reactor running"), and blocking the
//!   program's own runtime at shutdown stalls it.
//! - **Suppression.** While it exports, the export stack (tonic, tower, hyper, h2,
//!   reqwest, rustls, the OTLP exporter) emits its own `tracing` events and spans.
//!   Fed back through the log bridge they would be exported in turn, without end.
//!   OpenTelemetry marks such threads with *telemetry suppression*
//!   ([`Context::enter_telemetry_suppressed_scope`]): the SDK logger and tracer
//!   drop what is emitted under it, and the guard's `tracing` layers skip it.
//!   The SDK's batch and periodic threads enter it themselves; tokio's worker and
//!   blocking threads and reqwest's own client thread do not. So every thread of
//!   this runtime enters it when it starts, and an export that runs on a thread
//!   of the caller's enters it for its duration. The application's own hyper,
//!   reqwest, tonic or tower events, on its own threads, are untouched.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry::Context;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::logs::{LogBatch, LogExporter};
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::metrics::Temporality;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use opentelemetry_sdk::Resource;

use super::observe::Probe;
use crate::setup::error::ExportError;

/// Name of the export runtime's threads.
pub(crate) const THREAD_NAME: &str = "otel-session-export";

/// One small tokio runtime whose threads suppress telemetry.
#[derive(Debug)]
pub(crate) struct ExportRuntime {
    runtime: Mutex<Option<tokio::runtime::Runtime>>,
    handle: tokio::runtime::Handle,
    stopped: AtomicBool,
}

impl ExportRuntime {
    /// Starts the runtime (one worker thread).
    pub(crate) fn start() -> Result<Arc<ExportRuntime>, ExportError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(THREAD_NAME)
            // For the thread's whole life: the guard has nothing to restore.
            .on_thread_start(|| std::mem::forget(Context::enter_telemetry_suppressed_scope()))
            .enable_all()
            .build()
            .map_err(|e| ExportError::Runtime(e.to_string()))?;
        Ok(Arc::new(ExportRuntime {
            handle: runtime.handle().clone(),
            runtime: Mutex::new(Some(runtime)),
            stopped: AtomicBool::new(false),
        }))
    }

    /// The runtime's handle (to build the gRPC exporter inside it).
    #[cfg(any(feature = "otlp-grpc", test))]
    pub(crate) fn handle(&self) -> &tokio::runtime::Handle {
        &self.handle
    }

    /// Shuts the runtime down without blocking; later exports fail at once.
    pub(crate) fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        let runtime = self
            .runtime
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(rt) = runtime {
            rt.shutdown_background();
        }
    }

    /// Runs `fut` to completion on this runtime, from the calling thread,
    /// with telemetry suppressed.
    fn run<F>(&self, fut: F) -> Result<F::Output, OTelSdkError>
    where
        F: Future + Send,
        F::Output: Send,
    {
        if self.stopped.load(Ordering::Acquire) {
            return Err(OTelSdkError::AlreadyShutdown);
        }
        if tokio::runtime::Handle::try_current().is_err() {
            // The SDK's batch and periodic threads: drive the export here.
            let _suppressed = Context::enter_telemetry_suppressed_scope();
            return Ok(self.handle.block_on(fut));
        }
        // Called from inside a runtime (a simple processor in async code), where
        // `block_on` is not allowed: a scoped thread of ours does it.
        std::thread::scope(|scope| {
            std::thread::Builder::new()
                .name(THREAD_NAME.to_string())
                .spawn_scoped(scope, || {
                    let _suppressed = Context::enter_telemetry_suppressed_scope();
                    self.handle.block_on(fut)
                })
                .map_err(|e| OTelSdkError::InternalFailure(format!("export thread: {e}")))?
                .join()
                .map_err(|_| OTelSdkError::InternalFailure("the export panicked".to_string()))
        })
    }
}

impl Drop for ExportRuntime {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An OTLP exporter that runs each export on the export runtime, with telemetry
/// suppressed (see the module docs). Built by
/// [`ExporterBuilder`](crate::export::ExporterBuilder); it keeps the runtime alive.
/// Each attempt ends when what is left of its export's timeout runs out (the
/// probe's deadline, set by the retrying decorator), not a whole timeout
/// later.
#[derive(Debug)]
pub struct OtlpExporter<E> {
    inner: E,
    runtime: Arc<ExportRuntime>,
    probe: Arc<Probe>,
}

impl<E> OtlpExporter<E> {
    pub(crate) fn new(inner: E, runtime: Arc<ExportRuntime>, probe: Arc<Probe>) -> Self {
        OtlpExporter {
            inner,
            runtime,
            probe,
        }
    }

    /// Runs one attempt on the export runtime, within the time its export has
    /// left.
    fn attempt<F>(&self, fut: F) -> OTelSdkResult
    where
        F: Future<Output = OTelSdkResult> + Send,
    {
        let left = self.probe.time_left();
        let bounded = async move {
            match left {
                // Out of time: the export's timeout (retries included) ran out.
                Some((left, timeout)) => tokio::time::timeout(left, fut)
                    .await
                    .unwrap_or(Err(OTelSdkError::Timeout(timeout))),
                None => fut.await,
            }
        };
        self.runtime.run(bounded).and_then(|r| r)
    }
}

impl<E: SpanExporter + Sync> SpanExporter for OtlpExporter<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        self.attempt(self.inner.export(batch))
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

impl<E: LogExporter + Sync> LogExporter for OtlpExporter<E> {
    async fn export(&self, batch: LogBatch<'_>) -> OTelSdkResult {
        self.attempt(self.inner.export(batch))
    }
    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }
    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

impl<E: PushMetricExporter + Sync> PushMetricExporter for OtlpExporter<E> {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        self.attempt(self.inner.export(metrics))
    }
    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }
    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }
    fn temporality(&self) -> Temporality {
        self.inner.temporality()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_threads_and_exports_run_suppressed_and_a_stopped_runtime_refuses() {
        let rt = ExportRuntime::start().expect("runtime");
        let on_worker = rt
            .handle()
            .block_on(async {
                tokio::spawn(async { Context::is_current_telemetry_suppressed() }).await
            })
            .expect("task");
        assert!(on_worker, "worker threads are suppressed");
        let in_export = rt
            .run(async { Context::is_current_telemetry_suppressed() })
            .expect("ran");
        assert!(
            in_export,
            "an export driven from the caller's thread is suppressed"
        );
        assert!(
            !Context::is_current_telemetry_suppressed(),
            "the caller's thread is itself untouched afterwards"
        );
        // From inside another runtime (where block_on would panic).
        let other = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let nested = other.block_on(async { rt.run(async { 7 }) });
        assert_eq!(nested.expect("ran on a scoped thread"), 7);
        rt.stop();
        assert!(matches!(
            rt.run(async {}),
            Err(OTelSdkError::AlreadyShutdown)
        ));
    }
}
