//! [`SessionLayer`]: request sessions and joined sessions for any `tower`
//! service over `http` (axum, hyper through `hyper-util`, tonic).
//!
//! Each request gets a [`RequestScope`](crate::RequestScope); its context is
//! attached around `call` and every poll of the response future, so spans
//! (through the parent context) and log records (through the current context)
//! of the handler see the same session. The response decides the status: a 5xx
//! (or, for gRPC, a `grpc-status` header with a server-fault code: UNKNOWN,
//! DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS) or a
//! service error makes it `errored`; a panic in the handler is caught around the
//! inner future, recorded as `crashed`, and resumed unchanged. A request with
//! no session of ours (app or manual mode, no caller's session joined) passes
//! through untouched: nothing is attached, nothing caught.
//!
//! **Order**: put `SessionLayer` *outside* `tower-http`'s `TraceLayer`
//! (`ServiceBuilder::new().layer(SessionLayer::new()).layer(TraceLayer::new_for_http())`,
//! or with axum's `Router::layer`, add it *after* the `TraceLayer`: the last
//! layer added is the outermost), so the request's span starts inside the
//! request's session.

use std::future::Future;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use http::HeaderName;

use crate::core::global::global_manager;
use crate::core::manager::SessionManager;
use crate::tracking::request::{RequestOutcome, RequestScope};

/// The manager a layer serves: a given one, or the global one, looked up for
/// each request (so a layer built before `init()`, or kept across a new
/// `init()`, serves the manager installed now).
#[derive(Clone, Debug)]
enum Source {
    Given(SessionManager),
    Global,
}

/// A `tower` layer that gives every request its session (request mode) and
/// joins callers' sessions from baggage (propagation on). See the module docs.
///
/// ```
/// use otel_session::SessionLayer;
/// let app: axum::Router = axum::Router::new()
///     .route("/", axum::routing::get(|| async { "hello" }))
///     .layer(SessionLayer::new()); // outermost: add it last
/// # let _ = app;
/// ```
#[derive(Clone, Debug)]
pub struct SessionLayer {
    source: Source,
}

impl Default for SessionLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl SessionLayer {
    /// A layer on the global manager (the one `init()` installs).
    pub fn new() -> Self {
        SessionLayer {
            source: Source::Global,
        }
    }
}

impl SessionManager {
    /// A [`SessionLayer`] on this manager.
    pub fn request_layer(&self) -> SessionLayer {
        SessionLayer {
            source: Source::Given(self.clone()),
        }
    }
}

impl<S> tower_layer::Layer<S> for SessionLayer {
    type Service = SessionService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionService {
            inner,
            source: self.source.clone(),
        }
    }
}

/// The service [`SessionLayer`] wraps around yours.
#[derive(Clone, Debug)]
pub struct SessionService<S> {
    inner: S,
    source: Source,
}

impl<S, ReqBody, ResBody> tower_service::Service<http::Request<ReqBody>> for SessionService<S>
where
    S: tower_service::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = SessionFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let headers = request.headers();
        let scope = match &self.source {
            Source::Given(m) => Some(begin(m, headers)),
            Source::Global => global_manager().map(|m| begin(&m, headers)),
        }
        // A request with no session of ours passes through untouched.
        .filter(|scope| !scope.is_inert());
        let inner = match &scope {
            Some(scope) => {
                let _attached = scope.context().clone().attach();
                self.inner.call(request)
            }
            None => self.inner.call(request),
        };
        SessionFuture { inner, scope }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`SessionService`].
    pub struct SessionFuture<F> {
        #[pin]
        inner: F,
        scope: Option<RequestScope>,
    }
}

impl<F> std::fmt::Debug for SessionFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionFuture")
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

/// `baggage` (a constant: no parsing of the name per request).
const BAGGAGE: HeaderName = HeaderName::from_static("baggage");
/// `grpc-status`
const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");

/// Begins a request on `manager`; its `baggage` headers are read only when
/// propagation is on.
fn begin(manager: &SessionManager, headers: &http::HeaderMap) -> RequestScope {
    if !manager.shared.tracking.propagate {
        return manager.begin_request(std::iter::empty());
    }
    manager.begin_request(
        headers
            .get_all(BAGGAGE)
            .iter()
            .filter_map(|v| v.to_str().ok()),
    )
}

/// gRPC status codes that mean the server failed (like a 5xx).
fn grpc_server_fault(code: &[u8]) -> bool {
    matches!(code, b"2" | b"4" | b"12" | b"13" | b"14" | b"15")
}

fn outcome_of<B>(response: &http::Response<B>) -> RequestOutcome {
    if response.status().is_server_error() {
        return RequestOutcome::Failed;
    }
    match response.headers().get(GRPC_STATUS) {
        Some(code) if grpc_server_fault(code.as_bytes()) => RequestOutcome::Failed,
        _ => RequestOutcome::Answered,
    }
}

impl<F, B, E> Future for SessionFuture<F>
where
    F: Future<Output = Result<http::Response<B>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Some(scope) = this.scope.as_ref() else {
            return this.inner.poll(cx);
        };
        let polled = {
            let _attached = scope.context().clone().attach();
            let inner = this.inner;
            catch_unwind(AssertUnwindSafe(|| inner.poll(cx)))
        };
        match polled {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(result)) => {
                let outcome = match &result {
                    Ok(response) => outcome_of(response),
                    Err(_) => RequestOutcome::Failed,
                };
                if let Some(scope) = this.scope.take() {
                    scope.finish(outcome);
                }
                Poll::Ready(result)
            }
            Err(panic) => {
                if let Some(scope) = this.scope.take() {
                    scope.finish(RequestOutcome::Panicked);
                }
                resume_unwind(panic)
            }
        }
    }
}
