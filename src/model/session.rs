//! The session model: identifiers, the [`Session`] snapshot, its [`SessionStatus`],
//! why it ended ([`EndReason`]) and the [`User`] it belongs to.
//!
//! These are plain values. The [`SessionManager`](crate::SessionManager) owns the live
//! state; [`Session`] is a copy of it taken at one instant.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use opentelemetry::KeyValue;

/// A session identifier: an opaque string (UUID v4 by default).
///
/// Cloning is cheap (a reference count); it displays as the id string.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(Arc<str>);

impl SessionId {
    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub(crate) fn shared(&self) -> Arc<str> {
        Arc::clone(&self.0)
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({})", &self.0)
    }
}

impl From<String> for SessionId {
    fn from(value: String) -> Self {
        SessionId(value.into())
    }
}

impl From<&str> for SessionId {
    fn from(value: &str) -> Self {
        SessionId(value.into())
    }
}

impl AsRef<str> for SessionId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for SessionId {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for SessionId {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

/// Health of a session, reported as `otel_session.status`.
///
/// The order is the severity order: a status is never downgraded
/// (`Ok < Errored < Abnormal < Crashed`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum SessionStatus {
    /// No error was recorded.
    Ok,
    /// At least one handled error was recorded.
    Errored,
    /// The session ended without a clean end (its process died).
    Abnormal,
    /// An unhandled error (a panic) happened during the session.
    Crashed,
}

impl SessionStatus {
    /// The attribute value: `ok`, `errored`, `abnormal` or `crashed`.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionStatus::Ok => "ok",
            SessionStatus::Errored => "errored",
            SessionStatus::Abnormal => "abnormal",
            SessionStatus::Crashed => "crashed",
        }
    }
}

impl fmt::Display for SessionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a session ended, reported as `otel_session.end_reason`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EndReason {
    /// `end_session()` was called.
    Manual,
    /// `start_session()` started a new session while this one was current.
    Replaced,
    /// No telemetry for the inactivity timeout.
    Inactivity,
    /// The session reached its maximum duration.
    MaxDuration,
    /// The app came back to the foreground after the background timeout.
    Background,
    /// The program shut its telemetry down.
    Shutdown,
    /// The program crashed.
    Crash,
    /// The process died without ending the session (found on the next start).
    Lost,
    /// The process died during a hang (a UI loop that sent no
    /// [`heartbeat`](crate::heartbeat) for the hang threshold; found on the
    /// next start, status `abnormal`).
    Hang,
    /// The request a request-mode session belonged to finished.
    Request,
}

impl EndReason {
    /// The attribute value, e.g. `manual` or `max_duration`.
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Manual => "manual",
            EndReason::Replaced => "replaced",
            EndReason::Inactivity => "inactivity",
            EndReason::MaxDuration => "max_duration",
            EndReason::Background => "background",
            EndReason::Shutdown => "shutdown",
            EndReason::Crash => "crash",
            EndReason::Lost => "lost",
            EndReason::Hang => "hang",
            EndReason::Request => "request",
        }
    }
}

impl fmt::Display for EndReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How sessions start and end by themselves (`OTEL_SESSION_MODE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
#[non_exhaustive]
pub enum SessionMode {
    /// A session starts when the manager is built; inactivity, the maximum
    /// duration and a long enough absence in the background rotate it.
    #[default]
    App,
    /// Every incoming request gets its own session (servers; see
    /// `SessionLayer`). No app-wide session.
    Request,
    /// Nothing starts by itself; timeouts still end a session.
    Manual,
}

impl SessionMode {
    /// `app`, `request` or `manual`.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionMode::App => "app",
            SessionMode::Request => "request",
            SessionMode::Manual => "manual",
        }
    }
}

impl fmt::Display for SessionMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which telemetry counts as a handled error (`OTEL_SESSION_ERROR_SOURCES`).
///
/// `tracing-opentelemetry` turns one `tracing::error!` inside a span into an
/// ERROR log record (through the log bridge), an Error status *and* an
/// `exception` event on the span: with both sources on, a span whose error was
/// already counted through a log record inside it does not count again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorSources {
    /// Log records at ERROR severity or above.
    pub logs: bool,
    /// Spans with an Error status or an `exception` event.
    pub spans: bool,
}

impl Default for ErrorSources {
    fn default() -> Self {
        ErrorSources {
            logs: true,
            spans: false,
        }
    }
}

/// The user a session belongs to (`user.id`, `user.email`, `user.full_name`).
///
/// All fields are optional; `User::default()` is "no user".
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct User {
    /// `user.id`
    pub id: Option<String>,
    /// `user.email`
    pub email: Option<String>,
    /// `user.full_name`
    pub full_name: Option<String>,
}

impl User {
    /// A user with only an id.
    pub fn with_id(id: impl Into<String>) -> Self {
        User {
            id: Some(id.into()),
            ..User::default()
        }
    }

    /// Sets `user.email`.
    pub fn email(mut self, email: impl Into<String>) -> Self {
        self.email = Some(email.into());
        self
    }

    /// Sets `user.full_name`.
    pub fn full_name(mut self, name: impl Into<String>) -> Self {
        self.full_name = Some(name.into());
        self
    }

    /// `true` when no field is set.
    pub fn is_empty(&self) -> bool {
        self.id.is_none() && self.email.is_none() && self.full_name.is_none()
    }

    /// The user as semantic-convention attributes (only the fields that are set).
    pub fn attributes(&self) -> Vec<KeyValue> {
        let mut out = Vec::with_capacity(3);
        if let Some(v) = &self.id {
            out.push(KeyValue::new(crate::model::attr::USER_ID, v.clone()));
        }
        if let Some(v) = &self.email {
            out.push(KeyValue::new(crate::model::attr::USER_EMAIL, v.clone()));
        }
        if let Some(v) = &self.full_name {
            out.push(KeyValue::new(crate::model::attr::USER_FULL_NAME, v.clone()));
        }
        out
    }
}

/// A snapshot of a session, taken by
/// [`SessionManager::current_session`](crate::SessionManager::current_session).
#[derive(Clone, Debug)]
pub struct Session {
    pub(crate) id: SessionId,
    pub(crate) previous_id: Option<SessionId>,
    pub(crate) started_at: SystemTime,
    pub(crate) paused: bool,
    pub(crate) discarded: bool,
    pub(crate) status: SessionStatus,
    pub(crate) handled_errors: u64,
    pub(crate) unhandled_errors: u64,
    pub(crate) user: Option<User>,
    pub(crate) attributes: crate::model::attributes::Attributes,
}

impl Session {
    /// The value of session attribute `key` (a property, a permanent one, a
    /// callback's, or a feature flag as `feature_flag.<name>`), if set.
    pub fn attribute(&self, key: &str) -> Option<&opentelemetry::Value> {
        self.attributes.get(key).map(|e| &e.value)
    }

    /// Every session attribute, in the order they were first set.
    pub fn attributes(&self) -> Vec<KeyValue> {
        self.attributes.key_values().collect()
    }

    /// The variant of feature flag `name`, if it is active.
    pub fn feature_flag(&self, name: &str) -> Option<String> {
        self.attributes
            .flags()
            .find(|e| {
                e.key
                    .as_str()
                    .strip_prefix(crate::model::attributes::FEATURE_FLAG_PREFIX)
                    == Some(name)
            })
            .map(|e| e.value.as_str().into_owned())
    }

    /// The session id (`session.id`).
    pub fn id(&self) -> &SessionId {
        &self.id
    }

    /// The id of the last reported session before this one (`session.previous_id`).
    pub fn previous_id(&self) -> Option<&SessionId> {
        self.previous_id.as_ref()
    }

    /// When the session started.
    pub fn started_at(&self) -> SystemTime {
        self.started_at
    }

    /// `true` while the session is paused: no telemetry is attributed to it.
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// `true` if an `on_session` callback discarded it: it is current but silent.
    pub fn is_discarded(&self) -> bool {
        self.discarded
    }

    /// The session's status so far.
    pub fn status(&self) -> SessionStatus {
        self.status
    }

    /// Handled errors counted so far (`otel_session.errors.handled`).
    pub fn handled_errors(&self) -> u64 {
        self.handled_errors
    }

    /// Unhandled errors counted so far (`otel_session.errors.unhandled`).
    pub fn unhandled_errors(&self) -> u64 {
        self.unhandled_errors
    }

    /// The session's user, if one is set.
    pub fn user(&self) -> Option<&User> {
        self.user.as_ref()
    }
}

impl fmt::Display for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.id, f)
    }
}
