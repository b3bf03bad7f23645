//! The core: the session state machine and its effects.
//!
//! - `rules`: **every session rule**, as one pure transition function over an
//!   explicit state (read it first);
//! - `machine`: the driver around the rules: the lock and its invariants
//!   (`machine::core`), candidates, effects turned into telemetry, delivery;
//! - `manager`: [`SessionManager`](crate::SessionManager), its builder and the verbs;
//! - `session`: one live app session (its counts, user, timeline) and the activity clock;
//! - `counts`: a session's error counts and status, lock-free (app and request
//!   sessions alike), and which failed spans were already counted;
//! - `request`: one request's session (request mode): light, its id made when
//!   first read, its manager held weakly;
//! - `callbacks`: `on_session` callbacks, observers and the re-entrancy guard;
//! - `telemetry`: lifecycle telemetry as descriptions, and how they become spans,
//!   log records and counts;
//! - `sinks`: the exporting processors lifecycle telemetry goes to;
//! - `outbox`: ordered delivery outside the manager's lock;
//! - `ledger`: session ends kept until a sink acknowledges them;
//! - `persist`: what the driver saves and restores (the store is in `stability`);
//! - `timer`: the thread that wakes managers at their sessions' deadlines;
//! - `scope`: sessions carried in an OpenTelemetry `Context` (requests, joins);
//! - `stamp`: what the hot path stamps, and its publication;
//! - `sync`: the primitives the core's races run on (std, or loom under `--cfg loom`);
//! - `global`: the global manager and the crate-root verbs;
//! - `properties`: session properties and feature flags (the verbs);
//! - `error`: [`SessionError`](crate::SessionError).
//!
//! Within `core`, data flows one way: `error`, `rules`, `callbacks`,
//! `telemetry`, `counts`, `persist` and `sync` use only `model`; `timer` uses
//! `callbacks`; `request` uses `counts` and `telemetry`; `session` uses
//! `callbacks`, `counts`, `persist`, `telemetry` and `rules`; `scope`,
//! `stamp`, `sinks`, `ledger` and `outbox` use those; `machine` uses all of
//! them; `manager` uses `machine`; `global` uses `manager`; `properties` uses `global`
//! (`tests/layout.rs` checks that no cycle forms).
//!
//! May use: [`model`](crate::model). Processors, tracking, stability and setup
//! build on this module; it does not know them.

pub(crate) mod callbacks;
pub(crate) mod counts;
pub(crate) mod error;
pub(crate) mod global;
pub(crate) mod ledger;
pub(crate) mod machine;
pub(crate) mod manager;
pub(crate) mod outbox;
pub(crate) mod persist;
pub(crate) mod properties;
pub(crate) mod request;
pub(crate) mod rules;
pub(crate) mod scope;
pub(crate) mod session;
pub(crate) mod sinks;
pub(crate) mod stamp;
pub(crate) mod sync;
pub(crate) mod telemetry;
pub(crate) mod timer;
