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
#[cfg(feature = "tracing")]
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::logs::{
    BatchLogProcessor, LogProcessor, SdkLoggerProvider, SimpleLogProcessor,
};
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider, SimpleSpanProcessor, SpanProcessor,
};
use opentelemetry_sdk::Resource;

use crate::config::{ConfigIssue, ExporterKind, SessionConfig, SessionMode};
use crate::console::{ConsoleLogExporter, ConsoleMetricExporter, ConsoleSpanExporter};
use crate::error::InitError;
use crate::export::{self, Counted, Delivery, DeliveryStats, Handed, HandedCounter, RuntimeSlot};
use crate::manager::{SessionManager, SessionManagerBuilder};
use crate::resource::SessionResourceDetector;

/// Default span/log queue when `OTEL_BSP_MAX_QUEUE_SIZE` / `OTEL_BLRP_MAX_QUEUE_SIZE`
/// are unset. The SDK's 2,048 drops most of a burst of spans made in a tight loop;
/// 65,536 spans (~20 MiB at worst) absorb one while a collector is slow.
pub const DEFAULT_QUEUE_SIZE: usize = 65_536;

/// How long the guard's drop may take to end the session, flush and shut down.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// Builds the pipeline `init()` sets up, with code overrides of the environment.
pub struct Builder {
    config: SessionConfig,
    issues: Vec<ConfigIssue>,
    service_version: Option<String>,
    deployment_environment: Option<String>,
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
            return Ok(Guard::disabled(sessions, self.shutdown_timeout));
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
        let mut rt: Option<RuntimeSlot> = None;
        let spans_stats = Arc::new(DeliveryStats::default());
        let logs_stats = Arc::new(DeliveryStats::default());
        let spans_handed = Arc::new(HandedCounter::new());
        let logs_handed = Arc::new(HandedCounter::new());

        let meter_provider = match config.metrics_exporter {
            ExporterKind::None => None,
            ExporterKind::Console => Some(
                SdkMeterProvider::builder()
                    .with_resource(resource.clone())
                    .with_reader(PeriodicReader::builder(ConsoleMetricExporter).build())
                    .build(),
            ),
            _ => {
                let t = export::transport_from_env("METRICS")?;
                let exporter = export::otlp_metrics(t, &mut rt)?;
                Some(
                    SdkMeterProvider::builder()
                        .with_resource(resource.clone())
                        .with_reader(PeriodicReader::builder(exporter).build())
                        .build(),
                )
            }
        };
        let mut sessions = self.sessions;
        if let Some(mp) = &meter_provider {
            sessions = sessions.with_meter(mp.meter(crate::attr::SCOPE_NAME));
        }
        let sessions = sessions.build();

        let tracer_provider = match config.traces_exporter {
            ExporterKind::None => None,
            kind => {
                let processor: Box<dyn SpanProcessor> = match kind {
                    ExporterKind::Console => Box::new(sessions.span_processor(Handed::new(
                        SimpleSpanProcessor::new(Counted::new(
                            ConsoleSpanExporter,
                            Arc::clone(&spans_stats),
                        )),
                        Arc::clone(&spans_handed),
                    ))),
                    _ => {
                        let t = export::transport_from_env("TRACES")?;
                        let exporter =
                            Counted::new(export::otlp_spans(t, &mut rt)?, Arc::clone(&spans_stats));
                        Box::new(
                            sessions.span_processor(Handed::new(
                                BatchSpanProcessor::builder(exporter)
                                    .with_batch_config(span_batch_config())
                                    .build(),
                                Arc::clone(&spans_handed),
                            )),
                        )
                    }
                };
                Some(
                    SdkTracerProvider::builder()
                        .with_resource(resource.clone())
                        .with_span_processor(BoxedSpanProcessor(processor))
                        .build(),
                )
            }
        };

        let logger_provider = match config.logs_exporter {
            ExporterKind::None => None,
            kind => {
                let processor: Box<dyn LogProcessor> = match kind {
                    ExporterKind::Console => Box::new(sessions.log_processor(Handed::new(
                        SimpleLogProcessor::new(Counted::new(
                            ConsoleLogExporter,
                            Arc::clone(&logs_stats),
                        )),
                        Arc::clone(&logs_handed),
                    ))),
                    _ => {
                        let t = export::transport_from_env("LOGS")?;
                        let exporter =
                            Counted::new(export::otlp_logs(t, &mut rt)?, Arc::clone(&logs_stats));
                        Box::new(
                            sessions.log_processor(Handed::new(
                                BatchLogProcessor::builder(exporter)
                                    .with_batch_config(log_batch_config())
                                    .build(),
                                Arc::clone(&logs_handed),
                            )),
                        )
                    }
                };
                Some(
                    SdkLoggerProvider::builder()
                        .with_resource(resource.clone())
                        .with_log_processor(BoxedLogProcessor(processor))
                        .build(),
                )
            }
        };

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
        })
    }
}

fn span_batch_config() -> opentelemetry_sdk::trace::BatchConfig {
    let b = BatchConfigBuilder::default();
    if std::env::var_os("OTEL_BSP_MAX_QUEUE_SIZE").is_some() {
        b.build()
    } else {
        b.with_max_queue_size(DEFAULT_QUEUE_SIZE).build()
    }
}

fn log_batch_config() -> opentelemetry_sdk::logs::BatchConfig {
    let b = opentelemetry_sdk::logs::BatchConfigBuilder::default();
    if std::env::var_os("OTEL_BLRP_MAX_QUEUE_SIZE").is_some() {
        b.build()
    } else {
        b.with_max_queue_size(DEFAULT_QUEUE_SIZE).build()
    }
}

/// A boxed span processor as a processor (the provider builder wants a sized one).
#[derive(Debug)]
struct BoxedSpanProcessor(Box<dyn SpanProcessor>);

impl SpanProcessor for BoxedSpanProcessor {
    #[inline]
    fn on_start(&self, span: &mut opentelemetry_sdk::trace::Span, cx: &opentelemetry::Context) {
        self.0.on_start(span, cx);
    }
    #[inline]
    fn on_end(&self, span: opentelemetry_sdk::trace::SpanData) {
        self.0.on_end(span);
    }
    fn force_flush(&self) -> opentelemetry_sdk::error::OTelSdkResult {
        self.0.force_flush()
    }
    fn shutdown_with_timeout(&self, timeout: Duration) -> opentelemetry_sdk::error::OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }
    fn set_resource(&mut self, resource: &Resource) {
        self.0.set_resource(resource);
    }
}

/// A boxed log processor as a processor.
#[derive(Debug)]
struct BoxedLogProcessor(Box<dyn LogProcessor>);

impl LogProcessor for BoxedLogProcessor {
    #[inline]
    fn emit(
        &self,
        record: &mut opentelemetry_sdk::logs::SdkLogRecord,
        scope: &opentelemetry::InstrumentationScope,
    ) {
        self.0.emit(record, scope);
    }
    fn force_flush(&self) -> opentelemetry_sdk::error::OTelSdkResult {
        self.0.force_flush()
    }
    fn shutdown_with_timeout(&self, timeout: Duration) -> opentelemetry_sdk::error::OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }
    fn event_enabled(
        &self,
        level: opentelemetry::logs::Severity,
        target: &str,
        name: Option<&str>,
    ) -> bool {
        self.0.event_enabled(level, target, name)
    }
    fn set_resource(&mut self, resource: &Resource) {
        self.0.set_resource(resource);
    }
}

/// `false` for spans and events of the crates that carry telemetry out.
#[cfg(feature = "tracing")]
fn not_export_stack(meta: &tracing::Metadata<'_>) -> bool {
    const STACK: [&str; 7] = [
        "h2",
        "hyper",
        "tonic",
        "tower",
        "reqwest",
        "opentelemetry",
        "rustls",
    ];
    let target = meta.target();
    !STACK.iter().any(|c| {
        target
            .strip_prefix(c)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with("::") || rest.starts_with('_'))
    })
}

fn delivery(handed: &HandedCounter, stats: &DeliveryStats) -> Delivery {
    let (exported, failed) = stats.snapshot();
    Delivery {
        handed: handed.total(),
        exported,
        failed,
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

/// Owns the pipeline `init()` built. Dropping it ends the current session (reason
/// `shutdown`), flushes and shuts the providers down, all within the shutdown
/// timeout (a collector that is down or slow cannot hold the program longer).
pub struct Guard {
    sessions: SessionManager,
    tracer_provider: Option<SdkTracerProvider>,
    logger_provider: Option<SdkLoggerProvider>,
    meter_provider: Option<SdkMeterProvider>,
    runtime: Option<RuntimeSlot>,
    spans: Arc<DeliveryStats>,
    logs: Arc<DeliveryStats>,
    spans_handed: Arc<HandedCounter>,
    logs_handed: Arc<HandedCounter>,
    shutdown_timeout: Duration,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard")
            .field("sessions", &self.sessions)
            .field("traces", &self.tracer_provider.is_some())
            .field("logs", &self.logger_provider.is_some())
            .field("metrics", &self.meter_provider.is_some())
            .finish()
    }
}

impl Guard {
    fn disabled(sessions: SessionManager, shutdown_timeout: Duration) -> Self {
        Guard {
            sessions,
            tracer_provider: None,
            logger_provider: None,
            meter_provider: None,
            runtime: None,
            spans: Arc::default(),
            logs: Arc::default(),
            spans_handed: Arc::new(HandedCounter::new()),
            logs_handed: Arc::new(HandedCounter::new()),
            shutdown_timeout,
        }
    }

    /// The session manager (also installed globally).
    pub fn sessions(&self) -> &SessionManager {
        &self.sessions
    }

    /// The tracer provider, unless traces are off.
    pub fn tracer_provider(&self) -> Option<&SdkTracerProvider> {
        self.tracer_provider.as_ref()
    }

    /// The logger provider, unless logs are off.
    pub fn logger_provider(&self) -> Option<&SdkLoggerProvider> {
        self.logger_provider.as_ref()
    }

    /// The meter provider, unless metrics are off.
    pub fn meter_provider(&self) -> Option<&SdkMeterProvider> {
        self.meter_provider.as_ref()
    }

    /// What happened to the spans so far.
    pub fn span_delivery(&self) -> Delivery {
        delivery(&self.spans_handed, &self.spans)
    }

    /// What happened to the log records so far.
    pub fn log_delivery(&self) -> Delivery {
        delivery(&self.logs_handed, &self.logs)
    }

    /// The `tracing-opentelemetry` layer on our tracer, for your subscriber.
    ///
    /// It leaves out the spans and events of the export stack itself (`h2`,
    /// `hyper`, `tonic`, `tower`, `reqwest`, `opentelemetry*`): exporting them
    /// would make telemetry about exporting telemetry, without end.
    #[cfg(feature = "tracing")]
    pub fn tracing_layer<S>(&self) -> Option<impl tracing_subscriber::Layer<S>>
    where
        S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
    {
        use tracing_subscriber::Layer as _;
        self.tracer_provider.as_ref().map(|tp| {
            tracing_opentelemetry::layer()
                .with_tracer(tp.tracer("tracing"))
                .with_filter(tracing_subscriber::filter::filter_fn(not_export_stack))
        })
    }

    /// The log bridge (`tracing` events → OpenTelemetry log records), for your
    /// subscriber; like [`tracing_layer`](Self::tracing_layer) it leaves out the
    /// export stack's own events.
    #[cfg(feature = "tracing")]
    pub fn log_layer<S>(&self) -> Option<impl tracing_subscriber::Layer<S>>
    where
        S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
    {
        use tracing_subscriber::Layer as _;
        self.logger_provider.as_ref().map(|lp| {
            opentelemetry_appender_tracing::layer::OpenTelemetryTracingBridge::new(lp)
                .with_filter(tracing_subscriber::filter::filter_fn(not_export_stack))
        })
    }

    /// Ends the session and shuts down now (what drop does).
    pub fn shutdown(mut self) {
        self.shutdown_now();
    }

    fn shutdown_now(&mut self) {
        self.sessions.end_for_shutdown();
        let tp = self.tracer_provider.take();
        let lp = self.logger_provider.take();
        let mp = self.meter_provider.take();
        let timeout = self.shutdown_timeout;
        if tp.is_some() || lp.is_some() || mp.is_some() {
            // On a helper thread, so a slow collector cannot hold us past `timeout`
            // (and so no async runtime of the caller's is blocked in place).
            let (tx, rx) = std::sync::mpsc::channel();
            let worker = std::thread::Builder::new()
                .name("otel-session-shutdown".into())
                .spawn(move || {
                    if let Some(tp) = tp {
                        let _ = tp.shutdown_with_timeout(timeout);
                    }
                    if let Some(lp) = lp {
                        let _ = lp.shutdown_with_timeout(timeout);
                    }
                    if let Some(mp) = mp {
                        let _ = mp.shutdown_with_timeout(timeout);
                    }
                    let _ = tx.send(());
                });
            match worker {
                Ok(_) => {
                    if rx
                        .recv_timeout(timeout + Duration::from_millis(500))
                        .is_err()
                    {
                        crate::warn::stderr(format_args!(
                            "telemetry shutdown did not finish within {timeout:?}; \
                             what was not yet exported is lost"
                        ));
                    }
                }
                Err(e) => crate::warn::stderr(format_args!(
                    "could not start the shutdown thread ({e}); telemetry not flushed"
                )),
            }
        }
        let (s, l) = (self.span_delivery(), self.log_delivery());
        let lost = s.failed + s.dropped_or_queued() + l.failed + l.dropped_or_queued();
        if lost > 0 {
            crate::warn::stderr(format_args!(
                "delivery report: spans {} handed, {} exported, {} failed, {} not delivered; \
                 log records {} handed, {} exported, {} failed, {} not delivered. \
                 A collector that is down or slow fails exports; a full queue drops \
                 (raise OTEL_BSP_MAX_QUEUE_SIZE / OTEL_BLRP_MAX_QUEUE_SIZE), and what is \
                 still queued when the shutdown timeout ends is lost.",
                s.handed,
                s.exported,
                s.failed,
                s.dropped_or_queued(),
                l.handed,
                l.exported,
                l.failed,
                l.dropped_or_queued()
            ));
        }
        if crate::global_manager().is_some_and(|g| g.ptr_eq(&self.sessions)) {
            crate::clear_global_manager();
        }
        #[cfg(feature = "otlp-grpc")]
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
        #[cfg(not(feature = "otlp-grpc"))]
        let _ = self.runtime.take();
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.shutdown_now();
    }
}
