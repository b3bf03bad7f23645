//! Setup: everything between the environment and a running pipeline.
//!
//! - [`config`]: `OTEL_SESSION_*` and the standard variables this crate reads;
//! - [`export`]: OTLP transports, the export runtime, exporters, batch settings
//!   and delivery accounting;
//! - [`console`]: readable console exporters;
//! - `resource`: the app and device resource detector;
//! - `builder`: [`Builder`](crate::Builder), [`init()`](crate::init()) and
//!   [`init!`](crate::init!); `init`: what `Builder::init` assembles;
//! - `guard`: the [`Guard`](crate::Guard); `layers`: its `tracing` layers;
//! - `error`: [`InitError`](crate::InitError) and [`ExportError`](crate::export::ExportError).
//!
//! May use: every other module; nothing uses it but the crate root.

pub(crate) mod builder;
pub mod config;
pub mod console;
pub(crate) mod error;
pub mod export;
pub(crate) mod guard;
mod init;
#[cfg(feature = "tracing")]
mod layers;
pub(crate) mod resource;
