//! Request mode: a session per incoming request, and joining a caller's session.
//!
//! [`SessionManager::begin_request`] gives a request its [`RequestScope`]: a
//! [`Context`] that carries, for the whole handling of the request,
//! - in request mode, the request's **own session** (counted by the stability
//!   metrics: `ok`, `errored` for a 5xx response, a service error or a handled
//!   error, `crashed` for a panic; reason `request`; no lifecycle spans or log
//!   events, and its id is stamped on the request's telemetry only with
//!   `OTEL_SESSION_REQUEST_IDS=true`);
//! - with propagation on, the **caller's session** from W3C baggage
//!   (`baggage: session.id=<id>`), stamped on the request's telemetry and
//!   never started, ended, counted or changed here.
//!
//! [`SessionLayer`](crate::SessionLayer) (Cargo feature `tower`) does this for
//! every request of a `tower` service; call `begin_request` yourself for other
//! servers. A request session takes no global lock, bumps no process-wide cache,
//! and leaves nothing behind when it ends.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use opentelemetry::{Context, StringValue};

use crate::core::callbacks::{run_on_session, SessionCandidate};
use crate::core::manager::SessionManager;
pub use crate::core::request::RequestOutcome;
use crate::core::request::{RequestHost, RequestSession};
use crate::core::scope::{RequestRef, Scope};
use crate::model::attributes::Attributes;
use crate::model::session::{Session, SessionId, SessionMode};
use crate::tracking::join::{session_id_from_baggage, warn_malformed};

/// One request's sessions: its own (request mode) and a joined caller's
/// (propagation). Dropping it without [`finish`](Self::finish) (a cancelled
/// request) ends the request's session with the status it has.
#[derive(Debug)]
#[must_use = "a request's session ends when its RequestScope is dropped: keep it for the \
              request's whole handling and finish it with the request's outcome"]
pub struct RequestScope {
    /// The request's context; its scope holds the request's session.
    cx: Context,
    /// The request has a session of its own, not ended yet.
    open: bool,
}

impl SessionManager {
    /// Begins handling a request: its session (request mode) and the caller's
    /// session from the request's `baggage` header values (with propagation on).
    ///
    /// ```
    /// use otel_session::{RequestOutcome, SessionManager, SessionMode};
    /// let sessions = SessionManager::builder()
    ///     .with_mode(SessionMode::Request)
    ///     .with_propagation(true)
    ///     .build();
    /// let request = sessions.begin_request(["session.id=4f1c0a9e-browser"]);
    /// {
    ///     let _in_request = request.context().clone().attach();
    ///     otel_session::record_handled_error(); // this request's session is `errored`
    /// }
    /// assert_eq!(request.session().unwrap().handled_errors(), 1);
    /// request.finish(RequestOutcome::Answered);
    /// ```
    pub fn begin_request<'a>(&self, baggage: impl IntoIterator<Item = &'a str>) -> RequestScope {
        let shared = &self.shared;
        if !shared.saw_request.load(Ordering::Relaxed) {
            shared.saw_request.store(true, Ordering::Relaxed);
        }
        let joined = if shared.tracking.propagate {
            let mut found = None;
            for header in baggage {
                match session_id_from_baggage(header) {
                    Ok(Some(id)) => {
                        found = Some(id);
                        break;
                    }
                    Ok(None) => {}
                    Err(e) => warn_malformed(&shared.warned_baggage, &e),
                }
            }
            found
        } else {
            None
        };
        let session = (shared.tracking.mode == SessionMode::Request).then(|| self.new_request());
        let stamp = match (&joined, &session) {
            (Some(id), _) => Some(StringValue::from(id.shared())),
            (None, Some(s)) if shared.tracking.request_ids && !s.discarded => {
                Some(StringValue::from(s.id().shared()))
            }
            _ => None,
        };
        let open = session.is_some();
        let cx = if joined.is_none() && session.is_none() {
            Context::current()
        } else {
            Scope {
                stamp,
                joined,
                request: session.map(RequestRef::Own),
            }
            .attach_to(&Context::current())
        };
        RequestScope { cx, open }
    }

    /// In request mode with no request seen (the layer is missing), says so.
    pub(crate) fn report_unused_request_mode(&self) {
        let shared = &self.shared;
        if shared.tracking.mode == SessionMode::Request
            && !shared.saw_request.load(Ordering::Relaxed)
        {
            crate::warn::stderr(format_args!(
                "OTEL_SESSION_MODE=request, but no request went through otel_session::SessionLayer \
                 (or SessionManager::begin_request), so no session was counted and no telemetry \
                 carries a session.id: add SessionLayer::new() as the outermost layer of your \
                 server"
            ));
        }
    }

    /// A new request session: no lock, no process-wide state touched. Its id
    /// is made now only when something needs it now (callbacks see it, or ids
    /// are stamped); otherwise at its first read, if any.
    fn new_request(&self) -> RequestSession {
        let shared = &self.shared;
        let host = Arc::downgrade(shared) as Weak<dyn RequestHost>;
        let started_at = shared.now();
        let callbacks = shared.callbacks.load();
        // What the manager's sessions carry (flags, permanent attributes set
        // outside any request): one lock-free load.
        let carried = shared.core.carried();
        let session = if callbacks.is_empty() {
            let id = shared.tracking.request_ids.then(|| shared.new_id());
            RequestSession::new(host, id, started_at, None, false, carried)
        } else {
            let mut candidate = SessionCandidate {
                id: shared.new_id(),
                previous_id: None,
                started_at,
                user: None,
                user_set: false,
                attributes: Vec::new(),
            };
            let keep = run_on_session(&callbacks, &mut candidate);
            let attributes = carried.merged(&Attributes::from_callbacks(candidate.attributes));
            RequestSession::new(
                host,
                Some(candidate.id),
                started_at,
                candidate.user,
                !keep,
                attributes,
            )
        };
        if !session.discarded {
            if let Some(counter) = &shared.counter {
                counter.started();
            }
        }
        session
    }
}

impl RequestScope {
    /// The context to run the request's handling in (attach it around every poll
    /// of the handler's future; [`SessionLayer`](crate::SessionLayer) does).
    pub fn context(&self) -> &Context {
        &self.cx
    }

    /// A snapshot of the request's own session (request mode).
    pub fn session(&self) -> Option<Session> {
        self.own().map(RequestSession::snapshot)
    }

    /// The request's own session, while it has not ended.
    fn own(&self) -> Option<&RequestSession> {
        self.open.then(|| Scope::request_of(&self.cx)).flatten()
    }

    fn end(&mut self, outcome: RequestOutcome) {
        if let Some(session) = self.own() {
            session.end(outcome);
        }
        self.open = false;
    }

    /// `true` when the request has no session of ours and joined none (app or
    /// manual mode, nothing in its baggage): there is nothing to attach.
    #[cfg(feature = "tower")]
    pub(crate) fn is_inert(&self) -> bool {
        !self.open && Scope::of(&self.cx).is_none()
    }

    /// The caller's session this request joined, if any.
    pub fn joined(&self) -> Option<SessionId> {
        Scope::of(&self.cx).and_then(|s| s.joined.clone())
    }

    /// Ends the request's session with `outcome` (reason `request`).
    pub fn finish(mut self, outcome: RequestOutcome) {
        self.end(outcome);
    }
}

impl Drop for RequestScope {
    fn drop(&mut self) {
        self.end(RequestOutcome::Answered);
    }
}
