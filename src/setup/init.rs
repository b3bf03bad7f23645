//! What [`Builder::init`](crate::Builder::init) does: read the environment, build
//! tracer, logger and meter providers with the resource enricher, our processors
//! in their wrapper form and the exporters the environment asks for, set the
//! global tracer and meter providers and the global session manager, start the
//! first session in `app` mode, and return the [`Guard`] that ends the session
//! and shuts everything down when dropped.
//!
//! No `tracing` subscriber is installed: the guard hands out the layers
//! ([`Guard::tracing_layer`], [`Guard::log_layer`]) for your own subscriber.

use std::sync::Arc;
use std::time::Instant;

use opentelemetry::metrics::MeterProvider as _;
use opentelemetry_sdk::logs::{BatchLogProcessor, SdkLoggerProvider, SimpleLogProcessor};
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::{BatchSpanProcessor, SdkTracerProvider, SimpleSpanProcessor};
use opentelemetry_sdk::Resource;

use crate::setup::builder::{Builder, UserLogProcessor, UserSpanProcessor};
use crate::setup::config::{ExporterKind, SessionMode};
use crate::setup::console::{ConsoleLogExporter, ConsoleMetricExporter, ConsoleSpanExporter};
use crate::setup::error::{ExportError, InitError};
use crate::setup::export::{
    self, batch_settings_from_env, Counted, DeliveryStats, ExportRuntime, Handed, HandedCounter,
};
use crate::setup::guard::{Guard, LiveClaim};
use crate::setup::resource::SessionResourceDetector;

/// Where one signal goes once its exporter is built.
enum Out<E> {
    Console,
    Otlp(E),
}

/// The exporter, or a warning and `None` (the signal is then off).
fn usable<E>(signal: &str, built: Result<E, ExportError>) -> Option<E> {
    match built {
        Ok(e) => Some(e),
        Err(e) => {
            crate::warn::stderr(format_args!("{e}; {signal} are not exported"));
            None
        }
    }
}

fn warn_missing_version(b: &Builder) {
    let version_from_env = std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|v| {
        v.split(',')
            .any(|kv| kv.trim_start().starts_with("service.version="))
    });
    if b.service_version.is_none() && !version_from_env && !b.config.sdk_disabled {
        crate::warn::stderr(format_args!(
            "service.version is not set, so stability per release is unavailable; \
             use otel_session::init!() (it passes your CARGO_PKG_VERSION) or \
             Builder::with_service_version(..)"
        ));
    }
}

#[cfg(feature = "tracing")]
fn layer_settings(b: &Builder) -> crate::setup::layers::LayerSettings {
    let (directives, warnings) =
        crate::setup::layers::resolve_directives(b.tracing_filter.as_deref(), &|var| {
            std::env::var(var).ok()
        });
    for w in warnings {
        crate::warn::stderr(format_args!("{w}"));
    }
    crate::setup::layers::LayerSettings {
        directives,
        span_events: b.span_events,
    }
}

fn resource(b: &mut Builder) -> Resource {
    let mut detector =
        SessionResourceDetector::new().with_attributes(std::mem::take(&mut b.resource_attributes));
    if let Some(n) = &b.service_name {
        detector = detector.with_service_name(n.clone());
    }
    if let Some(v) = &b.service_version {
        detector = detector.with_service_version(v.clone());
    }
    if let Some(e) = &b.deployment_environment {
        detector = detector.with_deployment_environment(e.clone());
    }
    Resource::builder()
        .with_detector(Box::new(detector))
        .build()
}

/// Builds and installs everything (see the module docs).
pub(super) fn install(mut b: Builder) -> Result<Guard, InitError> {
    let live = LiveClaim::take().ok_or(InitError::AlreadyInitialized)?;
    for issue in &b.issues {
        crate::warn::stderr(format_args!("{issue}"));
    }
    warn_missing_version(&b);
    #[cfg(feature = "tracing")]
    let layers = layer_settings(&b);
    let config = b.config.clone();

    if config.sdk_disabled {
        let sessions = b.sessions.without_export().build();
        crate::set_global_manager(sessions.clone());
        if config.mode == SessionMode::App {
            sessions.start_session();
        }
        let mut guard = Guard::disabled(sessions, b.shutdown_timeout, live);
        #[cfg(feature = "tracing")]
        {
            guard.layers = layers;
        }
        guard.mark_init_done();
        return Ok(guard);
    }

    let resource = resource(&mut b);
    let mut rt: Option<Arc<ExportRuntime>> = None;
    let spans_stats = Arc::new(DeliveryStats::default());
    let logs_stats = Arc::new(DeliveryStats::default());
    let spans_handed = Arc::new(HandedCounter::new());
    let logs_handed = Arc::new(HandedCounter::new());

    // Exporters first: one that cannot be built (a bad endpoint, a transport
    // compiled out) turns its signal off with a warning; it never stops the app.
    let span_out = match config.traces_exporter {
        ExporterKind::Console => Some(Out::Console),
        ExporterKind::Otlp => {
            let t = export::transport_from_env("TRACES");
            usable("traces", export::otlp_spans(t, &mut rt)).map(Out::Otlp)
        }
        _ => None,
    };
    let log_out = match config.logs_exporter {
        ExporterKind::Console => Some(Out::Console),
        ExporterKind::Otlp => {
            let t = export::transport_from_env("LOGS");
            usable("logs", export::otlp_logs(t, &mut rt)).map(Out::Otlp)
        }
        _ => None,
    };
    let meter_provider = match config.metrics_exporter {
        ExporterKind::Console => Some(
            SdkMeterProvider::builder()
                .with_resource(resource.clone())
                .with_reader(PeriodicReader::builder(ConsoleMetricExporter).build())
                .build(),
        ),
        ExporterKind::Otlp => {
            let t = export::transport_from_env("METRICS");
            usable("metrics", export::otlp_metrics(t, &mut rt)).map(|exporter| {
                SdkMeterProvider::builder()
                    .with_resource(resource.clone())
                    .with_reader(PeriodicReader::builder(exporter).build())
                    .build()
            })
        }
        _ => None,
    };

    // The manager: a signal that is off is off for the lifecycle too (quietly).
    let traces_on = span_out.is_some() || !b.span_processors.is_empty();
    let logs_on = log_out.is_some() || !b.log_processors.is_empty();
    let mut sessions = b.sessions;
    if let Some(mp) = &meter_provider {
        sessions = sessions.with_meter(mp.meter(crate::model::attr::SCOPE_NAME));
    }
    if !traces_on {
        sessions = sessions.without_span_export();
    }
    if !logs_on {
        sessions = sessions.without_log_export();
    }
    let sessions = sessions.build();

    // Your processors first, each wrapped; then the exporting one. Each arm
    // registers its concrete processor: no boxing, no extra dynamic call per
    // span or record.
    let tracer_provider = traces_on.then(|| {
        let mut builder = SdkTracerProvider::builder().with_resource(resource.clone());
        if let Some(sampler) = b.sampler.take() {
            builder = builder.with_sampler(sampler);
        }
        for p in b.span_processors.drain(..) {
            builder = builder.with_span_processor(sessions.span_processor(UserSpanProcessor(p)));
        }
        match span_out {
            Some(Out::Console) => {
                builder.with_span_processor(sessions.span_processor(Handed::new(
                    SimpleSpanProcessor::new(Counted::new(
                        ConsoleSpanExporter,
                        Arc::clone(&spans_stats),
                    )),
                    Arc::clone(&spans_handed),
                )))
            }
            Some(Out::Otlp(exporter)) => {
                let batch = batch_settings_from_env(true);
                spans_stats.watch_drops(Arc::clone(&spans_handed), batch.capacity());
                builder.with_span_processor(
                    sessions.span_processor(Handed::new(
                        BatchSpanProcessor::builder(Counted::new(
                            exporter,
                            Arc::clone(&spans_stats),
                        ))
                        .with_batch_config(batch.span_config())
                        .build(),
                        Arc::clone(&spans_handed),
                    )),
                )
            }
            None => builder,
        }
        .build()
    });
    let logger_provider = logs_on.then(|| {
        let mut builder = SdkLoggerProvider::builder().with_resource(resource.clone());
        for p in b.log_processors.drain(..) {
            builder = builder.with_log_processor(sessions.log_processor(UserLogProcessor(p)));
        }
        match log_out {
            Some(Out::Console) => builder.with_log_processor(sessions.log_processor(Handed::new(
                SimpleLogProcessor::new(Counted::new(ConsoleLogExporter, Arc::clone(&logs_stats))),
                Arc::clone(&logs_handed),
            ))),
            Some(Out::Otlp(exporter)) => {
                let batch = batch_settings_from_env(false);
                logs_stats.watch_drops(Arc::clone(&logs_handed), batch.capacity());
                builder.with_log_processor(
                    sessions.log_processor(Handed::new(
                        BatchLogProcessor::builder(Counted::new(exporter, Arc::clone(&logs_stats)))
                            .with_batch_config(batch.log_config())
                            .build(),
                        Arc::clone(&logs_handed),
                    )),
                )
            }
            None => builder,
        }
        .build()
    });

    if let Some(tp) = &tracer_provider {
        opentelemetry::global::set_tracer_provider(tp.clone());
    }
    if let Some(mp) = &meter_provider {
        opentelemetry::global::set_meter_provider(mp.clone());
    }
    crate::set_global_manager(sessions.clone());
    if config.mode == SessionMode::App {
        sessions.start_session();
    }
    let mut guard = Guard {
        sessions,
        tracer_provider,
        logger_provider,
        meter_provider,
        runtime: rt,
        spans: spans_stats,
        logs: logs_stats,
        spans_handed,
        logs_handed,
        shutdown_timeout: b.shutdown_timeout,
        #[cfg(feature = "tracing")]
        layers,
        created: Instant::now(),
        handed_at_init: 0,
        done: false,
        _live: live,
    };
    guard.mark_init_done();
    Ok(guard)
}
