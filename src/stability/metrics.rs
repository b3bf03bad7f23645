//! Stability metrics: `otel_session.started` and `otel_session.ended` (by
//! `otel_session.status`) counters and the `otel_session.duration` histogram.
//!
//! Crash-free rate = 1 − ended{status=crashed} / ended; `abnormal` is shown apart;
//! started − ended = sessions still open or lost. Only reported sessions count
//! (a discarded session is silent); metrics are never sampled.

use std::time::SystemTime;

use std::sync::Arc;

use std::sync::atomic::AtomicBool;
use std::sync::Mutex;

use arc_swap::ArcSwap;
use opentelemetry::metrics::{BoundCounter, BoundHistogram, Counter, Meter};
use opentelemetry::KeyValue;

use crate::core::manager::SessionManagerBuilder;
use crate::core::telemetry::SessionCounter;
use crate::model::attr;
use crate::model::session::SessionStatus;

/// `otel_session.started`
pub const STARTED: &str = "otel_session.started";
/// `otel_session.ended`
pub const ENDED: &str = "otel_session.ended";
/// `otel_session.duration`
pub const DURATION: &str = "otel_session.duration";
/// Bucket boundaries of `otel_session.duration`, in seconds.
pub const DURATION_BUCKETS: [f64; 10] = [
    1.0, 10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0,
];

/// Distinct values of the split attribute (`OTEL_SESSION_METRICS_SPLIT`)
/// that get series of their own in `otel_session.ended`; sessions with other
/// values are counted under [`SPLIT_OTHER`], with one warning. A split is for
/// a few experiment arms, not for an open-ended value: each value is four
/// more series in every backend.
pub const MAX_SPLIT_VALUES: usize = 8;
/// The value sessions past [`MAX_SPLIT_VALUES`] are counted under.
pub const SPLIT_OTHER: &str = "_other";

/// `otel_session.ended` bound per value of the split attribute: read
/// without a lock (request sessions end on every request), a value bound
/// once under a small mutex.
#[derive(Debug, Default)]
struct Split {
    values: ArcSwap<Vec<(String, [BoundCounter<u64>; 4])>>,
    adding: Mutex<()>,
    warned: AtomicBool,
}

/// The three instruments, bound once to every attribute set they record with.
///
/// Bound instruments (opentelemetry's `experimental_metrics_bound_instruments`,
/// which this crate turns on in `opentelemetry_sdk`) write straight to their
/// aggregator: no attribute hashing or map lookup per session. For a request
/// session that is most of what its metrics cost (~1,000 instructions a
/// request with `Counter::add` and a status attribute; see BENCHMARKS.md).
#[derive(Debug, Clone)]
pub(crate) struct SessionMetrics {
    started: BoundCounter<u64>,
    /// `otel_session.ended`, one per status, in `SessionStatus` order.
    ended: [BoundCounter<u64>; 4],
    duration: BoundHistogram<f64>,
    /// The unbound counter (for values of the split).
    ended_counter: Counter<u64>,
    split: Arc<Split>,
}

/// Every status, in the order of `SessionMetrics::ended`.
const STATUSES: [SessionStatus; 4] = [
    SessionStatus::Ok,
    SessionStatus::Errored,
    SessionStatus::Crashed,
    SessionStatus::Abnormal,
];

impl SessionMetrics {
    pub(crate) fn new(meter: &Meter) -> Self {
        let ended = meter
            .u64_counter(ENDED)
            .with_unit("{session}")
            .with_description("Sessions ended, by status")
            .build();
        SessionMetrics {
            started: meter
                .u64_counter(STARTED)
                .with_unit("{session}")
                .with_description("Sessions started")
                .build()
                .bind(&[]),
            ended: STATUSES.map(|s| ended.bind(&[KeyValue::new(attr::STATUS, s.as_str())])),
            ended_counter: ended,
            split: Arc::default(),
            duration: meter
                .f64_histogram(DURATION)
                .with_unit("s")
                .with_description("Session duration")
                .with_boundaries(DURATION_BUCKETS.to_vec())
                .build()
                .bind(&[]),
        }
    }
}

fn status_index(status: SessionStatus) -> usize {
    match status {
        SessionStatus::Ok => 0,
        SessionStatus::Errored => 1,
        SessionStatus::Crashed => 2,
        SessionStatus::Abnormal => 3,
    }
}

impl SessionCounter for SessionMetrics {
    fn started(&self) {
        self.started.add(1);
    }

    fn ended(
        &self,
        status: SessionStatus,
        started_at: SystemTime,
        ended_at: SystemTime,
        split: Option<KeyValue>,
    ) {
        match split {
            None => self.ended[status_index(status)].add(1),
            Some(kv) => self.ended_split(status, kv),
        }
        let secs = ended_at
            .duration_since(started_at)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        self.duration.record(secs);
    }
}

impl SessionMetrics {
    /// Counts an end under its value of the split attribute.
    fn ended_split(&self, status: SessionStatus, kv: KeyValue) {
        let value = kv.value.as_str();
        let i = status_index(status);
        if let Some((_, c)) = self.split.values.load().iter().find(|(v, _)| *v == value) {
            return c[i].add(1);
        }
        let _adding = self.split.adding.lock().unwrap_or_else(|e| e.into_inner());
        let list = self.split.values.load_full();
        if let Some((_, c)) = list.iter().find(|(v, _)| *v == value) {
            return c[i].add(1);
        }
        let own = list.iter().filter(|(v, _)| v != SPLIT_OTHER).count();
        let label = if own < MAX_SPLIT_VALUES {
            value.into_owned()
        } else {
            crate::warn::once(
                &self.split.warned,
                format_args!(
                    "otel_session.ended is split by {} (OTEL_SESSION_METRICS_SPLIT) but value \
                     {value:?} is one more than the {MAX_SPLIT_VALUES} distinct values it keeps \
                     apart; sessions with further values are counted under {SPLIT_OTHER:?}. \
                     Split by a flag with a few variants, not an open-ended attribute \
                     (reported once)",
                    kv.key
                ),
            );
            SPLIT_OTHER.to_string()
        };
        if let Some((_, c)) = list.iter().find(|(v, _)| *v == label) {
            return c[i].add(1);
        }
        let counters = STATUSES.map(|s| {
            self.ended_counter.bind(&[
                KeyValue::new(attr::STATUS, s.as_str()),
                KeyValue::new(kv.key.clone(), label.clone()),
            ])
        });
        counters[i].add(1);
        let mut next = Vec::clone(&list);
        next.push((label, counters));
        self.split.values.store(Arc::new(next));
    }
}

impl SessionManagerBuilder {
    /// Records the stability metrics (`otel_session.started`, `otel_session.ended`,
    /// `otel_session.duration`) with `meter`, for app and request sessions alike.
    pub fn with_meter(self, meter: Meter) -> Self {
        self.with_counter(Arc::new(SessionMetrics::new(&meter)))
    }
}
