//! Setup: everything between the environment and a running pipeline.
//!
//! - [`config`]: `OTEL_SESSION_*` and the standard variables this crate reads;
//! - [`export`]: OTLP transports, exporters and delivery accounting;
//! - [`console`]: readable console exporters;
//! - `resource`: the app and device resource detector;
//! - `init`: [`init()`](crate::init()), [`init!`](crate::init!), [`Builder`](crate::Builder)
//!   and the [`Guard`](crate::Guard);
//! - `error`: [`InitError`](crate::InitError).
//!
//! May use: every other module; nothing uses it but the crate root.

pub mod config;
pub mod console;
pub(crate) mod error;
pub mod export;
pub(crate) mod guard;
pub(crate) mod init;
#[cfg(feature = "tracing")]
mod layers;
pub(crate) mod resource;
