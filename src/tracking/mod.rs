//! Sessions that track themselves.
//!
//! - `app`: app mode's foreground/background verbs (the timeouts themselves are
//!   rules of the state machine in `core`);
//!
//! May use: [`model`](crate::model), [`core`](crate::core) and
//! [`processors`](crate::processors).

pub(crate) mod app;
