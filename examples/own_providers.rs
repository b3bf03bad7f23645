//! The README's "Alongside your own providers" recipe, verbatim (a test keeps
//! the two the same, and runs this through rotel): your own tracer and logger
//! providers, their exporting processors wrapped by the session manager, the
//! exporters from `ExporterBuilder`, the `tracing` layers, and the shutdown.
//!
//! ```text
//! OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 cargo run --example own_providers
//! ```

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::logs::{BatchLogProcessor, SdkLoggerProvider};
use opentelemetry_sdk::trace::{BatchSpanProcessor, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use otel_session::export::{log_batch_config, span_batch_config, ExporterBuilder};
use otel_session::{SessionManager, SessionResourceDetector};
use tracing_subscriber::layer::SubscriberExt as _;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let resource = Resource::builder()
        .with_detector(Box::new(
            SessionResourceDetector::new()
                .with_service_name(env!("CARGO_PKG_NAME"))
                .with_service_version(env!("CARGO_PKG_VERSION")),
        ))
        .build();
    // App mode: its first session starts here. The resource names this
    // instance in a native crash report its next start sends (see "Crashes").
    let sessions = SessionManager::builder()
        .with_crash_identity(&resource)
        .build();
    let mut exporters = ExporterBuilder::from_env(); // errors: otel_session::export::ExportError
    let tracer_provider = SdkTracerProvider::builder()
        .with_resource(resource.clone())
        .with_span_processor(
            sessions.span_processor(
                // span_exporter: what it exports confirms the session ends
                // persistence keeps (each end delivered once; see "Exits and
                // persistence")
                BatchSpanProcessor::builder(sessions.span_exporter(exporters.span_exporter()?))
                    .with_batch_config(span_batch_config())
                    .build(),
            ),
        )
        .build();
    let logger_provider = SdkLoggerProvider::builder()
        .with_resource(resource)
        .with_log_processor(
            sessions.log_processor(
                BatchLogProcessor::builder(exporters.log_exporter()?)
                    .with_batch_config(log_batch_config())
                    .build(),
            ),
        )
        .build();
    otel_session::set_global_manager(sessions.clone()); // for the crate-root verbs

    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(tracer_provider.tracer("my-app")))
        .with(
            opentelemetry_appender_tracing::layer::OpenTelemetryTracingBridge::new(
                &logger_provider,
            ),
        );
    tracing::subscriber::set_global_default(subscriber)?;

    tracing::info_span!("work").in_scope(|| tracing::info!("carries session.id"));

    // Before main returns: this ends the session (reason `shutdown`) and exports
    // what is queued. Without it, nothing queued is sent: the global subscriber
    // holds the tracer, so the providers are never dropped.
    tracer_provider.shutdown()?;
    logger_provider.shutdown()?;
    Ok(())
}
