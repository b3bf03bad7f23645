//! Crash reports, each in a child process of this example (the ones that die
//! must not take the tour with them):
//!
//! ```text
//! cargo run --example crash                     # the tour, on the console
//! OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 cargo run --example crash
//! cargo run --example crash -- panic            # one step: panic, worker,
//!                                               # segv, abort, overflow,
//!                                               # hang, hang-forever, report
//! ```
//!
//! - `panic`: a panic on the main thread, inside a span: one FATAL `exception`
//!   record (message, file and line, thread, backtrace, the span's trace),
//!   the session ends `crashed` (reason `crash`), all flushed before the exit.
//! - `worker`: a panic on a worker thread: an ERROR record; the session goes on.
//! - `segv`, `abort`, `overflow`: native crashes (no Rust panic: a signal).
//!   With persistence (this example keeps its session file in the temp
//!   directory unless `OTEL_SESSION_PERSIST_PATH` says where), the handler
//!   leaves a crash marker; the **next start** (`report`) ends the dead
//!   session `crashed` (reason `crash`) and sends an `app.crash` record naming
//!   the signal.
//! - `hang`: a UI loop calling `otel_session::heartbeat()` every 16 ms blocks
//!   for 6 s: one `app.jank` record (type `frozen`, ~6 s) when it recovers.
//! - `hang-forever`: blocks until killed; the next start reports reason `hang`.

use std::process::Command;
use std::time::{Duration, Instant};

use otel_session::config::ExporterKind;
use tracing_subscriber::layer::SubscriberExt as _;

/// Where the session file lives (the crash marker sits next to it).
fn session_file() -> String {
    std::env::var("OTEL_SESSION_PERSIST_PATH").unwrap_or_else(|_| {
        std::env::temp_dir()
            .join("otel-session-crash-example.json")
            .display()
            .to_string()
    })
}

#[inline(never)]
fn parse_config(text: &str) -> u32 {
    text.parse().expect("the config holds a number")
}

/// Recursion with no end in sight (the bound is never reached).
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    let buffer = std::hint::black_box([depth; 512]);
    if std::hint::black_box(depth) == u64::MAX {
        return buffer[7];
    }
    recurse(depth + 1) + buffer[7]
}

/// One frame of a UI loop that takes `frame` to draw.
fn ui_loop(frames: u32, frame: Duration, stall_at: Option<(u32, Duration)>) {
    for i in 0..frames {
        otel_session::heartbeat();
        if let Some((at, stall)) = stall_at {
            if i == at {
                println!("   frame {i}: blocking the UI thread for {stall:?}");
                std::thread::sleep(stall);
            }
        }
        std::thread::sleep(frame);
    }
}

fn step(name: &str) {
    let to_collector = std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_some();
    let guard = otel_session::Builder::from_env()
        .with_service_name("crash-example")
        .with_service_version(env!("CARGO_PKG_VERSION"))
        .configure(|c| {
            if !to_collector {
                c.traces_exporter = ExporterKind::Console;
                c.logs_exporter = ExporterKind::Console;
                c.metrics_exporter = ExporterKind::None;
            }
            // Native crashes are found by the next start: it reads the
            // session file and the crash marker next to it.
            if ["segv", "abort", "overflow", "hang-forever", "report"].contains(&name) {
                c.persist_path = Some(session_file().into());
            }
        })
        .init()
        .expect("telemetry set up");
    let subscriber = tracing_subscriber::registry()
        .with(guard.tracing_layer())
        .with(guard.log_layer());
    tracing::subscriber::set_global_default(subscriber).expect("subscriber");
    let session = otel_session::current_session().expect("a session");
    println!("SESSION={}", session.id());
    match name {
        "panic" => {
            tracing::info_span!("load-config").in_scope(|| parse_config("not a number"));
        }
        "worker" => {
            let worker = std::thread::Builder::new()
                .name("importer".into())
                .spawn(|| parse_config("12x"))
                .expect("thread");
            let _ = worker.join();
            let now = otel_session::current_session().expect("still running");
            println!("   the session goes on: {} ({})", now.id(), now.status());
        }
        "segv" => {
            println!("   raising SIGSEGV (as a bad pointer in a C library would)");
            // SAFETY: raise(3) on ourselves; the handler records it and the
            // default action ends the process.
            #[cfg(unix)]
            unsafe {
                libc::raise(libc::SIGSEGV);
            }
        }
        "abort" => std::process::abort(),
        "overflow" => {
            let t = std::thread::Builder::new()
                .name("deep".into())
                .stack_size(256 * 1024)
                .spawn(|| recurse(0))
                .expect("thread");
            let _ = t.join();
        }
        "hang" => ui_loop(
            200,
            Duration::from_millis(16),
            Some((30, Duration::from_secs(6))),
        ),
        "hang-forever" => {
            ui_loop(10, Duration::from_millis(16), None);
            println!("HANGING");
            std::thread::sleep(Duration::from_secs(3600));
        }
        "report" => println!("   a new start: the last run's end goes out first"),
        other => println!("unknown step {other:?}"),
    }
    drop(guard);
}

fn main() {
    if let Some(name) = std::env::args().nth(1) {
        return step(&name);
    }
    // The tour: each step in a child process.
    let me = std::env::current_exe().expect("this program");
    for name in ["worker", "segv", "report", "hang", "panic"] {
        println!("\n== {name}");
        let started = Instant::now();
        let status = Command::new(&me).arg(name).status().expect("run a step");
        println!("   -> {status} after {:.1?}", started.elapsed());
    }
}
