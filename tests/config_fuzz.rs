//! Every environment parser on arbitrary input: no panic, at most one warning
//! per variable naming it, and the default whenever the value is not valid.

use otel_session::config::{parse_duration, ConfigIssue, SessionConfig};

const VARS: [&str; 19] = [
    "OTEL_SESSION_MODE",
    "OTEL_SESSION_BACKGROUND_TIMEOUT",
    "OTEL_SESSION_INACTIVITY_TIMEOUT",
    "OTEL_SESSION_MAX_DURATION",
    "OTEL_SESSION_ERROR_SOURCES",
    "OTEL_SESSION_SAMPLE_RATIO",
    "OTEL_SESSION_PERSIST_PATH",
    "OTEL_SESSION_PROPAGATE",
    "OTEL_SESSION_REQUEST_IDS",
    "OTEL_SDK_DISABLED",
    "OTEL_TRACES_EXPORTER",
    "OTEL_LOGS_EXPORTER",
    "OTEL_METRICS_EXPORTER",
    "OTEL_SESSION_CRASH_BACKTRACE",
    "OTEL_SEMCONV_EXCEPTION_SIGNAL_OPT_IN",
    "OTEL_SESSION_HANG_THRESHOLD",
    "OTEL_SESSION_NATIVE_CRASHES",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
];

/// Whether `text` carries a parser library's own words ("expected number at
/// 0", "invalid character at 3", "unknown time unit", "ParseIntError").
fn has_jargon(text: &str) -> bool {
    let at_offset = text
        .match_indices(" at ")
        .any(|(i, m)| text[i + m.len()..].starts_with(|c: char| c.is_ascii_digit()));
    at_offset
        || [
            "supported units",
            "unknown time unit",
            "time unit needed",
            "Error",
            "line 1 column",
        ]
        .iter()
        .any(|j| text.contains(j))
}

/// Pseudo-random strings: ASCII, digits with units, unicode, control bytes,
/// huge numbers, and the empty string (xorshift, deterministic).
fn strings(n: usize) -> Vec<String> {
    let alphabet: Vec<char> = "0123456789 .,-+_smhdµnaieEtruflsognpcxTRUE\t\n\u{0}\u{7f}é日🦀=;%"
        .chars()
        .collect();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut out = vec![
        String::new(),
        "18446744073709551616".into(),
        "99999999999999999999999999h".into(),
        "1e309".into(),
        "NaN".into(),
        "-0".into(),
        "inf".into(),
        " ".repeat(10_000),
    ];
    for _ in 0..n {
        let len = (next() % 24) as usize;
        out.push(
            (0..len)
                .map(|_| alphabet[(next() as usize) % alphabet.len()])
                .collect(),
        );
    }
    out
}

#[test]
fn arbitrary_values_never_panic_and_a_bad_value_warns_once_and_keeps_the_default() {
    let defaults = SessionConfig::default();
    for value in strings(3_000) {
        for var in VARS {
            let (config, issues) =
                SessionConfig::from_lookup(&|v| (v == var).then(|| value.clone()));
            assert!(issues.len() <= 1, "{var}={value:?}: {issues:?}");
            for issue in &issues {
                let text = issue.to_string();
                assert!(text.starts_with(var), "{text}");
                assert!(!has_jargon(&text), "{text}");
                if let ConfigIssue::Invalid(_) = issue {
                    // The default in place of an invalid value.
                    let mut expected = defaults.clone();
                    if var == "OTEL_SESSION_PERSIST_PATH" {
                        expected.persist_path = config.persist_path.clone();
                    }
                    assert_eq!(config, expected, "{var}={value:?}");
                }
            }
            // The fail-fast reader agrees.
            let strict = SessionConfig::try_from_lookup(&|v| (v == var).then(|| value.clone()));
            let invalid = issues.iter().any(|i| matches!(i, ConfigIssue::Invalid(_)));
            assert_eq!(strict.is_err(), invalid, "{var}={value:?}");
        }
        if let Err(reason) = parse_duration(&value) {
            assert!(!has_jargon(&reason), "{value:?}: {reason}");
        }
        let (_, warnings) =
            otel_session::export::transport_from_lookup("TRACES", &|_| Some(value.clone()));
        assert!(warnings.iter().all(|w| !has_jargon(w)), "{warnings:?}");
        let _ = otel_session::session_id_from_baggage(&value);
    }
}
