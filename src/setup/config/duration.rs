//! Durations in the environment: a plain integer is milliseconds (the
//! OpenTelemetry convention), a `humantime` string (`30s`, `15m`, `4h`,
//! `1h 30m`) anything else; a value that is neither gets a reason in plain
//! words, not the parser's.

use std::time::Duration;

use super::suggest;

/// What a duration variable accepts, for reasons.
const EXPECTED_DURATION: &str =
    "expected milliseconds (1500) or a duration such as 30s, 15m, 4h or 1h 30m";

/// Units a misspelt one is compared with (all of them are accepted).
const DURATION_UNITS: [&str; 16] = [
    "ms", "s", "m", "h", "d", "millis", "msec", "sec", "secs", "seconds", "min", "mins", "minutes",
    "hours", "days", "weeks",
];

/// Parses a duration: a plain integer (milliseconds) or a `humantime` string
/// (`30s`, `15m`, `4h`, `1h 30m`). The flag says whether it was a plain integer.
/// The error is a reason in plain words (what is accepted; the unit meant).
pub fn parse_duration(raw: &str) -> Result<(Duration, bool), String> {
    let raw = raw.trim();
    if !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit()) {
        return raw
            .parse::<u64>()
            .map(|ms| (Duration::from_millis(ms), true))
            .map_err(|_| "the number is too large".to_string());
    }
    humantime::parse_duration(raw)
        .map(|d| (d, false))
        .map_err(|e| duration_reason(raw, &e))
}

/// Why `raw` is not a duration, in words (humantime's own messages speak of
/// byte offsets: "expected number at 0").
fn duration_reason(raw: &str, e: &humantime::DurationError) -> String {
    use humantime::DurationError as E;
    if raw.starts_with('-') {
        return "a duration cannot be negative".to_string();
    }
    match e {
        E::NumberOverflow => "the number is too large or finer than a nanosecond".to_string(),
        E::UnknownUnit { unit, .. } if unit.is_empty() => {
            "a number with a fraction needs a unit, e.g. 1.5s (a plain number is whole \
             milliseconds)"
                .to_string()
        }
        E::UnknownUnit { unit, .. } => {
            let lower = unit.to_ascii_lowercase();
            if *unit != lower && DURATION_UNITS.contains(&lower.as_str()) {
                format!("{unit:?} is not a unit: units are lowercase, write {lower}")
            } else {
                format!(
                    "{unit:?} is not a unit (use ms, s, m, h or d){}",
                    suggest::did_you_mean(unit, &DURATION_UNITS)
                )
            }
        }
        _ if raw.contains(',') => "no commas: write 1.5s, or 1h 30m".to_string(),
        _ => EXPECTED_DURATION.to_string(),
    }
}
