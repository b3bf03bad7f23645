//! [`SessionSpanLayer`]: `tracing-opentelemetry`'s layer on our tracer, with two
//! changes.
//!
//! - **Events are not span events by default.** The log bridge already exports
//!   each event as a log record (with the span's trace context); recording it on
//!   the span too exports it twice. `tracing-opentelemetry` 0.34 has
//!   `with_counting_event_filter` for this, but that layer prints two lines on
//!   stdout for every event (a leftover `println!`), so events are simply not
//!   forwarded unless span events are asked for. An `ERROR` event still sets its
//!   span's status to Error (what `tracing-opentelemetry` does by default);
//!   its `exception` span event is left out with the rest.
//! - **Two OpenTelemetry layers.** Two `OpenTelemetryLayer`s in one subscriber
//!   panic at the first span both see (each inserts the same span extension).
//!   At its first span this layer asks the subscriber, the way
//!   `tracing_opentelemetry::get_otel_context` does, which OpenTelemetry layer
//!   answers: one outside it answers first; one inside it answers after it with
//!   the span it already made. Either way it turns itself off before touching the
//!   span, warns once, and the other layer carries on.

use std::any::TypeId;
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::OnceLock;

use opentelemetry::trace::{Status, TraceContextExt as _};
use tracing::dispatcher::WeakDispatch;
use tracing::level_filters::LevelFilter;
use tracing::span;
use tracing::subscriber::Interest;
use tracing::{Dispatch, Event, Metadata, Subscriber};
use tracing_opentelemetry::OpenTelemetryLayer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

const UNKNOWN: u8 = 0;
const ACTIVE: u8 = 1;
const OFF: u8 = 2;

thread_local! {
    /// The layer probing on this thread (its address), and whether the probe
    /// reached it.
    static PROBE: Cell<(usize, bool)> = const { Cell::new((0, false)) };
}

static WARNED: AtomicBool = AtomicBool::new(false);

/// The guard's span layer (see the module docs).
pub(crate) struct SessionSpanLayer<S, T> {
    inner: OpenTelemetryLayer<S, T>,
    span_events: bool,
    state: AtomicU8,
    dispatch: OnceLock<WeakDispatch>,
}

impl<S, T> SessionSpanLayer<S, T>
where
    S: Subscriber + for<'span> LookupSpan<'span>,
    T: opentelemetry::trace::Tracer + 'static,
    T::Span: Send + Sync,
{
    pub(crate) fn new(inner: OpenTelemetryLayer<S, T>, span_events: bool) -> Self {
        SessionSpanLayer {
            inner,
            span_events,
            state: AtomicU8::new(UNKNOWN),
            dispatch: OnceLock::new(),
        }
    }

    fn active(&self) -> bool {
        self.state.load(Ordering::Acquire) == ACTIVE
    }

    fn addr(&self) -> usize {
        self as *const Self as usize
    }

    /// Decides, at the first span, whether this is the only OpenTelemetry layer.
    fn decide(&self, id: &span::Id) -> bool {
        match self.state.load(Ordering::Acquire) {
            ACTIVE => return true,
            OFF => return false,
            _ => {}
        }
        let Some(dispatch) = self.dispatch.get().and_then(WeakDispatch::upgrade) else {
            // Not registered as a dispatcher yet (no one to ask): carry on.
            self.state.store(ACTIVE, Ordering::Release);
            return true;
        };
        PROBE.with(|p| p.set((self.addr(), false)));
        let found = tracing_opentelemetry::get_otel_context(id, &dispatch);
        let (_, reached) = PROBE.with(|p| p.replace((0, false)));
        // Not reached: a layer outside this one answered. Reached and a context
        // came back: a layer inside it had already made the span.
        let other = !reached || found.is_some();
        let state = if other { OFF } else { ACTIVE };
        let _ = self
            .state
            .compare_exchange(UNKNOWN, state, Ordering::AcqRel, Ordering::Acquire);
        if self.state.load(Ordering::Acquire) == OFF {
            crate::warn::once(
                &WARNED,
                format_args!(
                    "two OpenTelemetry tracing layers are in one subscriber (tracing-opentelemetry \
                     panics when both see a span): the guard's tracing_layer() turned itself off, \
                     so spans go through the other layer without session.id. Keep one: with \
                     init-tracing-opentelemetry, turn its OpenTelemetry off \
                     (TracingConfig::...with_otel(false)) and add the guard's layers in \
                     init_subscriber_ext (see the otel-session README, \"Composition\")"
                ),
            );
            return false;
        }
        true
    }

    /// Sets the span of an `ERROR` event to status Error.
    fn mark_error(&self, event: &Event<'_>, ctx: &Context<'_, S>) {
        let id = event.parent().cloned().or_else(|| {
            event
                .is_contextual()
                .then(|| ctx.lookup_current().map(|s| s.id()))
                .flatten()
        });
        let Some(id) = id else { return };
        let Some(dispatch) = self.dispatch.get().and_then(WeakDispatch::upgrade) else {
            return;
        };
        if let Some(cx) = tracing_opentelemetry::get_otel_context(&id, &dispatch) {
            cx.span().set_status(Status::error(""));
        }
    }
}

impl<S, T> Layer<S> for SessionSpanLayer<S, T>
where
    S: Subscriber + for<'span> LookupSpan<'span>,
    T: opentelemetry::trace::Tracer + 'static,
    T::Span: Send + Sync,
{
    fn on_register_dispatch(&self, subscriber: &Dispatch) {
        let _ = self.dispatch.set(subscriber.downgrade());
        self.inner.on_register_dispatch(subscriber);
    }

    fn on_layer(&mut self, subscriber: &mut S) {
        self.inner.on_layer(subscriber);
    }

    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        self.inner.register_callsite(metadata)
    }

    fn enabled(&self, metadata: &Metadata<'_>, ctx: Context<'_, S>) -> bool {
        self.inner.enabled(metadata, ctx)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        self.inner.max_level_hint()
    }

    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, S>) {
        if self.decide(id) {
            self.inner.on_new_span(attrs, id, ctx);
        }
    }

    fn on_record(&self, span: &span::Id, values: &span::Record<'_>, ctx: Context<'_, S>) {
        if self.active() {
            self.inner.on_record(span, values, ctx);
        }
    }

    fn on_follows_from(&self, span: &span::Id, follows: &span::Id, ctx: Context<'_, S>) {
        if self.active() {
            self.inner.on_follows_from(span, follows, ctx);
        }
    }

    fn event_enabled(&self, event: &Event<'_>, ctx: Context<'_, S>) -> bool {
        self.inner.event_enabled(event, ctx)
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        if !self.active() {
            return;
        }
        if self.span_events {
            self.inner.on_event(event, ctx);
        } else if *event.metadata().level() == tracing::Level::ERROR {
            self.mark_error(event, &ctx);
        }
    }

    fn on_enter(&self, id: &span::Id, ctx: Context<'_, S>) {
        if self.active() {
            self.inner.on_enter(id, ctx);
        }
    }

    fn on_exit(&self, id: &span::Id, ctx: Context<'_, S>) {
        if self.active() {
            self.inner.on_exit(id, ctx);
        }
    }

    fn on_close(&self, id: span::Id, ctx: Context<'_, S>) {
        if self.active() {
            self.inner.on_close(id, ctx);
        }
    }

    fn on_id_change(&self, old: &span::Id, new: &span::Id, ctx: Context<'_, S>) {
        if self.active() {
            self.inner.on_id_change(old, new, ctx);
        }
    }

    unsafe fn downcast_raw(&self, id: TypeId) -> Option<*const ()> {
        if id == TypeId::of::<Self>() {
            return Some(self as *const Self as *const ());
        }
        if self.state.load(Ordering::Acquire) == OFF {
            // Off: the other layer answers for spans, not ours.
            return None;
        }
        // SAFETY: forwarded to the wrapped layer, whose contract this is.
        let answer = unsafe { self.inner.downcast_raw(id) };
        let probing = PROBE.with(|p| p.get().0) == self.addr();
        if probing && answer.is_some() && id != TypeId::of::<OpenTelemetryLayer<S, T>>() {
            // The probe asks for the layer's span accessor: say we were reached,
            // and let the search go on inwards.
            PROBE.with(|p| p.set((self.addr(), true)));
            return None;
        }
        answer
    }
}
