//! Events in: one rules step, a candidate built when the rules ask for one,
//! then delivery and the next timer.

use std::cell::Cell;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::core::callbacks::{run_on_session, SessionCandidate};
use crate::core::rules::{self, Actor, Event, Purpose, Reply};
use crate::core::session::SessionState;
use crate::model::attributes::Attributes;
use crate::model::clock::TimeJump;
use crate::model::session::User;

use super::core::{Flight, Inner, BUILD_WAIT};
use super::{Shared, Site};

thread_local! {
    /// This thread is building a candidate (its user code may call verbs).
    static BUILDING_HERE: Cell<bool> = const { Cell::new(false) };
}

/// Clears the single-flight flag however a build ends.
struct Building<'a>(&'a Shared);

impl Drop for Building<'_> {
    fn drop(&mut self) {
        BUILDING_HERE.with(|b| b.set(false));
        self.0.core.end_build();
    }
}

/// What a driven event did.
#[derive(Debug, Default)]
pub(crate) struct Driven {
    pub(crate) reply: Reply,
    /// The session this call started, if it started one.
    pub(crate) started: Option<Arc<SessionState>>,
}

/// A candidate made outside the lock: its id, the callbacks' verdict.
struct Candidate {
    c: SessionCandidate,
    keep: bool,
    user_version: u64,
}

impl Shared {
    /// Feeds `event` to the rules; builds a candidate if they ask for one (and
    /// steps the event once more if they say it counts in the new session);
    /// then delivers as `site` allows and sets the timer.
    pub(crate) fn drive(&self, event: Event<Arc<SessionState>>, site: Site) -> Driven {
        let now = self.now();
        let (reply, build) = self.step(event.clone(), now);
        let mut started = None;
        if let Some((purpose, again)) = build {
            let (mine, live) = self.build(purpose, site);
            started = mine;
            if live && again {
                self.step(event, self.now());
            }
        }
        self.after(site);
        Driven { reply, started }
    }

    /// One rules step at `now`; the build it asks for, if any.
    fn step(
        &self,
        event: Event<Arc<SessionState>>,
        now: SystemTime,
    ) -> (Reply, Option<(Purpose, bool)>) {
        self.core.step(
            |_| event,
            now,
            || self.resolve(now),
            |st, out, at| self.apply(st, out, at),
        )
    }

    /// The time of a change, read after it was published (the system clock),
    /// or the reading before it (a user's clock is user code).
    fn resolve(&self, now: SystemTime) -> SystemTime {
        if self.system_clock() {
            opentelemetry::time::now()
        } else {
            now
        }
    }

    /// Builds a candidate for `purpose` and commits it: the session this call
    /// started (if it did), and whether a session is current afterwards that
    /// the event may count in.
    fn build(&self, purpose: Purpose, site: Site) -> (Option<Arc<SessionState>>, bool) {
        if BUILDING_HERE.with(Cell::get) {
            // The clock or id generator called a verb while we build.
            return (None, false);
        }
        if site == Site::Processor && !self.plain_build() {
            return (None, self.build_elsewhere());
        }
        match self.core.begin_build(purpose, true) {
            Flight::Build => {}
            Flight::NotNeeded => return (None, self.core.lock().rules.live().is_some()),
            Flight::Busy => {
                self.warn_slow_start();
                return (None, false);
            }
        }
        BUILDING_HERE.with(|b| b.set(true));
        let _building = Building(self);
        let candidate = self.candidate();
        let now = self.now();
        let (reply, live) = self.core.step(
            |st| self.commit_event(st, candidate, purpose),
            now,
            || self.resolve(now),
            |st, out, at| {
                self.apply(st, out, at);
                st.rules.live().map(|l| Arc::clone(&l.session))
            },
        );
        let live_now = live.is_some();
        (live.filter(|_| reply.done), live_now)
    }

    /// In a processor, a candidate that runs user code is built by the timer
    /// thread; this thread waits for it (bounded), unless it is that thread.
    fn build_elsewhere(&self) -> bool {
        {
            let mut st = self.core.lock();
            st.start_requested = true;
            st.start_requested_by = Actor::current();
        }
        self.deliver_soon();
        if crate::core::timer::on_timer_thread() {
            // The start it asks for is one it builds, right after.
            return false;
        }
        if !self.core.wait_for_start(BUILD_WAIT) {
            self.warn_slow_start();
        }
        self.core.lock().rules.live().is_some()
    }

    fn warn_slow_start(&self) {
        crate::warn::once(
            self.warned_start_wait(),
            format_args!(
                "starting a session took longer than {BUILD_WAIT:?} (a slow on_session callback \
                 or IdGenerator?); telemetry meanwhile carries no session.id (reported once)"
            ),
        );
    }

    /// A candidate: an id and the `on_session` verdict, taken now (user code,
    /// outside the lock, under the hook guard).
    fn candidate(&self) -> Candidate {
        let (previous_id, user, user_version) = {
            let st = self.core.lock();
            (
                st.rules.last_reported.clone(),
                st.rules.user.clone(),
                st.user_version,
            )
        };
        let mut c = SessionCandidate {
            id: self.new_id(),
            previous_id,
            started_at: self.now(),
            user,
            user_set: false,
            attributes: Vec::new(),
        };
        let callbacks = self.callbacks.load();
        let keep = callbacks.is_empty() || run_on_session(&callbacks, &mut c);
        Candidate {
            c,
            keep,
            user_version,
        }
    }

    /// The commit of `candidate`, made under the lock: its `previous_id` and
    /// user as of this moment (a `set_user` while the callbacks ran wins
    /// unless a callback set the user itself).
    fn commit_event(
        &self,
        st: &Inner,
        candidate: Candidate,
        purpose: Purpose,
    ) -> Event<Arc<SessionState>> {
        let mut c = candidate.c;
        c.previous_id = st.rules.last_reported.clone();
        if st.user_version != candidate.user_version && !c.user_set {
            c.user = st.rules.user.clone();
        }
        let user: Option<User> = c.user.clone();
        let attributes = Attributes::from_callbacks(std::mem::take(&mut c.attributes));
        Event::Commit {
            session: Arc::new(SessionState::new(c, !candidate.keep)),
            user,
            attributes,
            purpose,
        }
    }

    /// After an event: the timer for the live session's next deadline, and
    /// delivery (a processor leaves it to the timer thread).
    fn after(&self, site: Site) {
        self.schedule();
        match site {
            Site::Safe => self.flush(),
            Site::Processor => {
                if self.outbox.pending() {
                    self.deliver_soon();
                }
            }
            Site::Shutdown => {}
        }
    }

    /// Arms the real timer for the live session's next deadline (not for a
    /// manual clock: it wakes us itself).
    pub(crate) fn schedule(&self) {
        if self.manual_clock() {
            return;
        }
        let deadline = {
            let st = self.core.lock();
            st.rules
                .live()
                .and_then(|l| rules::deadline(l, &self.core.config))
        };
        let Some(deadline) = deadline else { return };
        let wait = deadline
            .duration_since(self.now())
            .unwrap_or(Duration::ZERO);
        crate::core::timer::schedule(self.me(), wait);
    }
}

impl TimeJump for Shared {
    /// The timer (or a manual clock) woke us: deadlines, a start asked for
    /// from a processor, a save asked for by activity, delivery.
    fn time_jumped(&self) {
        let (requested, requested_by) = {
            let mut st = self.core.lock();
            (
                std::mem::take(&mut st.start_requested),
                st.start_requested_by,
            )
        };
        let event = if requested {
            Event::Activity(requested_by)
        } else {
            Event::Check
        };
        self.drive(event, Site::Safe);
        self.save_if_asked();
        self.flush();
    }
}
