//! The model: plain values every other part of the crate speaks in.
//!
//! - [`session`]: [`Session`](session::Session) snapshots, [`SessionId`](session::SessionId),
//!   [`SessionStatus`](session::SessionStatus), [`EndReason`](session::EndReason),
//!   [`User`](session::User);
//! - [`id`]: session id generation and the id → lifecycle trace mapping;
//! - [`clock`]: the injectable time source;
//! - `exception`: a crash report's data (panics, native crashes);
//! - [`attr`]: every attribute, event and span name this crate writes;
//! - `attributes`: a session's own attributes (properties, permanent ones,
//!   feature flags), their reserved keys and limits;
//! - `intern`: strings kept for the process's life (stamped attributes).
//!
//! May use: the standard library and `opentelemetry` types only. Nothing here
//! knows about managers, processors or exporters.

pub mod attr;
pub(crate) mod attributes;
pub(crate) mod clock;
pub(crate) mod exception;
pub(crate) mod id;
pub(crate) mod intern;
pub(crate) mod session;
