//! Log processors that stamp `session.id` on log records emitted while a reported
//! session is current and not paused, and count records at ERROR severity or above
//! as handled errors of the session whose id the record carries.
//!
//! - [`SessionLogProcessor`] *wraps* your exporting log processor (recommended): the
//!   attribute is added before the batch processor copies the record, and the
//!   `session.start` / `session.end` log events are exported through it.
//! - [`SessionLogEnricher`] is registered *before* your processors; it answers
//!   `false` from `event_enabled`, so it never turns logs on by itself. Without a
//!   processor given through [`SessionLogEnricher::with_lifecycle_processor`] (or a
//!   wrapped one) the lifecycle log events are held, bounded, until one connects.
//!
//! A record that already carries `session.id` is never changed.

use std::cell::Cell;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use opentelemetry::logs::{AnyValue, LogRecord as _, Severity};
use opentelemetry::{Context, InstrumentationScope};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::logs::{LogProcessor, SdkLogRecord};
use opentelemetry_sdk::Resource;

use crate::core::lifecycle::{SinkLink, SinkRef};
use crate::core::manager::SessionManager;
use crate::core::stamp::{is_ours, our_key, stamp_value, with_session};
use crate::model::attr;

#[inline]
fn is_error(record: &SdkLogRecord) -> bool {
    record
        .severity_number()
        .is_some_and(|s| s >= Severity::Error)
}

thread_local! {
    /// The record (address, observed time) whose application-set id was last
    /// counted on this thread: every processor of one provider sees the same
    /// record in one `emit`, and it must count once.
    static LAST_COUNTED: Cell<(usize, Option<SystemTime>)> = const { Cell::new((0, None)) };
}

/// Stamps the record (unless it has an id) and counts an ERROR record once
/// toward the session whose id it carries, if that session is still the one
/// telemetry is attributed to (an error of an ended or paused session is dropped).
/// With several of our processors on one provider, the one that stamps counts.
#[inline]
fn stamp(manager: &SessionManager, record: &mut SdkLogRecord) {
    // None: no id; Some(true): one of our processors stamped it (and counted);
    // Some(false): the application set it.
    let carried = record
        .attributes_iter()
        .find(|(k, _)| k.as_str() == attr::SESSION_ID)
        .map(|(k, _)| is_ours(k));
    if carried == Some(true) {
        return;
    }
    Context::map_current(|cx| {
        if carried.is_none() {
            if let Some(id) = stamp_value(&manager.shared, cx) {
                record.add_attribute(our_key(), AnyValue::String(id));
            } else {
                return;
            }
        } else if is_error(record) {
            let key = (
                record as *const SdkLogRecord as usize,
                record.observed_timestamp(),
            );
            if LAST_COUNTED.with(|c| c.replace(key)) == key {
                return;
            }
        }
        if is_error(record) {
            let id = record
                .attributes_iter()
                .find(|(k, _)| k.as_str() == attr::SESSION_ID)
                .map(|(_, v)| v);
            if let Some(AnyValue::String(id)) = id {
                with_session(&manager.shared, cx, |s| {
                    if s.id.as_str() == id.as_str() {
                        s.count_handled();
                    }
                });
            }
        }
    });
}

/// Wraps the exporting log processor `P`: stamps `session.id`, counts errors,
/// delegates everything to `P`, and exports the session log events through `P`.
///
/// Built with [`SessionManager::log_processor`].
#[derive(Debug)]
pub struct SessionLogProcessor<P: LogProcessor + 'static> {
    manager: SessionManager,
    inner: Arc<P>,
    link: SinkLink,
}

impl<P: LogProcessor + 'static> LogProcessor for SessionLogProcessor<P> {
    #[inline]
    fn emit(&self, record: &mut SdkLogRecord, scope: &InstrumentationScope) {
        stamp(&self.manager, record);
        self.inner.emit(record, scope);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.manager.end_for_shutdown();
        self.link.disconnect(&self.manager);
        self.inner.shutdown_with_timeout(timeout)
    }

    fn event_enabled(&self, level: Severity, target: &str, name: Option<&str>) -> bool {
        self.inner.event_enabled(level, target, name)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.link.disconnect(&self.manager);
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => inner.set_resource(resource),
            None => crate::warn::stderr(format_args!(
                "SessionLogProcessor::set_resource could not reach the wrapped processor"
            )),
        }
        let sink = Arc::clone(&self.inner) as Arc<dyn LogProcessor>;
        self.link.connect(&self.manager, SinkRef::Log(sink));
    }
}

/// Stamps `session.id` on log records from beside your other log processors.
/// Register it *first*: processors see the record in registration order and the
/// batch processor copies it.
///
/// Built with [`SessionManager::standalone_log_processor`].
#[derive(Debug)]
pub struct SessionLogEnricher {
    manager: SessionManager,
    lifecycle: Option<Box<dyn LogProcessor>>,
    link: SinkLink,
}

impl SessionLogEnricher {
    /// Exports the `session.start` / `session.end` log events through `processor`.
    pub fn with_lifecycle_processor(mut self, processor: impl LogProcessor + 'static) -> Self {
        self.lifecycle = Some(Box::new(processor));
        self
    }
}

impl LogProcessor for SessionLogEnricher {
    fn emit(&self, record: &mut SdkLogRecord, _scope: &InstrumentationScope) {
        stamp(&self.manager, record);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.link.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.manager.end_for_shutdown();
        self.link.shutdown(&self.manager, timeout)
    }

    /// Always `false`: an enricher must not turn on logs no exporter wants.
    fn event_enabled(&self, _level: Severity, _target: &str, _name: Option<&str>) -> bool {
        false
    }

    fn set_resource(&mut self, resource: &Resource) {
        if let Some(mut p) = self.lifecycle.take() {
            p.set_resource(resource);
            self.link.connect(&self.manager, SinkRef::Log(Arc::from(p)));
        }
    }
}

impl SessionManager {
    /// Wraps your exporting log processor (recommended form).
    pub fn log_processor<P: LogProcessor + 'static>(&self, inner: P) -> SessionLogProcessor<P> {
        SessionLogProcessor {
            manager: self.clone(),
            inner: Arc::new(inner),
            link: SinkLink::default(),
        }
    }

    /// A stamping log processor to register first, beside your own (see
    /// [`SessionLogEnricher`]).
    pub fn standalone_log_processor(&self) -> SessionLogEnricher {
        SessionLogEnricher {
            manager: self.clone(),
            lifecycle: None,
            link: SinkLink::default(),
        }
    }
}
