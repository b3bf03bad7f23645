//! One-call setup: [`init()`](crate::init()), the [`init!`](crate::init!) macro and
//! [`Builder`]. They read the environment, build tracer, logger and meter providers
//! with the resource enricher, our processors in their wrapper form and the
//! exporters the environment asks for, set the global tracer and meter providers and
//! the global session manager, start the first session in `app` mode, and return a
//! [`Guard`] that ends the session and shuts everything down when dropped.
//!
//! No `tracing` subscriber is installed: the guard hands out the layers
//! ([`Guard::tracing_layer`], [`Guard::log_layer`]) for your own subscriber.

use std::sync::Arc;
use std::time::Duration;

use opentelemetry::metrics::MeterProvider as _;
use opentelemetry_sdk::logs::{BatchLogProcessor, SdkLoggerProvider, SimpleLogProcessor};
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::{BatchSpanProcessor, SdkTracerProvider, SimpleSpanProcessor};
use opentelemetry_sdk::Resource;

use crate::core::manager::{SessionManager, SessionManagerBuilder};
use crate::setup::config::{ConfigIssue, ExporterKind, SessionConfig, SessionMode};
use crate::setup::console::{ConsoleLogExporter, ConsoleMetricExporter, ConsoleSpanExporter};
use crate::setup::error::{ExportError, InitError};
use crate::setup::export::{
    self, batch_settings_from_env, Counted, DeliveryStats, ExportRuntime, Handed, HandedCounter,
};
use crate::setup::guard::Guard;
use crate::setup::resource::SessionResourceDetector;

/// How long the guard's drop may take to end the session, flush and shut down.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// Builds the pipeline `init()` sets up, with code overrides of the environment.
pub struct Builder {
    config: SessionConfig,
    issues: Vec<ConfigIssue>,
    service_version: Option<String>,
    deployment_environment: Option<String>,
    #[cfg(feature = "tracing")]
    tracing_filter: Option<String>,
    #[cfg(feature = "tracing")]
    span_events: bool,
    sessions: SessionManagerBuilder,
    shutdown_timeout: Duration,
}

impl std::fmt::Debug for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("config", &self.config)
            .field("service_version", &self.service_version)
            .finish_non_exhaustive()
    }
}

impl Builder {
    /// Starts from the environment. Bad values are replaced by their defaults and
    /// printed once each on stderr by [`init`](Self::init).
    pub fn from_env() -> Self {
        let (config, issues) = SessionConfig::from_env();
        Builder {
            config,
            issues,
            service_version: None,
            deployment_environment: None,
            #[cfg(feature = "tracing")]
            tracing_filter: None,
            #[cfg(feature = "tracing")]
            span_events: false,
            sessions: SessionManager::builder(),
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
        }
    }

    /// Uses `config` instead of the environment's `OTEL_SESSION_*` values.
    pub fn with_config(mut self, config: SessionConfig) -> Self {
        self.config = config;
        self.issues.clear();
        self
    }

    /// Changes the configuration in place.
    pub fn configure(mut self, f: impl FnOnce(&mut SessionConfig)) -> Self {
        f(&mut self.config);
        self
    }

    /// Sets `service.version` (the [`init!`](crate::init!) macro passes your
    /// crate's `CARGO_PKG_VERSION`).
    pub fn with_service_version(mut self, version: impl Into<String>) -> Self {
        self.service_version = Some(version.into());
        self
    }

    /// Sets `deployment.environment.name`.
    pub fn with_deployment_environment(mut self, name: impl Into<String>) -> Self {
        self.deployment_environment = Some(name.into());
        self
    }

    /// What the guard's `tracing` layers export: `EnvFilter` directives such as
    /// `"info,my_app=debug,h2=off"`. Overrides `RUST_LOG`; without either, `info`.
    #[cfg(feature = "tracing")]
    pub fn with_tracing_filter(mut self, directives: impl Into<String>) -> Self {
        self.tracing_filter = Some(directives.into());
        self
    }

    /// Whether the guard's span layer also records `tracing` events as span
    /// events (default `false`: each event is exported once, as a log record by
    /// the log layer; turn this on when traces are exported and logs are not).
    #[cfg(feature = "tracing")]
    pub fn with_span_events(mut self, on: bool) -> Self {
        self.span_events = on;
        self
    }

    /// Configures the session manager (callbacks, observers, user, clock, ids).
    pub fn with_sessions(
        mut self,
        f: impl FnOnce(SessionManagerBuilder) -> SessionManagerBuilder,
    ) -> Self {
        self.sessions = f(self.sessions);
        self
    }

    /// How long dropping the guard may take (default 5 s).
    pub fn with_shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Builds and installs everything; see the module docs.
    pub fn init(self) -> Result<Guard, InitError> {
        for issue in &self.issues {
            crate::warn::stderr(format_args!("{issue}"));
        }
        #[cfg(feature = "tracing")]
        let layers = layer_settings(self.tracing_filter.as_deref(), self.span_events);
        let config = self.config;
        let version_from_env = std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|v| {
            v.split(',')
                .any(|kv| kv.trim_start().starts_with("service.version="))
        });
        if self.service_version.is_none() && !version_from_env && !config.sdk_disabled {
            crate::warn::stderr(format_args!(
                "service.version is not set, so stability per release is unavailable; \
                 use otel_session::init!() (it passes your CARGO_PKG_VERSION) or \
                 Builder::with_service_version(..)"
            ));
        }

        if config.sdk_disabled {
            let sessions = self.sessions.without_export().build();
            crate::set_global_manager(sessions.clone());
            if config.mode == SessionMode::App {
                sessions.start_session();
            }
            #[allow(unused_mut)]
            let mut guard = Guard::disabled(sessions, self.shutdown_timeout);
            #[cfg(feature = "tracing")]
            {
                guard.layers = layers;
            }
            return Ok(guard);
        }

        let mut detector = SessionResourceDetector::new();
        if let Some(v) = &self.service_version {
            detector = detector.with_service_version(v.clone());
        }
        if let Some(e) = &self.deployment_environment {
            detector = detector.with_deployment_environment(e.clone());
        }
        let resource = Resource::builder()
            .with_detector(Box::new(detector))
            .build();
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
        let mut sessions = self.sessions;
        if let Some(mp) = &meter_provider {
            sessions = sessions.with_meter(mp.meter(crate::model::attr::SCOPE_NAME));
        }
        if span_out.is_none() {
            sessions = sessions.without_span_export();
        }
        if log_out.is_none() {
            sessions = sessions.without_log_export();
        }
        let sessions = sessions.build();

        // Each arm registers its concrete processor: no boxing, no extra dynamic
        // call per span or record.
        let tracer_provider = span_out.map(|out| {
            let builder = SdkTracerProvider::builder().with_resource(resource.clone());
            match out {
                Out::Console => builder.with_span_processor(sessions.span_processor(Handed::new(
                    SimpleSpanProcessor::new(Counted::new(
                        ConsoleSpanExporter,
                        Arc::clone(&spans_stats),
                    )),
                    Arc::clone(&spans_handed),
                ))),
                Out::Otlp(exporter) => {
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
            }
            .build()
        });
        let logger_provider = log_out.map(|out| {
            let builder = SdkLoggerProvider::builder().with_resource(resource.clone());
            match out {
                Out::Console => builder.with_log_processor(sessions.log_processor(Handed::new(
                    SimpleLogProcessor::new(Counted::new(
                        ConsoleLogExporter,
                        Arc::clone(&logs_stats),
                    )),
                    Arc::clone(&logs_handed),
                ))),
                Out::Otlp(exporter) => {
                    let batch = batch_settings_from_env(false);
                    logs_stats.watch_drops(Arc::clone(&logs_handed), batch.capacity());
                    builder.with_log_processor(
                        sessions.log_processor(Handed::new(
                            BatchLogProcessor::builder(Counted::new(
                                exporter,
                                Arc::clone(&logs_stats),
                            ))
                            .with_batch_config(batch.log_config())
                            .build(),
                            Arc::clone(&logs_handed),
                        )),
                    )
                }
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
        Ok(Guard {
            sessions,
            tracer_provider,
            logger_provider,
            meter_provider,
            runtime: rt,
            spans: spans_stats,
            logs: logs_stats,
            spans_handed,
            logs_handed,
            shutdown_timeout: self.shutdown_timeout,
            #[cfg(feature = "tracing")]
            layers,
            done: false,
        })
    }
}

/// The guard's layer settings: the filter (code, `RUST_LOG`, `info`; each bad
/// one warned) and span events.
#[cfg(feature = "tracing")]
fn layer_settings(code: Option<&str>, span_events: bool) -> crate::setup::layers::LayerSettings {
    let (directives, warnings) =
        crate::setup::layers::resolve_directives(code, &|var| std::env::var(var).ok());
    for w in warnings {
        crate::warn::stderr(format_args!("{w}"));
    }
    crate::setup::layers::LayerSettings {
        directives,
        span_events,
    }
}

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

/// Reads the environment and sets everything up (see the module docs). Prefer the
/// [`init!`](crate::init!) macro, which also records your `service.version`.
pub fn init() -> Result<Guard, InitError> {
    Builder::from_env().init()
}

/// [`init()`](crate::init()) that also sets `service.version` to the calling
/// crate's `CARGO_PKG_VERSION`.
///
/// ```no_run
/// let _guard = otel_session::init!().expect("telemetry");
/// ```
#[macro_export]
macro_rules! init {
    () => {
        $crate::Builder::from_env()
            .with_service_version(env!("CARGO_PKG_VERSION"))
            .init()
    };
}
