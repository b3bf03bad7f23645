//! # otel-session
//!
//! User sessions for OpenTelemetry: a `session.id` on every span and log record, a
//! session lifecycle (start, pause, resume, end) that any OTLP backend can show,
//! per-session error counts and status for crash-free rates, and `on_session`
//! callbacks that amend or discard a session before it is reported.
//!
//! ## Wiring into your own providers
//!
//! Wrap your exporting processors (the fast, recommended form): they stamp
//! `session.id`, and the session's lifecycle spans and log events are exported
//! through them.
//!
//! ```
//! use opentelemetry::trace::{Tracer, TracerProvider};
//! use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SimpleSpanProcessor};
//! use otel_session::SessionManager;
//!
//! let sessions = SessionManager::builder().build();
//! let exporter = InMemorySpanExporter::default();
//! let provider = SdkTracerProvider::builder()
//!     .with_span_processor(sessions.span_processor(SimpleSpanProcessor::new(exporter.clone())))
//!     .build();
//!
//! let session = sessions.start_session().unwrap();
//! provider.tracer("app").in_span("work", |_| {});
//!
//! let spans = exporter.get_finished_spans().unwrap();
//! let work = spans.iter().find(|s| s.name == "work").unwrap();
//! assert!(work.attributes.iter().any(|kv| kv.key.as_str() == "session.id"
//!     && kv.value.as_str() == session.id().as_str()));
//! # provider.shutdown().unwrap();
//! ```
//!
//! ## One call
//!
//! `otel_session::init!()` reads the environment and builds the whole pipeline
//! (see [`Builder`] and [`Guard`]); the README lists the variables.
//!
//! ## What is where
//! The source is one folder per concept, data flowing downward (each folder's
//! module docs say what it owns and may use):
//! - `model`: [`Session`], [`SessionId`], [`SessionStatus`], [`EndReason`],
//!   [`User`], [`SessionMode`], [`ErrorSources`], ids ([`IdGenerator`]) and
//!   time ([`Clock`], [`ManualClock`]); [`attr`]: every name this crate writes;
//! - `core`: the state machine behind [`SessionManager`] (its lock rules are in
//!   one place: `core::machine`), lifecycle effects, the hot-path stamp, sessions
//!   carried in a `Context` ([`SessionContextExt`]), the crate-root verbs
//!   ([`start_session`], …);
//! - `processors`: [`SessionSpanProcessor`], [`SessionSpanEnricher`],
//!   [`SessionLogProcessor`], [`SessionLogEnricher`], errors counted from spans;
//! - `tracking`: app mode's [`foreground`] / [`background`], request sessions
//!   ([`RequestScope`], [`SessionLayer`] with feature `tower`), joined sessions
//!   ([`session_id_from_baggage`], [`SessionBaggage`]);
//! - `stability`: [`metrics`], the panic hook ([`install_panic_hook`]),
//!   persistence, session sampling ([`SessionSampler`]);
//! - `setup`: [`config`] (the environment), [`export`] (the exporters `init()`
//!   builds), [`console`], the resource ([`SessionResourceDetector`]),
//!   [`init()`], [`Builder`] and [`Guard`].
//!
//! wasm32 targets are not supported yet.
#![warn(missing_docs)]

// Data flows downward: model → core → processors → tracking, stability → setup.
mod core;
mod model;
mod processors;
mod setup;
mod stability;
mod tracking;
mod warn;

pub use crate::core::callbacks::{CallbackHandle, SessionCandidate, SessionObserver};
pub use crate::core::error::SessionError;
pub use crate::core::global::{
    add_on_session, clear_global_manager, current_session, end_session, global_manager,
    pause_session, record_handled_error, record_unhandled_error, remove_on_session, resume_session,
    set_global_manager, set_user, start_session,
};
pub use crate::core::manager::{SessionManager, SessionManagerBuilder};
pub use crate::core::properties::{
    add_feature_flag, clear_feature_flag, remove_session_attribute,
    set_permanent_session_attribute, set_session_attribute,
};
pub use crate::core::scope::SessionContextExt;
pub use model::attr;
pub use model::attributes::{
    AttributeError, MAX_ATTRIBUTE_KEY_LEN, MAX_ATTRIBUTE_VALUE_LEN, MAX_SESSION_ATTRIBUTES,
    MAX_STAMPED_ATTRIBUTES,
};
pub use model::clock::{Clock, ClockWaker, ManualClock, SystemClock};
pub use model::id::{session_sampled, session_trace_id, IdGenerator, UuidV4Generator};
pub use model::session::{
    EndReason, ErrorSources, Session, SessionId, SessionMode, SessionStatus, User,
};
pub use processors::exporter::SessionSpanExporter;
pub use processors::log::{SessionLogEnricher, SessionLogProcessor};
pub use processors::span::{SessionSpanEnricher, SessionSpanProcessor};
pub use setup::builder::{init, Builder, DEFAULT_SHUTDOWN_TIMEOUT};
pub use setup::error::InitError;
pub use setup::export::{DEFAULT_LOG_QUEUE_SIZE, DEFAULT_SPAN_QUEUE_SIZE, MAX_QUEUE_SIZE};
pub use setup::guard::Guard;
pub use setup::resource::SessionResourceDetector;
pub use setup::{config, console, export};
pub use stability::crash::hang::heartbeat;
pub use stability::metrics;
pub use stability::panic::{install_panic_hook, PANIC_FLUSH_LIMIT};
pub use stability::sampling::SessionSampler;
pub use tracking::app::{background, foreground};
pub use tracking::join::{
    session_id_from_baggage, stamped_session_id, MalformedSessionId, SessionBaggage,
    MAX_JOINED_ID_LEN,
};
#[cfg(feature = "tower")]
pub use tracking::layer::{SessionFuture, SessionLayer, SessionService};
pub use tracking::request::{RequestOutcome, RequestScope};
