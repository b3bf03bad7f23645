//! Sessions carried in an OpenTelemetry [`Context`]: a request's own session, a
//! session joined from a caller, or both.
//!
//! A [`Context`] carries a light handle ([`SessionScope`]) to *a session*, never a
//! whole manager. Telemetry started in that context is stamped from it instead of
//! from the manager's app session: spans read it from the parent context the SDK
//! hands to `on_start`, log records from the current context; both give the same
//! answer inside a request because the request layer attaches the context for
//! every poll of the handler's future.

use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::{Context, StringValue};

use crate::core::request::RequestSession;
use crate::model::session::SessionId;

/// What a context says about sessions.
#[derive(Debug)]
pub(crate) struct Scope {
    /// The id telemetry in this context carries, if any: the caller's joined
    /// session, else the request session's own id when ids are stamped.
    pub(crate) stamp: Option<StringValue>,
    /// A session joined from a caller (stamp-only: never started, ended, counted
    /// or changed here).
    pub(crate) joined: Option<SessionId>,
    /// The request's own session (counted; the crate-root verbs act on it).
    pub(crate) request: Option<RequestRef>,
}

/// Where a scope's request session lives: in the scope itself (one allocation
/// for both, the context's own), or in the scope of the context this one was
/// derived from (a caller's session joined inside a request).
#[derive(Debug)]
pub(crate) enum RequestRef {
    Own(RequestSession),
    Parent(Context),
}

/// A scope was put in a context in this process (a request, a joined
/// session). Until one is, no context can carry one, and the hot paths skip
/// looking (for log records that look costs a borrow of the thread's context).
static SCOPES_MADE: AtomicBool = AtomicBool::new(false);

/// Whether a context may carry a scope (see `SCOPES_MADE`).
#[inline]
pub(crate) fn scopes_exist() -> bool {
    SCOPES_MADE.load(Ordering::Relaxed)
}

// The context value is the `Scope` itself: a `Context` keeps each value in an
// `Arc` of its own, shared by every clone of the context.
impl Scope {
    #[inline]
    pub(crate) fn of(cx: &Context) -> Option<&Scope> {
        cx.get::<Scope>()
    }

    /// The request session this scope's telemetry counts toward, if any.
    pub(crate) fn request(&self) -> Option<&RequestSession> {
        match self.request.as_ref()? {
            RequestRef::Own(session) => Some(session),
            RequestRef::Parent(cx) => Scope::of(cx)?.request(),
        }
    }

    /// The request session of `cx`, if it carries one.
    pub(crate) fn request_of(cx: &Context) -> Option<&RequestSession> {
        Scope::of(cx)?.request()
    }

    pub(crate) fn attach_to(self, cx: &Context) -> Context {
        if !SCOPES_MADE.load(Ordering::Relaxed) {
            SCOPES_MADE.store(true, Ordering::Relaxed);
        }
        cx.with_value(self)
    }
}

/// Reads and sets the session scope of a [`Context`].
///
/// ```
/// use opentelemetry::Context;
/// use otel_session::{SessionContextExt, SessionId};
/// let cx = Context::current().with_joined_session(SessionId::from("caller-session-1"));
/// assert_eq!(cx.stamped_session_id().unwrap().as_str(), "caller-session-1");
/// assert_eq!(cx.joined_session_id().unwrap().as_str(), "caller-session-1");
/// ```
pub trait SessionContextExt {
    /// A copy of this context whose telemetry carries `id`, a session another
    /// program owns (stamp-only: it is never started, ended, counted or changed
    /// here). The request layer does this from incoming baggage when
    /// `OTEL_SESSION_PROPAGATE=true`; call it yourself for other transports.
    fn with_joined_session(&self, id: SessionId) -> Context;
    /// The joined session's id, if this context carries one.
    fn joined_session_id(&self) -> Option<SessionId>;
    /// The id telemetry started in this context is stamped with *by the
    /// context* (a joined session, or a request session whose ids are stamped);
    /// `None` when the manager's app session applies.
    fn stamped_session_id(&self) -> Option<SessionId>;
}

impl SessionContextExt for Context {
    fn with_joined_session(&self, id: SessionId) -> Context {
        let request = Scope::request_of(self).map(|_| RequestRef::Parent(self.clone()));
        Scope {
            stamp: Some(StringValue::from(id.shared())),
            joined: Some(id),
            request,
        }
        .attach_to(self)
    }

    fn joined_session_id(&self) -> Option<SessionId> {
        Scope::of(self).and_then(|s| s.joined.clone())
    }

    fn stamped_session_id(&self) -> Option<SessionId> {
        Scope::of(self)
            .and_then(|s| s.stamp.as_ref())
            .map(|v| SessionId::from(v.as_str()))
    }
}
