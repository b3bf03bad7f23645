//! One request's session (request mode): what a request's `Context` carries
//! and the crate-root verbs, the panic hook and the error counting act on.
//!
//! Lighter than an app session: no lifecycle telemetry, no timeline, no
//! timeouts; its counts (`core::counts`), its user, and an id made only when
//! something reads it (a snapshot, a callback, stamped ids): a request nobody
//! asks about never draws a random id. It holds its manager weakly (a context
//! carries a handle to a session, never a whole manager): the id generator,
//! the clock and the stability metrics are reached through it.
//!
//! May use: `model`, `counts`, `telemetry`.

use std::sync::{Mutex, OnceLock, Weak};
use std::time::SystemTime;

use crate::core::counts::Counts;
use crate::core::telemetry::SessionCounter;
use crate::model::attributes::{AttributeError, Attributes, Entry};
use crate::model::exception::{CrashSettings, Exception};
use crate::model::id::{IdGenerator, UuidV4Generator};
use crate::model::session::{Session, SessionId, SessionStatus, User};

/// What a request session needs from its manager (implemented by the
/// manager's shared state).
pub(crate) trait RequestHost: Send + Sync {
    /// A new session id (the manager's id generator, guarded).
    fn new_id(&self) -> SessionId;
    /// The manager's clock.
    fn now(&self) -> SystemTime;
    /// The stability metrics, if any.
    fn counter(&self) -> Option<&dyn SessionCounter>;
    /// The session attribute `otel_session.ended` is split by, if any.
    fn split_key(&self) -> Option<&opentelemetry::Key>;
    /// Sends a crash report of a request (carrying `id`, if given, and the
    /// request's feature flags).
    fn report(&self, e: &Exception, id: Option<&SessionId>, flags: Vec<opentelemetry::KeyValue>);
    /// How crashes are reported.
    fn crash_settings(&self) -> CrashSettings;
    /// The session attributes stamped on telemetry
    /// (`OTEL_SESSION_STAMP_ATTRIBUTES`).
    fn stamp_keys(&self) -> &[opentelemetry::Key];
}

/// One request's session.
pub(crate) struct RequestSession {
    /// Made at the first read (or at once: callbacks, stamped ids).
    id: OnceLock<SessionId>,
    host: Weak<dyn RequestHost>,
    started_at: SystemTime,
    pub(crate) discarded: bool,
    pub(crate) counts: Counts,
    /// Boxed: a request session lives inline in its context's scope, which is
    /// moved a few times while it is built (small is cheap to move).
    user: Mutex<Option<Box<User>>>,
    /// Its attributes (the manager's carried ones from its start, then what
    /// the request sets). A mutex of its own, never contended across
    /// requests (an `ArcSwap` here cost ~400 instructions a request: its drop
    /// settles every thread's debts).
    attributes: Mutex<Attributes>,
}

impl std::fmt::Debug for RequestSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestSession")
            .field("id", &self.id.get())
            .field("discarded", &self.discarded)
            .finish_non_exhaustive()
    }
}

/// How a request ended, for its session's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestOutcome {
    /// Answered (a status below 500): `ok` unless an error was recorded.
    Answered,
    /// A 5xx response or a service error: `errored`.
    Failed,
    /// The handler panicked: `crashed`.
    Panicked,
}

impl RequestSession {
    /// A request session of `host` that started at `started_at`; `id` when one
    /// was made already, `user` from the callbacks.
    pub(crate) fn new(
        host: Weak<dyn RequestHost>,
        id: Option<SessionId>,
        started_at: SystemTime,
        user: Option<User>,
        discarded: bool,
        attributes: Attributes,
    ) -> Self {
        RequestSession {
            id: id.map_or_else(OnceLock::new, OnceLock::from),
            host,
            started_at,
            discarded,
            counts: Counts::new(discarded),
            user: Mutex::new(user.map(Box::new)),
            attributes: Mutex::new(attributes),
        }
    }

    fn attributes_mut(&self) -> std::sync::MutexGuard<'_, Attributes> {
        self.attributes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Its attributes now.
    pub(crate) fn attributes(&self) -> Attributes {
        self.attributes_mut().clone()
    }

    /// Calls `f` with its attributes (no copy: the list may be shared with
    /// every request's, and its reference count with it).
    pub(crate) fn with_attributes<R>(&self, f: impl FnOnce(&Attributes) -> R) -> R {
        f(&self.attributes_mut())
    }

    /// Sets an attribute (checked by the caller); refused past the limit.
    pub(crate) fn set_attribute(&self, e: Entry) -> Result<(), AttributeError> {
        self.attributes_mut().set(e).map(|_| ())
    }

    /// Removes an attribute.
    pub(crate) fn remove_attribute(&self, key: &str) {
        self.attributes_mut().remove(key);
    }

    /// Its id, made now if nothing read it before.
    pub(crate) fn id(&self) -> &SessionId {
        self.id.get_or_init(|| match self.host.upgrade() {
            Some(host) => host.new_id(),
            None => UuidV4Generator.new_session_id(),
        })
    }

    /// Sends a crash report of this request to its manager, carrying `id`
    /// (the id its telemetry is stamped with, if any).
    ///
    /// The record carries the request's feature flags and, when it carries
    /// the request's own id, its stamped attributes (as every record stamped
    /// with that id does; each key once).
    pub(crate) fn report(&self, e: &Exception, id: Option<&SessionId>) {
        let Some(host) = self.host.upgrade() else {
            return;
        };
        let own = id.is_some() && id == self.made_id();
        let extra = self.with_attributes(|a| a.crash_attributes(host.stamp_keys(), own));
        host.report(e, id, extra);
    }

    /// How its manager reports crashes (`None`: the manager is gone).
    pub(crate) fn crash_settings(&self) -> Option<CrashSettings> {
        self.host.upgrade().map(|host| host.crash_settings())
    }

    /// Its id if one was made (an id nobody has read cannot be carried by
    /// any telemetry).
    pub(crate) fn made_id(&self) -> Option<&SessionId> {
        self.id.get()
    }

    pub(crate) fn set_user(&self, user: User) {
        *self.user.lock().unwrap_or_else(|e| e.into_inner()) = if user.is_empty() {
            None
        } else {
            Some(Box::new(user))
        };
    }

    pub(crate) fn snapshot(&self) -> Session {
        let (handled, unhandled) = self.counts.counts();
        Session {
            id: self.id().clone(),
            previous_id: None,
            started_at: self.started_at,
            paused: false,
            discarded: self.discarded,
            status: self.counts.status(),
            handled_errors: handled,
            unhandled_errors: unhandled,
            user: self
                .user
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_deref()
                .cloned(),
            attributes: self.attributes(),
        }
    }

    /// Ends it with `outcome` (reason `request`): its counts close and, unless
    /// it is discarded, the stability metrics count it. The status it ended with.
    pub(crate) fn end(&self, outcome: RequestOutcome) -> SessionStatus {
        match outcome {
            RequestOutcome::Answered => {}
            RequestOutcome::Failed => self.counts.mark_errored(),
            RequestOutcome::Panicked => {
                self.counts.mark_panicked();
            }
        }
        let (status, _, _) = self.counts.close();
        if !self.discarded {
            if let Some(host) = self.host.upgrade() {
                if let Some(counter) = host.counter() {
                    // Its attributes are read only when the counts are split.
                    let split = host
                        .split_key()
                        .and_then(|key| self.with_attributes(|a| a.key_value(key)));
                    counter.ended(status, self.started_at, host.now(), split);
                }
            }
        }
        status
    }
}
