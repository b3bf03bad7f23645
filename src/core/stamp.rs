//! The hot-path lookup: "which session id, if any, does telemetry starting now
//! carry?" — answered without a lock, an allocation, a clock read, or (in the
//! common case) an atomic read-modify-write.
//!
//! 1. Nothing while this thread runs an `on_session` callback or an observer.
//! 2. A context that carries a session scope (a request, a joined session)
//!    decides; it is read with one map lookup in the context.
//! 3. Else the manager's app session: each manager keeps the session to stamp in
//!    an [`ArcSwapOption`] (set only while a reported session is current and not
//!    paused). Loading it costs a few atomic read-modify-writes, so each thread
//!    caches the *id* it last read — a `&'static str` (see the static id budget
//!    in `state`), which is `Copy` — tagged with a process-wide *generation* that
//!    every app-session change bumps. The hot path is then one thread-local read
//!    and one plain atomic load. Ids past the budget take the `ArcSwapOption` path.
//!    Request sessions never bump the generation.
//!
//! When the app session expired and the next activity is to start a new one
//! (app mode), the lookup starts it (one winner among racing threads; the others
//! wait for it) and stamps the new id.
//!
//! Ordering: a writer stores the new stamp, then bumps the generation; a reader
//! that still sees the old generation read it before the bump, so the session it
//! stamps was current when the span started.
//!
//! The key of the attribute tells who added it: two private copies of the
//! `session.id` text, one for app-session stamps and one for scoped stamps, each
//! with its own address, so the processors tell ours (and which kind) from one
//! the application set, by pointer.
//!
//! [`ArcSwapOption`]: arc_swap::ArcSwapOption

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

use opentelemetry::{Context, Key, StringValue};

use crate::core::callbacks::in_hook;
use crate::core::machine::Shared;
use crate::core::scope::Scope;
use crate::core::state::SessionState;

static GENERATION: AtomicU64 = AtomicU64::new(1);

static APP_KEY_BYTES: [u8; 10] = *b"session.id";
static APP_KEY: &str = match std::str::from_utf8(&APP_KEY_BYTES) {
    Ok(s) => s,
    Err(_) => panic!("session.id is ASCII"),
};
static SCOPE_KEY_BYTES: [u8; 10] = *b"session.id";
static SCOPE_KEY: &str = match std::str::from_utf8(&SCOPE_KEY_BYTES) {
    Ok(s) => s,
    Err(_) => panic!("session.id is ASCII"),
};

/// The key text of app-session stamps.
pub(crate) fn app_key() -> &'static str {
    APP_KEY
}

/// The key text of scoped stamps.
pub(crate) fn scope_key() -> &'static str {
    SCOPE_KEY
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
    if std::ptr::eq(p, APP_KEY.as_ptr()) {
        Origin::App
    } else if std::ptr::eq(p, SCOPE_KEY.as_ptr()) {
        Origin::Scoped
    } else {
        Origin::Theirs
    }
}

/// `true` if `key` is a `session.id` we added.
#[inline]
pub(crate) fn is_ours(key: &Key) -> bool {
    origin(key) != Origin::Theirs
}

/// Invalidates every thread's cache. Called after each app-stamp change and when
/// a manager is created (a new manager may reuse a dropped one's address).
pub(crate) fn bump() {
    GENERATION.fetch_add(1, Ordering::AcqRel);
}

#[derive(Clone, Copy)]
enum Cached {
    Nothing,
    Static(&'static str),
    /// The current session's id is reference-counted: load it each time.
    Dynamic,
    /// No session, and the next activity starts one: always the slow path.
    Restart,
}

#[derive(Clone, Copy)]
struct Entry {
    generation: u64,
    manager: *const Shared,
    stamp: Cached,
}

thread_local! {
    static CACHE: Cell<Entry> = const {
        Cell::new(Entry { generation: 0, manager: std::ptr::null(), stamp: Cached::Nothing })
    };
}

/// The `session.id` attribute (key, value) for telemetry starting in `cx`.
#[inline]
pub(crate) fn stamp(shared: &Shared, cx: &Context) -> Option<(Key, StringValue)> {
    if in_hook() {
        return None;
    }
    if let Some(scope) = Scope::of(cx) {
        return scope
            .stamp
            .clone()
            .map(|v| (Key::from_static_str(SCOPE_KEY), v));
    }
    app_stamp(shared).map(|v| (Key::from_static_str(APP_KEY), v))
}

/// The app session's id for new telemetry, starting a session if one is due.
#[inline]
pub(crate) fn app_stamp(shared: &Shared) -> Option<StringValue> {
    let generation = GENERATION.load(Ordering::Acquire);
    let entry = CACHE.try_with(Cell::get).ok()?;
    let stamp = if entry.generation == generation && std::ptr::eq(entry.manager, shared) {
        entry.stamp
    } else {
        refresh(shared, generation)
    };
    match stamp {
        Cached::Nothing => None,
        Cached::Static(id) => Some(StringValue::from(id)),
        Cached::Dynamic => shared.stamp.load().as_deref().map(|s| s.value.clone()),
        Cached::Restart => shared.start_for_activity(),
    }
}

#[cold]
fn refresh(shared: &Shared, generation: u64) -> Cached {
    let of = |s: &SessionState| match s.static_id {
        Some(id) => Cached::Static(id),
        None => Cached::Dynamic,
    };
    let stamp = match &*shared.stamp.load() {
        Some(s) => of(s),
        None if shared.restart_pending() => Cached::Restart,
        // A start commits the stamp, then clears the restart flag: a reader that
        // saw no stamp, then no restart, looks at the stamp once more.
        None => shared.stamp.load().as_deref().map_or(Cached::Nothing, of),
    };
    if !matches!(stamp, Cached::Restart) {
        let _ = CACHE.try_with(|c| {
            c.set(Entry {
                generation,
                manager: shared,
                stamp,
            })
        });
    }
    stamp
}

/// Calls `f` with the session telemetry in `cx` is counted toward, if any (for
/// error counting; not the per-span path): the request's session in a request,
/// nothing in a joined-only context, else the manager's stamped app session.
pub(crate) fn with_counted_session<R>(
    shared: &Shared,
    cx: &Context,
    f: impl FnOnce(&SessionState) -> R,
) -> Option<R> {
    if in_hook() {
        return None;
    }
    if let Some(scope) = Scope::of(cx) {
        return scope.request.as_deref().map(f);
    }
    shared.stamp.load().as_deref().map(f)
}
