//! Sessions carried in an OpenTelemetry [`Context`], and the one lookup the span and
//! log hot paths make: "which session, if any, does new telemetry belong to?"
//!
//! A [`SessionManager`] put into a `Context` (with [`SessionContextExt`]) wins over
//! the manager a processor was built with: code running in that context is
//! attributed to, and session verbs act on, that manager's session. This is how
//! request-scoped and joined sessions travel with the work they belong to.

use opentelemetry::Context;

use crate::callbacks::in_hook;
use crate::manager::{SessionManager, SessionState, Shared};

#[derive(Clone, Debug)]
pub(crate) struct ContextSession(pub(crate) SessionManager);

/// Puts a [`SessionManager`] into a [`Context`].
///
/// ```
/// use opentelemetry::Context;
/// use otel_session::{SessionContextExt, SessionManager};
/// let per_tenant = SessionManager::builder().build();
/// let cx = Context::current().with_session_manager(&per_tenant);
/// assert!(cx.session_manager().unwrap().ptr_eq(&per_tenant));
/// ```
pub trait SessionContextExt {
    /// A copy of this context carrying `manager`.
    fn with_session_manager(&self, manager: &SessionManager) -> Context;
    /// The manager this context carries, if any.
    fn session_manager(&self) -> Option<&SessionManager>;
}

impl SessionContextExt for Context {
    fn with_session_manager(&self, manager: &SessionManager) -> Context {
        self.with_value(ContextSession(manager.clone()))
    }

    fn session_manager(&self) -> Option<&SessionManager> {
        self.get::<ContextSession>().map(|c| &c.0)
    }
}

/// Calls `f` with the session that telemetry starting in `cx` belongs to, if any:
/// the context's session wins over `fallback`'s. Nothing while a callback or an
/// observer runs on this thread. Lock-free and allocation-free.
#[inline]
pub(crate) fn with_stamp<R>(
    fallback: &Shared,
    cx: &Context,
    f: impl FnOnce(&SessionState) -> R,
) -> Option<R> {
    if in_hook() {
        return None;
    }
    let shared = match cx.get::<ContextSession>() {
        Some(ContextSession(m)) => &*m.shared,
        None => fallback,
    };
    let guard = shared.stamp.load();
    guard.as_deref().map(f)
}
