//! Session properties and feature flags: the verbs on
//! [`SessionManager`](crate::SessionManager) and at the crate root.
//!
//! A property (`set_session_attribute`) belongs to the current session; a
//! permanent one (`set_permanent_session_attribute`) also to every later
//! session, across restarts with persistence; a feature flag
//! (`add_feature_flag`) is the attribute `feature_flag.<name>` = variant,
//! carried into later sessions of this process until cleared. All of them
//! go on the session's `session` summary span and `session.end` event, are
//! what `OTEL_SESSION_STAMP_ATTRIBUTES` copies onto telemetry and what
//! `OTEL_SESSION_METRICS_SPLIT` splits `otel_session.ended` by. The rules
//! (when they apply, what is carried) are rule 9 of `core::rules`.
//!
//! Inside a request (request mode) the crate-root verbs act on the
//! request's session; "permanent" there means nothing more than the request
//! (request sessions carry the manager's permanent attributes and flags set
//! outside any request, from their start).
//!
//! May use: `manager`, `global`, `request`, `scope`, `callbacks`, `error`,
//! `model`.

use std::sync::atomic::AtomicBool;

use opentelemetry::{Key, Value};

use crate::core::callbacks::RefusalWarnings;
use crate::core::error::SessionError;
use crate::core::global::{manager_of, on_request, target, Target};
use crate::core::manager::{SessionManager, SessionManagerBuilder};
use crate::model::attributes::{check, flag_key, flag_variant, AttributeError, Entry, Kind};

/// One warning per kind of refusal per process (the `Result` tells every
/// caller each time).
fn refused(verb: &str, e: AttributeError) -> SessionError {
    static WARNED: RefusalWarnings = RefusalWarnings::new();
    WARNED.warn(&format!("{verb}()"), &e);
    SessionError::Attribute(e)
}

/// A checked property entry.
fn property(verb: &str, key: Key, value: Value, kind: Kind) -> Result<Entry, SessionError> {
    check(key.as_str(), Some(&value)).map_err(|e| refused(verb, e))?;
    Ok(Entry { key, value, kind })
}

/// A checked feature-flag entry.
fn flag(verb: &str, name: &str, variant: String) -> Result<Entry, SessionError> {
    let key = flag_key(name).map_err(|e| refused(verb, e))?;
    let value = flag_variant(&key, variant).map_err(|e| refused(verb, e))?;
    Ok(Entry {
        key,
        value,
        kind: Kind::Flag,
    })
}

impl SessionManagerBuilder {
    /// Copies these session attributes (properties, permanent ones, feature
    /// flags as `feature_flag.<name>`) onto every span and log record stamped
    /// with `session.id`, so a backend can filter telemetry by them, not only
    /// sessions (`OTEL_SESSION_STAMP_ATTRIBUTES`). A key the session has not
    /// set is left off. Each key is one more attribute on every span and log
    /// record (BENCHMARKS.md); at most
    /// [`MAX_STAMPED_ATTRIBUTES`](crate::MAX_STAMPED_ATTRIBUTES), and keys no
    /// session can carry (`session.id`, `user.id`, …) are left out with a
    /// warning at [`build`](Self::build). A span that sets a listed key
    /// itself at its start carries both values.
    pub fn with_stamped_attributes<I, K>(mut self, keys: I) -> Self
    where
        I: IntoIterator<Item = K>,
        K: AsRef<str>,
    {
        self.stamped = keys.into_iter().map(|k| k.as_ref().to_string()).collect();
        self
    }

    /// Splits the stability counter `otel_session.ended` by session
    /// attribute `key` (typically a feature flag, `feature_flag.<name>`), so
    /// the crash-free rate per experiment arm is one query
    /// (`OTEL_SESSION_METRICS_SPLIT`). Sessions without the attribute are
    /// counted without it. Only a few distinct values get a series of their
    /// own (see [`metrics::MAX_SPLIT_VALUES`](crate::metrics::MAX_SPLIT_VALUES));
    /// sessions with further values are counted under the value `_other`,
    /// with a warning. `None` (the default): no split.
    pub fn with_metrics_split(mut self, key: Option<impl AsRef<str>>) -> Self {
        self.metrics_split = key.map(|k| k.as_ref().trim().to_string());
        self
    }
}

impl SessionManager {
    /// Sets `key` = `value` on the current session: it goes on its `session`
    /// summary span and `session.end` event (and on its telemetry, if the key
    /// is listed in `OTEL_SESSION_STAMP_ATTRIBUTES`). A new value replaces the
    /// old one. With no session current it waits for the next session to
    /// start (nothing starts for it). It is activity of the session.
    ///
    /// ```
    /// use otel_session::{SessionManager, SessionMode};
    /// let sessions = SessionManager::builder().with_mode(SessionMode::Manual).build();
    /// sessions.start_session().unwrap();
    /// sessions.set_session_attribute("app.screen", "checkout").unwrap();
    /// assert!(sessions.set_session_attribute("session.id", "mine").is_err());
    /// ```
    ///
    /// # Errors
    /// [`SessionError::Attribute`] for a key that belongs to this crate
    /// (`session.id`, `session.previous_id`, `otel_session.*`), to
    /// [`set_user`](Self::set_user) (`user.id`, `user.email`, `user.full_name`) or to
    /// [`add_feature_flag`](Self::add_feature_flag) (`feature_flag.*`), a key
    /// or value over the size limits, or one attribute more than
    /// [`MAX_SESSION_ATTRIBUTES`](crate::MAX_SESSION_ATTRIBUTES); each kind of
    /// refusal is also one warning on stderr. [`SessionError::Reentrant`]
    /// inside an `on_session` callback (use
    /// [`SessionCandidate::set_attribute`](crate::SessionCandidate::set_attribute)).
    pub fn set_session_attribute(
        &self,
        key: impl Into<Key>,
        value: impl Into<Value>,
    ) -> Result<(), SessionError> {
        self.set_property(
            "set_session_attribute",
            key.into(),
            value.into(),
            Kind::Session,
        )
    }

    /// Like [`set_session_attribute`](Self::set_session_attribute), and every
    /// later session carries it too — after a rotation, a timeout, a return
    /// from the background, and (with persistence) a restart — until
    /// [`remove_session_attribute`](Self::remove_session_attribute).
    ///
    /// # Errors
    /// As [`set_session_attribute`](Self::set_session_attribute).
    pub fn set_permanent_session_attribute(
        &self,
        key: impl Into<Key>,
        value: impl Into<Value>,
    ) -> Result<(), SessionError> {
        self.set_property(
            "set_permanent_session_attribute",
            key.into(),
            value.into(),
            Kind::Permanent,
        )
    }

    /// Removes `key` from the current session and from what later sessions
    /// carry (a permanent attribute too). Removing a key that is not set does
    /// nothing.
    ///
    /// # Errors
    /// [`SessionError::Attribute`] for a reserved key (see
    /// [`set_session_attribute`](Self::set_session_attribute); flags are
    /// cleared with [`clear_feature_flag`](Self::clear_feature_flag)),
    /// [`SessionError::Reentrant`] inside an `on_session` callback.
    pub fn remove_session_attribute(&self, key: impl Into<Key>) -> Result<(), SessionError> {
        const VERB: &str = "remove_session_attribute";
        self.refuse_reentrant(VERB)?;
        let key = key.into();
        check(key.as_str(), None).map_err(|e| refused(VERB, e))?;
        self.shared.remove_attribute(key);
        Ok(())
    }

    /// Records that feature flag `name` is active with `variant` (BugSnag's
    /// feature flags, OpenTelemetry's `feature_flag.*` names): the session
    /// carries the attribute `feature_flag.<name>` = `variant` on its summary
    /// span and end event, its summary gets a `feature_flag.evaluation` event
    /// (`feature_flag.key`, `feature_flag.result.variant`), crash and error
    /// records counted while it is active carry it, and later sessions of this
    /// process carry it until [`clear_feature_flag`](Self::clear_feature_flag).
    /// A new process sets its flags again (they are not persisted across
    /// restarts, except on a session that continues).
    ///
    /// ```
    /// use otel_session::SessionManager;
    /// let sessions = SessionManager::builder().build();
    /// sessions.add_feature_flag("new-cart", "b").unwrap();
    /// sessions.start_session().unwrap(); // the next session carries it too
    /// sessions.clear_feature_flag("new-cart").unwrap();
    /// ```
    ///
    /// # Errors
    /// [`SessionError::Attribute`] for an empty or too long name or variant, a
    /// name the conventions define (`key`, `result.variant`, …), or one
    /// attribute too many; [`SessionError::Reentrant`] inside an `on_session`
    /// callback.
    pub fn add_feature_flag(
        &self,
        name: &str,
        variant: impl Into<String>,
    ) -> Result<(), SessionError> {
        const VERB: &str = "add_feature_flag";
        self.refuse_reentrant(VERB)?;
        let e = flag(VERB, name, variant.into())?;
        self.set_entry(VERB, e)
    }

    /// Clears feature flag `name` from the current session and later ones
    /// (the summary gets an `otel_session.feature_flag.cleared` event).
    ///
    /// # Errors
    /// As [`add_feature_flag`](Self::add_feature_flag), for the name.
    pub fn clear_feature_flag(&self, name: &str) -> Result<(), SessionError> {
        const VERB: &str = "clear_feature_flag";
        self.refuse_reentrant(VERB)?;
        let key = flag_key(name).map_err(|e| refused(VERB, e))?;
        self.shared.remove_attribute(key);
        Ok(())
    }

    /// A property (plain or permanent) checked and set.
    fn set_property(
        &self,
        verb: &'static str,
        key: Key,
        value: Value,
        kind: Kind,
    ) -> Result<(), SessionError> {
        self.refuse_reentrant(verb)?;
        let e = property(verb, key, value, kind)?;
        self.set_entry(verb, e)
    }

    fn set_entry(&self, verb: &str, e: Entry) -> Result<(), SessionError> {
        let key = e.key.to_string();
        if e.kind == Kind::Session && self.mode() == crate::SessionMode::Request {
            static WARNED: AtomicBool = AtomicBool::new(false);
            crate::warn::once(
                &WARNED,
                format_args!(
                    "{verb}({key:?}) outside a request in request mode belongs to no session: \
                     request sessions carry only permanent attributes and feature flags set \
                     outside a request (set_permanent_session_attribute, add_feature_flag); \
                     inside a handler, otel_session::{verb}() acts on the request's session \
                     (reported once)"
                ),
            );
        }
        if self.shared.set_attribute(e) {
            Ok(())
        } else {
            Err(refused(verb, AttributeError::TooMany { key }))
        }
    }
}

/// Where a crate-root attribute verb acts: the request's session inside a
/// request, else the global manager (also inside a context that only joined
/// a caller's session: that session is the caller's).
fn act(
    verb: &str,
    on_request_session: impl FnOnce(&crate::core::request::RequestSession) -> Result<(), AttributeError>,
    on_manager: impl FnOnce(&SessionManager) -> Result<(), SessionError>,
) -> Result<(), SessionError> {
    match target() {
        Target::Request(cx) => on_request(&cx, on_request_session)
            .unwrap_or(Ok(()))
            .map_err(|e| refused(verb, e)),
        t => on_manager(&manager_of(t).ok_or(SessionError::NoManager)?),
    }
}

/// A property set at the crate root: on the request's session inside a
/// request (`permanent` means nothing more there), else on the global
/// manager.
fn set_property(
    verb: &'static str,
    key: Key,
    value: Value,
    permanent: bool,
) -> Result<(), SessionError> {
    act(
        verb,
        |r| {
            check(key.as_str(), Some(&value))?;
            r.set_attribute(Entry {
                key: key.clone(),
                value: value.clone(),
                kind: Kind::Session,
            })
        },
        |m| {
            if permanent {
                m.set_permanent_session_attribute(key.clone(), value.clone())
            } else {
                m.set_session_attribute(key.clone(), value.clone())
            }
        },
    )
}

/// [`SessionManager::set_session_attribute`] on the request's session inside
/// a request, else on the global manager.
///
/// # Errors
/// As the method; [`SessionError::NoManager`] without a global manager.
pub fn set_session_attribute(
    key: impl Into<Key>,
    value: impl Into<Value>,
) -> Result<(), SessionError> {
    set_property("set_session_attribute", key.into(), value.into(), false)
}

/// [`SessionManager::set_permanent_session_attribute`] on the global
/// manager; inside a request, the request's session only.
///
/// # Errors
/// As the method; [`SessionError::NoManager`] without a global manager.
pub fn set_permanent_session_attribute(
    key: impl Into<Key>,
    value: impl Into<Value>,
) -> Result<(), SessionError> {
    set_property(
        "set_permanent_session_attribute",
        key.into(),
        value.into(),
        true,
    )
}

/// [`SessionManager::remove_session_attribute`] on the request's session
/// inside a request, else on the global manager.
///
/// # Errors
/// As the method; [`SessionError::NoManager`] without a global manager.
pub fn remove_session_attribute(key: impl Into<Key>) -> Result<(), SessionError> {
    let key = key.into();
    act(
        "remove_session_attribute",
        |r| {
            check(key.as_str(), None)?;
            r.remove_attribute(key.as_str());
            Ok(())
        },
        |m| m.remove_session_attribute(key.clone()),
    )
}

/// [`SessionManager::add_feature_flag`] on the request's session inside a
/// request, else on the global manager.
///
/// # Errors
/// As the method; [`SessionError::NoManager`] without a global manager.
pub fn add_feature_flag(name: &str, variant: impl Into<String>) -> Result<(), SessionError> {
    let variant = variant.into();
    act(
        "add_feature_flag",
        |r| {
            let key = flag_key(name)?;
            let value = flag_variant(&key, variant.clone())?;
            r.set_attribute(Entry {
                key,
                value,
                kind: Kind::Flag,
            })
        },
        |m| m.add_feature_flag(name, variant.clone()),
    )
}

/// [`SessionManager::clear_feature_flag`] on the request's session inside a
/// request, else on the global manager.
///
/// # Errors
/// As the method; [`SessionError::NoManager`] without a global manager.
pub fn clear_feature_flag(name: &str) -> Result<(), SessionError> {
    act(
        "clear_feature_flag",
        |r| {
            let key = flag_key(name)?;
            r.remove_attribute(key.as_str());
            Ok(())
        },
        |m| m.clear_feature_flag(name),
    )
}
