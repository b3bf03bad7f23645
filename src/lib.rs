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
//! - the model: [`Session`], [`SessionId`], [`SessionStatus`], [`EndReason`], [`User`];
//! - [`SessionManager`]: the state machine and the session API;
//! - span and log processors: [`SessionSpanProcessor`], [`SessionSpanEnricher`],
//!   [`SessionLogProcessor`], [`SessionLogEnricher`];
//! - [`SessionResourceDetector`]: the app and device resource;
//! - [`metrics`]: the stability metrics; [`config`]: the environment;
//!   [`export`]: the exporters `init()` builds; [`console`]: readable console
//!   exporters; [`attr`]: every name this crate writes;
//! - the crate-root verbs ([`start_session`], …) acting on the context's or the
//!   global manager.
//!
//! wasm32 targets are not supported yet.
#![warn(missing_docs)]

// Data flows downward: model → core → processors → tracking, stability → setup.
mod core;
pub mod model;
mod processors;
mod setup;
mod stability;
mod tracking;
mod warn;

pub use crate::core::callbacks::{CallbackHandle, SessionCandidate, SessionObserver};
pub use crate::core::context::SessionContextExt;
pub use crate::core::global::{
    active_manager, add_on_session, clear_global_manager, current_session, end_session,
    global_manager, pause_session, record_handled_error, record_unhandled_error, remove_on_session,
    resume_session, set_global_manager, set_user, start_session,
};
pub use crate::core::lifecycle::PENDING_LIMIT;
pub use crate::core::manager::{SessionManager, SessionManagerBuilder};
pub use model::attr;
pub use model::clock::{Clock, ManualClock, SystemClock};
pub use model::id::{session_root_span_id, session_trace_id, IdGenerator, UuidV4Generator};
pub use model::session::{EndReason, Session, SessionId, SessionStatus, User};
pub use processors::log::{SessionLogEnricher, SessionLogProcessor};
pub use processors::span::{SessionSpanEnricher, SessionSpanProcessor};
pub use setup::builder::{init, Builder, DEFAULT_SHUTDOWN_TIMEOUT};
pub use setup::error::InitError;
pub use setup::export::{DEFAULT_LOG_QUEUE_SIZE, DEFAULT_SPAN_QUEUE_SIZE, MAX_QUEUE_SIZE};
pub use setup::guard::Guard;
pub use setup::resource::SessionResourceDetector;
pub use setup::{config, console, export};
pub use stability::metrics;
