//! Seeing inside an OTLP export: `opentelemetry-otlp` retries transient failures
//! itself and returns one error at the end (over HTTP only "network error", with
//! no detail). A [`Probe`] per signal, fed by our HTTP client wrapper or our gRPC
//! interceptor, counts the attempts (so retries can be counted) and keeps what
//! the last one got (a status code or the transport error's whole chain, which
//! tells a TLS failure from a refused connection). Neither sees header values.

// Status codes, pages and transport errors are seen by the HTTP client only.
#![cfg_attr(not(feature = "otlp-http"), allow(dead_code))]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

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

/// Attempts and the last outcome of one signal's exports.
#[derive(Debug, Default)]
pub struct Probe {
    attempts: AtomicU64,
    last: Mutex<Option<Outcome>>,
}

impl Probe {
    /// Counts one attempt.
    pub fn attempt(&self) {
        self.attempts.fetch_add(1, Ordering::Relaxed);
    }

    /// Attempts so far.
    pub fn attempts(&self) -> u64 {
        self.attempts.load(Ordering::Relaxed)
    }

    /// Records what an attempt got.
    pub fn set_last(&self, outcome: Outcome) {
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(outcome);
    }

    /// Forgets the last outcome (before an export).
    pub fn clear_last(&self) {
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// What the last attempt got, if it was seen.
    pub fn last(&self) -> Option<Outcome> {
        self.last.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
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

    use super::{error_chain, proxy_page, Outcome, Probe};

    /// The blocking `reqwest` client, observed by a [`Probe`].
    #[derive(Debug)]
    pub(crate) struct ObservedClient {
        inner: reqwest::blocking::Client,
        probe: Arc<Probe>,
    }

    impl ObservedClient {
        pub(crate) fn new(inner: reqwest::blocking::Client, probe: Arc<Probe>) -> Self {
            ObservedClient { inner, probe }
        }
    }

    #[async_trait::async_trait]
    impl HttpClient for ObservedClient {
        async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
            self.probe.attempt();
            let result = self.inner.send_bytes(request).await;
            self.probe.set_last(match &result {
                Ok(response) => {
                    let status = response.status().as_u16();
                    match proxy_page(response.body()) {
                        Some(page) if (400..500).contains(&status) => {
                            Outcome::ProxyPage(status, page)
                        }
                        _ => Outcome::Status(status),
                    }
                }
                Err(e) => Outcome::Error(error_chain(e.as_ref())),
            });
            result
        }
    }
}

/// Counts gRPC export attempts (tonic calls the interceptor once per attempt).
#[cfg(feature = "otlp-grpc")]
#[derive(Debug, Clone)]
pub(crate) struct CountAttempts(pub(crate) std::sync::Arc<Probe>);

#[cfg(feature = "otlp-grpc")]
impl tonic::service::Interceptor for CountAttempts {
    fn call(&mut self, request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        self.0.attempt();
        Ok(request)
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
    fn probe_counts_and_keeps_the_last_outcome() {
        let p = Probe::default();
        p.attempt();
        p.attempt();
        p.set_last(Outcome::Status(503));
        assert_eq!((p.attempts(), p.last()), (2, Some(Outcome::Status(503))));
        p.clear_last();
        assert_eq!(p.last(), None);
    }
}
