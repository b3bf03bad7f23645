//! What the span and log processors call: the app session's stamp (starting
//! the next session when one is due) and activity. Lock-free unless a session
//! is due to start or a limit has passed.

use std::time::SystemTime;

use opentelemetry::{KeyValue, StringValue, Value};

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
        self.touch_at(self.activity_time(at));
        true
    }

    /// A span's end as activity, when it is due to be noted (the span
    /// wrapper's `span_end::inspect` decides).
    pub(crate) fn note_span_activity_slow(&self, at: SystemTime) {
        if self.system_clock() {
            crate::core::session::mark_due(self, at);
        }
        self.touch_at(self.activity_time(Some(at)));
    }

    /// Activity at `t` (nanoseconds): saved soon (persistence), and the
    /// session ends first if `t` is past one of its limits.
    fn touch_at(&self, t: u64) {
        self.save_soon(t);
        let mut now = t;
        if self.core.activity.touch(t, || {
            now = nanos(self.now());
            now
        }) {
            self.past_limits();
        }
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
    /// The `session.id` attribute for a span starting in `cx` (see
    /// [`stamp`](Self::stamp)), built in place: the span wrapper's `on_start`.
    #[inline]
    pub(crate) fn stamp_attribute(&self, cx: &opentelemetry::Context) -> Option<KeyValue> {
        if crate::core::callbacks::in_hook() {
            return None;
        }
        if !crate::core::scope::scopes_exist() {
            if let Ok(id) = self.core.stamp.cached() {
                let key = opentelemetry::Key::from_static_str(self.core.stamp.app_key);
                return id.map(|id| KeyValue::new(key, Value::String(StringValue::from(id))));
            }
        }
        self.stamp_attribute_slow(cx)
    }

    #[inline(never)]
    fn stamp_attribute_slow(&self, cx: &opentelemetry::Context) -> Option<KeyValue> {
        self.stamp(cx)
            .map(|(key, id)| KeyValue::new(key, Value::String(id)))
    }

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
        if crate::core::scope::scopes_exist() {
            return self.stamp_maybe_scoped(cx);
        }
        let key = self.core.stamp.app_key;
        self.app_stamp()
            .map(|v| (opentelemetry::Key::from_static_str(key), v))
    }

    /// [`stamp`](Self::stamp) once contexts may carry a scope (a request, a
    /// joined session): out of line, so the common case stays small.
    #[inline(never)]
    fn stamp_maybe_scoped(
        &self,
        cx: &opentelemetry::Context,
    ) -> Option<(opentelemetry::Key, StringValue)> {
        if let Some(scoped) = crate::core::stamp::scoped(cx) {
            return scoped;
        }
        let key = self.core.stamp.app_key;
        self.app_stamp()
            .map(|v| (opentelemetry::Key::from_static_str(key), v))
    }
}

impl Shared {
    /// The stamped session attributes (`OTEL_SESSION_STAMP_ATTRIBUTES`) of
    /// telemetry stamped with the app session (`app`), else of the request
    /// session `cx` carries (none for a caller's session joined): each
    /// handed to `push`. Out of line: only managers that stamp attributes
    /// come here.
    #[inline(never)]
    pub(crate) fn stamped_attributes(
        &self,
        cx: Option<&opentelemetry::Context>,
        app: bool,
        mut push: impl FnMut(KeyValue),
    ) {
        if app {
            self.core.stamp.push_stamped(push);
            return;
        }
        // A joined caller's session: its attributes are the caller's.
        let Some(scope) = cx.and_then(crate::core::scope::Scope::of) else {
            return;
        };
        let Some(request) = scope.request().filter(|_| scope.joined.is_none()) else {
            return;
        };
        request.with_attributes(|attributes| {
            if attributes.is_empty() {
                return;
            }
            self.core
                .stamp_keys
                .iter()
                .filter_map(|k| attributes.key_value(k))
                .for_each(&mut push);
        });
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
