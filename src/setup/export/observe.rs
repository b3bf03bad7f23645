//! Seeing the attempts of an export. `opentelemetry-otlp` retries inside one
//! `export` call and returns the last error as text ("network error" over HTTP),
//! so each export carries an [`Attempts`] (a tokio task-local around it) that the
//! transports report to: over HTTP our client wrapper ([`ObservedClient`]) sees
//! every attempt and what it got, typed (the status, what a TLS proxy's error
//! page says, the transport error itself, classified when it happens); over
//! gRPC an interceptor counts the attempts, and our connector sees the
//! channel's failed connections ([`Connects`]; tonic connects in a task of its
//! own, outside any export). Header values and bodies are never kept.

// Status codes, pages and transport errors are seen by the HTTP client only.
#![cfg_attr(not(feature = "otlp-http"), allow(dead_code))]

use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::failure::Failure;

/// The last failed connection of one exporter's gRPC channel, and when.
#[derive(Debug, Default)]
pub struct Connects(Mutex<Option<(Instant, Failure, String)>>);

impl Connects {
    /// A connection failed with `failure` (`text`: the error's chain).
    #[cfg_attr(not(feature = "otlp-grpc"), allow(dead_code))]
    pub fn failed(&self, failure: Failure, text: String) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), failure, text));
    }

    /// A connection that failed after `since`: how, and the error's text.
    fn since(&self, since: Instant) -> Option<(Failure, Option<String>)> {
        let last = self.0.lock().unwrap_or_else(|e| e.into_inner());
        last.as_ref()
            .filter(|(at, _, _)| *at >= since)
            .map(|(_, f, text)| (f.clone(), Some(text.clone())))
    }
}

/// What the attempts of one export saw.
#[derive(Debug, Default)]
pub struct Attempts {
    state: Mutex<AttemptsState>,
    connects: Arc<Connects>,
}

#[derive(Debug, Default)]
struct AttemptsState {
    made: u32,
    /// When the attempt under way began.
    began: Option<Instant>,
    /// How the last attempt failed and the transport's error text, when it
    /// was seen (`None` while an attempt is under way, or after a success).
    last: Option<(Failure, Option<String>)>,
}

impl Attempts {
    /// The attempts of an export whose connections `connects` sees (gRPC).
    pub fn new(connects: Arc<Connects>) -> Self {
        Attempts {
            state: Mutex::default(),
            connects,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, AttemptsState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An attempt begins.
    pub fn begin(&self) {
        let mut s = self.state();
        s.made = s.made.saturating_add(1);
        s.began = Some(Instant::now());
        s.last = None;
    }

    /// The attempt under way failed with `failure` (`text`: the transport's
    /// error, which says more than the exporter's).
    pub fn failed(&self, failure: Failure, text: Option<String>) {
        self.state().last = Some((failure, text));
    }

    /// How many attempts were made (0: none was seen).
    pub fn made(&self) -> u32 {
        self.state().made
    }

    /// The last attempt's failure and transport error text, when seen: what
    /// the client got, else a connection that failed since it began.
    pub fn last(&self) -> Option<(Failure, Option<String>)> {
        let s = self.state();
        s.last.clone().or_else(|| {
            let since = s.began?;
            self.connects.since(since)
        })
    }

    /// How the last attempt failed, when seen.
    pub fn last_failure(&self) -> Option<Failure> {
        self.last().map(|(f, _)| f)
    }
}

#[cfg(any(feature = "otlp-grpc", feature = "otlp-http"))]
tokio::task_local! {
    /// The attempts of the export under way (set around each export).
    pub(crate) static ATTEMPTS: Arc<Attempts>;
}

/// What a TLS proxy's error page says (nginx answers TLS problems it finds after
/// the handshake with such a page).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyPage {
    /// No client certificate, or one it does not trust (mutual TLS).
    ClientCertificate,
    /// Plain HTTP was sent to its TLS port.
    PlainHttpToTls,
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

/// The next error of a chain: `io::Error::source()` skips the error it wraps,
/// so look inside it instead.
pub(crate) fn inner_or_source<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a (dyn std::error::Error + 'static)> {
    if let Some(io) = e.downcast_ref::<std::io::Error>() {
        if let Some(inner) = io.get_ref() {
            return Some(inner as &(dyn std::error::Error + 'static));
        }
    }
    e.source()
}

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
pub(crate) use http::ObservedClient;

#[cfg(feature = "otlp-grpc")]
type Http = hyper_util::client::legacy::connect::HttpConnector;

/// tonic's own connector (TCP, DNS), reporting failed connections to a
/// [`Connects`].
#[cfg(feature = "otlp-grpc")]
#[derive(Debug, Clone)]
pub(crate) struct ObservedConnector {
    inner: Http,
    connects: Arc<Connects>,
}

#[cfg(feature = "otlp-grpc")]
impl ObservedConnector {
    /// A connector as tonic's `Endpoint` makes it (no scheme check: TLS is
    /// layered on top by tonic; no Nagle).
    pub(crate) fn new(connects: Arc<Connects>) -> Self {
        let mut inner = Http::new();
        inner.enforce_http(false);
        inner.set_nodelay(true);
        ObservedConnector { inner, connects }
    }
}

#[cfg(feature = "otlp-grpc")]
impl tower_service::Service<::http::Uri> for ObservedConnector {
    type Response = <Http as tower_service::Service<::http::Uri>>::Response;
    type Error = <Http as tower_service::Service<::http::Uri>>::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, uri: ::http::Uri) -> Self::Future {
        let connecting = self.inner.call(uri);
        let connects = Arc::clone(&self.connects);
        Box::pin(async move {
            let connected = connecting.await;
            if let Err(e) = &connected {
                connects.failed(Failure::of_transport_error(e), error_chain(e));
            }
            connected
        })
    }
}

#[cfg(feature = "otlp-http")]
mod http {
    use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};

    use std::sync::Arc;

    use super::{error_chain, proxy_page, Failure};

    /// Our async `reqwest` client, reporting each attempt to the export's
    /// [`Attempts`](super::Attempts).
    #[derive(Debug)]
    pub(crate) struct ObservedClient(pub(crate) reqwest::Client);

    #[async_trait::async_trait]
    impl HttpClient for ObservedClient {
        async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
            let attempts = super::ATTEMPTS.try_with(Arc::clone).ok();
            if let Some(a) = &attempts {
                a.begin();
            }
            let result = self.0.send_bytes(request).await;
            let Some(a) = attempts else {
                return result;
            };
            match &result {
                Ok(response) if response.status().is_success() => {}
                Ok(response) => {
                    let status = response.status().as_u16();
                    // Only a 4xx can be a proxy's page.
                    let page = (400..500)
                        .contains(&status)
                        .then(|| proxy_page(response.body()))
                        .flatten();
                    a.failed(Failure::of_response(status, page), None);
                }
                Err(e) => a.failed(
                    Failure::of_transport_error(e.as_ref()),
                    Some(error_chain(e.as_ref())),
                ),
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
    fn attempts_count_and_keep_the_last_failure_until_the_next_begins() {
        let connects = Arc::new(Connects::default());
        connects.failed(Failure::Unresolved, "dns error".into());
        let a = Attempts::new(Arc::clone(&connects));
        a.begin();
        assert_eq!(a.last_failure(), None, "a connection failed before");
        a.failed(Failure::Status(503), None);
        assert_eq!(
            (a.made(), a.last_failure()),
            (1, Some(Failure::Status(503)))
        );
        a.begin();
        assert_eq!((a.made(), a.last_failure()), (2, None));
        connects.failed(Failure::Refused, "tcp connect error".into());
        assert_eq!(
            a.last_failure(),
            Some(Failure::Refused),
            "gRPC: the channel's"
        );
    }
}
