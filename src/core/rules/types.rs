//! The rules' vocabulary: their state, the events they take and the effects
//! they ask for (the rules themselves are in the parent module).

use std::time::{Duration, SystemTime};

use opentelemetry::{Key, Value};

use crate::model::attributes::{Attributes, Entry};
use crate::model::session::{EndReason, SessionId, SessionMode, User};

/// What the rules read of a session's handle (the driver's live session).
pub(crate) trait Handle: Clone {
    /// The session's id.
    fn id(&self) -> &SessionId;
    /// Not discarded by an `on_session` callback.
    fn reported(&self) -> bool;
}

/// The settings the rules follow.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Config {
    pub(crate) mode: SessionMode,
    pub(crate) inactivity: Option<Duration>,
    pub(crate) max_duration: Option<Duration>,
    pub(crate) background_timeout: Duration,
    /// Sessions are persisted: a clean exit suspends the session.
    pub(crate) persist: bool,
}

/// A current session.
#[derive(Debug, Clone)]
pub(crate) struct Live<S> {
    pub(crate) session: S,
    pub(crate) started_at: SystemTime,
    pub(crate) last_activity: SystemTime,
    pub(crate) paused: bool,
    pub(crate) user: Option<User>,
    /// Its own attributes (properties, feature flags, callbacks').
    pub(crate) attributes: Attributes,
}

/// Where the manager's app session is (see the module docs).
#[derive(Debug, Clone)]
pub(crate) enum Phase<S> {
    Idle,
    Due,
    Live(Live<S>),
    Suspended(Live<S>),
    /// After a fatal crash on thread number `thread`.
    Crashed {
        thread: u64,
    },
}

/// The state the rules own.
#[derive(Debug, Clone)]
pub(crate) struct State<S> {
    pub(crate) phase: Phase<S>,
    /// The last reported session's id (the next one's `previous_id`).
    pub(crate) last_reported: Option<SessionId>,
    /// The user of the current and later sessions.
    pub(crate) user: Option<User>,
    /// When the app went to the background (cleared by `foreground()`).
    pub(crate) background_since: Option<SystemTime>,
    /// The pipeline shut down: nothing starts any more (a verb after the
    /// guard's drop or the provider's shutdown must not start a session that
    /// would never end, or turn a suspended one into a lost one).
    pub(crate) shut: bool,
    /// What the next session starts with: permanent attributes and feature
    /// flags (carried), and properties set while no session was live (for
    /// the next one only).
    pub(crate) next: Attributes,
}

impl<S> Default for State<S> {
    fn default() -> Self {
        State {
            phase: Phase::Idle,
            last_reported: None,
            user: None,
            background_since: None,
            shut: false,
            next: Attributes::default(),
        }
    }
}

impl<S: Handle> State<S> {
    /// The live session, if one is current (a suspended one is not).
    pub(crate) fn live(&self) -> Option<&Live<S>> {
        match &self.phase {
            Phase::Live(l) => Some(l),
            _ => None,
        }
    }

    /// The session new telemetry is stamped with: a reported, unpaused one.
    pub(crate) fn stamped(&self) -> Option<&S> {
        self.live()
            .filter(|l| !l.paused && l.session.reported())
            .map(|l| &l.session)
    }

    /// The next telemetry starts a session (`Due`, in the foreground).
    pub(crate) fn start_due(&self) -> bool {
        matches!(self.phase, Phase::Due) && self.background_since.is_none()
    }

    /// After a fatal crash: the thread whose activity (once it no longer
    /// unwinds) starts the next session.
    pub(crate) fn crashed_thread(&self) -> Option<u64> {
        match self.phase {
            Phase::Crashed { thread } if self.background_since.is_none() => Some(thread),
            _ => None,
        }
    }

    /// `actor`'s activity starts a session: `Due`, or the thread that crashed
    /// going on after it (both in the foreground).
    pub(crate) fn starts_for(&self, actor: Actor) -> bool {
        self.start_due()
            || self
                .crashed_thread()
                .is_some_and(|t| t == actor.thread && !actor.unwinding)
    }
}

/// Who an event comes from: the thread (a number of ours) and whether it is
/// unwinding a panic (the driver reads both; the rules only compare them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Actor {
    pub(crate) thread: u64,
    pub(crate) unwinding: bool,
}

/// Which start a candidate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// `start_session()`: replaces the current session.
    Replace,
    /// `resume_session()`, `foreground()`, the app session at build: only if
    /// there is no session.
    IfNone,
    /// Activity of this actor in `Due` (or of the thread that crashed, going
    /// on): only if, when it commits, that actor's activity would still start
    /// a session (no session current, none ended on purpose in between, and no
    /// fatal crash of another thread since).
    IfDue(Actor),
}

impl Purpose {
    /// Whether a candidate for this purpose is still wanted in `st`.
    pub(crate) fn wanted<S: Handle>(self, st: &State<S>) -> bool {
        match self {
            _ if st.shut => false,
            Purpose::Replace => true,
            Purpose::IfNone => st.live().is_none(),
            Purpose::IfDue(actor) => st.starts_for(actor),
        }
    }
}

/// A session saved by an earlier run, as the rules see it.
#[derive(Debug, Clone)]
pub(crate) struct Restored<S> {
    pub(crate) live: Live<S>,
    /// Saved by a clean exit (else its process died).
    pub(crate) suspended: bool,
    /// How its process died, when a crash marker says (`Crash`: a fatal
    /// signal; `Hang`: during a hang); else it was `Lost`.
    pub(crate) died: Option<EndReason>,
}

/// Something that happens to the manager.
#[derive(Debug, Clone)]
pub(crate) enum Event<S> {
    /// The manager was built (app mode starts its first session).
    Boot,
    /// Telemetry that is (or, in `Due`, would be) attributed to the session.
    Activity(Actor),
    /// Nothing but time passing (the timer, reading the session).
    Check,
    Start,
    /// A candidate was built for `purpose`.
    Commit {
        session: S,
        user: Option<User>,
        /// Attributes its `on_session` callbacks added (they win over those
        /// it carries).
        attributes: Attributes,
        purpose: Purpose,
    },
    End,
    Pause,
    Resume,
    SetUser(Option<User>),
    /// A session attribute, permanent attribute or feature flag set.
    SetAttribute(Entry),
    /// An attribute removed (a property of any kind, or a flag cleared).
    RemoveAttribute(Key),
    Background,
    Foreground,
    /// `record_handled_error()` / `record_unhandled_error()`.
    Error {
        unhandled: bool,
        actor: Actor,
    },
    /// A panic outside a request on `actor`'s thread; `fatal` when the process
    /// goes down with it.
    Crash {
        fatal: bool,
        actor: Actor,
    },
    Shutdown,
    Restore(Restored<S>),
}

/// When a transition is dated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum When {
    /// At the moment of the change (the driver dates it after publishing the
    /// change, so no telemetry stamped with a session starts after its end).
    Now,
    At(SystemTime),
}

/// A timeline mark on the session's summary span.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Mark {
    Background,
    Foreground,
    User(Option<User>),
    /// A feature flag set to `Some(variant)`, or cleared.
    Flag {
        key: Key,
        variant: Option<Value>,
    },
}

/// What a step asks the driver to do (lifecycle effects only for reported
/// sessions).
#[derive(Debug, Clone)]
pub(crate) enum Effect<S> {
    /// Build a candidate for `purpose` and step [`Event::Commit`] with it; then,
    /// if `again`, step the same event once more (it counts in the new session).
    Build {
        purpose: Purpose,
        again: bool,
    },
    Started {
        session: S,
    },
    Ended {
        session: S,
        reason: EndReason,
        at: When,
        /// It was paused when it ended.
        paused: bool,
        /// Its process died (`abnormal`, unless `crashed`).
        lost: bool,
    },
    Paused {
        session: S,
    },
    Resumed {
        session: S,
    },
    Marked {
        session: S,
        mark: Mark,
    },
    /// The session's user is now this (recorded on it, reported or not).
    UserSet {
        session: S,
        user: Option<User>,
    },
    /// The session's attributes are now these (recorded on it, reported
    /// or not).
    Attributes {
        session: S,
        attributes: Attributes,
    },
    Count {
        session: S,
        unhandled: bool,
    },
    Crashed {
        session: S,
    },
    /// What is persisted changed.
    Save,
}

/// The reply to the caller of a verb.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Reply {
    /// `Resume` resumed a paused session; `Commit` made its session current.
    pub(crate) done: bool,
    /// `SetAttribute` was refused: the session (or what the next one
    /// carries) has as many attributes as it may.
    pub(crate) full: bool,
}
