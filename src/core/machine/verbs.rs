//! The session API on the driver: each verb is one event.

use opentelemetry::Key;

use crate::core::rules::{Actor, Event, Phase};
use crate::model::attributes::Entry;
use crate::model::session::{Session, User};

use super::{Shared, Site};

impl Shared {
    /// Starts a new session, ending the current one (reason `replaced`); the
    /// session current afterwards.
    pub(crate) fn start(&self) -> Option<Session> {
        self.drive(Event::Start, Site::Safe)
            .started
            .map(|s| s.snapshot(false))
    }

    /// Ends the current session (reason `manual`); nothing starts by itself.
    pub(crate) fn end(&self) {
        self.drive(Event::End, Site::Safe);
    }

    pub(crate) fn pause(&self) {
        self.drive(Event::Pause, Site::Safe);
    }

    /// `true` if a paused session was resumed.
    pub(crate) fn resume(&self) -> bool {
        self.drive(Event::Resume, Site::Safe).reply.done
    }

    pub(crate) fn set_user(&self, user: Option<User>) {
        self.core.lock().user_version += 1;
        self.drive(Event::SetUser(user), Site::Safe);
    }

    /// Sets a session attribute (of any kind): `false` if refused, the
    /// session (or what the next carries) having as many as it may.
    pub(crate) fn set_attribute(&self, e: Entry) -> bool {
        !self.drive(Event::SetAttribute(e), Site::Safe).reply.full
    }

    /// Removes a session attribute (a property of any kind, or a flag).
    pub(crate) fn remove_attribute(&self, key: Key) {
        self.drive(Event::RemoveAttribute(key), Site::Safe);
    }

    pub(crate) fn background(&self) {
        self.drive(Event::Background, Site::Safe);
    }

    pub(crate) fn foreground(&self) {
        self.drive(Event::Foreground, Site::Safe);
    }

    /// A snapshot of the current session (a session past its limits ends
    /// first; reading is not activity).
    pub(crate) fn current(&self) -> Option<Session> {
        self.drive(Event::Check, Site::Safe);
        self.snapshot()
    }

    /// The current session as it is, without checking its limits.
    pub(crate) fn snapshot(&self) -> Option<Session> {
        let st = self.core.lock();
        match &st.rules.phase {
            Phase::Live(l) => Some(l.session.snapshot(l.paused)),
            _ => None,
        }
    }

    /// Counts an error toward the current session (starting the next one if a
    /// start is due).
    pub(crate) fn record_error(&self, unhandled: bool) {
        self.drive(
            Event::Error {
                unhandled,
                actor: Actor::current(),
            },
            Site::Safe,
        );
    }
}
