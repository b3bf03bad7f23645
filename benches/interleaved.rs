//! Cross-check of `overhead.rs`, built to survive a noisy 2-core VM: each form
//! runs 200k spans per round, forms interleaved (order rotated each round) so drift
//! hits all of them alike, time is the calling thread's CPU time, and each ratio is
//! taken within a round and then the median over 31 rounds. Prints ns per span and
//! the ratios. Run: `cargo bench --bench interleaved`.
//!
//! `--only FORM full|spare N` runs one form for instruction counting under
//! callgrind (see BENCHMARKS.md).

mod common;

use common::{
    attrs, contention_run, log_batch, one_log, provider, stamping, thread_cpu, ConstLogWrapper,
    FORMS,
};
use opentelemetry::logs::LoggerProvider as _;
use opentelemetry::trace::{Span as _, Tracer as _, TracerProvider as _};
use opentelemetry_sdk::logs::{SdkLogger, SdkLoggerProvider};
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use otel_session::SessionManager;

/// Spans (and log records) per round, and rounds: `cargo bench` runs the full
/// measurement; `cargo test --all-targets` (no `--bench` argument) only a smoke run.
fn sizes() -> (usize, usize) {
    if std::env::args().any(|a| a == "--bench") {
        (200_000, 31)
    } else {
        (1_000, 1)
    }
}

fn run(tracer: &SdkTracer, spare: bool) -> f64 {
    let spans = sizes().0;
    let start = thread_cpu();
    counted_run(tracer, spare, spans);
    (thread_cpu() - start).as_nanos() as f64 / spans as f64
}

fn run_logs(logger: &SdkLogger) -> f64 {
    let records = sizes().0;
    let start = thread_cpu();
    for _ in 0..records {
        one_log(logger);
    }
    (thread_cpu() - start).as_nanos() as f64 / records as f64
}

/// Wall time per span of 2 threads making spans, with or without the flipper.
fn run_contention(tp: &SdkTracerProvider, sessions: &SessionManager, flip: bool) -> f64 {
    let spans = sizes().0;
    let took = contention_run(tp, sessions, (spans / 2) as u64, flip);
    took.as_nanos() as f64 / spans as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

#[inline(never)]
fn counted_logs(logger: &SdkLogger, n: usize) {
    for _ in 0..n {
        one_log(logger);
    }
}

#[inline(never)]
fn counted_run(tracer: &SdkTracer, spare: bool, spans: usize) {
    for _ in 0..spans {
        let mut span = tracer
            .span_builder("op")
            .with_attributes(attrs(spare))
            .start(tracer);
        span.end();
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        return;
    }
    // `--only FORM full|spare N`: N spans of one form, for instruction counting
    // under `valgrind --tool=callgrind --toggle-collect='*counted_run*'`.
    if let Some(i) = args.iter().position(|a| a == "--only") {
        let form = args.get(i + 1).map(String::as_str).unwrap_or("wrapper");
        let spare = args.get(i + 2).map(String::as_str) == Some("spare");
        let n = args
            .get(i + 3)
            .and_then(|v| v.parse().ok())
            .unwrap_or(100_000);
        let sessions = SessionManager::builder().build();
        let p = provider(form, &sessions);
        sessions.start_session().unwrap();
        let tracer = p.tracer("bench");
        counted_run(&tracer, spare, n);
        let _ = p.shutdown();
        return;
    }
    // `--only-logs bare|wrapper N`: N log records, for instruction counting
    // under `valgrind --tool=callgrind --toggle-collect='*counted_logs*'`.
    if let Some(i) = args.iter().position(|a| a == "--only-logs") {
        let form = args.get(i + 1).map(String::as_str).unwrap_or("wrapper");
        let n = args
            .get(i + 2)
            .and_then(|v| v.parse().ok())
            .unwrap_or(100_000);
        let sessions = SessionManager::builder().build();
        let lp = match form {
            "wrapper" => SdkLoggerProvider::builder()
                .with_log_processor(sessions.log_processor(log_batch()))
                .build(),
            "wrapper_stamp1" => SdkLoggerProvider::builder()
                .with_log_processor(stamping(1).log_processor(log_batch()))
                .build(),
            "const2" => SdkLoggerProvider::builder()
                .with_log_processor(ConstLogWrapper::<_, true>(log_batch()))
                .build(),
            "const" => SdkLoggerProvider::builder()
                .with_log_processor(ConstLogWrapper::<_, false>(log_batch()))
                .build(),
            _ => SdkLoggerProvider::builder()
                .with_log_processor(log_batch())
                .build(),
        };
        counted_logs(&lp.logger("bench"), n);
        let _ = lp.shutdown();
        return;
    }
    let forms = FORMS;
    for spare in [false, true] {
        let sessions = SessionManager::builder().build();
        let providers: Vec<SdkTracerProvider> =
            forms.iter().map(|f| provider(f, &sessions)).collect();
        sessions.start_session().unwrap();
        let tracers: Vec<_> = providers.iter().map(|p| p.tracer("bench")).collect();
        let mut results = vec![Vec::new(); forms.len()];
        for round in 0..sizes().1 {
            // Rotate the order each round so no form always runs first.
            for k in 0..forms.len() {
                let i = (k + round) % forms.len();
                results[i].push(run(&tracers[i], spare));
                // Let the batch thread drain before the next form runs.
                let _ = providers[i].force_flush();
            }
        }
        let vec = if spare { "spare" } else { "full" };
        // Ratios are paired within a round (same conditions), then the median.
        let paired = |i: usize, base: usize| {
            median(
                results[i]
                    .iter()
                    .zip(&results[base])
                    .map(|(a, b)| a / b)
                    .collect(),
            )
        };
        for (i, f) in forms.iter().enumerate() {
            println!(
                "{vec:5} {f:14} {:7.1} ns/span  {:.3}x bare  {:.3}x const",
                median(results[i].clone()),
                paired(i, 0),
                paired(i, 1)
            );
        }
        println!(
            "{vec:5} app-mode tracking: wrapper / wrapper_untimed {:.3}x",
            paired(2, 3)
        );
        println!(
            "{vec:5} sampler at 1.0 + persistence + panic hook: wrapper_stability / wrapper {:.3}x",
            paired(4, 2)
        );
        for p in providers {
            let _ = p.shutdown();
        }
    }

    // Log emit: bare batch pipeline, the constant-attribute floor and wrapped,
    // rotated and paired per round.
    let sessions = SessionManager::builder().build();
    let log_forms = [
        SdkLoggerProvider::builder()
            .with_log_processor(log_batch())
            .build(),
        SdkLoggerProvider::builder()
            .with_log_processor(ConstLogWrapper::<_, false>(log_batch()))
            .build(),
        SdkLoggerProvider::builder()
            .with_log_processor(sessions.log_processor(log_batch()))
            .build(),
    ];
    let loggers: Vec<_> = log_forms.iter().map(|p| p.logger("bench")).collect();
    let mut lr = vec![Vec::new(); 3];
    for round in 0..sizes().1 {
        for k in 0..3 {
            let i = (k + round) % 3;
            lr[i].push(run_logs(&loggers[i]));
            let _ = log_forms[i].force_flush();
        }
    }
    let pair = |a: usize, b: usize| median(lr[a].iter().zip(&lr[b]).map(|(x, y)| x / y).collect());
    println!(
        "log   bare {:7.1} ns/record, floor {:7.1}, wrapper {:7.1}  wrapper {:.3}x bare, {:.3}x floor",
        median(lr[0].clone()),
        median(lr[1].clone()),
        median(lr[2].clone()),
        pair(2, 0),
        pair(2, 1)
    );
    for p in log_forms {
        let _ = p.shutdown();
    }

    // Stamped session attributes (OTEL_SESSION_STAMP_ATTRIBUTES): what one
    // and two stamped keys add to the wrapper, against what one more
    // constant attribute adds to the floor; rotated and paired per round.
    for spare in [false, true] {
        let sessions = SessionManager::builder().build();
        let forms = [
            "const_wrapper",
            "const_wrapper2",
            "wrapper",
            "wrapper_stamp1",
            "wrapper_stamp2",
        ];
        let providers: Vec<_> = forms.iter().map(|f| provider(f, &sessions)).collect();
        sessions.start_session().unwrap();
        let tracers: Vec<_> = providers.iter().map(|p| p.tracer("bench")).collect();
        let mut r = vec![Vec::new(); forms.len()];
        for round in 0..sizes().1 {
            for k in 0..forms.len() {
                let i = (k + round) % forms.len();
                r[i].push(run(&tracers[i], spare));
                let _ = providers[i].force_flush();
            }
        }
        let pair =
            |a: usize, b: usize| median(r[a].iter().zip(&r[b]).map(|(x, y)| x / y).collect());
        let vec = if spare { "spare" } else { "full" };
        println!(
            "{vec:5} stamped: one key / wrapper {:.3}x, two keys / wrapper {:.3}x; one more \
             constant / floor {:.3}x  (ns: floor {:.1}, floor+1 {:.1}, wrapper {:.1}, +1 key {:.1}, \
             +2 keys {:.1})",
            pair(3, 2),
            pair(4, 2),
            pair(1, 0),
            median(r[0].clone()),
            median(r[1].clone()),
            median(r[2].clone()),
            median(r[3].clone()),
            median(r[4].clone())
        );
        for p in providers {
            let _ = p.shutdown();
        }
    }

    // Contention: 2 span threads, with and without a pause/resume flipper.
    let sessions = SessionManager::builder().build();
    let tp = provider("wrapper", &sessions);
    sessions.start_session().unwrap();
    let (mut steady, mut flipping) = (Vec::new(), Vec::new());
    for round in 0..sizes().1 {
        if round % 2 == 0 {
            steady.push(run_contention(&tp, &sessions, false));
            flipping.push(run_contention(&tp, &sessions, true));
        } else {
            flipping.push(run_contention(&tp, &sessions, true));
            steady.push(run_contention(&tp, &sessions, false));
        }
        let _ = tp.force_flush();
    }
    let ratio = median(steady.iter().zip(&flipping).map(|(s, f)| s / f).collect());
    println!(
        "contention steady {:6.1} ns/span, flipping {:6.1} ns/span  throughput {ratio:.3}x",
        median(steady),
        median(flipping)
    );
    let _ = tp.shutdown();
}
