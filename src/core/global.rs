//! The global session manager and the crate-root verbs.
//!
//! Each free function first looks at [`Context::current()`]:
//! - inside a request (request mode), it acts on **the request's session**:
//!   `current_session()` returns it, `record_handled_error()` makes it
//!   `errored`, `set_user(..)` sets its user; starting, pausing, resuming and
//!   ending are refused (the request layer owns it);
//! - inside a context that only *joined* a caller's session, errors are not
//!   counted (a joined session belongs to the caller), and the other verbs act
//!   on the global manager;
//! - otherwise they act on the global manager installed with
//!   [`set_global_manager`] (which `init()` does). With none, they do nothing
//!   (`start_session()` says so).

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use opentelemetry::Context;

use crate::core::callbacks::{CallbackHandle, SessionCandidate};
use crate::core::error::SessionError;
use crate::core::machine::Shared;
use crate::core::manager::SessionManager;
use crate::core::request::RequestSession;
use crate::core::scope::Scope;
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

/// Where a crate-root verb lands.
pub(crate) enum Target {
    /// Inside a request: the context that carries its session.
    Request(Context),
    Joined,
    Manager(SessionManager),
    Nothing,
}

pub(crate) fn target() -> Target {
    let cx = Context::current();
    match Scope::of(&cx).map(|s| s.request().is_some()) {
        Some(true) => Target::Request(cx),
        Some(false) => Target::Joined,
        None => global_manager().map_or(Target::Nothing, Target::Manager),
    }
}

/// `f` on the request session `cx` carries.
pub(crate) fn on_request<R>(cx: &Context, f: impl FnOnce(&RequestSession) -> R) -> Option<R> {
    Scope::request_of(cx).map(f)
}

/// The manager a verb that is not refused in `target` acts on.
pub(crate) fn manager_of(target: Target) -> Option<SessionManager> {
    match target {
        Target::Manager(m) => Some(m),
        Target::Joined => global_manager(),
        Target::Request(_) | Target::Nothing => None,
    }
}

fn refuse_in_request(verb: &'static str) -> SessionError {
    static WARNED: AtomicBool = AtomicBool::new(false);
    crate::warn::once(
        &WARNED,
        format_args!(
            "{verb}() was called inside a request and was ignored: in request mode each \
             request's session starts and ends with the request (reported once)"
        ),
    );
    SessionError::InRequest { verb }
}

/// [`SessionManager::start_session`] on the global manager.
///
/// # Errors
/// [`SessionError::InRequest`] inside a request, [`SessionError::NoManager`]
/// without a global manager, [`SessionError::Reentrant`] inside a callback.
pub fn start_session() -> Result<Session, SessionError> {
    match target() {
        Target::Request(_) => Err(refuse_in_request("start_session")),
        t => manager_of(t)
            .ok_or(SessionError::NoManager)?
            .start_session(),
    }
}

/// [`SessionManager::pause_session`] on the global manager.
pub fn pause_session() {
    match target() {
        Target::Request(_) => drop(refuse_in_request("pause_session")),
        t => {
            if let Some(m) = manager_of(t) {
                m.pause_session();
            }
        }
    }
}

/// [`SessionManager::resume_session`] on the global manager (`false` without one).
pub fn resume_session() -> bool {
    match target() {
        Target::Request(_) => {
            refuse_in_request("resume_session");
            false
        }
        t => manager_of(t).is_some_and(|m| m.resume_session()),
    }
}

/// [`SessionManager::end_session`] on the global manager.
pub fn end_session() {
    match target() {
        Target::Request(_) => drop(refuse_in_request("end_session")),
        t => {
            if let Some(m) = manager_of(t) {
                m.end_session();
            }
        }
    }
}

/// The request's session inside a request, else
/// [`SessionManager::current_session`] on the global manager.
pub fn current_session() -> Option<Session> {
    match target() {
        Target::Request(cx) => on_request(&cx, RequestSession::snapshot),
        t => manager_of(t).and_then(|m| m.current_session()),
    }
}

/// Sets the user of the request's session inside a request, else
/// [`SessionManager::set_user`] on the global manager.
pub fn set_user(user: User) {
    match target() {
        Target::Request(cx) => {
            on_request(&cx, |r| r.set_user(user));
        }
        t => {
            if let Some(m) = manager_of(t) {
                m.set_user(user);
            }
        }
    }
}

/// [`SessionManager::add_on_session`] on the global manager (`None` without one).
pub fn add_on_session<F>(f: F) -> Option<CallbackHandle>
where
    F: Fn(&mut SessionCandidate) -> bool + Send + Sync + 'static,
{
    global_manager().map(|m| m.add_on_session(f))
}

/// [`SessionManager::remove_on_session`] on the global manager.
pub fn remove_on_session(handle: CallbackHandle) -> bool {
    global_manager().is_some_and(|m| m.remove_on_session(handle))
}

/// Counts a handled error toward the request's session inside a request
/// (making it `errored`), nothing in a joined-only context, else
/// [`SessionManager::record_handled_error`] on the global manager.
pub fn record_handled_error() {
    match target() {
        Target::Request(cx) => {
            on_request(&cx, |r| r.counts.count_handled());
        }
        Target::Manager(m) => m.record_handled_error(),
        Target::Joined | Target::Nothing => {}
    }
}

/// Like [`record_handled_error`], for an unhandled error (the session becomes
/// `crashed`).
pub fn record_unhandled_error() {
    match target() {
        Target::Request(cx) => {
            on_request(&cx, |r| r.counts.count_unhandled());
        }
        Target::Manager(m) => m.record_unhandled_error(),
        Target::Joined | Target::Nothing => {}
    }
}
