//! The core: the session state machine and its effects.
//!
//! - `machine`: the state machine of one manager and **the lock rules** (read its
//!   module docs first);
//! - `manager`: [`SessionManager`](crate::SessionManager), its builder and the verbs;
//! - `state`: one live session and the activity clock;
//! - `callbacks`: `on_session` callbacks, observers and the re-entrancy guard;
//! - `effects`: what a change produces, and how it becomes lifecycle telemetry;
//! - `sinks`: the exporting processors lifecycle telemetry goes to;
//! - `outbox`: ordered delivery of effects outside the manager's lock;
//! - `persist`: what the state machine saves and restores (the store is in `stability`);
//! - `timer`: the thread that wakes managers at their sessions' deadlines;
//! - `scope`: sessions carried in an OpenTelemetry `Context` (requests, joins);
//! - `stamp`: the hot-path lookup of the id to stamp;
//! - `global`: the global manager and the crate-root verbs;
//! - `error`: [`SessionError`](crate::SessionError).
//!
//! May use: [`model`](crate::model). Processors, tracking, stability and setup
//! build on this module; it does not know them.

pub(crate) mod callbacks;
pub(crate) mod effects;
pub(crate) mod error;
pub(crate) mod global;
pub(crate) mod machine;
pub(crate) mod manager;
pub(crate) mod outbox;
pub(crate) mod persist;
pub(crate) mod scope;
pub(crate) mod sinks;
pub(crate) mod stamp;
pub(crate) mod state;
pub(crate) mod timer;
