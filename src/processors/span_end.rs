//! What the span wrapper does with a finished span, arranged so that the span
//! is handed on without a copy.
//!
//! `SpanProcessor::on_end` receives the span (~350 bytes) by value and the
//! wrapper hands it to the processor it wraps. rustc passes it on in place
//! only if, before that, nothing that may unwind is called while the span is
//! held, no reference into it is handed to code the compiler cannot see, and
//! it is handed on from exactly one place; otherwise it copies the span first:
//! ~64 instructions per span, a third of what the wrapper used to cost over the
//! constant-attribute floor (BENCHMARKS.md). So every step here takes plain
//! values or the raw parts of the span's vectors, and is `extern "C"`: a
//! function the calling crate knows never unwinds. Each catches its own
//! panics (so the abort that unwinding out of an `extern "C"` function means
//! cannot happen), except [`dedupe`], whose only calls drop attributes, which
//! cannot panic.
//!
//! A span recorded but not sampled (a session sampled out) is dropped by the
//! [`SampledOnly`] filter the wrapper puts in front of its processor when the
//! manager samples sessions (the SDK's batch processor would export it).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, SystemTime};

use opentelemetry::trace::{Event, SpanId};
use opentelemetry::{Context, Key, KeyValue};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanProcessor};
use opentelemetry_sdk::Resource;

use crate::core::machine::Shared;
use crate::core::stamp::origin;
use crate::processors::errors::{count_failed_span, is_exception};

/// `true` if `k` is `session.id`: a length check, then two raw reads (a
/// `str` comparison is both slower and, inlined into the wrapper, a reason for
/// rustc to copy the span).
#[inline]
pub(crate) fn is_session_id(k: &str) -> bool {
    if k.len() != 10 {
        return false;
    }
    let p = k.as_ptr();
    // SAFETY: `k` has 10 bytes; unaligned reads of the first 8 and last 2.
    let (head, tail) = unsafe {
        (
            std::ptr::read_unaligned(p.cast::<u64>()),
            std::ptr::read_unaligned(p.add(8).cast::<u16>()),
        )
    };
    head == u64::from_ne_bytes(*b"session.") && tail == u16::from_ne_bytes(*b"id")
}

/// What one pass over a finished span's attributes found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(transparent)]
pub(crate) struct Found(u32);

impl Found {
    /// More than one `session.id`: one must go.
    #[inline]
    pub(crate) fn duplicate(self) -> bool {
        self.0 & 3 > 1
    }

    /// We stamped the manager's app session on it: that session's activity.
    #[inline]
    pub(crate) fn app(self) -> bool {
        self.0 & 4 != 0
    }
}

/// A vector's pointer and length, taken by value (no reference into the span).
#[derive(Debug)]
#[repr(C)]
pub(crate) struct RawParts<T> {
    ptr: *const T,
    len: usize,
}

impl<T> Clone for RawParts<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for RawParts<T> {}

impl<T> RawParts<T> {
    #[inline]
    pub(crate) fn of(v: &[T]) -> Self {
        RawParts {
            ptr: v.as_ptr(),
            len: v.len(),
        }
    }

    /// # Safety
    /// The vector it was taken from is alive and unchanged.
    #[inline]
    unsafe fn slice<'a>(&self) -> &'a [T] {
        // SAFETY: per the contract.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

/// The attributes' `session.id`s (how many, up to 2, and whether one is our
/// app-session stamp) and, when it is (and timeouts or persistence make it
/// worth noting), the span's end as that session's activity: one call for
/// the common case.
#[inline(never)]
pub(crate) extern "C" fn inspect(
    shared: &Shared,
    attributes: RawParts<KeyValue>,
    end: &SystemTime,
) -> Found {
    let found = scan(attributes, shared.core.stamp.app_key.as_ptr());
    if found.app() && shared.timed {
        activity(shared, end);
    }
    found
}

/// The attributes' `session.id`s: how many (up to 2) and whether one is the
/// app-session stamp (its key string is `app`).
#[inline]
pub(crate) fn scan(attributes: RawParts<KeyValue>, app: *const u8) -> Found {
    // SAFETY: the raw parts of a live `Vec<KeyValue>` the caller holds.
    let attributes = unsafe { attributes.slice() };
    let (mut count, mut ours) = (0u32, false);
    for kv in attributes {
        let k = kv.key.as_str();
        // Most keys differ in length; ours is recognised by its address.
        if k.len() != 10 {
            continue;
        }
        if std::ptr::eq(k.as_ptr(), app) {
            ours = true;
        } else if !is_session_id(k) {
            continue;
        }
        count = (count + 1).min(2);
    }
    Found(count | u32::from(ours) << 2)
}

/// Activity at `at` (a span's end).
#[inline]
fn activity(shared: &Shared, at: &SystemTime) {
    let at = *at;
    // With the system clock a thread notes at most once per millisecond (the
    // span's own time compared: no clock read).
    if shared.system_clock() && !crate::core::session::due_maybe(shared, at) {
        return;
    }
    contain(|| shared.note_span_activity_slow(at));
}

/// A span that may have failed (spans count as an error source): `error` is
/// its Error status, `events` (raw parts) may hold an `exception` event; it is
/// counted toward the session it carries (see `errors`).
#[inline(never)]
pub(crate) extern "C" fn failed(
    shared: &Shared,
    error: bool,
    events: RawParts<Event>,
    attributes: RawParts<KeyValue>,
    span_id: &SpanId,
) {
    contain(|| {
        // SAFETY: the raw parts of the span's live vectors.
        let (events, attributes) = unsafe { (events.slice(), attributes.slice()) };
        if !error && !events.iter().any(|e| is_exception(&e.name)) {
            return;
        }
        let carried = attributes
            .iter()
            .find(|kv| is_session_id(kv.key.as_str()))
            .map(|kv| (origin(&kv.key), kv.value.clone()));
        count_failed_span(shared, *span_id, carried);
    });
}

/// Leaves exactly one `session.id` among the first `n` attributes at `p`: the
/// application's if it set one (it wins), else the first we added (two
/// wrapped pipelines each add one; `app` and `scope` are our key strings).
/// The stamped session attributes we added (the `stamped_n` keys at
/// `stamped`, told by address) follow the id: each kept once, or none when
/// the application's id won (they describe our session, not its).
/// Kept attributes move down in place, removed ones are dropped; returns how
/// many remain (the caller sets the vector's length to it).
///
/// # Safety
/// `p` and `n` are the pointer and length of a live `Vec<KeyValue>`, whose
/// length the caller sets to the result before using it again; `stamped`
/// and `stamped_n` those of a live slice of at most 32 keys.
#[inline(never)]
pub(crate) unsafe extern "C" fn dedupe(
    p: *mut KeyValue,
    n: usize,
    app: *const u8,
    scope: *const u8,
    stamped: *const Key,
    stamped_n: usize,
) -> usize {
    let ours = |kv: &KeyValue| {
        let k = kv.key.as_str().as_ptr();
        std::ptr::eq(k, app) || std::ptr::eq(k, scope)
    };
    // SAFETY: (for all of this) `p`, `n`, `stamped` and `stamped_n` per the
    // contract; each element is either moved down once or dropped once, and
    // read no more afterwards.
    unsafe {
        let stamped = std::slice::from_raw_parts(stamped, stamped_n.min(32));
        let stamped_at = |kv: &KeyValue| {
            let k = kv.key.as_str().as_ptr();
            stamped
                .iter()
                .position(|s| std::ptr::eq(s.as_str().as_ptr(), k))
        };
        let all = std::slice::from_raw_parts(p, n);
        let theirs = all
            .iter()
            .any(|kv| is_session_id(kv.key.as_str()) && !ours(kv));
        let mut keep_one_of_ours = !theirs;
        let mut seen = 0u32;
        let mut kept = 0;
        for read in 0..n {
            let kv = p.add(read);
            let keep = if ours(&*kv) {
                std::mem::replace(&mut keep_one_of_ours, false)
            } else if let Some(i) = stamped_at(&*kv) {
                let first = seen & (1 << i) == 0;
                seen |= 1 << i;
                !theirs && first
            } else {
                true
            };
            if keep {
                if read != kept {
                    std::ptr::copy_nonoverlapping(kv, p.add(kept), 1);
                }
                kept += 1;
            } else {
                std::ptr::drop_in_place(kv);
            }
        }
        kept
    }
}

/// Runs `f`, keeping a panic in it from unwinding out of an `extern "C"`
/// function (our own bookkeeping's panic is not the span's business; the
/// payload is not dropped here, which could unwind again).
#[inline]
fn contain(f: impl FnOnce()) {
    if let Err(payload) = catch_unwind(AssertUnwindSafe(f)) {
        std::mem::forget(payload);
    }
}

/// Hands on only sampled spans: the wrapper's inner processor when the manager
/// samples sessions (spans of a session sampled out are recorded, for their
/// activity and errors, and must not be exported; the SDK's batch processor
/// does not check).
#[derive(Debug)]
pub(crate) struct SampledOnly<P>(pub(crate) P);

impl<P: SpanProcessor> SpanProcessor for SampledOnly<P> {
    #[inline]
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.0.on_start(span, cx);
    }

    #[inline]
    fn on_end(&self, span: SpanData) {
        if span.span_context.is_sampled() {
            self.0.on_end(span);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.0.set_resource(resource);
    }
}
