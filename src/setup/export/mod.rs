//! The export pipeline `init()` builds: for each signal, an exporter chosen by
//! `OTEL_{TRACES,LOGS,METRICS}_EXPORTER` (OTLP, console or none) and, for OTLP, a
//! transport chosen by `OTEL_EXPORTER_OTLP_{SIGNAL_}PROTOCOL` (`grpc`,
//! `http/protobuf` — the default — or `http/json`).
//!
//! - `target`: where each signal goes (URL, timeout) and its transport;
//! - `tls`: CA bundle and client identity from the environment;
//! - `transport`: building the exporters (TLS, retries, the probe);
//! - `observe`: the probe that keeps what the last HTTP attempt got;
//! - `retry`: which failures are retried, how long to wait, stopping at shutdown;
//! - `counted`: the decorator that retries, diagnoses and counts every export;
//! - `diagnose`: why an export failed and the likely fix, one warning per cause;
//! - `check`: settings checked before anything is sent (headers, TLS on http);
//! - `plan`: what `init()` resolves, warns about and builds, once per cause;
//! - `delivery`: counts of what was delivered, retried and lost.
//!
//! Every exporter is wrapped in a [`Counted`] decorator: transient failures are
//! retried (exponential backoff with jitter, `Retry-After` honoured, within the
//! export timeout, not once shutting down), and telemetry that could not be
//! delivered is counted and reported, never silently.
//!
//! gRPC needs a tokio reactor. `init()` always gives it its own small runtime (one
//! worker thread) owned by the guard, whether or not the program has a runtime: so
//! it works from plain `main`, from `#[tokio::main]` (current-thread too), and
//! shutting down never waits on the program's own runtime.
//!
//! May use: `config`; used by `init` and `guard`.

pub(crate) mod check;
mod counted;
mod delivery;
pub(crate) mod diagnose;
pub(crate) mod observe;
mod plan;
pub(crate) mod retry;
pub(crate) mod target;
pub(crate) mod tls;
mod transport;

pub use counted::Counted;
pub use delivery::{Delivery, DeliveryStats, Handed, HandedCounter};
pub(crate) use plan::OtlpPlan;
pub(crate) use target::Signal;
pub use transport::{default_transport, transport_from_lookup, Transport};
pub(crate) use transport::{otlp_logs, otlp_metrics, otlp_spans, RuntimeSlot};
