//! The program the end-to-end tests run as a child process (not an example to
//! copy): `e2e_child SCENARIO`, configured only through the environment, exactly
//! as a user's program would be with `otel_session::init!()`. It prints
//! `KEY=value` lines for the test to check, and `WAIT` when it wants the test to
//! act before it goes on (it then reads a line from stdin).

use std::io::BufRead as _;

use tracing_subscriber::layer::SubscriberExt as _;

fn wait_for_test() {
    println!("WAIT");
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
}

/// `init!()` inside a current-thread tokio runtime, spans from async code, and
/// the guard dropped inside the runtime: no "no reactor running", no stall.
fn in_tokio_current_thread() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let guard = otel_session::init!().expect("init inside a runtime");
        let subscriber = tracing_subscriber::registry()
            .with(guard.tracing_layer())
            .with(guard.log_layer());
        let _default = tracing::subscriber::set_default(subscriber);
        for i in 0..3 {
            use tracing::Instrument as _;
            async {
                tokio::task::yield_now().await;
                tracing::info!("async work");
            }
            .instrument(tracing::info_span!("async-work", i))
            .await;
        }
        println!(
            "SESSION={}",
            otel_session::current_session()
                .map(|s| s.id().to_string())
                .unwrap_or_default()
        );
        drop(guard);
    });
}

fn main() {
    let scenario = std::env::args().nth(1).unwrap_or_default();
    if scenario == "tokio-current-thread" {
        return in_tokio_current_thread();
    }
    let guard = if scenario == "no-version" {
        otel_session::init()
    } else {
        otel_session::init!()
    };
    let guard = match guard {
        Ok(g) => g,
        Err(e) => {
            println!("INIT_ERROR={e}");
            return;
        }
    };
    let subscriber = tracing_subscriber::registry()
        .with(guard.tracing_layer())
        .with(guard.log_layer());
    let _ = tracing::subscriber::set_global_default(subscriber);

    match scenario.as_str() {
        // Spans, logs, pause/resume and a replacing start; the guard's drop ends
        // the second session (reason shutdown) as main returns.
        "basic" => {
            let a = otel_session::current_session().expect("app mode starts a session");
            println!("A={}", a.id());
            tracing::info_span!("a-work").in_scope(|| {
                tracing::info!("hello from A");
                tracing::error!("failure in A");
            });
            otel_session::pause_session();
            tracing::info_span!("paused-work").in_scope(|| tracing::info!("while paused"));
            otel_session::resume_session();
            tracing::info_span!("a-after-resume").in_scope(|| {});
            let b = otel_session::start_session().expect("b");
            println!("B={}", b.id());
            tracing::info_span!("b-work").in_scope(|| tracing::info!("hello from B"));
        }
        // A tight loop of spans (collector up or down).
        "burst" => {
            let n: usize = std::env::var("E2E_SPANS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(100_000);
            let started = std::time::Instant::now();
            for i in 0..n {
                tracing::info_span!("burst", i).in_scope(|| {});
            }
            println!(
                "BURST_NS_PER_SPAN={}",
                started.elapsed().as_nanos() / n.max(1) as u128
            );
            if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
                if let Some(rss) = status.lines().find(|l| l.starts_with("VmHWM:")) {
                    println!("PEAK_RSS={}", rss.trim_start_matches("VmHWM:").trim());
                }
            }
        }
        // Telemetry while the collector is down, then (after the test starts it)
        // more telemetry that must arrive.
        "phases" => {
            for _ in 0..100 {
                tracing::info_span!("while-down").in_scope(|| {});
            }
            let _ = guard.tracer_provider().map(|p| p.force_flush());
            wait_for_test();
            for _ in 0..100 {
                tracing::info_span!("after-up").in_scope(|| {});
            }
            let _ = guard.tracer_provider().map(|p| p.force_flush());
            let d = guard.span_delivery();
            println!("HANDED={}", d.handed);
            println!("EXPORTED={}", d.exported);
            println!("FAILED={}", d.failed);
        }
        // The Debug output of everything the program can reach (must show no
        // header values), then one span and one log.
        "debug" => {
            println!("DEBUG_GUARD={guard:?}");
            println!("DEBUG_TRACER={:?}", guard.tracer_provider());
            println!("DEBUG_LOGGER={:?}", guard.logger_provider());
            println!("DEBUG_METER={:?}", guard.meter_provider());
            tracing::info_span!("plain").in_scope(|| tracing::info!("plain log"));
        }
        // Whatever the environment says; one span and one log.
        _ => {
            tracing::info_span!("plain").in_scope(|| tracing::info!("plain log"));
            println!(
                "SESSION={}",
                otel_session::current_session()
                    .map(|s| s.id().to_string())
                    .unwrap_or_default()
            );
        }
    }
}
