//! The export runtime every OTLP export runs on.
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
use std::sync::Mutex;

use opentelemetry::Context;
use opentelemetry_sdk::error::OTelSdkError;

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
    pub(crate) fn start() -> Result<std::sync::Arc<ExportRuntime>, ExportError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(THREAD_NAME)
            // For the thread's whole life: the guard has nothing to restore.
            .on_thread_start(|| std::mem::forget(Context::enter_telemetry_suppressed_scope()))
            .enable_all()
            .build()
            .map_err(|e| ExportError::Runtime(e.to_string()))?;
        Ok(std::sync::Arc::new(ExportRuntime {
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

    /// Runs `fut` (an export) against this runtime's reactor and timers, with
    /// telemetry suppressed, blocking no runtime of the program: awaited from
    /// a worker of a multi-thread runtime (a simple processor in async code:
    /// the SDK blocks on the export there), the wait is `block_in_place`, so
    /// that the worker's other tasks move to another thread; anywhere else (the
    /// SDK's batch threads, a current-thread runtime) `fut` is polled where it
    /// is awaited, its I/O and timers driven by our worker thread.
    pub(crate) async fn run<F: Future>(&self, fut: F) -> Result<F::Output, OTelSdkError> {
        use tokio::runtime::{Handle, RuntimeFlavor};
        if self.stopped.load(Ordering::Acquire) {
            return Err(OTelSdkError::AlreadyShutdown);
        }
        let on_worker =
            Handle::try_current().is_ok_and(|h| h.runtime_flavor() == RuntimeFlavor::MultiThread);
        if on_worker {
            return Ok(tokio::task::block_in_place(|| {
                let _suppressed = Context::enter_telemetry_suppressed_scope();
                self.handle.block_on(fut)
            }));
        }
        // Outside any budget of the caller's runtime: its cooperative budget
        // would otherwise run out under a blocking `block_on` and never refill.
        let mut fut = std::pin::pin!(tokio::task::unconstrained(fut));
        Ok(std::future::poll_fn(|cx| {
            let _runtime = self.handle.enter();
            let _suppressed = Context::enter_telemetry_suppressed_scope();
            fut.as_mut().poll(cx)
        })
        .await)
    }
}

impl Drop for ExportRuntime {
    fn drop(&mut self) {
        self.stop();
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
        let run = |fut| futures_block_on(rt.run(fut));
        let in_export = futures_block_on(rt.run(async {
            // Our runtime's timers, from a thread of no runtime.
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            Context::is_current_telemetry_suppressed()
        }))
        .expect("ran");
        assert!(
            in_export,
            "an export driven from the caller's thread is suppressed"
        );
        assert!(
            !Context::is_current_telemetry_suppressed(),
            "the caller's thread is itself untouched afterwards"
        );
        // From inside another runtime, of either flavor (where block_on panics).
        let current = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        assert_eq!(
            current.block_on(async { run(async { 7 }) }).expect("ran"),
            7
        );
        let multi = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .expect("runtime");
        let on_multi = multi.block_on(async {
            tokio::spawn(async move { futures_block_on(rt.run(async { 8 })).map(|n| (n, rt)) })
                .await
                .expect("task")
        });
        let (n, rt) = on_multi.expect("ran");
        assert_eq!(n, 8);
        rt.stop();
        assert!(matches!(
            futures_block_on(rt.run(async {})),
            Err(OTelSdkError::AlreadyShutdown)
        ));
    }

    /// What the SDK's processors do with an export: block on it.
    fn futures_block_on<F: Future>(fut: F) -> F::Output {
        let mut fut = std::pin::pin!(fut);
        let thread = std::thread::current();
        let waker = std::task::Waker::from(std::sync::Arc::new(Unpark(thread)));
        let mut cx = std::task::Context::from_waker(&waker);
        loop {
            if let std::task::Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
                return out;
            }
            std::thread::park();
        }
    }

    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.unpark();
        }
    }
}
