//! `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG`, read here rather than by
//! `opentelemetry_sdk`: the SDK matches the value exactly (`ALWAYS_OFF` would
//! silently sample everything) and reports a bad one only through its internal
//! logs. `init()` hands the result to the tracer provider unless
//! [`Builder::with_sampler`](crate::Builder::with_sampler) chose one.

use std::fmt;

use opentelemetry_sdk::trace::Sampler;

/// `OTEL_TRACES_SAMPLER`
pub const ENV_TRACES_SAMPLER: &str = "OTEL_TRACES_SAMPLER";
/// `OTEL_TRACES_SAMPLER_ARG`
pub const ENV_TRACES_SAMPLER_ARG: &str = "OTEL_TRACES_SAMPLER_ARG";

/// The sampler `OTEL_TRACES_SAMPLER` names (values as in the OpenTelemetry
/// specification; the ratio from `OTEL_TRACES_SAMPLER_ARG`, 1.0 when unset).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[non_exhaustive]
pub enum TracesSampler {
    /// `always_on`
    AlwaysOn,
    /// `always_off`
    AlwaysOff,
    /// `traceidratio`
    TraceIdRatio(f64),
    /// `parentbased_always_on` (the default)
    #[default]
    ParentBasedAlwaysOn,
    /// `parentbased_always_off`
    ParentBasedAlwaysOff,
    /// `parentbased_traceidratio`
    ParentBasedTraceIdRatio(f64),
}

/// The values `OTEL_TRACES_SAMPLER` accepts.
pub(crate) const SAMPLERS: [&str; 6] = [
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
];

/// Specified values `opentelemetry_sdk` 0.33 does not implement.
const NOT_IMPLEMENTED: [&str; 3] = ["jaeger_remote", "parentbased_jaeger_remote", "xray"];

impl TracesSampler {
    /// The SDK sampler.
    pub fn to_sampler(self) -> Sampler {
        match self {
            TracesSampler::AlwaysOn => Sampler::AlwaysOn,
            TracesSampler::AlwaysOff => Sampler::AlwaysOff,
            TracesSampler::TraceIdRatio(r) => Sampler::TraceIdRatioBased(r),
            TracesSampler::ParentBasedAlwaysOn => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
            TracesSampler::ParentBasedAlwaysOff => {
                Sampler::ParentBased(Box::new(Sampler::AlwaysOff))
            }
            TracesSampler::ParentBasedTraceIdRatio(r) => {
                Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(r)))
            }
        }
    }

    /// Whether it takes `OTEL_TRACES_SAMPLER_ARG`.
    fn takes_ratio(self) -> bool {
        matches!(
            self,
            TracesSampler::TraceIdRatio(_) | TracesSampler::ParentBasedTraceIdRatio(_)
        )
    }

    fn with_ratio(self, r: f64) -> Self {
        match self {
            TracesSampler::TraceIdRatio(_) => TracesSampler::TraceIdRatio(r),
            TracesSampler::ParentBasedTraceIdRatio(_) => TracesSampler::ParentBasedTraceIdRatio(r),
            other => other,
        }
    }
}

impl fmt::Display for TracesSampler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TracesSampler::AlwaysOn => f.write_str("always_on"),
            TracesSampler::AlwaysOff => f.write_str("always_off"),
            TracesSampler::TraceIdRatio(r) => write!(f, "traceidratio {r}"),
            TracesSampler::ParentBasedAlwaysOn => f.write_str("parentbased_always_on"),
            TracesSampler::ParentBasedAlwaysOff => f.write_str("parentbased_always_off"),
            TracesSampler::ParentBasedTraceIdRatio(r) => write!(f, "parentbased_traceidratio {r}"),
        }
    }
}

/// The sampler's name, case ignored; `Err` says why it is not one.
pub(crate) fn parse_sampler(raw: &str) -> Result<TracesSampler, String> {
    let lower = raw.trim().to_ascii_lowercase();
    Ok(match lower.as_str() {
        "always_on" => TracesSampler::AlwaysOn,
        "always_off" => TracesSampler::AlwaysOff,
        "traceidratio" => TracesSampler::TraceIdRatio(1.0),
        "parentbased_always_on" => TracesSampler::ParentBasedAlwaysOn,
        "parentbased_always_off" => TracesSampler::ParentBasedAlwaysOff,
        "parentbased_traceidratio" => TracesSampler::ParentBasedTraceIdRatio(1.0),
        other if NOT_IMPLEMENTED.contains(&other) => {
            return Err(format!(
                "{other} is not implemented by opentelemetry_sdk 0.33; use one of {}",
                super::one_of(&SAMPLERS)
            ))
        }
        _ => {
            return Err(format!(
                "expected {}{}",
                super::one_of(&SAMPLERS),
                super::suggest::did_you_mean(raw, &SAMPLERS)
            ))
        }
    })
}

/// Applies `OTEL_TRACES_SAMPLER_ARG` (`arg`, trimmed and not empty) to a
/// ratio sampler: `Err` says why it is not a ratio. Other samplers ignore it,
/// as the specification says.
pub(crate) fn apply_arg(sampler: TracesSampler, arg: &str) -> Result<TracesSampler, String> {
    if !sampler.takes_ratio() {
        return Ok(sampler);
    }
    match arg.parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(sampler.with_ratio(r)),
        _ => Err("expected a number between 0.0 and 1.0, the share of traces kept".to_string()),
    }
}
