//! Where each signal's OTLP export goes: the URL resolved from the environment the
//! way `opentelemetry-otlp` resolves it (we pass the result to it explicitly, so
//! what a warning prints is what was used), and the transport of each signal, with
//! one warning per bad protocol value naming the fallback.

use std::fmt;
use std::time::Duration;

use crate::setup::config::Transport;

/// `OTEL_EXPORTER_OTLP_ENDPOINT`
pub const ENV_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// `OTEL_EXPORTER_OTLP_PROTOCOL`
pub const ENV_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_PROTOCOL";
/// The endpoint used over HTTP when none is configured.
pub const DEFAULT_HTTP_ENDPOINT: &str = "http://localhost:4318";
/// The endpoint used over gRPC when none is configured.
pub const DEFAULT_GRPC_ENDPOINT: &str = "http://localhost:4317";
/// `OTEL_EXPORTER_OTLP_TIMEOUT`
pub const ENV_TIMEOUT: &str = "OTEL_EXPORTER_OTLP_TIMEOUT";
/// The export timeout when none is configured (it also bounds the retries).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The export timeout for `0`, which means no limit: a year, as good as none,
/// and far enough from `Instant`'s end that no deadline computed from it (ours,
/// tokio's, reqwest's, tonic's) overflows. The guard's shutdown still cuts it.
pub const NO_LIMIT: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// One of the three signals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Signal {
    /// Spans.
    Traces,
    /// Log records.
    Logs,
    /// Metric points.
    Metrics,
}

impl Signal {
    /// All three, in the order warnings list them.
    pub const ALL: [Signal; 3] = [Signal::Traces, Signal::Logs, Signal::Metrics];

    /// The part of the per-signal variable names: `TRACES`, `LOGS`, `METRICS`.
    pub fn env_part(self) -> &'static str {
        ["TRACES", "LOGS", "METRICS"][self as usize]
    }

    /// `traces`, `logs`, `metrics`.
    pub fn name(self) -> &'static str {
        ["traces", "logs", "metrics"][self as usize]
    }

    /// What one item is called: `spans`, `log records`, `metric points`.
    pub fn items(self) -> &'static str {
        ["spans", "log records", "metric points"][self as usize]
    }

    /// The OTLP/HTTP path appended to the generic endpoint.
    pub fn http_path(self) -> &'static str {
        ["/v1/traces", "/v1/logs", "/v1/metrics"][self as usize]
    }

    /// `OTEL_EXPORTER_OTLP_{SIGNAL}_{suffix}`.
    pub fn var(self, suffix: &str) -> String {
        format!("OTEL_EXPORTER_OTLP_{}_{suffix}", self.env_part())
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which setting chose a signal's endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointSource {
    /// Nothing was configured: the default for the transport.
    Default,
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` (a base URL; HTTP appends the signal path).
    Generic(String),
    /// `OTEL_EXPORTER_OTLP_{SIGNAL}_ENDPOINT` (used as given); the variable's name.
    Signal(String, String),
}

/// Where one signal's OTLP export goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The signal.
    pub signal: Signal,
    /// Its transport.
    pub transport: Transport,
    /// The URL used (for HTTP with the signal path).
    pub url: String,
    /// Which setting chose it, with the value as configured.
    pub source: EndpointSource,
    /// The export timeout, retries included (`OTEL_EXPORTER_OTLP_{SIGNAL_}TIMEOUT`,
    /// milliseconds; 10 s by default; `0` is [`NO_LIMIT`]).
    pub timeout: Duration,
}

impl Target {
    /// The URL for messages: user and password, and query values, left out.
    pub fn shown_url(&self) -> String {
        redact_url(&self.url)
    }

    /// The variable that set the endpoint, if any.
    pub fn endpoint_var(&self) -> Option<String> {
        match &self.source {
            EndpointSource::Default => None,
            EndpointSource::Generic(_) => Some(ENV_ENDPOINT.to_string()),
            EndpointSource::Signal(var, _) => Some(var.clone()),
        }
    }

    /// The endpoint's value as configured (`None` for the default).
    pub fn configured(&self) -> Option<&str> {
        match &self.source {
            EndpointSource::Default => None,
            EndpointSource::Generic(v) | EndpointSource::Signal(_, v) => Some(v),
        }
    }

    /// The URL's scheme (`http`, `https`), if it has one.
    pub fn scheme(&self) -> Option<&str> {
        scheme_of(&self.url)
    }

    /// The URL's port: the explicit one, else the scheme's default.
    pub fn port(&self) -> Option<u16> {
        port_of(&self.url)
    }
}

/// The scheme of `url`, when it has one (`scheme://`).
pub(crate) fn scheme_of(url: &str) -> Option<&str> {
    let (scheme, _) = url.split_once("://")?;
    let valid = !scheme.is_empty()
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    valid.then_some(scheme)
}

/// `host:port` (or `[v6]:port`) of a URL with a scheme.
fn authority_of(url: &str) -> Option<&str> {
    let (_, rest) = url.split_once("://")?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    Some(authority.rsplit_once('@').map_or(authority, |(_, a)| a))
}

/// The path (with query) of a URL with a scheme; `""` when there is none.
pub(crate) fn path_of(url: &str) -> &str {
    let Some((_, rest)) = url.split_once("://") else {
        return "";
    };
    rest.find(['/', '?', '#']).map_or("", |i| &rest[i..])
}

/// `scheme://host:port` of a URL: the URL without its path.
pub(crate) fn origin_of(url: &str) -> &str {
    url.strip_suffix(path_of(url)).unwrap_or(url)
}

/// The host of a URL (an IPv6 literal with its brackets); the whole text when
/// it has no scheme.
pub(crate) fn host_of(url: &str) -> &str {
    let Some(authority) = authority_of(url) else {
        return url;
    };
    match authority.find(']') {
        Some(end) => &authority[..=end],
        None => authority.split(':').next().unwrap_or(authority),
    }
}

fn port_of(url: &str) -> Option<u16> {
    let authority = authority_of(url)?;
    let after_host = match authority.rfind(']') {
        Some(i) => &authority[i + 1..],
        None => authority,
    };
    match after_host.rsplit_once(':') {
        Some((_, port)) => port.parse().ok(),
        None => match scheme_of(url)? {
            "http" => Some(80),
            "https" => Some(443),
            _ => None,
        },
    }
}

/// `url` without user information and query values, for printing.
pub fn redact_url(url: &str) -> String {
    let (head, query) = match url.split_once('?') {
        Some((h, _)) => (h, Some("?…")),
        None => (url, None),
    };
    let head = match head.split_once("://") {
        Some((scheme, rest)) => {
            let end = rest.find('/').unwrap_or(rest.len());
            let (authority, path) = rest.split_at(end);
            match authority.rsplit_once('@') {
                Some((_, host)) => format!("{scheme}://…@{host}{path}"),
                None => head.to_string(),
            }
        }
        None => head.to_string(),
    };
    format!("{head}{}", query.unwrap_or(""))
}

/// `text` with the user information and query of every URL in it left out.
pub fn redact_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        out.push_str(&rest[..i + 3]);
        rest = &rest[i + 3..];
        let end = rest
            .find(|c: char| c.is_whitespace() || matches!(c, ')' | '"' | '\'' | ','))
            .unwrap_or(rest.len());
        out.push_str(redact_url(&format!("x://{}", &rest[..end])).trim_start_matches("x://"));
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// A variable's value as `opentelemetry-otlp` reads it: unset and empty are the same.
fn get(lookup: &dyn Fn(&str) -> Option<String>, var: &str) -> Option<String> {
    lookup(var).filter(|v| !v.is_empty())
}

/// Resolves where `signal` goes over `transport`, as `opentelemetry-otlp` would:
/// the signal's variable as given, else the generic one (over HTTP with the
/// signal path appended), else the default; over gRPC an endpoint without a
/// scheme gets `https://`, or `http://` when `OTEL_EXPORTER_OTLP_{SIGNAL_}INSECURE`
/// is `true`.
pub fn resolve(
    signal: Signal,
    transport: Transport,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Target {
    let signal_var = signal.var("ENDPOINT");
    let (url, source) = if let Some(v) = get(lookup, &signal_var) {
        (v.clone(), EndpointSource::Signal(signal_var, v))
    } else if let Some(v) = get(lookup, ENV_ENDPOINT) {
        let url = match transport {
            Transport::Grpc => v.clone(),
            Transport::HttpProtobuf | Transport::HttpJson => append_path(&v, signal.http_path()),
        };
        (url, EndpointSource::Generic(v))
    } else {
        let url = match transport {
            Transport::Grpc => DEFAULT_GRPC_ENDPOINT.to_string(),
            Transport::HttpProtobuf | Transport::HttpJson => {
                append_path(DEFAULT_HTTP_ENDPOINT, signal.http_path())
            }
        };
        (url, EndpointSource::Default)
    };
    let url = match transport {
        Transport::Grpc if scheme_of(&url).is_none() => {
            let insecure = get(lookup, &signal.var("INSECURE"))
                .or_else(|| get(lookup, "OTEL_EXPORTER_OTLP_INSECURE"))
                .is_some_and(|v| v.eq_ignore_ascii_case("true"));
            format!("{}://{url}", if insecure { "http" } else { "https" })
        }
        _ => url,
    };
    Target {
        signal,
        transport,
        url,
        source,
        timeout: timeout(signal, lookup).0,
    }
}

/// The export timeout of `signal` (`0`: no limit, [`NO_LIMIT`]) and, when a
/// variable holds something other than milliseconds, a warning naming it (the
/// next source applies, as in `opentelemetry-otlp`).
pub fn timeout(
    signal: Signal,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> (Duration, Option<String>) {
    let mut warning = None;
    for var in [signal.var("TIMEOUT"), ENV_TIMEOUT.to_string()] {
        let Some(raw) = get(lookup, &var) else {
            continue;
        };
        match raw.trim().parse::<u64>() {
            Ok(0) => return (NO_LIMIT, warning),
            Ok(ms) => return (Duration::from_millis(ms), warning),
            Err(_) => {
                warning.get_or_insert_with(|| {
                    format!(
                        "{var}={raw:?} is not valid (expected milliseconds, e.g. 10000); \
                         ignoring it"
                    )
                });
            }
        }
    }
    (DEFAULT_TIMEOUT, warning)
}

fn append_path(base: &str, path: &str) -> String {
    if base.ends_with('/') {
        format!("{base}{}", &path[1..])
    } else {
        format!("{base}{path}")
    }
}

/// The transport each signal uses: the signal's
/// `OTEL_EXPORTER_OTLP_{SIGNAL}_PROTOCOL`, else `OTEL_EXPORTER_OTLP_PROTOCOL`, else
/// `default`. A bad value is reported once (not once per signal) with what is
/// used instead, and the next source applies. Each warning is tagged with the
/// signal whose variable it is about (`None`: the generic variable).
pub fn transports(
    lookup: &dyn Fn(&str) -> Option<String>,
    default: Transport,
) -> ([Transport; 3], Vec<(Option<Signal>, String)>) {
    const NAMES: [&str; 3] = ["grpc", "http/protobuf", "http/json"];
    // Case ignored, as for every enumerated value (`GRPC`, `Http/Protobuf`).
    let parse = |var: &str| -> Option<Result<Transport, String>> {
        let raw = lookup(var)?;
        match raw.trim().to_ascii_lowercase().as_str() {
            "" => None,
            "grpc" => Some(Ok(Transport::Grpc)),
            "http/protobuf" => Some(Ok(Transport::HttpProtobuf)),
            "http/json" => Some(Ok(Transport::HttpJson)),
            _ => Some(Err(raw.trim().to_string())),
        }
    };
    let expected = |bad: &str| {
        format!(
            "expected grpc, http/protobuf or http/json{}",
            crate::setup::config::suggest::did_you_mean(bad, &NAMES)
        )
    };
    let mut warnings = Vec::new();
    let generic = match parse(ENV_PROTOCOL) {
        Some(Ok(t)) => Some(t),
        Some(Err(bad)) => {
            warnings.push((
                None,
                format!(
                    "{ENV_PROTOCOL}={bad:?} is not valid ({}); using {default} (the default)",
                    expected(&bad)
                ),
            ));
            None
        }
        None => None,
    };
    let fallback = generic.unwrap_or(default);
    let fallback_from = if generic.is_some() {
        format!("from {ENV_PROTOCOL}")
    } else {
        "(the default)".to_string()
    };
    let mut chosen = [fallback; 3];
    for (i, signal) in Signal::ALL.into_iter().enumerate() {
        let var = signal.var("PROTOCOL");
        match parse(&var) {
            Some(Ok(t)) => chosen[i] = t,
            Some(Err(bad)) => warnings.push((
                Some(signal),
                format!(
                    "{var}={bad:?} is not valid ({}); using {fallback} {fallback_from}",
                    expected(&bad)
                ),
            )),
            None => {}
        }
    }
    (chosen, warnings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::setup::export::test_env as env;

    #[test]
    fn signals_index_per_signal_arrays_in_the_order_of_all() {
        for (i, s) in Signal::ALL.into_iter().enumerate() {
            assert_eq!(s as usize, i, "{s:?}");
        }
    }

    #[test]
    fn origin_and_host_of_the_urls_messages_name() {
        let url = "https://user:pw@[::1]:4318/v1/traces?x=1";
        assert_eq!(origin_of(url), "https://user:pw@[::1]:4318");
        assert_eq!(host_of(url), "[::1]");
        assert_eq!(origin_of("http://collector:4317"), "http://collector:4317");
        assert_eq!(host_of("http://collector:4317/"), "collector");
        assert_eq!(host_of("collector:4317"), "collector:4317", "no scheme");
    }

    #[test]
    fn http_appends_the_signal_path_to_the_generic_endpoint_only() {
        let e = env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318/"),
            ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "http://l:9/custom"),
        ]);
        let t = resolve(Signal::Traces, Transport::HttpProtobuf, &e);
        assert_eq!(t.url, "http://c:4318/v1/traces");
        assert_eq!(
            t.endpoint_var().as_deref(),
            Some("OTEL_EXPORTER_OTLP_ENDPOINT")
        );
        let l = resolve(Signal::Logs, Transport::HttpJson, &e);
        assert_eq!(l.url, "http://l:9/custom");
        assert_eq!(
            l.endpoint_var().as_deref(),
            Some("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT")
        );
        let m = resolve(Signal::Metrics, Transport::Grpc, &e);
        assert_eq!(m.url, "http://c:4318/", "gRPC takes the endpoint as given");
    }

    #[test]
    fn defaults_per_transport_and_grpc_without_scheme() {
        let none = env(&[]);
        let t = resolve(Signal::Metrics, Transport::HttpProtobuf, &none);
        assert_eq!(t.url, "http://localhost:4318/v1/metrics");
        assert_eq!(t.source, EndpointSource::Default);
        assert_eq!(
            resolve(Signal::Traces, Transport::Grpc, &none).url,
            "http://localhost:4317"
        );
        let bare = env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317")]);
        assert_eq!(
            resolve(Signal::Traces, Transport::Grpc, &bare).url,
            "https://collector:4317"
        );
        let insecure = env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317"),
            ("OTEL_EXPORTER_OTLP_INSECURE", "true"),
        ]);
        assert_eq!(
            resolve(Signal::Traces, Transport::Grpc, &insecure).url,
            "http://collector:4317"
        );
    }

    #[test]
    fn urls_are_shown_without_secrets() {
        assert_eq!(
            redact_url("https://user:pw@host:1/v1/traces?api_key=s3cret"),
            "https://…@host:1/v1/traces?…"
        );
        assert_eq!(redact_url("http://h:4318/v1/logs"), "http://h:4318/v1/logs");
        assert_eq!(
            redact_text("error sending request for url (https://u:p@h/v1/traces?k=v): refused"),
            "error sending request for url (https://…@h/v1/traces?…): refused"
        );
    }

    #[test]
    fn ports_and_paths() {
        let t = |url: &str| Target {
            signal: Signal::Traces,
            transport: Transport::Grpc,
            url: url.into(),
            source: EndpointSource::Default,
            timeout: DEFAULT_TIMEOUT,
        };
        assert_eq!(t("http://h:4317").port(), Some(4317));
        assert_eq!(t("https://h/x").port(), Some(443));
        assert_eq!(t("http://[::1]:4318/v1/traces").port(), Some(4318));
        assert_eq!(t("localhost:4318").scheme(), None);
        assert_eq!(path_of("http://h:1/v1/traces?x"), "/v1/traces?x");
        assert_eq!(path_of("http://h:1"), "");
    }

    #[test]
    fn timeouts_are_milliseconds_and_a_bad_one_is_named() {
        let e = env(&[
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "10s"),
            ("OTEL_EXPORTER_OTLP_LOGS_TIMEOUT", "2500"),
        ]);
        assert_eq!(
            timeout(Signal::Logs, &e),
            (Duration::from_millis(2500), None)
        );
        assert_eq!(
            timeout(Signal::Traces, &e),
            (
                DEFAULT_TIMEOUT,
                Some(
                    "OTEL_EXPORTER_OTLP_TIMEOUT=\"10s\" is not valid (expected milliseconds, \
                     e.g. 10000); ignoring it"
                        .to_string()
                )
            )
        );
    }

    #[test]
    fn a_timeout_of_zero_means_no_limit() {
        for var in [
            "OTEL_EXPORTER_OTLP_TIMEOUT",
            "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
        ] {
            let (t, warning) = timeout(Signal::Traces, &env(&[(var, "0")]));
            assert_eq!((t, warning), (NO_LIMIT, None), "{var}");
        }
        assert!(std::time::Instant::now().checked_add(NO_LIMIT).is_some());
    }

    #[test]
    fn a_protocol_typo_is_one_warning_naming_the_fallback() {
        let (t, w) = transports(
            &env(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuff")]),
            Transport::HttpProtobuf,
        );
        assert_eq!(t, [Transport::HttpProtobuf; 3]);
        assert_eq!(
            w,
            [(
                None,
                "OTEL_EXPORTER_OTLP_PROTOCOL=\"http/protobuff\" is not valid (expected grpc, \
              http/protobuf or http/json; did you mean http/protobuf?); using http/protobuf \
              (the default)"
                    .to_string()
            )]
        );
        let (t, w) = transports(
            &env(&[
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
                ("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", "gprc"),
                ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "http/json"),
            ]),
            Transport::HttpProtobuf,
        );
        assert_eq!(t, [Transport::Grpc, Transport::Grpc, Transport::HttpJson]);
        assert_eq!(
            w,
            [(
                Some(Signal::Logs),
                "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL=\"gprc\" is not valid (expected grpc, \
              http/protobuf or http/json; did you mean grpc?); using grpc from \
              OTEL_EXPORTER_OTLP_PROTOCOL"
                    .to_string()
            )]
        );
    }
}
