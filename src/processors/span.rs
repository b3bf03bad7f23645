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
//! Wrap *every* exporting processor of a provider: one registered beside the
//! wrapper, unwrapped, gets its copy of the span before that removal, so a span
//! whose `session.id` the application set would reach it with two.

use std::sync::Arc;
use std::time::Duration;

use opentelemetry::{Context, Key, KeyValue, Value};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanProcessor};
use opentelemetry_sdk::Resource;

use crate::core::manager::SessionManager;
use crate::core::sinks::SinkRef;
use crate::core::stamp::{is_ours, origin, Origin};
use crate::model::attr;
use crate::processors::errors::{count_failed_span, failed};
use crate::processors::link::SinkLink;

#[inline]
fn is_session_id(key: &Key) -> bool {
    let k = key.as_str();
    k.len() == attr::SESSION_ID.len() && k == attr::SESSION_ID
}

/// What one pass over a finished span's attributes found.
#[derive(Clone, Copy, Default)]
struct Scan {
    /// More than one `session.id`: one must go.
    duplicate: bool,
    /// We stamped the manager's app session on it: it is that session's activity.
    app: bool,
}

#[inline]
fn scan(attributes: &[KeyValue]) -> Scan {
    let mut found = Scan::default();
    let mut seen = false;
    for kv in attributes {
        if is_session_id(&kv.key) {
            found.duplicate |= seen;
            seen = true;
            found.app |= origin(&kv.key) == Origin::App;
        }
    }
    found
}

#[cold]
#[inline(never)]
fn dedupe_cold(attributes: &mut Vec<KeyValue>) {
    dedupe(attributes);
}

/// Leaves exactly one `session.id`: the application's if it set one (it wins),
/// else the first we added (two wrapped pipelines each add one).
fn dedupe(attributes: &mut Vec<KeyValue>) {
    let theirs = attributes
        .iter()
        .any(|kv| is_session_id(&kv.key) && !is_ours(&kv.key));
    let mut keep_one_of_ours = !theirs;
    attributes.retain(|kv| {
        if !is_ours(&kv.key) {
            return true;
        }
        std::mem::replace(&mut keep_one_of_ours, false)
    });
}

/// Wraps the exporting span processor `P`: stamps `session.id` in `on_start`,
/// delegates everything to `P`, and exports the session lifecycle spans through `P`.
///
/// Built with [`SessionManager::span_processor`].
#[derive(Debug)]
pub struct SessionSpanProcessor<P: SpanProcessor + 'static> {
    manager: SessionManager,
    inner: Arc<P>,
    link: SinkLink,
}

impl<P: SpanProcessor + 'static> SpanProcessor for SessionSpanProcessor<P> {
    #[inline]
    fn on_start(&self, span: &mut Span, cx: &Context) {
        if let Some((key, id)) = self.manager.shared.stamp(cx) {
            opentelemetry::trace::Span::set_attribute(span, KeyValue::new(key, Value::String(id)));
        }
        self.inner.on_start(span, cx);
    }

    #[inline]
    fn on_end(&self, mut span: SpanData) {
        let found = scan(&span.attributes);
        let shared = &*self.manager.shared;
        // A span we stamped with the app session is its activity, dated at
        // the span's end.
        if found.app && shared.timed {
            shared.note_telemetry(Some(span.end_time));
        }
        if shared.tracking.errors.spans && failed(&span) {
            count_failed_span(shared, &span);
        }
        if found.duplicate {
            dedupe_cold(&mut span.attributes);
        }
        // Recorded, not sampled (a session sampled out): seen above, not
        // exported. One move site for the span (rustc still copies it once,
        // ~64 instructions, as soon as it is read before being forwarded).
        if span.span_context.is_sampled() {
            self.inner.on_end(span);
        }
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
        self.inner.shutdown_with_timeout(timeout)
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
        let sink = Arc::clone(&self.inner) as Arc<dyn SpanProcessor>;
        self.link.connect(&self.manager, SinkRef::span(sink));
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
                opentelemetry::trace::Span::set_attribute(
                    span,
                    KeyValue::new(key, Value::String(id)),
                );
            }
        }
    }

    fn on_end(&self, span: SpanData) {
        let shared = &*self.manager.shared;
        if shared.timed && scan(&span.attributes).app {
            shared.note_telemetry(Some(span.end_time));
        }
        if shared.tracking.errors.spans && failed(&span) {
            count_failed_span(shared, &span);
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
        SessionSpanProcessor {
            manager: self.clone(),
            inner: Arc::new(inner),
            link: SinkLink::default(),
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
        assert!(is_ours(&ours));
        assert!(!is_ours(&theirs));
        assert!(!is_ours(&Key::from_static_str("session.id")));
    }

    #[test]
    fn dedupe_keeps_the_application_value() {
        let mut attrs = vec![
            KeyValue::new("session.id", "app"),
            KeyValue::new("a", 1),
            KeyValue::new(our_key(), "ours"),
        ];
        dedupe(&mut attrs);
        assert_eq!(attrs.len(), 2);
        assert_eq!(attrs[0].value.as_str(), "app");
        let mut single = vec![KeyValue::new(our_key(), "ours")];
        dedupe(&mut single);
        assert_eq!(single.len(), 1);
        let mut twice = vec![
            KeyValue::new(our_key(), "first"),
            KeyValue::new("b", 2),
            KeyValue::new(our_key(), "second"),
        ];
        dedupe(&mut twice);
        assert_eq!(twice.len(), 2);
        assert_eq!(twice[0].value.as_str(), "first");
    }
}
