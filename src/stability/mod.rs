//! Stability: what makes crash-free rates computable.
//!
//! - [`metrics`]: `otel_session.started`, `otel_session.ended` by status and the
//!   `otel_session.duration` histogram;
//! - `crash`: crash reports (panics as exception records, native-crash
//!   markers, hangs);
//! - `panic`: the panic hook ([`install_panic_hook`](crate::install_panic_hook));
//! - `persist`: the session file (`OTEL_SESSION_PERSIST_PATH`);
//! - `sampling`: whole-session sampling ([`SessionSampler`](crate::SessionSampler)).
//!
//! May use: [`model`](crate::model), [`core`](crate::core) and
//! [`processors`](crate::processors).

pub(crate) mod crash;
pub mod metrics;
pub(crate) mod panic;
pub(crate) mod persist;
pub(crate) mod sampling;
