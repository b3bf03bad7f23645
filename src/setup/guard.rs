//! The [`Guard`] `init()` returns: owns the providers, hands out the `tracing`
//! layers, and ends the session and shuts everything down, bounded, when dropped.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[cfg(feature = "tracing")]
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;

use crate::core::manager::SessionManager;
use crate::setup::export::retry::Stop;
use crate::setup::export::{Delivery, DeliveryStats, ExportRuntime, HandedCounter};
#[cfg(feature = "tracing")]
use crate::setup::layers::{
    layer_filter, Counting, Either, ErrorCounter, LayerSettings, MaybeLayer, SessionSpanLayer,
};

/// Whether a guard is alive (one pipeline at a time).
static LIVE: AtomicBool = AtomicBool::new(false);

/// Held by the one live guard; released when the guard is gone.
#[derive(Debug)]
pub(crate) struct LiveClaim(());

impl LiveClaim {
    /// The claim, unless another guard holds it.
    pub(crate) fn take() -> Option<LiveClaim> {
        (!LIVE.swap(true, Ordering::AcqRel)).then_some(LiveClaim(()))
    }
}

impl Drop for LiveClaim {
    fn drop(&mut self) {
        LIVE.store(false, Ordering::Release);
    }
}

/// A guard dropped this soon after `init()`, before any telemetry, was most
/// likely never kept (`let _ = init!()`).
const DROPPED_AT_ONCE: Duration = Duration::from_millis(50);

fn delivery(handed: Option<&HandedCounter>, stats: &DeliveryStats) -> Delivery {
    let (exported, failed) = stats.snapshot();
    let (retried, permanent) = stats.retries();
    Delivery {
        // Metric points have no queue: what was handed is what was exported or not.
        handed: handed.map_or(exported + failed, HandedCounter::total),
        exported,
        failed,
        retried,
        permanent,
    }
}

/// Owns the pipeline `init()` built. Dropping it ends the current session (reason
/// `shutdown`), flushes and shuts the providers down, all within the shutdown
/// timeout (a collector that is down or slow cannot hold the program longer).
///
/// Keep it for the program's life: `let _guard = otel_session::init!()?;`.
/// `let _ = ...` drops it at once, which no lint can catch (`#[must_use]` does
/// not apply to `let _`): a guard dropped within 50 ms of `init()`, before any
/// telemetry, is reported on stderr if the program is still running a second
/// later. Only one guard is alive at a time ([`InitError::AlreadyInitialized`]).
///
/// [`InitError::AlreadyInitialized`]: crate::InitError::AlreadyInitialized
#[must_use = "dropping the Guard ends the session and shuts telemetry down: keep it alive \
              for the program's life (`let _guard = otel_session::init!()?;`)"]
pub struct Guard {
    pub(crate) sessions: SessionManager,
    pub(crate) tracer_provider: Option<SdkTracerProvider>,
    pub(crate) logger_provider: Option<SdkLoggerProvider>,
    pub(crate) meter_provider: Option<SdkMeterProvider>,
    pub(crate) runtime: Option<Arc<ExportRuntime>>,
    pub(crate) spans: Arc<DeliveryStats>,
    pub(crate) logs: Arc<DeliveryStats>,
    pub(crate) metrics: Arc<DeliveryStats>,
    /// Tells retrying exports when the shutdown must be done.
    pub(crate) stop: Arc<Stop>,
    pub(crate) spans_handed: Arc<HandedCounter>,
    pub(crate) logs_handed: Arc<HandedCounter>,
    pub(crate) shutdown_timeout: Duration,
    #[cfg(feature = "tracing")]
    pub(crate) layers: LayerSettings,
    pub(crate) created: Instant,
    pub(crate) handed_at_init: u64,
    pub(crate) done: bool,
    pub(crate) _live: LiveClaim,
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
    pub(crate) fn disabled(
        sessions: SessionManager,
        shutdown_timeout: Duration,
        live: LiveClaim,
    ) -> Self {
        Guard {
            sessions,
            tracer_provider: None,
            logger_provider: None,
            meter_provider: None,
            runtime: None,
            spans: Arc::default(),
            logs: Arc::default(),
            metrics: Arc::default(),
            stop: Arc::default(),
            spans_handed: Arc::new(HandedCounter::new()),
            logs_handed: Arc::new(HandedCounter::new()),
            shutdown_timeout,
            #[cfg(feature = "tracing")]
            layers: LayerSettings {
                directives: crate::setup::layers::DEFAULT_FILTER.to_string(),
                span_events: false,
            },
            created: Instant::now(),
            handed_at_init: 0,
            done: false,
            _live: live,
        }
    }

    /// Marks the end of `init()` (what was handed so far is the lifecycle's).
    pub(crate) fn mark_init_done(&mut self) {
        self.created = Instant::now();
        self.handed_at_init = self.spans_handed.total() + self.logs_handed.total();
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
        delivery(Some(&self.spans_handed), &self.spans)
    }

    /// What happened to the log records so far.
    pub fn log_delivery(&self) -> Delivery {
        delivery(Some(&self.logs_handed), &self.logs)
    }

    /// What happened to the metric points so far (`handed` is what the exports
    /// carried: metrics have no queue).
    pub fn metric_delivery(&self) -> Delivery {
        delivery(None, &self.metrics)
    }

    /// The `tracing-opentelemetry` layer on our tracer, for your subscriber (it
    /// does nothing when traces are off).
    ///
    /// What it exports: spans passing the level filter
    /// ([`Builder::with_tracing_filter`](crate::Builder::with_tracing_filter), else
    /// `RUST_LOG`, else `info`), nothing emitted on the export stack's own threads
    /// (telemetry suppression), and no span events unless
    /// [`Builder::with_span_events`](crate::Builder::with_span_events) asks: each
    /// event is exported once, as a log record, by [`log_layer`](Self::log_layer)
    /// (an `ERROR` event still sets its span's status to Error). If the subscriber
    /// already has another OpenTelemetry layer, this one turns itself off at the
    /// first span with a warning (two would panic).
    #[cfg(feature = "tracing")]
    pub fn tracing_layer<S>(&self) -> impl tracing_subscriber::Layer<S>
    where
        S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
    {
        use tracing_subscriber::Layer as _;
        let counter = self.counter(
            self.tracer_provider
                .is_none()
                .then(|| Counting::for_span_layer(&self.sessions))
                .flatten(),
        );
        let exporting = self.tracer_provider.as_ref().map(|tp| {
            SessionSpanLayer::new(
                tracing_opentelemetry::layer().with_tracer(tp.tracer("tracing")),
                self.layers.span_events,
            )
            .with_filter(layer_filter(&self.layers.directives))
        });
        MaybeLayer(exporting.map(Either::A).or(counter.map(Either::B)))
    }

    /// The log bridge (`tracing` events → OpenTelemetry log records), for your
    /// subscriber, with the same filter as [`tracing_layer`](Self::tracing_layer).
    /// When logs are off (`OTEL_LOGS_EXPORTER=none`) it exports nothing but
    /// still counts `ERROR` events as the session's handled errors (with the
    /// `logs` error source), so counts never depend on which signals are
    /// exported; the same holds for [`tracing_layer`](Self::tracing_layer) and
    /// failed spans when traces are off.
    #[cfg(feature = "tracing")]
    pub fn log_layer<S>(&self) -> impl tracing_subscriber::Layer<S>
    where
        S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
    {
        use tracing_subscriber::Layer as _;
        let counter = self.counter(
            self.logger_provider
                .is_none()
                .then(|| Counting::for_log_layer(&self.sessions, self.tracer_provider.is_some()))
                .flatten(),
        );
        let exporting = self.logger_provider.as_ref().map(|lp| {
            opentelemetry_appender_tracing::layer::OpenTelemetryTracingBridge::new(lp)
                .with_filter(layer_filter(&self.layers.directives))
        });
        MaybeLayer(exporting.map(Either::A).or(counter.map(Either::B)))
    }

    /// The layer that counts what a signal that is off would have counted.
    #[cfg(feature = "tracing")]
    fn counter<S>(&self, counting: Option<Counting>) -> Option<impl tracing_subscriber::Layer<S>>
    where
        S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
    {
        use tracing_subscriber::Layer as _;
        counting.map(|counting| {
            ErrorCounter {
                sessions: self.sessions.clone(),
                counting,
                dispatch: std::sync::OnceLock::new(),
            }
            .with_filter(layer_filter(&self.layers.directives))
        })
    }

    /// The filter directives the layers use (see
    /// [`tracing_layer`](Self::tracing_layer)).
    #[cfg(feature = "tracing")]
    pub fn tracing_filter(&self) -> &str {
        &self.layers.directives
    }

    /// Ends the session and shuts down now (what drop does).
    pub fn shutdown(mut self) {
        self.shutdown_now();
    }

    fn shutdown_now(&mut self) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        crate::stability::panic::uninstall(&self.sessions);
        let timeout = self.shutdown_timeout;
        let deadline = crate::model::clock::deadline_in(timeout);
        // Retries from now on only while they fit before the deadline.
        self.stop.stop_at(deadline);
        self.sessions.end_for_shutdown(timeout);
        self.sessions.report_unused_request_mode();
        // Each provider shuts down on its own thread, all against one deadline: a
        // slow collector for one signal does not eat the others' time, and no
        // async runtime of the caller's is blocked in place.
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let mut started = 0;
        let mut spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            let tx = tx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("otel-session-shutdown-{name}"))
                .spawn(move || {
                    // This thread is part of the export stack too.
                    let _suppressed = opentelemetry::Context::enter_telemetry_suppressed_scope();
                    f();
                    let _ = tx.send(());
                });
            match spawned {
                Ok(_) => started += 1,
                Err(e) => crate::warn::stderr(format_args!(
                    "could not start a shutdown thread ({e}); {name} not flushed"
                )),
            }
        };
        if let Some(tp) = self.tracer_provider.take() {
            spawn(
                "traces",
                Box::new(move || drop(tp.shutdown_with_timeout(timeout))),
            );
        }
        if let Some(lp) = self.logger_provider.take() {
            spawn(
                "logs",
                Box::new(move || drop(lp.shutdown_with_timeout(timeout))),
            );
        }
        if let Some(mp) = self.meter_provider.take() {
            spawn(
                "metrics",
                Box::new(move || drop(mp.shutdown_with_timeout(timeout))),
            );
        }
        drop(tx);
        let mut finished = 0;
        let mut all_finished = true;
        while finished < started {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if rx.recv_timeout(left + Duration::from_millis(250)).is_err() {
                crate::warn::stderr(format_args!(
                    "telemetry shutdown did not finish within {timeout:?}; \
                     what was not yet exported is lost"
                ));
                all_finished = false;
                break;
            }
            finished += 1;
        }
        let (s, l) = (self.span_delivery(), self.log_delivery());
        if let Some(report) = delivery_report(s, l, self.metric_delivery()) {
            crate::warn::stderr(format_args!("{report}"));
        }
        if crate::global_manager().is_some_and(|g| g.ptr_eq(&self.sessions)) {
            crate::clear_global_manager();
        }
        // Stop the export runtime (without blocking), unless an export is still
        // running on it: it then stops when that export's provider is dropped.
        if let Some(rt) = self.runtime.take() {
            if all_finished {
                rt.stop();
            }
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if !self.done {
            self.warn_if_dropped_at_once();
        }
        self.shutdown_now();
    }
}

impl Guard {
    /// `let _ = init!()` drops the guard at once, and the program then runs
    /// without telemetry. A guard dropped within 50 ms of `init()`, before any
    /// span or log record, is reported, but only if the program is still running
    /// a second later: a program that simply exits (`--help`) stays quiet.
    fn warn_if_dropped_at_once(&self) {
        let exports = self.tracer_provider.is_some() || self.logger_provider.is_some();
        let soon = self.created.elapsed();
        let handed = self.spans_handed.total() + self.logs_handed.total();
        if !exports || soon >= DROPPED_AT_ONCE || handed != self.handed_at_init {
            return;
        }
        let after = soon.as_millis();
        let _ = std::thread::Builder::new()
            .name("otel-session-dropped-guard".to_string())
            .spawn(move || {
                std::thread::sleep(Duration::from_secs(1));
                crate::warn::stderr(format_args!(
                    "the telemetry guard was dropped {after} ms after init(), before any span or \
                     log record, and the program runs on without telemetry. Keep it for the \
                     program's life: `let _guard = otel_session::init!()?;` \
                     (`let _ = ...` drops it at once)"
                ));
            });
    }
}

/// The delivery report printed at shutdown when something was lost, retried or
/// refused; `None` when everything went out at the first attempt.
pub(crate) fn delivery_report(s: Delivery, l: Delivery, m: Delivery) -> Option<String> {
    let lost = s.failed + s.dropped_or_queued() + l.failed + l.dropped_or_queued() + m.failed;
    let retried = s.retried + l.retried + m.retried;
    if lost == 0 && retried == 0 {
        return None;
    }
    let line = |d: Delivery| {
        format!(
            "{} handed, {} exported, {} failed, {} not delivered",
            d.handed,
            d.exported,
            d.failed,
            d.dropped_or_queued()
        )
    };
    Some(format!(
        "delivery report: spans {}; log records {}; metric points {}; retried: {} spans, {} log \
         records, {} metric points; failed permanently (not retried): {} spans, {} log records, \
         {} metric points. A collector that is down or slow fails exports once retries within \
         OTEL_EXPORTER_OTLP_TIMEOUT run out; a refused request (4xx, malformed data) fails \
         permanently; a full queue drops (raise OTEL_BSP_MAX_QUEUE_SIZE / \
         OTEL_BLRP_MAX_QUEUE_SIZE), and what is still queued when the shutdown timeout ends is \
         lost.",
        line(s),
        line(l),
        line(m),
        s.retried,
        l.retried,
        m.retried,
        s.permanent,
        l.permanent,
        m.permanent
    ))
}
