//! What the span and log processors call: the app session's stamp (starting
//! the next session when one is due) and activity. Lock-free unless a session
//! is due to start or a limit has passed.

use std::time::SystemTime;

use opentelemetry::StringValue;

use crate::core::rules::{Actor, Event};
use crate::core::session::{due, nanos};
use crate::core::stamp::Lookup;

use super::{Shared, Site};

impl Shared {
    /// The app session's id for new telemetry, starting a session if one is
    /// due (one winner among racing threads; the others get its id).
    #[inline]
    pub(crate) fn app_stamp(&self) -> Option<StringValue> {
        match self.core.stamp.lookup() {
            Lookup::Id(v) => Some(v),
            Lookup::Nothing => None,
            Lookup::Restart => self.start_for_activity(),
        }
    }

    #[cold]
    #[inline(never)]
    fn start_for_activity(&self) -> Option<StringValue> {
        self.drive(Event::Activity(Actor::current()), Site::Processor);
        match self.core.stamp.lookup() {
            Lookup::Id(v) => Some(v),
            Lookup::Nothing | Lookup::Restart => None,
        }
    }

    /// Notes telemetry the app session was stamped on, dated `at` by the SDK,
    /// as its activity. With the system clock a thread notes it at most once
    /// per [`Activity::GRANULARITY`](crate::core::session::Activity::GRANULARITY) (the SDK's time compared, not converted,
    /// no clock read). `true` if it was noted (a passed limit may have ended
    /// the session: the caller reads the stamp again).
    #[inline]
    pub(crate) fn note_telemetry(&self, at: Option<SystemTime>) -> bool {
        if let Some(t) = at {
            if self.system_clock() && !due(self, t) {
                return false;
            }
        }
        let t = self.activity_time(at);
        self.save_soon(t);
        let mut now = t;
        if self.core.activity.touch(t, || {
            now = nanos(self.now());
            now
        }) {
            self.past_limits();
        }
        true
    }

    #[cold]
    #[inline(never)]
    fn past_limits(&self) {
        self.drive(Event::Activity(Actor::current()), Site::Processor);
    }

    /// The activity time of telemetry stamped `at` by the SDK: that time with the
    /// system clock (already read), else the manager's clock.
    #[inline]
    pub(crate) fn activity_time(&self, at: Option<SystemTime>) -> u64 {
        match at {
            Some(t) if self.system_clock() => nanos(t),
            _ => nanos(self.now()),
        }
    }
}

impl Shared {
    /// The `session.id` attribute (key, value) for telemetry starting in `cx`:
    /// nothing inside our hooks, the context's scope if it has one, else the
    /// app session (starting one if due).
    #[inline]
    pub(crate) fn stamp(
        &self,
        cx: &opentelemetry::Context,
    ) -> Option<(opentelemetry::Key, StringValue)> {
        if crate::core::callbacks::in_hook() {
            return None;
        }
        if let Some(scoped) = crate::core::stamp::scoped(cx) {
            return scoped;
        }
        self.app_stamp().map(|v| {
            (
                opentelemetry::Key::from_static_str(crate::core::stamp::app_key()),
                v,
            )
        })
    }
}

impl Actor {
    /// This thread, now.
    pub(crate) fn current() -> Actor {
        Actor {
            thread: crate::core::stamp::thread_number(),
            unwinding: std::thread::panicking(),
        }
    }
}
