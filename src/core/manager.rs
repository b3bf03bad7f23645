//! [`SessionManager`]: the session API (BugSnag's verbs in Rust case), and its
//! builder. The rules themselves live in the state machine (`machine`).

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::core::callbacks::{
    in_on_session, CallbackHandle, RegisteredCallback, RegisteredObserver, SessionCandidate,
    SessionObserver,
};
use crate::core::error::SessionError;
use crate::core::machine::{Shared, SharedParts, Tracking};
use crate::core::sinks::Sinks;
use crate::core::telemetry::SessionCounter;
use crate::model::clock::Clock;
use crate::model::id::IdGenerator;
use crate::model::session::{ErrorSources, Session, SessionMode, User};

static NEXT_MANAGER: AtomicU64 = AtomicU64::new(1);

/// Owns the current session and the session API.
///
/// Cheap to clone (one `Arc`); every clone drives the same sessions. Build one with
/// [`SessionManager::builder`], wire it into your providers with
/// [`span_processor`](Self::span_processor) / [`log_processor`](Self::log_processor).
/// In `app` mode (the default) a session starts when it is built.
///
/// ```
/// use otel_session::{SessionManager, SessionMode};
/// let sessions = SessionManager::builder().with_mode(SessionMode::Manual).build();
/// assert!(sessions.current_session().is_none());
/// let first = sessions.start_session().unwrap();
/// let second = sessions.start_session().unwrap();
/// assert_eq!(second.previous_id(), Some(first.id()));
/// ```
#[derive(Clone)]
pub struct SessionManager {
    pub(crate) shared: Arc<Shared>,
}

impl fmt::Debug for SessionManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.shared, f)
    }
}

/// Builds a [`SessionManager`].
#[derive(Default)]
pub struct SessionManagerBuilder {
    id_generator: Option<Arc<dyn IdGenerator>>,
    clock: Option<Arc<dyn Clock>>,
    callbacks: Vec<RegisteredCallback>,
    observers: Vec<Arc<dyn SessionObserver>>,
    user: Option<User>,
    counter: Option<Arc<dyn SessionCounter>>,
    store: Option<crate::core::persist::StoreSource>,
    tracking: Tracking,
    discard_spans: bool,
    discard_logs: bool,
    id: u64,
    /// `service.version` and `service.instance.id`, for the crash marker.
    identity: (Option<String>, Option<String>),
    /// Session attributes copied onto telemetry (see `properties`).
    pub(crate) stamped: Vec<String>,
    /// The session attribute `otel_session.ended` is split by.
    pub(crate) metrics_split: Option<String>,
}

impl fmt::Debug for SessionManagerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionManagerBuilder")
            .field("id_generator", &self.id_generator)
            .field("clock", &self.clock)
            .field("callbacks", &self.callbacks.len())
            .field("observers", &self.observers.len())
            .field("user", &self.user)
            .field("metrics", &self.counter.is_some())
            .field("tracking", &self.tracking)
            .finish()
    }
}

impl SessionManagerBuilder {
    fn id(&mut self) -> u64 {
        if self.id == 0 {
            self.id = NEXT_MANAGER.fetch_add(1, Ordering::Relaxed);
        }
        self.id
    }

    /// Uses `generator` for session ids instead of UUID v4.
    pub fn with_id_generator(mut self, generator: impl IdGenerator + 'static) -> Self {
        self.id_generator = Some(Arc::new(generator));
        self
    }

    /// Reads time from `clock` (tests: [`ManualClock`](crate::ManualClock), whose
    /// `advance` also ends the sessions that expired by then).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// How sessions start by themselves (default [`SessionMode::App`]: one at
    /// [`build`](Self::build), and a new one after a timeout on the next activity).
    pub fn with_mode(mut self, mode: SessionMode) -> Self {
        self.tracking.mode = mode;
        self
    }

    /// Ends a session after this long without activity (default 15 min; `None`
    /// disables). Activity is telemetry attributed to it or a session verb.
    pub fn with_inactivity_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.tracking.inactivity = timeout.filter(|d| !d.is_zero());
        self
    }

    /// Ends a session this long after it started (default 4 h; `None` disables).
    pub fn with_max_duration(mut self, max: Option<Duration>) -> Self {
        self.tracking.max_duration = max.filter(|d| !d.is_zero());
        self
    }

    /// Coming back to the foreground after at least this long in the background
    /// starts a new session (default 30 s).
    pub fn with_background_timeout(mut self, timeout: Duration) -> Self {
        self.tracking.background_timeout = timeout;
        self
    }

    /// Joins callers' sessions from incoming W3C baggage (`session.id`) in the
    /// request layer (default off).
    pub fn with_propagation(mut self, join: bool) -> Self {
        self.tracking.propagate = join;
        self
    }

    /// Stamps each request session's own id on its telemetry in request mode
    /// (default off: request sessions are only counted).
    pub fn with_request_ids(mut self, stamp: bool) -> Self {
        self.tracking.request_ids = stamp;
        self
    }

    /// Which telemetry counts as a handled error (default: log records at ERROR
    /// severity or above; see [`ErrorSources`]).
    pub fn with_error_sources(mut self, sources: ErrorSources) -> Self {
        self.tracking.errors = sources;
        self
    }

    /// Keeps this share of sessions, whole (default 1.0: all; see
    /// [`SessionManager::sampler`] and `OTEL_SESSION_SAMPLE_RATIO`). Values
    /// outside 0.0–1.0 are clamped.
    pub fn with_sample_ratio(mut self, ratio: f64) -> Self {
        self.tracking.sample_ratio = if ratio.is_nan() {
            1.0
        } else {
            ratio.clamp(0.0, 1.0)
        };
        self
    }

    /// Adds an `on_session` callback, run on every candidate session before it
    /// starts, in registration order. Return `false` to discard the session.
    pub fn on_session<F>(mut self, f: F) -> Self
    where
        F: Fn(&mut SessionCandidate) -> bool + Send + Sync + 'static,
    {
        let handle = CallbackHandle {
            manager: self.id(),
            seq: self.callbacks.len() as u64 + 1,
        };
        self.callbacks.push(RegisteredCallback::new(handle, f));
        self
    }

    /// Adds an observer of reported app sessions starting and ending.
    pub fn with_observer(mut self, observer: impl SessionObserver + 'static) -> Self {
        self.observers.push(Arc::new(observer));
        self
    }

    /// Persists sessions in the store `source` opens at build.
    pub(crate) fn with_store(mut self, source: crate::core::persist::StoreSource) -> Self {
        self.store = Some(source);
        self
    }

    /// This instance's `service.version` and `service.instance.id` (set by
    /// `stability::crash`).
    pub(crate) fn identity(&mut self) -> &mut (Option<String>, Option<String>) {
        &mut self.identity
    }

    /// How crashes and hangs are reported (set by `stability::crash`).
    pub(crate) fn crash_settings(&mut self) -> &mut crate::core::machine::CrashSettings {
        &mut self.tracking.crash
    }

    /// Records the stability metrics through `counter`.
    pub(crate) fn with_counter(mut self, counter: Arc<dyn SessionCounter>) -> Self {
        self.counter = Some(counter);
        self
    }

    /// Lifecycle output goes nowhere, quietly (`OTEL_SDK_DISABLED=true`).
    pub(crate) fn without_export(self) -> Self {
        self.without_span_export().without_log_export()
    }

    /// No span pipeline by choice: lifecycle spans are dropped quietly.
    pub(crate) fn without_span_export(mut self) -> Self {
        self.discard_spans = true;
        self
    }

    /// No log pipeline by choice: lifecycle log events are dropped quietly.
    pub(crate) fn without_log_export(mut self) -> Self {
        self.discard_logs = true;
        self
    }

    /// The user of the first and later sessions.
    pub fn with_user(mut self, user: User) -> Self {
        self.user = if user.is_empty() { None } else { Some(user) };
        self
    }

    /// The mode this builder is set to.
    pub fn mode(&self) -> SessionMode {
        self.tracking.mode
    }

    /// Builds the manager. In `app` mode its first session starts now (its
    /// lifecycle is held until an exporting processor is connected).
    pub fn build(mut self) -> SessionManager {
        let id = self.id();
        let next_handle = self.callbacks.len() as u64 + 1;
        let mode = self.tracking.mode;
        let (stamped, mut refused) = crate::model::attributes::stamp_keys(&self.stamped);
        if mode == SessionMode::Request && !self.tracking.request_ids && !stamped.is_empty() {
            refused.push(format!(
                "OTEL_SESSION_STAMP_ATTRIBUTES={} (with_stamped_attributes) does nothing in \
                 request mode without OTEL_SESSION_REQUEST_IDS=true: request telemetry carries \
                 no session.id, so nothing is stamped (set OTEL_SESSION_REQUEST_IDS=true, or \
                 unset it)",
                stamped.join(",")
            ));
        }
        let split = self.metrics_split.as_deref().filter(|k| !k.is_empty());
        let (split, split_refused) = crate::model::attributes::stamp_keys(&Vec::from_iter(split));
        refused.extend(
            split_refused
                .into_iter()
                .map(|w| w.replace("stamped session attribute", "split of otel_session.ended")),
        );
        for w in meaningless(&self.tracking, self.store.as_ref().map(|s| s.what.as_str()))
            .into_iter()
            .chain(refused)
        {
            crate::warn::stderr(format_args!("{w}"));
        }
        // Request mode persists nothing: the file is not even opened.
        let store = match self.store.take() {
            Some(source) if mode != SessionMode::Request => {
                let (version, instance_id) = std::mem::take(&mut self.identity);
                (source.open)(&crate::core::persist::StoreOpen {
                    crash: self.tracking.crash,
                    version,
                    instance_id,
                })
            }
            _ => None,
        };
        let manager = SessionManager {
            shared: Shared::new(SharedParts {
                id,
                user: self.user,
                callbacks: self.callbacks,
                observers: self
                    .observers
                    .into_iter()
                    .map(RegisteredObserver::new)
                    .collect(),
                next_handle,
                id_generator: self.id_generator,
                clock: self.clock,
                tracking: self.tracking,
                counter: self.counter,
                sinks: Sinks::new(self.discard_spans, self.discard_logs),
                store,
                stamp_keys: stamped
                    .iter()
                    .map(|k| crate::model::intern::key(k))
                    .collect(),
                metrics_split: split.first().map(|k| crate::model::intern::key(k)),
            }),
        };
        manager.shared.restore();
        manager.shared.drive(
            crate::core::rules::Event::Boot,
            crate::core::machine::Site::Safe,
        );
        manager
    }
}

impl SessionManager {
    /// A builder with the defaults (app mode, UUID v4 ids, the system clock, no
    /// callbacks).
    pub fn builder() -> SessionManagerBuilder {
        SessionManagerBuilder::default()
    }

    pub(crate) fn refuse_reentrant(&self, verb: &'static str) -> Result<(), SessionError> {
        if in_on_session() {
            static WARNED: AtomicBool = AtomicBool::new(false);
            crate::warn::once(
                &WARNED,
                format_args!(
                    "{verb}() was called from inside an on_session callback and was ignored; \
                     callbacks may only amend or discard the candidate session (reported once)"
                ),
            );
            return Err(SessionError::Reentrant { verb });
        }
        Ok(())
    }

    /// The mode the manager was built with.
    pub fn mode(&self) -> SessionMode {
        self.shared.tracking.mode
    }

    /// Starts a new session and returns it.
    ///
    /// A candidate is built and the `on_session` callbacks run on it *before* any
    /// state changes (with no lock held); then the current session (if any) ends
    /// with reason `replaced` and the candidate becomes current — even when a
    /// callback discarded it (a discarded session is current but stamps, counts,
    /// emits and notifies nothing; see [`Session::is_discarded`]). Its
    /// `previous_id` is the last reported session's id.
    ///
    /// # Errors
    /// [`SessionError::Reentrant`] when called from inside an `on_session`
    /// callback, [`SessionError::ShutDown`] after the pipeline shut down, and
    /// [`SessionError::NotStarted`] when another start was still building its
    /// candidate after 2 s; in each case nothing changes.
    pub fn start_session(&self) -> Result<Session, SessionError> {
        self.refuse_reentrant("start_session")?;
        self.shared.start().ok_or_else(|| {
            if self.shared.core.lock().rules.shut {
                SessionError::ShutDown
            } else {
                SessionError::NotStarted
            }
        })
    }

    /// Ends the current session (reason `manual`). Afterwards
    /// [`current_session`](Self::current_session) is `None`, and nothing starts
    /// by itself until [`start_session`](Self::start_session),
    /// [`resume_session`](Self::resume_session) or `foreground()`.
    pub fn end_session(&self) {
        if self.refuse_reentrant("end_session").is_ok() {
            self.shared.end();
        }
    }

    /// Pauses the current session: no telemetry is attributed to it until it is
    /// resumed or a new session starts. Timeouts keep running. A no-op without a
    /// session or when paused.
    pub fn pause_session(&self) {
        if self.refuse_reentrant("pause_session").is_ok() {
            self.shared.pause();
        }
    }

    /// Resumes a paused session: `true` if it was resumed (same id, counts
    /// continue). Otherwise `false`: with no session (or one that expired while
    /// paused) a new one is started; when the current session is not paused
    /// nothing changes.
    pub fn resume_session(&self) -> bool {
        self.refuse_reentrant("resume_session").is_ok() && self.shared.resume()
    }

    /// A snapshot of the current session; `None` before the first start, after an
    /// end, and after a timeout until the next activity starts one. Reading it is
    /// not activity.
    pub fn current_session(&self) -> Option<Session> {
        self.shared.current()
    }

    /// Sets the user of the current and later sessions (`User::default()` clears
    /// it). A change while a reported session is current is recorded on its
    /// summary span (an `otel_session.user_change` event; the summary carries the
    /// last user).
    pub fn set_user(&self, user: User) {
        if self.refuse_reentrant("set_user").is_ok() {
            let user = if user.is_empty() { None } else { Some(user) };
            self.shared.set_user(user);
        }
    }

    /// Counts one handled error toward the current session (if it is reported and
    /// not paused). In app mode, right after an inactivity or max-duration end
    /// (in the foreground), it starts the next session and counts there.
    pub fn record_handled_error(&self) {
        self.shared.record_error(false);
    }

    /// Counts one unhandled error toward the current session and marks it
    /// `crashed` (if it is reported and not paused; after a timeout in app mode,
    /// toward the next session, which it starts). Status is never downgraded.
    pub fn record_unhandled_error(&self) {
        self.shared.record_error(true);
    }

    /// Adds an `on_session` callback at run time; it runs after those already
    /// registered. The handle removes it.
    pub fn add_on_session<F>(&self, f: F) -> CallbackHandle
    where
        F: Fn(&mut SessionCandidate) -> bool + Send + Sync + 'static,
    {
        let handle = CallbackHandle {
            manager: self.shared.id,
            seq: self.shared.next_handle.fetch_add(1, Ordering::Relaxed),
        };
        let cb = RegisteredCallback::new(handle, f);
        self.shared.callbacks.rcu(|list| {
            let mut next = Vec::clone(list);
            next.push(cb.clone());
            next
        });
        handle
    }

    /// Removes a callback added to *this* manager; `false` if it was not
    /// registered (any more), or was issued by another manager.
    pub fn remove_on_session(&self, handle: CallbackHandle) -> bool {
        if handle.manager != self.shared.id {
            return false;
        }
        let mut removed = false;
        self.shared.callbacks.rcu(|list| {
            let next: Vec<_> = list
                .iter()
                .filter(|c| c.handle != handle)
                .cloned()
                .collect();
            removed = next.len() != list.len();
            next
        });
        removed
    }

    /// Adds an observer at run time.
    pub fn add_observer(&self, observer: impl SessionObserver + 'static) {
        let o = RegisteredObserver::new(Arc::new(observer));
        self.shared.observers.rcu(|list| {
            let mut next = Vec::clone(list);
            next.push(o.clone());
            next
        });
    }

    /// `true` if `self` and `other` drive the same sessions.
    pub fn ptr_eq(&self, other: &SessionManager) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    /// Ends the current session (reason `shutdown`) and waits, up to `limit`,
    /// until its end is handed to the exporting processors. Used when a pipeline
    /// shuts down.
    pub(crate) fn end_for_shutdown(&self, limit: Duration) {
        self.shared.end_for_shutdown(limit);
    }
}

/// The settings `tracking` (and persistence to `persistence`, if given) has
/// that its mode makes meaningless, one warning each naming the variable and
/// the builder method; `build()` prints them, whether the settings came from
/// the environment or from code.
fn meaningless(tracking: &Tracking, persistence: Option<&str>) -> Vec<String> {
    let mut out = Vec::new();
    let request = tracking.mode == SessionMode::Request;
    if tracking.request_ids && !request {
        out.push(format!(
            "OTEL_SESSION_REQUEST_IDS=true (with_request_ids) only applies in request mode \
             (OTEL_SESSION_MODE=request); the mode is {}, so it does nothing",
            tracking.mode
        ));
    }
    if let Some(what) = persistence.filter(|_| request) {
        out.push(format!(
            "persistence to {what} (OTEL_SESSION_PERSIST_PATH or with_persistence) is not used \
             in request mode: request sessions end with their requests and no app session is \
             kept, so nothing is persisted and the file is not opened (unset it, or use app \
             mode to persist the app session)"
        ));
    }
    if request && tracking.sample_ratio < 1.0 && !tracking.request_ids && !tracking.propagate {
        out.push(format!(
            "OTEL_SESSION_SAMPLE_RATIO={} (with_sample_ratio) does nothing in request mode \
             without OTEL_SESSION_REQUEST_IDS=true or OTEL_SESSION_PROPAGATE=true: request \
             telemetry carries no session id to sample by (set one of them, or use \
             OTEL_TRACES_SAMPLER to sample requests)",
            tracking.sample_ratio
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_setting_meaningless_in_the_mode_says_so() {
        let app = Tracking {
            request_ids: true,
            sample_ratio: 0.5,
            ..Tracking::default()
        };
        assert_eq!(
            meaningless(&app, Some("/tmp/s.json")),
            [
                "OTEL_SESSION_REQUEST_IDS=true (with_request_ids) only applies in request mode \
                 (OTEL_SESSION_MODE=request); the mode is app, so it does nothing"
            ],
            "persistence and sampling act in app mode"
        );
        assert!(meaningless(&Tracking::default(), None).is_empty());
    }

    #[test]
    fn in_request_mode_persistence_and_a_ratio_without_ids_say_they_do_nothing() {
        let request = Tracking {
            mode: SessionMode::Request,
            sample_ratio: 0.5,
            ..Tracking::default()
        };
        assert_eq!(
            meaningless(&request, Some("/tmp/s.json")),
            [
                "persistence to /tmp/s.json (OTEL_SESSION_PERSIST_PATH or with_persistence) is \
                 not used in request mode: request sessions end with their requests and no app \
                 session is kept, so nothing is persisted and the file is not opened (unset it, \
                 or use app mode to persist the app session)",
                "OTEL_SESSION_SAMPLE_RATIO=0.5 (with_sample_ratio) does nothing in request mode \
                 without OTEL_SESSION_REQUEST_IDS=true or OTEL_SESSION_PROPAGATE=true: request \
                 telemetry carries no session id to sample by (set one of them, or use \
                 OTEL_TRACES_SAMPLER to sample requests)",
            ]
        );
        for ids in [
            Tracking {
                request_ids: true,
                ..request
            },
            Tracking {
                propagate: true,
                ..request
            },
        ] {
            assert!(meaningless(&ids, None).is_empty(), "the ratio samples");
        }
    }
}
