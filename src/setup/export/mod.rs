//! The export pipeline `init()` builds: for each signal, an exporter chosen by
//! `OTEL_{TRACES,LOGS,METRICS}_EXPORTER` (OTLP, console or none) and, for OTLP, a
//! transport chosen by `OTEL_EXPORTER_OTLP_{SIGNAL_}PROTOCOL` (`grpc`,
//! `http/protobuf` — the default — or `http/json`). Endpoint, headers, timeout and
//! compression are read by `opentelemetry-otlp` itself.
//!
//! Every exporter is wrapped in a [`Counted`] decorator so that telemetry that
//! could not be delivered is counted and reported once on stderr, never silently.
//!
//! gRPC needs a tokio reactor. `init()` always gives it its own small runtime (one
//! worker thread) owned by the guard, whether or not the program has a runtime: so
//! it works from plain `main`, from `#[tokio::main]` (current-thread too), and
//! shutting down never waits on the program's own runtime.

mod delivery;
mod transport;

pub use delivery::{Counted, Delivery, DeliveryStats, Handed, HandedCounter};
pub use transport::{default_transport, transport_from_lookup, Transport};
pub(crate) use transport::{otlp_logs, otlp_metrics, otlp_spans, transport_from_env, RuntimeSlot};
