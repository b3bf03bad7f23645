//! Errors counted from spans (`OTEL_SESSION_ERROR_SOURCES` includes `spans`): a
//! span that ends with an Error status or carries an `exception` event counts
//! once as a handled error of the session it belongs to, unless an ERROR log
//! record inside it was counted already (one `tracing::error!` is a log record,
//! an Error status and an `exception` event at once), and once however many of
//! our wrappers see it (each wrapped pipeline gets its own copy of the span).
//!
//! The session a span belongs to: the app session whose id it carries (if it is
//! still the current one; an error of an ended session is dropped); inside a
//! request (the span ends in the request's context), the request's session. A
//! span of a joined caller's session, of a paused session or of none counts
//! toward nobody.

use opentelemetry::trace::SpanId;
use opentelemetry::{Context, Value};

use crate::core::machine::Shared;
use crate::core::scope::Scope;
use crate::core::stamp::Origin;

/// `true` if `name` is `exception` (a length check, then raw reads).
#[inline]
pub(crate) fn is_exception(name: &str) -> bool {
    if name.len() != 9 {
        return false;
    }
    let p = name.as_ptr();
    // SAFETY: `name` has 9 bytes; unaligned reads of 8 and 1 of them.
    let (head, tail) = unsafe {
        (
            std::ptr::read_unaligned(p.cast::<u64>()),
            std::ptr::read(p.add(8)),
        )
    };
    head == u64::from_ne_bytes(*b"exceptio") && tail == b'n'
}

/// Counts a failed span toward its session (see the module docs): `carried`
/// is the first `session.id` it carries (who stamped it, and the id).
#[cold]
#[inline(never)]
pub(crate) fn count_failed_span(
    shared: &Shared,
    span_id: SpanId,
    carried: Option<(Origin, Value)>,
) {
    match carried {
        Some((Origin::App | Origin::Theirs, id)) => {
            if let Some(s) = shared.core.stamp.session() {
                if *id.as_str() == *s.id.as_str() && s.counts.first_failure_of(span_id) {
                    s.counts.count_handled();
                }
            }
        }
        Some((Origin::Scoped, _)) | None => {
            Context::map_current(|cx| {
                if let Some(r) = Scope::request_of(cx) {
                    if r.counts.first_failure_of(span_id) {
                        r.counts.count_handled();
                    }
                }
            });
        }
    }
}
