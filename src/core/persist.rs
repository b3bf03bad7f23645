//! What the state machine tells a persistence store, and what it reads back
//! (the store itself is `stability::persist`).
//!
//! The store is user-visible I/O, so it is only ever called outside the state
//! lock: saves are effects, delivered in order by the outbox; the load happens
//! once, when the manager is built.

use std::time::SystemTime;

use crate::model::attributes::Attributes;
use crate::model::exception::Exception;
use crate::model::session::{EndReason, SessionId, SessionStatus, User};

/// Whether the saved session is running in a live process or was put aside by a
/// clean exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SavedState {
    /// Its process is running it (found on the next start: the process died).
    Active,
    /// A clean exit put it aside, to be continued by the next start.
    Suspended,
}

/// A session as saved.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SavedSession {
    pub(crate) id: SessionId,
    pub(crate) previous_id: Option<SessionId>,
    pub(crate) started_at: SystemTime,
    pub(crate) last_activity: SystemTime,
    pub(crate) handled: u64,
    pub(crate) unhandled: u64,
    pub(crate) status: SessionStatus,
    pub(crate) state: SavedState,
    /// Paused when saved (a continued session stays paused).
    pub(crate) paused: bool,
    /// A panic was counted (another one in the continued session is not).
    pub(crate) panicked: bool,
    /// Hangs seen (`otel_session.hangs` on its summary, however many
    /// processes it lived in).
    pub(crate) hangs: u32,
    pub(crate) user: Option<User>,
    /// Its attributes (properties, permanent ones, feature flags).
    pub(crate) attributes: Attributes,
}

/// A session's end that was reported but not yet confirmed delivered (a
/// successful flush after it): sent again by the next start.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PendingEnd {
    /// The session as it ended (final counts and status).
    pub(crate) session: SavedSession,
    pub(crate) reason: EndReason,
    pub(crate) ended_at: SystemTime,
}

/// How the last run's process died, if a crash marker says so (native
/// crashes and hangs: `stability::crash`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Died {
    /// `Crash` (a fatal signal) or `Hang` (it died during a hang).
    pub(crate) reason: EndReason,
    /// The `app.crash` (or hang) record the next start sends.
    pub(crate) report: Exception,
}

/// Everything a store keeps.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Saved {
    /// The current app session, if any.
    pub(crate) session: Option<SavedSession>,
    /// The last reported session's id (the next session's `previous_id`).
    pub(crate) last_reported: Option<SessionId>,
    /// Ends not yet confirmed delivered.
    pub(crate) pending_ends: Vec<PendingEnd>,
    /// Permanent attributes: every later session carries them.
    pub(crate) permanent: Attributes,
    /// The session a native crash of this process would be in (for the
    /// crash marker; not kept in the file): the live reported session, the
    /// one a fatal panic just ended, or none (a discarded session, none).
    pub(crate) running: Option<SessionId>,
}

/// Pending ends kept at most (the oldest go first, with a warning).
pub(crate) const PENDING_ENDS_LIMIT: usize = 64;

/// What a store is opened with: the manager's crash settings and the
/// instance's identity (for the crash marker next to the session file).
#[derive(Debug, Clone, Default)]
pub(crate) struct StoreOpen {
    pub(crate) crash: crate::model::exception::CrashSettings,
    pub(crate) version: Option<String>,
    pub(crate) instance_id: Option<String>,
}

/// The function that opens a store.
pub(crate) type OpenStore =
    Box<dyn FnOnce(&StoreOpen) -> Option<std::sync::Arc<dyn Store>> + Send + Sync>;

/// A persistence store to open when the manager is built: `what` names it in
/// the warning when the mode persists nothing (request mode), where it is
/// never opened.
pub(crate) struct StoreSource {
    pub(crate) what: String,
    pub(crate) open: OpenStore,
}

/// A persistence store.
pub(crate) trait Store: Send + Sync + std::fmt::Debug {
    /// What was saved by the last run (`None`: nothing usable; a store reports
    /// a damaged file itself, once).
    fn load(&self) -> Option<Saved>;
    /// Saves `saved` (atomically; a failure is reported once, never panics).
    fn save(&self, saved: &Saved);
    /// How the last run's process died, if its crash marker says (taken once).
    fn take_died(&self) -> Option<Died> {
        None
    }
}
