//! Why a session verb did not do what it was asked.

/// A session verb that could not act.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// Called from inside an `on_session` callback, which may only amend or
    /// discard its candidate.
    #[error("{verb}() was called from inside an on_session callback and was ignored")]
    Reentrant {
        /// The verb.
        verb: &'static str,
    },
    /// A crate-root verb found neither a session scope in the current context nor
    /// a global manager (call `otel_session::init!()` or `set_global_manager`).
    #[error("no session manager: call otel_session::init!() or otel_session::set_global_manager(..) first")]
    NoManager,
    /// Called inside a request whose session the request layer owns (request
    /// mode): it starts and ends with the request.
    #[error(
        "{verb}() was called inside a request; request sessions start and end with their request"
    )]
    InRequest {
        /// The verb.
        verb: &'static str,
    },
    /// No session could be started in time: another start was still building
    /// its candidate after 2 s (a slow `on_session` callback or `IdGenerator`),
    /// or the clock or id generator itself called `start_session()` while one
    /// was being built. The current session (if any) was left as it was.
    #[error("no session was started: another start was still running its on_session callbacks or IdGenerator")]
    NotStarted,
    /// The manager's pipeline has shut down (the guard was dropped, or the
    /// provider its processors wrap was shut down): no session starts after
    /// that.
    #[error("no session was started: the session pipeline has shut down")]
    ShutDown,
    /// A session attribute or feature flag was refused (a reserved key, a
    /// size limit); nothing changed.
    #[error("session attribute refused: {0}")]
    Attribute(#[from] crate::model::attributes::AttributeError),
}
