//! `on_session` callbacks (amend or discard a session before it is reported),
//! observers (react after a session started or ended), and the re-entrancy guard
//! they both run under.
//!
//! The guard is a thread-local flag: while it is set, the span and log processors do
//! not stamp `session.id`, so telemetry a callback creates is never attributed to a
//! session that does not exist yet, and session verbs called from an `on_session`
//! callback are refused (they would deadlock or change the state the callback is
//! deciding about).

use std::any::Any;
use std::cell::Cell;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use opentelemetry::KeyValue;

use crate::model::attributes::{check, AttributeError, MAX_SESSION_ATTRIBUTES};
use crate::model::session::{EndReason, Session, SessionId, User};

/// The session about to start, as an `on_session` callback sees it.
///
/// A callback may set the user and add attributes (they go on the `session` summary
/// span), or return `false` to discard the session.
#[derive(Debug)]
pub struct SessionCandidate {
    pub(crate) id: SessionId,
    pub(crate) previous_id: Option<SessionId>,
    pub(crate) started_at: SystemTime,
    pub(crate) user: Option<User>,
    /// `true` once a callback set the user (it then wins over a `set_user` made
    /// while the callbacks ran).
    pub(crate) user_set: bool,
    pub(crate) attributes: Vec<KeyValue>,
}

impl SessionCandidate {
    /// The id the session will have.
    pub fn id(&self) -> &SessionId {
        &self.id
    }

    /// The id of the last reported session, if any.
    pub fn previous_id(&self) -> Option<&SessionId> {
        self.previous_id.as_ref()
    }

    /// When the candidate was built. The session's start is dated when it becomes
    /// current, a moment later (after the callbacks ran).
    pub fn started_at(&self) -> SystemTime {
        self.started_at
    }

    /// The user the session will carry.
    pub fn user(&self) -> Option<&User> {
        self.user.as_ref()
    }

    /// Replaces the session's user (it also becomes the user of later sessions only
    /// through [`SessionManager::set_user`](crate::SessionManager::set_user)).
    pub fn set_user(&mut self, user: User) {
        self.user = if user.is_empty() { None } else { Some(user) };
        self.user_set = true;
    }

    /// Adds an attribute to the session (its `session` summary span and
    /// `session.end` event; see
    /// [`SessionManager::set_session_attribute`](crate::SessionManager::set_session_attribute)).
    /// It wins over an attribute of the same key the session carries
    /// (a permanent one).
    ///
    /// The rules of `set_session_attribute` apply: `session.id`,
    /// `session.previous_id`, `otel_session.*`, `user.id`, `user.email`, `user.full_name` and `feature_flag.*`
    /// are refused, and so are keys and values over the size limits and
    /// attributes past [`MAX_SESSION_ATTRIBUTES`](crate::MAX_SESSION_ATTRIBUTES)
    /// (one warning per kind of refusal); it returns `false` then.
    pub fn set_attribute(&mut self, attribute: KeyValue) -> bool {
        let key = attribute.key.as_str();
        let mut checked = check(key, Some(&attribute.value));
        let existing = self
            .attributes
            .iter()
            .position(|kv| kv.key == attribute.key);
        if checked.is_ok() && existing.is_none() && self.attributes.len() >= MAX_SESSION_ATTRIBUTES
        {
            checked = Err(AttributeError::TooMany {
                key: key.to_string(),
            });
        }
        if let Err(e) = checked {
            static WARNED: RefusalWarnings = RefusalWarnings::new();
            WARNED.warn("an on_session callback's set_attribute", &e);
            return false;
        }
        match existing {
            Some(i) => self.attributes[i] = attribute,
            None => self.attributes.push(attribute),
        }
        true
    }

    /// Attributes added so far.
    pub fn attributes(&self) -> &[KeyValue] {
        &self.attributes
    }
}

/// One warning per kind of attribute refusal (an API's own set: callbacks
/// and the verbs each say theirs once).
pub(crate) struct RefusalWarnings([AtomicBool; 5]);

impl RefusalWarnings {
    pub(crate) const fn new() -> Self {
        RefusalWarnings([const { AtomicBool::new(false) }; 5])
    }

    /// Says that `what` was refused for `e`, the first time for its kind.
    pub(crate) fn warn(&self, what: &str, e: &AttributeError) {
        crate::warn::once(
            &self.0[e.kind()],
            format_args!(
                "{what} was refused: {e}; {} (reported once for this kind of refusal)",
                e.fix()
            ),
        );
    }
}

type OnSessionFn = dyn Fn(&mut SessionCandidate) -> bool + Send + Sync;

/// Handle returned when a callback is added at run time; pass it to
/// [`SessionManager::remove_on_session`](crate::SessionManager::remove_on_session)
/// of the same manager (another manager's callbacks are never removed by it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CallbackHandle {
    pub(crate) manager: u64,
    pub(crate) seq: u64,
}

#[derive(Clone)]
pub(crate) struct RegisteredCallback {
    pub(crate) handle: CallbackHandle,
    f: Arc<OnSessionFn>,
    panicked: Arc<AtomicBool>,
}

impl fmt::Debug for RegisteredCallback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OnSession")
            .field("handle", &self.handle)
            .finish()
    }
}

impl RegisteredCallback {
    pub(crate) fn new<F>(handle: CallbackHandle, f: F) -> Self
    where
        F: Fn(&mut SessionCandidate) -> bool + Send + Sync + 'static,
    {
        RegisteredCallback {
            handle,
            f: Arc::new(f),
            panicked: Arc::new(AtomicBool::new(false)),
        }
    }
}

/// Runs the callbacks in order; `false` as soon as one discards the session.
/// A panicking callback is reported once (per callback) and counts as "keep".
pub(crate) fn run_on_session(
    callbacks: &[RegisteredCallback],
    candidate: &mut SessionCandidate,
) -> bool {
    let _guard = HookGuard::enter(HOOK_ON_SESSION);
    for cb in callbacks {
        match catching(|| (cb.f)(candidate)) {
            Ok(true) => {}
            Ok(false) => return false,
            Err(payload) => {
                if !cb.panicked.swap(true, Ordering::Relaxed) {
                    crate::warn::stderr(format_args!(
                        "an on_session callback panicked ({}); the session is kept. \
                         Further panics of this callback are not reported.",
                        panic_message(payload.as_ref())
                    ));
                }
            }
        }
    }
    true
}

/// Reacts to reported sessions starting and ending (discarded sessions are not
/// reported). Observers run after the state change, in registration order, under
/// the re-entrancy guard; a panicking observer is caught and reported once.
pub trait SessionObserver: Send + Sync {
    /// A reported session started.
    fn on_session_started(&self, _session: &Session) {}
    /// A reported session ended, for `reason`. Called before the next session's
    /// `on_session_started`.
    fn on_session_ended(&self, _session: &Session, _reason: EndReason) {}
}

impl<T: SessionObserver + ?Sized> SessionObserver for Arc<T> {
    fn on_session_started(&self, session: &Session) {
        (**self).on_session_started(session);
    }
    fn on_session_ended(&self, session: &Session, reason: EndReason) {
        (**self).on_session_ended(session, reason);
    }
}

#[derive(Clone)]
pub(crate) struct RegisteredObserver {
    observer: Arc<dyn SessionObserver>,
    panicked: Arc<AtomicBool>,
}

impl fmt::Debug for RegisteredObserver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionObserver")
    }
}

impl RegisteredObserver {
    pub(crate) fn new(observer: Arc<dyn SessionObserver>) -> Self {
        RegisteredObserver {
            observer,
            panicked: Arc::new(AtomicBool::new(false)),
        }
    }
}

/// What happened in one state change, for the observers.
#[derive(Debug, Default)]
pub(crate) struct Notifications {
    pub(crate) ended: Option<(Session, EndReason)>,
    pub(crate) started: Option<Session>,
}

pub(crate) fn notify(observers: &[RegisteredObserver], n: Notifications) {
    if observers.is_empty() || (n.ended.is_none() && n.started.is_none()) {
        return;
    }
    let _guard = HookGuard::enter(HOOK_OBSERVER);
    for o in observers {
        let result = catching(|| {
            if let Some((s, reason)) = &n.ended {
                o.observer.on_session_ended(s, *reason);
            }
        });
        report_observer_panic(o, result);
    }
    for o in observers {
        let result = catching(|| {
            if let Some(s) = &n.started {
                o.observer.on_session_started(s);
            }
        });
        report_observer_panic(o, result);
    }
}

fn report_observer_panic(o: &RegisteredObserver, result: std::thread::Result<()>) {
    if let Err(payload) = result {
        if !o.panicked.swap(true, Ordering::Relaxed) {
            crate::warn::stderr(format_args!(
                "a session observer panicked ({}); further panics of it are not reported",
                panic_message(payload.as_ref())
            ));
        }
    }
}

pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "non-string panic payload"
    }
}

thread_local! {
    /// How deep this thread is inside [`catching`].
    static CATCHING: Cell<u32> = const { Cell::new(0) };
}

/// Runs user code (a callback, an observer, a clock, an id generator, a span or
/// log processor) that we catch a panic of: the panic hook then knows the panic
/// is contained (reported once by us, the session kept) and is not a crash.
pub(crate) fn catching<R>(f: impl FnOnce() -> R) -> std::thread::Result<R> {
    CATCHING.with(|c| c.set(c.get() + 1));
    let result = catch_unwind(AssertUnwindSafe(f));
    CATCHING.with(|c| c.set(c.get().saturating_sub(1)));
    result
}

/// `true` inside [`catching`] on this thread.
pub(crate) fn in_catching() -> bool {
    CATCHING.try_with(|c| c.get() > 0).unwrap_or(false)
}

pub(crate) const HOOK_ON_SESSION: u8 = 1;
pub(crate) const HOOK_OBSERVER: u8 = 2;
/// The user's clock or id generator: telemetry it makes is not stamped (and
/// so starts no session); verbs it calls are allowed.
pub(crate) const HOOK_USER: u8 = 4;

thread_local! {
    static IN_HOOK: Cell<u8> = const { Cell::new(0) };
}

/// `true` while this thread runs an `on_session` callback, an observer, the
/// user's clock or id generator: telemetry is not stamped.
#[inline]
pub(crate) fn in_hook() -> bool {
    // `try_with`: a span may start from a thread-local's destructor.
    IN_HOOK.try_with(|h| h.get() != 0).unwrap_or(false)
}

/// `true` while this thread runs an `on_session` callback.
pub(crate) fn in_on_session() -> bool {
    IN_HOOK.with(|h| h.get() & HOOK_ON_SESSION != 0)
}

pub(crate) struct HookGuard {
    previous: u8,
}

impl HookGuard {
    pub(crate) fn enter(kind: u8) -> Self {
        let previous = IN_HOOK.with(|h| {
            let p = h.get();
            h.set(p | kind);
            p
        });
        HookGuard { previous }
    }
}

impl Drop for HookGuard {
    fn drop(&mut self) {
        IN_HOOK.with(|h| h.set(self.previous));
    }
}
