//! Every OTEL_SESSION_* variable: good values, and each bad value's message and
//! the default used in its place.

use std::collections::HashMap;
use std::time::Duration;

use otel_session::config::{
    parse_duration, ConfigIssue, ErrorSources, ExporterKind, SessionConfig, SessionMode,
};

fn read(vars: &[(&str, &str)]) -> (SessionConfig, Vec<ConfigIssue>) {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    SessionConfig::from_lookup(&|k| map.get(k).cloned())
}

#[test]
fn defaults_with_nothing_set() {
    let (c, issues) = read(&[]);
    assert!(issues.is_empty());
    assert_eq!(c, SessionConfig::default());
    assert_eq!(c.mode, SessionMode::App);
    assert_eq!(c.background_timeout, Duration::from_secs(30));
    assert_eq!(c.inactivity_timeout, Some(Duration::from_secs(900)));
    assert_eq!(c.max_duration, Some(Duration::from_secs(4 * 3600)));
    assert_eq!(
        c.error_sources,
        ErrorSources {
            logs: true,
            spans: false
        }
    );
    assert_eq!(c.sample_ratio, 1.0);
    assert_eq!(c.traces_exporter, ExporterKind::Otlp);
}

#[test]
fn good_values_are_read() {
    let (c, issues) = read(&[
        ("OTEL_SESSION_MODE", "Request"),
        ("OTEL_SESSION_BACKGROUND_TIMEOUT", "45s"),
        ("OTEL_SESSION_INACTIVITY_TIMEOUT", "0"),
        ("OTEL_SESSION_MAX_DURATION", "7200000"),
        ("OTEL_SESSION_ERROR_SOURCES", "logs, spans"),
        ("OTEL_SESSION_SAMPLE_RATIO", "0.25"),
        ("OTEL_SESSION_PERSIST_PATH", "/tmp/s.json"),
        ("OTEL_SESSION_PROPAGATE", "TRUE"),
        ("OTEL_SESSION_REQUEST_IDS", "true"),
        ("OTEL_SDK_DISABLED", "true"),
        ("OTEL_TRACES_EXPORTER", "console"),
        ("OTEL_LOGS_EXPORTER", "none"),
        ("OTEL_METRICS_EXPORTER", "otlp"),
    ]);
    assert!(issues.is_empty(), "{issues:?}");
    assert_eq!(c.mode, SessionMode::Request);
    assert_eq!(c.background_timeout, Duration::from_secs(45));
    assert_eq!(c.inactivity_timeout, None, "0 disables");
    assert_eq!(c.max_duration, Some(Duration::from_secs(7200)));
    assert_eq!(
        c.error_sources,
        ErrorSources {
            logs: true,
            spans: true
        }
    );
    assert_eq!(c.sample_ratio, 0.25);
    assert_eq!(
        c.persist_path.as_deref(),
        Some(std::path::Path::new("/tmp/s.json"))
    );
    assert!(c.propagate && c.request_ids && c.sdk_disabled);
    assert_eq!(c.traces_exporter, ExporterKind::Console);
    assert_eq!(c.logs_exporter, ExporterKind::None);
}

/// (variable, bad value, expected message, check that the default is in place)
type Case = (
    &'static str,
    &'static str,
    &'static str,
    fn(&SessionConfig) -> bool,
);

#[test]
fn every_bad_value_warns_with_the_variable_and_value_and_uses_the_default() {
    let d = SessionConfig::default();
    let cases: Vec<Case> = vec![
        ("OTEL_SESSION_MODE", "desktop", "OTEL_SESSION_MODE=\"desktop\" is not valid (expected app, request or manual); using the default app", |c| c.mode == SessionMode::App),
        ("OTEL_SESSION_BACKGROUND_TIMEOUT", "soon", "OTEL_SESSION_BACKGROUND_TIMEOUT=\"soon\" is not valid (expected milliseconds (1500) or a duration such as 30s, 15m, 4h or 1h 30m); using the default 30s", |c| c.background_timeout == Duration::from_secs(30)),
        ("OTEL_SESSION_BACKGROUND_TIMEOUT", "0", "OTEL_SESSION_BACKGROUND_TIMEOUT=\"0\" is not valid (must be greater than 0); using the default 30s", |c| c.background_timeout == Duration::from_secs(30)),
        ("OTEL_SESSION_BACKGROUND_TIMEOUT", "-5s", "OTEL_SESSION_BACKGROUND_TIMEOUT=\"-5s\" is not valid (a duration cannot be negative); using the default 30s", |c| c.background_timeout == Duration::from_secs(30)),
        ("OTEL_SESSION_INACTIVITY_TIMEOUT", "15 minutes please", "OTEL_SESSION_INACTIVITY_TIMEOUT=\"15 minutes please\" is not valid", |c| c.inactivity_timeout == Some(Duration::from_secs(900))),
        ("OTEL_SESSION_MAX_DURATION", "forever", "OTEL_SESSION_MAX_DURATION=\"forever\" is not valid", |c| c.max_duration == Some(Duration::from_secs(14400))),
        ("OTEL_SESSION_MAX_DURATION", "99999999999999999999999", "OTEL_SESSION_MAX_DURATION=\"99999999999999999999999\" is not valid (the number is too large); using the default 4h", |c| c.max_duration == Some(Duration::from_secs(14400))),
        ("OTEL_SESSION_ERROR_SOURCES", "logs,traces", "OTEL_SESSION_ERROR_SOURCES=\"logs,traces\" is not valid (unknown source \"traces\"; expected logs, spans or logs,spans); using the default logs", |c| c.error_sources == ErrorSources { logs: true, spans: false }),
        ("OTEL_SESSION_ERROR_SOURCES", ",", "OTEL_SESSION_ERROR_SOURCES=\",\" is not valid (unknown source \"\"", |c| c.error_sources.logs && !c.error_sources.spans),
        ("OTEL_SESSION_SAMPLE_RATIO", "1.5", "OTEL_SESSION_SAMPLE_RATIO=\"1.5\" is not valid (must be between 0.0 and 1.0); using the default 1", |c| c.sample_ratio == 1.0),
        ("OTEL_SESSION_SAMPLE_RATIO", "-0.1", "OTEL_SESSION_SAMPLE_RATIO=\"-0.1\" is not valid (must be between 0.0 and 1.0)", |c| c.sample_ratio == 1.0),
        ("OTEL_SESSION_SAMPLE_RATIO", "half", "OTEL_SESSION_SAMPLE_RATIO=\"half\" is not valid (expected a number between 0.0 and 1.0); using the default 1", |c| c.sample_ratio == 1.0),
        ("OTEL_SESSION_SAMPLE_RATIO", "NaN", "OTEL_SESSION_SAMPLE_RATIO=\"NaN\" is not valid (must be between 0.0 and 1.0)", |c| c.sample_ratio == 1.0),
        ("OTEL_SESSION_PROPAGATE", "yes", "OTEL_SESSION_PROPAGATE=\"yes\" is not valid (expected true or false); using the default false", |c| !c.propagate),
        ("OTEL_SESSION_REQUEST_IDS", "1", "OTEL_SESSION_REQUEST_IDS=\"1\" is not valid (expected true or false); using the default false", |c| !c.request_ids),
        ("OTEL_SDK_DISABLED", "on", "OTEL_SDK_DISABLED=\"on\" is not valid (expected true or false); using the default false", |c| !c.sdk_disabled),
        ("OTEL_TRACES_EXPORTER", "jaeger", "OTEL_TRACES_EXPORTER=\"jaeger\" is not valid (expected otlp, console or none); using the default otlp", |c| c.traces_exporter == ExporterKind::Otlp),
        ("OTEL_LOGS_EXPORTER", "file", "OTEL_LOGS_EXPORTER=\"file\" is not valid", |c| c.logs_exporter == ExporterKind::Otlp),
        ("OTEL_METRICS_EXPORTER", "prometheus", "OTEL_METRICS_EXPORTER=\"prometheus\" is not valid", |c| c.metrics_exporter == ExporterKind::Otlp),
    ];
    for (var, value, message, default_in_place) in cases {
        let (c, issues) = read(&[(var, value)]);
        assert_eq!(issues.len(), 1, "{var}={value}: {issues:?}");
        let text = issues[0].to_string();
        assert!(text.contains(message), "{var}={value}: got {text:?}");
        assert!(matches!(issues[0], ConfigIssue::Invalid(ref e) if e.var == var));
        assert!(default_in_place(&c), "{var}={value}: default not used");
        assert_eq!(c, d, "{var}={value}: nothing else changes");
        let err = SessionConfig::try_from_lookup(&|k| (k == var).then(|| value.to_string()))
            .expect_err("try_from_lookup fails fast");
        assert_eq!(err.var, var);
        assert_eq!(err.value, value);
    }
}

#[test]
fn small_plain_integers_are_milliseconds_with_a_warning() {
    let (c, issues) = read(&[("OTEL_SESSION_BACKGROUND_TIMEOUT", "30")]);
    assert_eq!(c.background_timeout, Duration::from_millis(30));
    assert_eq!(issues.len(), 1);
    let text = issues[0].to_string();
    assert!(text.starts_with("OTEL_SESSION_BACKGROUND_TIMEOUT=\"30\": a plain number is milliseconds, so this is 30 ms; write 30s"), "{text}");
    assert!(SessionConfig::try_from_lookup(
        &|k| (k == "OTEL_SESSION_BACKGROUND_TIMEOUT").then(|| "30".into())
    )
    .is_ok());
    let (_, none) = read(&[("OTEL_SESSION_INACTIVITY_TIMEOUT", "60000")]);
    assert!(none.is_empty());
}

#[test]
fn durations_parse_as_documented() {
    assert_eq!(
        parse_duration("1500").unwrap(),
        (Duration::from_millis(1500), true)
    );
    assert_eq!(parse_duration("30s").unwrap().0, Duration::from_secs(30));
    assert_eq!(parse_duration("15m").unwrap().0, Duration::from_secs(900));
    assert_eq!(parse_duration("4h").unwrap().0, Duration::from_secs(14400));
    assert_eq!(
        parse_duration("1h 30m").unwrap().0,
        Duration::from_secs(5400)
    );
    assert!(parse_duration("").is_err());
    assert!(parse_duration("4 hours and a bit").is_err());
}

#[test]
fn empty_values_mean_unset() {
    let (c, issues) = read(&[
        ("OTEL_SESSION_MODE", "  "),
        ("OTEL_SESSION_SAMPLE_RATIO", ""),
    ]);
    assert!(issues.is_empty());
    assert_eq!(c.mode, SessionMode::App);
    assert_eq!(c.sample_ratio, 1.0);
}

#[test]
fn exporter_lists_use_the_first_and_say_so() {
    let (c, issues) = read(&[
        ("OTEL_TRACES_EXPORTER", "console, otlp"),
        ("OTEL_LOGS_EXPORTER", "stdout"),
    ]);
    assert_eq!(c.traces_exporter, ExporterKind::Console);
    assert_eq!(
        c.logs_exporter,
        ExporterKind::Console,
        "stdout is the console"
    );
    assert_eq!(issues.len(), 1);
    assert_eq!(
        issues[0].to_string(),
        "OTEL_TRACES_EXPORTER=\"console, otlp\": one exporter per signal is supported; using console"
    );
    let (c, issues) = read(&[("OTEL_TRACES_EXPORTER", "otlp,zipkin")]);
    assert_eq!(c.traces_exporter, ExporterKind::Otlp);
    assert!(matches!(issues[0], ConfigIssue::Invalid(_)));
}

/// The transport `signal`'s variables in `vars` choose, with its warnings.
fn transport(
    signal: &str,
    vars: &[(&str, &str)],
) -> (otel_session::export::Transport, Vec<String>) {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    otel_session::export::transport_from_lookup(signal, &|k| map.get(k).cloned())
}

#[test]
fn enumerated_values_ignore_case() {
    use otel_session::export::Transport;
    let (c, issues) = read(&[
        ("OTEL_SESSION_MODE", "MANUAL"),
        ("OTEL_SESSION_ERROR_SOURCES", "Logs,SPANS"),
        ("OTEL_SESSION_PROPAGATE", "True"),
        ("OTEL_SESSION_REQUEST_IDS", "TRUE"),
        ("OTEL_SESSION_CRASH_BACKTRACE", "False"),
        ("OTEL_SESSION_NATIVE_CRASHES", "FALSE"),
        ("OTEL_SDK_DISABLED", "tRuE"),
        ("OTEL_SEMCONV_EXCEPTION_SIGNAL_OPT_IN", "Logs/Dup"),
        ("OTEL_TRACES_EXPORTER", "Console"),
        ("OTEL_LOGS_EXPORTER", "None"),
        ("OTEL_METRICS_EXPORTER", "OTLP"),
    ]);
    assert!(issues.is_empty(), "{issues:?}");
    assert_eq!(c.mode, SessionMode::Manual);
    assert_eq!(
        c.error_sources,
        ErrorSources {
            logs: true,
            spans: true
        }
    );
    assert!(c.propagate && c.request_ids && c.sdk_disabled && c.exception_span_events);
    assert!(!c.crash_backtrace && !c.native_crashes);
    assert_eq!(c.traces_exporter, ExporterKind::Console);
    assert_eq!(c.logs_exporter, ExporterKind::None);
    assert_eq!(c.metrics_exporter, ExporterKind::Otlp);

    for (value, expected) in [
        ("GRPC", Transport::Grpc),
        ("Http/Protobuf", Transport::HttpProtobuf),
        ("HTTP/JSON", Transport::HttpJson),
        (" gRPC ", Transport::Grpc),
    ] {
        let (t, warnings) = transport("TRACES", &[("OTEL_EXPORTER_OTLP_PROTOCOL", value)]);
        assert_eq!((t, warnings), (expected, vec![]), "{value:?}");
        let (t, warnings) = transport("LOGS", &[("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", value)]);
        assert_eq!((t, warnings), (expected, vec![]), "per signal {value:?}");
    }
}

#[test]
fn a_rejected_enumerated_value_names_the_closest_accepted_one() {
    let cases = [
        ("OTEL_SESSION_MODE", "requests", "did you mean request?"),
        ("OTEL_SESSION_MODE", "Manaul", "did you mean manual?"),
        (
            "OTEL_SESSION_ERROR_SOURCES",
            "logs,span",
            "did you mean spans?",
        ),
        ("OTEL_SESSION_PROPAGATE", "ture", "did you mean true?"),
        ("OTEL_SDK_DISABLED", "flase", "did you mean false?"),
        ("OTEL_TRACES_EXPORTER", "consle", "did you mean console?"),
        ("OTEL_LOGS_EXPORTER", "otpl", "did you mean otlp?"),
        (
            "OTEL_SEMCONV_EXCEPTION_SIGNAL_OPT_IN",
            "log/dup",
            "did you mean logs/dup?",
        ),
    ];
    for (var, value, hint) in cases {
        let (_, issues) = read(&[(var, value)]);
        assert_eq!(issues.len(), 1, "{var}={value}: {issues:?}");
        let text = issues[0].to_string();
        assert!(text.contains(hint), "{var}={value}: {text}");
    }
    // Nothing close: no guess.
    for (var, value) in [
        ("OTEL_SESSION_MODE", "desktop"),
        ("OTEL_TRACES_EXPORTER", "jaeger"),
        ("OTEL_SESSION_PROPAGATE", "1"),
        ("OTEL_SESSION_PROPAGATE", "yes"),
    ] {
        let (_, issues) = read(&[(var, value)]);
        let text = issues[0].to_string();
        assert!(!text.contains("did you mean"), "{var}={value}: {text}");
    }
    let (_, w) = transport("TRACES", &[("OTEL_EXPORTER_OTLP_PROTOCOL", "gprc")]);
    assert!(w[0].contains("did you mean grpc?"), "{w:?}");
    let (_, w) = transport("TRACES", &[("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http")]);
    assert!(w[0].contains("did you mean http/protobuf?"), "{w:?}");
    let (_, w) = transport("TRACES", &[("OTEL_EXPORTER_OTLP_PROTOCOL", "htpp/json")]);
    assert!(w[0].contains("did you mean http/json?"), "{w:?}");
    let (_, w) = transport("TRACES", &[("OTEL_EXPORTER_OTLP_PROTOCOL", "thrift")]);
    assert!(!w[0].contains("did you mean"), "{w:?}");
}

#[test]
fn the_fail_fast_error_says_no_default_is_used_and_the_warning_says_which_is() {
    let var = "OTEL_SESSION_INACTIVITY_TIMEOUT";
    let lookup = |k: &str| (k == var).then(|| "soon".to_string());
    let (_, issues) = SessionConfig::from_lookup(&lookup);
    let warning = issues[0].to_string();
    assert!(
        warning.ends_with("; using the default 15m"),
        "init()'s warning names the default it uses: {warning}"
    );
    let error = SessionConfig::try_from_lookup(&lookup)
        .expect_err("fails fast")
        .to_string();
    assert!(
        !error.contains("using"),
        "nothing is used when the app fails fast: {error}"
    );
    assert!(
        error.starts_with("OTEL_SESSION_INACTIVITY_TIMEOUT=\"soon\" is not valid ("),
        "{error}"
    );
    assert!(
        error.ends_with("; fix it, or unset it for the default 15m"),
        "{error}"
    );
}

/// What a parser library says that a user should never have to read.
const JARGON: [&str; 8] = [
    "expected number at",
    "at 0",
    "invalid character",
    "unknown time unit",
    "supported units",
    "time unit needed",
    "ParseIntError",
    "ParseFloatError",
];

#[test]
fn bad_durations_and_numbers_are_explained_in_plain_words() {
    let cases = [
        ("soon", "expected milliseconds (1500) or a duration such as 30s, 15m, 4h or 1h 30m"),
        ("-5s", "a duration cannot be negative"),
        ("1.5s", ""),
        ("1.5", "a number with a fraction needs a unit, e.g. 1.5s (a plain number is whole milliseconds)"),
        ("1,5s", "no commas: write 1.5s, or 1h 30m"),
        ("30S", "\"S\" is not a unit: units are lowercase, write s"),
        ("15 minutes please", "expected milliseconds (1500) or a duration such as 30s, 15m, 4h or 1h 30m"),
        ("30 secnds", "\"secnds\" is not a unit (use ms, s, m, h or d); did you mean seconds?"),
        ("5x", "\"x\" is not a unit (use ms, s, m, h or d)"),
        ("30", ""),
        ("99999999999999999999999", "the number is too large"),
        ("99999999999999999999999h", "the number is too large or finer than a nanosecond"),
    ];
    for (value, reason) in cases {
        let var = "OTEL_SESSION_MAX_DURATION";
        let (_, issues) = read(&[(var, value)]);
        if reason.is_empty() {
            assert!(
                issues.iter().all(|i| !matches!(i, ConfigIssue::Invalid(_))),
                "{value}"
            );
            continue;
        }
        let text = issues[0].to_string();
        assert_eq!(
            text,
            format!("{var}={value:?} is not valid ({reason}); using the default 4h"),
        );
        for jargon in JARGON {
            assert!(!text.contains(jargon), "{jargon:?} in {text}");
        }
    }
    let (_, issues) = read(&[("OTEL_SESSION_SAMPLE_RATIO", "50%")]);
    assert_eq!(
        issues[0].to_string(),
        "OTEL_SESSION_SAMPLE_RATIO=\"50%\" is not valid (expected a number between 0.0 and 1.0); \
         using the default 1"
    );
}

#[test]
fn otel_traces_sampler_is_read_here_case_ignored_with_its_ratio() {
    use otel_session::config::TracesSampler;
    let (c, issues) = read(&[]);
    assert!(issues.is_empty());
    assert_eq!(c.traces_sampler, TracesSampler::ParentBasedAlwaysOn);
    for (value, arg, expected) in [
        ("ALWAYS_OFF", None, TracesSampler::AlwaysOff),
        ("Always_On", None, TracesSampler::AlwaysOn),
        (
            "TraceIdRatio",
            Some("0.25"),
            TracesSampler::TraceIdRatio(0.25),
        ),
        ("traceidratio", None, TracesSampler::TraceIdRatio(1.0)),
        (
            "ParentBased_TraceIdRatio",
            Some(" 0.5 "),
            TracesSampler::ParentBasedTraceIdRatio(0.5),
        ),
        (
            "parentbased_always_off",
            Some("0.5"),
            TracesSampler::ParentBasedAlwaysOff,
        ),
    ] {
        let mut vars = vec![("OTEL_TRACES_SAMPLER", value)];
        vars.extend(arg.map(|a| ("OTEL_TRACES_SAMPLER_ARG", a)));
        let (c, issues) = read(&vars);
        assert!(issues.is_empty(), "{value}: {issues:?}");
        assert_eq!(c.traces_sampler, expected, "{value} {arg:?}");
    }
    let (c, issues) = read(&[("OTEL_TRACES_SAMPLER", "always-off")]);
    assert_eq!(c.traces_sampler, TracesSampler::ParentBasedAlwaysOn);
    assert_eq!(
        issues[0].to_string(),
        "OTEL_TRACES_SAMPLER=\"always-off\" is not valid (expected always_on, always_off, \
         traceidratio, parentbased_always_on, parentbased_always_off or \
         parentbased_traceidratio; did you mean always_off?); using the default \
         parentbased_always_on"
    );
    let (_, issues) = read(&[("OTEL_TRACES_SAMPLER", "xray")]);
    assert!(
        issues[0]
            .to_string()
            .contains("(xray is not implemented by opentelemetry_sdk 0.33; use one of"),
        "{issues:?}"
    );
    let (c, issues) = read(&[
        ("OTEL_TRACES_SAMPLER", "traceidratio"),
        ("OTEL_TRACES_SAMPLER_ARG", "25%"),
    ]);
    assert_eq!(c.traces_sampler, TracesSampler::TraceIdRatio(1.0));
    assert_eq!(
        issues[0].to_string(),
        "OTEL_TRACES_SAMPLER_ARG=\"25%\" is not valid (expected a number between 0.0 and 1.0, \
         the share of traces kept); using the default 1.0"
    );
}
