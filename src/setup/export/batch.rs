//! Batch processor settings: `OTEL_BSP_*` (spans) and `OTEL_BLRP_*` (log records),
//! read and bounded here rather than by the SDK.
//!
//! The SDK's batch processors allocate their whole queue when they start (a
//! `sync_channel` of that many slots, about 390 bytes per span slot and 16 bytes
//! per log slot, plus the log records themselves while queued) and the export
//! batch up front on their thread. Read raw, `OTEL_BSP_MAX_QUEUE_SIZE=100000000`
//! aborts the process on a failed allocation and `0` silently drops everything.
//! Here every value is checked: one out of range is clamped and one that is not a
//! number is replaced by the default, each with a warning naming the variable;
//! no value can abort, panic or spin the process.
//!
//! Defaults and bounds (the same for spans and log records):
//!
//! | setting | default | accepted |
//! |---|---|---|
//! | `MAX_QUEUE_SIZE` | spans [`DEFAULT_SPAN_QUEUE_SIZE`] (4,096), log records [`DEFAULT_LOG_QUEUE_SIZE`] (8,192) | 1 ..= [`MAX_QUEUE_SIZE`] (131,072) |
//! | `MAX_EXPORT_BATCH_SIZE` | [`DEFAULT_EXPORT_BATCH_SIZE`] (512) | 1 ..= [`MAX_EXPORT_BATCH_SIZE`] (8,192), and at most the queue |
//! | `SCHEDULE_DELAY` | the SDK's (5 s spans, 1 s logs) | more than 0 (milliseconds, or `5s`, `1m`) |
//!
//! The trade-off of the defaults (measured, BENCHMARKS.md "Memory"): a span
//! queue commits about 390 bytes per slot at start, so 4,096 spans commit 1.6 MiB
//! (the 65,536 before committed 24 MiB and made the quickstart peak at 31 MiB; it
//! now peaks under 12). A burst made in a tight loop is delivered whole up to
//! about the queue's size, and beyond it most of the excess is dropped (reported
//! on stderr as it happens, counted in the delivery report), with any queue size
//! up to the burst's own. A log slot commits 16 bytes, so the log queue is
//! larger (8,192: 128 KiB at start; the records take memory only while queued).
//! Programs that make large bursts raise `OTEL_BSP_MAX_QUEUE_SIZE` (up to
//! 131,072: about 50 MiB committed at start, about 130 MiB when full).
//!
//! `OTEL_BSP_EXPORT_TIMEOUT`, `OTEL_BSP_MAX_CONCURRENT_EXPORTS` and
//! `OTEL_BLRP_EXPORT_TIMEOUT` are read by the SDK but have no effect on its
//! thread-based batch processors: setting one gives a warning pointing to
//! `OTEL_EXPORTER_OTLP_TIMEOUT`.

use std::time::Duration;

use crate::setup::config::parse_duration;

/// Span queue size when `OTEL_BSP_MAX_QUEUE_SIZE` is unset.
pub const DEFAULT_SPAN_QUEUE_SIZE: usize = 4_096;
/// Log record queue size when `OTEL_BLRP_MAX_QUEUE_SIZE` is unset.
pub const DEFAULT_LOG_QUEUE_SIZE: usize = 8_192;
/// The largest queue accepted from the environment (larger values are clamped).
pub const MAX_QUEUE_SIZE: usize = 131_072;
/// Export batch size when the variable is unset (the SDK's).
pub const DEFAULT_EXPORT_BATCH_SIZE: usize = 512;
/// The largest export batch accepted from the environment (larger values are
/// clamped): about what one OTLP request to a collector with default limits holds.
pub const MAX_EXPORT_BATCH_SIZE: usize = 8_192;

/// The settings of one batch processor, as `init()` builds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct BatchSettings {
    /// Items the queue holds before it drops.
    pub max_queue_size: usize,
    /// Items per export (at most the queue).
    pub max_export_batch_size: usize,
    /// Time between two exports of a partial batch.
    pub scheduled_delay: Duration,
}

/// `OTEL_BSP_*` or `OTEL_BLRP_*`.
struct Vars {
    default_queue: usize,
    queue: &'static str,
    batch: &'static str,
    delay: &'static str,
    no_effect: &'static [&'static str],
    default_delay: Duration,
}

const SPAN_VARS: Vars = Vars {
    default_queue: DEFAULT_SPAN_QUEUE_SIZE,
    queue: "OTEL_BSP_MAX_QUEUE_SIZE",
    batch: "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
    delay: "OTEL_BSP_SCHEDULE_DELAY",
    no_effect: &["OTEL_BSP_EXPORT_TIMEOUT", "OTEL_BSP_MAX_CONCURRENT_EXPORTS"],
    default_delay: opentelemetry_sdk::trace::OTEL_BSP_SCHEDULE_DELAY_DEFAULT,
};

const LOG_VARS: Vars = Vars {
    default_queue: DEFAULT_LOG_QUEUE_SIZE,
    queue: "OTEL_BLRP_MAX_QUEUE_SIZE",
    batch: "OTEL_BLRP_MAX_EXPORT_BATCH_SIZE",
    delay: "OTEL_BLRP_SCHEDULE_DELAY",
    no_effect: &["OTEL_BLRP_EXPORT_TIMEOUT"],
    default_delay: Duration::from_millis(1_000),
};

/// A whole number in `1..=max` from `raw`: clamped to `max` above it, the default
/// (with the reason) when it is 0 or not a whole number.
pub(crate) fn count(
    var: &str,
    raw: &str,
    default: usize,
    max: usize,
    why_max: &str,
) -> (usize, Option<String>) {
    let value = raw.trim();
    let invalid = |reason: &str| {
        Some(format!(
            "{var}={raw:?} is not valid ({reason}); using {default}"
        ))
    };
    let above = || {
        Some(format!(
            "{var}={raw:?} is above the maximum of {max}; using {max} ({why_max})"
        ))
    };
    match value.parse::<usize>() {
        Ok(0) => (default, invalid("must be at least 1")),
        Ok(n) if n > max => (max, above()),
        Ok(n) => (n, None),
        Err(e) if *e.kind() == std::num::IntErrorKind::PosOverflow => (max, above()),
        Err(_) => (
            default,
            invalid(&format!("expected a whole number from 1 to {max}")),
        ),
    }
}

impl BatchSettings {
    /// The span processor's settings from `OTEL_BSP_*` in `lookup`, with a warning
    /// for each value that was clamped or replaced.
    pub fn spans_from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> (Self, Vec<String>) {
        Self::from_vars(&SPAN_VARS, lookup)
    }

    /// The log processor's settings from `OTEL_BLRP_*` in `lookup`, with a warning
    /// for each value that was clamped or replaced.
    pub fn logs_from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> (Self, Vec<String>) {
        Self::from_vars(&LOG_VARS, lookup)
    }

    fn from_vars(vars: &Vars, lookup: &dyn Fn(&str) -> Option<String>) -> (Self, Vec<String>) {
        let mut warnings = Vec::new();
        let get = |var: &str| lookup(var).filter(|v| !v.trim().is_empty());
        let mut take = |(value, warning): (usize, Option<String>)| {
            warnings.extend(warning);
            value
        };
        let max_queue_size = match get(vars.queue) {
            None => vars.default_queue,
            Some(raw) => take(count(
                vars.queue,
                &raw,
                vars.default_queue,
                MAX_QUEUE_SIZE,
                "the queue is allocated in full at start",
            )),
        };
        let batch_raw = get(vars.batch);
        let (mut max_export_batch_size, mut batch_warning) = match &batch_raw {
            None => (DEFAULT_EXPORT_BATCH_SIZE, None),
            Some(raw) => count(
                vars.batch,
                raw,
                DEFAULT_EXPORT_BATCH_SIZE,
                MAX_EXPORT_BATCH_SIZE,
                "larger requests exceed common collector limits",
            ),
        };
        if max_export_batch_size > max_queue_size {
            if let Some(raw) = &batch_raw {
                batch_warning = Some(format!(
                    "{}={raw:?} is larger than the queue ({max_queue_size}); using {max_queue_size}",
                    vars.batch
                ));
            }
            max_export_batch_size = max_queue_size;
        }
        warnings.extend(batch_warning);
        let scheduled_delay = match get(vars.delay) {
            None => vars.default_delay,
            Some(raw) => match parse_duration(&raw) {
                Ok((d, _)) if !d.is_zero() => d,
                zero_or_bad => {
                    let reason = zero_or_bad
                        .err()
                        .unwrap_or_else(|| "must be greater than 0".to_string());
                    warnings.push(format!(
                        "{}={raw:?} is not valid ({reason}); using {} ms",
                        vars.delay,
                        vars.default_delay.as_millis()
                    ));
                    vars.default_delay
                }
            },
        };
        for var in vars.no_effect {
            if let Some(raw) = get(var) {
                warnings.push(format!(
                    "{var}={raw:?} has no effect on the batch processors otel-session builds; \
                     the export timeout is OTEL_EXPORTER_OTLP_TIMEOUT"
                ));
            }
        }
        let settings = BatchSettings {
            max_queue_size,
            max_export_batch_size,
            scheduled_delay,
        };
        (settings, warnings)
    }

    /// These settings as the SDK's span batch configuration.
    pub fn span_config(&self) -> opentelemetry_sdk::trace::BatchConfig {
        opentelemetry_sdk::trace::BatchConfigBuilder::default()
            .with_max_queue_size(self.max_queue_size)
            .with_max_export_batch_size(self.max_export_batch_size)
            .with_scheduled_delay(self.scheduled_delay)
            .build()
    }

    /// These settings as the SDK's log batch configuration.
    pub fn log_config(&self) -> opentelemetry_sdk::logs::BatchConfig {
        opentelemetry_sdk::logs::BatchConfigBuilder::default()
            .with_max_queue_size(self.max_queue_size)
            .with_max_export_batch_size(self.max_export_batch_size)
            .with_scheduled_delay(self.scheduled_delay)
            .build()
    }

    /// How many items the processor can hold: its queue plus the batch being
    /// exported (more outstanding than that means it dropped some).
    pub fn capacity(&self) -> u64 {
        (self.max_queue_size + self.max_export_batch_size) as u64
    }
}

/// Spans (`OTEL_BSP_*`) or log records (`OTEL_BLRP_*`) from the environment;
/// each warning is printed once on stderr.
pub(crate) fn batch_settings_from_env(spans: bool) -> BatchSettings {
    let lookup = |var: &str| std::env::var(var).ok();
    let (settings, warnings) = if spans {
        BatchSettings::spans_from_lookup(&lookup)
    } else {
        BatchSettings::logs_from_lookup(&lookup)
    };
    for w in warnings {
        crate::warn::stderr(format_args!("{w}"));
    }
    settings
}

/// The span batch configuration `init()` uses, from `OTEL_BSP_*` bounded as
/// described in the module docs (warnings on stderr). For
/// `BatchSpanProcessor::builder(exporter).with_batch_config(span_batch_config())`
/// in pipelines you build yourself: `with_batch_exporter` reads the variables
/// unbounded.
pub fn span_batch_config() -> opentelemetry_sdk::trace::BatchConfig {
    batch_settings_from_env(true).span_config()
}

/// The log batch configuration `init()` uses, from `OTEL_BLRP_*` bounded as
/// described in the module docs (warnings on stderr).
pub fn log_batch_config() -> opentelemetry_sdk::logs::BatchConfig {
    batch_settings_from_env(false).log_config()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::setup::export::test_env;

    fn spans(vars: &[(&str, &str)]) -> (BatchSettings, Vec<String>) {
        BatchSettings::spans_from_lookup(&test_env(vars))
    }

    /// Every value a variable can hold: each power of two from 2^0 to 2^64 and
    /// its neighbours (so 0, 1, u32::MAX, u64::MAX and past them), more digits
    /// than any integer type, and garbage.
    fn every_kind_of_value() -> Vec<String> {
        let mut values: Vec<String> = Vec::new();
        for k in 0..=64u32 {
            let p = 1u128 << k;
            for v in [p - 1, p, p + 1] {
                values.push(v.to_string());
            }
        }
        values.extend(
            [
                &u64::MAX.to_string(),
                &u128::MAX.to_string(),
                "340282366920938463463374607431768211456000", // > u128::MAX
                "-1",
                "-0",
                "+8",
                " 4096 ",
                "",
                " ",
                "1.5",
                "1e6",
                "0x100",
                "abc",
                "٣",
                "4096kb",
                "\u{0}",
            ]
            .map(String::from),
        );
        values
    }

    #[test]
    fn every_queue_and_batch_value_is_in_range_and_each_change_is_warned_with_the_variable() {
        for var in ["OTEL_BSP_MAX_QUEUE_SIZE", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE"] {
            for raw in every_kind_of_value() {
                let (s, warnings) = spans(&[(var, &raw)]);
                assert!(
                    (1..=MAX_QUEUE_SIZE).contains(&s.max_queue_size),
                    "{var}={raw:?}: queue {}",
                    s.max_queue_size
                );
                assert!(
                    (1..=MAX_EXPORT_BATCH_SIZE).contains(&s.max_export_batch_size)
                        && s.max_export_batch_size <= s.max_queue_size,
                    "{var}={raw:?}: batch {}",
                    s.max_export_batch_size
                );
                let used_as_given = raw.trim().parse::<usize>().ok().filter(|n| {
                    let max = if var.ends_with("QUEUE_SIZE") {
                        MAX_QUEUE_SIZE
                    } else {
                        MAX_EXPORT_BATCH_SIZE
                    };
                    (1..=max).contains(n)
                });
                let blank = raw.trim().is_empty();
                match (used_as_given, blank) {
                    (Some(_), _) | (None, true) => {
                        // A batch above the default queue is also reported.
                        assert!(
                            warnings.iter().all(|w| w.contains(var)),
                            "{var}={raw:?}: {warnings:?}"
                        );
                    }
                    (None, false) => {
                        assert_eq!(warnings.len(), 1, "{var}={raw:?}: {warnings:?}");
                        assert!(
                            warnings[0].starts_with(&format!("{var}=")),
                            "names the variable: {}",
                            warnings[0]
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn defaults_clamps_and_replacements() {
        let (d, w) = spans(&[]);
        assert_eq!(
            (d.max_queue_size, d.max_export_batch_size, w.len()),
            (DEFAULT_SPAN_QUEUE_SIZE, DEFAULT_EXPORT_BATCH_SIZE, 0)
        );
        assert_eq!(d.scheduled_delay, Duration::from_secs(5));
        let (s, w) = spans(&[("OTEL_BSP_MAX_QUEUE_SIZE", "100000000")]);
        assert_eq!(s.max_queue_size, MAX_QUEUE_SIZE);
        assert_eq!(
            w,
            ["OTEL_BSP_MAX_QUEUE_SIZE=\"100000000\" is above the maximum of 131072; using 131072 (the queue is allocated in full at start)"]
        );
        let (s, w) = spans(&[("OTEL_BSP_MAX_QUEUE_SIZE", "0")]);
        assert_eq!(s.max_queue_size, DEFAULT_SPAN_QUEUE_SIZE);
        assert_eq!(
            w,
            ["OTEL_BSP_MAX_QUEUE_SIZE=\"0\" is not valid (must be at least 1); using 4096"]
        );
        let (s, w) = spans(&[("OTEL_BSP_MAX_QUEUE_SIZE", "lots")]);
        assert_eq!(s.max_queue_size, DEFAULT_SPAN_QUEUE_SIZE);
        assert!(w[0].contains("expected a whole number from 1 to 131072"));
        let (s, w) = spans(&[
            ("OTEL_BSP_MAX_QUEUE_SIZE", "100"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "200"),
        ]);
        assert_eq!((s.max_queue_size, s.max_export_batch_size), (100, 100));
        assert_eq!(
            w,
            ["OTEL_BSP_MAX_EXPORT_BATCH_SIZE=\"200\" is larger than the queue (100); using 100"]
        );
        let (s, w) = spans(&[("OTEL_BSP_MAX_QUEUE_SIZE", "100")]);
        assert_eq!(
            (s.max_export_batch_size, w.len()),
            (100, 0),
            "a batch left at its default follows a smaller queue silently (the SDK does too)"
        );
    }

    #[test]
    fn schedule_delay_zero_and_garbage_are_replaced_units_are_accepted() {
        let (s, w) = spans(&[("OTEL_BSP_SCHEDULE_DELAY", "0")]);
        assert_eq!(s.scheduled_delay, Duration::from_secs(5));
        assert_eq!(
            w,
            ["OTEL_BSP_SCHEDULE_DELAY=\"0\" is not valid (must be greater than 0); using 5000 ms"]
        );
        let (s, w) = spans(&[("OTEL_BSP_SCHEDULE_DELAY", "soon")]);
        assert_eq!(s.scheduled_delay, Duration::from_secs(5));
        assert!(w[0].starts_with("OTEL_BSP_SCHEDULE_DELAY=\"soon\" is not valid"));
        let (s, _) = spans(&[("OTEL_BSP_SCHEDULE_DELAY", "250")]);
        assert_eq!(s.scheduled_delay, Duration::from_millis(250));
        let (s, _) = spans(&[("OTEL_BSP_SCHEDULE_DELAY", "2s")]);
        assert_eq!(s.scheduled_delay, Duration::from_secs(2));
        let (s, w) = spans(&[("OTEL_BSP_SCHEDULE_DELAY", &u64::MAX.to_string())]);
        assert_eq!(
            (s.scheduled_delay, w.len()),
            (Duration::from_millis(u64::MAX), 0),
            "a huge delay only means exporting on full batches and at shutdown"
        );
    }

    #[test]
    fn variables_without_effect_are_reported_and_logs_have_their_own() {
        let (_, w) = spans(&[("OTEL_BSP_EXPORT_TIMEOUT", "1000")]);
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("has no effect") && w[0].contains("OTEL_EXPORTER_OTLP_TIMEOUT"));
        let (l, w) = BatchSettings::logs_from_lookup(&test_env(&[
            ("OTEL_BLRP_MAX_QUEUE_SIZE", "18446744073709551615"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "5"),
        ]));
        assert_eq!(l.max_queue_size, MAX_QUEUE_SIZE);
        assert_eq!(
            l.scheduled_delay,
            Duration::from_secs(1),
            "the SDK's log default"
        );
        let (l, _) = BatchSettings::logs_from_lookup(&|_| None);
        assert_eq!(l.max_queue_size, DEFAULT_LOG_QUEUE_SIZE);
        assert_eq!(w.len(), 1);
        assert!(w[0].starts_with("OTEL_BLRP_MAX_QUEUE_SIZE="));
    }

    #[test]
    fn the_configs_carry_the_settings() {
        let (s, _) = spans(&[
            ("OTEL_BSP_MAX_QUEUE_SIZE", "300"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "30"),
        ]);
        let c = s.span_config();
        assert!(format!("{c:?}").contains("max_queue_size: 300"), "{c:?}");
        assert_eq!(s.capacity(), 330);
    }
}
