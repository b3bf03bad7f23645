//! App mode: sessions that follow the app's life.
//!
//! A session starts when the manager is built (and so at `init()`); it ends by
//! itself after the inactivity timeout (default 15 min without telemetry
//! attributed to it or a session verb) or the maximum duration (default 4 h),
//! dated at its last activity, and the next activity starts a new one. UI
//! programs also report focus: [`SessionManager::background`] when the app
//! loses it (the session goes on, not paused) and
//! [`SessionManager::foreground`] when it comes back — after at least the
//! background timeout (default 30 s) away, the old session ends (reason
//! `background`, dated at its last activity) and a new one starts; a shorter
//! absence keeps it.
//!
//! Boundaries are inclusive: a session whose timeout has *exactly* elapsed ends.
//! Reading the session ([`current_session`](crate::current_session)) is not
//! activity. Timeouts are checked by one sleeping timer thread at each deadline,
//! by the telemetry that arrives past a deadline, and by every verb; with a
//! [`ManualClock`](crate::ManualClock), by `advance`.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::{Duration, UNIX_EPOCH};
//! use otel_session::{ManualClock, SessionManager};
//!
//! let clock = ManualClock::shared(UNIX_EPOCH + Duration::from_secs(1_000));
//! let sessions = SessionManager::builder()
//!     .with_clock(clock.clone())
//!     .with_background_timeout(Duration::from_secs(30))
//!     .build();
//! let first = sessions.current_session().unwrap();
//! sessions.background();
//! clock.advance(Duration::from_secs(29));
//! sessions.foreground(); // back after 29 s: same session
//! assert_eq!(sessions.current_session().unwrap().id(), first.id());
//! sessions.background();
//! clock.advance(Duration::from_secs(30));
//! sessions.foreground(); // back after 30 s: a new one
//! let second = sessions.current_session().unwrap();
//! assert_ne!(second.id(), first.id());
//! assert_eq!(second.previous_id(), Some(first.id()));
//! ```

use crate::core::global::global_manager;
use crate::core::manager::SessionManager;

impl SessionManager {
    /// The app came back to the foreground (window focused, app resumed). After
    /// at least the background timeout away, the session ends (reason
    /// `background`) and, in app mode, a new one starts; else it goes on. In app
    /// mode there is a session afterwards.
    pub fn foreground(&self) {
        self.shared.foreground();
    }

    /// The app went to the background (window lost focus, app suspended). The
    /// session goes on (it is not paused); the time is remembered for
    /// [`foreground`](Self::foreground).
    pub fn background(&self) {
        self.shared.background();
    }
}

/// [`SessionManager::foreground`] on the global manager.
pub fn foreground() {
    if let Some(m) = global_manager() {
        m.foreground();
    }
}

/// [`SessionManager::background`] on the global manager.
pub fn background() {
    if let Some(m) = global_manager() {
        m.background();
    }
}
