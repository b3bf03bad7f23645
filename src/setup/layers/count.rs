//! Errors counted when the signal that would carry them is not exported, so
//! that counting never depends on which signals are exported.
//!
//! With `OTEL_LOGS_EXPORTER=none` (the usual setting for trace-only backends:
//! Jaeger, Tempo, Phoenix) there is no log pipeline, so no log processor sees
//! a `tracing::error!`; with `OTEL_TRACES_EXPORTER=none` no span processor sees
//! a span's Error status. [`Guard::log_layer`](crate::Guard::log_layer) and
//! [`Guard::tracing_layer`](crate::Guard::tracing_layer) then count those
//! errors themselves, exactly as the missing pipeline would have:
//!
//! | error sources | logs exported | traces exported | counted by |
//! |---|---|---|---|
//! | `logs` | no | — | `log_layer`: each ERROR event |
//! | `logs,spans` | no | yes | `log_layer`: each ERROR event, its span noted (the span's Error status does not count again) |
//! | `logs,spans` | no | no | `log_layer`: each ERROR event |
//! | `spans` | — | no | `tracing_layer`: the first ERROR event of each span |
//!
//! Otherwise the processors count, as always.

use opentelemetry::trace::{SpanId, TraceContextExt as _};
use std::sync::OnceLock;

use tracing::dispatcher::WeakDispatch;
use tracing::{Dispatch, Event, Level, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

use crate::core::manager::SessionManager;
use crate::processors::log::count_unexported_error;

/// What a counting layer counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Counting {
    /// Every ERROR event (the logs source, logs not exported); `note_spans`:
    /// the span it is in is exported and would count its Error status too.
    Events { note_spans: bool },
    /// The first ERROR event of each span (the spans source alone, traces not
    /// exported).
    FailedSpans,
}

impl Counting {
    /// What the log layer counts (logs not exported), if anything.
    pub(crate) fn for_log_layer(sessions: &SessionManager, traces_exported: bool) -> Option<Self> {
        let sources = sessions.shared.tracking.errors;
        sources.logs.then_some(Counting::Events {
            note_spans: sources.spans && traces_exported,
        })
    }

    /// What the span layer counts (traces not exported), if anything.
    pub(crate) fn for_span_layer(sessions: &SessionManager) -> Option<Self> {
        let sources = sessions.shared.tracking.errors;
        (sources.spans && !sources.logs).then_some(Counting::FailedSpans)
    }
}

/// Marks a `tracing` span whose failure was counted.
struct FailureCounted;

/// The counting layer (see the module docs).
pub(crate) struct ErrorCounter {
    pub(crate) sessions: SessionManager,
    pub(crate) counting: Counting,
    /// The subscriber this layer is part of, to find the OpenTelemetry span
    /// of an event's `tracing` span: inside `on_event` the thread's default
    /// dispatcher is not reachable (`tracing::dispatcher::get_default` hands
    /// out a no-op one while an event is being dispatched).
    pub(crate) dispatch: OnceLock<WeakDispatch>,
}

impl<S> Layer<S> for ErrorCounter
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_register_dispatch(&self, subscriber: &Dispatch) {
        let _ = self.dispatch.set(subscriber.downgrade());
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        if *event.metadata().level() != Level::ERROR
            || opentelemetry::Context::is_current_telemetry_suppressed()
        {
            return;
        }
        match self.counting {
            Counting::Events { note_spans } => {
                let span = if note_spans {
                    ctx.event_span(event)
                        .and_then(|s| self.otel_span_id(&s.id()))
                } else {
                    None
                };
                count_unexported_error(&self.sessions, span);
            }
            Counting::FailedSpans => {
                let Some(span) = ctx.event_span(event) else {
                    return;
                };
                if span.extensions().get::<FailureCounted>().is_some() {
                    return;
                }
                span.extensions_mut().insert(FailureCounted);
                count_unexported_error(&self.sessions, None);
            }
        }
    }
}

impl ErrorCounter {
    /// The OpenTelemetry span id of a `tracing` span the guard's span layer
    /// made (none without one in this subscriber).
    fn otel_span_id(&self, id: &tracing::span::Id) -> Option<SpanId> {
        let dispatch = self.dispatch.get()?.upgrade()?;
        tracing_opentelemetry::get_otel_context(id, &dispatch)
            .map(|cx| cx.span().span_context().span_id())
            .filter(|s| *s != SpanId::INVALID)
    }
}
