//! Sessions carried in an OpenTelemetry [`Context`].
//!
//! A [`SessionManager`] put into a `Context` (with [`SessionContextExt`]) wins over
//! the manager a processor was built with: code running in that context is
//! attributed to, and session verbs act on, that manager's session. This is how
//! request-scoped and joined sessions travel with the work they belong to. The
//! lookup itself is in the `stamp` module.

use opentelemetry::Context;

use crate::core::manager::SessionManager;

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
