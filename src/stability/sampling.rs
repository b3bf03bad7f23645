//! Session sampling (`OTEL_SESSION_SAMPLE_RATIO`): keep all of a session's
//! telemetry or none of it.
//!
//! A session is kept iff the FNV-1a-64 hash of its `session.id` bytes is below
//! `ratio × 2⁶⁴` — the same decision in every process and every service that
//! sees the id, so a session is never split. It is decided
//! - for **spans** by [`SessionSampler`]: every span that carries a session is
//!   decided by that session (children too, whatever your sampler is), and it
//!   composes with your sampler (or `OTEL_TRACES_SAMPLER`): a span is kept only
//!   if both keep it. Spans of a session sampled out are still *recorded* (not
//!   exported), so they still count as the session's activity and, with span
//!   error sources, its errors;
//! - for **log records** by the wrapping log processor (the standalone enricher
//!   cannot drop a record the SDK hands to the processors beside it).
//!
//! Never sampled out: telemetry outside a session, the session lifecycle spans
//! and log events, and the stability metrics — crash-free rates stay whole.

use opentelemetry::trace::{Link, SpanKind, TraceContextExt as _, TraceId};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{SamplingDecision, SamplingResult, ShouldSample};

use crate::core::manager::SessionManager;
use crate::model::id::keeps;

/// A sampler that decides every span carrying a session by that session (a
/// session sampled out: recorded, not exported; see the module docs), and asks
/// `inner` about the rest and about the spans of kept sessions. Built with
/// [`SessionManager::sampler`].
#[derive(Debug, Clone)]
pub struct SessionSampler {
    manager: SessionManager,
    threshold: Option<u64>,
    inner: Box<dyn ShouldSample>,
}

impl SessionManager {
    /// Session sampling at this manager's ratio
    /// ([`SessionManagerBuilder::with_sample_ratio`](crate::SessionManagerBuilder::with_sample_ratio)),
    /// composed with `inner` (for example `Sampler::ParentBased(..)`, or what
    /// `OTEL_TRACES_SAMPLER` says: `opentelemetry_sdk::trace::Config::default().sampler`).
    pub fn sampler(&self, inner: impl Into<Box<dyn ShouldSample>>) -> SessionSampler {
        SessionSampler {
            threshold: self.shared.sample_threshold,
            manager: self.clone(),
            inner: inner.into(),
        }
    }
}

impl SessionManager {
    /// `true` if this manager samples sessions (a ratio below 1.0).
    pub fn samples_sessions(&self) -> bool {
        self.shared.sample_threshold.is_some()
    }
}

impl ShouldSample for SessionSampler {
    fn should_sample(
        &self,
        parent_context: Option<&Context>,
        trace_id: TraceId,
        name: &str,
        span_kind: &SpanKind,
        attributes: &[KeyValue],
        links: &[Link],
    ) -> SamplingResult {
        // Every span of a session is decided by its session, so a session is
        // never split whatever `inner` is (ParentBased or not); spans of a
        // session sampled out are recorded, not exported, so their activity and
        // errors still count.
        if self.threshold.is_some() {
            let dropped = match parent_context {
                Some(cx) => session_dropped(&self.manager, self.threshold, cx),
                None => {
                    Context::map_current(|cx| session_dropped(&self.manager, self.threshold, cx))
                }
            };
            if dropped {
                return SamplingResult {
                    decision: SamplingDecision::RecordOnly,
                    attributes: Vec::new(),
                    trace_state: parent_context
                        .filter(|cx| cx.has_active_span())
                        .map(|cx| cx.span().span_context().trace_state().clone())
                        .unwrap_or_default(),
                };
            }
        }
        self.inner
            .should_sample(parent_context, trace_id, name, span_kind, attributes, links)
    }
}

/// `true` if telemetry starting in `cx` belongs to a session sampled out.
fn session_dropped(manager: &SessionManager, threshold: Option<u64>, cx: &Context) -> bool {
    manager
        .shared
        .stamp(cx)
        .is_some_and(|(_, id)| !keeps(threshold, id.as_str()))
}
