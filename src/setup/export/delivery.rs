//! Delivery accounting: what reached the exporting processor, what the exporter
//! delivered, what needed retries, what failed (and of that, what failed
//! permanently), and the warning when a queue drops.
//!
//! The retries happen inside `opentelemetry-otlp`'s export call; they are
//! counted from the attempts seen (see `observe`): our HTTP client sees every
//! attempt and a gRPC interceptor counts them, so an export that took more than
//! one attempt is known over both transports.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::SpanData;
use opentelemetry_sdk::Resource;

use super::counted::ExportWatch;

/// Delivery counts of one signal's exporter.
#[derive(Debug, Default)]
pub struct DeliveryStats {
    /// Items the exporter delivered.
    pub exported: AtomicU64,
    /// Items in exports that failed (collector down, slow, refusing).
    pub failed: AtomicU64,
    /// Items in exports that took more than one attempt (delivered or not).
    pub retried: AtomicU64,
    /// Items in exports that failed permanently: at their only attempt, with a
    /// failure that is not retried (a 4xx status other than 429, malformed
    /// data, refused credentials); part of `failed`.
    pub permanent: AtomicU64,
    pub(crate) warned: AtomicBool,
    pub(crate) export: std::sync::OnceLock<ExportWatch>,
    /// What reaches the exporting processor, and how much it can hold: more
    /// outstanding than that means its queue dropped some.
    watch: std::sync::OnceLock<(Arc<HandedCounter>, u64)>,
    warned_drop: AtomicBool,
}

impl DeliveryStats {
    /// Warns (once) as soon as more items are outstanding than the processor
    /// can hold (queue plus one export batch): the queue is dropping them.
    pub fn watch_drops(&self, handed: Arc<HandedCounter>, capacity: u64) {
        let _ = self.watch.set((handed, capacity));
    }

    /// Diagnoses failed exports with `watch` (OTLP exporters).
    pub(crate) fn watch_exports(&self, watch: ExportWatch) {
        let _ = self.export.set(watch);
    }

    pub(crate) fn check_drops(&self, signal: &str) {
        let Some((handed, capacity)) = self.watch.get() else {
            return;
        };
        if self.warned_drop.load(Ordering::Relaxed) {
            return;
        }
        let (exported, failed) = self.snapshot();
        let outstanding = handed.total().saturating_sub(exported + failed);
        if outstanding > *capacity {
            crate::warn::once(
                &self.warned_drop,
                format_args!(
                    "the {signal} queue is full and dropping ({outstanding} waiting for \
                     a queue of {capacity}); the collector is slower than the program: \
                     raise OTEL_BSP_MAX_QUEUE_SIZE / OTEL_BLRP_MAX_QUEUE_SIZE or lower the volume"
                ),
            );
        }
    }

    /// `(exported, failed)` so far.
    pub fn snapshot(&self) -> (u64, u64) {
        (
            self.exported.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }

    /// `(retried, permanent)` so far.
    pub fn retries(&self) -> (u64, u64) {
        (
            self.retried.load(Ordering::Relaxed),
            self.permanent.load(Ordering::Relaxed),
        )
    }
}

/// Counts the items handed to an exporting processor, per thread: the hot path
/// touches only its own thread's counter (a plain load and store on a line no
/// other thread writes), and the total is summed when asked. A thread's count is
/// folded into the shared total when the thread exits.
#[derive(Debug)]
pub struct HandedCounter {
    inner: Arc<HandedInner>,
}

#[derive(Debug, Default)]
struct HandedInner {
    id: usize,
    shards: std::sync::Mutex<Vec<Arc<AtomicU64>>>,
    retired: AtomicU64,
}

static NEXT_COUNTER_ID: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1);

/// This thread's shards; on thread exit their counts move to `retired`.
#[derive(Default)]
struct ThreadShards(Vec<(Arc<HandedInner>, Arc<AtomicU64>)>);

impl Drop for ThreadShards {
    fn drop(&mut self) {
        for (counter, shard) in self.0.drain(..) {
            let mut shards = counter.shards.lock().unwrap_or_else(|e| e.into_inner());
            shards.retain(|s| !Arc::ptr_eq(s, &shard));
            counter
                .retired
                .fetch_add(shard.load(Ordering::Relaxed), Ordering::Relaxed);
        }
    }
}

thread_local! {
    static SHARDS: std::cell::RefCell<ThreadShards> = std::cell::RefCell::new(ThreadShards::default());
}

impl Default for HandedCounter {
    fn default() -> Self {
        Self::new()
    }
}

impl HandedCounter {
    /// A new counter at zero.
    pub fn new() -> Self {
        HandedCounter {
            inner: Arc::new(HandedInner {
                id: NEXT_COUNTER_ID.fetch_add(1, Ordering::Relaxed),
                ..HandedInner::default()
            }),
        }
    }

    /// Adds one on this thread's shard.
    #[inline]
    pub fn add_one(&self) {
        let counted = SHARDS.try_with(|shards| {
            let Ok(mut shards) = shards.try_borrow_mut() else {
                return false;
            };
            if let Some((_, c)) = shards.0.iter().find(|(k, _)| k.id == self.inner.id) {
                // Only this thread writes this shard.
                c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
                return true;
            }
            let c = Arc::new(AtomicU64::new(1));
            self.inner
                .shards
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(Arc::clone(&c));
            shards.0.push((Arc::clone(&self.inner), c));
            true
        });
        if !matches!(counted, Ok(true)) {
            // Thread exiting or re-entered: count on the shared total.
            self.inner.retired.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The total so far.
    pub fn total(&self) -> u64 {
        let live: u64 = self
            .inner
            .shards
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum();
        live + self.inner.retired.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod handed_tests {
    use super::HandedCounter;

    #[test]
    fn counters_are_independent_and_survive_their_threads() {
        let a = HandedCounter::default();
        let b = HandedCounter::default();
        a.add_one();
        b.add_one();
        b.add_one();
        assert_eq!((a.total(), b.total()), (1, 2));
        let b = std::sync::Arc::new(b);
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let b = std::sync::Arc::clone(&b);
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        b.add_one();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(b.total(), 8_002);
        assert_eq!(
            b.inner.shards.lock().unwrap().len(),
            1,
            "exited threads' shards are folded into the total"
        );
    }
}

/// A processor decorator counting what reaches the exporting processor, so that
/// items dropped by a full queue show up as handed − exported − failed.
#[derive(Debug)]
pub struct Handed<P> {
    inner: P,
    counter: Arc<HandedCounter>,
}

impl<P> Handed<P> {
    /// Wraps `inner`; counts go to `counter`.
    pub fn new(inner: P, counter: Arc<HandedCounter>) -> Self {
        Handed { inner, counter }
    }
}

impl<P: opentelemetry_sdk::trace::SpanProcessor> opentelemetry_sdk::trace::SpanProcessor
    for Handed<P>
{
    #[inline]
    fn on_start(&self, span: &mut opentelemetry_sdk::trace::Span, cx: &opentelemetry::Context) {
        self.inner.on_start(span, cx);
    }
    #[inline]
    fn on_end(&self, span: SpanData) {
        self.counter.add_one();
        self.inner.on_end(span);
    }
    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }
    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }
    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

impl<P: opentelemetry_sdk::logs::LogProcessor> opentelemetry_sdk::logs::LogProcessor for Handed<P> {
    #[inline]
    fn emit(
        &self,
        record: &mut opentelemetry_sdk::logs::SdkLogRecord,
        scope: &opentelemetry::InstrumentationScope,
    ) {
        self.counter.add_one();
        self.inner.emit(record, scope);
    }
    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }
    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }
    fn event_enabled(
        &self,
        level: opentelemetry::logs::Severity,
        target: &str,
        name: Option<&str>,
    ) -> bool {
        self.inner.event_enabled(level, target, name)
    }
    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// What happened to one signal's telemetry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Delivery {
    /// Handed to the exporting processor.
    pub handed: u64,
    /// Delivered by the exporter.
    pub exported: u64,
    /// In exports that failed.
    pub failed: u64,
    /// In exports that needed retries (delivered or not).
    pub retried: u64,
    /// In exports that failed permanently, without retries (part of `failed`).
    pub permanent: u64,
}

impl Delivery {
    /// Dropped before export (full queue) or still queued.
    pub fn dropped_or_queued(&self) -> u64 {
        self.handed.saturating_sub(self.exported + self.failed)
    }
}
