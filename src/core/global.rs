//! The global session manager and the crate-root verbs.
//!
//! Each free function acts on the session manager carried by
//! [`Context::current()`] if there is one (see [`SessionContextExt`]), else on the
//! global manager installed with [`set_global_manager`] (which `init()` does). With
//! neither, they do nothing and `current_session()` is `None`.
//!
//! [`SessionContextExt`]: crate::SessionContextExt

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use opentelemetry::Context;

use crate::core::callbacks::{CallbackHandle, SessionCandidate};
use crate::core::context::ContextSession;
use crate::core::manager::{SessionManager, Shared};
use crate::model::session::{Session, User};

static GLOBAL: ArcSwapOption<Shared> = ArcSwapOption::const_empty();

/// Installs `manager` as the global session manager; returns the one it replaces.
pub fn set_global_manager(manager: SessionManager) -> Option<SessionManager> {
    GLOBAL
        .swap(Some(manager.shared))
        .map(|shared| SessionManager { shared })
}

/// Removes the global session manager; returns it.
pub fn clear_global_manager() -> Option<SessionManager> {
    GLOBAL.swap(None).map(|shared| SessionManager { shared })
}

/// The global session manager, if one is installed.
pub fn global_manager() -> Option<SessionManager> {
    GLOBAL
        .load_full()
        .map(|shared: Arc<Shared>| SessionManager { shared })
}

/// The manager the crate-root verbs act on right now.
pub fn active_manager() -> Option<SessionManager> {
    Context::map_current(|cx| cx.get::<ContextSession>().map(|c| c.0.clone()))
        .or_else(global_manager)
}

/// [`SessionManager::start_session`] on the active manager.
pub fn start_session() -> Option<Session> {
    active_manager().and_then(|m| m.start_session())
}

/// [`SessionManager::pause_session`] on the active manager.
pub fn pause_session() {
    if let Some(m) = active_manager() {
        m.pause_session();
    }
}

/// [`SessionManager::resume_session`] on the active manager (`false` without one).
pub fn resume_session() -> bool {
    active_manager().is_some_and(|m| m.resume_session())
}

/// [`SessionManager::end_session`] on the active manager.
pub fn end_session() {
    if let Some(m) = active_manager() {
        m.end_session();
    }
}

/// [`SessionManager::current_session`] on the active manager.
pub fn current_session() -> Option<Session> {
    active_manager().and_then(|m| m.current_session())
}

/// [`SessionManager::set_user`] on the active manager.
pub fn set_user(user: User) {
    if let Some(m) = active_manager() {
        m.set_user(user);
    }
}

/// [`SessionManager::add_on_session`] on the active manager (`None` without one).
pub fn add_on_session<F>(f: F) -> Option<CallbackHandle>
where
    F: Fn(&mut SessionCandidate) -> bool + Send + Sync + 'static,
{
    active_manager().map(|m| m.add_on_session(f))
}

/// [`SessionManager::remove_on_session`] on the active manager.
pub fn remove_on_session(handle: CallbackHandle) -> bool {
    active_manager().is_some_and(|m| m.remove_on_session(handle))
}

/// [`SessionManager::record_handled_error`] on the active manager.
pub fn record_handled_error() {
    if let Some(m) = active_manager() {
        m.record_handled_error();
    }
}

/// [`SessionManager::record_unhandled_error`] on the active manager.
pub fn record_unhandled_error() {
    if let Some(m) = active_manager() {
        m.record_unhandled_error();
    }
}
