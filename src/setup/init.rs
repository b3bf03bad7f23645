//! What [`Builder::init`](crate::Builder::init) does: read the environment, build
//! tracer, logger and meter providers with the resource enricher, our processors
//! in their wrapper form and the exporters the environment asks for, set the
//! global tracer and meter providers and the global session manager (whose first
//! session starts at build in `app` mode), install the panic hook, and return the
//! [`Guard`] that ends the session and shuts everything down when dropped.
//!
//! No `tracing` subscriber is installed: the guard hands out the layers
//! ([`Guard::tracing_layer`], [`Guard::log_layer`]) for your own subscriber.

use std::sync::Arc;
use std::time::Instant;

use opentelemetry::metrics::MeterProvider as _;
use opentelemetry_sdk::logs::{BatchLogProcessor, SdkLoggerProvider, SimpleLogProcessor};
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::{
    BatchSpanProcessor, SdkTracerProvider, ShouldSample, SimpleSpanProcessor,
};
use opentelemetry_sdk::Resource;

use crate::core::manager::{SessionManager, SessionManagerBuilder};
use crate::setup::builder::{Builder, SessionsFn, UserLogProcessor, UserSpanProcessor};
use crate::setup::config::{ExporterKind, SessionConfig};
use crate::setup::console::{ConsoleLogExporter, ConsoleMetricExporter, ConsoleSpanExporter};
use crate::setup::error::InitError;
use crate::setup::export::{
    self, batch_settings_from_env, Counted, DeliveryStats, Handed, HandedCounter, OtlpPlan, Signal,
};
use crate::setup::guard::{Guard, LiveClaim};
use crate::setup::resource::SessionResourceDetector;

/// Where one signal goes once its exporter is built.
enum Out<E> {
    Console,
    Otlp(E),
}

/// Warns when the resource has no `service.version` (whether it came from the
/// builder, its resource attributes or `OTEL_RESOURCE_ATTRIBUTES`).
fn warn_missing_version(resource: &Resource) {
    if resource
        .get(&opentelemetry::Key::from_static_str("service.version"))
        .is_none()
    {
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

/// The session manager's builder: the configuration's tracking settings, then
/// what the code asked for with [`Builder::with_sessions`] (code wins).
fn sessions_builder(config: &SessionConfig, code: Vec<SessionsFn>) -> SessionManagerBuilder {
    let mut builder = SessionManager::builder()
        .with_mode(config.mode)
        .with_inactivity_timeout(config.inactivity_timeout)
        .with_max_duration(config.max_duration)
        .with_background_timeout(config.background_timeout)
        .with_propagation(config.propagate)
        .with_request_ids(config.request_ids)
        .with_stamped_attributes(&config.stamp_attributes)
        .with_metrics_split(config.metrics_split.as_deref())
        .with_error_sources(config.error_sources)
        .with_sample_ratio(config.sample_ratio)
        .with_crash_backtraces(config.crash_backtrace)
        .with_exception_span_events(config.exception_span_events)
        .with_hang_threshold(config.hang_threshold)
        .with_native_crashes(config.native_crashes);
    // Opened at build, by the mode the code leaves (request mode persists
    // nothing, and `build()` says so).
    if let Some(path) = &config.persist_path {
        builder = builder.with_persistence(path);
    }
    for f in code {
        builder = f(builder);
    }
    builder
}

/// Builds and installs everything (see the module docs).
pub(super) fn install(mut b: Builder) -> Result<Guard, InitError> {
    let live = LiveClaim::take().ok_or(InitError::AlreadyInitialized)?;
    for issue in &b.issues {
        crate::warn::stderr(format_args!("{issue}"));
    }
    // (Settings the mode makes meaningless are reported by the manager's build.)
    let config = b.config.clone();
    #[cfg(feature = "tracing")]
    let layers = layer_settings(&b);
    let code = std::mem::take(&mut b.sessions);

    if config.sdk_disabled {
        let sessions = sessions_builder(&config, code).without_export().build();
        crate::set_global_manager(sessions.clone());
        crate::stability::panic::install(&sessions, None);
        let mut guard = Guard::disabled(sessions, b.shutdown_timeout, live);
        #[cfg(feature = "tracing")]
        {
            guard.layers = layers;
        }
        guard.mark_init_done();
        return Ok(guard);
    }

    let resource = resource(&mut b);
    warn_missing_version(&resource);
    let spans_stats = Arc::new(DeliveryStats::default());
    let logs_stats = Arc::new(DeliveryStats::default());
    let metrics_stats = Arc::new(DeliveryStats::default());
    let spans_handed = Arc::new(HandedCounter::new());
    let logs_handed = Arc::new(HandedCounter::new());

    // Exporters first: one that cannot be built (a bad endpoint, an unreadable
    // TLS file, a transport compiled out) turns its signal off with a warning
    // (one per cause); it never stops the app. OTLP exporters come wrapped in
    // `Counted` (retries, diagnostics, counts), exactly as the ExporterBuilder
    // gives them.
    let mut otlp = OtlpPlan::from_env([
        config.traces_exporter == ExporterKind::Otlp,
        config.logs_exporter == ExporterKind::Otlp,
        config.metrics_exporter == ExporterKind::Otlp,
    ]);
    let span_out = match config.traces_exporter {
        ExporterKind::Console => Some(Out::Console),
        ExporterKind::Otlp => otlp
            .build(Signal::Traces, &spans_stats, export::otlp_spans)
            .map(Out::Otlp),
        _ => None,
    };
    let log_out = match config.logs_exporter {
        ExporterKind::Console => Some(Out::Console),
        ExporterKind::Otlp => otlp
            .build(Signal::Logs, &logs_stats, export::otlp_logs)
            .map(Out::Otlp),
        _ => None,
    };
    let meter_provider = match config.metrics_exporter {
        ExporterKind::Console => Some(
            SdkMeterProvider::builder()
                .with_resource(resource.clone())
                .with_reader(
                    PeriodicReader::builder(Counted::new(
                        ConsoleMetricExporter,
                        Arc::clone(&metrics_stats),
                    ))
                    .build(),
                )
                .build(),
        ),
        ExporterKind::Otlp => otlp
            .build(Signal::Metrics, &metrics_stats, export::otlp_metrics)
            .map(|exporter| {
                SdkMeterProvider::builder()
                    .with_resource(resource.clone())
                    .with_reader(PeriodicReader::builder(exporter).build())
                    .build()
            }),
        _ => None,
    };
    otlp.report_failures();

    // The manager: a signal that is off is off for the lifecycle too (quietly).
    let traces_on = span_out.is_some() || !b.span_processors.is_empty();
    let logs_on = log_out.is_some() || !b.log_processors.is_empty();
    let mut sessions = sessions_builder(&config, code).with_crash_identity(&resource);
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
        // Session sampling wraps the builder's sampler, else OTEL_TRACES_SAMPLER's
        // (read by our config, case ignored, not by the SDK).
        let inner: Box<dyn ShouldSample> = b
            .sampler
            .take()
            .unwrap_or_else(|| Box::new(config.traces_sampler.to_sampler()));
        // At a ratio of 1.0 every session is kept: the inner sampler alone (no
        // extra dynamic call per span).
        let sampler: Box<dyn ShouldSample> = if sessions.samples_sessions() {
            Box::new(sessions.sampler(inner))
        } else {
            inner
        };
        let mut builder = SdkTracerProvider::builder()
            .with_resource(resource.clone())
            .with_sampler(sampler);
        for p in b.span_processors.drain(..) {
            builder = builder.with_span_processor(sessions.span_processor(UserSpanProcessor(p)));
        }
        match span_out {
            Some(Out::Console) => {
                // span_exporter: what it exports acknowledges the ends
                // persistence keeps (and then only that: see core::ledger).
                builder.with_span_processor(sessions.span_processor(Handed::new(
                    SimpleSpanProcessor::new(sessions.span_exporter(Counted::new(
                        ConsoleSpanExporter,
                        Arc::clone(&spans_stats),
                    ))),
                    Arc::clone(&spans_handed),
                )))
            }
            Some(Out::Otlp(exporter)) => {
                let batch = batch_settings_from_env(true);
                spans_stats.watch_drops(Arc::clone(&spans_handed), batch.capacity());
                builder.with_span_processor(
                    sessions.span_processor(Handed::new(
                        BatchSpanProcessor::builder(sessions.span_exporter(exporter))
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
                        BatchLogProcessor::builder(exporter)
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
    let metrics_flush = meter_provider.clone().map(|mp| {
        Arc::new(move || {
            let _ = mp.force_flush();
        }) as Arc<dyn Fn() + Send + Sync>
    });
    crate::stability::panic::install(&sessions, metrics_flush);
    let mut guard = Guard {
        sessions,
        tracer_provider,
        logger_provider,
        meter_provider,
        runtime: otlp.take_runtime(),
        spans: spans_stats,
        logs: logs_stats,
        metrics: metrics_stats,
        stop: otlp.stop(),
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
