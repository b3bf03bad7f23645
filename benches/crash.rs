//! What crash reporting costs: `otel_session::heartbeat()` against the bare
//! relaxed atomic increment it is (same run, ratio), and what a panic's
//! backtrace costs to capture (on the panicking thread) and to resolve to
//! text (on the crash helper thread). Nothing here is on the span or log hot
//! path: those are measured by `interleaved` (callgrind, see BENCHMARKS.md).

use std::backtrace::Backtrace;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{criterion_group, criterion_main, Criterion};

static BARE: AtomicU64 = AtomicU64::new(1);

#[inline(never)]
fn deep(n: u32, f: &dyn Fn() -> Backtrace) -> Backtrace {
    if n == 0 {
        f()
    } else {
        black_box(deep(n - 1, f))
    }
}

fn heartbeat(c: &mut Criterion) {
    let mut g = c.benchmark_group("heartbeat");
    g.bench_function("bare-fetch-add", |b| {
        b.iter(|| black_box(BARE.fetch_add(1, Ordering::Relaxed)))
    });
    g.bench_function("heartbeat", |b| b.iter(otel_session::heartbeat));
    g.finish();
}

fn backtrace(c: &mut Criterion) {
    let mut g = c.benchmark_group("panic-backtrace");
    g.sample_size(20);
    // A stack about as deep as an app's (30 frames of ours, plus the harness).
    g.bench_function("capture", |b| {
        b.iter(|| deep(30, &Backtrace::force_capture))
    });
    g.bench_function("capture-and-resolve", |b| {
        b.iter(|| deep(30, &Backtrace::force_capture).to_string().len())
    });
    g.finish();
}

criterion_group!(benches, heartbeat, backtrace);
criterion_main!(benches);
