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

use opentelemetry::trace::Status;
use opentelemetry::Context;
use opentelemetry_sdk::trace::SpanData;

use crate::core::machine::Shared;
use crate::core::scope::Scope;
use crate::core::stamp::{origin, Origin};
use crate::model::attr;

/// `true` if the span failed: an Error status or an `exception` event.
#[inline]
pub(crate) fn failed(span: &SpanData) -> bool {
    matches!(span.status, Status::Error { .. }) || span.events.iter().any(|e| e.name == "exception")
}

/// Counts a failed span toward its session (see the module docs).
#[cold]
#[inline(never)]
pub(crate) fn count_failed_span(shared: &Shared, span: &SpanData) {
    let span_id = span.span_context.span_id();
    let carried = span
        .attributes
        .iter()
        .find(|kv| kv.key.as_str() == attr::SESSION_ID)
        .map(|kv| (origin(&kv.key), &kv.value));
    match carried {
        Some((Origin::App | Origin::Theirs, id)) => {
            if let Some(s) = shared.core.stamp.session() {
                if *id.as_str() == *s.id.as_str() && s.first_failure_of(span_id) {
                    s.count_handled();
                }
            }
        }
        Some((Origin::Scoped, _)) | None => {
            let request = Context::map_current(|cx| Scope::of(cx).and_then(|s| s.request.clone()));
            if let Some(r) = request {
                if r.first_failure_of(span_id) {
                    r.count_handled();
                }
            }
        }
    }
}
