//! The hot-path lookup: "which session id, if any, does telemetry starting now
//! carry?" — answered without a lock, an allocation, a clock read, or (in the
//! common case) an atomic read-modify-write.
//!
//! 1. Nothing while this thread runs an `on_session` callback, an observer, the
//!    clock or the id generator (the callbacks module's hook guard).
//! 2. A context that carries a session scope (a request, a joined session)
//!    decides; it is read with one map lookup in the context.
//! 3. Else the manager's app session, as the driver last *published* it
//!    ([`Stamp`]): one cell holding what telemetry gets — a session's id,
//!    nothing, or "the next activity starts a session" ([`Published::Restart`])
//!    — so a reader never sees a stamp and a restart flag from two different
//!    moments. Loading the cell costs a few atomic read-modify-writes, so each
//!    thread caches what it last read: the id as a `&'static str` (see the
//!    static id budget in `session`), tagged with the manager's unique number
//!    and its *generation*, which every publication bumps after storing the
//!    cell. The hot path is then one thread-local read and one plain atomic
//!    load. Ids past the budget load the cell each time.
//!
//! Ordering (checked with loom by `scripts/loom.sh`, the `loom_tests` in
//! `core::machine::core`; under loom the cell is a mutex, so loom checks the
//! generation protocol around it, not arc-swap's own ordering): the writer stores the
//! cell, then bumps the generation (release); a reader loads the generation
//! (acquire), then the cell. A reader that saw the new generation sees the new
//! cell; one that saw an older generation caches under that generation, which
//! no longer matches on its next lookup. A `Restart` is never cached.
//!
//! The key of the attribute tells who added it: two `session.id` strings made
//! at run time (two heap allocations, so their addresses differ whatever the
//! linker folds), one for app-session stamps and one for scoped stamps, so the
//! processors tell ours (and which kind) from one the application set, by
//! pointer.

use std::cell::Cell;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};

use opentelemetry::{Context, Key, KeyValue, StringValue};

use crate::core::callbacks::in_hook;
use crate::core::counts::Counts;
use crate::core::scope::Scope;
use crate::core::session::SessionState;
use crate::core::sync::{ArcCell, AtomicU64};
use crate::model::attr;
use crate::model::intern::FixedKv;
use crate::model::session::SessionId;

/// The two key strings, made once per process on the heap.
pub(crate) fn keys() -> &'static (&'static str, &'static str) {
    static KEYS: OnceLock<(&'static str, &'static str)> = OnceLock::new();
    KEYS.get_or_init(|| {
        let make = || &*Box::leak(attr::SESSION_ID.to_owned().into_boxed_str());
        (make(), make())
    })
}

/// The key text of app-session stamps.
#[inline]
pub(crate) fn app_key() -> &'static str {
    keys().0
}

/// The key text of scoped stamps.
#[inline]
pub(crate) fn scope_key() -> &'static str {
    keys().1
}

/// Who a stamped `session.id` came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// The application set it.
    Theirs,
    /// We stamped the manager's app session.
    App,
    /// We stamped from a context scope (a request or a joined session).
    Scoped,
}

/// The origin of a `session.id` key.
#[inline]
pub(crate) fn origin(key: &Key) -> Origin {
    let p = key.as_str().as_ptr();
    let (app, scoped) = keys();
    if std::ptr::eq(p, app.as_ptr()) {
        Origin::App
    } else if std::ptr::eq(p, scoped.as_ptr()) {
        Origin::Scoped
    } else {
        Origin::Theirs
    }
}

/// What new telemetry gets from the app session.
#[derive(Debug, Clone)]
pub(crate) enum Published {
    /// No session id.
    Nothing,
    /// No session yet: the next activity starts one (the caller asks the
    /// driver, which starts it or says why not).
    Restart,
    /// This session's id, and the values of its stamped attributes
    /// (`OTEL_SESSION_STAMP_ATTRIBUTES`) it has.
    Session(Arc<SessionState>, Stamped),
    /// No session after a fatal crash on thread number `.0`: only that thread,
    /// once it no longer unwinds, starts the next one (its lookups are not
    /// cached); every other thread gets nothing.
    AfterCrash(u64),
}

/// The stamped attributes a session has (`None`: none listed), in the order
/// they are listed: as kept parts when they can be (`model::intern::list`),
/// and as attributes.
pub(crate) type Stamped = Option<Arc<StampedSet>>;

/// See [`Stamped`].
#[derive(Debug)]
pub(crate) struct StampedSet {
    pub(crate) list: Vec<KeyValue>,
    pub(crate) fixed: Option<&'static [FixedKv]>,
}

/// This thread's number (ours: `std::thread::ThreadId` has no stable number).
pub(crate) fn thread_number() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    thread_local! {
        static NUMBER: u64 = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    NUMBER.try_with(|n| *n).unwrap_or(0)
}

/// The stamped attributes of what `p` publishes as a kept combination
/// (none to stamp: the empty one; `None`: not kept, ask the cell).
fn fixed_of(p: &Published) -> Option<&'static [FixedKv]> {
    match p {
        Published::Session(_, Some(set)) => set.fixed,
        _ => Some(&[]),
    }
}

/// What `p` means for this thread right now, and whether that may be cached.
fn resolve(p: &Published) -> (Cached, bool) {
    match p {
        Published::Session(s, _) => (
            match s.static_id {
                Some(id) => Cached::Static(id),
                None => Cached::Dynamic,
            },
            true,
        ),
        Published::Restart => (Cached::Restart, false),
        Published::Nothing => (Cached::Nothing, true),
        Published::AfterCrash(t) if *t == thread_number() => {
            if std::thread::panicking() {
                (Cached::Nothing, false)
            } else {
                (Cached::Restart, false)
            }
        }
        Published::AfterCrash(_) => (Cached::Nothing, true),
    }
}

impl Published {
    fn same(&self, other: &Published) -> bool {
        match (self, other) {
            (Published::Nothing, Published::Nothing) | (Published::Restart, Published::Restart) => {
                true
            }
            (Published::Session(a, x), Published::Session(b, y)) => {
                Arc::ptr_eq(a, b)
                    && match (x, y) {
                        (Some(x), Some(y)) => Arc::ptr_eq(x, y),
                        (None, None) => true,
                        _ => false,
                    }
            }
            (Published::AfterCrash(a), Published::AfterCrash(b)) => a == b,
            _ => false,
        }
    }
}

/// The app session as published to the hot path (one per manager).
pub(crate) struct Stamp {
    cell: ArcCell<Published>,
    generation: AtomicU64,
    /// The manager's unique number (thread caches are tagged with it).
    manager: u64,
    /// The two key strings (see [`keys`]), here so the hot paths load them
    /// without a call.
    pub(crate) app_key: &'static str,
    pub(crate) scope_key: &'static str,
    /// Session attributes are stamped too (`OTEL_SESSION_STAMP_ATTRIBUTES`
    /// lists some): the hot paths check this one flag, next to the keys.
    pub(crate) stamps_attributes: bool,
}

impl std::fmt::Debug for Stamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stamp")
            .field("published", &*self.cell.load_full())
            .finish_non_exhaustive()
    }
}

impl Stamp {
    pub(crate) fn new(manager: u64, stamps_attributes: bool) -> Self {
        let (app_key, scope_key) = *keys();
        Stamp {
            cell: ArcCell::new(Published::Nothing),
            generation: AtomicU64::new(1),
            manager,
            app_key,
            scope_key,
            stamps_attributes,
        }
    }

    /// This thread's cache entry, if it is current (the generation
    /// published last, this manager).
    #[inline]
    fn current_entry(&self) -> Option<Entry> {
        let generation = self.generation.load(Ordering::Acquire);
        CACHE
            .try_with(Cell::get)
            .ok()
            .filter(|e| e.generation == generation && e.manager == self.manager)
    }

    /// What this thread's cache says, if it is current and complete: a
    /// static id (or nothing) and the session's stamped attributes as a kept
    /// combination (`Err`: take the long way).
    #[inline]
    pub(crate) fn cached_with_stamped(
        &self,
    ) -> Result<(Option<&'static str>, &'static [FixedKv]), ()> {
        match self.current_entry() {
            Some(Entry {
                stamp: Cached::Static(id),
                fixed: Some(fixed),
                ..
            }) => Ok((Some(id), fixed)),
            Some(Entry {
                stamp: Cached::Nothing,
                fixed: Some(_),
                ..
            }) => Ok((None, &[])),
            _ => Err(()),
        }
    }

    /// The stamped attributes of the app session telemetry is stamped with,
    /// as a kept combination from this thread's cache when it is current
    /// (`None`: ask [`push_stamped_slow`](Self::push_stamped_slow)).
    #[inline]
    pub(crate) fn cached_stamped(&self) -> Option<&'static [FixedKv]> {
        self.current_entry()?.fixed
    }

    /// Hands each stamped attribute of the app session telemetry is stamped
    /// with to `push` (nothing without a session or stamped attributes).
    #[inline]
    pub(crate) fn push_stamped(&self, mut push: impl FnMut(KeyValue)) {
        match self.cached_stamped() {
            Some(list) => list.iter().for_each(|kv| push(kv.key_value())),
            None => self.push_stamped_slow(push),
        }
    }

    /// The long way of [`push_stamped`](Self::push_stamped): from the cell
    /// (and this thread's cache refreshed for the next time).
    #[cold]
    #[inline(never)]
    pub(crate) fn push_stamped_slow(&self, mut push: impl FnMut(KeyValue)) {
        let generation = self.generation.load(Ordering::Acquire);
        self.refresh(generation);
        let set = self.cell.with(|p| match p {
            Published::Session(_, set) => set.clone(),
            _ => None,
        });
        if let Some(set) = set {
            for kv in &set.list {
                push(kv.clone());
            }
        }
    }

    /// Publishes `p` (the driver, under its state lock): the cell, then the
    /// generation. `false` if nothing changed.
    pub(crate) fn publish(&self, p: Published) -> bool {
        if self.cell.with(|c| c.same(&p)) {
            return false;
        }
        self.cell.store(Arc::new(p));
        self.generation.fetch_add(1, Ordering::AcqRel);
        true
    }

    /// The session telemetry is stamped with now, if any.
    pub(crate) fn session(&self) -> Option<Arc<SessionState>> {
        self.cell.with(|c| match c {
            Published::Session(s, _) => Some(Arc::clone(s)),
            _ => None,
        })
    }

    /// `session.id` for new telemetry, or [`Lookup::Restart`]: the hot path.
    #[inline]
    pub(crate) fn lookup(&self) -> Lookup {
        match self.cached() {
            Ok(Some(id)) => Lookup::Id(StringValue::from(id)),
            Ok(None) => Lookup::Nothing,
            Err(generation) => self.lookup_slow(generation),
        }
    }

    /// What this thread's cache says, if it is current: a static id or
    /// nothing (`Err`: ask [`lookup`](Self::lookup), with this generation).
    #[inline]
    pub(crate) fn cached(&self) -> Result<Option<&'static str>, u64> {
        let generation = self.generation.load(Ordering::Acquire);
        if let Ok(entry) = CACHE.try_with(Cell::get) {
            if entry.generation == generation && entry.manager == self.manager {
                match entry.stamp {
                    Cached::Static(id) => return Ok(Some(id)),
                    Cached::Nothing => return Ok(None),
                    Cached::Dynamic | Cached::Restart => {}
                }
            }
        }
        Err(generation)
    }

    /// The lookup when this thread's cache has no answer to copy.
    #[cold]
    #[inline(never)]
    fn lookup_slow(&self, generation: u64) -> Lookup {
        let fresh = CACHE
            .try_with(Cell::get)
            .is_ok_and(|e| e.generation == generation && e.manager == self.manager);
        let cached = match CACHE.try_with(Cell::get) {
            Ok(entry) if fresh => entry.stamp,
            _ => self.refresh(generation),
        };
        match cached {
            Cached::Nothing => Lookup::Nothing,
            Cached::Static(id) => Lookup::Id(StringValue::from(id)),
            Cached::Dynamic => self.cell.with(|c| match c {
                Published::Session(s, _) => Lookup::Id(s.value.clone()),
                other => match resolve(other).0 {
                    Cached::Restart => Lookup::Restart,
                    _ => Lookup::Nothing,
                },
            }),
            Cached::Restart => Lookup::Restart,
        }
    }

    #[cold]
    fn refresh(&self, generation: u64) -> Cached {
        let ((stamp, cacheable), fixed) = self.cell.with(|p| (resolve(p), fixed_of(p)));
        if !cacheable {
            return stamp;
        }
        let _ = CACHE.try_with(|c| {
            c.set(Entry {
                generation,
                manager: self.manager,
                stamp,
                fixed,
            })
        });
        stamp
    }
}

/// The hot path's answer for the app session.
#[derive(Debug, Clone)]
pub(crate) enum Lookup {
    Nothing,
    Id(StringValue),
    /// A session is due to start: ask the driver.
    Restart,
}

#[derive(Clone, Copy)]
enum Cached {
    Nothing,
    Static(&'static str),
    /// The current session's id is reference-counted: load it each time.
    Dynamic,
    /// Never stored: a session is due to start (for this thread).
    Restart,
}

#[derive(Clone, Copy)]
struct Entry {
    generation: u64,
    manager: u64,
    stamp: Cached,
    /// The session's stamped attributes as a kept combination, when they
    /// are one (`None`: ask the cell).
    fixed: Option<&'static [FixedKv]>,
}

#[cfg(not(loom))]
thread_local! {
    static CACHE: Cell<Entry> = const {
        Cell::new(Entry { generation: 0, manager: 0, stamp: Cached::Nothing, fixed: None })
    };
}

#[cfg(loom)]
loom::thread_local! {
    static CACHE: Cell<Entry> =
        Cell::new(Entry { generation: 0, manager: 0, stamp: Cached::Nothing, fixed: None });
}

/// A context's own stamp: `Some(answer)` when `cx` carries a session scope
/// (a request, a joined session), `None` when the app session applies.
#[inline]
pub(crate) fn scoped(cx: &Context) -> Option<Option<(Key, StringValue)>> {
    Scope::of(cx).map(|scope| {
        scope
            .stamp
            .clone()
            .map(|v| (Key::from_static_str(scope_key()), v))
    })
}

/// Calls `f` with the session telemetry in `cx` is counted toward, if any (for
/// error counting; not the per-span path): the request's session in a request,
/// nothing in a joined-only context, else the stamped app session.
pub(crate) fn with_counted_session<R>(
    stamp: &Stamp,
    cx: &Context,
    f: impl FnOnce(&Counts, Option<&SessionId>) -> R,
) -> Option<R> {
    if in_hook() {
        return None;
    }
    if let Some(scope) = Scope::of(cx) {
        return scope.request().map(|r| f(&r.counts, r.made_id()));
    }
    stamp
        .session()
        .as_deref()
        .map(|s| f(&s.counts, Some(&s.id)))
}
