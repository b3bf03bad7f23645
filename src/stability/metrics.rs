//! Stability metrics: `otel_session.started` and `otel_session.ended` (by
//! `otel_session.status`) counters and the `otel_session.duration` histogram.
//!
//! Crash-free rate = 1 − ended{status=crashed} / ended; `abnormal` is shown apart;
//! started − ended = sessions still open or lost. Only reported sessions count
//! (a discarded session is silent); metrics are never sampled.

use std::time::SystemTime;

use std::sync::Arc;

use opentelemetry::metrics::{BoundCounter, BoundHistogram, Meter};
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

    fn ended(&self, status: SessionStatus, started_at: SystemTime, ended_at: SystemTime) {
        self.ended[status_index(status)].add(1);
        let secs = ended_at
            .duration_since(started_at)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        self.duration.record(secs);
    }
}

impl SessionManagerBuilder {
    /// Records the stability metrics (`otel_session.started`, `otel_session.ended`,
    /// `otel_session.duration`) with `meter`, for app and request sessions alike.
    pub fn with_meter(self, meter: Meter) -> Self {
        self.with_counter(Arc::new(SessionMetrics::new(&meter)))
    }
}
