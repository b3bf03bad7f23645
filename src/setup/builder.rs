//! [`Builder`]: the pipeline `init()` sets up, with code overrides of the
//! environment; [`init()`](crate::init()) and the [`init!`](crate::init!) macro.

use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry_sdk::logs::LogProcessor;
use opentelemetry_sdk::trace::{ShouldSample, SpanProcessor};

use crate::core::manager::SessionManagerBuilder;
use crate::setup::config::{ConfigIssue, SessionConfig};
use crate::setup::error::InitError;
use crate::setup::guard::Guard;

/// How long the guard's drop may take to end the session, flush and shut down.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// Builds the pipeline `init()` sets up, with code overrides of the environment.
///
/// ```no_run
/// use opentelemetry::KeyValue;
/// use opentelemetry_sdk::trace::Sampler;
///
/// let guard = otel_session::Builder::from_env()
///     .with_service_name("checkout")            // unless OTEL_SERVICE_NAME says otherwise
///     .with_service_version(env!("CARGO_PKG_VERSION"))
///     .with_resource_attributes([KeyValue::new("service.namespace", "shop")])
///     .with_sampler(Sampler::TraceIdRatioBased(0.25))
///     .init()?;
/// # Ok::<(), otel_session::InitError>(())
/// ```
pub struct Builder {
    pub(super) config: SessionConfig,
    pub(super) issues: Vec<ConfigIssue>,
    pub(super) service_name: Option<String>,
    pub(super) service_version: Option<String>,
    pub(super) deployment_environment: Option<String>,
    pub(super) resource_attributes: Vec<KeyValue>,
    pub(super) sampler: Option<Box<dyn ShouldSample>>,
    pub(super) span_processors: Vec<Box<dyn SpanProcessor>>,
    pub(super) log_processors: Vec<Box<dyn LogProcessor>>,
    #[cfg(feature = "tracing")]
    pub(super) tracing_filter: Option<String>,
    #[cfg(feature = "tracing")]
    pub(super) span_events: bool,
    pub(super) sessions: Vec<SessionsFn>,
    pub(super) shutdown_timeout: Duration,
}

/// A change to the session manager's builder, from [`Builder::with_sessions`].
pub(super) type SessionsFn = Box<dyn FnOnce(SessionManagerBuilder) -> SessionManagerBuilder + Send>;

impl std::fmt::Debug for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("config", &self.config)
            .field("service_name", &self.service_name)
            .field("service_version", &self.service_version)
            .field("resource_attributes", &self.resource_attributes)
            .field("sampler", &self.sampler)
            .field("span_processors", &self.span_processors.len())
            .field("log_processors", &self.log_processors.len())
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
            service_name: None,
            service_version: None,
            deployment_environment: None,
            resource_attributes: Vec::new(),
            sampler: None,
            span_processors: Vec::new(),
            log_processors: Vec::new(),
            #[cfg(feature = "tracing")]
            tracing_filter: None,
            #[cfg(feature = "tracing")]
            span_events: false,
            sessions: Vec::new(),
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

    /// Sets `service.name` unless the environment sets one: first to last,
    /// `OTEL_SERVICE_NAME`, `service.name` in `OTEL_RESOURCE_ATTRIBUTES`, this
    /// (the [`init!`](crate::init!) macro passes your crate's `CARGO_PKG_NAME`),
    /// the SDK's `unknown_service:<binary>`.
    pub fn with_service_name(mut self, name: impl Into<String>) -> Self {
        self.service_name = Some(name.into());
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

    /// Adds resource attributes (on every signal). They win over the detected
    /// ones (`os.*`, `service.version`, …); keys the environment sets
    /// (`OTEL_RESOURCE_ATTRIBUTES`, `OTEL_SERVICE_NAME`) win over them.
    pub fn with_resource_attributes(
        mut self,
        attributes: impl IntoIterator<Item = KeyValue>,
    ) -> Self {
        self.resource_attributes.extend(attributes);
        self
    }

    /// The tracer provider's sampler (for example
    /// `opentelemetry_sdk::trace::Sampler::ParentBased(..)`), instead of the one
    /// `OTEL_TRACES_SAMPLER` selects. Session sampling (`OTEL_SESSION_SAMPLE_RATIO`)
    /// wraps it: a span is exported only if both keep it, and every span of a
    /// session is decided by its session. Session lifecycle spans bypass the
    /// tracer and are never sampled out.
    pub fn with_sampler(mut self, sampler: impl ShouldSample + 'static) -> Self {
        self.sampler = Some(Box::new(sampler));
        self
    }

    /// Adds a span processor of yours. It is wrapped like the exporting
    /// processor (its spans carry `session.id`, and it receives the session's
    /// lifecycle spans), and runs before the exporting processor. With such a
    /// processor the tracer provider exists even when `OTEL_TRACES_EXPORTER=none`.
    pub fn with_span_processor(mut self, processor: impl SpanProcessor + 'static) -> Self {
        self.span_processors.push(Box::new(processor));
        self
    }

    /// Adds a log processor of yours, wrapped like [`with_span_processor`]
    /// (`session.id` on its records, the session log events through it), before
    /// the exporting processor (so an enricher's attributes are exported).
    ///
    /// [`with_span_processor`]: Self::with_span_processor
    pub fn with_log_processor(mut self, processor: impl LogProcessor + 'static) -> Self {
        self.log_processors.push(Box::new(processor));
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
    /// Applied after the configuration's mode and timeouts, so what you set here
    /// wins.
    pub fn with_sessions(
        mut self,
        f: impl FnOnce(SessionManagerBuilder) -> SessionManagerBuilder + Send + 'static,
    ) -> Self {
        self.sessions.push(Box::new(f));
        self
    }

    /// How long dropping the guard may take (default 5 s).
    pub fn with_shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Builds and installs everything; see [`init()`](crate::init()).
    ///
    /// Errors only when it installs nothing ([`InitError`]); everything else
    /// (bad variables, an exporter that cannot be built, a clamped queue) is a
    /// warning on stderr and the program goes on with what works.
    pub fn init(self) -> Result<Guard, InitError> {
        super::init::install(self)
    }
}

/// Reads the environment and sets everything up: tracer, logger and meter
/// providers with the resource enricher, our processors in their wrapper form
/// and the exporters the environment asks for; the global tracer and meter
/// providers and the global session manager; the first session in `app` mode.
/// Returns the [`Guard`] that ends the session and shuts everything down when
/// dropped. Prefer the [`init!`](crate::init!) macro, which also records your
/// package's name and version.
pub fn init() -> Result<Guard, InitError> {
    Builder::from_env().init()
}

/// [`init()`](crate::init()) that also sets `service.name` to the calling crate's
/// `CARGO_PKG_NAME` (unless `OTEL_SERVICE_NAME` or `OTEL_RESOURCE_ATTRIBUTES` set
/// one) and `service.version` to its `CARGO_PKG_VERSION`.
///
/// ```no_run
/// let _guard = otel_session::init!().expect("telemetry"); // `let _ =` would drop it at once
/// ```
#[macro_export]
macro_rules! init {
    () => {
        $crate::Builder::from_env()
            .with_service_name(env!("CARGO_PKG_NAME"))
            .with_service_version(env!("CARGO_PKG_VERSION"))
            .init()
    };
}

/// A boxed span processor of the user's, as one concrete processor.
#[derive(Debug)]
pub(super) struct UserSpanProcessor(pub(super) Box<dyn SpanProcessor>);

impl SpanProcessor for UserSpanProcessor {
    fn on_start(&self, span: &mut opentelemetry_sdk::trace::Span, cx: &opentelemetry::Context) {
        self.0.on_start(span, cx);
    }
    fn on_end(&self, span: opentelemetry_sdk::trace::SpanData) {
        self.0.on_end(span);
    }
    fn force_flush(&self) -> opentelemetry_sdk::error::OTelSdkResult {
        self.0.force_flush()
    }
    fn shutdown_with_timeout(&self, timeout: Duration) -> opentelemetry_sdk::error::OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }
    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.0.set_resource(resource);
    }
}

/// A boxed log processor of the user's, as one concrete processor.
#[derive(Debug)]
pub(super) struct UserLogProcessor(pub(super) Box<dyn LogProcessor>);

impl LogProcessor for UserLogProcessor {
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
    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.0.set_resource(resource);
    }
}
