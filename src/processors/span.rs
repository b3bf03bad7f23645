//! Span processors that stamp `session.id` on every span started while a reported
//! session is current and not paused.
//!
//! - [`SessionSpanProcessor`] *wraps* your exporting processor (recommended): it adds
//!   the attribute in `on_start`, delegates everything, and is the sink the
//!   manager's lifecycle spans are exported through. Because the SDK clones each
//!   span's data once per registered processor, wrapping costs a fraction of
//!   registering a second processor (see `BENCHMARKS.md`).
//! - [`SessionSpanEnricher`] is registered *beside* your processors, for pipelines
//!   you cannot wrap. It cannot export lifecycle spans by itself: give it one with
//!   [`SessionSpanEnricher::with_lifecycle_processor`] or also wrap a processor.
//!
//! A span that already carries `session.id` when it starts keeps it: the wrapper
//! removes its own duplicate at `on_end`, the enricher checks before adding.
//! Spans recorded but not sampled are what they are without us (the SDK's
//! batch processor exports them), except those of sessions our session
//! sampling leaves out: a manager that samples sessions filters them before
//! the processor it wraps.
//! Wrap *every* exporting processor of a provider: one registered beside the
//! wrapper, unwrapped, gets its copy of the span before that removal, so a span
//! whose `session.id` the application set would reach it with two.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry::trace::Status;
use opentelemetry::{Context, KeyValue, Value};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanProcessor};
use opentelemetry_sdk::Resource;

use crate::core::manager::SessionManager;
use crate::core::sinks::SinkRef;
use crate::model::attr;
use crate::processors::link::SinkLink;
use crate::processors::span_end::{self, RawParts, SampledOnly};

/// Wraps the exporting span processor `P`: stamps `session.id` in `on_start`,
/// delegates everything to `P`, and exports the session lifecycle spans through `P`.
///
/// Built with [`SessionManager::span_processor`].
pub struct SessionSpanProcessor<P: SpanProcessor + 'static> {
    manager: SessionManager,
    /// `P`, behind a filter of sampled spans when the manager samples sessions.
    inner: Arc<dyn SpanProcessor>,
    link: SinkLink,
    _inner: PhantomData<fn() -> P>,
}

impl<P: SpanProcessor + 'static> std::fmt::Debug for SessionSpanProcessor<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionSpanProcessor")
            .field("manager", &self.manager)
            .field("inner", &self.inner)
            .finish()
    }
}

impl<P: SpanProcessor + 'static> SpanProcessor for SessionSpanProcessor<P> {
    #[inline]
    fn on_start(&self, span: &mut Span, cx: &Context) {
        let shared = &*self.manager.shared;
        if shared.core.stamp.stamps_attributes {
            stamp_with_attributes(shared, span, cx, None);
        } else if let Some(attribute) = shared.stamp_attribute(cx) {
            opentelemetry::trace::Span::set_attribute(span, attribute);
        }
        self.inner.on_start(span, cx);
    }

    /// Activity, a failed span counted, a duplicate `session.id` removed, then
    /// the span handed on, without a copy (see `span_end`).
    #[inline]
    fn on_end(&self, mut span: SpanData) {
        let shared = &*self.manager.shared;
        let stamp = &shared.core.stamp;
        let attributes = RawParts::of(&span.attributes);
        // A span we stamped with the app session is its activity, dated at
        // its end (a copy of the time: no reference into the span leaves).
        let end = span.end_time;
        let found = span_end::inspect(shared, attributes, &end);
        if shared.tracking.errors.spans {
            let error = matches!(span.status, Status::Error { .. });
            let events = RawParts::of(&span.events.events);
            let span_id = span.span_context.span_id();
            span_end::failed(shared, error, events, attributes, &span_id);
        }
        if found.duplicate() {
            let p = span.attributes.as_mut_ptr();
            // SAFETY: the vector's raw parts, and its length set to what
            // `dedupe` kept right after.
            unsafe {
                let stamped = &shared.core.stamp_keys;
                let kept = span_end::dedupe(
                    p,
                    span.attributes.len(),
                    stamp.app_key.as_ptr(),
                    stamp.scope_key.as_ptr(),
                    stamped.as_ptr(),
                    stamped.len(),
                );
                span.attributes.set_len(kept);
            }
        }
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        // Lifecycle output queued from inside a processor goes first; the
        // flush acknowledges what `P` delivered (the ledger).
        self.manager.shared.flush();
        if self.link.connected() {
            self.link.flush(&self.manager)
        } else {
            self.inner.force_flush()
        }
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.manager.end_for_shutdown(timeout / 2);
        // A flush before the shutdown: the only way to learn (and acknowledge)
        // what `P` delivered.
        let _ = self.force_flush();
        self.link.disconnect(&self.manager);
        let result = self.inner.shutdown_with_timeout(timeout);
        // What `P`'s exporter acknowledged while shutting down is saved now.
        self.manager.shared.flush();
        result
    }

    fn set_resource(&mut self, resource: &Resource) {
        // The provider calls this once, at build: set the resource on `P` while we
        // hold the only reference, then connect `P` as a lifecycle sink.
        self.link.disconnect(&self.manager);
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => inner.set_resource(resource),
            None => crate::warn::stderr(format_args!(
                "SessionSpanProcessor::set_resource could not reach the wrapped processor"
            )),
        }
        self.link
            .connect(&self.manager, SinkRef::span(Arc::clone(&self.inner)));
    }
}

/// `session.id`, then the stamped session attributes of the same session:
/// from this thread's cache (one read for both) when it is current, else the
/// long way.
#[inline]
fn stamp_with_attributes(
    shared: &crate::core::machine::Shared,
    span: &mut Span,
    cx: &Context,
    id: Option<KeyValue>,
) {
    use opentelemetry::trace::Span as _;
    let stamp = &shared.core.stamp;
    if id.is_none() && !crate::core::callbacks::in_hook() && !crate::core::scope::scopes_exist() {
        if let Ok((id, list)) = stamp.cached_with_stamped() {
            if let Some(id) = id {
                let key = opentelemetry::Key::from_static_str(stamp.app_key);
                span.set_attribute(KeyValue::new(key, Value::String(id.into())));
                for kv in list {
                    span.set_attribute(kv.key_value());
                }
            }
            return;
        }
    }
    let Some(id) = id.or_else(|| shared.stamp_attribute(cx)) else {
        return;
    };
    let app = std::ptr::eq(id.key.as_str().as_ptr(), stamp.app_key.as_ptr());
    span.set_attribute(id);
    let push = |kv| span.set_attribute(kv);
    if app {
        stamp.push_stamped(push);
    } else {
        shared.stamped_attributes(Some(cx), false, push);
    }
}

/// Stamps `session.id` from beside your other span processors. Register it
/// *before* them (processors see a span in registration order). It costs more
/// than [`SessionSpanProcessor`] and cannot export lifecycle spans unless given a
/// processor for them.
///
/// Built with [`SessionManager::standalone_span_processor`].
#[derive(Debug)]
pub struct SessionSpanEnricher {
    manager: SessionManager,
    lifecycle: Option<Box<dyn SpanProcessor>>,
    link: SinkLink,
}

impl SessionSpanEnricher {
    /// Exports the session lifecycle spans through `processor` (typically a
    /// `BatchSpanProcessor` on a clone of your exporter). It gets the provider's
    /// resource, and is flushed and shut down with the provider.
    pub fn with_lifecycle_processor(mut self, processor: impl SpanProcessor + 'static) -> Self {
        self.lifecycle = Some(Box::new(processor));
        self
    }
}

impl SpanProcessor for SessionSpanEnricher {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        if let Some((key, id)) = self.manager.shared.stamp(cx) {
            // The SDK offers no cheap way to read a started span's attributes.
            let has_one = span.exported_data().is_some_and(|d| {
                d.attributes
                    .iter()
                    .any(|kv| kv.key.as_str() == attr::SESSION_ID)
            });
            if !has_one {
                let id = KeyValue::new(key, Value::String(id));
                if self.manager.shared.core.stamp.stamps_attributes {
                    stamp_with_attributes(&self.manager.shared, span, cx, Some(id));
                } else {
                    opentelemetry::trace::Span::set_attribute(span, id);
                }
            }
        }
    }

    fn on_end(&self, span: SpanData) {
        let shared = &*self.manager.shared;
        let attributes = RawParts::of(&span.attributes);
        span_end::inspect(shared, attributes, &span.end_time);
        if shared.tracking.errors.spans {
            let error = matches!(span.status, Status::Error { .. });
            let events = RawParts::of(&span.events.events);
            let span_id = span.span_context.span_id();
            span_end::failed(shared, error, events, attributes, &span_id);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.manager.shared.flush();
        self.link.flush(&self.manager)
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.manager.end_for_shutdown(timeout / 2);
        self.link.shutdown(&self.manager, timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        if let Some(mut p) = self.lifecycle.take() {
            p.set_resource(resource);
            self.link
                .connect(&self.manager, SinkRef::span(Arc::from(p)));
        }
    }
}

impl SessionManager {
    /// Wraps your exporting span processor (recommended form): spans get
    /// `session.id`, and the session lifecycle spans are exported through it.
    ///
    /// ```
    /// use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SimpleSpanProcessor};
    /// use otel_session::SessionManager;
    /// let sessions = SessionManager::builder().build();
    /// let exporter = InMemorySpanExporter::default();
    /// let provider = SdkTracerProvider::builder()
    ///     .with_span_processor(sessions.span_processor(SimpleSpanProcessor::new(exporter.clone())))
    ///     .build();
    /// sessions.start_session();
    /// # let _ = provider.shutdown();
    /// ```
    pub fn span_processor<P: SpanProcessor + 'static>(&self, inner: P) -> SessionSpanProcessor<P> {
        // Sessions sampled out are recorded, not exported: their spans stop here.
        let inner: Arc<dyn SpanProcessor> = if self.samples_sessions() {
            Arc::new(SampledOnly(inner))
        } else {
            Arc::new(inner)
        };
        SessionSpanProcessor {
            manager: self.clone(),
            inner,
            link: SinkLink::default(),
            _inner: PhantomData,
        }
    }

    /// A stamping processor to register beside your own (see
    /// [`SessionSpanEnricher`]).
    pub fn standalone_span_processor(&self) -> SessionSpanEnricher {
        SessionSpanEnricher {
            manager: self.clone(),
            lifecycle: None,
            link: SinkLink::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::stamp::{origin, Origin};
    use opentelemetry::Key;

    fn our_key() -> Key {
        crate::SessionManager::builder()
            .build()
            .shared
            .stamp(&Context::new())
            .map(|(k, _)| k)
            .unwrap()
    }

    #[test]
    fn our_key_is_told_apart_from_an_equal_application_key() {
        let ours = our_key();
        assert_eq!(origin(&ours), Origin::App);
        let theirs = Key::new(String::from("session.id"));
        assert_eq!(ours, theirs);
        assert_eq!(origin(&theirs), Origin::Theirs);
        assert_eq!(
            origin(&Key::from_static_str("session.id")),
            Origin::Theirs,
            "a literal of the same text is not ours, however the linker folds it"
        );
    }

    fn dedupe(mut attrs: Vec<KeyValue>) -> Vec<KeyValue> {
        let (app, scope) = *crate::core::stamp::keys();
        // SAFETY: the vector's raw parts; its length set to what was kept.
        unsafe {
            let kept = crate::processors::span_end::dedupe(
                attrs.as_mut_ptr(),
                attrs.len(),
                app.as_ptr(),
                scope.as_ptr(),
                [].as_ptr(),
                0,
            );
            attrs.set_len(kept);
        }
        attrs
    }

    #[test]
    fn dedupe_keeps_the_application_value() {
        let mut attrs = vec![
            KeyValue::new("session.id", "app"),
            KeyValue::new("a", 1),
            KeyValue::new(our_key(), "ours"),
        ];
        attrs = dedupe(attrs);
        assert_eq!(attrs.len(), 2);
        assert_eq!(attrs[0].value.as_str(), "app");
        let mut single = vec![KeyValue::new(our_key(), "ours")];
        single = dedupe(single);
        assert_eq!(single.len(), 1);
        let mut twice = vec![
            KeyValue::new(our_key(), "first"),
            KeyValue::new("b", 2),
            KeyValue::new(our_key(), "second"),
        ];
        twice = dedupe(twice);
        assert_eq!(twice.len(), 2);
        assert_eq!(twice[0].value.as_str(), "first");
    }
}
