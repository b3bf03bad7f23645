//! Span and log processors: stamp `session.id` on application telemetry and carry
//! the session lifecycle to the exporting processors they wrap.
//!
//! - `span`: [`SessionSpanProcessor`](crate::SessionSpanProcessor) (wrapper) and
//!   [`SessionSpanEnricher`](crate::SessionSpanEnricher) (beside);
//! - `span_end`: what the span wrapper does with a finished span (activity, a
//!   failed span, a duplicate `session.id`), arranged so the span is handed on
//!   without a copy;
//! - `errors`: errors counted from failed spans (`OTEL_SESSION_ERROR_SOURCES=spans`);
//! - `log`: [`SessionLogProcessor`](crate::SessionLogProcessor) (wrapper) and
//!   [`SessionLogEnricher`](crate::SessionLogEnricher) (first in line);
//! - `exporter`: [`SessionSpanExporter`](crate::SessionSpanExporter), an
//!   exporter that acknowledges the session ends it exported (the ledger);
//! - `link`: a processor's connection to its manager's lifecycle (and the
//!   acknowledgements its flushes give the delivery ledger).
//!
//! May use: [`model`](crate::model) and [`core`](crate::core).

pub(crate) mod errors;
pub(crate) mod exporter;
pub(crate) mod link;
pub(crate) mod log;
pub(crate) mod span;
pub(crate) mod span_end;
