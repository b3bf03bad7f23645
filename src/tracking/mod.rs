//! Sessions that track themselves.
//!
//! - `app`: app mode's foreground/background verbs (the timeouts themselves are
//!   rules of the state machine in `core`);
//! - `request`: a session per request, and joining a caller's session
//!   ([`RequestScope`](crate::RequestScope));
//! - `join`: W3C baggage in ([`session_id_from_baggage`](crate::session_id_from_baggage))
//!   and out ([`SessionBaggage`](crate::SessionBaggage));
//! - `layer` (feature `tower`): [`SessionLayer`](crate::SessionLayer) for `tower`
//!   services.
//!
//! May use: [`model`](crate::model), [`core`](crate::core) and
//! [`processors`](crate::processors).

pub(crate) mod app;
pub(crate) mod join;
#[cfg(feature = "tower")]
pub(crate) mod layer;
pub(crate) mod request;
