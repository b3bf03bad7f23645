//! The program the set-up end-to-end tests (`tests/e2e_setup.rs`) run as a child
//! process (not an example to copy; the README has the recipes): `e2e_setup
//! SCENARIO`, configured through the environment. It prints `KEY=value` lines for
//! the test, and `WAIT` when the test must act before it goes on.

use std::io::BufRead as _;

use opentelemetry::trace::TracerProvider as _;
use tracing_subscriber::layer::SubscriberExt as _;

fn wait_for_test() {
    println!("WAIT");
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
}

fn print_session() {
    println!(
        "SESSION={}",
        otel_session::current_session()
            .map(|s| s.id().to_string())
            .unwrap_or_default()
    );
}

/// The guard's layers, as the README's quickstart adds them.
fn subscribe(guard: &otel_session::Guard) {
    let subscriber = tracing_subscriber::registry()
        .with(guard.tracing_layer())
        .with(guard.log_layer());
    let _ = tracing::subscriber::set_global_default(subscriber);
}

/// What the guard's layers export: levels, each event once, the app's own
/// hyper/reqwest-target events, an error's span status.
fn levels() {
    let guard = otel_session::init!().expect("init");
    subscribe(&guard);
    println!("FILTER={}", guard.tracing_filter());
    tracing::info_span!("levels-span").in_scope(|| {
        tracing::trace!("trace event");
        tracing::debug!("debug event");
        tracing::info!("info event");
        tracing::info!(target: "hyper::client", "app hyper event");
        tracing::info!(target: "reqwest::connect", "app reqwest event");
        tracing::error!("error event");
    });
    tracing::trace_span!("trace-span").in_scope(|| {});
    print_session();
}

/// Logs with the collector down, then (after the test starts it) up, with
/// `RUST_LOG=trace`: nothing of the export stack's own comes back as telemetry.
fn outage() {
    let guard = otel_session::init!().expect("init");
    subscribe(&guard);
    for i in 0..20 {
        tracing::info_span!("while-down").in_scope(|| tracing::info!("while down {i}"));
    }
    let _ = guard.logger_provider().map(|p| p.force_flush());
    let _ = guard.tracer_provider().map(|p| p.force_flush());
    wait_for_test();
    for i in 0..20 {
        tracing::info_span!("after-up").in_scope(|| tracing::info!("after up {i}"));
    }
    let _ = guard.logger_provider().map(|p| p.force_flush());
    let _ = guard.tracer_provider().map(|p| p.force_flush());
    // Idle a while with the collector up: any feedback would keep exporting.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    print_session();
}

/// `let _ = init!()`: the guard is gone at once; the program runs on.
#[allow(clippy::let_underscore_must_use)]
fn dropped_at_once() {
    let _ = otel_session::init!();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    println!("DONE=1");
}

/// A program that keeps its guard but exits at once without telemetry (`--help`).
fn quiet() {
    let _guard = otel_session::init!().expect("init");
    println!("DONE=1");
}

/// The init-tracing-opentelemetry recipe: its OpenTelemetry off, our layers in
/// its subscriber (README, "Composition").
fn init_tracing_recipe() {
    let guard = otel_session::init!().expect("init");
    let _tracing = init_tracing_opentelemetry::TracingConfig::production()
        .with_stderr()
        .with_quiet_init(true)
        .with_otel(false)
        .init_subscriber_ext(|registry| {
            registry.with(guard.tracing_layer()).with(guard.log_layer())
        })
        .expect("subscriber");
    tracing::info_span!("composed-work").in_scope(|| tracing::info!("composed log"));
    print_session();
}

/// Another OpenTelemetry layer, on a provider of its own.
fn theirs<S>(
    provider: &opentelemetry_sdk::trace::SdkTracerProvider,
) -> tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::SdkTracer>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    tracing_opentelemetry::layer().with_tracer(provider.tracer("theirs"))
}

/// Two OpenTelemetry layers in one subscriber, in the order `how` says: no panic,
/// a warning, the other layer keeps working.
fn two_layers(how: &str) {
    let guard = otel_session::init!().expect("init");
    let other = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    let work = || {
        tracing::info_span!("doubled").in_scope(|| tracing::info!("inside"));
        tracing::info_span!("doubled-again").in_scope(|| {});
    };
    match how {
        // init-tracing-opentelemetry with its OpenTelemetry on, ours added in
        // `init_subscriber_ext`: its layer is outside ours.
        "init-tracing" => {
            let _tracing = init_tracing_opentelemetry::TracingConfig::production()
                .with_stderr()
                .with_quiet_init(true)
                .init_subscriber_ext(|registry| {
                    registry.with(guard.tracing_layer()).with(guard.log_layer())
                })
                .expect("subscriber");
            work();
        }
        "ours-inside" => {
            let s = tracing_subscriber::registry()
                .with(guard.tracing_layer())
                .with(theirs(&other));
            tracing::subscriber::with_default(s, work);
        }
        _ => {
            let s = tracing_subscriber::registry()
                .with(theirs(&other))
                .with(guard.tracing_layer());
            tracing::subscriber::with_default(s, work);
        }
    }
    println!("SURVIVED=1");
}

/// The standalone recipe for providers built with `with_batch_exporter`: the
/// enricher first, the exporters from `otel_session::export::ExporterBuilder`.
fn standalone_recipe() {
    use opentelemetry_sdk::logs::{BatchLogProcessor, SdkLoggerProvider};
    use opentelemetry_sdk::trace::{BatchSpanProcessor, SdkTracerProvider};

    // App mode: the first session starts here; its lifecycle waits for the
    // lifecycle processors below.
    let sessions = otel_session::SessionManager::builder().build();
    let mut exporters = otel_session::export::ExporterBuilder::from_env();
    let tracer_provider = SdkTracerProvider::builder()
        .with_span_processor(
            sessions
                .standalone_span_processor()
                .with_lifecycle_processor(
                    BatchSpanProcessor::builder(exporters.span_exporter().expect("span exporter"))
                        .build(),
                ),
        )
        .with_batch_exporter(exporters.span_exporter().expect("span exporter"))
        .build();
    let logger_provider = SdkLoggerProvider::builder()
        .with_log_processor(
            sessions
                .standalone_log_processor()
                .with_lifecycle_processor(
                    BatchLogProcessor::builder(exporters.log_exporter().expect("log exporter"))
                        .build(),
                ),
        )
        .with_batch_exporter(exporters.log_exporter().expect("log exporter"))
        .build();
    otel_session::set_global_manager(sessions.clone());
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(tracer_provider.tracer("app")))
        .with(
            opentelemetry_appender_tracing::layer::OpenTelemetryTracingBridge::new(
                &logger_provider,
            ),
        );
    tracing::subscriber::with_default(subscriber, || {
        tracing::info_span!("standalone-work").in_scope(|| tracing::info!("standalone log"));
    });
    print_session();
    let _ = tracer_provider.shutdown();
    let _ = logger_provider.shutdown();
}

fn main() {
    let scenario = std::env::args().nth(1).unwrap_or_default();
    match scenario.as_str() {
        "levels" => levels(),
        "outage" => outage(),
        "dropped-at-once" => dropped_at_once(),
        "quiet" => quiet(),
        "init-tracing" => init_tracing_recipe(),
        "standalone" => standalone_recipe(),
        other => match other.strip_prefix("two-layers:") {
            Some(how) => two_layers(how),
            None => {
                eprintln!("unknown scenario {other:?}");
                std::process::exit(2);
            }
        },
    }
}
