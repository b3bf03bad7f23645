//! Overhead of otel-session on the span and log hot paths, as ratios against the
//! bare opentelemetry_sdk pipeline measured in the same run (criterion; the time is
//! the benchmarking thread's CPU time). See BENCHMARKS.md for the method and
//! `scripts/bench_ratios.py` for the ratio table.
//!
//! Every pipeline is a batch processor on a no-op exporter (queue large enough that
//! nothing is dropped); every span has 4 attributes, given either as a full vec
//! (the session attribute forces a reallocation) or with spare capacity.

mod common;

use std::time::Duration;

use common::{contention_run, log_batch, one_log, one_span, provider, ThreadCpuTime, FORMS};
use criterion::{criterion_group, criterion_main, Criterion};
use opentelemetry::logs::LoggerProvider as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::logs::SdkLoggerProvider;
use otel_session::SessionManager;

fn spans(c: &mut Criterion<ThreadCpuTime>) {
    let mut g = c.benchmark_group("span");
    for form in FORMS {
        for spare in [false, true] {
            let sessions = SessionManager::builder().build();
            let tp = provider(form, &sessions);
            if matches!(form, "wrapper" | "standalone") {
                sessions.start_session().unwrap();
            }
            let tracer = tp.tracer("bench");
            let id = format!("{form}/{}", if spare { "spare" } else { "full" });
            g.bench_function(id, |b| b.iter(|| one_span(&tracer, spare)));
            let _ = tp.shutdown();
        }
    }
    g.finish();
}

fn logs(c: &mut Criterion<ThreadCpuTime>) {
    let mut g = c.benchmark_group("log");
    for wrapped in [false, true] {
        let sessions = SessionManager::builder().build();
        let lp = if wrapped {
            SdkLoggerProvider::builder()
                .with_log_processor(sessions.log_processor(log_batch()))
                .build()
        } else {
            SdkLoggerProvider::builder()
                .with_log_processor(log_batch())
                .build()
        };
        if wrapped {
            sessions.start_session().unwrap();
        }
        let logger = lp.logger("bench");
        g.bench_function(if wrapped { "wrapper" } else { "bare" }, |b| {
            b.iter(|| one_log(&logger))
        });
        let _ = lp.shutdown();
    }
    g.finish();
}

/// Span throughput of 2 threads (wall time), with and without a third thread
/// flipping pause/resume every millisecond: a lock on the hot path would show here.
fn contention(c: &mut Criterion) {
    let mut g = c.benchmark_group("contention");
    for flip in [false, true] {
        let sessions = SessionManager::builder().build();
        let tp = provider("wrapper", &sessions);
        sessions.start_session().unwrap();
        g.bench_function(if flip { "flipping" } else { "steady" }, |b| {
            b.iter_custom(|iters| contention_run(&tp, &sessions, iters.div_ceil(2), flip))
        });
        let _ = tp.shutdown();
    }
    g.finish();
}

fn config() -> Criterion<ThreadCpuTime> {
    Criterion::default()
        .with_measurement(ThreadCpuTime)
        .sample_size(40)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
}

criterion_group! {
    name = cpu;
    config = config();
    targets = spans, logs
}
criterion_group! {
    name = wall;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    targets = contention
}
criterion_main!(cpu, wall);
