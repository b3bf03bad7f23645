//! Crash reports: what happened, where, and in which session.
//!
//! - `report`: a panic as an exception record (captured in the hook,
//!   resolved on the crash helper thread);
//! - `hang`: [`heartbeat`](crate::heartbeat) and the hang watchdog;
//! - `native`: the last run's marker read (how it died) and this run's armed;
//! - `marker`: the fixed-size crash marker file a native crash (a fatal
//!   signal) or a hang in progress leaves for the next start;
//! - `signals` (Unix): the async-signal-safe handler that writes it.
//!
//! May use: [`model`](crate::model) and [`core`](crate::core).

pub(crate) mod hang;
pub(crate) mod marker;
pub(crate) mod native;
pub(crate) mod report;
#[cfg(unix)]
pub(crate) mod signals;

use std::time::Duration;

use crate::core::manager::SessionManagerBuilder;

/// Crash and hang reporting settings (each also read from the environment
/// by [`init`](crate::init); see the README's "Crashes").
impl SessionManagerBuilder {
    /// Whether a panic's record carries its backtrace
    /// (`OTEL_SESSION_CRASH_BACKTRACE`, default true). Capturing and
    /// resolving one costs milliseconds, on a panic only.
    pub fn with_crash_backtraces(mut self, on: bool) -> Self {
        self.crash_settings().backtraces = on;
        self
    }

    /// Whether the span a panic happened in also gets an `exception` span
    /// event (`OTEL_SEMCONV_EXCEPTION_SIGNAL_OPT_IN=logs/dup`; default: the
    /// log record only, as the conventions' `logs`). The span's status is set
    /// to Error either way.
    pub fn with_exception_span_events(mut self, on: bool) -> Self {
        self.crash_settings().span_events = on;
        self
    }

    /// No [`heartbeat`](crate::heartbeat) for `threshold` while in the
    /// foreground is a hang (`OTEL_SESSION_HANG_THRESHOLD`, default 5 s;
    /// `None` stops watching).
    pub fn with_hang_threshold(mut self, threshold: Option<Duration>) -> Self {
        self.crash_settings().hang_threshold = threshold.filter(|t| !t.is_zero());
        self
    }

    /// Names this instance in the `app.crash` record its next start sends
    /// after a native crash: `service.version` and `service.instance.id` from
    /// `resource` (`init()` passes its own).
    pub fn with_crash_identity(mut self, resource: &opentelemetry_sdk::Resource) -> Self {
        let get = |key: &'static str| {
            resource
                .get(&opentelemetry::Key::from_static_str(key))
                .map(|v| v.to_string())
        };
        *self.identity() = (
            get(crate::model::attr::SERVICE_VERSION),
            get(crate::model::attr::SERVICE_INSTANCE_ID),
        );
        self
    }

    /// Whether fatal signals (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT) leave
    /// a crash marker that the next start reports (`OTEL_SESSION_NATIVE_CRASHES`,
    /// default true; needs persistence; Unix only).
    pub fn with_native_crashes(mut self, on: bool) -> Self {
        self.crash_settings().native = on;
        self
    }
}
