//! The hot-path lookup: "which session id, if any, does telemetry starting now
//! carry?" — answered without a lock, an allocation, or (in the common case) an
//! atomic read-modify-write.
//!
//! Each manager keeps the session to stamp in an [`ArcSwapOption`] (set only while a
//! reported session is current and not paused). Loading it costs a few atomic
//! read-modify-writes, so each thread caches the *id* it last read — a
//! `&'static str` (see the manager's static id budget), which is `Copy` — tagged
//! with a process-wide *generation* that every stamp change and every new manager
//! bumps. The hot path is then one thread-local read and one plain atomic load.
//! Ids that are not static (past the budget) take the `ArcSwapOption` path.
//!
//! Ordering: a writer stores the new stamp, then bumps the generation; a reader
//! that still sees the old generation read it before the bump, so the session it
//! stamps was current when the span started. Transition times are read after the
//! bump (see the manager).
//!
//! [`ArcSwapOption`]: arc_swap::ArcSwapOption

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

use opentelemetry::{Context, Key, StringValue};

use crate::core::callbacks::in_hook;
use crate::core::context::ContextSession;
use crate::core::manager::{SessionState, Shared};

static GENERATION: AtomicU64 = AtomicU64::new(1);

/// Our own copy of the `session.id` key text: a `static`, so its address is unique
/// and tells the attribute we added apart from one the application set.
static OUR_KEY_BYTES: [u8; 10] = *b"session.id";
static OUR_KEY: &str = match std::str::from_utf8(&OUR_KEY_BYTES) {
    Ok(s) => s,
    Err(_) => panic!("session.id is ASCII"),
};

/// The `session.id` key as we add it.
#[inline]
pub(crate) fn our_key() -> Key {
    Key::from_static_str(OUR_KEY)
}

/// `true` if `key` is a `session.id` we added (not one the application set).
#[inline]
pub(crate) fn is_ours(key: &Key) -> bool {
    std::ptr::eq(key.as_str().as_ptr(), OUR_KEY.as_ptr())
}

/// Invalidates every thread's cache. Called after each stamp change and when a
/// manager is created (a new manager may reuse a dropped one's address).
pub(crate) fn bump() {
    GENERATION.fetch_add(1, Ordering::AcqRel);
}

#[derive(Clone, Copy)]
enum Cached {
    Nothing,
    Static(&'static str),
    /// The current session's id is reference-counted: load it each time.
    Dynamic,
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

/// The manager whose session telemetry in `cx` belongs to: the context's wins.
#[inline]
fn manager_for<'a>(fallback: &'a Shared, cx: &'a Context) -> &'a Shared {
    match cx.get::<ContextSession>() {
        Some(ContextSession(m)) => &m.shared,
        None => fallback,
    }
}

/// The `session.id` value for telemetry starting in `cx`, if any. Nothing while a
/// callback or an observer runs on this thread.
#[inline]
pub(crate) fn stamp_value(fallback: &Shared, cx: &Context) -> Option<StringValue> {
    if in_hook() {
        return None;
    }
    let shared = manager_for(fallback, cx);
    let generation = GENERATION.load(Ordering::Acquire);
    let entry = CACHE.try_with(Cell::get).ok()?;
    let stamp = if entry.generation == generation && std::ptr::eq(entry.manager, shared) {
        entry.stamp
    } else {
        let stamp = match &*shared.stamp.load() {
            None => Cached::Nothing,
            Some(s) => match s.static_id {
                Some(id) => Cached::Static(id),
                None => Cached::Dynamic,
            },
        };
        let _ = CACHE.try_with(|c| {
            c.set(Entry {
                generation,
                manager: shared,
                stamp,
            })
        });
        stamp
    };
    match stamp {
        Cached::Nothing => None,
        Cached::Static(id) => Some(StringValue::from(id)),
        Cached::Dynamic => shared
            .stamp
            .load()
            .as_deref()
            .map(|s| StringValue::from(s.id.shared())),
    }
}

/// Calls `f` with the session that telemetry in `cx` is attributed to, if any
/// (for error counting; not the per-span path).
pub(crate) fn with_session<R>(
    fallback: &Shared,
    cx: &Context,
    f: impl FnOnce(&SessionState) -> R,
) -> Option<R> {
    if in_hook() {
        return None;
    }
    manager_for(fallback, cx).stamp.load().as_deref().map(f)
}
