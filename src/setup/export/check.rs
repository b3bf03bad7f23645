//! Checks of the OTLP settings that can be made before anything is sent, each
//! reported once (not once per signal): header lists `opentelemetry-otlp` would
//! silently drop entries of, compression values it would quietly ignore, and TLS
//! files given for an endpoint that is not `https`. Header values are never
//! printed, only their keys.

use super::target::{Signal, Target};

use super::tls::TlsVars;

/// `OTEL_EXPORTER_OTLP_HEADERS`
pub const ENV_HEADERS: &str = "OTEL_EXPORTER_OTLP_HEADERS";

/// Why entries of a header list are dropped (keys only: values are secrets).
pub fn header_warnings(var: &str, value: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, entry) in value.split_terminator(',').map(str::trim).enumerate() {
        let n = i + 1;
        if entry.is_empty() {
            continue;
        }
        let Some((key, val)) = entry.split_once('=') else {
            out.push(format!(
                "{var}: entry {n} has no '=' (expected key=value,key2=value2; values \
                 URL-encoded); it is not sent"
            ));
            continue;
        };
        let key = key.trim();
        let val = val.trim();
        if key.is_empty() {
            out.push(format!("{var}: entry {n} has no key; it is not sent"));
        } else if !key.bytes().all(is_token_byte) {
            out.push(format!(
                "{var}: the header name {key:?} is not valid (letters, digits and !#$%&'*+-.^_`|~ \
                 only); it is not sent"
            ));
        } else if val.is_empty() {
            out.push(format!(
                "{var}: header {key} has an empty value; it is not sent"
            ));
        } else if !decoded_is_visible(val) {
            out.push(format!(
                "{var}: the value of header {key} is not a valid header value (control \
                 characters, as given or %-encoded); it is not sent"
            ));
        }
    }
    out
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Whether the header value `opentelemetry-otlp` sends is a valid one (visible
/// ASCII, spaces, tabs): the %-decoded value, or the value as given when an
/// escape is malformed or the decoded bytes are not UTF-8 (it keeps the raw
/// value then).
fn decoded_is_visible(value: &str) -> bool {
    let bytes = value.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = value
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match hex {
                Some(b) => {
                    decoded.push(b);
                    i += 3;
                    continue;
                }
                // Not an escape: opentelemetry-otlp then keeps the raw value.
                None => return value.bytes().all(visible),
            }
        }
        decoded.push(bytes[i]);
        i += 1;
    }
    match std::str::from_utf8(&decoded) {
        Ok(_) => decoded.iter().copied().all(visible),
        Err(_) => value.bytes().all(visible),
    }
}

fn visible(b: u8) -> bool {
    b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80
}

/// The header-list warnings for the generic variable and each signal's.
pub fn all_header_warnings(lookup: &dyn Fn(&str) -> Option<String>) -> Vec<String> {
    let mut vars = vec![ENV_HEADERS.to_string()];
    vars.extend(Signal::ALL.iter().map(|s| s.var("HEADERS")));
    vars.iter()
        .filter_map(|var| lookup(var).map(|v| header_warnings(var, &v)))
        .flatten()
        .collect()
}

/// `OTEL_EXPORTER_OTLP_COMPRESSION`
pub const ENV_COMPRESSION: &str = "OTEL_EXPORTER_OTLP_COMPRESSION";

/// Warnings for compression variables whose value `opentelemetry-otlp` would
/// ignore (it only says so through its internal logs): gzip is built in, zstd
/// is not, and anything else is no compression. An ignored per-signal value
/// falls through to the generic variable, as there.
pub fn compression_warnings(lookup: &dyn Fn(&str) -> Option<String>) -> Vec<String> {
    let mut vars = vec![ENV_COMPRESSION.to_string()];
    vars.extend(Signal::ALL.iter().map(|s| s.var("COMPRESSION")));
    vars.iter()
        .filter_map(|var| {
            let raw = lookup(var).filter(|v| !v.is_empty())?;
            match raw.to_ascii_lowercase().as_str() {
                "gzip" | "none" => None,
                "zstd" => Some(format!(
                    "{var}=zstd: zstd is not compiled into otel-session, so it is ignored; use \
                     gzip (or none)"
                )),
                _ => Some(format!(
                    "{var}={raw:?} is not a compression (gzip or none), so it is ignored"
                )),
            }
        })
        .collect()
}

/// A warning when TLS files are configured for a target that does not use TLS.
pub fn tls_without_https(target: &Target, vars: &TlsVars) -> Option<String> {
    if !vars.any() || target.scheme() == Some("https") {
        return None;
    }
    let url = target.shown_url();
    let origin = super::target::origin_of(&url);
    Some(format!(
        "{} set, but {origin} is not https://: no TLS is used and the files are ignored; \
         write https:// in the endpoint to use them",
        join(&vars.names()),
    ))
}

/// `a`, `a and b`, `a, b and c`.
pub fn join(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => one.to_string(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_compression_that_would_be_ignored_is_named() {
        let env = |var: &str| match var {
            "OTEL_EXPORTER_OTLP_COMPRESSION" => Some("GZIP".to_string()),
            "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION" => Some("zstd".to_string()),
            "OTEL_EXPORTER_OTLP_LOGS_COMPRESSION" => Some("brotli".to_string()),
            "OTEL_EXPORTER_OTLP_METRICS_COMPRESSION" => Some("none".to_string()),
            _ => None,
        };
        assert_eq!(
            compression_warnings(&env),
            [
                "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION=zstd: zstd is not compiled into \
                 otel-session, so it is ignored; use gzip (or none)",
                "OTEL_EXPORTER_OTLP_LOGS_COMPRESSION=\"brotli\" is not a compression (gzip or \
                 none), so it is ignored",
            ]
        );
        assert!(compression_warnings(&|_| None).is_empty());
    }

    #[test]
    fn header_problems_name_keys_never_values() {
        let w = header_warnings(
            "OTEL_EXPORTER_OTLP_HEADERS",
            "api-key=s3cret,justsecret, bad key=s3cret,x-empty=,x-ctl=a%0Ab,ok=Bearer%20s3cret,\
             x-raw=%FF%0A,x-bad-escape=100%",
        );
        assert_eq!(
            w,
            [
                "OTEL_EXPORTER_OTLP_HEADERS: entry 2 has no '=' (expected key=value,key2=value2; \
                 values URL-encoded); it is not sent",
                "OTEL_EXPORTER_OTLP_HEADERS: the header name \"bad key\" is not valid (letters, \
                 digits and !#$%&'*+-.^_`|~ only); it is not sent",
                "OTEL_EXPORTER_OTLP_HEADERS: header x-empty has an empty value; it is not sent",
                "OTEL_EXPORTER_OTLP_HEADERS: the value of header x-ctl is not a valid header \
                 value (control characters, as given or %-encoded); it is not sent",
            ],
            "x-raw (not UTF-8 once decoded) and x-bad-escape are sent as given"
        );
        assert!(w
            .iter()
            .all(|l| !l.contains("s3cret") && !l.contains("justsecret")));
    }

    #[test]
    fn join_lists() {
        assert_eq!(join(&["a"]), "a");
        assert_eq!(join(&["a", "b", "c"]), "a, b and c");
    }
}
