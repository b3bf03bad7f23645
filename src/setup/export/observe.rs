//! Seeing inside an OTLP/HTTP export: `opentelemetry-otlp` reports a failed HTTP
//! export as "network error" or a bare status code. A [`Probe`] per signal, fed
//! by our HTTP client wrapper, keeps what the last attempt got: the status and its
//! `Retry-After`, what a TLS proxy's error page says, or the transport error's
//! whole chain (which tells a TLS failure from a refused connection). It never
//! keeps header values or bodies. (Over gRPC the exporter's error carries the
//! status code and the transport error's chain itself.)

// Status codes, pages and transport errors are seen by the HTTP client only.
#![cfg_attr(not(feature = "otlp-http"), allow(dead_code))]

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What a TLS proxy's error page says (nginx answers TLS problems it finds after
/// the handshake with such a page).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyPage {
    /// No client certificate, or one it does not trust (mutual TLS).
    ClientCertificate,
    /// Plain HTTP was sent to its TLS port.
    PlainHttpToTls,
}

/// What the last attempt of an export got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// An HTTP response with this status.
    Status(u16),
    /// A 4xx error page of a TLS proxy that says what went wrong.
    ProxyPage(u16, ProxyPage),
    /// No response: the transport error, its sources joined with `: `.
    Error(String),
}

/// What the last attempt of one signal's exports got, and by when the attempt
/// under way must end (the export's timeout covers its retries).
#[derive(Debug, Default)]
pub struct Probe {
    state: Mutex<ProbeState>,
}

#[derive(Debug, Default)]
struct ProbeState {
    /// The last attempt's outcome and the wait its `Retry-After` asked for.
    last: Option<(Outcome, Option<Duration>)>,
    /// The attempt's deadline and the export timeout it comes from.
    deadline: Option<(Instant, Duration)>,
}

impl Probe {
    fn state(&self) -> std::sync::MutexGuard<'_, ProbeState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records what an attempt got, and the wait its `Retry-After` asked for.
    pub fn set_last(&self, outcome: Outcome, retry_after: Option<Duration>) {
        self.state().last = Some((outcome, retry_after));
    }

    /// Before an attempt: forgets the last outcome, and the attempt must end by
    /// `deadline`, the end of an export `timeout` (`None`: the exporter's own
    /// timeout applies).
    pub fn begin_attempt(&self, deadline: Option<(Instant, Duration)>) {
        *self.state() = ProbeState {
            last: None,
            deadline,
        };
    }

    /// The time left for the attempt under way, and the export timeout it is
    /// part of, when it has a deadline.
    pub fn time_left(&self) -> Option<(Duration, Duration)> {
        let deadline = self.state().deadline;
        deadline.map(|(d, timeout)| (d.saturating_duration_since(Instant::now()), timeout))
    }

    /// What the last attempt got, if it was seen, and the wait its
    /// `Retry-After` asked for (one lock, read once per failed attempt).
    pub fn last(&self) -> Option<(Outcome, Option<Duration>)> {
        self.state().last.clone()
    }
}

/// A `Retry-After` value: seconds, or an HTTP date (the wait until then).
pub fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    #[cfg(feature = "otlp-http")]
    if let Ok(at) = httpdate::parse_http_date(value) {
        return Some(at.duration_since(now).unwrap_or_default());
    }
    let _ = now;
    None
}

/// An error and its sources, joined with `: ` (an `io::Error` wrapping another
/// error shows that error and its sources too).
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut next = inner_or_source(err);
    let mut depth = 0;
    while let Some(e) = next {
        let text = e.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = inner_or_source(e);
        depth += 1;
        if depth > 16 {
            break;
        }
    }
    out
}

fn inner_or_source<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a (dyn std::error::Error + 'static)> {
    // `io::Error::source()` skips the error it wraps; look inside instead.
    if let Some(io) = e.downcast_ref::<std::io::Error>() {
        if let Some(inner) = io.get_ref() {
            return Some(inner as &(dyn std::error::Error + 'static));
        }
    }
    e.source()
}

#[cfg(feature = "otlp-http")]
pub(crate) use http::ObservedClient;

/// What an error page says about TLS, if anything (nginx: "No required SSL
/// certificate was sent", "The SSL certificate error", "The plain HTTP request
/// was sent to HTTPS port"). The page is looked at, never printed: it may echo
/// secrets.
pub fn proxy_page(body: &[u8]) -> Option<ProxyPage> {
    let head = &body[..body.len().min(4096)];
    let text = String::from_utf8_lossy(head).to_ascii_lowercase();
    if text.contains("plain http request was sent to https port") {
        Some(ProxyPage::PlainHttpToTls)
    } else if text.contains("ssl certificate") || text.contains("client certificate") {
        Some(ProxyPage::ClientCertificate)
    } else {
        None
    }
}

#[cfg(feature = "otlp-http")]
mod http {
    use std::sync::Arc;

    use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};

    use super::{error_chain, parse_retry_after, proxy_page, Outcome, Probe};

    /// Our async `reqwest` client, observed by a [`Probe`].
    #[derive(Debug)]
    pub(crate) struct ObservedClient {
        inner: reqwest::Client,
        probe: Arc<Probe>,
    }

    impl ObservedClient {
        pub(crate) fn new(inner: reqwest::Client, probe: Arc<Probe>) -> Self {
            ObservedClient { inner, probe }
        }
    }

    #[async_trait::async_trait]
    impl HttpClient for ObservedClient {
        async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
            let result = self.inner.send_bytes(request).await;
            match &result {
                Ok(response) => {
                    let status = response.status().as_u16();
                    // Only a 4xx can be a proxy's page: a success's body is
                    // not read.
                    let page = (400..500)
                        .contains(&status)
                        .then(|| proxy_page(response.body()))
                        .flatten();
                    let outcome = match page {
                        Some(page) => Outcome::ProxyPage(status, page),
                        None => Outcome::Status(status),
                    };
                    let retry_after = response
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| parse_retry_after(v, std::time::SystemTime::now()));
                    self.probe.set_last(outcome, retry_after);
                }
                Err(e) => self
                    .probe
                    .set_last(Outcome::Error(error_chain(e.as_ref())), None),
            }
            result
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Leaf;
    impl std::fmt::Display for Leaf {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("invalid peer certificate: UnknownIssuer")
        }
    }
    impl std::error::Error for Leaf {}

    #[derive(Debug)]
    struct Top(std::io::Error);
    impl std::fmt::Display for Top {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("error sending request")
        }
    }
    impl std::error::Error for Top {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn the_chain_looks_inside_io_errors() {
        let e = Top(std::io::Error::new(std::io::ErrorKind::InvalidData, Leaf));
        assert_eq!(
            error_chain(&e),
            "error sending request: invalid peer certificate: UnknownIssuer"
        );
    }

    #[test]
    fn a_proxy_page_asking_for_a_client_certificate_is_recognised() {
        let nginx = b"<html><head><title>400 No required SSL certificate was sent</title>";
        assert_eq!(proxy_page(nginx), Some(ProxyPage::ClientCertificate));
        let plain = b"<title>400 The plain HTTP request was sent to HTTPS port</title>";
        assert_eq!(proxy_page(plain), Some(ProxyPage::PlainHttpToTls));
        assert_eq!(proxy_page(b"{\"error\":\"bad request\"}"), None);
    }

    #[test]
    fn probe_keeps_the_last_outcome_and_its_retry_after() {
        let p = Probe::default();
        p.set_last(Outcome::Status(503), Some(Duration::from_secs(2)));
        assert_eq!(
            p.last(),
            Some((Outcome::Status(503), Some(Duration::from_secs(2))))
        );
        p.begin_attempt(None);
        assert_eq!(p.last(), None);
        assert_eq!(p.time_left(), None);
        let timeout = Duration::from_secs(60);
        p.begin_attempt(Some((Instant::now() + timeout, timeout)));
        assert!(p
            .time_left()
            .is_some_and(|(left, t)| left > Duration::from_secs(50) && t == timeout));
    }

    #[test]
    fn retry_after_is_seconds_or_a_date() {
        let now = std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after(" 7 ", now), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("soon", now), None);
        if cfg!(feature = "otlp-http") {
            let later = httpdate_of(now + Duration::from_secs(30));
            assert_eq!(
                parse_retry_after(&later, now),
                Some(Duration::from_secs(30))
            );
        }
    }

    #[cfg(feature = "otlp-http")]
    fn httpdate_of(t: std::time::SystemTime) -> String {
        httpdate::fmt_http_date(t)
    }

    #[cfg(not(feature = "otlp-http"))]
    fn httpdate_of(_: std::time::SystemTime) -> String {
        String::new()
    }
}
