//! The driver's core, and the one place its lock invariants live.
//!
//! - **One lock** (`state`) guards the rules' state ([`rules::State`]) and the
//!   single-flight build flag. It is held for one [`rules::step`], the
//!   publication of its result, and the description of its effects (queued in
//!   the outbox in state order) — never while user code runs (the clock, the
//!   id generator, `on_session` callbacks, observers, processors): times are
//!   read before it is taken, candidates are built without it, effects are
//!   delivered after it is released.
//! - **Publication** happens only here, after each step, in one order: the
//!   hot-path cell ([`Stamp::publish`]: cell, then generation), then the time
//!   of the change is read (the system clock: after the stamp changed, so no
//!   telemetry stamped with a session starts after its end), then a session
//!   that became current is dated and the activity atomics are armed for it.
//! - **Activity** noted by the hot path without the lock (the [`Activity`]
//!   atomics) is folded into the rules' state at the start of each step.
//! - **Starting** is single-flight: one thread builds a candidate (with the lock
//!   released); others that also need one wait for it (bounded) and find the
//!   session it made. A thread never waits on itself.
//!
//! `scripts/loom.sh` checks the publication and the restart race with loom
//! (the tests at the end of this file).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::core::rules::{self, Effect, Event, Phase, Purpose, Reply};
use crate::core::session::{from_nanos, nanos, Activity, SessionState};
use crate::core::stamp::{Published, Stamp, Stamped, StampedSet};
use crate::core::sync::{lock, Condvar, Mutex, MutexGuard};
use crate::model::attributes::{Attributes, Entry};
use crate::model::intern;
use arc_swap::ArcSwapOption;
use opentelemetry::{Key, KeyValue};

/// The rules' state over our sessions.
pub(crate) type RulesState = rules::State<Arc<SessionState>>;
/// A rules effect over our sessions.
pub(crate) type RulesEffect = Effect<Arc<SessionState>>;

/// How long a thread waits for another's build of a candidate.
pub(crate) const BUILD_WAIT: Duration = Duration::from_secs(2);

/// What the lock guards.
pub(crate) struct Inner {
    pub(crate) rules: RulesState,
    /// A candidate is being built.
    building: bool,
    /// Telemetry inside a processor needs a start whose candidate runs user
    /// code: the timer thread builds it.
    pub(crate) start_requested: bool,
    /// Who asked for it (the thread that crashed may be the only one allowed).
    pub(crate) start_requested_by: rules::Actor,
    /// Bumped by every `set_user` (a candidate built meanwhile takes the new
    /// user unless a callback set its own).
    pub(crate) user_version: u64,
    /// The live session the activity atomics are armed for.
    armed: Option<Arc<SessionState>>,
    /// What `carried` was last published from.
    carried_from: Attributes,
    /// The stamped attributes of the live session, and what they were
    /// made from.
    stamped: (Attributes, Stamped),
}

/// The outcome of asking to build a candidate.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Flight {
    /// This thread builds it; call [`Core::end_build`] after committing.
    Build,
    /// Not needed any more (another thread started a session).
    NotNeeded,
    /// Another thread is building and this one may not wait (or waited too long).
    Busy,
}

/// The lock, the rules, and what is published to the hot path.
pub(crate) struct Core {
    state: Mutex<Inner>,
    built: Condvar,
    pub(crate) stamp: Stamp,
    pub(crate) activity: Activity,
    pub(crate) config: rules::Config,
    /// What later sessions carry (permanent attributes, feature flags), for
    /// request sessions to start with, read without the lock; `carries` says
    /// whether there is anything (a request reads only that, usually).
    carried: ArcSwapOption<Vec<Entry>>,
    carries: std::sync::atomic::AtomicBool,
    /// The session attributes stamped on telemetry
    /// (`OTEL_SESSION_STAMP_ATTRIBUTES`), as kept keys (`model::intern`).
    pub(crate) stamp_keys: Arc<[Key]>,
}

impl Core {
    pub(crate) fn new(
        manager: u64,
        config: rules::Config,
        user: Option<crate::User>,
        stamp_keys: Arc<[Key]>,
    ) -> Self {
        Core {
            state: Mutex::new(Inner {
                rules: rules::State {
                    user,
                    ..rules::State::default()
                },
                building: false,
                start_requested: false,
                start_requested_by: rules::Actor::default(),
                user_version: 0,
                armed: None,
                carried_from: Attributes::default(),
                stamped: (Attributes::default(), None),
            }),
            built: Condvar::new(),
            stamp: Stamp::new(manager, !stamp_keys.is_empty()),
            activity: Activity::default(),
            config,
            carried: ArcSwapOption::empty(),
            carries: std::sync::atomic::AtomicBool::new(false),
            stamp_keys,
        }
    }

    /// The lock, for reading (the driver's snapshots and saves).
    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        lock(&self.state)
    }

    /// One step of the rules at `now`, under the lock: `event` makes the event
    /// (a candidate's session is made under the lock, with the last reported
    /// id of that moment), the state changes, the result is published,
    /// `resolve` dates the change (called after the publication), and `apply`
    /// describes the effects (still under the lock, so their order is the
    /// order of the changes).
    pub(crate) fn step<R>(
        &self,
        event: impl FnOnce(&Inner) -> Event<Arc<SessionState>>,
        now: SystemTime,
        resolve: impl FnOnce() -> SystemTime,
        apply: impl FnOnce(&mut Inner, Vec<RulesEffect>, SystemTime) -> R,
    ) -> (Reply, R) {
        let mut st = self.lock();
        let event = event(&st);
        self.sync(&mut st);
        let was = (st.rules.start_due(), st.rules.live().is_some());
        let committing = matches!(event, Event::Commit { .. });
        let mut out = Vec::new();
        let reply = rules::step(&mut st.rules, &self.config, event, now, &mut out);
        let at = self.publish(&mut st, resolve).max(now);
        if committing && reply.done {
            // The new session starts at the moment of the change.
            if let Phase::Live(l) = &mut st.rules.phase {
                l.started_at = at;
                l.last_activity = at;
            }
        }
        self.arm(&mut st);
        if !st.rules.next.same(&st.carried_from) {
            st.carried_from = st.rules.next.clone();
            let carried = st.rules.next.carried().shared();
            self.carries
                .store(carried.is_some(), std::sync::atomic::Ordering::Release);
            self.carried.store(carried);
        }
        let r = apply(&mut st, out, at);
        // Threads waiting for a start re-check when one may have happened.
        if was != (st.rules.start_due(), st.rules.live().is_some()) {
            self.built.notify_all();
        }
        (reply, r)
    }

    /// Folds the hot path's activity into the live session.
    fn sync(&self, st: &mut Inner) {
        let Inner { rules, armed, .. } = st;
        if let Phase::Live(l) = &mut rules.phase {
            if armed.as_ref().is_some_and(|a| Arc::ptr_eq(a, &l.session)) {
                l.last_activity = l.last_activity.max(from_nanos(self.activity.last()));
            }
        }
    }

    /// Publishes what new telemetry gets, and dates the change with
    /// `resolve` between the two halves of the publication: a stamp that goes
    /// away is withdrawn before the time is read (so no telemetry stamped with
    /// a session starts after its end or pause), and one that arrives is
    /// published after (so none stamped with it starts before its start or
    /// resume). A replacement does both, in that order: the new session starts
    /// no earlier than the old one ended.
    fn publish(&self, st: &mut Inner, resolve: impl FnOnce() -> SystemTime) -> SystemTime {
        let stamped = self.stamped(st);
        let p = match (st.rules.stamped(), st.rules.crashed_thread()) {
            (Some(s), _) => Published::Session(Arc::clone(s), stamped),
            (None, _) if st.rules.start_due() => Published::Restart,
            (None, Some(thread)) => Published::AfterCrash(thread),
            (None, None) => Published::Nothing,
        };
        let withdrawn = match (self.stamp.session(), &p) {
            (Some(old), Published::Session(new, _)) => !Arc::ptr_eq(&old, new),
            (Some(_), _) => true,
            (None, _) => false,
        };
        if withdrawn {
            let interim = match p {
                Published::Session(..) => Published::Nothing,
                ref other => other.clone(),
            };
            self.stamp.publish(interim);
        }
        let at = resolve();
        self.stamp.publish(p);
        at
    }

    /// The stamped attributes of the live session (made again only when its
    /// attributes changed).
    fn stamped(&self, st: &mut Inner) -> Stamped {
        if self.stamp_keys.is_empty() {
            return None;
        }
        let l = st.rules.live()?;
        if !st.stamped.0.same(&l.attributes) {
            let list: Vec<KeyValue> = self
                .stamp_keys
                .iter()
                .filter_map(|k| l.attributes.key_value(k))
                .map(|kv| KeyValue::new(kv.key, intern::value(&kv.value)))
                .collect();
            let fixed = intern::list(&list);
            st.stamped = (
                l.attributes.clone(),
                Some(Arc::new(StampedSet { list, fixed })),
            );
        }
        st.stamped.1.clone()
    }

    /// Arms (or disarms) the activity atomics for the live session (dating a
    /// session that just became current).
    fn arm(&self, st: &mut Inner) {
        let Inner { rules, armed, .. } = st;
        match &mut rules.phase {
            Phase::Live(l) => {
                if armed.as_ref().is_some_and(|a| Arc::ptr_eq(a, &l.session)) {
                    self.activity.raise(nanos(l.last_activity));
                    return;
                }
                l.session.date_start(l.started_at);
                self.activity.arm(
                    nanos(l.started_at),
                    nanos(l.last_activity),
                    self.config.inactivity,
                    self.config.max_duration,
                );
                *armed = Some(Arc::clone(&l.session));
            }
            _ => {
                if armed.take().is_some() {
                    self.activity.disarm();
                }
            }
        }
    }

    /// What later sessions carry now (permanent attributes, feature flags):
    /// one atomic load when there is nothing.
    pub(crate) fn carried(&self) -> Attributes {
        if !self.carries.load(std::sync::atomic::Ordering::Acquire) {
            return Attributes::default();
        }
        Attributes::from_shared(self.carried.load_full())
    }

    /// Asks to build a candidate for `purpose` (single flight). With `wait`,
    /// a thread that finds another building waits (bounded) for it.
    pub(crate) fn begin_build(&self, purpose: Purpose, wait: bool) -> Flight {
        let mut st = self.lock();
        loop {
            if !purpose.wanted(&st.rules) {
                return Flight::NotNeeded;
            }
            if !st.building {
                st.building = true;
                return Flight::Build;
            }
            if !wait {
                return Flight::Busy;
            }
            let (next, timeout) = self
                .built
                .wait_timeout(st, BUILD_WAIT)
                .unwrap_or_else(|e| e.into_inner());
            st = next;
            if timeout.timed_out() && st.building {
                return Flight::Busy;
            }
        }
    }

    /// The build that [`begin_build`](Self::begin_build) granted is over
    /// (committed or abandoned): the next may begin.
    pub(crate) fn end_build(&self) {
        self.lock().building = false;
        self.built.notify_all();
    }

    /// Waits (bounded) until no start is due any more (the timer thread built
    /// the one this thread asked for); `false` on time out.
    pub(crate) fn wait_for_start(&self, limit: Duration) -> bool {
        let deadline = crate::model::clock::deadline_in(limit);
        let mut st = self.lock();
        while st.rules.start_due() {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return false;
            }
            st = self
                .built
                .wait_timeout(st, left)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
        true
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    //! Every interleaving (loom) of the races the hot path is in: publication
    //! against lookups, and threads racing past an expiry into a restart.

    use super::*;
    use crate::core::callbacks::SessionCandidate;
    use crate::core::rules::Actor;
    use crate::core::stamp::Lookup;
    use crate::model::session::{SessionId, SessionMode};
    use std::time::UNIX_EPOCH;

    fn config() -> rules::Config {
        rules::Config {
            mode: SessionMode::App,
            inactivity: Some(Duration::from_secs(60)),
            max_duration: None,
            background_timeout: Duration::from_secs(30),
            persist: false,
        }
    }

    fn session(id: &str) -> Arc<SessionState> {
        Arc::new(SessionState::new(
            SessionCandidate {
                id: SessionId::from(id),
                previous_id: None,
                started_at: UNIX_EPOCH,
                user: None,
                user_set: false,
                attributes: Vec::new(),
            },
            false,
        ))
    }

    fn t(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_000 + s)
    }

    /// Steps `event` at `now`, building and committing `id` if asked to: the
    /// driver's loop without the user code. The ids it started.
    fn drive(
        core: &Core,
        event: Event<Arc<SessionState>>,
        now: SystemTime,
        id: &str,
    ) -> Vec<String> {
        let mut started = Vec::new();
        let (_, effects) = core.step(|_| event, now, || now, |_, out, _| out);
        for e in effects {
            if let Effect::Build { purpose, .. } = e {
                if core.begin_build(purpose, true) == Flight::Build {
                    let (_, out) = core.step(
                        |_| Event::Commit {
                            session: session(id),
                            user: None,
                            attributes: Attributes::default(),
                            purpose,
                        },
                        now,
                        || now,
                        |_, out, _| out,
                    );
                    core.end_build();
                    for e in out {
                        if let Effect::Started { session } = e {
                            started.push(session.id.to_string());
                        }
                    }
                }
            }
        }
        started
    }

    fn id_of(l: Lookup) -> Option<String> {
        match l {
            Lookup::Id(v) => Some(v.as_str().to_string()),
            _ => None,
        }
    }

    /// How many interleavings a model explored (each run of its closure).
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

    fn explored(name: &str) {
        let n = RUNS.swap(0, std::sync::atomic::Ordering::SeqCst);
        eprintln!("{name}: {n} interleavings explored");
        assert!(n > 1, "loom explored {n} interleavings of {name}");
    }

    /// Telemetry from two threads arriving past an expiry: one new session,
    /// started once, and both stamp it.
    #[test]
    fn threads_racing_past_an_expiry_get_one_new_session() {
        loom::model(|| {
            RUNS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let core = Arc::new(Core::new(1, config(), None, Arc::from([])));
            drive(&core, Event::Boot, t(0), "first");
            // The deadline passed: the next activity ends it and starts one.
            let racers: Vec<_> = ["a", "b"]
                .into_iter()
                .map(|id| {
                    let core = Arc::clone(&core);
                    loom::thread::spawn(move || {
                        let started = drive(&core, Event::Activity(Actor::default()), t(61), id);
                        let stamped = id_of(core.stamp.lookup());
                        (started, stamped)
                    })
                })
                .collect();
            let results: Vec<_> = racers.into_iter().map(|h| h.join().unwrap()).collect();
            let started: Vec<String> = results.iter().flat_map(|(s, _)| s.clone()).collect();
            assert_eq!(started.len(), 1, "one winner: {started:?}");
            for (_, stamped) in &results {
                assert_eq!(stamped.as_deref(), Some(started[0].as_str()));
            }
        });
        explored("threads_racing_past_an_expiry_get_one_new_session");
    }

    /// A reader racing a publication never keeps a stale answer: after the
    /// writer is done, every lookup gives what was published last.
    #[test]
    fn a_lookup_racing_a_publication_never_caches_a_stale_answer() {
        loom::model(|| {
            RUNS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let core = Arc::new(Core::new(2, config(), None, Arc::from([])));
            drive(&core, Event::Boot, t(0), "first");
            let reader = {
                let core = Arc::clone(&core);
                loom::thread::spawn(move || {
                    let during = core.stamp.lookup();
                    (id_of(during.clone()), matches!(during, Lookup::Restart))
                })
            };
            // Expiry (Restart published), then the next session.
            drive(&core, Event::Check, t(61), "x");
            drive(&core, Event::Activity(Actor::default()), t(61), "second");
            let (during, restart) = reader.join().unwrap();
            assert!(
                restart || matches!(during.as_deref(), Some("first") | Some("second")),
                "{during:?}"
            );
            // The reader thread is gone; a lookup now (this thread) and the
            // reader's cache discipline: the final answer.
            assert_eq!(id_of(core.stamp.lookup()).as_deref(), Some("second"));
        });
        explored("a_lookup_racing_a_publication_never_caches_a_stale_answer");
    }

    /// A lookup racing a change of the session's stamped attributes never
    /// keeps a stale list: after the writer is done, this thread's cached
    /// list is the one published last.
    #[test]
    fn a_lookup_racing_an_attribute_change_never_caches_stale_attributes() {
        use crate::model::attributes::{Entry, Kind};
        use opentelemetry::Value;
        let set = |v: &'static str| {
            Event::SetAttribute(Entry {
                key: crate::model::intern::key("app.screen"),
                value: Value::from(v),
                kind: Kind::Session,
            })
        };
        let values = |core: &Core| {
            let mut got = Vec::new();
            core.stamp.push_stamped(|kv| got.push(kv.value.to_string()));
            got
        };
        loom::model(move || {
            RUNS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let keys: Arc<[opentelemetry::Key]> =
                Arc::from([crate::model::intern::key("app.screen")]);
            let core = Arc::new(Core::new(3, config(), None, keys));
            drive(&core, Event::Boot, t(0), "first");
            drive(&core, set("home"), t(1), "-");
            let reader = {
                let core = Arc::clone(&core);
                loom::thread::spawn(move || values(&core))
            };
            drive(&core, set("cart"), t(2), "-");
            let during = reader.join().unwrap();
            assert!(during == ["home"] || during == ["cart"], "{during:?}");
            assert_eq!(values(&core), ["cart"]);
        });
        explored("a_lookup_racing_an_attribute_change_never_caches_stale_attributes");
    }

    /// The ordering the published stamp replaced (issue 11, "a caught
    /// main-thread panic can leave a thread's stamp cache at no session"): a
    /// stamp cell and a separate restart flag, the crash's end storing the
    /// stamp, bumping the generation, *then* raising the flag. A reader that
    /// refreshed in between cached "no session" under the new generation and
    /// kept it: loom finds that interleaving (this test passes when it does).
    #[test]
    fn the_old_two_flag_order_loses_a_restart_and_loom_finds_it() {
        use loom::sync::atomic::{AtomicBool, AtomicU64};
        use std::sync::atomic::Ordering::{AcqRel, Acquire, Release};

        struct Old {
            stamp: loom::sync::Mutex<Option<u64>>,
            restart: AtomicBool,
            generation: AtomicU64,
        }
        #[derive(Clone, Copy, PartialEq, Debug)]
        enum Seen {
            Id(u64),
            Nothing,
            Restart,
        }
        /// The old reader: cached per thread by generation.
        fn lookup(old: &Old, cache: &mut Option<(u64, Seen)>) -> Seen {
            let g = old.generation.load(Acquire);
            if let Some((cg, seen)) = *cache {
                if cg == g {
                    return seen;
                }
            }
            let seen = match *old.stamp.lock().unwrap() {
                Some(id) => Seen::Id(id),
                None if old.restart.load(Acquire) => return Seen::Restart,
                None => Seen::Nothing,
            };
            *cache = Some((g, seen));
            seen
        }
        let found = std::panic::catch_unwind(|| {
            loom::model(|| {
                let old = Arc::new(Old {
                    stamp: loom::sync::Mutex::new(Some(1)),
                    restart: AtomicBool::new(false),
                    generation: AtomicU64::new(1),
                });
                let reader = {
                    let old = Arc::clone(&old);
                    loom::thread::spawn(move || {
                        let mut cache = None;
                        lookup(&old, &mut cache);
                        // Later (the writer is done): what this thread stamps.
                        (cache, old)
                    })
                };
                // The old end_for_crash: the stamp (and its bump), then the flag.
                *old.stamp.lock().unwrap() = None;
                old.generation.fetch_add(1, AcqRel);
                old.restart.store(true, Release);
                let (mut cache, old) = reader.join().unwrap();
                assert_eq!(lookup(&old, &mut cache), Seen::Restart, "stale: {cache:?}");
            });
        });
        assert!(
            found.is_err(),
            "loom found the stale cache of the old order"
        );
    }
}
