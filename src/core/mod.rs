//! The core: the session state machine and its effects.
//!
//! - `manager`: [`SessionManager`](crate::SessionManager), its builder and the verbs;
//! - `callbacks`: `on_session` callbacks, observers and the re-entrancy guard;
//! - `lifecycle`: lifecycle spans and log events, and the sinks they go to;
//! - `outbox`: ordered delivery of effects outside the manager's lock;
//! - `stamp`: the hot-path lookup of the id to stamp;
//! - `context`: sessions carried in an OpenTelemetry `Context`;
//! - `global`: the global manager and the crate-root verbs.
//!
//! May use: [`model`](crate::model). Processors, tracking, stability and setup
//! build on this module; it does not know them.

pub(crate) mod callbacks;
pub(crate) mod context;
pub(crate) mod global;
pub(crate) mod lifecycle;
pub(crate) mod manager;
pub(crate) mod outbox;
pub(crate) mod stamp;
