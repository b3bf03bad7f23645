//! Configuration from the environment: the `OTEL_SESSION_*` variables and the
//! standard `OTEL_*` ones this crate acts on itself (`OTEL_SDK_DISABLED`,
//! `OTEL_{TRACES,LOGS,METRICS}_EXPORTER`, `OTEL_TRACES_SAMPLER`). The OTLP
//! exporter variables (`OTEL_EXPORTER_OTLP_*`) are read by `setup::export` and
//! `opentelemetry-otlp` when the exporters are built, and `OTEL_SERVICE_NAME` /
//! `OTEL_RESOURCE_ATTRIBUTES` by the SDK.
//!
//! A bad value never stops the program: [`SessionConfig::from_env`] returns the
//! defaults in its place together with a [`ConfigIssue`] naming the variable and the
//! value (`init()` prints each once on stderr). Apps that prefer to fail fast use
//! [`SessionConfig::try_from_env`], which returns the first error.
//!
//! Enumerated values (`app`, `true`, `console`, `grpc`, …) are matched ignoring
//! ASCII case, and a rejected one names the accepted value closest to it ("did
//! you mean request?", `suggest`). Reasons are in plain words: what the value is
//! not, what is accepted, never a parser's own message.
//!
//! Durations: a plain integer is milliseconds (the OpenTelemetry convention; an
//! integer under 1000 is accepted with a warning that it may be meant as seconds);
//! `30s`, `15m`, `4h`, `1h 30m` are accepted too. `0` disables a timeout where that
//! is allowed.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

mod duration;
mod sampler;
pub(crate) mod suggest;

pub use duration::parse_duration;

pub use sampler::{TracesSampler, ENV_TRACES_SAMPLER, ENV_TRACES_SAMPLER_ARG};

/// `OTEL_SESSION_MODE`
pub const ENV_MODE: &str = "OTEL_SESSION_MODE";
/// `OTEL_SESSION_BACKGROUND_TIMEOUT`
pub const ENV_BACKGROUND_TIMEOUT: &str = "OTEL_SESSION_BACKGROUND_TIMEOUT";
/// `OTEL_SESSION_INACTIVITY_TIMEOUT`
pub const ENV_INACTIVITY_TIMEOUT: &str = "OTEL_SESSION_INACTIVITY_TIMEOUT";
/// `OTEL_SESSION_MAX_DURATION`
pub const ENV_MAX_DURATION: &str = "OTEL_SESSION_MAX_DURATION";
/// `OTEL_SESSION_ERROR_SOURCES`
pub const ENV_ERROR_SOURCES: &str = "OTEL_SESSION_ERROR_SOURCES";
/// `OTEL_SESSION_SAMPLE_RATIO`
pub const ENV_SAMPLE_RATIO: &str = "OTEL_SESSION_SAMPLE_RATIO";
/// `OTEL_SESSION_PERSIST_PATH`
pub const ENV_PERSIST_PATH: &str = "OTEL_SESSION_PERSIST_PATH";
/// `OTEL_SESSION_PROPAGATE`
pub const ENV_PROPAGATE: &str = "OTEL_SESSION_PROPAGATE";
/// `OTEL_SESSION_REQUEST_IDS`
pub const ENV_REQUEST_IDS: &str = "OTEL_SESSION_REQUEST_IDS";
/// `OTEL_SESSION_CRASH_BACKTRACE`
pub const ENV_CRASH_BACKTRACE: &str = "OTEL_SESSION_CRASH_BACKTRACE";
/// `OTEL_SEMCONV_EXCEPTION_SIGNAL_OPT_IN` (`logs` or `logs/dup`)
pub const ENV_EXCEPTION_SIGNAL: &str = "OTEL_SEMCONV_EXCEPTION_SIGNAL_OPT_IN";
/// `OTEL_SESSION_STAMP_ATTRIBUTES`
pub const ENV_STAMP_ATTRIBUTES: &str = "OTEL_SESSION_STAMP_ATTRIBUTES";
/// `OTEL_SESSION_METRICS_SPLIT`
pub const ENV_METRICS_SPLIT: &str = "OTEL_SESSION_METRICS_SPLIT";
/// `OTEL_SESSION_HANG_THRESHOLD`
pub const ENV_HANG_THRESHOLD: &str = "OTEL_SESSION_HANG_THRESHOLD";
/// `OTEL_SESSION_NATIVE_CRASHES`
pub const ENV_NATIVE_CRASHES: &str = "OTEL_SESSION_NATIVE_CRASHES";
/// `OTEL_SDK_DISABLED`
pub const ENV_SDK_DISABLED: &str = "OTEL_SDK_DISABLED";
/// `OTEL_TRACES_EXPORTER`
pub const ENV_TRACES_EXPORTER: &str = "OTEL_TRACES_EXPORTER";
/// `OTEL_LOGS_EXPORTER`
pub const ENV_LOGS_EXPORTER: &str = "OTEL_LOGS_EXPORTER";
/// `OTEL_METRICS_EXPORTER`
pub const ENV_METRICS_EXPORTER: &str = "OTEL_METRICS_EXPORTER";

pub use crate::model::session::SessionMode;

/// The OTLP transport of one signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// OTLP/gRPC (tonic).
    Grpc,
    /// OTLP/HTTP with protobuf bodies.
    HttpProtobuf,
    /// OTLP/HTTP with JSON bodies.
    HttpJson,
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Grpc => "grpc",
            Transport::HttpProtobuf => "http/protobuf",
            Transport::HttpJson => "http/json",
        })
    }
}

pub use crate::model::session::ErrorSources;

/// Where one signal goes (`OTEL_{TRACES,LOGS,METRICS}_EXPORTER`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ExporterKind {
    /// OTLP to a collector.
    #[default]
    Otlp,
    /// One readable line per item on stdout.
    Console,
    /// Not exported.
    None,
}

/// Everything `otel-session` reads from the environment. Build it with
/// [`SessionConfig::from_env`] or [`SessionConfig::try_from_env`]; every field
/// can then be changed in code.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SessionConfig {
    /// `OTEL_SESSION_MODE` (default `app`).
    pub mode: SessionMode,
    /// `OTEL_SESSION_BACKGROUND_TIMEOUT` (default 30 s).
    pub background_timeout: Duration,
    /// `OTEL_SESSION_INACTIVITY_TIMEOUT` (default 15 min; `None` = disabled).
    pub inactivity_timeout: Option<Duration>,
    /// `OTEL_SESSION_MAX_DURATION` (default 4 h; `None` = disabled).
    pub max_duration: Option<Duration>,
    /// `OTEL_SESSION_ERROR_SOURCES` (default `logs`).
    pub error_sources: ErrorSources,
    /// `OTEL_SESSION_SAMPLE_RATIO` (default 1.0).
    pub sample_ratio: f64,
    /// `OTEL_SESSION_PERSIST_PATH` (default: memory only).
    pub persist_path: Option<PathBuf>,
    /// `OTEL_SESSION_PROPAGATE` (default false).
    pub propagate: bool,
    /// `OTEL_SESSION_REQUEST_IDS` (default false).
    pub request_ids: bool,
    /// `OTEL_SESSION_STAMP_ATTRIBUTES`: session attributes copied onto every
    /// stamped span and log record (comma-separated; default none).
    pub stamp_attributes: Vec<String>,
    /// `OTEL_SESSION_METRICS_SPLIT`: the session attribute `otel_session.ended`
    /// is split by (default none).
    pub metrics_split: Option<String>,
    /// `OTEL_SESSION_CRASH_BACKTRACE` (default true): a panic's record carries
    /// its backtrace.
    pub crash_backtrace: bool,
    /// `OTEL_SEMCONV_EXCEPTION_SIGNAL_OPT_IN=logs/dup` (default `logs`): the
    /// span a panic happened in also gets an `exception` event.
    pub exception_span_events: bool,
    /// `OTEL_SESSION_HANG_THRESHOLD` (default 5 s; `None` = hangs not watched).
    pub hang_threshold: Option<Duration>,
    /// `OTEL_SESSION_NATIVE_CRASHES` (default true; acts with persistence):
    /// fatal signals leave a marker the next start reports.
    pub native_crashes: bool,
    /// `OTEL_SDK_DISABLED` (default false): nothing is exported.
    pub sdk_disabled: bool,
    /// `OTEL_TRACES_EXPORTER` (default `otlp`).
    pub traces_exporter: ExporterKind,
    /// `OTEL_LOGS_EXPORTER` (default `otlp`).
    pub logs_exporter: ExporterKind,
    /// `OTEL_METRICS_EXPORTER` (default `otlp`).
    pub metrics_exporter: ExporterKind,
    /// `OTEL_TRACES_SAMPLER` with `OTEL_TRACES_SAMPLER_ARG` (default
    /// `parentbased_always_on`); a sampler set in code wins.
    pub traces_sampler: TracesSampler,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            mode: SessionMode::App,
            background_timeout: Duration::from_secs(30),
            inactivity_timeout: Some(Duration::from_secs(15 * 60)),
            max_duration: Some(Duration::from_secs(4 * 3600)),
            error_sources: ErrorSources::default(),
            sample_ratio: 1.0,
            persist_path: None,
            propagate: false,
            request_ids: false,
            stamp_attributes: Vec::new(),
            metrics_split: None,
            crash_backtrace: true,
            exception_span_events: false,
            hang_threshold: Some(Duration::from_secs(5)),
            native_crashes: true,
            sdk_disabled: false,
            traces_exporter: ExporterKind::Otlp,
            logs_exporter: ExporterKind::Otlp,
            metrics_exporter: ExporterKind::Otlp,
            traces_sampler: TracesSampler::default(),
        }
    }
}

/// A variable whose value could not be used: what
/// [`SessionConfig::try_from_env`] returns. Its text says how to fix it and
/// what unsetting it gives; the warning `init()` prints for the same value
/// ([`ConfigIssue::Invalid`]) says instead which default it uses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{var}={value:?} is not valid ({reason}); fix it, or unset it for the default {default}")]
pub struct ConfigError {
    /// The variable's name.
    pub var: &'static str,
    /// The value found.
    pub value: String,
    /// What is wrong with it, what is accepted, and the accepted value it was
    /// closest to when one is close.
    pub reason: String,
    /// The default (what `init()` uses instead).
    pub default: String,
}

/// Something [`SessionConfig::from_env`] has to say about the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigIssue {
    /// The value was not valid; the default is used.
    Invalid(ConfigError),
    /// The value is used but looks like a mistake.
    Suspicious {
        /// The variable's name.
        var: &'static str,
        /// The value found.
        value: String,
        /// Why it looks wrong.
        note: String,
    },
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigIssue::Invalid(e) => write!(
                f,
                "{}={:?} is not valid ({}); using the default {}",
                e.var, e.value, e.reason, e.default
            ),
            ConfigIssue::Suspicious { var, value, note } => write!(f, "{var}={value:?}: {note}"),
        }
    }
}

struct Reader<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
    issues: Vec<ConfigIssue>,
}

impl Reader<'_> {
    /// The trimmed value, `None` when unset or empty.
    fn get(&self, var: &str) -> Option<String> {
        (self.lookup)(var)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }

    fn invalid(
        &mut self,
        var: &'static str,
        value: &str,
        reason: impl Into<String>,
        default: impl fmt::Display,
    ) {
        self.issues.push(ConfigIssue::Invalid(ConfigError {
            var,
            value: value.to_string(),
            reason: reason.into(),
            default: default.to_string(),
        }));
    }

    fn parse<T>(
        &mut self,
        var: &'static str,
        default: T,
        show: impl Fn(&T) -> String,
        f: impl Fn(&str) -> Result<T, String>,
    ) -> T {
        match self.get(var) {
            None => default,
            Some(raw) => match f(&raw) {
                Ok(v) => v,
                Err(reason) => {
                    let d = show(&default);
                    self.invalid(var, &raw, reason, d);
                    default
                }
            },
        }
    }

    fn bool(&mut self, var: &'static str, default: bool) -> bool {
        self.choice(var, default, &[("true", true), ("false", false)])
    }

    /// One of `options` (names matched ignoring case); the default shown is
    /// the name of `default`.
    fn choice<T: Copy + PartialEq>(
        &mut self,
        var: &'static str,
        default: T,
        options: &[(&str, T)],
    ) -> T {
        let shown = options
            .iter()
            .find(|(_, v)| *v == default)
            .map_or(String::new(), |(name, _)| name.to_string());
        self.parse(var, default, |_| shown.clone(), |raw| choose(raw, options))
    }

    /// A duration; `allow_zero` makes `0` mean "disabled" (`None`).
    fn duration(
        &mut self,
        var: &'static str,
        default: Option<Duration>,
        allow_zero: bool,
    ) -> Option<Duration> {
        let Some(raw) = self.get(var) else {
            return default;
        };
        let show = |d: &Option<Duration>| match d {
            Some(d) => humantime::format_duration(*d).to_string(),
            None => "0 (disabled)".to_string(),
        };
        match parse_duration(&raw) {
            Ok((d, plain)) => {
                if d.is_zero() && !allow_zero {
                    let dflt = show(&default);
                    self.invalid(var, &raw, "must be greater than 0", dflt);
                    return default;
                }
                if plain && !d.is_zero() && d < Duration::from_secs(1) {
                    self.issues.push(ConfigIssue::Suspicious {
                        var,
                        value: raw.clone(),
                        note: format!(
                            "a plain number is milliseconds, so this is {} ms; write {}s if you meant seconds",
                            d.as_millis(),
                            d.as_millis()
                        ),
                    });
                }
                if d.is_zero() {
                    None
                } else {
                    Some(d)
                }
            }
            Err(reason) => {
                let dflt = show(&default);
                self.invalid(var, &raw, reason, dflt);
                default
            }
        }
    }

    /// One exporter per signal. The spec allows a list (`otlp,console`); the first
    /// is used and the rest reported.
    fn exporter(&mut self, var: &'static str) -> ExporterKind {
        let parse = |raw: &str| match raw.trim().to_ascii_lowercase().as_str() {
            "stdout" => Ok(ExporterKind::Console),
            _ => choose(
                raw,
                &[
                    ("otlp", ExporterKind::Otlp),
                    ("console", ExporterKind::Console),
                    ("none", ExporterKind::None),
                ],
            ),
        };
        let Some(raw) = self.get(var) else {
            return ExporterKind::Otlp;
        };
        let parts: Vec<&str> = raw
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .collect();
        let parsed: Result<Vec<ExporterKind>, String> = parts.iter().map(|p| parse(p)).collect();
        match parsed {
            Ok(kinds) if !kinds.is_empty() => {
                if kinds.len() > 1 {
                    self.issues.push(ConfigIssue::Suspicious {
                        var,
                        value: raw.clone(),
                        note: format!("one exporter per signal is supported; using {}", parts[0]),
                    });
                }
                kinds[0]
            }
            Ok(_) => ExporterKind::Otlp,
            Err(reason) => {
                self.invalid(var, &raw, reason, "otlp");
                ExporterKind::Otlp
            }
        }
    }

    /// `OTEL_TRACES_SAMPLER`, then the ratio `OTEL_TRACES_SAMPLER_ARG` gives a
    /// ratio sampler (1.0 when unset or not valid).
    fn traces_sampler(&mut self, default: TracesSampler) -> TracesSampler {
        let sampler = self.parse(
            ENV_TRACES_SAMPLER,
            default,
            |d| d.to_string(),
            sampler::parse_sampler,
        );
        let Some(arg) = self.get(ENV_TRACES_SAMPLER_ARG) else {
            return sampler;
        };
        match sampler::apply_arg(sampler, &arg) {
            Ok(s) => s,
            Err(reason) => {
                self.invalid(ENV_TRACES_SAMPLER_ARG, &arg, reason, "1.0");
                sampler
            }
        }
    }
}

/// `a`, `a or b`, `a, b or c`: the accepted values in a reason.
pub(crate) fn one_of(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => one.to_string(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

/// The value of the option named `raw` (trimmed, ASCII case ignored), else a
/// reason listing the names and the closest one.
fn choose<T: Copy>(raw: &str, options: &[(&str, T)]) -> Result<T, String> {
    let wanted = raw.trim();
    if let Some((_, v)) = options.iter().find(|(n, _)| n.eq_ignore_ascii_case(wanted)) {
        return Ok(*v);
    }
    let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
    Err(format!(
        "expected {}{}",
        one_of(&names),
        suggest::did_you_mean(wanted, &names)
    ))
}

impl SessionConfig {
    /// Reads the environment; a bad value is replaced by its default and reported
    /// in the returned list (nothing is printed).
    pub fn from_env() -> (SessionConfig, Vec<ConfigIssue>) {
        Self::from_lookup(&|var| std::env::var(var).ok())
    }

    /// Reads the environment; the first bad value is an error naming the variable.
    /// Suspicious but valid values are accepted.
    pub fn try_from_env() -> Result<SessionConfig, ConfigError> {
        Self::try_from_lookup(&|var| std::env::var(var).ok())
    }

    /// [`try_from_env`](Self::try_from_env) over any variable source.
    pub fn try_from_lookup(
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<SessionConfig, ConfigError> {
        let (config, issues) = Self::from_lookup(lookup);
        match issues.into_iter().find_map(|i| match i {
            ConfigIssue::Invalid(e) => Some(e),
            ConfigIssue::Suspicious { .. } => None,
        }) {
            Some(e) => Err(e),
            None => Ok(config),
        }
    }

    /// [`from_env`](Self::from_env) over any variable source (tests, config files).
    pub fn from_lookup(
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> (SessionConfig, Vec<ConfigIssue>) {
        let d = SessionConfig::default();
        let mut r = Reader {
            lookup,
            issues: Vec::new(),
        };
        let mode = r.choice(
            ENV_MODE,
            d.mode,
            &[
                ("app", SessionMode::App),
                ("request", SessionMode::Request),
                ("manual", SessionMode::Manual),
            ],
        );
        let background_timeout = r
            .duration(ENV_BACKGROUND_TIMEOUT, Some(d.background_timeout), false)
            .unwrap_or(d.background_timeout);
        let inactivity_timeout = r.duration(ENV_INACTIVITY_TIMEOUT, d.inactivity_timeout, true);
        let max_duration = r.duration(ENV_MAX_DURATION, d.max_duration, true);
        let error_sources = r.parse(
            ENV_ERROR_SOURCES,
            d.error_sources,
            |_| "logs".into(),
            |raw| {
                let mut s = ErrorSources {
                    logs: false,
                    spans: false,
                };
                for part in raw.split(',').map(str::trim) {
                    match part.to_ascii_lowercase().as_str() {
                        "logs" => s.logs = true,
                        "spans" => s.spans = true,
                        _ => {
                            return Err(format!(
                                "unknown source {part:?}; expected logs, spans or logs,spans{}",
                                suggest::did_you_mean(part, &["logs", "spans"])
                            ))
                        }
                    }
                }
                Ok(s)
            },
        );
        let sample_ratio = r.parse(
            ENV_SAMPLE_RATIO,
            d.sample_ratio,
            |d| d.to_string(),
            |raw| match raw.parse::<f64>() {
                Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
                Ok(_) => Err("must be between 0.0 and 1.0".into()),
                Err(_) => Err("expected a number between 0.0 and 1.0".into()),
            },
        );
        let persist_path = r.get(ENV_PERSIST_PATH).map(PathBuf::from);
        let propagate = r.bool(ENV_PROPAGATE, d.propagate);
        let request_ids = r.bool(ENV_REQUEST_IDS, d.request_ids);
        // Keys are checked when the manager is built (one warning per key).
        let stamp_attributes = r.get(ENV_STAMP_ATTRIBUTES).map_or(d.stamp_attributes, |v| {
            v.split(',')
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .map(String::from)
                .collect()
        });
        let metrics_split = r.get(ENV_METRICS_SPLIT).map(|v| v.trim().to_string());
        let crash_backtrace = r.bool(ENV_CRASH_BACKTRACE, d.crash_backtrace);
        let exception_span_events = r.choice(
            ENV_EXCEPTION_SIGNAL,
            d.exception_span_events,
            &[("logs", false), ("logs/dup", true)],
        );
        let hang_threshold = r.duration(ENV_HANG_THRESHOLD, d.hang_threshold, true);
        let native_crashes = r.bool(ENV_NATIVE_CRASHES, d.native_crashes);
        let sdk_disabled = r.bool(ENV_SDK_DISABLED, d.sdk_disabled);
        let traces_exporter = r.exporter(ENV_TRACES_EXPORTER);
        let logs_exporter = r.exporter(ENV_LOGS_EXPORTER);
        let metrics_exporter = r.exporter(ENV_METRICS_EXPORTER);
        let traces_sampler = r.traces_sampler(d.traces_sampler);
        let config = SessionConfig {
            mode,
            background_timeout,
            inactivity_timeout,
            max_duration,
            error_sources,
            sample_ratio,
            persist_path,
            propagate,
            request_ids,
            stamp_attributes,
            metrics_split,
            crash_backtrace,
            exception_span_events,
            hang_threshold,
            native_crashes,
            sdk_disabled,
            traces_exporter,
            logs_exporter,
            metrics_exporter,
            traces_sampler,
        };
        (config, r.issues)
    }
}
